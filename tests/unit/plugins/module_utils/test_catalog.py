# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for module_utils._catalog (and the pure helpers of module_utils._pgbackup).

The backup_label and backup_manifest samples are trimmed copies of what pg_basebackup 17.12 wrote
in tests/integration (a PostgreSQL 17 server of the psscript/postgres image).
"""

from __future__ import annotations

import datetime
import json
import os
import time

import pytest

from ansible_collections.psscript.infra.plugins.module_utils import _catalog, _pgbackup
from ansible_collections.psscript.infra.plugins.module_utils._catalog import CatalogError

UTC = datetime.timezone.utc
T0 = datetime.datetime(2025, 1, 1, 0, 0, 0, tzinfo=UTC)
SEG = 16 * 1024 * 1024

BACKUP_LABEL = """\
START WAL LOCATION: 0/5000028 (file 000000010000000000000005)
CHECKPOINT LOCATION: 0/5000080
BACKUP METHOD: streamed
BACKUP FROM: primary
START TIME: 2026-11-25 18:25:37 GMT
LABEL: 20261125T182537Z-incremental
START TIMELINE: 1
INCREMENTAL FROM LSN: 0/3000028
INCREMENTAL FROM TLI: 1
"""

MANIFEST = {
    'PostgreSQL-Backup-Manifest-Version': 2,
    'System-Identifier': 7712176687988572177,
    'Files': [{'Path': 'backup_label', 'Size': 227}, {'Path': 'base/5/16387', 'Size': 8192}],
    'WAL-Ranges': [{'Timeline': 1, 'Start-LSN': '0/5000028', 'End-LSN': '0/5000120'}],
    'Manifest-Checksum': '00',
}


def at(minutes):
    return T0 + datetime.timedelta(minutes=minutes)


def entry(backup_id, stop_minutes, backup_type=None, parent=None, verified=None, start_minutes=None, wal_start=None):
    """A catalog entry stopping ``stop_minutes`` after T0 (start one minute earlier unless given)."""
    backup_type = backup_type or ('incremental' if parent else 'full')
    start = at(stop_minutes - 1 if start_minutes is None else start_minutes)
    item = _catalog.make_entry(backup_id, backup_type, start, at(stop_minutes),
                               {'data/x': dict(sha256='0' * 64, size=1)}, parent=parent)
    item['verified'] = verified
    if wal_start:
        item['wal_start'] = wal_start
    return item


def bid(minutes, backup_type='full'):
    return _catalog.new_backup_id(backup_type, at(minutes))


# ---------------------------------------------------------------------------------------------
# ids and times


def test_backup_id_is_sortable_utc_stamp_and_type():
    moment = datetime.datetime(2025, 3, 9, 4, 5, 6, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert _catalog.new_backup_id('full', moment) == '20250309T020506Z-full'
    assert _catalog.new_backup_id('incremental', moment) == '20250309T020506Z-incremental'
    assert _catalog.is_backup_id('20250309T020506Z-full')
    assert not _catalog.is_backup_id('logs')
    assert not _catalog.is_backup_id('.tmp-20250309T020506Z-full')
    with pytest.raises(CatalogError, match='Unknown backup type'):
        _catalog.new_backup_id('differential')


@pytest.mark.parametrize('text, expected', [
    ('2025-01-31T13:45:00Z', datetime.datetime(2025, 1, 31, 13, 45, tzinfo=UTC)),
    ('2025-01-31 14:45:00+01:00', datetime.datetime(2025, 1, 31, 13, 45, tzinfo=UTC)),
    ('2025-01-31 14:45:00+01', datetime.datetime(2025, 1, 31, 13, 45, tzinfo=UTC)),
    ('2025-01-31 08:45:00.5-0500', datetime.datetime(2025, 1, 31, 13, 45, 0, 500000, tzinfo=UTC)),
    ('2025-01-31T13:45:00.123456789Z', datetime.datetime(2025, 1, 31, 13, 45, 0, 123456, tzinfo=UTC)),
])
def test_parse_time_needs_and_honours_the_offset(text, expected):
    assert _catalog.parse_time(text) == expected


def test_parse_time_refuses_naive_and_garbage():
    with pytest.raises(CatalogError, match='no UTC offset'):
        _catalog.parse_time('2025-01-31 13:45:00')
    with pytest.raises(CatalogError, match='Cannot read the time'):
        _catalog.parse_time('yesterday')
    with pytest.raises(ValueError):
        _catalog.format_time(datetime.datetime(2025, 1, 1))


def test_format_time_round_trips_and_sorts_as_text():
    a, b = at(1), at(1) + datetime.timedelta(microseconds=1)
    assert _catalog.parse_time(_catalog.format_time(a)) == a
    assert _catalog.format_time(a) < _catalog.format_time(b)


# ---------------------------------------------------------------------------------------------
# LSNs and WAL names


def test_lsn_round_trip():
    assert _catalog.parse_lsn('16/B374D848') == (0x16 << 32) | 0xB374D848
    assert _catalog.format_lsn(_catalog.parse_lsn('0/5000028')) == '0/5000028'
    with pytest.raises(CatalogError):
        _catalog.parse_lsn('5000028')


def test_wal_file_names_match_postgresql():
    # 0/5000028 with 16 MB segments is in segment 5 of log 0.
    assert _catalog.wal_segments(1, '0/5000028', '0/5000120', SEG) == ['000000010000000000000005']
    # Segment numbers roll into the log id after 0xFF segments of 16 MB.
    assert _catalog.wal_file_name(1, 0x100, SEG) == '000000010000000100000000'
    # 1 GB segments: 4 per log id.
    assert _catalog.wal_file_name(2, 5, 1024 * SEG // 16) == '000000020000000100000001'
    with pytest.raises(CatalogError, match='power of two'):
        _catalog.wal_file_name(1, 1, 3000)


def test_wal_range_ending_on_a_segment_boundary_does_not_need_the_next_segment():
    assert _catalog.wal_segments(1, '0/5FFFF00', '0/6000000', SEG) == ['000000010000000000000005']
    assert _catalog.wal_segments(1, '0/5FFFF00', '0/6000001', SEG) == [
        '000000010000000000000005', '000000010000000000000006']
    with pytest.raises(CatalogError, match='before it starts'):
        _catalog.wal_segments(1, '0/6000000', '0/5000000', SEG)


def test_required_wal_adds_history_files_past_timeline_one():
    ranges = [dict(timeline=2, start_lsn='0/7000028', end_lsn='0/7000100')]
    assert _catalog.required_wal(ranges, SEG) == ['000000020000000000000007', '00000002.history']


def test_wal_removal_compares_positions_not_names_across_timelines():
    names = [
        '000000010000000000000003',
        '000000010000000000000004.00000028.backup',
        '000000010000000000000005',  # the oldest needed one: kept
        '000000010000000000000006.partial',
        '000000020000000000000004',  # sorts after ...0005 by name, but is older
        '000000020000000000000006',
        '00000002.history',
        'README',
        '.000000010000000000000007.tmp.42',
    ]
    removed = _catalog.wal_files_to_remove(names, '000000010000000000000005')
    assert removed == ['000000010000000000000003', '000000010000000000000004.00000028.backup',
                       '000000020000000000000004']
    assert _catalog.wal_files_to_remove(names, None) == []


# ---------------------------------------------------------------------------------------------
# PostgreSQL metadata


def test_parse_backup_label():
    label = _catalog.parse_backup_label(BACKUP_LABEL)
    assert label['start_lsn'] == '0/5000028'
    assert label['start_wal'] == '000000010000000000000005'
    assert label['timeline'] == 1
    assert label['incremental_from_lsn'] == '0/3000028'
    with pytest.raises(CatalogError, match='damaged'):
        _catalog.parse_backup_label('LABEL: x\n')


def test_parse_manifest():
    info = _catalog.parse_manifest(json.dumps(MANIFEST))
    assert info['system_identifier'] == '7712176687988572177'
    assert info['wal_ranges'] == [dict(timeline=1, start_lsn='0/5000028', end_lsn='0/5000120')]
    assert info['file_count'] == 2
    with pytest.raises(CatalogError, match='not valid JSON'):
        _catalog.parse_manifest('{')
    with pytest.raises(CatalogError, match='no WAL range'):
        _catalog.parse_manifest(json.dumps(dict(MANIFEST, **{'WAL-Ranges': []})))


# ---------------------------------------------------------------------------------------------
# Hashes


def _staged_backup(root, backup_id):
    staged = _catalog.start_backup(str(root), backup_id)
    os.makedirs(os.path.join(staged, 'data', 'base'))
    with open(os.path.join(staged, 'data', 'base', 'rel'), 'wb') as handle:
        handle.write(b'\x00' * 8192 + b'payload')
    with open(os.path.join(staged, 'data', 'PG_VERSION'), 'w') as handle:
        handle.write('17\n')
    return staged


def test_hash_tree_then_check_detects_a_flipped_byte(tmp_path):
    staged = _staged_backup(tmp_path, bid(0))
    files = _catalog.hash_tree(staged)
    assert sorted(files) == ['data/PG_VERSION', 'data/base/rel']
    assert files['data/base/rel']['size'] == 8192 + 7
    item = _catalog.make_entry(bid(0), 'full', at(0), at(1), files)
    assert _catalog.check_hashes(staged, item) == []
    with open(os.path.join(staged, 'data', 'base', 'rel'), 'r+b') as handle:
        handle.seek(100)
        handle.write(b'\x01')
    problems = _catalog.check_hashes(staged, item)
    assert len(problems) == 1 and problems[0].startswith('data/base/rel: SHA-256')


def test_check_hashes_reports_missing_resized_and_extra_files(tmp_path):
    staged = _staged_backup(tmp_path, bid(0))
    item = _catalog.make_entry(bid(0), 'full', at(0), at(1), _catalog.hash_tree(staged))
    os.unlink(os.path.join(staged, 'data', 'PG_VERSION'))
    with open(os.path.join(staged, 'data', 'base', 'rel'), 'ab') as handle:
        handle.write(b'more')
    with open(os.path.join(staged, 'data', 'intruder'), 'w') as handle:
        handle.write('x')
    problems = _catalog.check_hashes(staged, item)
    assert problems == ['data/PG_VERSION: missing', 'data/base/rel: size 8203, recorded 8199',
                        'data/intruder: not recorded in the catalog (added after the backup)']
    assert _catalog.check_hashes(staged, dict(item, files={})) == [
        'the catalog entry records no files: it cannot be checked']


def test_symlinks_are_refused(tmp_path):
    staged = _staged_backup(tmp_path, bid(0))
    os.symlink('/etc', os.path.join(staged, 'data', 'pg_tblspc_link'))
    with pytest.raises(CatalogError, match='symbolic link'):
        _catalog.hash_tree(staged)


# ---------------------------------------------------------------------------------------------
# Atomic publish, listing, leftovers


def _publish(root, backup_id, stop_minutes=1, **kwargs):
    staged = _staged_backup(root, backup_id)
    item = _catalog.make_entry(backup_id, backup_id.split('-')[1], at(stop_minutes - 1), at(stop_minutes),
                               _catalog.hash_tree(staged), **kwargs)
    return _catalog.publish(str(root), item, staged), item


def test_publish_renames_and_writes_the_marker_last(tmp_path):
    order = []
    staged = _staged_backup(tmp_path, bid(0))
    item = _catalog.make_entry(bid(0), 'full', at(0), at(1), _catalog.hash_tree(staged))

    def marker(path, data):
        # When the marker is written the backup is already at its final name, complete.
        order.append((os.path.basename(path), os.path.exists(staged), sorted(os.listdir(path))))
        _catalog.write_entry(path, data)
    final = _catalog.publish(str(tmp_path), item, staged, write_marker=marker)
    assert order == [(bid(0), False, ['data'])]
    listed = _catalog.list_backups(str(tmp_path))
    assert [e['id'] for e in listed['backups']] == [bid(0)]
    assert listed['backups'][0] == json.loads(json.dumps(item))
    assert sorted(os.listdir(final)) == ['catalog.json', 'data']


@pytest.mark.parametrize('synced', [False, True])
def test_publish_fsyncs_the_tree_unless_the_caller_did(tmp_path, monkeypatch, synced):
    staged = _staged_backup(tmp_path, bid(0))
    item = _catalog.make_entry(bid(0), 'full', at(0), at(1), _catalog.hash_tree(staged))
    files = sorted(os.path.join(d, n) for d, dummy, names in os.walk(staged) for n in names)
    synced_paths = []
    real = _catalog.fsync_path
    monkeypatch.setattr(_catalog, 'fsync_path', lambda path, directory=False: (synced_paths.append(path),
                                                                                real(path, directory)))
    _catalog.publish(str(tmp_path), item, staged, synced=synced)
    # Always: the root after the rename. Not synced by the caller: every file and directory of the staged tree first.
    assert str(tmp_path) in synced_paths
    assert [p for p in files if p in synced_paths] == ([] if synced else files)
    assert (staged in synced_paths) is not synced


def test_crash_before_the_marker_is_never_listed(tmp_path):
    staged = _staged_backup(tmp_path, bid(0))
    item = _catalog.make_entry(bid(0), 'full', at(0), at(1), _catalog.hash_tree(staged))

    def crash(path, data):
        raise KeyboardInterrupt('power cut before catalog.json')
    with pytest.raises(KeyboardInterrupt):
        _catalog.publish(str(tmp_path), item, staged, write_marker=crash)
    assert os.path.isdir(os.path.join(str(tmp_path), bid(0)))  # renamed, but ...
    listed = _catalog.list_backups(str(tmp_path))
    assert listed['backups'] == []  # ... not listed, so never restored nor counted by retention
    assert [x['name'] for x in listed['leftovers']] == [bid(0)]
    assert _catalog.plan_retention(listed['backups'], keep_count=1)['keep'] == []


def test_crash_before_the_rename_is_never_listed(tmp_path):
    _staged_backup(tmp_path, bid(0))
    listed = _catalog.list_backups(str(tmp_path))
    assert listed['backups'] == []
    assert [x['name'] for x in listed['leftovers']] == ['.tmp-' + bid(0)]


def test_partial_marker_write_is_not_a_marker(tmp_path):
    final, item = _publish(tmp_path, bid(0))
    os.unlink(os.path.join(final, 'catalog.json'))
    # What a crash in write_json_atomic leaves: only its temporary file.
    with open(os.path.join(final, '.catalog.json.tmp.123'), 'w') as handle:
        handle.write('{"id": "')
    assert _catalog.list_backups(str(tmp_path))['backups'] == []


def test_unreadable_marker_is_reported_not_used(tmp_path):
    final, item = _publish(tmp_path, bid(0))
    with open(os.path.join(final, 'catalog.json'), 'w') as handle:
        handle.write('{broken')
    listed = _catalog.list_backups(str(tmp_path), remove_leftovers_older_than=0)
    assert listed['backups'] == [] and listed['removed'] == []
    assert listed['unreadable'][0]['path'] == final
    assert os.path.isdir(final)  # never removed automatically


def test_marker_of_another_backup_is_refused(tmp_path):
    final, item = _publish(tmp_path, bid(0))
    _catalog.write_entry(final, dict(item, id=bid(5)))
    assert _catalog.list_backups(str(tmp_path))['unreadable']


def test_leftovers_removed_only_when_asked_and_old_enough(tmp_path):
    root = str(tmp_path)
    _publish(tmp_path, bid(0))
    old_tmp = _staged_backup(tmp_path, bid(10))
    fresh_tmp = _staged_backup(tmp_path, bid(20))
    os.makedirs(os.path.join(root, '.scratch-verify-x-1'))
    os.makedirs(os.path.join(root, 'logs'))  # the backup image keeps its logs beside the backups
    with open(os.path.join(root, '.lock'), 'w') as handle:
        handle.write('1')
    past = time.time() - 7200
    for dirpath, dirnames, filenames in os.walk(old_tmp):
        for name in dirnames + filenames + ['.']:
            os.utime(os.path.join(dirpath, name), (past, past))
    os.utime(os.path.join(root, '.scratch-verify-x-1'), (past, past))

    listed = _catalog.list_backups(root)
    assert sorted(x['name'] for x in listed['leftovers']) == sorted(
        ['.tmp-' + bid(10), '.tmp-' + bid(20), '.scratch-verify-x-1'])
    assert listed['removed'] == []

    cleaned = _catalog.list_backups(root, remove_leftovers_older_than=3600)
    assert sorted(x['name'] for x in cleaned['removed']) == sorted(['.tmp-' + bid(10), '.scratch-verify-x-1'])
    assert [x['name'] for x in cleaned['leftovers']] == ['.tmp-' + bid(20)]
    assert os.path.isdir(fresh_tmp) and not os.path.exists(old_tmp)
    assert os.path.isdir(os.path.join(root, 'logs')) and os.path.exists(os.path.join(root, '.lock'))
    assert [e['id'] for e in cleaned['backups']] == [bid(0)]


def test_a_long_running_backup_is_young_while_it_writes(tmp_path):
    staged = _staged_backup(tmp_path, bid(0))
    past = time.time() - 7200
    os.utime(staged, (past, past))  # its top directory did not change for two hours ...
    # ... but a file deep inside was written just now: not a leftover to remove.
    listed = _catalog.list_backups(str(tmp_path), remove_leftovers_older_than=3600)
    assert listed['removed'] == [] and len(listed['leftovers']) == 1


def test_remove_backup_unpublishes_first(tmp_path, monkeypatch):
    final, item = _publish(tmp_path, bid(0))

    def crash(path):
        raise OSError('disk went away')
    monkeypatch.setattr(_catalog.shutil, 'rmtree', crash)
    with pytest.raises(OSError):
        _catalog.remove_backup(str(tmp_path), bid(0))
    monkeypatch.undo()
    assert _catalog.list_backups(str(tmp_path))['backups'] == []
    _catalog.remove_backup(str(tmp_path), bid(0))
    assert not os.path.exists(final)


def test_start_and_publish_refuse_a_taken_id(tmp_path):
    _publish(tmp_path, bid(0))
    with pytest.raises(CatalogError, match='already exists'):
        _catalog.start_backup(str(tmp_path), bid(0))
    with pytest.raises(CatalogError, match='Invalid backup id'):
        _catalog.start_backup(str(tmp_path), '../escape')


def test_write_json_atomic_leaves_no_temporary_file(tmp_path):
    path = str(tmp_path / 'catalog.json')
    _catalog.write_json_atomic(path, {'a': 1})
    _catalog.write_json_atomic(path, {'a': 2})
    assert os.listdir(str(tmp_path)) == ['catalog.json']
    with open(path) as handle:
        assert json.load(handle) == {'a': 2}


def test_make_entry_validates_parents():
    with pytest.raises(CatalogError, match='needs a parent'):
        _catalog.make_entry(bid(0, 'incremental'), 'incremental', at(0), at(1), {})
    with pytest.raises(CatalogError, match='has no parent'):
        _catalog.make_entry(bid(0), 'full', at(0), at(1), {}, parent=bid(1))


# ---------------------------------------------------------------------------------------------
# Ordering and chains


def test_order_is_by_recorded_stop_time_not_by_name():
    # A long full backup started first (smaller id) but stopped after a short one started later.
    long_full = entry(bid(0), stop_minutes=120, start_minutes=0)
    short_full = entry(bid(10), stop_minutes=15, start_minutes=10)
    assert [e['id'] for e in _catalog.sort_by_stop([long_full, short_full])] == [bid(10), bid(0)]


def test_chain_is_full_first_and_broken_chains_are_explained():
    full = entry(bid(0), 1)
    inc1 = entry(bid(5, 'incremental'), 6, parent=bid(0))
    inc2 = entry(bid(9, 'incremental'), 10, parent=inc1['id'])
    assert [e['id'] for e in _catalog.chain([inc2, full, inc1], inc2['id'])] == [full['id'], inc1['id'], inc2['id']]
    with pytest.raises(CatalogError, match='not in the catalog: it cannot be restored'):
        _catalog.chain([full, inc2], inc2['id'])
    loop = entry(bid(3, 'incremental'), 4, parent=bid(7, 'incremental'))
    loop2 = entry(bid(7, 'incremental'), 8, parent=bid(3, 'incremental'))
    with pytest.raises(CatalogError, match='loop'):
        _catalog.chain([loop, loop2], loop['id'])


# ---------------------------------------------------------------------------------------------
# Choosing the backup to restore


def _restore_catalog():
    return [
        entry(bid(0), 10, verified=True),                               # full A: 00:00 -> 00:10
        entry(bid(60, 'incremental'), 70, parent=bid(0)),               # B on A: 01:00 -> 01:10
        entry(bid(120), 180, verified=True, start_minutes=120),         # full C: 02:00 -> 03:00 (long)
        entry(bid(150, 'incremental'), 155, parent=bid(120)),           # D on C? C ended later: see test
    ]


def test_latest_is_newest_by_stop_time():
    entries = _restore_catalog()[:3]
    assert [e['id'] for e in _catalog.select_backup(entries)] == [bid(120)]


def test_target_time_takes_newest_backup_that_ended_before_it():
    entries = _restore_catalog()[:3]
    chosen = _catalog.select_backup(entries, target_time=_catalog.format_time(at(100)))
    assert [e['id'] for e in chosen] == [bid(0), bid(60, 'incremental')]
    # 02:30 is after C started but before it ended: C cannot stop at 02:30, B is the answer.
    chosen = _catalog.select_backup(entries, target_time=at(150))
    assert [e['id'] for e in chosen][-1] == bid(60, 'incremental')
    # Exactly at C's stop time is not "before" it.
    assert _catalog.select_backup(entries, target_time=at(180))[-1]['id'] == bid(60, 'incremental')
    assert _catalog.select_backup(entries, target_time=at(181))[-1]['id'] == bid(120)


def test_a_pinned_id_with_a_target_time_is_restored_as_planned():
    entries = _restore_catalog()[:3]
    planned = _catalog.select_backup(entries, target_time=at(100))
    # A full backup that ends later (C) does not change what the run restores for that plan.
    pinned = _catalog.select_backup(entries, target=planned[-1]['id'], target_time=at(100))
    assert [e['id'] for e in pinned] == [e['id'] for e in planned]
    # An older backup than the plan's choice is still a valid pin (the operator asked for it).
    assert [e['id'] for e in _catalog.select_backup(entries, target=bid(0), target_time=at(100))] == [bid(0)]
    with pytest.raises(CatalogError, match='Backup %s ended at .*not before target_time' % bid(120)):
        _catalog.select_backup(entries, target=bid(120), target_time=at(150))
    with pytest.raises(CatalogError, match='is not in the catalog'):
        _catalog.select_backup(entries, target=bid(500), target_time=at(600))


def test_target_time_before_every_backup_is_a_clear_error():
    with pytest.raises(CatalogError, match='No backup ended before 2025-01-01T00:05:00.000000Z.*ended at 2025-01-01T00:10'):
        _catalog.select_backup(_restore_catalog()[:3], target_time=at(5))
    with pytest.raises(CatalogError, match='take a full backup first'):
        _catalog.select_backup([], target_time=at(5))
    with pytest.raises(CatalogError, match='no UTC offset'):
        _catalog.select_backup(_restore_catalog(), target_time='2025-01-01 02:00:00')


def test_backups_that_failed_verification_or_lost_a_parent_are_never_chosen():
    entries = _restore_catalog()[:3]
    entries[2]['verified'] = False                  # C is damaged
    entries[0]['verified'] = True
    assert _catalog.select_backup(entries)[-1]['id'] == bid(60, 'incremental')
    entries[0]['verified'] = False                  # A damaged too: B's chain is broken
    with pytest.raises(CatalogError, match='No restorable backup'):
        _catalog.select_backup(entries)
    with pytest.raises(CatalogError, match='failed verification'):
        _catalog.select_backup(entries, target=bid(60, 'incremental'))
    orphan = entry(bid(200, 'incremental'), 205, parent=bid(190))
    assert _catalog.select_backup(_restore_catalog()[:3] + [orphan])[-1]['id'] == bid(120)


def test_target_by_id():
    entries = _restore_catalog()[:3]
    assert [e['id'] for e in _catalog.select_backup(entries, target=bid(60, 'incremental'))] == [
        bid(0), bid(60, 'incremental')]
    with pytest.raises(CatalogError, match='is not in the catalog'):
        _catalog.select_backup(entries, target='20990101T000000Z-full')


# ---------------------------------------------------------------------------------------------
# Retention


NOW = at(60 * 24 * 40)  # 40 days after T0


def days(n):
    return int(n * 24 * 60)


def test_retention_needs_a_rule_and_sane_values():
    with pytest.raises(CatalogError, match='keep_days or keep_count'):
        _catalog.plan_retention([], None, None)
    with pytest.raises(CatalogError, match='at least 1'):
        _catalog.plan_retention([], None, 0)
    with pytest.raises(CatalogError, match='negative'):
        _catalog.plan_retention([], -1, None)
    assert _catalog.plan_retention([], 30, None)['keep'] == []


def test_keep_count_keeps_newest_by_time_not_by_name():
    # ids sort opposite to stop times: a name-sorting retention would keep the wrong ones.
    early_name_late_stop = entry(bid(days(1)), days(35), start_minutes=days(1))
    late_name_early_stop = entry(bid(days(20)), days(21), start_minutes=days(20))
    oldest = entry(bid(days(0)), days(0.5), start_minutes=days(0))
    plan = _catalog.plan_retention([late_name_early_stop, oldest, early_name_late_stop], keep_count=1, now=NOW)
    assert plan['keep'] == [early_name_late_stop['id']]
    assert plan['remove'] == [oldest['id'], late_name_early_stop['id']]


def test_keep_days_keeps_the_window_and_the_backup_that_restores_its_start():
    entries = [entry(bid(days(d)), days(d) + 30) for d in (1, 5, 12, 15, 20, 38)]
    plan = _catalog.plan_retention(entries, keep_days=30, now=NOW)  # window starts at day 10
    assert plan['keep'] == [bid(days(5)), bid(days(12)), bid(days(15)), bid(days(20)), bid(days(38))]
    assert plan['remove'] == [bid(days(1))]
    assert 'restores its start' in plan['reasons'][bid(days(5))][0]


def test_newest_verified_full_is_never_removed():
    verified_full = entry(bid(days(1)), days(1) + 10, verified=True)
    unverified = [entry(bid(days(d)), days(d) + 10) for d in (30, 35, 39)]
    plan = _catalog.plan_retention([verified_full] + unverified, keep_days=0, keep_count=1, now=NOW)
    assert verified_full['id'] in plan['keep']
    assert plan['reasons'][verified_full['id']] == ['newest verified full backup']
    assert plan['keep'] == [verified_full['id'], bid(days(39))]
    assert plan['warnings'] == []


def test_without_a_verified_full_the_newest_restorable_full_is_kept_and_flagged():
    entries = [entry(bid(days(1)), days(1) + 10), entry(bid(days(2)), days(2) + 10, verified=False)]
    plan = _catalog.plan_retention(entries, keep_days=0, now=NOW)
    assert plan['keep'] == [bid(days(1))]
    assert plan['warnings'] and 'verify' in plan['warnings'][0]


def test_parents_of_kept_incrementals_are_kept_transitively():
    full = entry(bid(days(1)), days(1) + 10, verified=True)
    other_full = entry(bid(days(2)), days(2) + 10, verified=True)
    inc1 = entry(bid(days(3), 'incremental'), days(3) + 10, parent=full['id'])
    inc2 = entry(bid(days(4), 'incremental'), days(4) + 10, parent=inc1['id'])
    plan = _catalog.plan_retention([full, other_full, inc1, inc2], keep_count=1, keep_days=0, now=NOW)
    # inc2 is the newest; its chain inc1 <- full must stay although the newest verified full is other_full.
    assert plan['keep'] == [full['id'], other_full['id'], inc1['id'], inc2['id']]
    assert plan['reasons'][full['id']] == ['parent of kept %s' % inc1['id']]
    assert plan['reasons'][inc1['id']] == ['parent of kept %s' % inc2['id']]
    assert plan['remove'] == []


def test_parent_kept_even_when_its_name_sorts_after_the_child():
    # Parent started late (large id) but stopped before the child started: ordering by name would
    # think the child is older than its parent.
    parent = entry('20250105T000000Z-full', days(2), start_minutes=days(1.9), verified=True)
    child = entry('20250104T000000Z-incremental', days(3), parent=parent['id'], start_minutes=days(2.5))
    newer_full = entry(bid(days(3.5)), days(3.6), verified=True)
    plan = _catalog.plan_retention([newer_full, child, parent], keep_count=2, keep_days=0, now=NOW)
    assert plan['keep'] == [parent['id'], child['id'], newer_full['id']]


def test_failed_backups_do_not_count_and_broken_chains_warn():
    good_old = entry(bid(days(1)), days(1) + 10, verified=True)
    bad_new = entry(bid(days(5)), days(5) + 10, verified=False)
    orphan = entry(bid(days(6), 'incremental'), days(6) + 10, parent=bid(days(4)))
    plan = _catalog.plan_retention([good_old, bad_new, orphan], keep_count=1, keep_days=0, now=NOW)
    assert plan['keep'] == [good_old['id']]
    assert plan['remove'] == [bad_new['id'], orphan['id']]
    # In the window, an orphan is kept (for inspection) and a warning says it cannot be restored.
    plan = _catalog.plan_retention([good_old, bad_new, orphan], keep_days=40, now=NOW)
    assert plan['remove'] == [] and any('cannot be restored' in w for w in plan['warnings'])


def test_oldest_wal_needed_is_the_start_of_the_oldest_kept_backup_by_position():
    a = entry(bid(days(1)), days(1) + 10, verified=True, wal_start='000000010000000000000010')
    b = entry(bid(days(2)), days(2) + 10, wal_start='000000020000000000000008')  # newer timeline, older name order trap
    c = entry(bid(days(3)), days(3) + 10, wal_start='000000020000000000000020')
    plan = _catalog.plan_retention([a, b, c], keep_count=3, now=NOW)
    assert plan['oldest_wal_needed'] == '000000020000000000000008'
    plan = _catalog.plan_retention([a, b, c], keep_count=1, keep_days=0, now=NOW)
    assert plan['keep'] == [a['id'], c['id']]
    assert plan['oldest_wal_needed'] == '000000010000000000000010'
    assert _catalog.plan_retention([], keep_count=1)['oldest_wal_needed'] is None


def test_summary_drops_the_file_map():
    item = entry(bid(0), 1)
    small = _catalog.summary(item)
    assert 'files' not in small and small['file_count'] == 1 and 'files' in item


# ---------------------------------------------------------------------------------------------
# Unreadable entries: reported once, with the file, the key and the fix; never used nor removed


def _break(root, backup_id, text=None, **changes):
    """Rewrite the catalog.json of a published backup: raw ``text`` (str or bytes), or its entry with
    ``changes`` (a value of None removes the key)."""
    path = os.path.join(str(root), backup_id, 'catalog.json')
    if isinstance(text, str):
        text = text.encode('utf-8')
    if text is None:
        with open(path) as handle:
            data = json.load(handle)
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        text = json.dumps(data).encode('utf-8')
    with open(path, 'wb') as handle:
        handle.write(text)
    return os.path.dirname(path)


@pytest.mark.parametrize('backup_type, text, changes, words', [
    ('full', None, dict(stopped_at=None), 'has no stopped_at'),
    ('full', None, dict(started_at=None), 'has no started_at'),
    ('full', None, dict(stopped_at='yesterday'), "has stopped_at 'yesterday', which is not an ISO 8601 time"),
    ('full', None, dict(stopped_at='2025-01-01 00:10:00'), 'which is not an ISO 8601 time with a UTC offset'),
    ('full', None, dict(stopped_at=1735689600), 'which is not a time'),
    ('full', '[1, 2]', {}, 'is not a JSON object but list'),
    ('full', '"just a string"', {}, 'is not a JSON object but str'),
    ('full', '{"id": "2025', {}, 'is not valid JSON'),
    ('full', '', {}, 'is not valid JSON'),
    ('full', b'\xff\xfe{', {}, 'is not valid JSON'),
    ('full', None, dict(id=None), 'has no id'),
    ('full', None, dict(type=None), 'has no type'),
    ('full', None, dict(type='differential'), "has type 'differential'"),
    ('full', None, dict(type='incremental', parent=bid(0)), 'has type incremental, but its id says full'),
    ('full', None, dict(files=None), 'has no files'),
    ('full', None, dict(files=['data/x']), 'has files that are not a map'),
    ('full', None, dict(files={'data/x': {'sha256': 'a'}}), 'records the file data/x without a size'),
    ('full', None, dict(files={'data/x': {'size': 1}}), 'records the file data/x without a sha256'),
    ('full', None, dict(files={'data/x': {'size': 1}}, sealed=True), 'records the file data/x without a sha256'),
    ('full', None, dict(files={'data/x': {'size': 1, 'sha256': None}}, sealed=False),
     'records the file data/x without a sha256'),
    ('full', None, dict(sealed='no'), "has sealed 'no' (true or false)"),
    ('incremental', None, dict(parent=None), 'is an incremental backup without parent'),
    ('incremental', None, dict(parent=''), 'is an incremental backup without parent'),
    ('incremental', None, dict(parent=['x']), "has parent ['x'], which is not a backup id"),
    ('full', None, dict(verified='yes'), "has verified 'yes' (true, false or null)"),
    ('full', None, dict(wal_start='garbage'), "has wal_start 'garbage', which is not a WAL segment name"),
    ('full', None, dict(bytes='12 kB'), "has bytes '12 kB', which is not a byte count"),
])
def test_an_unreadable_entry_is_reported_and_skipped_not_raised(tmp_path, backup_type, text, changes, words):
    root = str(tmp_path)
    dummy, good = _publish(root, bid(0), 1)
    broken_id = bid(10, backup_type)
    _publish(root, broken_id, 11, parent=bid(0) if backup_type == 'incremental' else None)
    _break(root, broken_id, text, **changes)
    listed = _catalog.list_backups(root, remove_leftovers_older_than=0)
    assert [e['id'] for e in listed['backups']] == [good['id']]
    assert listed['leftovers'] == [] and listed['removed'] == []
    (item,) = listed['unreadable']
    marker = os.path.join(root, broken_id, 'catalog.json')
    assert item['path'] == os.path.join(root, broken_id) and item['id'] == broken_id
    assert item['error'].startswith(marker + ' ') and words in item['error'], item['error']
    assert item['error'].endswith('remove the directory or restore its catalog.json from S3')
    # The list action succeeds, reports it, and the good backup stays the latest.
    shown = _catalog.listing(root)
    assert [b['id'] for b in shown['backups']] == [good['id']] and shown['latest'] == good['id']
    assert shown['unreadable'] == listed['unreadable']
    with pytest.raises(CatalogError, match='remove the directory'):
        _catalog.read_entry(os.path.join(root, broken_id))


def test_check_entry_names_the_file_the_key_and_the_fix():
    item = entry(bid(0), 1)
    assert _catalog.check_entry(item, '/b/' + bid(0)) is None
    del item['stopped_at']
    assert _catalog.check_entry(item, '/b/' + bid(0)) == (
        '/b/%s/catalog.json has no stopped_at: the backup is skipped (never listed, chained, restored or removed); '
        'remove the directory or restore its catalog.json from S3' % bid(0))
    # An S3 copy: its URL, the id it must carry and its own fix.
    assert _catalog.check_entry(item, 's3://bucket/postgres/' + bid(0) + '/', bid(0), fix='upload it again') == (
        's3://bucket/postgres/%s/catalog.json has no stopped_at: the backup is skipped (never listed, chained, restored '
        'or removed); upload it again' % bid(0))
    # Entries written by make_entry, as pg_backup and redis_snapshot write them, pass.
    assert _catalog.entry_problem(entry(bid(5, 'incremental'), 6, parent=bid(0), wal_start='0' * 24), bid(5, 'incremental')) is None


def test_a_new_backup_never_builds_on_an_unreadable_one(tmp_path):
    root = str(tmp_path)
    _publish(root, bid(0), 1)
    _publish(root, bid(10), 11)
    _break(root, bid(10), stopped_at=None)             # the newest backup: no stopped_at
    _publish(root, bid(20, 'incremental'), 21, parent=bid(0))
    _break(root, bid(20, 'incremental'), '{"id": ')    # newer still: truncated
    entries = _catalog.list_backups(root)['backups']
    assert _pgbackup.choose_parent(entries, dict(system_identifier=None))['id'] == bid(0)
    # Nor is an unreadable backup restored: latest and a target time both choose the readable one.
    assert [e['id'] for e in _catalog.select_backup(entries)] == [bid(0)]
    assert [e['id'] for e in _catalog.select_backup(entries, target_time=at(30))] == [bid(0)]
    assert _catalog.select_for_verify(entries, 'latest', root) == entries[-1:]
    with pytest.raises(CatalogError, match='not in the catalog'):
        _catalog.select_for_verify(entries, bid(10), root)


def test_an_incremental_on_an_unreadable_parent_is_not_restorable(tmp_path):
    root = str(tmp_path)
    _publish(root, bid(0), 1)
    _publish(root, bid(10), 11)
    _publish(root, bid(20, 'incremental'), 21, parent=bid(10))
    _break(root, bid(10), stopped_at='soon')
    shown = _catalog.listing(root)
    assert [(b['id'], b['restorable']) for b in shown['backups']] == [(bid(0), True), (bid(20, 'incremental'), False)]
    assert shown['latest'] == bid(0)
    with pytest.raises(CatalogError, match='not in the catalog: it cannot be restored'):
        _catalog.select_backup(_catalog.list_backups(root)['backups'], target=bid(20, 'incremental'))


def test_prune_keeps_an_unreadable_backup_and_says_so(tmp_path):
    root = str(tmp_path)
    _publish(root, bid(0), 1)
    _publish(root, bid(10), 11)
    _break(root, bid(10), stopped_at=None)
    for check_mode in (True, False):
        result = _catalog.prune(root, 0, 1, 0, check_mode=check_mode)
        assert result['removed'] == [] and result['kept'] == [bid(0)] and result['changed'] is False
        assert [item['id'] for item in result['unreadable']] == [bid(10)]
        (warning,) = [w for w in result['warnings'] if bid(10) in w]
        assert 'has no stopped_at' in warning and warning.endswith('Until then retention keeps it')
        assert os.path.isfile(os.path.join(root, bid(10), 'catalog.json'))


def test_prune_keeps_what_an_unreadable_incremental_may_need(tmp_path):
    root = str(tmp_path)
    _publish(root, bid(0), 1)                                        # oldest full
    _publish(root, bid(10), 11)                                      # the unreadable incremental's parent
    _publish(root, bid(20, 'incremental'), 21, parent=bid(10))
    _publish(root, bid(30), 31)                                      # newest full
    _break(root, bid(20, 'incremental'), stopped_at=None)            # its parent is still named
    result = _catalog.prune(root, 0, 1, 0, check_mode=True)
    assert result['removed'] == [bid(0)] and result['kept'] == [bid(10), bid(30)]
    assert result['reasons'][bid(10)] == ['parent of unreadable %s' % bid(20, 'incremental')]
    assert any('and the chain of its parent %s' % bid(10) in w for w in result['warnings'])

    _break(root, bid(20, 'incremental'), '{"id": "%s", "parent": "' % bid(20, 'incremental'))  # parent unknown now
    result = _catalog.prune(root, 0, 1, 0, check_mode=False)
    assert result['removed'] == [] and result['kept'] == [bid(0), bid(10), bid(30)]
    assert 'started before unreadable incremental' in result['reasons'][bid(0)][0]
    assert any('every backup that started before it (2): its parent is unknown' in w for w in result['warnings'])
    assert set([bid(0), bid(10), bid(20, 'incremental'), bid(30)]) <= set(os.listdir(root))


def test_retention_keeps_the_wal_an_unreadable_backup_may_need():
    old = entry(bid(days(1)), days(1) + 10, verified=True, wal_start='000000010000000000000010')
    new = entry(bid(days(39)), days(39) + 10, verified=True, wal_start='000000010000000000000090')
    unreadable = dict(path='/b/' + bid(days(20)), id=bid(days(20)), error='/b/x/catalog.json has no stopped_at: ...',
                      parent=None, wal_start=None)
    # Without it: only the newest is kept, the WAL before its start can go.
    assert _catalog.plan_retention([old, new], keep_count=1, keep_days=0, now=NOW)['oldest_wal_needed'] == new['wal_start']
    # Its WAL starts no earlier than the newest backup that started before it.
    plan = _catalog.plan_retention([old, new], keep_count=1, keep_days=0, now=NOW, unreadable=[unreadable])
    assert plan['keep'] == [new['id']] and plan['oldest_wal_needed'] == old['wal_start']
    # Its own wal_start, when its catalog.json still says it, is exact.
    plan = _catalog.plan_retention([old, new], keep_count=1, keep_days=0, now=NOW,
                                   unreadable=[dict(unreadable, wal_start='000000010000000000000050')])
    assert plan['oldest_wal_needed'] == '000000010000000000000050'
    # Nothing says where it starts: no WAL is removed until it is fixed.
    first = dict(unreadable, id=bid(0), path='/b/' + bid(0))
    plan = _catalog.plan_retention([old, new], keep_count=1, keep_days=0, now=NOW, unreadable=[first])
    assert plan['oldest_wal_needed'] is None
    assert any('no archived WAL is removed until it is fixed' in w for w in plan['warnings'])
    # Redis snapshots record no WAL: nothing to say about it.
    plain = [entry(bid(days(1)), days(1) + 10, verified=True)]
    plan = _catalog.plan_retention(plain, keep_count=1, now=NOW, unreadable=[first])
    assert plan['oldest_wal_needed'] is None and not any('WAL' in w for w in plan['warnings'])


def test_retention_survives_a_loop_of_parents():
    full = entry(bid(0), 1, verified=True)
    loop = entry(bid(3, 'incremental'), 4, parent=bid(7, 'incremental'))
    loop2 = entry(bid(7, 'incremental'), 8, parent=bid(3, 'incremental'))
    plan = _catalog.plan_retention([full, loop, loop2], keep_days=40, now=at(10))
    assert plan['remove'] == [] and plan['keep'] == [full['id'], loop['id'], loop2['id']]


# ---------------------------------------------------------------------------------------------
# Pure helpers of _pgbackup


def test_basebackup_command_never_carries_the_password():
    params = dict(login_host='172.30.0.10', login_port=5432, login_user='psscript_backup', login_password='s3cret',
                  connect_timeout=5)
    cmd = _pgbackup.basebackup_command('/usr/bin/pg_basebackup', params, '/b/.tmp-x/data', 'x',
                                       parent_manifest='/b/p/backup_manifest', max_rate='32M')
    assert 's3cret' not in ' '.join(cmd)
    for flag in ('--format', '--wal-method', '--checkpoint', '--no-password', '--incremental', '--max-rate'):
        assert flag in cmd
    assert cmd[cmd.index('--wal-method') + 1] == 'none' and cmd[cmd.index('--format') + 1] == 'plain'
    env = _pgbackup.connection_env(params, '/tmp/x/pgpass')
    assert env['PGPASSFILE'] == '/tmp/x/pgpass' and 's3cret' not in ' '.join(env.values())


@pytest.mark.parametrize('password', ['s3cret', 'with:colon', 'back\\slash'])
def test_the_password_reaches_libpq_in_a_private_file_that_is_removed(password):
    with _pgbackup.password_file(password) as path:
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700
        with open(path) as handle:
            line = handle.read()
        # libpq's pgpass format: host:port:db:user:password, with ':' and '\\' escaped by a backslash.
        assert line == '*:*:*:*:%s\n' % password.replace('\\', '\\\\').replace(':', '\\:')
    assert not os.path.exists(os.path.dirname(path))
    with _pgbackup.password_file(None) as path:
        assert path is None


@pytest.mark.parametrize('stderr, kind, words', [
    ('pg_basebackup: error: could not initiate base backup: ERROR:  WAL summaries are required on timeline 1 from '
     '0/3000028 to 0/5000060, but no summaries for that timeline and LSN range exist', 'wal_summaries', 'fallback_to_full'),
    ('ERROR:  incremental backups cannot be taken unless WAL summarization is enabled', 'wal_summaries', 'type=full'),
    ('ERROR:  system identifier in backup manifest is 1, but database system identifier is 2', 'parent_mismatch',
     'another cluster'),
    ('FATAL:  no pg_hba.conf entry for replication connection from host "1.2.3.4", user "b"', 'error', 'host replication'),
    ('FATAL:  password authentication failed for user "b"', 'error', 'login_password'),
    ('FATAL:  must be superuser or replication role to start walsender', 'error', 'REPLICATION'),
    ('pg_basebackup: error: could not write to file: No space left on device', 'error', 'prune'),
    ('pg_basebackup: error: COPY stream ended before last file was finished', 'error', 'run the backup again'),
    ('something new', 'error', 'exit code 1'),
])
def test_basebackup_failures_are_explained(stderr, kind, words):
    err = _pgbackup.explain_basebackup_failure(1, stderr, dict(login_host='h', login_port=5432, login_user='b'), 'P')
    assert err.kind == kind and words in err.msg


def test_tool_major():
    assert _pgbackup.tool_major('pg_basebackup (PostgreSQL) 17.12 (Debian 17.12-0+deb13u1)') == 17
    with pytest.raises(_pgbackup.BackupError):
        _pgbackup.tool_major('zsh 5.9')


def test_expected_size_prefers_the_last_full_backup():
    full_old = dict(entry(bid(0), 1), data_bytes=100)
    full_new = dict(entry(bid(5), 6), data_bytes=300)
    inc = dict(entry(bid(7, 'incremental'), 8, parent=bid(5)), data_bytes=10)
    assert _pgbackup.expected_size([inc, full_new, full_old], 50, False)[0] == 300
    assert _pgbackup.expected_size([inc, full_new, full_old], 50, True)[0] == 300  # compressed in the stream
    assert _pgbackup.expected_size([], 50, False) == (50, 'sum of pg_database_size() on the server')
    assert _pgbackup.expected_size([], None, False)[0] == 0


def test_wait_for_wal_is_bounded_and_asks_for_a_switch_once(tmp_path):
    clock = [0.0]
    asked = []

    def sleep(seconds):
        clock[0] += max(seconds, 0.5)
        if clock[0] >= 3:
            (tmp_path / 'A').write_text('x')
    missing = _pgbackup.wait_for_wal(str(tmp_path), ['A', 'B'], 10, on_missing=asked.append,
                                     sleep=sleep, clock=lambda: clock[0])
    assert missing == ['B'] and asked == [['A', 'B']] and clock[0] >= 10
    (tmp_path / 'B').write_text('x')
    assert _pgbackup.wait_for_wal(str(tmp_path), ['A', 'B'], 10, sleep=sleep, clock=lambda: clock[0]) == []


def test_select_for_verify():
    a = dict(id='20250101T000000Z-full')
    b = dict(id='20250102T000000Z-full')
    remote = dict(id='20250103T000000Z-full')
    assert _catalog.select_for_verify([a, b], 'all', '/b') == [a, b]
    assert _catalog.select_for_verify([a, b], 'latest', '/b') == [b]
    assert _catalog.select_for_verify([a, b], a['id'], '/b', remote=[remote]) == [a]
    assert _catalog.select_for_verify([a, b], remote['id'], '/b', remote=[remote]) == [remote]
    with pytest.raises(CatalogError, match='^There is no snapshot in /b to verify: take one first'):
        _catalog.select_for_verify([], 'latest', '/b', noun='snapshot')
    with pytest.raises(CatalogError, match=r'^Backup 20250103T000000Z-full is not in the catalog of /b \(action=list'):
        _catalog.select_for_verify([a, b], remote['id'], '/b')
    assert _catalog.select_for_verify([], 'all', '/b') == []


def test_verify_messages():
    good = dict(id='a', ok=True, problems=[])
    bad = dict(id='b', ok=False, problems=['x: missing', 'y: size'])
    assert _catalog.verify_messages([good], 'snapshot', 'take a new snapshot') == (None, 'Verified 1 snapshot(s): a')
    assert _catalog.verify_messages([], 'backup', 'fix') == (None, 'Verified 0 backup(s): none')
    failure, msg = _catalog.verify_messages([good, bad], 'backup', 'take a new full backup')
    assert failure == 'Verification failed for b: x: missing; y: size. Do not restore from it; take a new full backup'
    assert msg == 'Verified 2 backup(s): a, b'


def test_listing_and_prune_of_a_root(tmp_path):
    root = str(tmp_path)
    dummy, old = _publish(root, '20250101T000000Z-full', 1)
    dummy, new = _publish(root, '20250101T010000Z-full', 61)
    new['verified'] = True
    _catalog.write_entry(os.path.join(root, new['id']), new)
    os.mkdir(os.path.join(root, '.tmp-20250101T020000Z-full'))
    listed = _catalog.listing(root)
    assert [b['id'] for b in listed['backups']] == [old['id'], new['id']] and 'files' not in listed['backups'][0]
    assert listed['latest'] == new['id'] and listed['last_verified_full'] == new['id']
    assert [item['name'] for item in listed['leftovers']] == ['.tmp-20250101T020000Z-full']

    planned = _catalog.prune(root, 0, 1, 0, check_mode=True)
    assert planned['changed'] is True and planned['removed'] == [old['id']] and planned['kept'] == [new['id']]
    assert [item['name'] for item in planned['removed_leftovers']] == ['.tmp-20250101T020000Z-full']
    assert planned['leftovers'] == [] and os.path.isdir(os.path.join(root, old['id']))
    done = _catalog.prune(root, 0, 1, 0, check_mode=False)
    assert done['removed'] == [old['id']] and not os.path.exists(os.path.join(root, old['id']))
    assert not os.path.exists(os.path.join(root, '.tmp-20250101T020000Z-full'))
    assert _catalog.prune(root, 0, 1, 0, check_mode=False)['changed'] is False


def test_root_lock_is_exclusive(tmp_path):
    first = _catalog.RootLock(str(tmp_path)).acquire()
    try:
        with pytest.raises(_catalog.BackupError, match='Another backup job holds'):
            _catalog.RootLock(str(tmp_path)).acquire()
    finally:
        first.release()
    with _catalog.RootLock(str(tmp_path)):
        pass


def test_restores_share_the_readers_lock_and_prune_waits_for_them(tmp_path):
    root = str(tmp_path)
    first = _catalog.RootLock(root, readers=True, shared=True).acquire()
    try:
        # A second restore (a drill beside a live restore) reads too.
        with _catalog.RootLock(root, readers=True, shared=True):
            pass
        with pytest.raises(_catalog.BackupError, match='A restore is reading these backups') as err:
            _catalog.RootLock(root, readers=True).acquire()
        assert err.value.kind == 'locked'
        # Backups only add: the writers' lock is another file.
        with _catalog.RootLock(root):
            pass
    finally:
        first.release()
    pruning = _catalog.RootLock(root, readers=True).acquire()
    try:
        with pytest.raises(_catalog.BackupError, match='A cleanup .prune. holds'):
            _catalog.RootLock(root, readers=True, shared=True).acquire()
    finally:
        pruning.release()
    with _catalog.RootLock(root, readers=True, shared=True):
        pass
    assert sorted(os.listdir(root)) == ['.lock', '.readers']


RECOVERY_LOG_STOPPED = """\
2026-11-25 18:44:59.452 UTC [39] LOG:  starting point-in-time recovery to 2026-11-25 18:44:18.651597+00
2026-11-25 18:44:59.511 UTC [39] LOG:  consistent recovery state reached at 0/2000120
2026-11-25 18:44:59.521 UTC [39] LOG:  recovery stopping before commit of transaction 743, time 2026-11-25 18:44:19.664672+00
2026-11-25 18:44:59.521 UTC [39] LOG:  redo done at 0/3021708 system usage: CPU: user: 0.00 s, system: 0.00 s, elapsed: 0.05 s
2026-11-25 18:44:59.557 UTC [52] FATAL:  the database system is not accepting connections
2026-11-25 18:44:59.731 UTC [39] LOG:  archive recovery complete
"""

RECOVERY_LOG_NOT_REACHED = """\
2026-11-25 18:45:25.600 UTC [40] LOG:  redo done at 0/50000A0 system usage: CPU: user: 0.00 s
2026-11-25 18:45:25.630 UTC [40] FATAL:  recovery ended before configured recovery target was reached
2026-11-25 18:45:25.640 UTC [36] LOG:  startup process (PID 40) exited with exit code 1
"""


def test_recovery_outcome_needs_the_stop_line_for_a_target():
    target = at(0)
    stopped = _pgbackup.recovery_outcome(RECOVERY_LOG_STOPPED, target_time=target)
    assert stopped['reached'] is True and stopped['stop'].startswith('recovery stopping before commit of transaction 743')
    assert stopped['problems'] == []  # our own refused polling connections are not problems
    missed = _pgbackup.recovery_outcome(RECOVERY_LOG_NOT_REACHED, target_time=target)
    assert missed['reached'] is False and 'recovery ended before configured recovery target' in missed['problems'][0]
    # Replaying to the end of the WAL: archive recovery completing is the proof.
    end = _pgbackup.recovery_outcome(RECOVERY_LOG_STOPPED)
    assert end['reached'] is True and end['stop'].startswith('redo done at 0/3021708')
    assert _pgbackup.recovery_outcome(RECOVERY_LOG_NOT_REACHED)['reached'] is False
    # A stop line without promotion (crash right after) is not a finished recovery.
    assert _pgbackup.recovery_outcome(RECOVERY_LOG_STOPPED.replace('archive recovery complete', 'x'),
                                      target_time=target)['reached'] is False


def test_recovery_settings_promote_read_only_archive_and_utc_target():
    settings = dict(_pgbackup.recovery_settings('/wal-archive/', '/tmp/s', '/tmp/hba', '/tmp/ident',
                                                target_time=_catalog.parse_time('2025-01-31 14:45:00+01:00')))
    assert settings['restore_command'] == 'cp "/wal-archive/%f" "%p"'
    assert settings['recovery_target_time'] == '2025-01-31 13:45:00.000000+00'
    assert settings['recovery_target_action'] == 'promote'
    assert settings['archive_mode'] == 'off' and settings['listen_addresses'] == ''
    immediate = dict(_pgbackup.recovery_settings('/w', '/s', '/h', '/i', immediate=True))
    assert immediate['recovery_target'] == 'immediate' and 'recovery_target_time' not in immediate
    latest = dict(_pgbackup.recovery_settings('/w', '/s', '/h', '/i'))
    assert 'recovery_target' not in latest and 'recovery_target_time' not in latest
