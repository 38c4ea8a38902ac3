#!/usr/bin/env python3
"""Merge the configuration Ansible owns with the state Redis or Sentinel learned.

    psscript-redis-conf server|sentinel BASE STATE

BASE (rendered by the redis_sentinel role on every run) holds every setting the
operator owns. STATE is the file the server runs from; Redis and Sentinel
rewrite it themselves (CONFIG REWRITE, failovers, learned replicas and
sentinels). On start the new STATE is BASE plus the learned lines kept from the
old STATE. When no STATE exists yet (first start), the learned lines come from
BASE's companion bootstrap file (BASE with .base.conf replaced by
.bootstrap.conf), which the role writes once and never again.

Keeping the two apart means a re-run of the role can change settings without
ever wiping what Sentinel learned or pointing it back at an old master.

A data node also asks the Sentinels before it starts (BASE names them in
'# psscript: discover' lines). When a majority of them names another master, it
starts as that master's replica: a restarted old master is never seen as a master
(it would refuse every write, NOREPLICAS, until Sentinel converted it). When the
majority names this node, it starts as a master. Without a majority (first deploy,
Sentinels down) the learned lines decide, as before.
"""
import os
import socket
import ssl
import sys
import threading

# Directives whose value is topology that the running set decides, not Ansible.
LEARNED = {
    "server": ("replicaof", "slaveof"),
    "sentinel": (
        "sentinel myid",
        "sentinel current-epoch",
        "sentinel config-epoch",
        "sentinel leader-epoch",
        "sentinel known-replica",
        "sentinel known-slave",
        "sentinel known-sentinel",
        "sentinel monitor",
    ),
}
QUORUM_MARKER = "# psscript: quorum "
# Data nodes: '# psscript: discover MASTER_NAME SELF_HOST:PORT SENTINEL_HOST:PORT...' and
# '# psscript: sentinel-password PASSWORD' (BASE is 0600, as it holds requirepass anyway).
DISCOVER_MARKER = "# psscript: discover "
SENTINEL_PASSWORD_MARKER = "# psscript: sentinel-password "
# '# psscript: sentinel-tls CA_FILE' when the Sentinels serve TLS only: they are asked over TLS, and their
# certificates (chain and the address asked) are checked with the stack CA.
SENTINEL_TLS_MARKER = "# psscript: sentinel-tls "
# Seconds a Sentinel may take to answer; all are asked at once, so this bounds the delay of a start.
SENTINEL_TIMEOUT = 1.0


def _directive(line):
    words = line.split()
    if not words or words[0].startswith("#"):
        return None
    if words[0].lower() == "sentinel" and len(words) > 1:
        return "sentinel " + words[1].lower()
    return words[0].lower()


def learned_lines(kind, text):
    """The learned lines of a config text, in their order."""
    keep = LEARNED[kind]
    return [line.strip() for line in text.splitlines() if _directive(line) in keep]


def owned_lines(kind, text):
    """The lines of BASE that are not learned topology (comments dropped)."""
    keep = LEARNED[kind]
    out = []
    for line in text.splitlines():
        directive = _directive(line)
        if directive is None or directive in keep:
            continue
        out.append(line.strip())
    return out


def quorums(text):
    """{master_name: quorum} from '# psscript: quorum NAME N' lines of BASE."""
    found = {}
    for line in text.splitlines():
        if line.startswith(QUORUM_MARKER):
            words = line[len(QUORUM_MARKER):].split()
            if len(words) == 2:
                found[words[0]] = words[1]
    return found


def discovery(base_text):
    """(master_name, self_address, [sentinel addresses], password, ca_file or None) from BASE, or None."""
    found, password, ca_file = None, "", None
    for line in base_text.splitlines():
        if line.startswith(DISCOVER_MARKER):
            words = line[len(DISCOVER_MARKER):].split()
            if len(words) >= 3:
                found = (words[0], words[1], words[2:])
        elif line.startswith(SENTINEL_PASSWORD_MARKER):
            password = line[len(SENTINEL_PASSWORD_MARKER):].strip()
        elif line.startswith(SENTINEL_TLS_MARKER):
            ca_file = line[len(SENTINEL_TLS_MARKER):].strip() or None
    return None if found is None else found + (password, ca_file)


def _command(*words):
    out = [b"*%d\r\n" % len(words)]
    for word in words:
        data = word.encode()
        out += [b"$%d\r\n" % len(data), data, b"\r\n"]
    return b"".join(out)


def _read_reply(stream):
    """One RESP2 reply: str, None, list or an Exception for an error reply."""
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise OSError("connection closed")
    kind, rest = line[:1], line[1:-2].decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        return Exception(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else stream.read(size + 2)[:-2].decode()
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read_reply(stream) for _ in range(size)]
    raise OSError("unexpected reply %r" % line)


