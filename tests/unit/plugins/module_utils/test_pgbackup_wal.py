# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for the WAL check of a restore in module_utils._pgbackup: segment names, timeline history,
the replay walk (gaps, timelines after earlier restores, abandoned branches), segment headers and
hashes, and whether replay reached the end. Everything is plain data and files in tmp_path."""

from __future__ import annotations

import hashlib
import os
import struct
import types

import pytest

from ansible_collections.psscript.infra.plugins.module_utils import _pgbackup
from ansible_collections.psscript.infra.plugins.module_utils._pgbackup import BackupError

MB = 1024 * 1024
SEG = 16 * MB
SYSID = 7466001234567890123


def seg(tli, segno, seg_size=SEG):
    per_id = 0x100000000 // seg_size
    return '%08X%08X%08X' % (tli, segno // per_id, segno % per_id)


def lsn(segno, offset=0, seg_size=SEG):
    value = segno * seg_size + offset
    return '%X/%X' % (value >> 32, value & 0xFFFFFFFF)


def backup(start=3, stop=None, tli=1, stop_tli=None, seg_size=SEG):
    """A catalog entry as take_backup records it: WAL from segment ``start`` to ``stop``."""
    stop = start if stop is None else stop
    return dict(id='20250101T000000Z-full', timeline=tli, stop_timeline=stop_tli or tli,
                start_lsn=lsn(start, 0x28, seg_size), stop_lsn=lsn(stop, 0x100, seg_size),
                wal_start=seg(tli, start, seg_size), wal_stop=seg(stop_tli or tli, stop, seg_size),
                wal_segment_size=seg_size, system_identifier=str(SYSID))


def plan_of(names, histories=None, entry=None):
    histories = histories or {}
    return _pgbackup.plan_replay(list(names) + list(histories), histories.__getitem__, entry or backup(), SEG)


# ---------------------------------------------------------------------------------------------
# Names and positions


def test_segment_names_and_numbers():
    assert _pgbackup.segment_of('000000010000000000000003', SEG) == (1, 3)
    assert _pgbackup.segment_of('0000000200000001000000FF', SEG) == (2, 256 + 255)
    assert _pgbackup.segment_of('000000010000000100000003', 64 * MB) == (1, 64 + 3)
    for other in ('00000002.history', '000000010000000000000003.partial', '000000010000000000000003.00000028.backup',
                  '000000010000000000000003.tmp', 'archive_status', None):
        assert _pgbackup.segment_of(other, SEG) is None


def test_an_end_position_on_a_boundary_belongs_to_the_segment_it_closes():
    assert _pgbackup.lsn_segment(5 * SEG, SEG) == 5
    assert _pgbackup.lsn_segment(5 * SEG, SEG, end=True) == 4
    assert _pgbackup.lsn_segment(5 * SEG + 1, SEG, end=True) == 5


def test_expected_names_follow_the_newest_timeline_begun():
    ranges = _pgbackup.timeline_ranges(2, '1\t0/5800000\tbefore 2025-01-01\n')
    assert [_pgbackup.expected_name(ranges, n, SEG) for n in (4, 5, 6)] == [seg(1, 4), seg(2, 5), seg(2, 6)]


# ---------------------------------------------------------------------------------------------
# Timeline history


def test_history_files_parse_like_postgresql_reads_them():
    text = ('# a comment\n1\t0/5800000\tno recovery target specified\n\n'
            '2\t0/9000028\tbefore transaction 771, time 2025-01-31 13:45:02.131+00\n')
    assert _pgbackup.parse_history(text) == [(1, 0x5800000), (2, 0x9000028)]
    assert _pgbackup.timeline_ranges(3, text) == [
        dict(tli=1, begin=None, end=0x5800000), dict(tli=2, begin=0x5800000, end=0x9000028),
        dict(tli=3, begin=0x9000028, end=None)]
    assert _pgbackup.timeline_ranges(1, '') == [dict(tli=1, begin=None, end=None)]
    for bad in ('one\t0/1\n', '1\n', '2\t0/1\tx\n1\t0/2\tx\n'):
        with pytest.raises(BackupError) as caught:
            _pgbackup.parse_history(bad, '00000003.history')
        assert caught.value.kind == 'timeline' and '00000003.history' in caught.value.msg


def test_latest_timeline_is_the_end_of_an_unbroken_run_of_history_files():
    names = ['00000002.history', '00000003.history', '00000005.history']
    assert _pgbackup.newest_timeline(1, names) == 3
    assert _pgbackup.newest_timeline(3, names) == 3
    assert _pgbackup.newest_timeline(1, []) == 1


# ---------------------------------------------------------------------------------------------
# The replay walk


def test_a_complete_archive_is_replayed_to_its_newest_segment():
    plan = plan_of([seg(1, n) for n in range(2, 9)] + ['000000010000000000000003.00000028.backup'])
    assert plan['path'] == [seg(1, n) for n in range(3, 9)]  # from the backup's start, older WAL ignored
    assert plan['newest'] == seg(1, 8) and plan['gaps'] == [] and plan['stranded'] == []
    assert _pgbackup.plan_problems(plan, to_end=True) == []


def test_a_missing_segment_in_the_middle_is_a_gap_before_newer_wal():
    """The operator's case: backup, three batches each closed by pg_switch_wal, the middle one lost."""
    plan = plan_of([seg(1, 3), seg(1, 4), seg(1, 6)])
    assert plan['path'] == [seg(1, 3), seg(1, 4)] and plan['last_segno'] == 4
    assert plan['gaps'] == [seg(1, 5)] and plan['stranded'] == [seg(1, 6)] and plan['newest'] == seg(1, 6)
    [(kind, text)] = _pgbackup.plan_problems(plan, to_end=True, archive='/wal-archive')
    assert kind == 'wal_gap'
    assert 'would stop after %s because %s is missing' % (seg(1, 4), seg(1, 5)) in text
    assert 'goes on to %s' % seg(1, 6) in text and '/wal-archive' in text and 'target_time' in text
    # A point in time may lie before the gap: PostgreSQL says when it cannot reach it.
    assert _pgbackup.plan_problems(plan, to_end=False) == []


