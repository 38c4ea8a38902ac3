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
