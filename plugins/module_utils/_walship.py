# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Continuous WAL shipping: the archived WAL reaches S3 seconds after PostgreSQL archived it, not only
when a backup runs. Used by the backup container's shipper (roles/backup/files/wal-shipper, a loop
started beside cron), by pg_backup O(action=ship_wal) (one pass, or a loop for a while) and by
pg_backup O(action=list) (the shipping lag).

Decisions (and why):

- Same objects as a backup's WAL upload: ``<prefix>/postgres/wal/<name>`` written by
  ``S3Store.put_area`` (SHA-256 in the metadata, server-side encryption, an object of the same name
  with other content is never overwritten). The shipper never deletes: remote retention (prune)
  stays the only remover.
- What is shipped: every archived WAL file (segment, ``.partial``, ``.backup``) and timeline history
  file the archive holds and S3 lacks, except segments older than the oldest segment S3 had when the
  shipper started (its *floor*): those are what remote retention removed, and shipping them again
  would only make the next prune remove them again. An empty area has no floor: everything is shipped.
- Cheap passes: the whole area is listed once, when the shipper starts. After that a pass reads the
  archive directory and uploads only names it has not seen in S3; before uploading it lists just the
  names that share the pending names' common prefix (a few hundred keys at most), so a segment that
  appeared in S3 meanwhile is compared by SHA-256 (``put_area``) rather than overwritten. A pass with
  nothing new sends no request at all.
- Files are complete when they have their name: ``psscript-archive-wal`` writes ``.<name>.tmp.<pid>``
  and renames; dot files never match a WAL name. One exception: in a streamed archive
  (``backup_wal_source: stream``, ``_walrecv``) ``pg_receivewal`` writes the segment it receives as
  ``<name>.partial`` and renames it when complete. A ``.partial`` that no complete segment has passed
  (``in_progress``) is that file, still growing, and is not shipped; once a complete segment at or after its
  position exists it is history (a timeline's last, partial segment, as ``archive_command`` archives one at a
  promotion) and is shipped like any file.
- Outages: a failed pass is retried with back-off (the interval, doubled per failure, at most
  ``MAX_BACKOFF`` seconds); each failure is one log line, the first success after failures one more.
- Lag (``lag``): the age of the oldest archived file S3 lacks; 0 when S3 has everything. With
  ``archive_timeout`` 30 s and a 5 s interval, what a lost server can lose is about 35 s plus one upload.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.psscript.infra.plugins.module_utils import _catalog
from ansible_collections.psscript.infra.plugins.module_utils import _pgbackup
from ansible_collections.psscript.infra.plugins.module_utils._s3 import S3Error

AREA = _pgbackup.S3_WAL_AREA
# Longest wait between two attempts while S3 fails.
MAX_BACKOFF = 60


# ---------------------------------------------------------------------------------------------
# Pure helpers (unit-tested)


def is_wal_name(name):
    """A WAL archive file (segment, .partial, .backup) or a timeline history file."""
    return bool(_catalog.WAL_FILE_RE.match(name) or _pgbackup.HISTORY_RE.match(name))


def _segment_key(name):
    """Order of full segments: position first, then timeline (a newer timeline at the same position is newer)."""
    return (_catalog.wal_position(name), name[:8])


def segments(names):
    """The full WAL segments among ``names`` (no .partial, .backup or .history), oldest first."""
    return sorted((n for n in names if _pgbackup.SEGMENT_RE.match(n)), key=_segment_key)


def oldest_segment(names):
    found = segments(names)
    return found[0] if found else None


def newest_segment(names):
    found = segments(names)
    return found[-1] if found else None


def in_progress(names):
    """The ``.partial`` files among ``names`` that no complete segment has passed (position after the newest
    complete segment's): the segment ``pg_receivewal`` is still receiving, sorted."""
    newest = newest_segment(names)
    limit = _catalog.wal_position(newest) if newest else None
    return sorted(n for n in names if n.endswith('.partial') and _catalog.WAL_FILE_RE.match(n)
                  and (limit is None or _catalog.wal_position(n) > limit))


def to_ship(local_names, known, floor):
    """Archived names to upload, sorted: WAL files at or after ``floor`` (any timeline; every file when
    ``floor`` is None) and every history file, minus what ``known`` (names seen in S3) has and the segment
    still being received (``in_progress``)."""
    known = set(known) | set(in_progress(local_names))
    return [n for n in _pgbackup.wal_names_since([n for n in local_names if is_wal_name(n)], floor) if n not in known]


def common_prefix(names):
    """The longest common start of ``names`` (``''`` for none): one small S3 listing covers them all."""
    return os.path.commonprefix(list(names)) if names else ''