def test_several_missing_segments_are_all_named():
    plan = plan_of([seg(1, 3), seg(1, 7)])
    assert plan['gaps'] == [seg(1, n) for n in (4, 5, 6)]


def test_the_newest_segment_missing_is_no_gap():
    """Nothing is archived after the last segment replay reads: that is the end, not a gap."""
    plan = plan_of([seg(1, 3), seg(1, 4)])
    assert plan['newest'] == seg(1, 4) and _pgbackup.plan_problems(plan, to_end=True) == []


def test_replay_follows_a_new_timeline_and_ignores_the_branch_it_left():
    """An earlier restore stopped in segment 5 and promoted timeline 2; the old server had gone on writing
    timeline 1 (segments 5-8 archived). Replay takes timeline 1 up to the switch, then timeline 2."""
    history = {'00000002.history': '1\t0/5800000\tbefore transaction 900\n'}
    plan = plan_of([seg(1, n) for n in range(3, 9)] + [seg(2, n) for n in (5, 6, 7)], history)
    assert plan['timeline'] == 2 and plan['timelines'] == [1, 2]
    assert plan['path'] == [seg(1, 3), seg(1, 4), seg(2, 5), seg(2, 6), seg(2, 7)]
    assert plan['not_replayed'] == 4  # timeline 1's copy of 5, and 6-8: an abandoned branch, not a gap
    assert _pgbackup.plan_problems(plan, to_end=True) == []

    # Timeline 2's segment 6 lost: timeline 1's segment 6 is on the abandoned branch and cannot stand in.
    plan = plan_of([seg(1, n) for n in range(3, 9)] + [seg(2, n) for n in (5, 7)], history)
    assert plan['path'] == [seg(1, 3), seg(1, 4), seg(2, 5)]
    assert plan['gaps'] == [seg(2, 6)] and plan['stranded'] == [seg(2, 7)]
    assert _pgbackup.plan_problems(plan, to_end=True)[0][0] == 'wal_gap'


def test_a_switch_on_a_segment_boundary_leaves_the_old_segment_off_the_path():
    history = {'00000002.history': '1\t0/5000000\tno recovery target specified\n'}
    plan = plan_of([seg(1, 3), seg(1, 4), seg(1, 5), seg(2, 5), seg(2, 6)], history)
    assert plan['path'] == [seg(1, 3), seg(1, 4), seg(2, 5), seg(2, 6)] and plan['not_replayed'] == 1


