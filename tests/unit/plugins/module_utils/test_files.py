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


def test_the_thread_runs_below_the_writer(tmp_path, monkeypatch):
    import threading

    seen = []

    def setpriority(which, who, priority):
        seen.append((which, who, threading.get_native_id(), threading.current_thread().name, priority))

    monkeypatch.setattr(os, "setpriority", setpriority)
    with _files.SyncWhileWriting(str(tmp_path), interval=3600):
        pass
    # nice 19 for the thread itself, not the process (the writer's caller).
    assert [(which, who == native, name, priority) for which, who, native, name, priority in seen] == [
        (os.PRIO_PROCESS, True, "sync-while-writing", 19)]
    assert threading.get_native_id() not in [who for which, who, native, name, priority in seen]


def test_with_drop_a_file_leaves_the_page_cache_once_it_is_synced_not_before(tmp_path, fsyncs, monkeypatch):
    dropped = []
    monkeypatch.setattr(_files, "drop_cached", dropped.append)
    done, fresh = str(tmp_path / "done"), str(tmp_path / "fresh")
    _write(done, b"d" * 10, mtime=1000.0)
    _write(fresh, b"f" * 10, mtime=1000.9)
    syncer = _files.SyncWhileWriting(str(tmp_path), settle=0.5, drop=True)
    assert syncer.sweep(now=1001.0) == 1 and dropped == [done], "not the file still being written"
    assert syncer.sweep(now=1002.0) == 1 and dropped == [done, fresh]
    # Without drop (a compressed backup: its archive is hashed right after the copy), the files stay cached.
    other = tmp_path / "other"
    other.mkdir()
    _write(str(other / "archive"), b"a" * 10, mtime=1000.0)
    assert _files.SyncWhileWriting(str(other), settle=0.5).sweep(now=1001.0) == 1
    assert dropped == [done, fresh]


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
