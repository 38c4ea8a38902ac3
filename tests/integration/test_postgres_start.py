# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""archive_timeout holds from the first minute of every start of the stack's PostgreSQL image (#12 item 9).

PostgreSQL 17's checkpointer computes its first sleep while the server is still in recovery, leaves
archive_timeout out of it (``RecoveryInProgress()``), and sleeps a whole checkpoint_timeout unless
something wakes it. The image's entrypoint (roles/images/files/postgres/docker-entrypoint.sh) sends one
reload once the server is out of recovery. Here a committed write after each kind of start must reach
the WAL archive within archive_timeout (5 s) plus a margin, far below checkpoint_timeout (300 s):
the first start (initdb), a restart by the engine (``docker restart``), and a crash (``pg_ctl stop -m
immediate``) after which the container's restart policy starts it again, with crash recovery.

Its own container, volume and network (``psscript-dev-pgstart*``, no fixed subnet, no published port),
removed before (leftovers) and after:

    flock /tmp/psscript-integration.lock .venv/bin/python -m pytest tests/integration/test_postgres_start.py -q
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import pytest
from conftest import PG_HBA_CONF, PG_IMAGE, PG_UID, POSTGRESQL_CONF, SUPERUSER_PASSWORD, docker
from test_pg_backup import wait_for

pytestmark = pytest.mark.integration

NAME = 'psscript-dev-pgstart'
NETWORK = NAME + '-net'
VOLUME = NAME + '-pgdata'
ARCHIVE_TIMEOUT = 5
CHECKPOINT_TIMEOUT = 300
# Start-up, the reload's poll, archiving and a loaded 2-core machine; still far below checkpoint_timeout.
MARGIN = 25
# Later lines win in postgresql.conf.
CONF = POSTGRESQL_CONF + 'archive_timeout = %d\ncheckpoint_timeout = %d\n' % (ARCHIVE_TIMEOUT, CHECKPOINT_TIMEOUT)


def _cleanup():
    docker('rm', '-f', '-v', NAME, check=False)
    docker('network', 'rm', NETWORK, check=False)
    docker('volume', 'rm', '-f', VOLUME, check=False)


def psql(query):
    return docker('exec', '-u', 'postgres', NAME, 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', query).stdout.strip()


def restarts():
    return int(docker('inspect', '-f', '{{.RestartCount}}', NAME).stdout.strip())


def accepting():
    return docker('exec', NAME, 'pg_isready', '-q', '-h', '/var/run/postgresql', check=False).returncode == 0


def commit_and_wait_archived():
    """Commit one row; return the seconds until the WAL segment holding it is archived."""
    psql('CREATE TABLE IF NOT EXISTS start_probe (at timestamptz); INSERT INTO start_probe VALUES (now())')
    committed = time.monotonic()
    segment = psql('SELECT pg_walfile_name(pg_current_wal_lsn())')
    try:
        wait_for(lambda: psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")[:24] >= segment,
                 ARCHIVE_TIMEOUT + MARGIN, 'segment %s archived within archive_timeout (%d s) + %d s, not '
                 'checkpoint_timeout (%d s)' % (segment, ARCHIVE_TIMEOUT, MARGIN, CHECKPOINT_TIMEOUT))
    except AssertionError as err:
        raise AssertionError('%s; the server log:\n%s' % (err, docker('logs', '--tail', '30', NAME, check=False).stderr))
    return time.monotonic() - committed


@pytest.fixture(scope='module')
def server():
    if docker('image', 'inspect', PG_IMAGE, check=False).returncode != 0:
        pytest.skip('%s is not built: run `make images`' % PG_IMAGE)
    _cleanup()
    workdir = tempfile.mkdtemp(prefix=NAME + '-')
    conf, wal = os.path.join(workdir, 'etc-psscript'), os.path.join(workdir, 'wal-archive')
    os.makedirs(os.path.join(conf, 'secrets'))
    for rel, text in (('postgresql.conf', CONF), ('pg_hba.conf', PG_HBA_CONF),
                      (os.path.join('secrets', 'postgres_password'), SUPERUSER_PASSWORD)):
        with open(os.path.join(conf, rel), 'w') as handle:
            handle.write(text)
    os.chmod(os.path.join(conf, 'secrets', 'postgres_password'), 0o600)
    os.makedirs(wal, 0o700)
    for path in (conf, os.path.join(conf, 'secrets'), wal) + tuple(
            os.path.join(conf, rel) for rel in ('postgresql.conf', 'pg_hba.conf', 'secrets/postgres_password')):
        os.chown(path, PG_UID, PG_UID)
    try:
        docker('network', 'create', NETWORK)
        docker('volume', 'create', VOLUME)
        docker('run', '-d', '--name', NAME, '--network', NETWORK, '--restart', 'unless-stopped',
               '-v', '%s:/etc/psscript:ro' % conf, '-v', '%s:/var/lib/postgresql/wal-archive' % wal,
               '-v', '%s:/var/lib/postgresql/data' % VOLUME, PG_IMAGE)
        yield
    finally:
        _cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def _first_start():
    """The container the fixture started: initdb, then the server's first start."""


def _engine_restart():
    wait_for(accepting, 120, 'PostgreSQL accepting connections before the restart')
    docker('restart', NAME)


def _crash_then_restart_policy():
    wait_for(accepting, 120, 'PostgreSQL accepting connections before the crash')
    before = restarts()
    docker('exec', '-u', 'postgres', NAME, 'pg_ctl', 'stop', '-m', 'immediate', '-D', '/var/lib/postgresql/data/pgdata',
           check=False)
    wait_for(lambda: restarts() > before, 60, 'the restart policy starting the container again')


@pytest.mark.parametrize('start', [_first_start, _engine_restart, _crash_then_restart_policy],
                         ids=['first-start', 'docker-restart', 'crash-and-restart-policy'])
def test_a_write_right_after_a_start_is_archived_within_archive_timeout(server, start):
    start()
    wait_for(accepting, 120, 'PostgreSQL accepting connections')
    seconds = commit_and_wait_archived()
    print(json.dumps(dict(start=start.__name__, archived_after=round(seconds, 1))))
    assert seconds <= ARCHIVE_TIMEOUT + MARGIN
