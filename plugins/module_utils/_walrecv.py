# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""WAL streaming: the backup container's own WAL archive, filled by ``pg_receivewal`` when its PostgreSQL
instance runs on another Docker host (backup role, ``backup_wal_source: stream``). Used by the backup
container's receiver (roles/backup/files/wal-receiver, kept running by the container's entrypoint).

Decisions (and why):

- ``pg_receivewal`` of the backup image (PostgreSQL 17, the server's version) writes into the archive
  directory itself. A completed segment is the server's bytes, renamed from ``<name>.partial`` when it is
  complete, so it is the same file ``archive_command`` would archive, and ``restore_command`` reads it
  unchanged. The segment being received stays ``<name>.partial``: the checks that expect complete segments
  match segment names only (``_pgbackup.SEGMENT_RE``), retention removes only what lies before the oldest
  WAL a kept backup needs, and the WAL shipper skips a ``.partial`` that no complete segment has passed
  (``_walship.in_progress``).
- A physical replication slot (``--create-slot --if-not-exists`` before each start) keeps the server from
  recycling WAL the receiver has not flushed: a restarted backup container resumes where it stopped, without
  a gap. PostgreSQL's ``max_slot_wal_keep_size`` (postgres role) bounds what a dead backup host can hold back.
- The password reaches ``pg_receivewal`` through a passfile (0600, owned by the user it runs as), never argv
  or the environment; ``PGPASSFILE`` names only the file.
- It runs as the image's postgres user, like the server's archiver, so the archive's files have the owner and
  modes of an archive that ``archive_command`` filled (restores read it as that user).
- A restore forks the server's history (a new timeline that leaves the old one at the recovery target), while
  the archive still holds the old timeline past that point. ``pg_receivewal`` starts after the archive's newest
  segment, on its timeline, and the server refuses a start that is not in its history: it would fail forever.
  Before each start the receiver compares that start with the server's history (``IDENTIFY_SYSTEM``,
  ``TIMELINE_HISTORY``); when it is not in it, the WAL files that are not in it (``off_history``: timelines the
  server never had, and an ancestor's segments from the one its switch lies in) move to ``abandoned/`` in the
  archive, kept for the operator (``archive_command`` would have left them in the archive; no restore of the
  new history reads them). Then the receiver starts at the switch and follows the server onto its timeline,
  as a standby does after a promotion. History files stay, except those of timelines newer than the server's
  (a rolled-back restore), which recovery to the latest timeline would follow.
- ``--no-loop``: the entrypoint restarts the receiver when ``pg_receivewal`` exits, and the receiver first
  creates the slot again (dropped, or lost with a restore). After a quick failure it waits longer each time
  (``backoff``), up to ``MAX_BACKOFF``, so a dead server is not hammered and a log line is written per attempt.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.psscript.infra.plugins.module_utils import _catalog
from ansible_collections.psscript.infra.plugins.module_utils import _pgbackup

# Longest wait between two attempts while the server cannot be reached.
MAX_BACKOFF = 30
# A run at least this long counts as a success: the next failure waits the shortest time again.
STABLE_SECONDS = 60
# Where WAL the server's history left behind is moved (a directory: no WAL file name matches it).
ABANDONED = 'abandoned'
# Replication slot names (the stack role's wal_slot): lower-case letters, digits and underscores, at most 63.
SLOT_RE = re.compile(r'^[a-z0-9_]{1,63}$')


def passfile_line(host, port, user, password):
    """One line of a libpq passfile for ``host:port``, any database (``replication`` included), ``user``.
    ``:`` and ``\\`` are escaped, as libpq reads them."""
    def esc(value):
        return str(value).replace('\\', '\\\\').replace(':', '\\:')
    if '\n' in password or '\r' in password:
        raise ValueError('a password with a line break cannot be written to a passfile')
    return '%s:%s:*:%s:%s\n' % (esc(host), esc(port), esc(user), esc(password))


def tls_options(ca_file):
    """libpq's TLS options for the stack CA in ``ca_file``: the server's certificate must chain to it and name the
    host dialled (verify-full)."""
    return dict(sslmode='verify-full', sslrootcert=ca_file)


# The same options as pg_receivewal's environment (PGSSLMODE, PGSSLROOTCERT); empty for none.
tls_env = _pgbackup.tls_env


def _connection(binary, host, port, user):
    return [binary, '--host', str(host), '--port', str(port), '--username', str(user), '--no-password']


def create_slot_command(binary, host, port, user, slot):
    """``pg_receivewal`` creating the physical slot when it is missing (and exiting)."""
    if not SLOT_RE.match(slot):
        raise ValueError('invalid replication slot name %r' % (slot,))
    return _connection(binary, host, port, user) + ['--slot', slot, '--create-slot', '--if-not-exists']


def stream_command(binary, archive_dir, host, port, user, slot):
    """``pg_receivewal`` streaming into ``archive_dir`` through ``slot``; it exits on any error (the entrypoint
    starts the receiver again), and it starts where the archive's newest segment (or ``.partial``) ends."""
    if not SLOT_RE.match(slot):
        raise ValueError('invalid replication slot name %r' % (slot,))
    return _connection(binary, host, port, user) + ['--directory', archive_dir, '--slot', slot, '--no-loop']


def backoff(failures):
    """Seconds to wait before the next attempt after ``failures`` quick failures in a row: none after a
    success, then 5, 10, 20, 30, 30 … (the entrypoint adds its own 5 s)."""
    if failures <= 0:
        return 0
    return min(MAX_BACKOFF, 5 * 2 ** min(failures - 1, 10))


def after_run(failures, seconds, ok):
    """Quick failures in a row after a run that lasted ``seconds`` and ended well (``ok``) or not."""
    if ok or seconds >= STABLE_SECONDS:
        return 0
    return failures + 1


def _wal_file(name, seg_size):
    """``(timeline, segment number)`` of a segment or ``.partial`` name; None for anything else."""
    match = _catalog.WAL_FILE_RE.match(name)
    if not match or (match.group('suffix') or '.partial') != '.partial':
        return None
    per_id = 0x100000000 // seg_size
    return int(match.group('tli'), 16), int(match.group('log'), 16) * per_id + int(match.group('seg'), 16)


def streaming_start(names, seg_size):
    """Where ``pg_receivewal`` starts in an archive holding ``names`` (its FindStreamingStart):
    ``(timeline, LSN)`` after the newest segment, or at the start of the newest ``.partial``; None when empty."""
    best = None
    for name in names:
        found = _wal_file(name, seg_size)
        if found is None:
            continue
        tli, segno = found
        key = (segno, tli, name.endswith('.partial'))
        if best is None or key[:2] > best[:2]:
            best = key
    if best is None:
        return None
    segno, tli, partial = best
    return tli, (segno if partial else segno + 1) * seg_size


def history_ends(server_tli, history_text):
    """``{timeline: LSN where the server's history leaves it}`` (None for the server's own timeline)."""
    return dict((r['tli'], r['end']) for r in _pgbackup.timeline_ranges(server_tli, history_text))


def in_history(start, ends):
    """Whether the server can stream from ``start`` (``(timeline, LSN)``): its timeline is in the server's
    history and the LSN is not past the point where the history leaves it."""
    tli, lsn = start
    return tli in ends and (ends[tli] is None or lsn <= ends[tli])


def off_history(names, ends, seg_size):
    """The WAL files (segments, ``.partial``) among ``names`` the server's history does not hold, sorted:
    timelines not in ``ends``, and an ancestor's segments from the one holding its switch point on. Also the
    history files of timelines newer than the server's (a restore rolled back): recovery would follow them."""
    server = max(t for t, end in ends.items() if end is None)
    found = sorted(n for n in names if _pgbackup.HISTORY_RE.match(n) and int(n[:8], 16) > server)
    for name in names:
        parsed = _wal_file(name, seg_size)
        if parsed is None:
            continue
        tli, segno = parsed
        if tli not in ends or (ends[tli] is not None and (segno + 1) * seg_size > ends[tli]):
            found.append(name)
    return sorted(found)


def size_bytes(text):
    """``SHOW wal_segment_size`` (``16MB``) in bytes."""
    match = re.match(r'^\s*(\d+)\s*(B|kB|MB|GB)?\s*$', str(text))
    if not match:
        raise ValueError('not a size: %r' % (text,))
    return int(match.group(1)) * {'B': 1, None: 1, 'kB': 1024, 'MB': 1024 ** 2, 'GB': 1024 ** 3}[match.group(2)]


format_lsn = _catalog.format_lsn


def next_timeline_start(start, server_tli, history_text, seg_size):
    """The name of the empty ``.partial`` that makes ``pg_receivewal`` start on the next timeline when ``start``
    is exactly where the server's history leaves its timeline (a restore to the end of the archive forks on a
    segment boundary): the server answers such a start with the next timeline instead of streaming, which
    ``pg_receivewal`` takes for an error and would retry forever. None otherwise."""
    tli, lsn = start
    for item in _pgbackup.timeline_ranges(server_tli, history_text):
        if item['begin'] == lsn and item['tli'] != tli and lsn % seg_size == 0:
            ends = history_ends(server_tli, history_text)
            if ends.get(tli) == lsn:
                return _catalog.wal_file_name(item['tli'], lsn // seg_size, seg_size) + '.partial'
    return None
