# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for the restore helpers of module_utils._pgbackup: WAL selection for S3, hashes before
a restore, the live data directory checks and the swap."""

from __future__ import annotations

import datetime
import os

import pytest

from ansible_collections.psscript.infra.plugins.module_utils import _catalog, _pgbackup, _s3
from ansible_collections.psscript.infra.plugins.module_utils._pgbackup import BackupError

UTC = datetime.timezone.utc
WAL = ['000000010000000000000003', '000000010000000000000004', '000000020000000000000005',
       '000000010000000000000004.00000028.backup', '000000010000000000000005.partial']


def test_wal_names_since_by_position_with_history_files():
    names = WAL + ['00000002.history', 'archive_status', 'README']
    assert _pgbackup.wal_names_since(names, '000000010000000000000004') == [
        '000000010000000000000004',
        '000000010000000000000004.00000028.backup', '000000010000000000000005.partial',
        '00000002.history', '000000020000000000000005']
    assert len(_pgbackup.wal_names_since(names, None)) == 6


def test_oldest_wal_start_compares_positions_not_names():
    entries = [dict(wal_start='000000020000000000000003'), dict(wal_start='000000010000000000000009'), dict()]
    assert _pgbackup.oldest_wal_start(entries) == '000000020000000000000003'
    assert _pgbackup.oldest_wal_start([dict()]) is None


def test_restore_command_reads_the_archive_first():
    assert _pgbackup.restore_command(['/wal-archive/']) == 'cp "/wal-archive/%f" "%p"'
    assert _pgbackup.restore_command(['/wal-archive', '/r/.wal']) == (
        'test -f "/wal-archive/%f" && cp "/wal-archive/%f" "%p" || cp "/r/.wal/%f" "%p"')
    settings = dict(_pgbackup.recovery_settings('/w', '/s', '/h', '/i', extra_wal_dirs=['/x']))
    assert settings['restore_command'].endswith('|| cp "/x/%f" "%p"')


def _published(root, backup_id, content=b'abc'):
    staged = _catalog.start_backup(root, backup_id)
    os.makedirs(os.path.join(staged, 'data'))
    with open(os.path.join(staged, 'data', 'f'), 'wb') as handle:
        handle.write(content)
    now = datetime.datetime(2025, 1, 1, tzinfo=UTC)
    entry = _catalog.make_entry(backup_id, 'full', now, now, _catalog.hash_tree(staged))
    _catalog.publish(root, entry, staged)
    return entry


def test_check_chain_hashes_refuses_a_flipped_byte(tmp_path):
    root = str(tmp_path)
    entry = _published(root, '20250101T000000Z-full')
    assert _pgbackup.check_chain_hashes(root, [entry]) == 1
    with open(os.path.join(root, entry['id'], 'data', 'f'), 'r+b') as handle:
        handle.write(b'x')
    with pytest.raises(BackupError) as caught:
        _pgbackup.check_chain_hashes(root, [entry])
    assert caught.value.kind == 'checksum'
    assert '20250101T000000Z-full: data/f: SHA-256' in caught.value.msg and 'Nothing was changed' in caught.value.msg


def _pgdata(tmp_path, pid_lines=None):
    data = tmp_path / 'pgdata'
    data.mkdir()
    (data / 'PG_VERSION').write_text('17\n')
    if pid_lines is not None:
        (data / 'postmaster.pid').write_text('\n'.join(pid_lines) + '\n')
    return str(data)


PID = ['1', '/var/lib/postgresql/data/pgdata', '1732560000', '5432', '/var/run/postgresql', '*', '  5432001  0', 'ready']


def test_live_dir_without_pid_file_and_nothing_answering_is_free(tmp_path):
    data = _pgdata(tmp_path)
    assert _pgbackup.live_dir_state(data)['ok'] is True
    assert _pgbackup.live_dir_state(data, 'pg', 5432, answers=lambda h, p: False)['ok'] is True


def test_live_dir_with_server_answering_is_refused(tmp_path):
    data = _pgdata(tmp_path)
    state = _pgbackup.live_dir_state(data, 'pg', 5432, answers=lambda h, p: (h, p) == ('pg', 5432))
    assert state['ok'] is False and 'answers at pg:5432' in state['why']


def test_live_dir_pid_file_needs_a_check(tmp_path):
    data = _pgdata(tmp_path, PID)
    state = _pgbackup.live_dir_state(data, alive=lambda pid: False)
    assert state['ok'] is False and 'without login_host' in state['why']
    assert state['postmaster_pid']['pid'] == 1 and state['postmaster_pid']['status'] == 'ready'
    # A crashed server: the file stayed, nothing answers at its address.
    assert _pgbackup.live_dir_state(data, 'pg', 5432, answers=lambda h, p: False, alive=lambda pid: False)['ok'] is True
    # A live postgres process in this PID namespace.
    state = _pgbackup.live_dir_state(data, 'pg', 5432, answers=lambda h, p: False, alive=lambda pid: pid == 1)
    assert state['ok'] is False and 'running postgres' in state['why']


def test_local_postmaster_alive_reads_proc():
    assert _pgbackup.local_postmaster_alive(None) is False
    assert _pgbackup.local_postmaster_alive(os.getpid()) is False  # this is python, not postgres


def test_live_names_and_swap(tmp_path):
    data = _pgdata(tmp_path)
    restored, aside = _pgbackup.live_names(data + '/', '20250101T000000Z-full', datetime.datetime(2025, 2, 1, 10, 15, tzinfo=UTC))
    assert restored == str(tmp_path / 'pgdata.restore-20250101T000000Z-full-20250201T101500Z')
    assert aside == str(tmp_path / 'pgdata.before-20250101T000000Z-full-20250201T101500Z')
    os.makedirs(restored)
    with open(os.path.join(restored, 'PG_VERSION'), 'w') as handle:
        handle.write('restored\n')
    assert _pgbackup.swap_live(data, restored, aside) == aside
    with open(os.path.join(data, 'PG_VERSION')) as handle:
        assert handle.read() == 'restored\n'
    with open(os.path.join(aside, 'PG_VERSION')) as handle:
        assert handle.read() == '17\n'
    assert not os.path.exists(restored)


def test_swap_without_old_data_and_rollback(tmp_path):
    data = str(tmp_path / 'pgdata')
    restored = str(tmp_path / 'new')
    os.makedirs(restored)
    assert _pgbackup.swap_live(data, restored, str(tmp_path / 'aside')) is None and os.path.isdir(data)
    # The second rename fails (nothing to move in): the old directory is put back.
    with pytest.raises(OSError):
        _pgbackup.swap_live(data, str(tmp_path / 'missing'), str(tmp_path / 'aside'))
    assert os.path.isdir(data) and not os.path.exists(str(tmp_path / 'aside'))


@pytest.fixture
def store(s3_endpoint, s3_client):
    s3_client.create_bucket(Bucket='bkt')
    return _s3.S3Store(dict(bucket='bkt', prefix='p', endpoint_url=s3_endpoint), 'postgres', client=s3_client)


def test_upload_and_fetch_wal(store, tmp_path):
    archive = tmp_path / 'archive'
    archive.mkdir()
    for name in WAL[:3] + ['00000002.history']:
        (archive / name).write_bytes(name.encode())
    result = _pgbackup.upload_wal(store, str(archive), '000000010000000000000004', required=[WAL[1]])
    assert result == dict(uploaded=3, present=0, first='000000010000000000000004', last='000000020000000000000005')
    assert sorted(store.list_area('wal')) == sorted(['00000002.history', WAL[1], WAL[2]])
    assert _pgbackup.upload_wal(store, str(archive), WAL[1])['uploaded'] == 0
    with pytest.raises(BackupError, match='neither in'):
        _pgbackup.upload_wal(store, str(archive), WAL[1], required=['000000010000000000000009'])

    dest = tmp_path / 'fetched'
    dest.mkdir()
    (archive / WAL[2]).unlink()
    assert _pgbackup.fetch_wal(store, str(archive), str(dest), WAL[1]) == [WAL[2]]
    assert (dest / WAL[2]).read_bytes() == WAL[2].encode()
    assert _pgbackup.fetch_wal(store, str(tmp_path / 'no-archive'), str(dest), WAL[2]) == ['00000002.history', WAL[2]]


def test_a_restore_hashes_its_local_backups_once(tmp_path):
    # check_chain_hashes runs first in a restore; verify_chain then passes hashes_checked=True and
    # verify_backup goes straight to pg_verifybackup instead of reading every file again.
    root = str(tmp_path)
    backup_id = _catalog.new_backup_id('full', datetime.datetime(2025, 1, 1, tzinfo=UTC))
    staged = os.path.join(root, '.tmp-' + backup_id)
    os.makedirs(os.path.join(staged, 'data'))
    with open(os.path.join(staged, 'data', 'PG_VERSION'), 'w') as handle:
        handle.write('17\n')
    stamp = datetime.datetime(2025, 1, 1, tzinfo=UTC)
    entry = _catalog.make_entry(backup_id, 'full', stamp, stamp, _catalog.hash_tree(staged), layout='plain')
    _catalog.publish(root, entry, staged)
    calls = []

    def run(args, **kwargs):
        calls.append(args)
        return 0, '', ''
    tools = dict(pg_verifybackup='pg_verifybackup', pg_combinebackup='pg_combinebackup')
    assert _pgbackup.check_chain_hashes(root, [entry]) == 1
    once = _pgbackup.verify_backup(run, tools, root, entry, [entry], hashes_checked=True)
    assert once['ok'] and once['checks'] == ['sha256 (checked before)', 'pg_verifybackup']
    assert calls == [['pg_verifybackup', '--quiet', '--no-parse-wal', os.path.join(root, backup_id, 'data')]]
    # Without it (action=verify) the files are hashed: a changed file is found before pg_verifybackup runs.
    with open(os.path.join(root, backup_id, 'data', 'PG_VERSION'), 'w') as handle:
        handle.write('16\n')
    hashed = _pgbackup.verify_backup(run, tools, root, entry, [entry])
    assert not hashed['ok'] and hashed['checks'] == ['sha256'] and 'PG_VERSION' in hashed['problems'][0]
    assert len(calls) == 1
