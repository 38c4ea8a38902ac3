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


def test_security_mirror_is_the_hosts_own():
    entries = apt_mirror.parse_deb822(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://sec.example/debian-security/\nSuites: bookworm-security\nComponents: main\n"
    )
    mirror = apt_mirror.choose_mirror(entries)
    assert apt_mirror.choose_security_mirror(entries, mirror) == "http://sec.example/debian-security"


def test_security_mirror_next_to_a_debian_mirror_or_none():
    entries = apt_mirror.parse_one_line("deb http://local.mirror/debian/ trixie main\n")
    assert apt_mirror.choose_security_mirror(entries, apt_mirror.choose_mirror(entries)) == "http://local.mirror/debian-security"
    entries = apt_mirror.parse_one_line("deb http://local.mirror/archive trixie main\n")
    assert apt_mirror.choose_security_mirror(entries, apt_mirror.choose_mirror(entries)) is None


def test_main_prints_mirror_then_security_mirror(tmp_path, capsys, monkeypatch):
    d = tmp_path / "etc" / "apt"
    d.mkdir(parents=True)
    (d / "sources.list").write_text("deb http://m.example/debian trixie main\ndeb http://m.example/debian-security trixie-security main\n")
    monkeypatch.setattr(apt_mirror.sys, "argv", ["apt_mirror.py", str(tmp_path)])
    assert apt_mirror.main() == 0
    assert capsys.readouterr().out.splitlines() == ["http://m.example/debian", "http://m.example/debian-security"]


def test_no_mirror_is_none():
    assert apt_mirror.choose_mirror(apt_mirror.parse_one_line("deb http://x/ubuntu noble main\n")) is None


# A data node asks the Sentinels before it starts (a restarted old master comes back as a replica).
SERVER_BASE = """port 6379
requirepass pw
# psscript: discover mymaster 172.25.0.31:6379 172.25.0.41:26379 172.25.0.42:26380 172.25.0.43:26381
# psscript: sentinel-password spw
"""


def test_discovery_is_read_from_base_comments():
    assert redis_conf.discovery(SERVER_BASE) == (
        "mymaster", "172.25.0.31:6379", ["172.25.0.41:26379", "172.25.0.42:26380", "172.25.0.43:26381"], "spw", None)
    assert redis_conf.discovery("port 6379\n") is None
    with_tls = SERVER_BASE + "# psscript: sentinel-tls /etc/psscript/tls/ca.crt\n"
    assert redis_conf.discovery(with_tls)[4] == "/etc/psscript/tls/ca.crt"


def test_restarted_old_master_starts_as_replica_of_the_majoritys_master():
    # Its own file still says master (no replicaof); the Sentinels promoted 172.25.0.32 meanwhile.
    out = redis_conf.merge("server", SERVER_BASE, "port 6379\n", "", master="172.25.0.32:6380")
    assert "replicaof 172.25.0.32 6380" in out.splitlines()
    assert "psscript: discover" not in out and "spw" not in out


def test_node_the_majority_names_starts_as_master_even_with_a_stale_replicaof():
    out = redis_conf.merge("server", SERVER_BASE, "port 6379\nreplicaof 172.25.0.33 6381\n", "", master="172.25.0.31:6379")
    assert "replicaof" not in out


def test_without_a_majority_the_learned_lines_decide():
    out = redis_conf.merge("server", SERVER_BASE, "port 6379\nreplicaof 172.25.0.33 6381\n", "", master=None)
    assert "replicaof 172.25.0.33 6381" in out


@pytest.mark.parametrize("replies, total, wanted", [
    (["a:1", "a:1", None], 3, "a:1"),
    (["a:1", "b:2", None], 3, None),          # split: no majority
    (["a:1", None, None], 3, None),           # one of three is not a majority
    (["a:1", "a:1"], 4, None),                # half is not more than half
    ([None, None, None], 3, None),            # first deploy: nobody knows the master
])
def test_majority_master(replies, total, wanted):
    assert redis_conf.majority_master(replies, total) == wanted


def test_ask_sentinels_asks_every_one_with_the_password():
    asked = []

    def ask(address, password, name, ca_file=None):
        asked.append((address, password, name))
        assert ca_file is None
        return {"s1:1": "m:6379", "s2:2": "m:6379"}.get(address)

    assert redis_conf.ask_sentinels(["s1:1", "s2:2", "s3:3"], "spw", "mymaster", ask=ask) == "m:6379"
    assert sorted(asked) == [("s1:1", "spw", "mymaster"), ("s2:2", "spw", "mymaster"), ("s3:3", "spw", "mymaster")]


def _tls_files(tmp_path, name="127.0.0.1"):
    """A CA and a server certificate for the IP address `name`, as PEM files: (ca, cert, key)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    paths = {}

    def make(subject, issuer, key, issuer_key, ca, sans):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = make(ca_name, ca_name, ca_key, ca_key, True, None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = make(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sentinel")]), ca_name, key, ca_key, False,
                [x509.IPAddress(ipaddress.ip_address(name))])
    for label, data in (("ca", ca.public_bytes(serialization.Encoding.PEM)),
                        ("cert", cert.public_bytes(serialization.Encoding.PEM)),
                        ("key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))):
        paths[label] = tmp_path / (label + ".pem")
        paths[label].write_bytes(data)
    return str(paths["ca"]), str(paths["cert"]), str(paths["key"])


def _sentinel_server(tls=None):
    """A one-connection fake Sentinel on 127.0.0.1 (over TLS with tls=(cert, key)): (address, received, thread)."""
    import socket
    import ssl
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(5)
    received = []

    def serve():
        try:
            conn, _ = server.accept()
        except OSError:
            return
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            try:
                conn = context.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                conn.close()
                return
        with conn:
            stream = conn.makefile("rb")
            for reply in (b"+OK\r\n", b"*2\r\n$11\r\n172.25.0.32\r\n$4\r\n6380\r\n"):
                header = stream.readline()
                if not header:
                    return
                words = []
                for _ in range(int(header[1:])):
                    size = int(stream.readline()[1:])
                    words.append(stream.read(size + 2)[:-2].decode())
                received.append(words)
                conn.sendall(reply)
        server.close()

    thread = threading.Thread(target=serve)
    thread.start()
    return "127.0.0.1:%d" % server.getsockname()[1], received, thread


def test_ask_sentinel_over_tls_checks_the_certificate(tmp_path):
    ca, cert, key = _tls_files(tmp_path)
    address, received, thread = _sentinel_server(tls=(cert, key))
    assert redis_conf.ask_sentinel(address, "spw", "mymaster", ca_file=ca) == "172.25.0.32:6380"
    thread.join(5)
    assert received == [["AUTH", "spw"], ["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"]]
    # Another CA: no answer is taken, and the password is never sent.
    other = tmp_path / "other"
    other.mkdir()
    other_ca = _tls_files(other)[0]
    address, received, thread = _sentinel_server(tls=(cert, key))
    assert redis_conf.ask_sentinel(address, "spw", "mymaster", ca_file=other_ca) is None
    thread.join(5)
    assert received == []


def test_ask_sentinel_speaks_resp_to_a_real_socket():
    address, received, thread = _sentinel_server()
    assert redis_conf.ask_sentinel(address, "spw", "mymaster") == "172.25.0.32:6380"
    thread.join(5)
    assert received == [["AUTH", "spw"], ["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"]]


def test_ask_sentinel_without_answer_is_none():
    import socket
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there now
    assert redis_conf.ask_sentinel("127.0.0.1:%d" % port, "spw", "mymaster", timeout=0.5) is None