def split_address(address):
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def ask_sentinel(address, password, master_name, timeout=SENTINEL_TIMEOUT, ca_file=None):
    """host:port of the master this Sentinel names, or None (no answer, unknown master, a certificate that
    the CA did not sign or that does not name the address)."""
    try:
        host, port = split_address(address)
        with socket.create_connection((host, port), timeout=timeout) as plain:
            sock = plain
            if ca_file:
                sock = ssl.create_default_context(cafile=ca_file).wrap_socket(plain, server_hostname=host)
            sock.settimeout(timeout)
            stream = sock.makefile("rb")
            if password:
                sock.sendall(_command("AUTH", password))
                if isinstance(_read_reply(stream), Exception):
                    return None
            sock.sendall(_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", master_name))
            reply = _read_reply(stream)
    except (OSError, ValueError):
        return None
    if isinstance(reply, list) and len(reply) == 2 and all(isinstance(x, str) for x in reply):
        return "%s:%s" % (reply[0], reply[1])
    return None


def majority_master(replies, total):
    """The address more than half of all `total` Sentinels name, else None."""
    counts = {}
    for reply in replies:
        if reply:
            counts[reply] = counts.get(reply, 0) + 1
    for address, count in counts.items():
        if count * 2 > total:
            return address
    return None


def ask_sentinels(sentinels, password, master_name, ask=ask_sentinel, ca_file=None):
    """Ask every Sentinel at once (over TLS with ca_file); the majority's master or None."""
    replies = [None] * len(sentinels)

    def one(index):
        replies[index] = ask(sentinels[index], password, master_name, ca_file=ca_file)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(sentinels))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return majority_master(replies, len(sentinels))


def replication_lines(self_address, master):
    """The learned lines of a data node the Sentinel majority decided."""
    if master == self_address:
        return []
    host, port = split_address(master)
    return ["replicaof %s %d" % (host, port)]


def merge(kind, base_text, state_text, bootstrap_text="", master=None):
    """The text of the new STATE file. For a server, `master` is what the Sentinel majority
    names (None: no majority, the learned lines decide)."""
    if kind not in LEARNED:
        raise ValueError("kind must be server or sentinel, not %r" % kind)
    learned = learned_lines(kind, state_text) if state_text.strip() else learned_lines(kind, bootstrap_text)
    owned = owned_lines(kind, base_text)
    if kind == "server":
        found = discovery(base_text)
        if master and found:
            learned = replication_lines(found[1], master)
        body = owned + learned
    else:
        wanted_quorum = quorums(base_text)
        monitors, others = [], []
        for line in learned:
            if _directive(line) == "sentinel monitor":
                words = line.split()
                # sentinel monitor NAME IP PORT QUORUM
                if len(words) == 6 and words[2] in wanted_quorum:
                    words[5] = wanted_quorum[words[2]]
                monitors.append(" ".join(words))
            else:
                others.append(line)
        # Per-master settings need their 'sentinel monitor' line first.
        globals_ = [line for line in owned if not _is_per_master(line)]
        per_master = [line for line in owned if _is_per_master(line)]
        body = globals_ + monitors + per_master + others
    header = "# Written by psscript-redis-conf at start; Redis/Sentinel rewrite it at run time.\n"
    return header + "\n".join(body) + "\n"


PER_MASTER = (
    "sentinel down-after-milliseconds",
    "sentinel failover-timeout",
    "sentinel parallel-syncs",
    "sentinel auth-pass",
    "sentinel auth-user",
    "sentinel notification-script",
    "sentinel client-reconfig-script",
    "sentinel master-reboot-down-after-period",
)


def _is_per_master(line):
    return _directive(line) in PER_MASTER


def _read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def write_atomic(path, text):
    # python3-minimal in the image has no tempfile module: a fixed temporary name is enough,
    # only this process writes the file before the server starts.
    tmp = path + ".psscript-tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv):
    if len(argv) != 4:
        sys.stderr.write("usage: psscript-redis-conf server|sentinel BASE STATE\n")
        return 2
    kind, base, state = argv[1], argv[2], argv[3]
    base_text = _read(base)
    if not base_text:
        sys.stderr.write("psscript-redis-conf: %s is missing or empty; the redis_sentinel role renders it\n" % base)
        return 1
    bootstrap = base.replace(".base.conf", ".bootstrap.conf")
    master = None
    found = discovery(base_text) if kind == "server" else None
    if found:
        name, self_address, sentinels, password, ca_file = found
        master = ask_sentinels(sentinels, password, name, ca_file=ca_file)
        sys.stderr.write("psscript-redis-conf: the Sentinel majority names %s as master of %s%s\n" % (
            master or "nothing", name,
            "" if not master else (": starting as master" if master == self_address else ": starting as its replica")))
    write_atomic(state, merge(kind, base_text, _read(state), _read(bootstrap), master=master))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