def test_a_sibling_timeline_is_not_followed():
    """A rollback left timeline 2 aside; a later restore from timeline 1 made timeline 3 (1 -> 3)."""
    history = {'00000002.history': '1\t0/5800000\tx\n', '00000003.history': '1\t0/4800000\ty\n'}
    plan = plan_of([seg(1, 3), seg(1, 4), seg(2, 5), seg(2, 6), seg(3, 4), seg(3, 5)], history)
    assert plan['timeline'] == 3 and plan['timelines'] == [1, 3]
    assert plan['path'] == [seg(1, 3), seg(3, 4), seg(3, 5)] and plan['not_replayed'] == 3
    assert _pgbackup.plan_problems(plan, to_end=True) == []


def test_a_backup_after_the_branch_point_is_not_on_the_newest_timeline():
    """The abandoned timeline of a rollback still in the archive: PostgreSQL would refuse with "not a child"."""
    history = {'00000002.history': '1\t0/3800000\tbefore transaction 5\n'}
    plan = plan_of([seg(1, 3), seg(1, 4), seg(1, 5), seg(2, 3)], history, backup(start=4, stop=5))
    assert plan['not_child'] and plan['path'] == []
    [(kind, text)] = _pgbackup.plan_problems(plan, to_end=False)
    assert kind == 'timeline' and 'not a child' in text and 'Roll back' in text


def test_a_timeline_without_its_history_file_is_not_followed():
    names = [seg(1, 3), seg(1, 4), seg(3, 5), '00000003.history']
    plan = plan_of(names, {'00000003.history': '1\t0/5000000\tx\n'})
    assert plan['timeline'] == 1 and plan['unfollowed'] == ['00000003.history', seg(3, 5)]
    [(kind, text)] = _pgbackup.plan_problems(plan, to_end=True)
    assert kind == 'timeline' and '00000002.history is missing' in text
    assert _pgbackup.plan_problems(plan, to_end=False) == []


def test_the_backups_own_wal_must_be_there_for_any_target():
    plan = plan_of([seg(1, 3), seg(1, 5)], entry=backup(start=3, stop=5))
    [(kind, text)] = _pgbackup.plan_problems(plan, to_end=False)
    assert kind == 'wal_missing' and seg(1, 4) in text and 'could never become consistent' in text
    plan = plan_of([seg(1, 4)], entry=backup(start=3))
    assert _pgbackup.plan_problems(plan, to_end=False)[0][0] == 'wal_missing'


# ---------------------------------------------------------------------------------------------
# Segment files: size, header, hash, readable


def write_segment(path, tli, segno, seg_size=SEG, magic=0xD116, info=2, header_tli=None, pageaddr=None, sysid=SYSID,
                  size=None):
    """A WAL segment file as PostgreSQL 17 starts one: the long page header, then zeros (sparse)."""
    header = struct.pack('<HHIQI4xQII', magic, info, header_tli or tli, segno * seg_size if pageaddr is None else pageaddr,
                         0, sysid, seg_size, 8192)
    with open(path, 'wb') as handle:
        handle.write(header)
        handle.truncate(seg_size if size is None else size)
    return path


def test_page_header_layout(tmp_path):
    path = write_segment(str(tmp_path / seg(1, 3)), 1, 3, size=40)
    assert _pgbackup.read_page_header(path) == dict(magic=0xD116, info=2, tli=1, pageaddr=3 * SEG, rem_len=0, sysid=SYSID,
                                                    seg_size=SEG, blcksz=8192)
    short = tmp_path / 'short'
    short.write_bytes(b'\x16\xd1')
    assert _pgbackup.read_page_header(str(short)) is None


def problems(tmp_path, name, plan=None, **kwargs):
    tli, segno = _pgbackup.segment_of(name, SEG)
    options = dict((k, kwargs.pop(k)) for k in ('sha256', 'reader') if k in kwargs)
    path = write_segment(str(tmp_path / name), tli, segno, **kwargs)
    return _pgbackup.segment_problems(path, name, plan or plan_of([seg(1, 3)]), str(SYSID), 17, **options)


