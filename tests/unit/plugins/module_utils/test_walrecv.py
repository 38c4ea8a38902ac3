# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for module_utils._walrecv: the passfile, pg_receivewal's commands, the back-off,
and that retention and the archive's age never count the segment being received."""

from __future__ import annotations

import os

import pytest

from ansible_collections.psscript.infra.plugins.module_utils import _catalog, _pgbackup, _walrecv

S5 = '000000010000000000000005'
S6 = '000000010000000000000006'
S7P = '000000010000000000000007.partial'


def test_passfile_line_escapes_colons_and_backslashes():
    assert _walrecv.passfile_line('10.0.0.1', 5432, 'psscript_backup', 'a:b\\c') == \
        '10.0.0.1:5432:*:psscript_backup:a\\:b\\\\c\n'
    with pytest.raises(ValueError):
        _walrecv.passfile_line('h', 1, 'u', 'two\nlines')


def test_commands_never_carry_the_password_and_stream_without_looping():
    create = _walrecv.create_slot_command('pg_receivewal', '10.0.0.1', 5432, 'psscript_backup', 'psscript_backup_1')
    assert create == ['pg_receivewal', '--host', '10.0.0.1', '--port', '5432', '--username', 'psscript_backup',
                      '--no-password', '--slot', 'psscript_backup_1', '--create-slot', '--if-not-exists']
    stream = _walrecv.stream_command('pg_receivewal', '/wal-archive', '10.0.0.1', 5432, 'psscript_backup',
                                     'psscript_backup_1')
    assert stream[-5:] == ['--directory', '/wal-archive', '--slot', 'psscript_backup_1', '--no-loop']
    with pytest.raises(ValueError):
        _walrecv.stream_command('pg_receivewal', '/wal-archive', 'h', 1, 'u', 'bad-slot')


def test_backoff_grows_to_a_bound_and_a_long_run_resets_it():
    assert [_walrecv.backoff(n) for n in range(7)] == [0, 5, 10, 20, 30, 30, 30]
    assert _walrecv.after_run(3, 5, ok=False) == 4
    assert _walrecv.after_run(3, _walrecv.STABLE_SECONDS, ok=False) == 0
    assert _walrecv.after_run(3, 1, ok=True) == 0


def test_retention_and_archive_age_skip_the_segment_being_received(tmp_path):
    # Retention removes only what lies before the oldest WAL a kept backup needs: the .partial is newer.
    assert _catalog.wal_files_to_remove([S5, S6, S7P], S6) == [S5]
    # The archive's age is the newest complete segment's (a growing .partial says nothing about completion).
    for name, mtime in ((S5, 100), (S6, 200), (S7P, 900)):
        path = tmp_path / name
        path.write_bytes(b'')
        os.utime(path, (mtime, mtime))
    assert _pgbackup.newest_wal_age(str(tmp_path), 1000) == 800
    # And a backup waiting for its WAL waits for the complete segment, not its .partial.
    assert _pgbackup.wait_for_wal(str(tmp_path), ['000000010000000000000007'], 0, sleep=lambda s: None) == \
        ['000000010000000000000007']


SEG = 16 * 1024 * 1024


def test_streaming_start_is_pg_receivewals():
    assert _walrecv.streaming_start([], SEG) is None
    assert _walrecv.streaming_start([S5, S6, '00000001.history', 'abandoned'], SEG) == (1, 7 * SEG)
    assert _walrecv.streaming_start([S5, S6, S7P], SEG) == (1, 7 * SEG)
    # The newest position wins over the timeline; at one position the newer timeline.
    assert _walrecv.streaming_start([S6, '000000020000000000000005'], SEG) == (1, 7 * SEG)
    assert _walrecv.streaming_start([S6 + '.partial', '000000020000000000000006'], SEG) == (2, 7 * SEG)


