# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for module_utils._walship: what to ship, the lag, the back-off, and the Shipper against
the real S3 HTTP endpoint of conftest.py (moto's server on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import os

import pytest

from ansible_collections.psscript.infra.plugins.module_utils import _walship
from ansible_collections.psscript.infra.plugins.module_utils._s3 import S3Error, S3Store

BUCKET = 'psscript-walship'
S1 = '000000010000000000000001'
S2 = '000000010000000000000002'
S3_ = '000000010000000000000003'
T2_3 = '000000020000000000000003'
T2_4 = '000000020000000000000004'
HIST = '00000002.history'


# ---------------------------------------------------------------------------------------------
# Pure helpers


def test_wal_names_and_segment_order():
    assert _walship.is_wal_name(S1) and _walship.is_wal_name(HIST)
    assert _walship.is_wal_name(S2 + '.partial') and _walship.is_wal_name(S1 + '.00000028.backup')
    assert not _walship.is_wal_name('.%s.tmp.123' % S1)  # psscript-archive-wal's temporary name
    assert not _walship.is_wal_name('archive_status') and not _walship.is_wal_name(S1 + '.s3-partial')
    # By position first: a new timeline's segment 3 is newer than timeline 1's segment 2, older than 4.
    names = [T2_4, S2, HIST, T2_3, S1 + '.partial', S1]
    assert _walship.segments(names) == [S1, S2, T2_3, T2_4]
    assert _walship.oldest_segment(names) == S1 and _walship.newest_segment(names) == T2_4
    assert _walship.oldest_segment([HIST]) is None and _walship.newest_segment([]) is None
    # The same position on two timelines: the newer timeline is newer.
    assert _walship.newest_segment([S3_, T2_3]) == T2_3


def test_to_ship_skips_what_s3_has_and_what_remote_retention_removed():
    local = [S1, S2, S3_, HIST, '00000001.history', '.tmp', T2_4]
    # Nothing in S3: everything (no floor), sorted, junk left out.
    assert _walship.to_ship(local, set(), None) == ['00000001.history', S1, S2, S3_, HIST, T2_4]
    # S3 starts at S2 (S1 was pruned remotely): S1 is never shipped again, history files always are.
    assert _walship.to_ship(local, {S2}, S2) == ['00000001.history', S3_, HIST, T2_4]
    assert _walship.to_ship(local, set(local), S1) == []


def test_the_segment_pg_receivewal_is_still_receiving_is_not_shipped():
    # Streamed archive: S3_.partial grows until pg_receivewal renames it S3_.
    names = [S1, S2, S3_ + '.partial']
    assert _walship.in_progress(names) == [S3_ + '.partial']
    assert _walship.to_ship(names, [], None) == [S1, S2]
    # Only a .partial (the receiver just started): still in progress.
    assert _walship.in_progress([S1 + '.partial']) == [S1 + '.partial']
    # A timeline's last, partial segment (archive_command at a promotion, or pg_receivewal following the
    # switch) is history once the new timeline's segment at its position is complete: shipped.
    promoted = [S1, S2, S3_ + '.partial', HIST, T2_3]
    assert _walship.in_progress(promoted) == []
    assert _walship.to_ship(promoted, [], None) == sorted(promoted)
    # And the next segment being received on the new timeline is skipped again.
    assert _walship.to_ship(promoted + [T2_4 + '.partial'], [], None) == sorted(promoted)
    assert _walship.lag({S1: 1.0, S2 + '.partial': 2.0}, [S1], None, 10.0)['pending'] == 0


def test_common_prefix_keeps_the_check_listing_small():
    assert _walship.common_prefix([S2, S3_]) == '00000001000000000000000'
    assert _walship.common_prefix([S1]) == S1
    assert _walship.common_prefix([]) == ''


def test_lag_is_the_age_of_the_oldest_archived_file_s3_lacks():
    local = {S1: 100.0, S2: 130.0, S3_: 160.0}
    caught_up = _walship.lag(local, [S1, S2, S3_], S1, now=200.0)
    assert caught_up == dict(newest_archived=S3_, newest_in_s3=S3_, pending=0, oldest_pending=None, lag_seconds=0)
    behind = _walship.lag(local, [S1], S1, now=200.0)
    assert behind['pending'] == 2 and behind['oldest_pending'] == S2 and behind['lag_seconds'] == 70.0
    assert behind['newest_in_s3'] == S1 and behind['newest_archived'] == S3_
    # What remote retention removed (below the floor) is not lag.
    assert _walship.lag(local, [S2, S3_], S2, now=200.0)['pending'] == 0
    # A clock behind the file's mtime never gives a negative lag.
    assert _walship.lag({S1: 300.0}, [], None, now=200.0)['lag_seconds'] == 0


def test_next_wait_backs_off_to_a_bound():
    assert _walship.next_wait(5, 0) == 5
    assert [_walship.next_wait(5, n) for n in (1, 2, 3, 4)] == [10, 20, 40, 60]
    assert _walship.next_wait(5, 50) == _walship.MAX_BACKOFF
    assert _walship.next_wait(0, 1) == 2  # an interval of 0 still waits after a failure


class FakeShipper(object):
    """ship_once answers from a script: an exception to raise or a result to return."""

    def __init__(self, script):
        self.script = list(script)

    def ship_once(self):
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return dict(uploaded=step, present=[], pending=[])


class Clock(object):
    def __init__(self):
        self.now = 1000.0
        self.waits = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.waits.append(seconds)
        self.now += seconds


def test_run_retries_with_back_off_and_logs_one_line_per_failure():
    clock = Clock()
    lines = []
    shipper = FakeShipper([[S1], S3Error('Cannot reach the S3 endpoint x'), OSError('disk'), [S2, S3_], []])
    totals = _walship.run(shipper, 5, duration=42, log=lines.append, clock=clock, sleep=clock.sleep)
    assert totals['uploaded'] == [S1, S2, S3_] and totals['failures'] == 2 and totals['passes'] == 5
    assert totals['failed_last'] is False and totals['last_error'] == 'disk'
    assert clock.waits == [5, 10, 20, 5]  # at 40 s the next wait (5 s) would pass the 42 s: it stops
    assert len(lines) == 3
    assert lines[0].startswith('wal-ship FAILED (1 in a row): Cannot reach the S3 endpoint x; retry in 10 s')
    assert lines[1].startswith('wal-ship FAILED (2 in a row): disk')
    assert lines[2] == 'wal-ship ok again after 2 failure(s): 2 file(s) uploaded'


def test_run_once_reports_a_failed_last_pass():
    totals = _walship.run(FakeShipper([S3Error('denied')]), 5, duration=0, clock=Clock(), sleep=pytest.fail)
    assert totals == dict(passes=1, uploaded=[], failures=1, last_error='denied', failed_last=True)


def test_run_stops_when_asked():
    clock = Clock()
    asked = []
    totals = _walship.run(FakeShipper([[], [], [S1]]), 1, clock=clock, sleep=clock.sleep,
                          stop=lambda: asked.append(1) or len(asked) >= 3)
    assert totals['passes'] == 3 and totals['uploaded'] == [S1]


# ---------------------------------------------------------------------------------------------
# The Shipper against the S3 HTTP endpoint


@pytest.fixture
def store(s3_client, s3_endpoint):
    s3_client.create_bucket(Bucket=BUCKET)
    return S3Store(dict(bucket=BUCKET, prefix='site', endpoint_url=s3_endpoint, region='us-east-1',
                        access_key='testing', secret_key='testing', sse='AES256'), 'postgres', client=s3_client)


def archive(directory, *names):
    for name in names:
        with open(os.path.join(directory, name), 'wb') as handle:
            handle.write(name.encode() * 100)


def test_shipper_uploads_new_files_with_their_sha256_and_never_again(store, s3_client, tmp_path):
    wal = str(tmp_path)
    archive(wal, S1, '.%s.tmp.99' % S2)
    shipper = _walship.Shipper(store, wal)
    assert shipper.ship_once()['uploaded'] == [S1]
    head = s3_client.head_object(Bucket=BUCKET, Key='site/postgres/wal/' + S1)
    assert head['Metadata']['sha256'] == hashlib.sha256(S1.encode() * 100).hexdigest()
    assert head['ServerSideEncryption'] == 'AES256'
    assert shipper.ship_once() == dict(uploaded=[], present=[], pending=[])
    archive(wal, S2, HIST)
    assert shipper.ship_once()['uploaded'] == [S2, HIST]
    assert sorted(store.list_area('wal')) == [S1, S2, HIST]
    assert shipper.lag(now=0)['pending'] == 0


def test_shipper_checks_what_appeared_in_s3_meanwhile_and_refuses_other_content(store, tmp_path):
    wal = str(tmp_path)
    archive(wal, S1)
    shipper = _walship.Shipper(store, wal)
    shipper.ship_once()
    # A backup's WAL upload put S2 there meanwhile: the shipper compares it and counts it as present.
    archive(wal, S2)
    store.put_area('wal', wal, [S2])
    assert shipper.ship_once() == dict(uploaded=[], present=[S2], pending=[])
    # Another cluster's S3 under the same prefix: never overwritten, the pass fails with the reason.
    other = tmp_path / 'other'
    other.mkdir()
    (other / S3_).write_bytes(b'other cluster')
    store.put_area('wal', str(other), [S3_])
    archive(wal, S3_)
    with pytest.raises(S3Error, match='exists with different content'):
        shipper.ship_once()


def test_shipper_does_not_ship_again_what_remote_retention_removed(store, tmp_path):
    wal = str(tmp_path)
    archive(wal, S1, S2)
    _walship.Shipper(store, wal).ship_once()
    store.remove_area('wal', [S1])  # remote prune
    archive(wal, S3_)
    restarted = _walship.Shipper(store, wal)
    assert restarted.ship_once()['uploaded'] == [S3_]
    assert sorted(store.list_area('wal')) == [S2, S3_]
    assert restarted.lag(now=0)['pending'] == 0


def test_lag_counts_what_s3_lacks(store, tmp_path):
    wal = str(tmp_path)
    archive(wal, S1, S2)
    os.utime(os.path.join(wal, S1), (1000, 1000))
    os.utime(os.path.join(wal, S2), (1030, 1030))
    lagging = _walship.Shipper(store, wal).lag(now=1100)
    assert lagging == dict(newest_archived=S2, newest_in_s3=None, pending=2, oldest_pending=S1, lag_seconds=100.0)