def test_a_good_segment_passes(tmp_path):
    assert problems(tmp_path, seg(1, 3)) == []


@pytest.mark.parametrize('kwargs, says', [
    (dict(size=SEG - 8192), '16769024 bytes, a WAL segment has 16777216'),
    (dict(magic=0), 'page magic 0000, PostgreSQL 17 writes D116'),
    (dict(info=0), 'no long header'),
    (dict(pageaddr=4 * SEG), 'its first page is WAL position 0/4000000, not 0/3000000'),
    (dict(header_tli=2), 'its first page is of timeline 2, expected 1'),
    (dict(sysid=1), 'from database system 1, the backup is of %d' % SYSID),
])
def test_a_segment_that_is_not_this_one_is_named_with_why(tmp_path, kwargs, says):
    found = problems(tmp_path, seg(1, 3), **kwargs)
    assert len(found) >= 1 and says in found[0] and found[0].startswith(seg(1, 3)), found


def test_the_first_segment_of_a_timeline_starts_with_its_parents_page(tmp_path):
    plan = plan_of([seg(1, 3), seg(1, 4), seg(2, 5)], {'00000002.history': '1\t0/5800000\tx\n'})
    assert problems(tmp_path, seg(2, 5), plan, header_tli=1) == []
    assert problems(tmp_path, seg(2, 6), plan, header_tli=1) == ['%s: its first page is of timeline 1, expected 2' % seg(2, 6)]


def test_a_recorded_hash_must_match(tmp_path):
    path = write_segment(str(tmp_path / 'reference'), 1, 3)
    with open(path, 'rb') as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    assert problems(tmp_path, seg(1, 3), sha256=digest) == []
    [found] = problems(tmp_path, seg(1, 3), sha256='0' * 64, sysid=SYSID, pageaddr=3 * SEG)
    assert found.startswith('%s: SHA-256 %s, recorded %s' % (seg(1, 3), digest, '0' * 64))


def test_readable_by_follows_the_mode_bits():
    def stat(uid, gid, mode):
        return types.SimpleNamespace(st_uid=uid, st_gid=gid, st_mode=0o100000 | mode)
    postgres = (999, set([999]))
    assert _pgbackup.readable_by(stat(999, 999, 0o600), postgres)
    assert not _pgbackup.readable_by(stat(0, 0, 0o600), postgres)
    assert _pgbackup.readable_by(stat(0, 999, 0o640), postgres)
    assert _pgbackup.readable_by(stat(0, 0, 0o644), postgres)
    assert not _pgbackup.readable_by(stat(999, 0, 0o044), postgres)  # the owner bits decide for the owner
    assert _pgbackup.readable_by(stat(5, 5, 0o000), (0, set([0])))


def test_an_unreadable_segment_is_refused(tmp_path):
    path = write_segment(str(tmp_path / seg(1, 3)), 1, 3)
    os.chmod(path, 0o600)
    owner = os.stat(path).st_uid
    found = _pgbackup.segment_problems(path, seg(1, 3), plan_of([seg(1, 3)]), reader=('postgres', owner + 1, set([12345])))
    assert found == ['%s: user postgres cannot read it (owner uid %d, mode 0600): chown it to postgres or make it '
                     'readable' % (seg(1, 3), owner)]


# ---------------------------------------------------------------------------------------------
# check_replay: the pre-check over real directories


def archive_of(tmp_path, segments, name='archive', histories=None):
    directory = tmp_path / name
    directory.mkdir()
    for tli, segno in segments:
        write_segment(str(directory / seg(tli, segno)), tli, segno)
    for history, text in (histories or {}).items():
        (directory / history).write_text(text)
    return str(directory)


def test_check_replay_refuses_a_gap_before_anything_is_built(tmp_path):
    archive = archive_of(tmp_path, [(1, 3), (1, 4), (1, 6)])
    with pytest.raises(BackupError) as caught:
        _pgbackup.check_replay(backup(), [archive], to_end=True, major=17)
    assert caught.value.kind == 'wal_gap' and 'Nothing was changed' in caught.value.msg
    assert caught.value.msg.startswith('Refusing to restore to the end of the archived WAL: the archive has a gap')
    # To a point in time: said as a warning, the restore may stop before the gap.
    plan = _pgbackup.check_replay(backup(), [archive], to_end=False, major=17)
    assert plan['warnings'] and seg(1, 5) in plan['warnings'][0]


