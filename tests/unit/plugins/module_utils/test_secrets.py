# -*- coding: utf-8 -*-
from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.psscript.infra.plugins.module_utils import _secrets


def test_generated_once_then_reused(tmp_path):
    path = str(tmp_path / "stack" / "secrets.yml")
    data, added = _secrets.ensure(_secrets.load(path), ["redis_password", "app_password"], 32)
    assert sorted(added) == ["app_password", "redis_password"]
    _secrets.write(path, data)
    again, added_again = _secrets.ensure(_secrets.load(path), ["redis_password", "app_password"], 32)
    assert added_again == []
    assert again == data


def test_file_is_private_and_directory_too(tmp_path):
    path = str(tmp_path / "d" / "secrets.yml")
    _secrets.write(path, {"a_password": "x" * 20})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert _secrets.mode_is_private(path)
    os.chmod(path, 0o644)
    assert not _secrets.mode_is_private(path)


def test_new_name_added_without_touching_others(tmp_path):
    existing = {"redis_password": "kept-value-0123456789"}
    data, added = _secrets.ensure(existing, ["redis_password", "new_password"], 24)
    assert data["redis_password"] == "kept-value-0123456789"
    assert added == ["new_password"]
    assert len(data["new_password"]) == 24


def test_generated_passwords_need_no_quoting():
    for _ in range(50):
        value = _secrets.generate(32)
        assert len(value) == 32
        assert _secrets.ALPHABET_RE.match(value)


def test_short_length_refused():
    with pytest.raises(_secrets.SecretsError, match="at least 16"):
        _secrets.generate(8)


def test_bad_names_and_values_are_clear_errors():
    with pytest.raises(_secrets.SecretsError, match="lower-case"):
        _secrets.ensure({}, ["Bad-Name"], 32)
    with pytest.raises(_secrets.SecretsError, match="quoting"):
        _secrets.ensure({"x": "has space"}, ["x"], 32)


def test_unreadable_file_is_a_clear_error(tmp_path):
    path = tmp_path / "secrets.yml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(_secrets.SecretsError, match="mapping"):
        _secrets.load(str(path))
    path.write_text("a: [unclosed\n")
    with pytest.raises(_secrets.SecretsError, match="cannot read"):
        _secrets.load(str(path))
