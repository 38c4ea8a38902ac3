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


def make_directory(path, mode=0o777, parents=False, follow_links=True):
    """Create the directory ``path`` (and its missing parents when ``parents``); True when this call made it, False
    when a directory was there already, which another process may have made at the same moment. Anything else in its
    place (a file, or a symbolic link unless ``follow_links``, even one to a directory) raises the OSError."""
    try:
        (os.makedirs if parents else os.mkdir)(path, mode)
        return True
    except FileExistsError:
        if os.path.isdir(path) and (follow_links or not os.path.islink(path)):
            return False
        raise


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
    time is ``settle`` seconds old, so the flush overlaps with the copy; when the writer ends, the
    same thread fsyncs what is left, beside what the caller does next, and ``finish()`` waits for it,
    then fsyncs every file whose (size, mtime) changed since it was synced or was never synced, and
    every directory bottom-up. The result is what fsyncing the whole tree gives; the stat is taken
    before each fsync, so a write that races with it shows as a change. While the writer runs, the
    threads stat only the files they have not done (a sweep over a thousand files done costs a few
    milliseconds of CPU, four times a second, in each thread): a file that changes after its fsync or
    its hash is caught by ``finish()`` and ``sha256()``, which stat every file once more.

    With ``hashing``, a second thread takes the SHA-256 of the files while the copy goes on (hashlib
    releases the GIL, so the hashing runs on another core than the writer's), reading them from the
    page cache: a file still being written is hashed as far as it is written, and the hash goes on
    from there at the next sweep, so the end of the copy leaves only the last bytes to hash. That
    relies on the writer only appending, as pg_basebackup's plain format does (each file written once,
    front to back): a file that is shorter than what was hashed, or another file under the same name
    (another inode), is hashed again from its start. ``sha256(path)`` answers from that record when
    the file has not changed since, and goes on from the partial hash otherwise. A file that changes
    while it is hashed is not recorded. Once a file is hashed and fsynced, its pages are dropped from
    the page cache (``POSIX_FADV_DONTNEED``): the backup then does not push the server's own data out.

    Hashing and fsyncing are two threads, not one, so the hashing never waits for the disk: an fsync
    blocks until the disk has written the file, and a thread doing both fell behind the copy by as
    much as the disk did. Both run at nice 19: on two cores busy with the copy, hashing at normal
    priority slowed the writer (pg_basebackup) by a tenth at 10 GiB; niced, it takes only the idle
    time. When the writer ends, the hashing stops at its next read block (the caller hashes the last
    bytes, through ``sha256``, at full speed) and the syncing goes on with the rest.
    """

    def __init__(self, top, interval=0.25, settle=0.25, clock=None, hashing=False):
        self.top = top
        self.interval = interval
        self.settle = settle
        self.hashing = hashing
        self._clock = clock or time.time
        self._stop = threading.Event()
        self._rest = False
        self._syncer = self._thread('sync-while-writing', True)
        self._hasher = self._thread('hash-while-writing', False) if hashing else None
        self.synced = {}
        self.hashes = {}
        self._partial = {}
        self.synced_early = 0

    def _thread(self, name, syncing):
        thread = threading.Thread(target=self._run, args=(syncing,), name=name)
        thread.daemon = True
        return thread

    @staticmethod
    def _key(stat):
        return (stat.st_size, stat.st_mtime_ns)

    def _settled(self, now, done, stop):
        """The regular files under ``top`` as ``(path, stat, settled)`` (``now``: None for the clock), skipping any
        that disappears meanwhile and, without a stat, those in ``done``; ends at the next file once ``stop`` (an
        Event) is set."""
        now = self._clock() if now is None else now
        for dirpath, dirnames, filenames in os.walk(self.top):
            for name in filenames:
                if stop is not None and stop.is_set():
                    return
                path = os.path.join(dirpath, name)
                if path in done:
                    continue
                try:
                    stat = os.lstat(path)
                except OSError:
                    continue
                if S_ISREG(stat.st_mode):  # lstat: a symbolic link is not a regular file either
                    yield path, stat, now - stat.st_mtime >= self.settle

    def sweep(self, now=None, hashing=None, stop=None):
        """One pass of both threads' work, hashing first when ``hashing`` (by default the syncer's); returns how many
        files it synced."""
        now = self._clock() if now is None else now
        if self.hashing if hashing is None else hashing:
            self.hash_sweep(now, stop)
        return self.sync_sweep(now, stop)

    def sync_sweep(self, now=None, stop=None):
        """fsync the settled files not synced yet; returns how many it synced. A file that disappears or cannot be
        opened meanwhile, or changes after its fsync, is left to finish(). ``stop`` (an Event): return at the next file
        once it is set."""
        count = 0
        for path, stat, settled in self._settled(now, self.synced, stop):
            if not settled:
                continue
            try:
                fsync_path(path)
            except OSError:
                continue
            key = self._key(stat)
            self.synced[path] = key
            count += 1
            self._done_with(path, key)
        return count

    def hash_sweep(self, now=None, stop=None):
        """Hash the settled files not hashed yet, and the unsettled ones as far as they are written; returns how many
        whole files it recorded (a file that changes after that is hashed on by ``sha256``). ``stop`` (an Event):
        return at the next file or read block once it is set."""
        count = 0
        for path, stat, settled in self._settled(now, self.hashes, stop):
            try:
                if not settled:
                    self._extend(path, stat.st_ino, stat.st_size, stop)
                elif self._hash(path, self._key(stat), stat.st_ino, stop) is not None:
                    count += 1
            except OSError:
                continue
        return count

    def _done_with(self, path, key):
        """Drop ``path`` from the page cache once it is both hashed and synced at ``key``."""
        if self.hashes.get(path, (None,))[0] == key and self.synced.get(path) == key:
            drop_cached(path)

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
        self._done_with(path, key)
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

    def _run(self, syncing):
        # Below the writer (nice 19, this thread only): the thread takes the cores' idle time and never the writer's.
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):
            pass
        while not self._stop.wait(self.interval):
            if syncing:
                self.synced_early += self.sync_sweep(stop=self._stop)
            else:
                self.hash_sweep(stop=self._stop)
        if syncing and self._rest:
            # The writer ended: every file is settled now. The caller hashes the last bytes meanwhile (from the page
            # cache, while the disk writes them); finish() waits for this.
            self.sync_sweep(now=float('inf'))

    def __enter__(self):
        self._syncer.start()
        if self._hasher is not None:
            self._hasher.start()
        return self

    def __exit__(self, *exc):
        self._rest = exc[0] is None
        self._stop.set()
        if self._hasher is not None:
            self._hasher.join()
        if not self._rest:
            self._syncer.join()
        return False

    def finish(self):
        """After the writer ended (and the context exited): fsync what the sweeps did not, then the
        directories bottom-up and ``top`` itself. Errors are raised here."""
        if self._syncer.ident is not None:
            self._syncer.join()
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
