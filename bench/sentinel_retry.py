#!/usr/bin/env python3
"""How long a lost Redis master stays unreplaced when the Sentinels' first failover attempt is aborted.

A Sentinel whose failover attempt was aborted (no replica fit to promote, a split vote, TILT on a
starved host) tries again only after twice its ``failover-timeout``. This bench makes the first
attempt abort on purpose and measures when the master is replaced, for each value given:

  1. A fresh set (tests/integration/redis_stack.py: a master, two replicas, three Sentinels, the stack's
     own image), ``SENTINEL SET <master> failover-timeout T`` on every Sentinel.
  2. ``replica-priority 0`` on both replicas (as a Redis restore does while it runs), until the
     Sentinels see it.
  3. The master and one Sentinel killed together (a lost Docker host).
  4. Once a remaining Sentinel logs ``-failover-abort-no-good-slave``, the replicas get
     ``replica-priority 100`` back; the time until both remaining Sentinels name a new master is
     measured from the kill.

Usage:  bench/sentinel_retry.py [--timeouts 60000,20000]
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))

import redis_stack as rs  # noqa: E402  (the integration tests' Redis set)


def priorities_seen(stack, sentinels, value):
    for name in sentinels:
        for replica in stack.sentinel(name).execute_command("SENTINEL", "REPLICAS", rs.MASTER_NAME):
            fields = dict(zip(replica[0::2], replica[1::2])) if isinstance(replica, list) else replica
            if fields.get("slave-priority") != str(value):
                return False
    return True


def one(timeout_ms):
    stack = rs.start()
    try:
        for name in rs.SENTINELS:
            stack.sentinel(name).execute_command("SENTINEL", "SET", rs.MASTER_NAME, "failover-timeout", str(timeout_ms))
        master = stack.master()
        replicas = stack.replicas()
        lost_sentinel = sorted(rs.SENTINELS)[0]
        left = [name for name in sorted(rs.SENTINELS) if name != lost_sentinel]
        for name in replicas:
            stack.client(name).config_set("replica-priority", 0)
        rs.wait_until(lambda: priorities_seen(stack, left, 0), 30, "the Sentinels see replica-priority 0")
        old = stack.master_address()
        subprocess.run(["docker", "kill", "%s-%s" % (rs.PREFIX, master), "%s-%s" % (rs.PREFIX, lost_sentinel)],
                       check=True, capture_output=True)
        killed = time.monotonic()
        aborted = None
        while aborted is None:
            if time.monotonic() - killed > 120:
                raise SystemExit("no -failover-abort-no-good-slave within 120 s")
            if any("-failover-abort-no-good-slave" in stack.logs(name, tail="all") for name in left):
                aborted = time.monotonic() - killed
            else:
                time.sleep(0.2)
        for name in replicas:
            stack.client(name).config_set("replica-priority", 100)

        def replaced():
            named = set()
            for name in left:
                host, port = stack.sentinel(name).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", rs.MASTER_NAME)
                named.add("%s:%s" % (host, port))
            return len(named) == 1 and old not in named
        rs.wait_until(replaced, 4 * timeout_ms / 1000.0 + 60, "a new master", interval=0.2)
        return aborted, time.monotonic() - killed
    finally:
        rs.stop(stack)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeouts", default="60000,20000", help="failover-timeout values in ms, comma separated")
    args = parser.parse_args()
    timeouts = [int(value) for value in args.timeouts.split(",")]
    results = {}
    for timeout_ms in timeouts:
        aborted, replaced = one(timeout_ms)
        results[timeout_ms] = replaced
        print("failover-timeout %6d ms: first attempt aborted %.1f s after the kill, master replaced after %.1f s "
              "(2 x failover-timeout = %.0f s)" % (timeout_ms, aborted, replaced, 2 * timeout_ms / 1000.0), flush=True)
    first = timeouts[0]
    for timeout_ms in timeouts[1:]:
        print("time to a new master, failover-timeout %d ms against %d ms: %.2f"
              % (timeout_ms, first, results[timeout_ms] / results[first]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
