# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A real S3 HTTP endpoint for the tests: moto's server in a container on the test's own network.

The backup modules run inside the backup container, so the endpoint must be reachable from there:
it is a container on the same Docker network (``http://<ip>:9000``), published on 127.0.0.1 as
well so that a test can check the bucket with boto3 from the host.

    python3 tests/support/s3server.py start NAME NETWORK [IP]    # prints the host endpoint
    python3 tests/support/s3server.py stop NAME
    python3 tests/support/s3server.py build                      # the image only (make test builds it early)

or, from Python: ``endpoint = s3server.start(name, network, ip)``; ``s3server.stop(name)``.
Credentials are moto's: any access key works; the tests use ``testing``/``testing``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

IMAGE = 'psscript-test/s3:moto'
CONTEXT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 's3')
ACCESS_KEY = 'testing'
SECRET_KEY = 'testing'
REGION = 'us-east-1'


def _docker(*args, check=True):
    proc = subprocess.run(['docker'] + list(args), capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise RuntimeError('docker %s failed (%s): %s %s' % (' '.join(args), proc.returncode, proc.stdout, proc.stderr))
    return proc


def build():
    """Build the test image (layers cached by the engine: a rebuild with no change takes a second)."""
    _docker('build', '-q', '-t', IMAGE, CONTEXT)
    return IMAGE


def stop(name):
    _docker('rm', '-f', '-v', name, check=False)


def start(name, network, ip=None, timeout=60):
    """Start a fresh endpoint (removing an earlier one of that name); return the host endpoint URL."""
    build()
    stop(name)
    args = ['run', '-d', '--name', name, '--network', network, '-p', '127.0.0.1::9000',
            '--label', 'io.psscript.test=s3']
    if ip:
        args += ['--ip', ip]
    _docker(*(args + [IMAGE]))
    port = _docker('port', name, '9000/tcp').stdout.strip().splitlines()[0].rsplit(':', 1)[1]
    endpoint = 'http://127.0.0.1:%s' % port
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(endpoint + '/', timeout=2):
                return endpoint
        except Exception as exc:  # not up yet
            if time.monotonic() > deadline:
                logs = _docker('logs', name, check=False)
                raise RuntimeError('S3 endpoint %s did not answer in %ss (%s): %s %s'
                                   % (name, timeout, exc, logs.stdout, logs.stderr))
            time.sleep(0.5)


def network_endpoint(name, port=9000):
    """The URL other containers on the network use."""
    fmt = '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}'
    ip = _docker('inspect', '-f', fmt, name).stdout.split()[0]
    return 'http://%s:%s' % (ip, port)


def main(argv):
    if len(argv) >= 3 and argv[0] == 'start':
        print(start(argv[1], argv[2], argv[3] if len(argv) > 3 else None))
        return 0
    if len(argv) == 2 and argv[0] == 'stop':
        stop(argv[1])
        return 0
    if argv == ['build']:
        print(build())
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
