# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Continuous WAL shipping (issue 12 item 9) against the real PostgreSQL 17 and moto S3 of conftest.py.

The shipper runs as the backup container runs it: ``roles/backup/files/wal-shipper`` with python3 of the
backup image, a config directory laid out like /etc/psscript (jobs/settings.yml, secrets/s3.json), the
WAL archive mounted read-only. Then the WAL it shipped, and only that (the local archive is gone), takes a
restore from S3 to rows written after the last backup.

    flock /tmp/psscript-integration.lock .venv/bin/python -m pytest tests/integration/test_wal_shipping.py -q
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time

import pytest
from conftest import COLLECTION_ROOT, NETWORK, PREFIX, docker
from test_pg_backup import ok, wait_for

pytestmark = pytest.mark.integration

SHIPPER = PREFIX + '-walship'
IN_COLLECTIONS = '/usr/share/ansible/collections'
SCRIPT = IN_COLLECTIONS + '/ansible_collections/psscript/infra/roles/backup/files/wal-shipper'
# The bound the issue sets for the off-site copy; the shipper runs every second here.
RPO_BOUND = 60


def switch_and_archive(db):
    """Close the current WAL segment; wait until the archiver copied it; return its name and when it was there."""
    segment = db.sql('SELECT pg_walfile_name(pg_switch_wal())')[0][0]
    wait_for(lambda: os.path.exists(os.path.join(db.wal_dir, segment)), 300, 'segment %s in the archive' % segment)
    return segment, time.time()


def wal_keys(s3, prefix):
    return set(k.rsplit('/', 1)[1] for k in s3.keys('%s/postgres/wal/' % prefix))


@pytest.fixture
def shipper(stack, s3, tmp_path):
    """Start the backup container's WAL shipper; ``start(prefix)`` returns its log path on the host."""
    logs = tmp_path / 'logs'
    logs.mkdir()
    conf = tmp_path / 'etc-psscript'
    (conf / 'jobs').mkdir(parents=True)
    (conf / 'secrets').mkdir()

    def start(prefix, interval=1, params=None):
        (conf / 'jobs' / 'settings.yml').write_text('s3: true\nwal_ship_interval: %d\n' % interval)
        (conf / 'secrets' / 's3.json').write_text(json.dumps(params or s3.params(prefix, sse='AES256')))
        docker('rm', '-f', SHIPPER, check=False)
        docker('run', '-d', '--name', SHIPPER, '--network', NETWORK,
               '-v', '%s:%s/ansible_collections/psscript/infra:ro' % (COLLECTION_ROOT, IN_COLLECTIONS),
               '-v', '%s:/etc/psscript:ro' % conf, '-v', '%s:/wal-archive:ro' % stack.wal_dir,
               '-v', '%s:/backups/logs' % logs, '-e', 'ANSIBLE_COLLECTIONS_PATH=' + IN_COLLECTIONS,
               '--entrypoint', '/usr/bin/python3', 'psscript/backup:17', SCRIPT)
        return str(logs / 'backup.log')
    yield start
    docker('rm', '-f', SHIPPER, check=False)


def log_lines(path):
    return open(path).read().splitlines() if os.path.exists(path) else []


