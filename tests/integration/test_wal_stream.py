# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""WAL streaming (backup_wal_source stream) against the real PostgreSQL 17 of conftest.py.

The backup container runs as the backup role deploys it in stream mode: the backup image with the role's
entrypoint (templates/entrypoint.j2 rendered with the role's paths), which keeps the WAL shipper and the
WAL receiver (files/wal-receiver) alive beside cron, a config directory laid out like /etc/psscript
(jobs/settings.yml with wal_source stream, secrets/postgres_backup_password 0600, the collection) and its
own WAL archive. The server's own archive (archive_command) is the reference: every segment the receiver
completes must be the same bytes.

    flock /tmp/psscript-integration.lock .venv/bin/python -m pytest tests/integration/test_wal_stream.py -q
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time

import jinja2
import pytest
import yaml
from conftest import (BACKUP_PASSWORD, BACKUP_USER, COLLECTION_ROOT, LIVE_IP, LIVE_NAME, NETWORK, PG_IP, PREFIX, docker,
                      live_sql, start_live_server)
from test_pg_backup import ok, wait_for

pytestmark = pytest.mark.integration

RECEIVER = PREFIX + '-walrecv'
SLOT = 'psscript_dev_backup_walrecv'
SEGMENT_RE = re.compile(r'^[0-9A-F]{24}$')
# "within seconds": a committed transaction's segment, closed by pg_switch_wal, is in the backup's archive.
ARRIVAL_BOUND = 15


def render_entrypoint():
    """roles/backup/templates/entrypoint.j2 with the role's paths (vars/main.yml), stream mode."""
    with open(os.path.join(COLLECTION_ROOT, 'roles', 'backup', 'templates', 'entrypoint.j2')) as handle:
        template = jinja2.Environment(trim_blocks=True).from_string(handle.read())
    with open(os.path.join(COLLECTION_ROOT, 'roles', 'backup', 'vars', 'main.yml')) as handle:
        role_vars = yaml.safe_load(handle)
    template.environment.filters['bool'] = bool
    return template.render(ansible_managed='test_wal_stream.py', stack_container_name=RECEIVER, backup_wal_stream=True,
                           **dict((k, role_vars[k]) for k in ('backup_collections_dir', 'backup_jobs_dir',
                                                             'backup_config_mount', 'backup_log_dir'))
                           | {'backup_wal_archive_dir': '/wal-archive'})


def sha256(path):
    with open(path, 'rb') as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def segments(path):
    return sorted(n for n in os.listdir(path) if SEGMENT_RE.match(n))


def segno(name):
    return int(name[8:16], 16) * 0x100 + int(name[16:24], 16)


def switch(db):
    """A commit, then close its segment; wait until the server archived it; return its name."""
    db.sql('SELECT pg_current_xact_id()')
    segment = db.sql('SELECT pg_walfile_name(pg_switch_wal())')[0][0]
    wait_for(lambda: os.path.exists(os.path.join(db.wal_dir, segment)), 300, 'segment %s in the server archive' % segment)
    return segment


def settings(conf, host):
    (conf / 'jobs' / 'settings.yml').write_text(yaml.safe_dump(dict(
        postgres_host=host, postgres_port=5432, postgres_user=BACKUP_USER, s3=False, wal_ship_interval=5,
        wal_source='stream', wal_slot=SLOT)))


@pytest.fixture
def receiver(stack, tmp_path):
    """The backup container in stream mode; yields its archive directory (a host directory here)."""
    conf = tmp_path / 'etc-psscript'
    for sub in ('jobs', 'secrets', 'collections/ansible_collections/psscript/infra'):
        (conf / sub).mkdir(parents=True)
    settings(conf, PG_IP)
    (conf / 'jobs' / 'entrypoint').write_text(render_entrypoint())
    os.chmod(conf / 'jobs' / 'entrypoint', 0o755)
    for name in ('wal-shipper', 'wal-receiver'):
        shutil.copy(os.path.join(COLLECTION_ROOT, 'roles', 'backup', 'files', name), conf / 'jobs' / name)
    (conf / 'secrets' / 'postgres_backup_password').write_text(BACKUP_PASSWORD + '\n')
    os.chmod(conf / 'secrets' / 'postgres_backup_password', 0o600)
    os.chmod(conf / 'secrets', 0o700)
    archive = tmp_path / 'wal-stream'
    archive.mkdir()
    logs = tmp_path / 'logs'
    logs.mkdir()
    docker('rm', '-f', RECEIVER, check=False)
    docker('run', '-d', '--name', RECEIVER, '--network', NETWORK,
           '-v', '%s:/etc/psscript:ro' % conf,
           '-v', '%s:/etc/psscript/collections/ansible_collections/psscript/infra:ro' % COLLECTION_ROOT,
           '-v', '%s:/wal-archive' % archive, '-v', '%s:/backups/logs' % logs,
           '-e', 'ANSIBLE_COLLECTIONS_PATH=/etc/psscript/collections',
           '--entrypoint', '/etc/psscript/jobs/entrypoint', 'psscript/backup:17')
    yield str(archive)
    logs_text = docker('logs', RECEIVER, check=False)
    print(logs_text.stdout, logs_text.stderr)
    docker('rm', '-f', RECEIVER, check=False)
    wait_for(lambda: stack.sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '%s' AND active" % SLOT)[0][0] == 0,
             60, 'slot inactive')
    stack.sql("SELECT pg_drop_replication_slot('%s')" % SLOT)


def test_streamed_archive_is_continuous_bit_identical_restorable_and_survives_a_kill(stack, receiver, tmp_path):
    db = stack
    # The receiver creates its slot and streams through it.
    wait_for(lambda: db.sql("SELECT active FROM pg_replication_slots WHERE slot_name = '%s' AND slot_type = 'physical'"
                            % SLOT) == [(True,)], 60, 'the receiver streaming through slot %s' % SLOT)
    # A server idle at a segment boundary (the tests before this one end with pg_switch_wal) sends nothing:
    # write a commit record, so the receiver has WAL to write.
    db.sql('SELECT pg_current_xact_id()')
    wait_for(lambda: [n for n in os.listdir(receiver) if n.endswith('.partial')], 30, 'a .partial being received')
    # The archive has the owner and mode of an archive_command archive (restores read it as postgres).
    assert os.stat(receiver).st_uid == 999 and os.stat(receiver).st_mode & 0o777 == 0o700

    # WAL arrives continuously: each committed segment is there seconds after pg_switch_wal, same bytes.
    db.sql('CREATE TABLE streamed (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())')
    for first in (1, 11, 21):
        db.sql('INSERT INTO streamed (id) SELECT generate_series(%d, %d)' % (first, first + 9))
        segment = switch(db)
        switched = time.time()
        wait_for(lambda: os.path.exists(os.path.join(receiver, segment)), ARRIVAL_BOUND,
                 '%s in the streamed archive' % segment)
        print('segment %s received %.1f s after the server archived it' % (segment, time.time() - switched))
        assert sha256(os.path.join(receiver, segment)) == sha256(os.path.join(db.wal_dir, segment))

    # A full backup waits for its WAL in the streamed archive and is published.
    backups = db.new_backup_dir('walstream')
    full = ok(db.module(backups=backups, wal=receiver, **db.backup_args(type='full')))
    assert full['backup']['wal_files'] and all(os.path.exists(os.path.join(receiver, n)) for n in full['backup']['wal_files'])

    db.sql('INSERT INTO streamed (id) SELECT generate_series(31, 40)')
    time.sleep(1)
    target = db.sql('SELECT clock_timestamp()')[0][0].isoformat()
    time.sleep(1)
    db.sql('INSERT INTO streamed (id) SELECT generate_series(41, 50)')

    # Kill the backup container (no clean shutdown), write WAL meanwhile, start it again: the slot kept the
    # WAL, the receiver resumes from its .partial, and the archive has no gap.
    before_kill = segments(receiver)
    docker('kill', RECEIVER)
    missed = [switch(db) for dummy in range(3)]
    assert db.sql("SELECT active FROM pg_replication_slots WHERE slot_name = '%s'" % SLOT) == [(False,)]
    docker('start', RECEIVER)
    wait_for(lambda: all(os.path.exists(os.path.join(receiver, n)) for n in missed), 120,
             'the segments written while the receiver was down: %s' % missed)
    last = switch(db)
    wait_for(lambda: os.path.exists(os.path.join(receiver, last)), ARRIVAL_BOUND, '%s after the restart' % last)
    names = [n for n in segments(receiver) if n[:8] == last[:8]]
    numbers = [segno(n) for n in names]
    assert numbers == list(range(numbers[0], numbers[-1] + 1)), 'gap in the streamed archive: %s' % names
    assert segno(before_kill[-1]) < segno(missed[0])
    for name in missed + [last]:
        assert sha256(os.path.join(receiver, name)) == sha256(os.path.join(db.wal_dir, name)), name

    # Point-in-time recovery from the streamed archive alone, to the marker: exactly rows 1-40.
    restores = db.new_backup_dir('walstream-restores')
    os.chmod(restores, 0o755)
    at_target = ok(db.module(backups=backups, wal=receiver, volumes=['%s:/restore' % restores],
                             action='restore', wal_archive_dir='/wal-archive', target_time=target,
                             restore_dir='/restore/at-target', check_query='SELECT count(*), max(id) FROM streamed'))
    assert at_target['restored_chain'] == [full['backup_id']] and at_target['target_reached'] is True
    assert at_target['check_result'] == '40|40'
    # And to the end of the streamed WAL: every row.
    latest = ok(db.module(backups=backups, wal=receiver, volumes=['%s:/restore' % restores],
                          action='restore', wal_archive_dir='/wal-archive', restore_dir='/restore/latest',
                          check_query='SELECT count(*), max(id) FROM streamed'))
    assert latest['check_result'] == '50|50'

    # A live restore to the marker forks the history (timeline 2 leaves timeline 1 at the marker), while the
    # streamed archive holds timeline 1 past it. The receiver, pointed at the restored server, moves what the
    # new history does not hold to abandoned/ and follows the server onto timeline 2.
    volume, live_archive = tmp_path / 'live-volume', tmp_path / 'live-archive'
    for path in (volume, live_archive):
        path.mkdir()
        os.chown(path, 999, 999)
    live = ok(db.module(backups=backups, wal=receiver, volumes=['%s:/var/lib/postgresql/data' % volume],
                        action='restore', live=True, wal_archive_dir='/wal-archive', target_time=target,
                        restore_dir='/var/lib/postgresql/data/pgdata'))
    assert live['target_reached'] is True
    start_live_server(db, str(volume), str(live_archive))
    try:
        assert live_sql('SELECT count(*) FROM streamed') == '40'
        settings(tmp_path / 'etc-psscript', LIVE_IP)
        wait_for(lambda: live_sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '%s' AND active" % SLOT)
                 == '1', 120, 'the receiver streaming from the restored server')
        assert os.path.isdir(os.path.join(receiver, 'abandoned'))
        abandoned = os.listdir(os.path.join(receiver, 'abandoned'))
        assert last in abandoned and all(n.startswith('00000001') for n in abandoned), abandoned
        live_sql('INSERT INTO streamed (id) SELECT generate_series(51, 55)')
        new = live_sql('SELECT pg_walfile_name(pg_switch_wal())')
        assert new.startswith('00000002')
        wait_for(lambda: os.path.exists(os.path.join(receiver, new)), ARRIVAL_BOUND, '%s on the new timeline' % new)
        assert os.path.exists(os.path.join(receiver, '00000002.history'))
        # The streamed archive restores the new history: the backup, timeline 1 to the marker, then timeline 2.
        after = ok(db.module(backups=backups, wal=receiver, volumes=['%s:/restore' % restores],
                             action='restore', wal_archive_dir='/wal-archive', restore_dir='/restore/after-fork',
                             check_query='SELECT count(*), max(id) FROM streamed'))
        assert after['check_result'] == '45|55'
    finally:
        docker('rm', '-f', '-v', LIVE_NAME, check=False)
