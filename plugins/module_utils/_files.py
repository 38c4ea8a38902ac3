# -*- coding: utf-8 -*-
# Copyright: psscript.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Durable file writes, in one place: the secrets file, the Prometheus textfile and the
backup catalog all publish files that a reader must never see half-written."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import tempfile
import threading
import time
from stat import S_ISLNK, S_ISREG


def fsync_path(path, directory=False):
    """fsync a file or, with directory=True, a directory (so a rename in it survives a crash)."""
    flags = os.O_RDONLY
    if directory and hasattr(os, 'O_DIRECTORY'):
        flags |= os.O_DIRECTORY
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _default_mode():
    """The mode open() would give a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_text_atomic(path, text, mode=None, uid=None, gid=None):
    """Replace path with text atomically: temporary file in the same directory (created 0600, so
    a private file is never readable by others, even while it is written), fsync, chown to uid/gid
    (None: unchanged), chmod to mode (None: what open() would give), os.replace, fsync the
    directory. A reader sees the old file or the new one, with its final owner and mode, never a
    mix. Nothing is left behind on failure; the OSError is raised."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.%s.' % os.path.basename(path), suffix='.tmp')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if uid is not None or gid is not None:
            os.chown(tmp, -1 if uid is None else uid, -1 if gid is None else gid)
        os.chmod(tmp, _default_mode() if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_path(directory, directory=True)


_HASH_CHUNK = 1024 * 1024


def hash_file(path):
    """``(hex SHA-256, size)`` of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        size = _hash_from(handle, digest)
    return digest.hexdigest(), size


def _hash_from(handle, digest, upto=None, stop=None):
    """Feed ``digest`` what ``handle`` reads from its position on, in chunks, up to offset ``upto`` (None: its end)
    or until ``stop`` (an Event) is set; returns the offset reached."""
    offset = handle.tell()
    while (upto is None or offset < upto) and not (stop is not None and stop.is_set()):
        chunk = handle.read(_HASH_CHUNK if upto is None else min(_HASH_CHUNK, upto - offset))
        if not chunk:
            break
        digest.update(chunk)
        offset += len(chunk)
    return offset


def drop_cached(path):
    """Ask the kernel to drop ``path``'s clean pages from the page cache (a hint; nothing happens where it is not
    supported)."""
    if not hasattr(os, 'posix_fadvise'):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass
    finally:
        os.close(fd)


class SyncWhileWriting(object):
    """fsync the files another process writes under ``top`` while it still writes the rest.

    A writer that copies file after file (pg_basebackup with ``--no-sync``) leaves all of its data
    to be flushed at the end: that flush then adds the disk's whole write time to the backup.
    Used as a context manager around the writer, a thread fsyncs every file whose modification
    time is ``settle`` seconds old, so the flush overlaps with the copy; ``finish()`` afterwards
    fsyncs what is left: every file whose (size, mtime) changed since it was synced or was never
    synced, then every directory bottom-up. The result is what fsyncing the whole tree gives;
    the stat is taken before each fsync, so a write that races with it shows as a change.

    With ``hashing``, the thread also takes the SHA-256 of the files while the copy goes on (hashlib
    releases the GIL, so the hashing runs on another core than the writer's), reading them from the
    page cache: a file still being written is hashed as far as it is written, and the hash goes on
    from there at the next sweep, so the end of the copy leaves only the last bytes to hash. That
    relies on the writer only appending, as pg_basebackup's plain format does (each file written once,
    front to back): a file that is shorter than what was hashed, or another file under the same name
    (another inode), is hashed again from its start. ``sha256(path)`` answers from that record when
    the file has not changed since, and goes on from the partial hash otherwise. A file that changes
    while it is hashed is not recorded. Once a file is hashed and fsynced, its pages are dropped from
    the page cache (``POSIX_FADV_DONTNEED``): the backup then does not push the server's own data out.

    The thread runs at nice 19: on two cores busy with the copy, its hashing slowed the writer
    (pg_basebackup) by a tenth at 10 GiB; niced, it takes only the idle time. Leaving the context stops
    it at the next file or read block (not at the end of a sweep), and what it has not done is done
    then: a thread fsyncs the rest while the caller hashes the last bytes (``sha256``); ``finish()``
    waits for it.
    """

    def __init__(self, top, interval=0.25, settle=0.25, clock=None, hashing=False):
        self.top = top
        self.interval = interval
        self.settle = settle
        self.hashing = hashing
        self._clock = clock or time.time
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='sync-while-writing')
        self._thread.daemon = True
        self.synced = {}
        self.hashes = {}
        self._partial = {}
        self.synced_early = 0
        self._rest = None

    @staticmethod
    def _key(stat):
        return (stat.st_size, stat.st_mtime_ns)

    def _files(self):
        for dirpath, dirnames, filenames in os.walk(self.top):
            for name in filenames:
                yield os.path.join(dirpath, name)

    def sweep(self, now=None, hashing=None, stop=None):
        """fsync the settled files not synced at their current state (hashing them first when ``hashing``, by
        default the syncer's, and the unsettled ones as far as they are written); returns how many it synced. A file
        that disappears or cannot be opened meanwhile is left to finish(). ``stop`` (an Event): return at the next
        file or read block once it is set."""
        now = self._clock() if now is None else now
        hashing = self.hashing if hashing is None else hashing
        count = 0
        for path in self._files():
            if stop is not None and stop.is_set():
                break
            try:
                stat = os.lstat(path)
            except OSError:
                continue
            if not S_ISREG(stat.st_mode):  # lstat: a symbolic link is not a regular file either
                continue
            key = self._key(stat)
            if self.synced.get(path) == key:
                continue
            try:
                if now - stat.st_mtime < self.settle:
                    if hashing:
                        self._extend(path, stat.st_ino, stat.st_size, stop)
                    continue
                if hashing and self._hash(path, key, stat.st_ino, stop) is None:
                    continue
                fsync_path(path)
            except OSError:
                continue
            self.synced[path] = key
            count += 1
            if self.hashes.get(path, (None,))[0] == key:
                drop_cached(path)
        return count

    def _extend(self, path, inode, upto, stop=None):
        """Hash ``path`` on from where the last call left it, up to ``upto`` bytes (what a stat showed written), or from
        its start when it is another file (``inode``) or shorter than that; returns the bytes hashed so far."""
        state = self._partial.get(path)
        if state is None or state[0] != inode or state[1] > upto:
            state = (inode, 0, hashlib.sha256())
        digest = state[2]
        with open(path, 'rb') as handle:
            if os.fstat(handle.fileno()).st_ino != inode:
                raise OSError('%s was replaced while it was hashed' % path)
            handle.seek(state[1])
            offset = _hash_from(handle, digest, upto, stop)
        self._partial[path] = (inode, offset, digest)
        return offset

    def _hash(self, path, key, inode, stop=None):
        """SHA-256 of ``path``, recorded with ``key`` (its state when it was stat'ed before); None, and nothing
        recorded, when the file changed meanwhile or ``stop`` came first."""
        if self._extend(path, inode, key[0], stop) != key[0]:
            return None
        stat = os.lstat(path)
        if self._key(stat) != key or stat.st_ino != inode:
            return None
        digest = self._partial[path][2].copy().hexdigest()
        self.hashes[path] = (key, digest)
        return digest

    def sha256(self, path):
        """``(hex SHA-256, size)`` of ``path`` as it is now: recorded by the thread when the file has not changed
        since, else hashed now (on from the thread's partial hash). Raises OSError when the file changes while it is
        hashed."""
        stat = os.lstat(path)
        key = self._key(stat)
        known = self.hashes.get(path)
        digest = known[1] if known and known[0] == key else self._hash(path, key, stat.st_ino)
        if digest is None:
            raise OSError('%s changed while it was hashed' % path)
        return digest, stat.st_size

    def _run(self):
        # Below the writer (nice 19, this thread only): the thread takes the cores' idle time and never the writer's.
        # What it has not done when the writer ends is done then, at full speed (the rest's fsync, sha256, finish).
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):
            pass
        while not self._stop.wait(self.interval):
            self.synced_early += self.sweep(stop=self._stop)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if exc[0] is None:
            # The writer ended: the files the thread has not synced are fsynced now, beside what the caller does next
            # (hashing the last files reads them from the page cache while the disk writes them); finish() waits.
            self._rest = threading.Thread(target=self.sweep, kwargs=dict(now=float('inf'), hashing=False),
                                          name='sync-the-rest')
            self._rest.daemon = True
            self._rest.start()
        return False

    def finish(self):
        """After the writer ended (and the context exited): fsync what the sweeps did not, then the
        directories bottom-up and ``top`` itself. Errors are raised here."""
        if self._rest is not None:
            self._rest.join()
        for dirpath, dirnames, filenames in os.walk(self.top, topdown=False):
            for name in filenames:
                path = os.path.join(dirpath, name)
                stat = os.lstat(path)
                if S_ISLNK(stat.st_mode):
                    continue
                key = self._key(stat)
                if self.synced.get(path) != key:
                    fsync_path(path)
                    self.synced[path] = key
            fsync_path(dirpath, directory=True)
