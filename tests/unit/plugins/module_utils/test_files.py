# -*- coding: utf-8 -*-
from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.psscript.infra.plugins.module_utils import _files


def test_mode_none_is_what_open_would_give(tmp_path):
    old = os.umask(0o027)
    try:
        path = str(tmp_path / "a.json")
        _files.write_text_atomic(path, "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert open(path).read() == "{}\n"


def test_explicit_mode_and_no_temporary_left(tmp_path):
    path = str(tmp_path / "secret")
    _files.write_text_atomic(path, "one")
    _files.write_text_atomic(path, "two", 0o600)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(str(tmp_path)) == ["secret"]
    assert open(path).read() == "two"


def test_failure_leaves_the_old_file_and_nothing_else(tmp_path, monkeypatch):
    path = str(tmp_path / "kept")
    _files.write_text_atomic(path, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(_files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        _files.write_text_atomic(path, "new")
    monkeypatch.undo()
    assert os.listdir(str(tmp_path)) == ["kept"]
    assert open(path).read() == "old"


@pytest.fixture
def fsyncs(monkeypatch):
    """Every fsync_path call, as (path, directory), with the real fsync still done."""
    calls = []
    real = _files.fsync_path

    def record(path, directory=False):
        calls.append((path, directory))
        real(path, directory)

    monkeypatch.setattr(_files, "fsync_path", record)
    return calls


def _write(path, data, mtime=None):
    with open(path, "ab") as handle:
        handle.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def test_sweep_syncs_settled_files_once_and_finish_what_changed_after(tmp_path, fsyncs, monkeypatch):
    old, fresh = str(tmp_path / "old"), str(tmp_path / "fresh")
    _write(old, b"a" * 10, mtime=1000.0)
    _write(fresh, b"b" * 10, mtime=1000.9)
    syncer = _files.SyncWhileWriting(str(tmp_path), settle=0.5)
    assert syncer.sweep(now=1001.0) == 1
    assert fsyncs == [(old, False)]
    real_lstat, stats = os.lstat, []
    monkeypatch.setattr(os, "lstat", lambda path: stats.append(path) or real_lstat(path))
    assert syncer.sweep(now=1001.0) == 0, "a file synced is not synced again"
    assert stats == [fresh], "nor is it stat'ed again while the writer runs"
    assert syncer.sweep(now=1002.0) == 1 and fsyncs[-1] == (fresh, False)
    _write(old, b"c", mtime=1003.0)
    assert syncer.sweep(now=1004.0) == 0
    syncer.finish()
    assert (old, False) in fsyncs[2:], "the change after its fsync is synced at the end"


def test_finish_syncs_only_what_changed_or_was_never_synced_then_every_directory(tmp_path, fsyncs):
    sub = tmp_path / "base" / "1"
    sub.mkdir(parents=True)
    kept, grown, late = str(sub / "kept"), str(sub / "grown"), str(tmp_path / "backup_manifest")
    _write(kept, b"k", mtime=1000.0)
    _write(grown, b"g", mtime=1000.0)
    syncer = _files.SyncWhileWriting(str(tmp_path), settle=0.5)
    syncer.sweep(now=2000.0)
    del fsyncs[:]
    _write(grown, b"more", mtime=1500.0)
    _write(late, b"m")
    syncer.finish()
    files = sorted(path for path, directory in fsyncs if not directory)
    directories = [path for path, directory in fsyncs if directory]
    assert files == sorted([grown, late])
    assert directories == [str(sub), str(tmp_path / "base"), str(tmp_path)]


def test_a_writer_running_beside_the_thread_ends_with_every_file_synced_at_its_final_state(tmp_path, fsyncs):
    import threading
    import time

    def writer():
        for index in range(30):
            path = str(tmp_path / ("f%02d" % index))
            for _ in range(3):
                _write(path, b"x" * 4096)
                time.sleep(0.002)

    with _files.SyncWhileWriting(str(tmp_path), interval=0.01, settle=0.01) as syncer:
        thread = threading.Thread(target=writer)
        thread.start()
        thread.join()
        time.sleep(0.1)
    syncer.finish()
    assert syncer.synced_early > 0, "the thread synced files while the writer ran"
    for index in range(30):
        path = str(tmp_path / ("f%02d" % index))
        assert os.path.getsize(path) == 3 * 4096
        stat_result = os.lstat(path)
        assert syncer.synced[path] == (stat_result.st_size, stat_result.st_mtime_ns)
    assert (str(tmp_path), True) in fsyncs


def test_hashing_sweep_records_the_sha256_of_each_settled_file_before_its_fsync(tmp_path, fsyncs):
    import hashlib

    old, fresh = str(tmp_path / "old"), str(tmp_path / "fresh")
    _write(old, b"a" * 3000000, mtime=1000.0)  # more than one read block
    _write(fresh, b"b" * 10, mtime=1000.9)
    syncer = _files.SyncWhileWriting(str(tmp_path), settle=0.5, hashing=True)
    assert syncer.sweep(now=1001.0) == 1 and fsyncs == [(old, False)]
    assert list(syncer.hashes) == [old], "only the settled file, not the one still being written"
    assert syncer.sha256(old) == (hashlib.sha256(b"a" * 3000000).hexdigest(), 3000000)
    # Not hashed by the thread yet: hashed when asked.
    assert syncer.sha256(fresh) == (hashlib.sha256(b"b" * 10).hexdigest(), 10)
    # Changed after the thread hashed it: the record is not used.
    _write(old, b"c", mtime=1003.0)
    assert syncer.sha256(old) == (hashlib.sha256(b"a" * 3000000 + b"c").hexdigest(), 3000001)


def test_a_file_that_changes_while_it_is_hashed_is_not_recorded_but_synced_as_it_is_now(tmp_path, fsyncs, monkeypatch):
    path = str(tmp_path / "moving")
    _write(path, b"a" * 10, mtime=1000.0)
    syncer = _files.SyncWhileWriting(str(tmp_path), settle=0.5, hashing=True)
    real_lstat = os.lstat
    calls = []

    def lstat(target):
        calls.append(target)
        if len(calls) == 2:  # the stat after the read: a writer appended meanwhile
            _write(path, b"b", mtime=1000.5)
        return real_lstat(target)
    monkeypatch.setattr(os, "lstat", lstat)
    assert syncer.sweep(now=2000.0) == 1
    assert syncer.hashes == {} and fsyncs == [(path, False)]
    assert syncer.synced[path][0] == 11, "synced at the state the syncing thread saw, after the change"
    monkeypatch.undo()
    assert syncer.sweep(now=2000.0) == 0, "synced at its current state already"
    assert list(syncer.hashes) == [path] and syncer.sha256(path)[1] == 11


def test_the_hashing_goes_on_while_an_fsync_waits_for_the_disk(tmp_path, monkeypatch):
    import hashlib
    import threading
    import time

    disk = threading.Event()
    real = _files.fsync_path

    def slow_fsync(path, directory=False):
        disk.wait(10)
        real(path, directory)
    monkeypatch.setattr(_files, "fsync_path", slow_fsync)
    paths = [str(tmp_path / ("f%d" % index)) for index in range(3)]
    for path in paths:
        _write(path, path.encode() * 1000, mtime=1000.0)
    with _files.SyncWhileWriting(str(tmp_path), interval=0.01, settle=0.01, hashing=True) as syncer:
        deadline = time.monotonic() + 10
        while len(syncer.hashes) < len(paths) and time.monotonic() < deadline:
            time.sleep(0.01)
        hashed, synced = sorted(syncer.hashes), dict(syncer.synced)
        disk.set()
    syncer.finish()
    assert hashed == paths and synced == {}, "every file hashed while the first fsync still waited"
    for path in paths:
        assert syncer.sha256(path)[0] == hashlib.sha256(path.encode() * 1000).hexdigest()
        assert path in syncer.synced


def test_the_files_left_when_the_writer_ends_are_synced_beside_the_caller_and_finish_waits(tmp_path, monkeypatch):
    import threading

    calls = []
    real = _files.fsync_path

    def record(path, directory=False):
        calls.append((path, directory, threading.current_thread().name))
        real(path, directory)

    monkeypatch.setattr(_files, "fsync_path", record)
    paths = sorted(str(tmp_path / ("f%d" % index)) for index in range(3))
    # interval: the thread never sweeps, so every file is left for when the writer ends.
    with _files.SyncWhileWriting(str(tmp_path), interval=3600) as syncer:
        for path in paths:
            _write(path, b"x" * 100)
    syncer.finish()
    files = sorted((path, name) for path, directory, name in calls if not directory)
    # Each once, by the syncing thread after the context exited (not by finish after it, nor twice) ...
    assert files == [(path, "sync-while-writing") for path in paths]
    assert syncer.synced_early == 0
    # ... and finish waited for it before the directories.
    assert calls[-1] == (str(tmp_path), True, threading.current_thread().name)


def test_no_rest_is_synced_when_the_writer_raised(tmp_path, fsyncs):
    _write(str(tmp_path / "f"), b"x")
    with pytest.raises(RuntimeError):
        with _files.SyncWhileWriting(str(tmp_path), interval=3600):
            raise RuntimeError("the writer failed")
    assert fsyncs == []


def test_the_threads_run_below_the_writer(tmp_path, monkeypatch):
    import threading

    seen = []

    def setpriority(which, who, priority):
        seen.append((which, who, threading.get_native_id(), threading.current_thread().name, priority))

    monkeypatch.setattr(os, "setpriority", setpriority)
    with _files.SyncWhileWriting(str(tmp_path), interval=3600, hashing=True):
        pass
    # nice 19 for each thread itself, not the process (the writer's caller).
    assert sorted((which, who == native, name, priority) for which, who, native, name, priority in seen) == [
        (os.PRIO_PROCESS, True, "hash-while-writing", 19), (os.PRIO_PROCESS, True, "sync-while-writing", 19)]
    assert threading.get_native_id() not in [who for which, who, native, name, priority in seen]


def test_a_file_still_being_written_is_hashed_as_far_as_it_is_written_and_on_from_there(tmp_path, fsyncs, monkeypatch):
    import hashlib

    path = str(tmp_path / "growing")
    first, second = b"a" * 3000000, b"b" * 1500000
    _write(path, first, mtime=1000.0)
    syncer = _files.SyncWhileWriting(str(tmp_path), settle=0.5, hashing=True)
    # Not settled: hashed as far as written, neither synced nor recorded as a whole file.
    assert syncer.sweep(now=1000.1) == 0 and fsyncs == [] and syncer.hashes == {}
    assert syncer._partial[path][1] == len(first)
    _write(path, second, mtime=1001.0)
    reads = []
    real_open = open

    def counting_open(target, mode="r", *args, **kwargs):
        handle = real_open(target, mode, *args, **kwargs)
        if target == path and "b" in mode:
            real_read = handle.read
            handle.read = lambda size=-1: reads.append(real_read(size)) or reads[-1]
        return handle
    monkeypatch.setattr("builtins.open", counting_open)
    assert syncer.sweep(now=1002.0) == 1 and fsyncs == [(path, False)]
    monkeypatch.undo()
    assert sum(len(chunk) for chunk in reads) == len(second), "only the bytes written since were read"
    assert syncer.sha256(path) == (hashlib.sha256(first + second).hexdigest(), len(first) + len(second))


def test_a_file_replaced_or_shorter_than_what_was_hashed_is_hashed_from_its_start(tmp_path, fsyncs):
    import hashlib

    replaced, shorter = str(tmp_path / "replaced"), str(tmp_path / "shorter")
    _write(replaced, b"old" * 1000, mtime=1000.0)
    _write(shorter, b"s" * 5000, mtime=1000.0)
    syncer = _files.SyncWhileWriting(str(tmp_path), settle=0.5, hashing=True)
    syncer.sweep(now=1000.1)
    assert syncer._partial[replaced][1] == 3000 and syncer._partial[shorter][1] == 5000
    other = str(tmp_path / "other")
    _write(other, b"new" * 2000, mtime=1000.2)  # longer than what was hashed, so only the inode tells
    os.replace(other, replaced)
    with open(shorter, "wb") as handle:
        handle.write(b"t" * 10)
    assert syncer.sha256(replaced) == (hashlib.sha256(b"new" * 2000).hexdigest(), 6000)
    assert syncer.sha256(shorter) == (hashlib.sha256(b"t" * 10).hexdigest(), 10)


def test_a_stop_ends_the_hashing_at_the_next_file_and_the_rest_is_hashed_when_asked(tmp_path, fsyncs):
    import hashlib
    import threading

    paths = [str(tmp_path / ("f%d" % index)) for index in range(3)]
    for path in paths:
        _write(path, path.encode() * 100000, mtime=1000.0)
    stop = threading.Event()

    class StopAtFirst(dict):
        def __setitem__(self, key, value):
            stop.set()
            dict.__setitem__(self, key, value)
    syncer = _files.SyncWhileWriting(str(tmp_path), settle=0.5, hashing=True)
    syncer.hashes = StopAtFirst()
    assert syncer.hash_sweep(now=2000.0, stop=stop) == 1, "the stop came with the first file's record"
    assert len(syncer.hashes) == 1 and fsyncs == []
    for path in paths:
        assert syncer.sha256(path) == (hashlib.sha256(path.encode() * 100000).hexdigest(), len(path) * 100000)


def test_a_file_leaves_the_page_cache_once_it_is_hashed_and_synced_not_before(tmp_path, fsyncs, monkeypatch):
    dropped = []
    monkeypatch.setattr(_files, "drop_cached", dropped.append)
    hashed, unhashed = str(tmp_path / "hashed"), str(tmp_path / "plain")
    _write(hashed, b"h" * 10, mtime=1000.0)
    syncer = _files.SyncWhileWriting(str(tmp_path), settle=0.5, hashing=True)
    syncer.sweep(now=1001.0)
    assert dropped == [hashed]
    # Without hashing (a compressed backup: the archive is hashed after the copy), the file stays cached.
    _write(unhashed, b"p" * 10, mtime=1000.0)
    _files.SyncWhileWriting(str(tmp_path), settle=0.5).sweep(now=1001.0)
    assert dropped == [hashed]
    # Synced first, hashed after: dropped by the hash.
    later = str(tmp_path / "later")
    _write(later, b"l" * 10, mtime=1000.0)
    assert syncer.sync_sweep(now=1001.0) == 2 and dropped == [hashed]
    assert syncer.hash_sweep(now=1001.0) == 2 and dropped == [hashed, later, unhashed]


def test_drop_cached_is_a_hint_that_never_raises(tmp_path):
    path = str(tmp_path / "f")
    _write(path, b"x" * 4096)
    _files.drop_cached(path)
    _files.drop_cached(str(tmp_path / "missing"))
    with open(path, "rb") as handle:
        assert handle.read() == b"x" * 4096


def test_make_directory_says_who_made_it_and_refuses_what_is_not_a_directory(tmp_path):
    deep = str(tmp_path / "a" / "b")
    assert _files.make_directory(deep, 0o750, parents=True) is True
    assert os.stat(deep).st_mode & 0o777 == 0o750 & ~_umask()
    assert _files.make_directory(deep, parents=True) is False, "there already (another process made it)"
    assert _files.make_directory(str(tmp_path / "a")) is False
    with pytest.raises(FileNotFoundError):
        _files.make_directory(str(tmp_path / "x" / "y"))
    _write(str(tmp_path / "file"), b"x")
    with pytest.raises(FileExistsError):
        _files.make_directory(str(tmp_path / "file"))
    os.symlink(deep, str(tmp_path / "link"))
    assert _files.make_directory(str(tmp_path / "link")) is False
    with pytest.raises(FileExistsError):
        _files.make_directory(str(tmp_path / "link"), follow_links=False)


def _umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask
