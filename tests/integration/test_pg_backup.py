# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""pg_backup against a real PostgreSQL 17 (see conftest.py for the server and how the module runs).

Each test uses its own backup directory; they share the server and its WAL archive. The prune test,
which removes archived WAL older than its oldest kept backup, runs last so it cannot take WAL away
from another test's backups.

    .venv/bin/python -m pytest tests/integration -q
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import time

import pytest
from conftest import (BACKUP_PASSWORD, BACKUP_USER, LIVE_IP, LIVE_NAME, flip_byte, live_sql, start_live_server,
                      stop_live_server)

pytestmark = pytest.mark.integration


@pytest.fixture(scope='module')
def db(stack):
    """A database with a 20 MB table, frozen and checkpointed so later backups see only new changes."""
    stack.sql("CREATE TABLE big AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 300000) g")
    stack.sql('CREATE TABLE small (id int PRIMARY KEY, note text)')
    stack.sql('VACUUM (FREEZE, ANALYZE)')
    stack.sql('CHECKPOINT')
    return stack


def entry(backups, backup_id):
    with open(os.path.join(backups, backup_id, 'catalog.json')) as handle:
        return json.load(handle)


def ok(result):
    assert result['_rc'] == 0 and not result.get('failed'), (result.get('msg'), result.get('recovery_log'), result)
    return result


def failed(result):
    assert result['_rc'] != 0 and result.get('failed'), result
    return result


def add_rows(stack, first, count=100):
    stack.sql("INSERT INTO small SELECT g, 'row ' || g FROM generate_series(%d, %d) g" % (first, first + count - 1))


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError('timed out waiting for ' + what)


def test_check_mode_writes_nothing(db):
    backups = db.new_backup_dir('check-mode')
    result = ok(db.module(check_mode=True, backups=backups, **db.backup_args(type='incremental', fallback_to_full=True)))
    assert result['changed'] is True and result['msg'].startswith('Would take a full backup')
    assert result['fell_back_to_full'] is True and 'no backup of this cluster' in result['_stderr']
    assert result['expected_bytes'] > 20 * 1024 * 1024  # pg_database_size() sum: the 20 MB table is in it
    assert os.listdir(backups) == []
    listed = ok(db.module(check_mode=True, backups=backups, action='list'))
    assert listed['changed'] is False and listed['backups'] == [] and listed['latest'] is None


def test_full_then_small_incremental_verify_and_detect_damage(db):
    backups = db.new_backup_dir('story')
    full = ok(db.module(backups=backups, **db.backup_args(type='full')))
    assert full['changed'] and full['backup']['type'] == 'full' and full['backup']['parent'] is None
    add_rows(db, 1)
    inc = ok(db.module(backups=backups, **db.backup_args(type='incremental')))
    assert inc['backup']['type'] == 'incremental'
    assert inc['backup']['parent'] == full['backup_id']
    assert inc['unsealed'] == [full['backup_id']]  # never verified yet: the backup job verifies it next
    # A few rows changed: the incremental is a small fraction of the full one.
    assert inc['backup']['bytes'] * 5 < full['backup']['bytes'], (inc['backup']['bytes'], full['backup']['bytes'])

    # What the catalog recorded matches what is on disk and what the server says.
    recorded = entry(backups, full['backup_id'])
    assert recorded['system_identifier'] == db.sql('SELECT system_identifier::text FROM pg_control_system()')[0][0]
    assert recorded['server_version_num'] // 10000 == 17
    assert all(os.path.exists(os.path.join(db.wal_dir, name)) for name in recorded['wal_files'])
    assert sorted(os.listdir(os.path.join(backups, full['backup_id']))) == ['backup_manifest', 'catalog.json', 'data']
    assert recorded['files']['data/PG_VERSION']['size'] == 3

    listed = ok(db.module(backups=backups, action='list'))
    assert [b['id'] for b in listed['backups']] == [full['backup_id'], inc['backup_id']]
    assert listed['latest'] == inc['backup_id'] and listed['last_verified_full'] is None

    verified = ok(db.module(backups=backups, action='verify', backup_id='all', wal_archive_dir='/wal-archive'))
    assert [r['ok'] for r in verified['results']] == [True, True]
    assert 'pg_verifybackup with WAL' in verified['results'][0]['checks']
    assert any(c.startswith('pg_combinebackup --dry-run') for c in verified['results'][1]['checks'])
    assert entry(backups, full['backup_id'])['verified'] is True
    again = ok(db.module(backups=backups, action='verify', backup_id='all', wal_archive_dir='/wal-archive'))
    assert again['changed'] is False  # the recorded state did not change
    assert ok(db.module(backups=backups, action='list'))['last_verified_full'] == full['backup_id']

    # One flipped byte in a relation file of the incremental: our SHA-256 catches it.
    inc_dir = os.path.join(backups, inc['backup_id'])
    victim = sorted(glob.glob(os.path.join(inc_dir, 'data', 'base', '*', 'INCREMENTAL.*')),
                    key=os.path.getsize)[-1]
    flip_byte(victim, os.path.getsize(victim) - 10)
    bad = failed(db.module(backups=backups, action='verify', backup_id=inc['backup_id'], wal_archive_dir='/wal-archive'))
    rel = os.path.relpath(victim, inc_dir)
    assert rel in bad['msg'] and 'SHA-256' in bad['msg'] and 'take a new full backup' in bad['msg']
    assert entry(backups, inc['backup_id'])['verified'] is False
    listed = ok(db.module(backups=backups, action='list'))
    assert listed['latest'] == full['backup_id']  # the damaged one is no longer offered for restore

    # Damage the catalog did not see (say, before hashing): pg_verifybackup's manifest checksums catch it.
    victim = os.path.join(backups, full['backup_id'], 'data', 'PG_VERSION')
    flip_byte(victim, 0)
    recorded = entry(backups, full['backup_id'])
    with open(victim, 'rb') as handle:
        recorded['files']['data/PG_VERSION']['sha256'] = hashlib.sha256(handle.read()).hexdigest()
    with open(os.path.join(backups, full['backup_id'], 'catalog.json'), 'w') as handle:
        json.dump(recorded, handle)
    bad = failed(db.module(backups=backups, action='verify', backup_id=full['backup_id']))
    assert 'pg_verifybackup' in bad['msg'] and 'PG_VERSION' in bad['msg']
    assert bad['results'][0]['checks'] == ['sha256', 'pg_verifybackup']


def test_compressed_chain_verifies_by_unpacking(db):
    backups = db.new_backup_dir('compressed')
    full = ok(db.module(backups=backups, **db.backup_args(type='full', compress=True)))
    add_rows(db, 1001)
    inc = ok(db.module(backups=backups, **db.backup_args(type='incremental', compress=True)))
    assert inc['backup']['parent'] == full['backup_id']
    for result in (full, inc):
        assert result['backup']['layout'] == 'tar.zst' and result['backup']['compressed'] is True
        # Compressed by pg_basebackup in its stream; the manifest beside the archive keeps CRC32C file checksums (the
        # catalog's SHA-256 of the archive covers every byte; pg_verifybackup checks CRC32C after unpacking).
        assert result['backup']['compression'] == 'client-zstd' and result['backup']['manifest_checksums'] == 'CRC32C'
        assert sorted(os.listdir(os.path.join(backups, result['backup_id']))) == [
            'backup_manifest', 'catalog.json', 'data.tar.zst']
        with open(os.path.join(backups, result['backup_id'], 'backup_manifest')) as handle:
            assert set(f['Checksum-Algorithm'] for f in json.load(handle)['Files']) == {'CRC32C'}
    assert full['backup']['bytes'] * 2 < full['backup']['data_bytes']  # zstd did compress

    verified = ok(db.module(backups=backups, action='verify', backup_id='all', wal_archive_dir='/wal-archive'))
    assert [r['ok'] for r in verified['results']] == [True, True]
    assert any(c.startswith('pg_combinebackup --dry-run') for c in verified['results'][1]['checks'])
    assert not [n for n in os.listdir(backups) if n.startswith('.scratch-')]  # scratch space cleaned

    flip_byte(os.path.join(backups, full['backup_id'], 'data.tar.zst'), 1000)
    bad = failed(db.module(backups=backups, action='verify', backup_id=full['backup_id']))
    assert 'data.tar.zst: SHA-256' in bad['msg']


