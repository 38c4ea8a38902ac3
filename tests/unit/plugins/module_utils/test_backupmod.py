# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for module_utils._backupmod (the skeleton pg_backup and redis_snapshot share) and
module_utils._diskspace, with a fake module and real catalogs in a temporary directory."""

from __future__ import annotations

import collections
import datetime
import os

import pytest

from ansible_collections.psscript.infra.plugins.module_utils import _backupmod, _catalog, _diskspace, _pgbackup
from ansible_collections.psscript.infra.plugins.module_utils._catalog import BackupError
from ansible_collections.psscript.infra.plugins.module_utils._s3 import S3Error

UTC = datetime.timezone.utc
T0 = datetime.datetime(2025, 1, 1, 0, 0, 0, tzinfo=UTC)
Usage = collections.namedtuple('Usage', 'total used free')


class Failed(Exception):
    def __init__(self, kwargs):
        super().__init__(kwargs.get('msg'))
        self.kwargs = kwargs


class Exited(Exception):
    def __init__(self, kwargs):
        super().__init__('exit')
        self.kwargs = kwargs


class FakeModule:
    def __init__(self, check_mode=False, bins=None, **params):
        self.params = dict(s3=None, backup_id='latest', keep_days=0, keep_count=1, stale_after_hours=24,
                           fallback_to_full=False, action='list', backup_dir='/nonexistent')
        self.params.update(params)
        self.check_mode = check_mode
        self.bins = bins or {}
        self.warnings = []

    def get_bin_path(self, name, opt_dirs=None):
        return self.bins.get(name)

    def warn(self, text):
        self.warnings.append(text)

    def fail_json(self, **kwargs):
        raise Failed(kwargs)

    def exit_json(self, **kwargs):
        raise Exited(kwargs)


def at(minutes):
    return T0 + datetime.timedelta(minutes=minutes)


def publish(root, minutes, backup_type='full', verified=None):
    """A published backup (one small file) stopping ``minutes`` after T0."""
    backup_id = _catalog.new_backup_id(backup_type, at(minutes))
    staged = os.path.join(str(root), '.tmp-' + backup_id)
    os.makedirs(os.path.join(staged, 'data'))
    with open(os.path.join(staged, 'data', 'x'), 'w') as handle:
        handle.write(backup_id)
    item = _catalog.make_entry(backup_id, backup_type, at(minutes - 1), at(minutes), _catalog.hash_tree(staged))
    item['verified'] = verified
    _catalog.publish(str(root), item, staged)
    return item


# ---------------------------------------------------------------------------------------------
# tools, root, fallback


def test_find_tools_names_the_missing_tool_and_the_fix():
    module = FakeModule(bins={'zstd': '/usr/bin/zstd'})
    assert _backupmod.find_tools(module, ('zstd',), '%(name)s missing') == {'zstd': '/usr/bin/zstd'}
    with pytest.raises(Failed, match='^redis-cli missing: install it$'):
        _backupmod.find_tools(module, ('zstd', 'redis-cli'), '%(name)s missing: install it')


def test_find_tools_fails_with_what_the_check_finds():
    module = FakeModule(bins={'pg_basebackup': '/usr/bin/pg_basebackup'})
    with pytest.raises(Failed, match='is PostgreSQL 16'):
        _backupmod.find_tools(module, ('pg_basebackup',), 'missing', check=lambda path: path + ' is PostgreSQL 16')
    assert _backupmod.find_tools(module, ('pg_basebackup',), 'missing', check=lambda path: None)


def test_no_s3_store_without_the_s3_option():
    assert _backupmod.s3_store(FakeModule(), 'redis') is None


def test_open_root_creates_and_locks_or_only_warns_in_check_mode(tmp_path):
    root = str(tmp_path / 'backups')
    result = {}
    module = FakeModule(check_mode=True)
    assert _backupmod.open_root(module, root, result) is None and not os.path.exists(root)
    assert 'would be created' in module.warnings[0] and result == {}
    lock = _backupmod.open_root(FakeModule(), root, result)
    try:
        assert os.path.isdir(root) and result['changed'] is True
        with pytest.raises(BackupError):
            _catalog.RootLock(root).acquire()  # a second job waits for nothing: it is refused
    finally:
        lock.release()
    assert _backupmod.entries(root) == [] and _backupmod.entries(root + '-missing') == []


def test_the_fallback_rule_is_one_decision():
    result = dict(fell_back_to_full=False)
    with pytest.raises(Failed) as failed:
        _backupmod.full_instead(FakeModule(), result, 'no parent')
    assert failed.value.kwargs['msg'] == ('Cannot take an incremental backup: no parent. Take a full backup (type=full), '
                                          'or set fallback_to_full=true')
    module = FakeModule(fallback_to_full=True)
    assert _backupmod.full_instead(module, result, 'no parent') == ('full', None)
    assert result['fell_back_to_full'] is True and module.warnings == [
        'Taking a full backup instead of an incremental one: no parent']


def test_incremental_parent_says_why_there_is_none(tmp_path):
    facts = dict(version_num=170002, version='17.2', summarize_wal=True, system_identifier='7')
    assert _pgbackup.incremental_parent(dict(facts, version_num=160004, version='16.4'), [], 'r')[1] == (
        'the server is PostgreSQL 16.4; incremental backups need 17 or later')
    assert 'summarize_wal is off' in _pgbackup.incremental_parent(dict(facts, summarize_wal=False), [], 'r')[1]
    assert _pgbackup.incremental_parent(facts, [], '/b') == (None, 'there is no backup of this cluster in /b to build on')
    full = publish(tmp_path, 1)
    assert _pgbackup.incremental_parent(facts, [full], '/b') == (full, None)


# ---------------------------------------------------------------------------------------------
# results


def test_took_and_copy_to_s3_fill_the_shared_vocabulary(tmp_path):
    item = publish(tmp_path, 1)

    class Store:
        def upload_verified(self, root, entry, outcome, refusal, before_upload=None):
            assert refusal == 'Snapshot %(id)s was taken but failed verification, so it was not copied to S3: %(problems)s'
            entry['s3'] = dict(url='s3://b/redis/' + entry['id'])
            return entry['s3']

    result = _backupmod.took({}, item, 'Took it')
    assert result['backup_id'] == item['id'] and result['backup']['file_count'] == 1 and 'files' not in result['backup']
    _backupmod.copy_to_s3(result, Store(), str(tmp_path), item, dict(ok=True), 'snapshot')
    assert result['backup']['s3']['url'] == result['s3']['url']
    assert result['msg'] == 'Took it, verified it and copied it to s3://b/redis/' + item['id']


def test_a_failed_s3_copy_names_the_backup_that_stays_local(tmp_path):
    item = publish(tmp_path, 1)

    class Store:
        def upload_verified(self, *args, **kwargs):
            raise S3Error('bucket gone')

    with pytest.raises(BackupError, match='^Backup %s was taken and verified, but its S3 copy failed: bucket gone$'
                       % item['id']):
        _backupmod.copy_to_s3(dict(msg='x'), Store(), str(tmp_path), item, dict(ok=True), 'backup')


def test_listing_reports_ages_and_free_space(tmp_path):
    old = publish(tmp_path, 1, verified=True)
    newest = publish(tmp_path, 30)
    disk = lambda path: Usage(total=1000, used=750, free=250)
    listed = _backupmod.listing(str(tmp_path), None, _catalog.listing, at(90), disk_usage=disk)
    assert listed['latest'] == newest['id'] and listed['last_verified_full'] == old['id']
    assert listed['latest_age_seconds'] == 3600 and listed['last_verified_full_age_seconds'] == 89 * 60
    assert (listed['free_bytes'], listed['total_bytes'], listed['free_percent']) == (250, 1000, 25.0)
    empty = _backupmod.listing(str(tmp_path / 'none'), None, lambda root: dict(backups=[], latest=None), at(90))
    assert empty['latest_age_seconds'] is None and empty['last_verified_full_age_seconds'] is None
    assert empty['free_bytes'] is None


def test_newest_wal_age_reads_segments_only(tmp_path):
    assert _pgbackup.newest_wal_age(str(tmp_path), 1000) is None
    for name, mtime in (('000000010000000000000001', 100), ('000000010000000000000002', 400), ('00000002.history', 900)):
        path = tmp_path / name
        path.write_text('x')
        os.utime(path, (mtime, mtime))
    assert _pgbackup.newest_wal_age(str(tmp_path), 1000) == 600


# ---------------------------------------------------------------------------------------------
# verify, prune, dispatch


def test_verify_records_outcomes_and_fails_naming_the_fix(tmp_path):
    good = publish(tmp_path, 1)
    bad = publish(tmp_path, 2)
    module = FakeModule(backup_id='all')
    seen = []

    def verify_local(entry, entries):
        seen.append((entry['id'], len(entries)))
        return dict(id=entry['id'], ok=entry['id'] == good['id'], problems=[] if entry['id'] == good['id'] else ['damaged'],
                    checks=['sha256'])
    with pytest.raises(Failed) as failed:
        _backupmod.verify(module, str(tmp_path), None, verify_local, 'snapshot', 'take a new snapshot')
    assert failed.value.kwargs['msg'] == ('Verification failed for %s: damaged. Do not restore from it; take a new '
                                          'snapshot' % bad['id'])
    assert seen == [(good['id'], 2), (bad['id'], 2)]
    verified = dict((e['id'], e['verified']) for e in _catalog.list_backups(str(tmp_path))['backups'])
    assert verified == {good['id']: True, bad['id']: False}
    module.params['backup_id'] = good['id']
    assert _backupmod.verify(module, str(tmp_path), None, verify_local, 'snapshot', 'x')['msg'] == (
        'Verified 1 snapshot(s): %s' % good['id'])


def test_prune_without_wal_keeps_no_wal_keys(tmp_path):
    publish(tmp_path, 1)
    kept = publish(tmp_path, 2)
    module = FakeModule(check_mode=True)
    dry = _backupmod.prune(module, str(tmp_path), None, 'snapshot')
    assert dry['msg'] == 'Would remove 1 snapshot(s), kept 1' and 'oldest_wal_needed' not in dry
    assert len(_catalog.list_backups(str(tmp_path))['backups']) == 2
    done = _backupmod.prune(FakeModule(), str(tmp_path), None, 'snapshot')
    assert done['changed'] and [e['id'] for e in _catalog.list_backups(str(tmp_path))['backups']] == [kept['id']]


def test_prune_with_wal_reports_it_here_and_in_s3(tmp_path):
    publish(tmp_path, 1)
    publish(tmp_path, 2)

    class Store:
        def prune(self, keep_days, keep_count, dry_run):
            return dict(removed=[], kept=['a'], oldest_wal_needed='000000010000000000000003', warnings=['slow'])

    module = FakeModule()
    result = _backupmod.prune(module, str(tmp_path), Store(), 'backup', remove_wal=lambda oldest: ['w1', 'w2'],
                              remove_s3_wal=lambda store, oldest: [])
    assert result['removed_wal'] == dict(count=2, first='w1', last='w2')
    assert result['s3']['removed_wal'] == dict(count=0, first=None, last=None) and module.warnings[-1] == 'S3: slow'
    assert result['msg'] == ('Removed 1 backup(s) and 2 WAL file(s), kept 1; in S3 removed 0 backup(s) and 0 WAL '
                             'file(s), kept 1')


def test_run_turns_errors_into_messages_with_the_fix(tmp_path):
    def broken(module, root):
        raise OSError(28, 'No space left on device')

    def refused(module, root):
        raise BackupError('refused: do this')
    actions = dict(list=lambda module, root: dict(changed=False, ok=1), prune=broken, verify=refused)
    with pytest.raises(Exited) as exited:
        _backupmod.run(FakeModule(backup_dir=str(tmp_path)), actions)
    assert exited.value.kwargs == dict(changed=False, ok=1)
    with pytest.raises(Failed, match='^backup_dir /nonexistent does not exist: check the path'):
        _backupmod.run(FakeModule(), actions)
    with pytest.raises(Failed, match='^prune failed on the file system: .*No space left.*; check permissions and space '
                                     'of backup_dir and wal_archive_dir$'):
        _backupmod.run(FakeModule(action='prune', backup_dir=str(tmp_path)), actions, fs_hint='backup_dir and wal_archive_dir')
    with pytest.raises(Failed, match='^refused: do this$'):
        _backupmod.run(FakeModule(action='verify', backup_dir=str(tmp_path)), actions)


def test_run_uses_the_catalog_key_and_sign_adopts_older_entries(tmp_path):
    root = tmp_path / 'root'
    root.mkdir()
    old = publish(root, 1)
    key_file = tmp_path / 'key'
    key_file.write_text('s' * 40 + '\n')
    listed = dict(list=lambda module, r: dict(changed=False, ids=[e['id'] for e in _backupmod.entries(r)]))
    with pytest.raises(Exited) as exited:
        _backupmod.run(FakeModule(backup_dir=str(root), catalog_key_file=str(key_file)), listed)
    assert exited.value.kwargs['ids'] == []
    with pytest.raises(Failed, match='^Cannot read the catalog key'):
        _backupmod.run(FakeModule(backup_dir=str(root), catalog_key_file=str(tmp_path / 'none')), listed)

    def sign(module, r):
        return _backupmod.sign(module, r, None)
    module = FakeModule(action='sign', backup_dir=str(root), catalog_key_file=str(key_file), check_mode=True)
    with pytest.raises(Exited) as exited:
        _backupmod.run(module, dict(sign=sign))
    assert exited.value.kwargs['changed'] and exited.value.kwargs['signed'] == [old['id']]
    assert exited.value.kwargs['msg'].startswith('Would sign 1 local and 0 S3')
    module = FakeModule(action='sign', backup_dir=str(root), catalog_key_file=str(key_file))
    with pytest.raises(Exited) as exited:
        _backupmod.run(module, dict(sign=sign))
    assert exited.value.kwargs['signed'] == [old['id']] and exited.value.kwargs['refused'] == []
    with pytest.raises(Exited) as exited:
        _backupmod.run(FakeModule(backup_dir=str(root), catalog_key_file=str(key_file)), listed)
    assert exited.value.kwargs['ids'] == [old['id']]
    with pytest.raises(Failed, match='^action=sign needs the catalog key'):
        _backupmod.sign(FakeModule(action='sign', backup_dir=str(root)), str(root), None)


# ---------------------------------------------------------------------------------------------
# _diskspace


def test_human_bytes():
    assert [_diskspace.human_bytes(v) for v in (0, 1023, 1536, 5 << 30)] == ['0 B', '1023 B', '1.5 KiB', '5.0 GiB']


def test_free_space_refusal_names_cause_and_fix(tmp_path):
    with pytest.raises(BackupError, match=r'Not enough free space .* prune') as refused:
        _diskspace.check_free_space(str(tmp_path), 1 << 62, 'size of the last full backup x')
    assert refused.value.kind == 'no_space'
    assert _diskspace.check_free_space(str(tmp_path), 1, 'x') > 1
    assert _backupmod.check_space(str(tmp_path / 'to-be-created'), 1, 'x') > 1


def test_usage_of_an_empty_file_system():
    assert _diskspace.usage('/x', disk_usage=lambda path: Usage(0, 0, 0)) == dict(free_bytes=0, total_bytes=0,
                                                                                 free_percent=None)


def test_both_modules_document_the_shared_vocabulary():
    import yaml
    from ansible_collections.psscript.infra.plugins.modules import pg_backup, redis_snapshot
    for module in (pg_backup, redis_snapshot):
        documented = yaml.safe_load(module.RETURN)
        assert set(_backupmod.RESULT_KEYS) <= set(documented), module.__name__
        assert documented['downloaded_from_s3']['type'] == 'list'
        assert documented['backup']['type'] == 'dict' and 'contains' in documented['backup']
    assert 'entry' not in yaml.safe_load(redis_snapshot.RETURN)
    assert 'last_verified' not in yaml.safe_load(redis_snapshot.RETURN)