def test_after_a_restore_the_wal_past_the_fork_moves_aside_and_streaming_follows_the_server():
    # Timeline 1 streamed to segment 9; a restore to a time in segment 6 started timeline 2 at 0/6000148.
    names = ['00000001000000000000000%d' % n for n in range(5, 10)] + ['00000001000000000000000A.partial']
    ends = _walrecv.history_ends(2, '1\t0/6000148\tbefore 2025-01-01 00:00:00+00\n')
    assert ends == {1: 6 * SEG + 0x148, 2: None}
    assert not _walrecv.in_history(_walrecv.streaming_start(names, SEG), ends)
    moved = _walrecv.off_history(names, ends, SEG)
    assert moved == ['000000010000000000000006', '000000010000000000000007', '000000010000000000000008',
                     '000000010000000000000009', '00000001000000000000000A.partial']
    kept = sorted(set(names) - set(moved))
    # pg_receivewal then starts at segment 6 of timeline 1 and follows the switch onto timeline 2.
    assert _walrecv.streaming_start(kept, SEG) == (1, 6 * SEG)
    assert _walrecv.in_history((1, 6 * SEG), ends)


def test_timelines_the_server_never_had_move_aside_and_a_followed_promotion_is_left_alone():
    # Restored to latest (timeline 2), then to a time before that on timeline 1 (timeline 3).
    names = [S5, S6, '000000020000000000000007', '000000020000000000000008.partial', '00000002.history']
    ends = _walrecv.history_ends(3, '1\t0/6000148\tbefore T\n')
    assert _walrecv.off_history(names, ends, SEG) == ['000000010000000000000006', '000000020000000000000007',
                                                       '000000020000000000000008.partial']
    # A receiver that followed a promotion has nothing off the history: nothing moves.
    followed = [S5, S6 + '.partial', '000000020000000000000006', '000000020000000000000007.partial']
    ends = _walrecv.history_ends(2, '1\t0/6000148\tno recovery target specified\n')
    assert _walrecv.in_history(_walrecv.streaming_start(followed, SEG), ends)


def test_size_bytes_reads_show_wal_segment_size():
    assert _walrecv.size_bytes('16MB') == SEG and _walrecv.size_bytes('1GB') == 1024 ** 3
    with pytest.raises(ValueError):
        _walrecv.size_bytes('sixteen')


def test_a_rolled_back_restore_moves_the_newer_timeline_and_its_history():
    # Restored to timeline 2 (from 0/6000148), then the old data put back: the server is on timeline 1 again.
    names = [S5, S6 + '.partial', '000000020000000000000006', '000000020000000000000007.partial', '00000002.history']
    ends = _walrecv.history_ends(1, '')
    assert not _walrecv.in_history(_walrecv.streaming_start(names, SEG), ends)
    assert _walrecv.off_history(names, ends, SEG) == ['00000002.history', '000000020000000000000006',
                                                       '000000020000000000000007.partial']


def test_a_fork_on_the_archives_end_starts_pg_receivewal_on_the_next_timeline():
    # Restored to the end of the archive: timeline 2 begins at 0/D000000, where the .partial of timeline 1 starts.
    names = ['00000001000000000000000C', '00000001000000000000000D.partial']
    history = '1\t0/D000000\tno recovery target specified\n'
    start = _walrecv.streaming_start(names, SEG)
    assert start == (1, 0xD * SEG) and _walrecv.in_history(start, _walrecv.history_ends(2, history))
    placeholder = _walrecv.next_timeline_start(start, 2, history, SEG)
    assert placeholder == '00000002000000000000000D.partial'
    assert _walrecv.streaming_start(names + [placeholder], SEG) == (2, 0xD * SEG)
    # A fork inside a segment, or a start before the switch: pg_receivewal follows the switch by itself.
    assert _walrecv.next_timeline_start((1, 0xC * SEG), 2, history, SEG) is None
    assert _walrecv.next_timeline_start((1, 6 * SEG), 2, '1\t0/6000148\tbefore T\n', SEG) is None
    assert _walrecv.next_timeline_start((2, 0xE * SEG), 2, history, SEG) is None


def test_tls_is_verify_full_against_the_given_ca_in_options_and_environment():
    options = _walrecv.tls_options('/run/psscript-wal-receiver/ca.crt')
    assert options == dict(sslmode='verify-full', sslrootcert='/run/psscript-wal-receiver/ca.crt')
    assert _walrecv.tls_env(options) == dict(PGSSLMODE='verify-full', PGSSLROOTCERT='/run/psscript-wal-receiver/ca.crt')
    assert _walrecv.tls_env({}) == {}
