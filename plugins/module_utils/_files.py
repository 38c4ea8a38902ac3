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
    digest, size = hashlib.sha256(), 0
    with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b''):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


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
    thread stats only the files it has not done (a sweep over a thousand files done costs a few
    milliseconds of CPU, four times a second): a file that changes after its fsync is caught by
    ``finish()``, which stats every file once more. With ``drop``, a file's pages are dropped from the
    page cache once it is fsynced (``POSIX_FADV_DONTNEED``): a backup that nothing reads right after
    then does not push the server's own data out.

    The thread runs at nice 19, so it takes only the cores' idle time, never the writer's.
    """

    def __init__(self, top, interval=0.25, settle=0.25, clock=None, drop=False):
        self.top = top
        self.drop = drop
        self.interval = interval
        self.settle = settle
        self._clock = clock or time.time
        self._stop = threading.Event()
        self._rest = False
        self._syncer = threading.Thread(target=self._run, name='sync-while-writing')
        self._syncer.daemon = True
        self.synced = {}
        self.synced_early = 0

    @staticmethod
    def _key(stat):
        return (stat.st_size, stat.st_mtime_ns)

    def _settled(self, now, stop):
        """The regular files under ``top`` not synced yet as ``(path, stat, settled)`` (``now``: None for the clock),
        skipping any that disappears meanwhile; ends at the next file once ``stop`` (an Event) is set."""
        now = self._clock() if now is None else now
        for dirpath, dirnames, filenames in os.walk(self.top):
            for name in filenames:
                if stop is not None and stop.is_set():
                    return
                path = os.path.join(dirpath, name)
                if path in self.synced:
                    continue
                try:
                    stat = os.lstat(path)
                except OSError:
                    continue
                if S_ISREG(stat.st_mode):  # lstat: a symbolic link is not a regular file either
                    yield path, stat, now - stat.st_mtime >= self.settle

    def sweep(self, now=None, stop=None):
        """fsync the settled files not synced yet; returns how many it synced. A file that disappears or cannot be
        opened meanwhile, or changes after its fsync, is left to finish(). ``stop`` (an Event): return at the next file
        once it is set."""
        count = 0
        for path, stat, settled in self._settled(now, stop):
            if not settled:
                continue
            try:
                fsync_path(path)
            except OSError:
                continue
            self.synced[path] = self._key(stat)
            count += 1
            if self.drop:
                drop_cached(path)
        return count

    def _run(self):
        # Below the writer (nice 19, this thread only): the thread takes the cores' idle time and never the writer's.
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):
            pass
        while not self._stop.wait(self.interval):
            self.synced_early += self.sweep(stop=self._stop)
        if self._rest:
            # The writer ended: every file is settled now; finish() waits for this.
            self.sweep(now=float('inf'))

    def __enter__(self):
        self._syncer.start()
        return self

    def __exit__(self, *exc):
        self._rest = exc[0] is None
        self._stop.set()
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