def test_check_replay_counts_segments_s3_holds_and_fetched_ones(tmp_path):
    archive = archive_of(tmp_path, [(1, 3), (1, 4), (1, 6)])
    # In check mode S3's segment 5 is only a name: it closes the gap, and is checked once fetched.
    plan = _pgbackup.check_replay(backup(), [archive], to_end=True, more_names=[seg(1, 5)], major=17)
    assert plan['path'] == [seg(1, n) for n in (3, 4, 5, 6)] and plan['unchecked'] == 1 and plan['checked'] == 3
    fetched = archive_of(tmp_path, [(1, 5)], name='fetched')
    plan = _pgbackup.check_replay(backup(), [archive, fetched], to_end=True, major=17)
    assert plan['checked'] == 4 and plan['unchecked'] == 0
    assert _pgbackup.replay_summary(plan) == dict(timeline=1, timelines=[1], first=seg(1, 3), last=seg(1, 6), segments=4,
                                                  newest=seg(1, 6), gaps=[], checked=4, hashed=0, unchecked=0,
                                                  not_replayed=0)


def test_check_replay_refuses_a_damaged_segment_and_checks_recorded_hashes(tmp_path):
    archive = archive_of(tmp_path, [(1, 3), (1, 4), (1, 5)])
    with open(os.path.join(archive, seg(1, 3)), 'rb') as handle:
        recorded = {seg(1, 3): hashlib.sha256(handle.read()).hexdigest()}
    assert _pgbackup.check_replay(backup(), [archive], to_end=True, recorded=recorded, major=17)['hashed'] == 1
    write_segment(os.path.join(archive, seg(1, 4)), 1, 4, magic=0)  # zeroed page, say
    with pytest.raises(BackupError) as caught:
        _pgbackup.check_replay(backup(), [archive], to_end=True, major=17)
    assert caught.value.kind == 'wal_damaged' and 'page magic 0000' in caught.value.msg
    # After the backup's own WAL, a point-in-time restore only warns (its target may come first) ...
    plan = _pgbackup.check_replay(backup(), [archive], to_end=False, major=17)
    assert 'page magic 0000' in plan['warnings'][0]
    # ... but the backup's own WAL is needed by every restore, and its recorded hash is compared.
    with open(os.path.join(archive, seg(1, 3)), 'r+b') as handle:
        handle.seek(SEG // 2)
        handle.write(b'x')
    with pytest.raises(BackupError) as caught:
        _pgbackup.check_replay(backup(), [archive], to_end=False, recorded=recorded, major=17)
    assert caught.value.kind == 'wal_damaged' and 'SHA-256' in caught.value.msg


def test_check_replay_follows_history_files_in_the_archive(tmp_path):
    archive = archive_of(tmp_path, [(1, 3), (1, 4), (1, 5), (1, 6), (2, 5), (2, 6)],
                         histories={'00000002.history': '1\t0/5800000\tbefore transaction 900\n'})
    plan = _pgbackup.check_replay(backup(), [archive], to_end=True, major=17)
    assert plan['path'] == [seg(1, 3), seg(1, 4), seg(2, 5), seg(2, 6)] and plan['not_replayed'] == 2


# ---------------------------------------------------------------------------------------------
# After replay: where it ended


def test_replay_end_reads_the_new_timelines_history(tmp_path):
    assert _pgbackup.replay_end(str(tmp_path)) is None
    pg_wal = tmp_path / 'pg_wal'
    pg_wal.mkdir()
    assert _pgbackup.replay_end(str(tmp_path)) is None
    (pg_wal / '00000002.history').write_text('1\t0/5800000\tx\n')
    (pg_wal / '00000003.history').write_text('1\t0/5800000\tx\n2\t0/7000000\tno recovery target specified\n')
    assert _pgbackup.replay_end(str(tmp_path)) == dict(lsn='0/7000000', timeline=2, new_timeline=3)


LOG_DAMAGED = """\
2025-02-01 10:00:01.000 UTC [39] LOG:  restored log file "000000010000000000000003" from archive
2025-02-01 10:00:01.000 UTC [39] LOG:  incorrect resource manager data checksum in record at 0/4000028
2025-02-01 10:00:01.000 UTC [39] LOG:  redo done at 0/3023C08 system usage: CPU: user: 0.00 s
2025-02-01 10:00:01.000 UTC [39] LOG:  invalid record length at 0/9000060: expected at least 24, got 0
"""


def test_replay_that_ended_before_the_newest_segment_fell_short():
    plan = plan_of([seg(1, n) for n in (3, 4, 5)])
    why = _pgbackup.replay_shortfall(plan, lsn(4), LOG_DAMAGED)
    assert why.startswith('replay ended at 0/4000000, in %s, and did not go on into %s' % (seg(1, 3), seg(1, 4)))
    assert 'incorrect resource manager data checksum in record at 0/4000028' in why and 'holds WAL up to %s' % seg(1, 5) in why


def test_replay_to_the_newest_segment_reached_the_end():
    plan = plan_of([seg(1, n) for n in (3, 4, 5)])
    assert _pgbackup.replay_shortfall(plan, lsn(6), '') is None          # after a switch: the next segment's start
    assert _pgbackup.replay_shortfall(plan, lsn(5, 0x1234), '') is None  # a filled segment, a record going on
    assert _pgbackup.replay_shortfall(plan, lsn(7), '') is None          # more WAL archived since the check


def test_a_damaged_record_in_the_newest_segment_is_a_shortfall_but_the_end_of_wal_is_not():
    plan = plan_of([seg(1, n) for n in (3, 4, 5)])
    damaged = 'LOG:  invalid record length at 0/5000100: expected at least 24, got 0\nLOG:  redo done at 0/50000C0\n'
    why = _pgbackup.replay_shortfall(plan, lsn(5, 0x100), damaged)
    assert why.startswith('replay ended at 0/5000100 on a damaged WAL record inside %s' % seg(1, 5))
    # Complaints after "redo done", or about positions past the archived WAL, are the ordinary end.
    assert _pgbackup.replay_shortfall(plan, lsn(6), LOG_DAMAGED.replace('0/4000028', '0/6000028')) is None
    # A record a crashed primary wrote over is replayed, not damage; a prev-link names the record's own LSN last.
    skipped = 'LOG:  successfully skipped missing contrecord at 0/4FFFFF0, overwritten at 2025-02-01 10:00:00+00\n'
    assert _pgbackup.replay_shortfall(plan, lsn(6), skipped) is None
    prev_link = 'LOG:  record with incorrect prev-link 0/1000028 at 0/9000028\n'
    assert _pgbackup.replay_shortfall(plan, lsn(6), prev_link) is None
    assert 'prev-link' in _pgbackup.replay_shortfall(plan, lsn(6), prev_link.replace('0/9000028', '0/5000028'))


def test_redo_done_lsn():
    assert _pgbackup.redo_done_lsn(LOG_DAMAGED) == '0/3023C08'
    assert _pgbackup.redo_done_lsn('') is None


# ---------------------------------------------------------------------------------------------
# The new timeline's history, for the live server to archive


def test_history_files_the_archive_lacks_are_marked_ready(tmp_path):
    data = tmp_path / 'pgdata'
    (data / 'pg_wal' / 'archive_status').mkdir(parents=True)
    (data / 'pg_wal' / '00000002.history').write_text('1\t0/5800000\tx\n')
    (data / 'pg_wal' / '00000003.history').write_text('1\t0/5800000\tx\n2\t0/7000000\ty\n')
    archive = tmp_path / 'archive'
    archive.mkdir()
    (archive / '00000002.history').write_text('1\t0/5800000\tx\n')
    user = __import__('pwd').getpwuid(os.getuid()).pw_name
    assert _pgbackup.mark_history_for_archiving(str(data), str(archive), user) == ['00000003.history']
    assert os.listdir(str(data / 'pg_wal' / 'archive_status')) == ['00000003.history.ready']
    (archive / '00000003.history').write_text('2\t0/6000000\tanother server\n')
    with pytest.raises(BackupError) as caught:
        _pgbackup.mark_history_for_archiving(str(data), str(archive), user)
    assert caught.value.kind == 'timeline' and 'already holds 00000003.history with other content' in caught.value.msg