def lag(local_mtimes, remote_names, floor, now):
    """How far S3 is behind the archive.

    ``local_mtimes``: ``{archived name: mtime}``; ``remote_names``: names in S3; ``floor``: as for
    ``to_ship``. Returns ``dict(newest_archived, newest_in_s3, pending, oldest_pending, lag_seconds)``:
    ``lag_seconds`` is the age of the oldest archived file S3 lacks (0 when it lacks none)."""
    pending = to_ship(local_mtimes, remote_names, floor)
    oldest = min(pending, key=lambda n: local_mtimes[n]) if pending else None
    return dict(newest_archived=newest_segment(local_mtimes), newest_in_s3=newest_segment(remote_names),
                pending=len(pending), oldest_pending=oldest,
                lag_seconds=round(max(0.0, now - local_mtimes[oldest]), 1) if oldest else 0)


def next_wait(interval, failures):
    """Seconds to wait before the next pass: ``interval``, or after ``failures`` failed passes in a row,
    ``interval`` doubled per failure (at least 1 s), at most MAX_BACKOFF."""
    if not failures:
        return interval
    return min(MAX_BACKOFF, max(interval, 1) * 2 ** min(failures, 10))


def archived(archive_dir):
    """``{name: mtime}`` of the WAL files in the archive directory."""
    found = {}
    for name in os.listdir(archive_dir):
        if is_wal_name(name):
            try:
                found[name] = os.stat(os.path.join(archive_dir, name)).st_mtime
            except OSError:  # removed by the cleanup job meanwhile
                continue
    return found


# ---------------------------------------------------------------------------------------------
# Shipping


class Shipper(object):
    """Ships the WAL archive ``archive_dir`` to ``store`` (an ``_s3.S3Store`` of kind postgres)."""

    def __init__(self, store, archive_dir):
        self.store = store
        self.archive_dir = archive_dir
        self.known = None
        self.floor = None

    def start(self):
        """List the whole area once: what S3 has, and the floor below which nothing is shipped again."""
        remote = self.store.list_area(AREA)
        self.known = set(remote)
        self.floor = oldest_segment(remote)
        return remote

    def ship_once(self):
        """One pass. Returns ``dict(uploaded=[names], present=[names], pending=[names left])``; raises
        S3Error (S3 failed) or OSError (the archive could not be read)."""
        if self.known is None:
            self.start()
        local = archived(self.archive_dir)
        # Forget what the archive no longer has (the cleanup job removed it): the set stays as large as the archive.
        self.known &= set(local)
        pending = to_ship(local, self.known, self.floor)
        result = dict(uploaded=[], present=[], pending=[])
        if not pending:
            return result
        remote = self.store.list_area(AREA, name_prefix=common_prefix(pending))
        for name in pending:
            try:
                done = self.store.put_area(AREA, self.archive_dir, [name], present=remote)
            except (IOError, OSError):
                if os.path.exists(os.path.join(self.archive_dir, name)):
                    raise
                continue  # removed from the archive meanwhile: nothing to ship
            result['uploaded'] += done['uploaded']
            result['present'] += done['present']
            self.known.update(done['uploaded'] + done['present'])
        return result

    def lag(self, now=None):
        """``lag`` of the archive against a fresh listing of S3."""
        remote = self.start()
        return lag(archived(self.archive_dir), remote, self.floor, time.time() if now is None else now)


def run(shipper, interval, duration=None, log=None, clock=time.time, sleep=time.sleep, stop=None):
    """Ship every ``interval`` seconds for ``duration`` seconds (None: until ``stop()`` is true).

    Failures are retried (``next_wait``); ``log(line)`` receives one line per failure and one when
    shipping works again. Returns ``dict(passes, uploaded=[names], failures, last_error, failed_last)``."""
    began = clock()
    totals = dict(passes=0, uploaded=[], failures=0, last_error=None, failed_last=False)
    failures = 0
    while True:
        try:
            done = shipper.ship_once()
        except (S3Error, IOError, OSError) as err:
            failures += 1
            totals['failures'] += 1
            totals['last_error'] = getattr(err, 'msg', None) or str(err)
            totals['failed_last'] = True
            if log is not None:
                log('wal-ship FAILED (%d in a row): %s; retry in %d s'
                    % (failures, totals['last_error'], next_wait(interval, failures)))
        else:
            if failures and log is not None:
                log('wal-ship ok again after %d failure(s): %d file(s) uploaded' % (failures, len(done['uploaded'])))
            failures = 0
            totals['failed_last'] = False
            totals['uploaded'] += done['uploaded']
        totals['passes'] += 1
        wait = next_wait(interval, failures)
        if stop is not None and stop():
            break
        if duration is not None and clock() - began + wait > duration:
            break
        sleep(wait)
    return totals
