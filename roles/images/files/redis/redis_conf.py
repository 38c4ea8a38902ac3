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
"""
import os
import sys

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


def merge(kind, base_text, state_text, bootstrap_text=""):
    """The text of the new STATE file."""
    if kind not in LEARNED:
        raise ValueError("kind must be server or sentinel, not %r" % kind)
    learned = learned_lines(kind, state_text) if state_text.strip() else learned_lines(kind, bootstrap_text)
    owned = owned_lines(kind, base_text)
    if kind == "server":
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
    write_atomic(state, merge(kind, base_text, _read(state), _read(bootstrap)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
