# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""playbooks/images.yml -e refresh=true against a real outdated image.

The outdated image is the stack's Redis image with the installed version of ca-certificates set back
to 0.1 in dpkg's database (apt then sees a newer version in the image's sources, as it would after a
security update), under a test-only name. The refresh must find it (check mode: say so and build
nothing), rebuild it without the cache so apt installs the current version, label the image with
the installed versions, and find nothing more on the next run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import COLLECTION_ROOT, docker

SOURCE_IMAGE = 'psscript/redis:8'
STALE_IMAGE = 'psscript-itest/redis-refresh:8'
UPGRADABLE = os.path.join(COLLECTION_ROOT, 'roles', 'images', 'files', 'apt', 'upgradable.sh')
# Sets ca-certificates back to 0.1 in dpkg's status file (python3-minimal is in the Redis image; nothing
# depends on an exact version of ca-certificates, so apt sees a plain upgrade).
STALE_DOCKERFILE = """\
FROM %s
USER root
RUN python3 -c "import re; p = '/var/lib/dpkg/status'; s = open(p).read(); \\
s = re.sub(r'(?m)(^Package: ca-certificates\\n(?:.+\\n)*?)Version: .*', r'\\1Version: 0.1', s); open(p, 'w').write(s)"
USER redis
""" % SOURCE_IMAGE


def _image(ref):
    proc = docker('image', 'inspect', ref, check=False)
    return json.loads(proc.stdout)[0] if proc.returncode == 0 else None


def _remove_test_image():
    docker('image', 'rm', '-f', STALE_IMAGE, check=False)


def _upgradable(ref):
    with open(UPGRADABLE, encoding='utf-8') as handle:
        proc = docker('run', '--rm', '-i', '--user', 'root', '--entrypoint', 'sh', ref, '-s', input_text=handle.read())
    return proc.stdout.splitlines()


def _installed(ref, package):
    return docker('run', '--rm', '--entrypoint', 'dpkg-query', ref, '-W', '-f', '${Version}', package).stdout


def _images_playbook(*extra):
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
               ANSIBLE_COLLECTIONS_PATH=os.path.join(COLLECTION_ROOT, '.cache', 'collections'),
               ANSIBLE_CONFIG=os.path.join(COLLECTION_ROOT, 'ansible.cfg'))
    argv = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'inventories/local',
            'playbooks/images.yml', '-e', 'refresh=true',
            '-e', json.dumps({'images_build': ['redis'], 'stack_image_redis': STALE_IMAGE})] + list(extra)
    proc = subprocess.run(argv, cwd=COLLECTION_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return proc.stdout, sum(int(n) for n in re.findall(r'changed=(\d+)', proc.stdout))


@pytest.fixture()
def stale_image():
    if _image(SOURCE_IMAGE) is None:
        pytest.fail('%s is missing: make integration builds the images first (make images)' % SOURCE_IMAGE)
    _remove_test_image()
    docker('build', '-q', '-t', STALE_IMAGE, '-', input_text=STALE_DOCKERFILE)
    yield STALE_IMAGE
    _remove_test_image()


def test_refresh_rebuilds_an_image_with_updates_and_nothing_once_current(stale_image):
    before = _image(stale_image)
    assert _installed(stale_image, 'ca-certificates') == '0.1'
    assert any(line.startswith('ca-certificates 0.1 ') for line in _upgradable(stale_image))

    # Check mode: the refresh finds the update and reports the rebuild, and builds nothing.
    out, changed = _images_playbook('--check')
    assert changed >= 1, out[-4000:]
    assert _image(stale_image)['Id'] == before['Id']

    out, changed = _images_playbook()
    after = _image(stale_image)
    assert changed >= 1, out[-4000:]
    assert after['Id'] != before['Id']
    assert _installed(stale_image, 'ca-certificates') not in ('', '0.1')
    packages = after['Config']['Labels']['io.psscript.packages'].split()
    assert [p.split('=')[0] for p in packages] == ['redis-server', 'redis-sentinel', 'redis-tools']
    for entry in packages:
        name, version = entry.split('=', 1)
        assert _installed(stale_image, name) == version
    assert _upgradable(stale_image) == []

    # Current now: the next refresh rebuilds nothing.
    out, changed = _images_playbook()
    assert changed == 0, out[-4000:]
    assert _image(stale_image)['Id'] == after['Id']