def test_archived_wal_reaches_s3_without_a_backup_and_restores_from_s3_alone(db_rows, s3, shipper, tmp_path):
    db = db_rows
    prefix = 'it/walship'
    params = s3.params(prefix, sse='AES256')
    backups = db.new_backup_dir('walship')
    full = ok(db.module(backups=backups, **db.backup_args(type='full', s3=params)))
    after_backup = wal_keys(s3, prefix)
    assert set(full['backup']['wal_files']) <= after_backup

    shipper(prefix)
    # Rows after the last backup: only the shipper can bring their WAL to S3.
    db.sql('INSERT INTO shipped SELECT generate_series(1, 40)')
    first, archived_at = switch_and_archive(db)
    seen = wait_for(lambda: first in wal_keys(s3, prefix) and time.time(), RPO_BOUND, '%s in S3' % first)
    assert seen - archived_at < RPO_BOUND
    db.sql('INSERT INTO shipped SELECT generate_series(41, 60)')
    second, archived_at = switch_and_archive(db)
    seen = wait_for(lambda: second in wal_keys(s3, prefix) and time.time(), RPO_BOUND, '%s in S3' % second)
    assert seen - archived_at < RPO_BOUND
    head = s3.client.head_object(Bucket=s3.bucket, Key='%s/postgres/wal/%s' % (prefix, second))
    with open(os.path.join(db.wal_dir, second), 'rb') as handle:
        assert head['Metadata']['sha256'] == hashlib.sha256(handle.read()).hexdigest()
    assert head['ServerSideEncryption'] == 'AES256'
    # Nothing older than what the backup uploaded was shipped (remote retention's floor), nothing deleted.
    shipped = wal_keys(s3, prefix) - after_backup
    assert after_backup <= wal_keys(s3, prefix)
    assert min(n[8:] for n in shipped if len(n) == 24) > min(n[8:] for n in after_backup if len(n) == 24)

    # The lag the catalog reports, and a one-pass ship_wal that finds nothing left to do.
    listed = ok(db.module(backups=backups, action='list', wal_archive_dir='/wal-archive', s3=params))
    assert listed['wal_shipping']['pending'] == 0 and listed['wal_shipping']['lag_seconds'] == 0
    assert listed['wal_shipping']['newest_in_s3'] == listed['wal_shipping']['newest_archived'] == second
    once = ok(db.module(backups=backups, action='ship_wal', wal_archive_dir='/wal-archive', s3=params))
    assert once['changed'] is False and once['wal_uploaded'] == [] and once['wal_shipping']['passes'] == 1

    # The backups and the WAL archive are lost: the restore takes the backup and every WAL file from S3.
    shutil.rmtree(backups)
    os.makedirs(backups)
    lost_archive = str(tmp_path / 'lost-archive')
    os.makedirs(lost_archive)
    os.chmod(lost_archive, 0o755)
    restores = db.new_backup_dir('walship-restores')
    os.chmod(restores, 0o755)
    restored = ok(db.module(backups=backups, wal=lost_archive, volumes=['%s:/restore' % restores],
                            action='restore', restore_dir='/restore/from-shipped-wal', wal_archive_dir='/wal-archive',
                            s3=params, check_query='SELECT count(*), max(id) FROM shipped'))
    assert restored['downloaded_from_s3'] == [full['backup_id']]
    assert restored['target_reached'] is True and restored['check_result'] == '60|60', restored
    assert restored['wal_from_s3'] > len(full['backup']['wal_files'])
    assert not [line for line in log_lines(os.path.join(str(tmp_path), 'logs', 'backup.log')) if 'FAILED' in line]


def test_one_pass_ship_wal_uploads_what_s3_lacks(db_rows, s3):
    db = db_rows
    prefix = 'it/walship-once'
    params = s3.params(prefix)
    db.sql('INSERT INTO shipped SELECT generate_series(1001, 1010)')
    segment, dummy = switch_and_archive(db)
    plan = ok(db.module(check_mode=True, action='ship_wal', wal_archive_dir='/wal-archive', s3=params))
    assert plan['changed'] is True and plan['wal_shipping']['pending'] >= 1 and wal_keys(s3, prefix) == set()
    done = ok(db.module(action='ship_wal', wal_archive_dir='/wal-archive', s3=params))
    assert done['changed'] is True and segment in done['wal_uploaded'] and segment in wal_keys(s3, prefix)
    assert done['wal_shipping']['pending'] == 0
    refused = db.module(action='ship_wal', s3=params)
    assert refused.get('failed') and 'needs s3' in refused['msg'] and 'wal_archive_dir' in refused['msg']


def test_shipper_survives_an_s3_outage_and_logs_each_failure(db_rows, s3, shipper):
    db = db_rows
    prefix = 'it/walship-outage'
    # A short read timeout and one attempt per request (the s3 options, default 120 s and 5): a failure is
    # logged within seconds of the outage, not after the default client's minutes of waiting and retrying.
    log = shipper(prefix, params=s3.params(prefix, sse='AES256', read_timeout=5, max_attempts=1))
    wait_for(lambda: 'shipping /wal-archive' in docker('logs', SHIPPER, check=False).stdout, 60, 'the shipper to start')
    # The S3 endpoint becomes unreachable for the shipper (its network is gone), while WAL keeps being archived.
    docker('network', 'disconnect', NETWORK, SHIPPER)
    try:
        db.sql('INSERT INTO shipped SELECT generate_series(2001, 2010)')
        segment, dummy = switch_and_archive(db)
        # How long a failure takes is the S3 client's policy (here read_timeout 5 s, one attempt); the bound
        # leaves room for the default one's minutes as well.
        wait_for(lambda: len([line for line in log_lines(log) if 'wal-ship FAILED' in line]) >= 2, 420,
                 'two failures in the log')
    finally:
        docker('network', 'connect', NETWORK, SHIPPER)
    failures = [line for line in log_lines(log) if 'wal-ship FAILED' in line]
    assert 'Cannot reach the S3 endpoint' in failures[0] and '(1 in a row)' in failures[0], failures
    assert '(2 in a row)' in failures[1]
    # Back, it ships what piled up (within the back-off bound plus a pass) and says so once.
    wait_for(lambda: segment in wal_keys(s3, prefix), 120, '%s in S3 after the outage' % segment)
    wait_for(lambda: any('wal-ship ok again after' in line for line in log_lines(log)), 30, 'the recovery line')


@pytest.fixture(scope='module')
def db_rows(stack):
    stack.sql('CREATE TABLE IF NOT EXISTS shipped (id int PRIMARY KEY)')
    return stack
