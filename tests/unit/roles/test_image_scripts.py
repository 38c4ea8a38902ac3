# -*- coding: utf-8 -*-
"""The scripts the images role ships inside images or runs on the Docker host."""
from __future__ import annotations

import importlib.util
import os

import pytest

FILES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "images", "files")


def _load(name, relpath):
    spec = importlib.util.spec_from_file_location(name, os.path.join(FILES, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


redis_conf = _load("redis_conf", "redis/redis_conf.py")
apt_mirror = _load("apt_mirror", "base/apt_mirror.py")

SENTINEL_BASE = """# managed
port 26379
requirepass pw
sentinel announce-ip 172.25.0.41
# psscript: quorum mymaster 2
sentinel down-after-milliseconds mymaster 5000
sentinel auth-pass mymaster redispw
"""
SENTINEL_BOOTSTRAP = "sentinel monitor mymaster 172.25.0.31 6379 2\n"
SENTINEL_STATE = """port 26379
requirepass old
sentinel myid abc123
sentinel monitor mymaster 172.25.0.32 6380 2
sentinel down-after-milliseconds mymaster 1000
sentinel config-epoch mymaster 3
sentinel leader-epoch mymaster 3
sentinel current-epoch 3
sentinel known-replica mymaster 172.25.0.31 6379
sentinel known-sentinel mymaster 172.25.0.42 26380 def456
"""


def test_first_start_uses_bootstrap_topology():
    out = redis_conf.merge("sentinel", SENTINEL_BASE, "", SENTINEL_BOOTSTRAP)
    assert "sentinel monitor mymaster 172.25.0.31 6379 2" in out
    assert out.index("sentinel monitor") < out.index("sentinel down-after-milliseconds")


def test_restart_keeps_what_sentinel_learned_and_applies_owned_settings():
    out = redis_conf.merge("sentinel", SENTINEL_BASE, SENTINEL_STATE, SENTINEL_BOOTSTRAP)
    # the failed-over master, not the bootstrap one
    assert "sentinel monitor mymaster 172.25.0.32 6380 2" in out
    assert "172.25.0.31 6379 2" not in out
    for learned in ("sentinel myid abc123", "sentinel config-epoch mymaster 3", "sentinel current-epoch 3",
                    "sentinel known-replica mymaster 172.25.0.31 6379",
                    "sentinel known-sentinel mymaster 172.25.0.42 26380 def456"):
        assert learned in out
    # owned settings come from BASE, not the old state
    assert "requirepass pw" in out and "requirepass old" not in out
    assert "sentinel down-after-milliseconds mymaster 5000" in out
    assert "mymaster 1000" not in out


def test_quorum_change_applies_to_learned_monitor_line():
    base = SENTINEL_BASE.replace("quorum mymaster 2", "quorum mymaster 3")
    out = redis_conf.merge("sentinel", base, SENTINEL_STATE)
    assert "sentinel monitor mymaster 172.25.0.32 6380 3" in out


def test_server_keeps_replicaof_written_by_sentinel():
    base = "port 6379\nrequirepass pw\nappendonly yes\n"
    state = "port 6379\nrequirepass old\nreplicaof 172.25.0.32 6380\nsave 3600 1\n"
    out = redis_conf.merge("server", base, state, "")
    assert "replicaof 172.25.0.32 6380" in out
    assert "requirepass pw" in out and "requirepass old" not in out


def test_server_promoted_master_stays_master():
    # After a promotion Redis rewrote its file without replicaof: the bootstrap line must not come back.
    out = redis_conf.merge("server", "port 6380\n", "port 6380\n", "replicaof 172.25.0.31 6379\n")
    assert "replicaof" not in out


def test_server_first_start_replica():
    out = redis_conf.merge("server", "port 6380\n", "", "replicaof 172.25.0.31 6379\n")
    assert "replicaof 172.25.0.31 6379" in out


def test_unknown_kind_refused():
    with pytest.raises(ValueError):
        redis_conf.merge("cluster", "", "")


def test_main_writes_state_atomically(tmp_path):
    base = tmp_path / "redis.base.conf"
    base.write_text("port 6379\n")
    (tmp_path / "redis.bootstrap.conf").write_text("replicaof 10.0.0.2 6379\n")
    state = tmp_path / "state.conf"
    assert redis_conf.main(["x", "server", str(base), str(state)]) == 0
    assert "replicaof 10.0.0.2 6379" in state.read_text()
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    assert not list(tmp_path.glob("*.psscript-tmp"))


def test_main_refuses_missing_base(tmp_path):
    assert redis_conf.main(["x", "server", str(tmp_path / "none.base.conf"), str(tmp_path / "s")]) == 1


def test_mirror_from_deb822_skips_security_and_third_party(tmp_path):
    d = tmp_path / "etc" / "apt" / "sources.list.d"
    d.mkdir(parents=True)
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n"
    )
    (d / "vendor.sources").write_text("Types: deb\nURIs: https://vendor.example/apt\nSuites: nodistro\nComponents: main\n")
    (d / "old.list.disabled").write_text("deb http://wrong.example/debian bookworm main\n")
    assert apt_mirror.choose_mirror(apt_mirror.read_sources(str(tmp_path))) == "http://mirror.example/debian"


def test_mirror_from_one_line_format_with_options():
    entries = apt_mirror.parse_one_line(
        "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://local.mirror/debian trixie main contrib\n"
    )
    assert apt_mirror.choose_mirror(entries) == "http://local.mirror/debian"


def test_no_mirror_is_none():
    assert apt_mirror.choose_mirror(apt_mirror.parse_one_line("deb http://x/ubuntu noble main\n")) is None