def test_a_plain_backup_is_sealed_by_its_first_verify_and_a_changed_file_is_refused_either_way(db):
    """A plain backup is published unsealed: the sizes the manifest lists (checked against the files written) and our
    SHA-256 of the manifest, whose CRC32C checksums cover every file; the server computes no SHA-256 in the stream and
    the module reads no file. Its first verify hashes every file and, once pg_verifybackup agrees, records those
    hashes (sealed). A file changed before that is refused by pg_verifybackup, in verify and restore, and nothing is
    sealed; one changed after it, by the recorded SHA-256, before anything is touched."""
    backups = db.new_backup_dir('manifest-hashes')
    restores = db.new_backup_dir('manifest-hashes-restores')
    os.chmod(restores, 0o755)

    def restore(backup_id):
        return failed(db.module(backups=backups, volumes=['%s:/restore' % restores], action='restore',
                                backup_id=backup_id, wal_archive_dir='/wal-archive', restore_dir='/restore/r'))

    def victim_of(path):
        return sorted(glob.glob(os.path.join(path, 'data', 'base', '*', '*')), key=os.path.getsize)[-1]

    early = ok(db.module(backups=backups, **db.backup_args(type='full')))
    assert early['backup']['sealed'] is False
    path = os.path.join(backups, early['backup_id'])
    victim = victim_of(path)
    flip_byte(victim, os.path.getsize(victim) // 2)
    refused = restore(early['backup_id'])
    assert 'Restore refused: backup %s fails verification' % early['backup_id'] in refused['msg'], refused['msg']
    assert os.path.relpath(victim, os.path.join(path, 'data')) in refused['msg'] and os.listdir(restores) == []
    bad = failed(db.module(backups=backups, action='verify', backup_id=early['backup_id']))
    assert bad['results'][0]['checks'] == ['sha256 (to seal)', 'pg_verifybackup']
    assert entry(backups, early['backup_id'])['sealed'] is False
    assert entry(backups, early['backup_id'])['verified'] is False

    add_rows(db, 9001)  # ids no other test of this module inserts
    full = ok(db.module(backups=backups, **db.backup_args(type='full')))
    path = os.path.join(backups, full['backup_id'])
    recorded = entry(backups, full['backup_id'])
    assert recorded['manifest_checksums'] == 'CRC32C' and recorded['compression'] is None
    assert recorded['sealed'] is False and recorded['verified'] is None
    with open(os.path.join(path, 'data', 'backup_manifest')) as handle:
        listed = json.load(handle)['Files']
    assert listed and all(f['Checksum-Algorithm'] == 'CRC32C' for f in listed)
    assert sorted(recorded['files']) == sorted(['backup_manifest', 'data/backup_manifest'] +
                                               ['data/' + f['Path'] for f in listed])
    assert all(recorded['files']['data/' + f['Path']] == dict(size=f['Size']) for f in listed)
    with open(os.path.join(path, 'backup_manifest'), 'rb') as handle:
        assert recorded['files']['backup_manifest']['sha256'] == hashlib.sha256(handle.read()).hexdigest()

    sealed = ok(db.module(backups=backups, action='verify', backup_id=full['backup_id']))
    assert sealed['changed'] and sealed['results'][0]['checks'] == ['sha256 (to seal)', 'pg_verifybackup']
    recorded = entry(backups, full['backup_id'])
    assert recorded['sealed'] is True and recorded['verified'] is True
    for item in listed:
        with open(os.path.join(path, 'data', item['Path']), 'rb') as handle:
            actual = hashlib.sha256(handle.read()).hexdigest()
        assert recorded['files']['data/' + item['Path']] == dict(sha256=actual, size=item['Size'])
    assert ok(db.module(backups=backups, action='verify', backup_id=full['backup_id']))['results'][0]['checks'] == [
        'sha256', 'pg_verifybackup']

    victim = victim_of(path)
    flip_byte(victim, os.path.getsize(victim) // 2)
    rel = os.path.relpath(victim, path)
    refused = restore(full['backup_id'])
    assert 'Refusing to restore: backup files differ' in refused['msg'] and rel in refused['msg'], refused['msg']
    assert os.listdir(restores) == []
    bad = failed(db.module(backups=backups, action='verify', backup_id=full['backup_id'], wal_archive_dir='/wal-archive'))
    assert rel + ': SHA-256' in bad['msg']


def test_catalog_key_signs_entries_and_refuses_a_file_swapped_with_its_hash(db, tmp_path):
    """With catalog_key_file every entry carries an HMAC: a data file swapped together with the hash its entry
    records passes every hash check, and only the HMAC refuses it. Entries from before the key are refused
    until action=sign adopts them; sign never adopts an entry whose HMAC does not match."""
    backups = db.new_backup_dir('catalog-key')
    keys = tmp_path / 'keys'
    keys.mkdir()
    (keys / 'catalog').write_text('c' * 40 + '\n')
    keyed = dict(volumes=['%s:/keys:ro' % keys], catalog_key_file='/keys/catalog')
    before_key = ok(db.module(backups=backups, **db.backup_args(type='full')))
    assert 'hmac' not in entry(backups, before_key['backup_id'])
    add_rows(db, 7001)  # ids no other test of this module inserts
    signed = ok(db.module(backups=backups, **db.backup_args(type='full', **keyed)))
    assert len(entry(backups, signed['backup_id'])['hmac']) == 64

    listed = ok(db.module(backups=backups, action='list', **keyed))
    assert [b['id'] for b in listed['backups']] == [signed['backup_id']]
    assert [(u['id'], 'has no hmac' in u['error']) for u in listed['unreadable']] == [(before_key['backup_id'], True)]

    # Swap a file and its recorded hash (what an attacker with write access to the volume can do).
    victim = os.path.join(backups, signed['backup_id'], 'data', 'PG_VERSION')
    with open(victim, 'w') as handle:
        handle.write('16\n')
    recorded = entry(backups, signed['backup_id'])
    with open(victim, 'rb') as handle:
        recorded['files']['data/PG_VERSION'] = dict(recorded['files']['data/PG_VERSION'],
                                                   sha256=hashlib.sha256(handle.read()).hexdigest(), size=3)
    with open(os.path.join(backups, signed['backup_id'], 'catalog.json'), 'w') as handle:
        json.dump(recorded, handle)
    listed = ok(db.module(backups=backups, action='list', **keyed))
    assert listed['backups'] == [] and listed['latest'] is None
    swapped = [u for u in listed['unreadable'] if u['id'] == signed['backup_id']]
    assert len(swapped) == 1 and 'does not match its hmac' in swapped[0]['error']
    refused = failed(db.module(backups=backups, action='verify', backup_id=signed['backup_id'], **keyed))
    assert signed['backup_id'] in refused['msg']

    adopted = ok(db.module(backups=backups, action='sign', **keyed))
    assert adopted['changed'] and adopted['signed'] == [before_key['backup_id']]
    assert [u['id'] for u in adopted['refused']] == [signed['backup_id']]
    listed = ok(db.module(backups=backups, action='list', **keyed))
    assert [b['id'] for b in listed['backups']] == [before_key['backup_id']]
    assert ok(db.module(backups=backups, action='verify', backup_id=before_key['backup_id'], **keyed))['results'][0]['ok']


def test_incremental_without_wal_summaries_says_a_full_is_needed(db):
    backups = db.new_backup_dir('summaries')
    no_parent = failed(db.module(backups=backups, **db.backup_args(type='incremental')))
    assert 'no backup of this cluster' in no_parent['msg'] and 'fallback_to_full=true' in no_parent['msg']

    full = ok(db.module(backups=backups, **db.backup_args(type='full')))
    add_rows(db, 2001)
    db.sql('SELECT pg_switch_wal()')
    db.sql('CHECKPOINT')
    # Let the summarizer write summaries past the full backup's start, then lose them (what
    # wal_summary_keep_time does to summaries older than the last backup).
    start = entry(backups, full['backup_id'])['start_lsn']
    wait_for(lambda: db.sql("SELECT count(*) FROM pg_available_wal_summaries() WHERE end_lsn > '%s'" % start)[0][0],
             60, 'WAL summaries past the full backup')
    db.pg_exec('sh', '-c', 'rm -f "$PGDATA"/pg_wal/summaries/*.summary')

    refused = failed(db.module(backups=backups, **db.backup_args(type='incremental')))
    assert 'WAL summaries' in refused['msg'] and 'A full backup is needed' in refused['msg']
    assert full['backup_id'] in refused['msg']
    assert sorted(os.listdir(backups)) == ['.lock', full['backup_id']]  # no partial left

    fell_back = ok(db.module(backups=backups, **db.backup_args(type='incremental', fallback_to_full=True)))
    assert fell_back['fell_back_to_full'] is True and fell_back['backup']['type'] == 'full'
    assert 'Taking a full backup instead' in fell_back['_stderr']


def test_backup_is_not_published_until_its_wal_is_archived(db, tmp_path):
    backups = db.new_backup_dir('wal-missing')
    empty_archive = str(tmp_path / 'not-the-archive')
    os.makedirs(empty_archive)
    result = failed(db.module(backups=backups, wal=empty_archive, **db.backup_args(wal_wait_timeout=3)))
    assert 'did not reach /wal-archive within 3s' in result['msg'] and 'pg_stat_archiver' in result['msg']
    assert 'the partial backup was removed' in result['msg']
    # The backup role may not switch WAL: that is said, with the grant that would allow it.
    assert 'GRANT EXECUTE ON FUNCTION pg_switch_wal()' in result['_stderr']
    assert os.listdir(backups) == ['.lock']


def test_refuses_when_free_space_is_below_the_expected_size(db):
    small = ['--mount', 'type=tmpfs,destination=%s,tmpfs-size=8m' % db.in_backups]
    result = failed(db.module(mounts=small, **db.backup_args()))
    assert 'Not enough free space in /backups' in result['msg']
    assert 'pg_database_size' in result['msg'] and 'prune' in result['msg']


def _tmp_dirs(backups):
    return [n for n in os.listdir(backups) if n.startswith('.tmp-')]


def _tmp_has_data(backups):
    for name in _tmp_dirs(backups):
        if glob.glob(os.path.join(backups, name, 'data', 'base', '*', '*')):
            return name
    return None


def test_interrupted_backup_is_never_listed_and_prune_removes_it(db):
    backups = db.new_backup_dir('killed')
    name = db.prefix + '-runner-killed'
    proc = db.start_module(name, backups=backups, **db.backup_args(max_rate='32k'))
    try:
        staged = wait_for(lambda: _tmp_has_data(backups), 120, 'pg_basebackup to start writing')
        subprocess.run(['docker', 'kill', name], check=True, capture_output=True)  # SIGKILL: no cleanup runs
        proc.wait(60)
    finally:
        subprocess.run(['docker', 'rm', '-f', name], capture_output=True)
    assert _tmp_dirs(backups) == [staged]

    listed = ok(db.module(backups=backups, action='list'))
    assert listed['backups'] == [] and listed['latest'] is None
    assert [x['name'] for x in listed['leftovers']] == [staged]
    kept = ok(db.module(backups=backups, action='prune', keep_count=1))
    assert kept['removed_leftovers'] == [] and _tmp_dirs(backups) == [staged]  # younger than 24 h
    dry = ok(db.module(check_mode=True, backups=backups, action='prune', keep_count=1, stale_after_hours=0))
    assert [x['name'] for x in dry['removed_leftovers']] == [staged] and _tmp_dirs(backups) == [staged]
    pruned = ok(db.module(backups=backups, action='prune', keep_count=1, stale_after_hours=0))
    assert [x['name'] for x in pruned['removed_leftovers']] == [staged] and pruned['changed']
    assert _tmp_dirs(backups) == []


def test_failed_backup_removes_its_partial_directory(db):
    backups = db.new_backup_dir('terminated')
    name = db.prefix + '-runner-terminated'
    proc = db.start_module(name, backups=backups, **db.backup_args(max_rate='32k'))
    try:
        wait_for(lambda: _tmp_has_data(backups), 120, 'pg_basebackup to start writing')
        db.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'walsender'")
        result = failed(db.finish_module(proc, 120))
    finally:
        subprocess.run(['docker', 'rm', '-f', name], capture_output=True)
    assert 'pg_basebackup' in result['msg'] or 'base backup' in result['msg']
    assert 'run the backup again' in result['msg']
    assert sorted(os.listdir(backups)) == ['.lock']


def _flocks_on(path):
    """The flock modes (READ, WRITE) /proc/locks lists on the file at ``path`` (by device and inode)."""
    st = os.stat(path)
    wanted = '%02x:%02x:%d' % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    with open('/proc/locks') as handle:
        return [f[3] for f in (line.split() for line in handle) if len(f) > 5 and f[1] == 'FLOCK' and f[5] == wanted]


def _archive_current_wal(db):
    """Close the current WAL segment and wait until the archiver copied it."""
    segment = db.sql('SELECT pg_walfile_name(pg_switch_wal())')[0][0]
    # A bound, not a pause: with the machine's load at 11 the archiver once needed more than 60 s.
    wait_for(lambda: os.path.exists(os.path.join(db.wal_dir, segment)), 300, 'segment %s in the archive' % segment)


def test_restore_point_in_time_latest_and_by_id(db):
    backups = db.new_backup_dir('restore')
    restores = db.new_backup_dir('restores')
    os.chmod(restores, 0o755)
    mount = ['%s:/restore' % restores]

    def restore(check_mode=False, **args):
        args.update(action='restore', wal_archive_dir='/wal-archive', check_query='SELECT count(*), max(id) FROM pitr')
        return db.module(check_mode=check_mode, backups=backups, volumes=mount, **args)

    db.sql('CREATE TABLE pitr (id int)')
    a = ok(db.module(backups=backups, **db.backup_args(type='full', compress=True)))['backup_id']
    db.sql('INSERT INTO pitr SELECT generate_series(1, 10)')
    time.sleep(1)
    target = db.sql('SELECT clock_timestamp()')[0][0].isoformat()
    time.sleep(1)
    db.sql('INSERT INTO pitr SELECT generate_series(11, 20)')
    b = ok(db.module(backups=backups, **db.backup_args(type='incremental')))['backup_id']
    assert entry(backups, b)['parent'] == a and entry(backups, b)['started_at'] > target
    db.sql('INSERT INTO pitr SELECT generate_series(21, 30)')
    _archive_current_wal(db)

    dry = ok(restore(check_mode=True, target_time=target, restore_dir='/restore/at-target'))
    assert dry['changed'] and dry['restored_chain'] == [a] and os.listdir(restores) == []

    # To the target time: B ended after it, so the compressed full A is used and the WAL replayed.
    at_target = ok(restore(target_time=target, restore_dir='/restore/at-target'))
    assert at_target['restored_chain'] == [a]
    assert at_target['target_reached'] is True
    assert at_target['recovery_stop'].startswith('recovery stopping before commit of transaction')
    assert at_target['check_result'] == '10|10'
    restored = os.path.join(restores, 'at-target')
    assert os.path.exists(os.path.join(restored, 'PG_VERSION')) and not os.path.exists(os.path.join(restored, 'recovery.signal'))
    assert not [n for n in os.listdir(backups) if n.startswith('.scratch-')]

    # Latest: the whole chain A + B through pg_combinebackup, then all archived WAL.
    latest = ok(restore(restore_dir='/restore/latest'))
    assert latest['restored_chain'] == [a, b] and latest['check_result'] == '30|30'
    assert latest['recovery_stop'].startswith('redo done at')

    # One backup by id: its own end only.
    by_id = ok(restore(backup_id=b, restore_dir='/restore/by-id'))
    assert by_id['restored_chain'] == [a, b] and by_id['check_result'] == '20|20'
    assert by_id['recovery_stop'] == 'recovery stopping after reaching consistency'

    # What a plan chose, pinned: a newer full backup taken after the plan changes nothing. The restore
    # holds the readers lock from start to end: a cleanup meanwhile is refused, not half applied.
    plan = ok(restore(check_mode=True, restore_dir='/restore/pinned'))
    assert plan['restored_chain'] == [a, b]
    newer = ok(db.module(backups=backups, **db.backup_args(type='full')))['backup_id']
    pinned_args = dict(action='restore', wal_archive_dir='/wal-archive', backup_id=plan['restored_chain'][-1], to_end=True,
                       restore_dir='/restore/pinned', check_query='SELECT count(*), max(id) FROM pitr')
    # While the restore runs, /proc/locks shows its shared flock on <root>/.readers (looking takes no lock).
    readers = os.path.join(backups, '.readers')
    running = db.start_module('psscript-dev-backup-pinned-restore', backups=backups, volumes=mount, **pinned_args)
    held = set()
    try:
        while running.poll() is None:
            held.update(_flocks_on(readers))
            time.sleep(0.05)
        pinned = ok(db.finish_module(running, 600))
    finally:
        if running.poll() is None:
            running.kill()
    assert held == {'READ'}, held
    # A cleanup meets a restore's lock (held here, as the restore holds it): refused, nothing removed.
    with open(readers) as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
        during = failed(db.module(backups=backups, action='prune', keep_days=0, keep_count=1, wal_archive_dir='/wal-archive'))
    assert 'A restore is reading these backups' in during['msg']
    assert all(os.path.isdir(os.path.join(backups, i)) for i in (a, b, newer))
    assert pinned['restored_chain'] == [a, b] and pinned['check_result'] == '30|30'
    assert pinned['recovery_stop'].startswith('redo done at')

    # Targets that cannot be met are refused, and leave nothing behind.
    before = failed(restore(target_time='2000-01-01T00:00:00Z', restore_dir='/restore/too-early'))
    assert 'No backup ended before 2000-01-01T00:00:00' in before['msg']
    future = failed(restore(target_time='2099-01-01T00:00:00Z', restore_dir='/restore/future', restore_timeout=120))
    assert 'did not reach the target' in future['msg']
    assert 'recovery ended before configured recovery target was reached' in future['msg']
    assert future['target_reached'] is False
    naive = failed(restore(target_time='2025-01-01 00:00:00', restore_dir='/restore/naive'))
    assert 'no UTC offset' in naive['msg']
    again = failed(restore(restore_dir='/restore/latest'))
    assert 'is not empty' in again['msg']
    assert sorted(os.listdir(restores)) == ['at-target', 'by-id', 'latest', 'pinned']


# ---------------------------------------------------------------------------------------------
# S3 copies (moto's server on the test network)


def _remote_flip(s3, key):
    """Rewrite an S3 object with one byte changed, same size and metadata (what bit rot would do)."""
    obj = s3.client.get_object(Bucket=s3.bucket, Key=key)
    body = bytearray(obj['Body'].read())
    body[len(body) // 2] ^= 0xFF
    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=bytes(body), Metadata=obj['Metadata'])


def test_s3_copy_restores_when_local_backups_and_archive_are_gone(db, s3, tmp_path):
    backups = db.new_backup_dir('s3-story')
    restores = db.new_backup_dir('s3-restores')
    os.chmod(restores, 0o755)
    prefix = 'it/story'
    params = s3.params(prefix, sse='AES256')
    db.sql('CREATE TABLE s3rows (id int PRIMARY KEY)')
    db.sql('INSERT INTO s3rows SELECT generate_series(1, 50)')
    full = ok(db.module(backups=backups, **db.backup_args(type='full', compress=True, s3=params)))
    full_id = full['backup_id']
    # Verified before the upload, and the remote copy checked end to end.
    assert full['backup']['verified'] is True and full['s3']['verified_at']
    assert full['s3']['objects'] == 3 and full['s3']['sse'] == 'AES256'
    recorded = entry(backups, full_id)
    assert recorded['s3']['url'] == 's3://%s/%s/postgres/%s/' % (s3.bucket, prefix, full_id)

    keys = s3.keys('%s/postgres/%s/' % (prefix, full_id))
    assert keys == ['%s/postgres/%s/%s' % (prefix, full_id, n) for n in ('backup_manifest', 'catalog.json', 'data.tar.zst')]
    for key in keys:
        head = s3.client.head_object(Bucket=s3.bucket, Key=key)
        assert head['ServerSideEncryption'] == 'AES256', (key, head)
    head = s3.client.head_object(Bucket=s3.bucket, Key=keys[-1])
    assert head['Metadata']['sha256'] == recorded['files']['data.tar.zst']['sha256']
    assert head['ContentLength'] == recorded['files']['data.tar.zst']['size']
    wal = s3.keys('%s/postgres/wal/' % prefix)
    assert set(recorded['wal_files']) <= set(k.rsplit('/', 1)[1] for k in wal)
    for key in wal[:3]:
        assert s3.client.head_object(Bucket=s3.bucket, Key=key)['ServerSideEncryption'] == 'AES256'

    db.sql('INSERT INTO s3rows SELECT generate_series(51, 100)')
    inc = ok(db.module(backups=backups, **db.backup_args(type='incremental', s3=params)))
    assert inc['backup']['parent'] == full_id and inc['s3']['wal']['uploaded'] >= 1
    db.sql('INSERT INTO s3rows SELECT generate_series(101, 125)')  # after the last upload: never reaches S3

    listed = ok(db.module(backups=backups, action='list', s3=params))
    assert [b['id'] for b in listed['s3_backups']] == [full_id, inc['backup_id']]
    assert all(b['local'] and b['restorable'] for b in listed['s3_backups'])
    assert all(b['in_s3'] for b in listed['backups']) and listed['s3_latest'] == inc['backup_id']

    # The backup volume and the WAL archive are lost: everything comes from S3.
    shutil.rmtree(backups)
    os.makedirs(backups)
    lost_archive = str(tmp_path / 'lost-archive')
    os.makedirs(lost_archive)
    os.chmod(lost_archive, 0o755)
    dry = ok(db.module(check_mode=True, backups=backups, wal=lost_archive, volumes=['%s:/restore' % restores],
                       action='restore', restore_dir='/restore/from-s3', wal_archive_dir='/wal-archive', s3=params))
    assert dry['downloaded_from_s3'] == [full_id, inc['backup_id']] and os.listdir(backups) == []
    restored = ok(db.module(backups=backups, wal=lost_archive, volumes=['%s:/restore' % restores],
                            action='restore', restore_dir='/restore/from-s3', wal_archive_dir='/wal-archive', s3=params,
                            check_query='SELECT count(*), max(id) FROM s3rows'))
    assert restored['downloaded_from_s3'] == [full_id, inc['backup_id']]
    assert restored['restored_chain'] == [full_id, inc['backup_id']]
    assert restored['wal_from_s3'] >= len(entry(backups, inc['backup_id'])['wal_files'])
    assert restored['target_reached'] is True and restored['check_result'] == '100|100'
    assert os.listdir(lost_archive) == []  # the fetched WAL lived in a temporary directory, now gone
    assert not [n for n in os.listdir(restores) if n.startswith('.wal-from-s3')]
    # The downloaded copies are ordinary, verified catalog backups now.
    assert sorted(n for n in os.listdir(backups) if not n.startswith('.')) == [full_id, inc['backup_id']]
    verified = ok(db.module(backups=backups, action='verify', backup_id='all', wal_archive_dir='/wal-archive', s3=params))
    assert all(r['ok'] and r['s3']['ok'] for r in verified['results'])
    assert 's3 sha256' in verified['results'][0]['checks']

    # One flipped byte in S3 (same size): verify says which object; a restore from S3 refuses it.
    _remote_flip(s3, '%s/postgres/%s/data.tar.zst' % (prefix, full_id))
    bad = failed(db.module(backups=backups, action='verify', backup_id=full_id, s3=params))
    assert 'S3 data.tar.zst: SHA-256' in bad['msg'], bad['msg']
    assert bad['results'][0]['s3']['ok'] is False and entry(backups, full_id)['s3']['verified'] is False
    shutil.rmtree(os.path.join(backups, full_id))
    refused = failed(db.module(backups=backups, wal=lost_archive, volumes=['%s:/restore' % restores],
                               action='restore', restore_dir='/restore/damaged', wal_archive_dir='/wal-archive',
                               s3=params))
    assert 'differs from its catalog' in refused['msg'] and 'data.tar.zst' in refused['msg']
    assert not os.path.exists(os.path.join(restores, 'damaged'))
    assert sorted(n for n in os.listdir(backups) if not n.startswith('.')) == [inc['backup_id']]


def test_s3_prune_applies_the_same_plan_remotely(db, s3):
    backups = db.new_backup_dir('s3-prune')
    prefix = 'it/prune'
    params = s3.params(prefix)
    first = ok(db.module(backups=backups, **db.backup_args(type='full', s3=params)))['backup_id']
    add_rows(db, 5001)
    second = ok(db.module(backups=backups, **db.backup_args(type='full', s3=params)))['backup_id']
    assert s3.keys('%s/postgres/%s/' % (prefix, first))
    wal_before = [k.rsplit('/', 1)[1] for k in s3.keys('%s/postgres/wal/' % prefix)]
    second_start = entry(backups, second)['wal_start']
    assert any(n < second_start for n in wal_before)

    dry = ok(db.module(check_mode=True, backups=backups, action='prune', keep_days=0, keep_count=1, s3=params))
    assert dry['s3']['removed'] == [first] and s3.keys('%s/postgres/%s/' % (prefix, first))
    pruned = ok(db.module(backups=backups, action='prune', keep_days=0, keep_count=1, s3=params))
    assert pruned['removed'] == [first] and pruned['s3']['removed'] == [first] and pruned['s3']['kept'] == [second]
    assert 'newest verified full backup' in pruned['s3']['reasons'][second]
    assert s3.keys('%s/postgres/%s/' % (prefix, first)) == []
    assert len(s3.keys('%s/postgres/%s/' % (prefix, second))) > 3
    wal_after = [k.rsplit('/', 1)[1] for k in s3.keys('%s/postgres/wal/' % prefix)]
    assert pruned['s3']['removed_wal']['count'] == len(wal_before) - len(wal_after) > 0
    assert second_start in wal_after and all(n[8:] >= second_start[8:] for n in wal_after if len(n) == 24)
    listed = ok(db.module(backups=backups, action='list', s3=params))
    assert [b['id'] for b in listed['s3_backups']] == [second]
    settled = ok(db.module(backups=backups, action='prune', keep_days=0, keep_count=1, s3=params))
    assert settled['changed'] is False


def test_s3_errors_are_clear(db, s3):
    backups = db.new_backup_dir('s3-errors')
    listed = failed(db.module(backups=backups, action='list', s3=s3.params('x', bucket='no-such-bucket')))
    assert 'The bucket no-such-bucket does not exist' in listed['msg']
    unreachable = failed(db.module(backups=backups, action='list',
                                   s3=s3.params('x', endpoint_url='http://172.30.0.99:9000')))
    assert 'Cannot reach the S3 endpoint http://172.30.0.99:9000' in unreachable['msg']
    bad = failed(db.module(backups=backups, action='list', s3=s3.params('x', sse_kms_key_id='k')))
    assert 's3.sse_kms_key_id needs s3.sse=aws:kms' in bad['msg']


# ---------------------------------------------------------------------------------------------
# Restore into the live data directory


def _tree_state(top):
    """Names, sizes and SHA-256 of every file under top: proves a directory was not touched."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, 'rb') as handle:
                state[os.path.relpath(path, top)] = hashlib.sha256(handle.read()).hexdigest()
    return state


def test_live_restore_moves_the_old_data_aside_and_refuses_when_unsafe(db, tmp_path):
    backups = db.new_backup_dir('live')
    volume = str(tmp_path / 'live-volume')
    archive = str(tmp_path / 'live-archive')
    for path in (volume, archive):
        os.makedirs(path)
        os.chown(path, 999, 999)
    live_dir = '/var/lib/postgresql/data/pgdata'
    mount = ['%s:/var/lib/postgresql/data' % volume]

    def restore(check_mode=False, **args):
        args.update(action='restore', live=True, restore_dir=live_dir, wal_archive_dir='/wal-archive')
        return db.module(check_mode=check_mode, backups=backups, volumes=mount, **args)

    db.sql('CREATE TABLE livecheck AS SELECT generate_series(1, 42) AS id')
    backup_id = ok(db.module(backups=backups, **db.backup_args(type='full')))['backup_id']
    ok(db.module(backups=backups, action='verify', backup_id=backup_id))  # as every backup job does: sealed
    _archive_current_wal(db)
    start_live_server(db, volume, archive)
    try:
        live_sql('CREATE TABLE before_restore (id int)')
        # A running server: refused, whether it answers at login_host or only its postmaster.pid shows.
        answering = failed(restore(login_host=LIVE_IP, login_port=5432))
        assert 'a PostgreSQL server answers at %s:5432' % LIVE_IP in answering['msg']
        assert 'Nothing was changed' in answering['msg']
        pid_only = failed(restore())
        assert 'postmaster.pid' in pid_only['msg'] and 'runs or crashed' in pid_only['msg']
        assert sorted(os.listdir(volume)) == ['pgdata']
    finally:
        stop_live_server()
    before = _tree_state(os.path.join(volume, 'pgdata'))
    assert 'postmaster.pid' not in before  # a clean stop removed it

    # A damaged backup: refused before anything is touched (no sibling directory, live data identical).
    victim = sorted(glob.glob(os.path.join(backups, backup_id, 'data', 'base', '*', '*')), key=os.path.getsize)[-1]
    flip_byte(victim, 100)
    damaged = failed(restore(login_host=LIVE_IP))
    assert 'Refusing to restore' in damaged['msg'] and os.path.relpath(victim, os.path.join(backups, backup_id)) in damaged['msg']
    assert sorted(os.listdir(volume)) == ['pgdata'] and _tree_state(os.path.join(volume, 'pgdata')) == before
    dry_damaged = failed(restore(check_mode=True, login_host=LIVE_IP))
    assert 'Refusing to restore' in dry_damaged['msg']
    flip_byte(victim, 100)

    dry = ok(restore(check_mode=True, login_host=LIVE_IP))
    assert 'moving the current data aside' in dry['msg'] and sorted(os.listdir(volume)) == ['pgdata']
    done = ok(restore(login_host=LIVE_IP, check_query='SELECT count(*) FROM livecheck'))
    assert done['live'] is True and done['target_reached'] is True and done['check_result'] == '42'
    aside = done['previous_data_dir']
    assert aside.startswith('/var/lib/postgresql/data/pgdata.before-%s-' % backup_id)
    assert sorted(os.listdir(volume)) == sorted(['pgdata', os.path.basename(aside)])
    assert _tree_state(os.path.join(volume, os.path.basename(aside))) == before  # old data kept, unchanged
    assert aside in done['msg']

    # The stack's server starts on the restored directory: the backup's data, not the old cluster's.
    start_live_server(db, volume, archive)
    try:
        assert live_sql('SELECT count(*) FROM livecheck') == '42'
        assert live_sql("SELECT to_regclass('before_restore') IS NULL") == 't'
        assert live_sql('SELECT system_identifier::text FROM pg_control_system()') == \
            db.sql('SELECT system_identifier::text FROM pg_control_system()')[0][0]
    finally:
        stop_live_server()
        subprocess.run(['docker', 'rm', '-f', '-v', LIVE_NAME], capture_output=True)



def _live_batches(db, backups, archive):
    """On the live server: the backup role, a full backup, then three batches of 1,000 committed rows,
    each closed by pg_switch_wal() and waited for in the archive; returns (backup id, the three segments)."""
    live_sql("CREATE ROLE %s LOGIN REPLICATION PASSWORD '%s'" % (BACKUP_USER, BACKUP_PASSWORD))
    live_sql('GRANT pg_read_all_settings, pg_read_all_stats TO %s' % BACKUP_USER)
    live_sql('CREATE TABLE batches (id int PRIMARY KEY, batch int NOT NULL)')
    backup_id = ok(db.module(backups=backups, wal=archive, **db.backup_args(type='full', login_host=LIVE_IP)))['backup_id']
    segments = []
    for batch in (1, 2, 3):
        first = (batch - 1) * 1000 + 1
        live_sql('INSERT INTO batches SELECT g, %d FROM generate_series(%d, %d) g' % (batch, first, first + 999))
        segment = live_sql('SELECT pg_walfile_name(pg_switch_wal())')
        wait_for(lambda: os.path.exists(os.path.join(archive, segment)), 300, 'segment %s in the archive' % segment)
        segments.append(segment)
    assert len(set(segments)) == 3, segments
    return backup_id, segments


ROWS_QUERY = 'SELECT count(*), sum(id), count(DISTINCT batch) FROM batches'
ALL_ROWS = '3000|4501500|3'


def test_latest_restore_refuses_wal_it_cannot_reach_and_reaches_the_end_otherwise(db, tmp_path):
    """Issue 12.4: a segment missing (or damaged) in the middle of the archive ended replay early and
    the restore reported success with batch 1 only. Now it is refused, live data untouched."""
    backups = db.new_backup_dir('wal-gap')
    volume = str(tmp_path / 'gap-volume')
    archive = str(tmp_path / 'gap-archive')
    held = str(tmp_path / 'held-out')
    for path in (volume, archive, held):
        os.makedirs(path)
        os.chown(path, 999, 999)
    live_dir = '/var/lib/postgresql/data/pgdata'
    pgdata = os.path.join(volume, 'pgdata')

    def restore(check_mode=False, **args):
        args.update(action='restore', live=True, restore_dir=live_dir, wal_archive_dir='/wal-archive',
                    login_host=LIVE_IP, check_query=ROWS_QUERY)
        return db.module(check_mode=check_mode, backups=backups, wal=archive,
                         volumes=['%s:/var/lib/postgresql/data' % volume], **args)

    start_live_server(db, volume, archive)
    try:
        backup_id, segments = _live_batches(db, backups, archive)
        assert live_sql(ROWS_QUERY) == ALL_ROWS
    finally:
        stop_live_server()
    middle = segments[1]
    before = _tree_state(pgdata)

    # 1. The middle segment is gone from the archive: refused before anything is built, in check mode too.
    shutil.move(os.path.join(archive, middle), os.path.join(held, middle))
    plan = failed(restore(check_mode=True))
    assert 'gap' in plan['msg'] and middle in plan['msg'] and segments[2] in plan['msg'], plan['msg']
    gap = failed(restore())
    assert 'gap' in gap['msg'] and middle in gap['msg'] and 'Nothing was changed' in gap['msg'], gap['msg']
    assert sorted(os.listdir(volume)) == ['pgdata'] and _tree_state(pgdata) == before

    # 2. The segment is back, copied by root without handing it to postgres: restore_command could not
    #    read it, which ends replay there just the same. Refused before anything is built.
    shutil.copy2(os.path.join(held, middle), os.path.join(archive, middle))
    os.chown(os.path.join(archive, middle), 0, 0)
    os.chmod(os.path.join(archive, middle), 0o600)
    unreadable = failed(restore())
    assert 'user postgres cannot read it' in unreadable['msg'] and middle in unreadable['msg'], unreadable['msg']
    assert sorted(os.listdir(volume)) == ['pgdata'] and _tree_state(pgdata) == before

    # 3. Readable, but one WAL record in it is damaged (its page header is intact, so only replay finds
    #    out): recovery ends early, the restore is refused after replay, live data untouched.
    os.chown(os.path.join(archive, middle), 999, 999)
    flip_byte(os.path.join(archive, middle), 44)  # inside the first record after the 40-byte long page header
    damaged = failed(restore())
    assert 'before the end of the archived WAL' in damaged['msg'] and middle in damaged['msg'], damaged['msg']
    assert 'incorrect resource manager data checksum' in damaged['msg'], damaged['msg']
    assert damaged['target_reached'] is False
    assert sorted(os.listdir(volume)) == ['pgdata'] and _tree_state(pgdata) == before

    # The refused restores left the live server as it was: same directory, same rows.
    start_live_server(db, volume, archive)
    try:
        assert live_sql(ROWS_QUERY) == ALL_ROWS
    finally:
        stop_live_server()

    # 4. The intact segment back: latest replays every batch.
    shutil.copy2(os.path.join(held, middle), os.path.join(archive, middle))
    os.chown(os.path.join(archive, middle), 999, 999)
    done = ok(restore())
    assert done['restored_chain'] == [backup_id] and done['target_reached'] is True
    assert done['check_result'] == ALL_ROWS
    assert done['wal_check']['last'] >= segments[2] and done['wal_check']['gaps'] == []
    start_live_server(db, volume, archive)
    try:
        assert live_sql(ROWS_QUERY) == ALL_ROWS
    finally:
        stop_live_server()
        subprocess.run(['docker', 'rm', '-f', '-v', LIVE_NAME], capture_output=True)


def test_prune_keeps_newest_verified_full_parents_and_their_wal(db):
    """Runs last: it removes archived WAL older than its own oldest kept backup."""
    backups = db.new_backup_dir('retention')

    def backup(kind, rows):
        add_rows(db, rows)
        return ok(db.module(backups=backups, **db.backup_args(type=kind)))['backup_id']

    a = backup('full', 3001)
    ok(db.module(backups=backups, action='verify', backup_id=a))
    b = backup('incremental', 3101)
    flip_byte(glob.glob(os.path.join(backups, b, 'data', 'global', 'pg_control'))[0], 100)
    failed(db.module(backups=backups, action='verify', backup_id=b))
    c = backup('full', 3201)              # newest full, never verified
    d = backup('incremental', 3301)
    e = backup('incremental', 3401)
    assert entry(backups, d)['parent'] == c and entry(backups, e)['parent'] == d

    wal_before = sorted(os.listdir(db.wal_dir))
    oldest_needed = entry(backups, a)['wal_start']
    assert wal_before[0] < oldest_needed  # there is older WAL to remove

    dry = ok(db.module(check_mode=True, backups=backups, action='prune', keep_days=0, keep_count=1,
                       wal_archive_dir='/wal-archive'))
    assert dry['removed'] == [b] and dry['changed']
    assert sorted(os.listdir(db.wal_dir)) == wal_before and os.path.isdir(os.path.join(backups, b))

    pruned = ok(db.module(backups=backups, action='prune', keep_days=0, keep_count=1, wal_archive_dir='/wal-archive'))
    assert pruned['removed'] == [b]
    assert pruned['kept'] == [a, c, d, e]
    assert 'newest verified full backup' in pruned['reasons'][a]
    assert pruned['reasons'][c] == ['parent of kept %s' % d]
    assert pruned['reasons'][d] == ['parent of kept %s' % e]
    assert pruned['oldest_wal_needed'] == oldest_needed
    assert not os.path.exists(os.path.join(backups, b))
    wal_after = sorted(os.listdir(db.wal_dir))
    assert pruned['removed_wal']['count'] == len(wal_before) - len(wal_after) > 0
    assert all(n[8:24] >= oldest_needed[8:24] for n in wal_after if len(n) >= 24)
    assert oldest_needed in wal_after

    # Everything kept still verifies, WAL included: retention took nothing a kept backup needs.
    verified = ok(db.module(backups=backups, action='verify', backup_id='all', wal_archive_dir='/wal-archive'))
    assert [r['id'] for r in verified['results']] == [a, c, d, e] and all(r['ok'] for r in verified['results'])

    # Now C is verified too: it becomes the newest verified full, so A (and the WAL before C) may go.
    again = ok(db.module(backups=backups, action='prune', keep_days=0, keep_count=1, wal_archive_dir='/wal-archive'))
    assert again['removed'] == [a] and again['kept'] == [c, d, e]
    assert again['oldest_wal_needed'] == entry(backups, c)['wal_start']
    assert entry(backups, c)['wal_start'] in os.listdir(db.wal_dir)
    settled = ok(db.module(backups=backups, action='prune', keep_days=0, keep_count=1, wal_archive_dir='/wal-archive'))
    assert settled['changed'] is False and settled['removed'] == [] and settled['removed_wal']['count'] == 0
