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
- ``--no-loop``: the entrypoint restarts the receiver when ``pg_receivewal`` exits, and the receiver first
  creates the slot again (dropped, or lost with a restore). After a quick failure it waits longer each time
  (``backoff``), up to ``MAX_BACKOFF``, so a dead server is not hammered and a log line is written per attempt.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# Longest wait between two attempts while the server cannot be reached.
MAX_BACKOFF = 60
# A run at least this long counts as a success: the next failure waits the shortest time again.
STABLE_SECONDS = 60
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
    success, then 5, 10, 20, 40, 60, 60 … (the entrypoint adds its own 5 s)."""
    if failures <= 0:
        return 0
    return min(MAX_BACKOFF, 5 * 2 ** min(failures - 1, 10))


def after_run(failures, seconds, ok):
    """Quick failures in a row after a run that lasted ``seconds`` and ended well (``ok``) or not."""
    if ok or seconds >= STABLE_SECONDS:
        return 0
    return failures + 1
