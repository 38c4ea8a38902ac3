#!/usr/bin/env python3
"""A Redis client that finds the master through Sentinel, as an application does, and keeps
a record of every write a replica acknowledged.

    sentinel_writer.py write --sentinels H:P,H:P,H:P --log FILE --stop-file FILE [--start N]
                             [--seconds 180] [--interval-ms 5] [--wait-ms 1000] [--run NAME]
        Writes k:<n> = <run>:<n> (n = start, start+1, ...) on the master the Sentinels name,
        each SET followed by WAIT 1 <wait-ms> on the same connection. Every key whose WAIT
        returned >= 1 is appended to FILE as "<key> <unix time> <master host:port>".
        After any error, or a WAIT that no replica answered, it drops its connections so
        the next write asks the Sentinels again. Stops when the stop file exists or after
        --seconds, whichever comes first, and prints a JSON summary.

    sentinel_writer.py write --address H:P --wait-ms 0 ...
        The same, pinned to one node and without WAIT (an application on a partitioned host):
        every write the node accepted is logged.

    sentinel_writer.py check --log FILE --master H:P [--run NAME]
        Reads FILE (complete lines) and prints, as JSON, how many acknowledged keys the given
        master is missing or holds with another value, how many were acknowledged by each
        master, and the longest time without an acknowledged write (what the client saw).

    sentinel_writer.py probe-old-master --address H:P --new-master H:P [--seconds 20]
        From now on, as long as the node at --address is not a replica of --new-master, tries
        a SET on it every 200 ms. Prints as JSON after how many seconds it became that
        replica (null if not within --seconds), how many writes it accepted while it was not
        (split brain: must be 0) and how it refused the others.

Passwords come from the environment: REDIS_SENTINEL_PASSWORD (the Sentinels' requirepass)
and REDIS_USERNAME / REDIS_PASSWORD (the data nodes' ACL user and its password), never from the command line.
With REDIS_TLS=true (app.env), every connection (Sentinels and data nodes) is TLS, the certificate checked
against REDIS_TLS_CA, names included.
"""
import argparse
import collections
import json
import os
import sys
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

CHUNK = 1000


def address(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def no_retry():
    # The loop decides what to do after a failure; redis-py must not retry on its own.
    return Retry(NoBackoff(), 0)


def tls_options():
    """redis-py's TLS arguments from app.env's REDIS_TLS and REDIS_TLS_CA ({} for plain TCP)."""
    if os.environ.get("REDIS_TLS", "false").lower() != "true":
        return {}
    return dict(ssl=True, ssl_ca_certs=os.environ.get("REDIS_TLS_CA") or None, ssl_cert_reqs="required",
                ssl_check_hostname=True)


def error_kind(exc):
    """A short, stable name for an error: the class and the server's error code."""
    text = str(exc)
    if "caused error: " in text:  # redis-py wraps a pipeline command's error
        text = text.split("caused error: ", 1)[1]
    words = text.split()
    code = words[0] if words and words[0].isupper() else ""
    return ("%s %s" % (type(exc).__name__, code)).strip()


def write(args):
    # Longer than a planned switchover's CLIENT PAUSE, as an application's timeout would be.
    options = dict(username=os.environ.get("REDIS_USERNAME") or None, password=os.environ.get("REDIS_PASSWORD") or None, socket_timeout=5.0,
                   socket_connect_timeout=0.5, retry=no_retry(), **tls_options())
    if args.address:
        # A client pinned to one node (an application on a partitioned Docker host).
        host, port = address(args.address)
        master = redis.Redis(host=host, port=port, **options)
    else:
        sentinel = Sentinel(
            [address(item) for item in args.sentinels.split(",")],
            sentinel_kwargs=dict(password=os.environ.get("REDIS_SENTINEL_PASSWORD") or None,
                                 socket_timeout=1.0, socket_connect_timeout=1.0, retry=no_retry(), **tls_options()),
            **options)
        master = sentinel.master_for(args.master_name)
    deadline = time.monotonic() + args.seconds
    counts = collections.Counter()
    errors = collections.Counter()
    error_samples = {}
    masters = collections.OrderedDict()
    stopped_by = "deadline"
    n = args.start
    with open(args.log, "a", encoding="utf-8") as log:
        while time.monotonic() < deadline:
            if os.path.exists(args.stop_file):
                stopped_by = "stop-file"
                break
            key, value = "k:%d" % n, "%s:%d" % (args.run, n)
            n += 1
            counts["attempts"] += 1
            try:
                pipe = master.pipeline(transaction=False)
                pipe.set(key, value)
                if args.wait_ms > 0:
                    pipe.execute_command("WAIT", 1, args.wait_ms)
                replies = pipe.execute()
                replicas = replies[1] if args.wait_ms > 0 else None
            except redis.RedisError as exc:
                errors[error_kind(exc)] += 1
                error_samples.setdefault(error_kind(exc), " ".join(str(exc).split())[:160])
                master.connection_pool.disconnect()
                time.sleep(args.interval_ms / 1000.0)
                continue
            if replicas is not None and int(replicas) < 1:
                # Written, but no replica has it: not acknowledged. A master without replicas
                # is likely an old one; ask the Sentinels again.
                counts["not_acknowledged"] += 1
                master.connection_pool.disconnect()
            else:
                now = time.time()
                where = args.address or "%s:%s" % master.connection_pool.master_address
                log.write("%s %.6f %s\n" % (key, now, where))
                log.flush()
                counts["acknowledged"] += 1
                seen = masters.setdefault(where, dict(address=where, acknowledged=0, first=now))
                seen["acknowledged"] += 1
                seen["last"] = now
            time.sleep(args.interval_ms / 1000.0)
    summary = dict(run=args.run, first_key=args.start, next_key=n, stopped_by=stopped_by,
                   errors=dict(errors), error_samples=error_samples, masters=list(masters.values()), **counts)
    summary.setdefault("acknowledged", 0)
    print(json.dumps(summary, sort_keys=True))
    return 0


def read_log(path):
    """[(key, time, master)] of the complete lines of a writer's log."""
    entries = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break  # a line the writer is still writing
            key, stamp, where = line.split()
            entries.append((key, float(stamp), where))
    return entries


def check(args):
    entries = read_log(args.log) if os.path.exists(args.log) else []
    host, port = address(args.master)
    client = redis.Redis(host=host, port=port, username=os.environ.get("REDIS_USERNAME") or None, password=os.environ.get("REDIS_PASSWORD") or None,
                         socket_timeout=5.0, decode_responses=True, retry=no_retry(), **tls_options())
    role = client.info("replication").get("role")
    missing, wrong = [], []
    for start in range(0, len(entries), CHUNK):
        chunk = entries[start:start + CHUNK]
        values = client.mget([key for key, dummy, dummy in chunk])
        for (key, dummy, dummy), value in zip(chunk, values):
            if value is None:
                missing.append(key)
            elif args.run and value != "%s:%s" % (args.run, key.split(":", 1)[1]):
                wrong.append(key)
    by_master = collections.Counter(where for dummy, dummy, where in entries)
    # What a client saw: the longest time without an acknowledged write, and when it began.
    stamps = sorted(stamp for dummy, stamp, dummy in entries)
    gaps = [(later - earlier, earlier) for earlier, later in zip(stamps, stamps[1:])]
    longest = max(gaps) if gaps else (0.0, None)
    result = dict(master=args.master, master_role=role, acknowledged=len(entries),
                  longest_gap_s=round(longest[0], 3), longest_gap_from=longest[1],
                  acknowledged_by_master=dict(by_master), missing=len(missing), missing_keys=missing[:20],
                  wrong_value=len(wrong), wrong_value_keys=wrong[:20])
    print(json.dumps(result, sort_keys=True))
    return 0


def probe_old_master(args):
    host, port = address(args.address)
    client = redis.Redis(host=host, port=port, username=os.environ.get("REDIS_USERNAME") or None, password=os.environ.get("REDIS_PASSWORD") or None,
                         socket_timeout=1.0, socket_connect_timeout=1.0, decode_responses=True,
                         retry=no_retry(), **tls_options())
    start = time.monotonic()
    became_replica_after = first_answer_after = None
    accepted, attempts_as_master = [], 0
    refused = collections.Counter()
    roles = collections.Counter()
    n = 0
    while time.monotonic() - start < args.seconds:
        try:
            replication = client.info("replication")
        except redis.RedisError as exc:
            roles[error_kind(exc)] += 1
            time.sleep(0.2)
            continue
        answered_after = round(time.monotonic() - start, 3)
        role = replication.get("role")
        roles[role] += 1
        if first_answer_after is None:
            first_answer_after = answered_after
        if role == "slave" and "%s:%s" % (replication.get("master_host"), replication.get("master_port")) == args.new_master:
            # the same clock reading as the answer: "a replica from its first answer" compares equal values
            became_replica_after = answered_after
            break
        if role == "master":
            attempts_as_master += 1
        key = "probe:%d" % n
        n += 1
        try:
            client.set(key, "split-brain")
            accepted.append(dict(key=key, role=role, after=round(time.monotonic() - start, 3)))
        except redis.RedisError as exc:
            refused[error_kind(exc)] += 1
        time.sleep(0.2)
    print(json.dumps(dict(address=args.address, new_master=args.new_master, became_replica_after=became_replica_after,
                          first_answer_after=first_answer_after, write_attempts_as_master=attempts_as_master, accepted_writes=len(accepted),
                          accepted=accepted[:20], refused=dict(refused), observed=dict(roles)), sort_keys=True))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("write")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--sentinels")
    target.add_argument("--address")
    p.add_argument("--master-name", default="mymaster")
    p.add_argument("--log", required=True)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--seconds", type=float, default=180)
    p.add_argument("--interval-ms", type=float, default=5)
    p.add_argument("--wait-ms", type=int, default=1000)
    p.add_argument("--run", default="w")
    p.set_defaults(func=write)
    p = sub.add_parser("check")
    p.add_argument("--log", required=True)
    p.add_argument("--master", required=True)
    p.add_argument("--run", default="")
    p.set_defaults(func=check)
    p = sub.add_parser("probe-old-master")
    p.add_argument("--address", required=True)
    p.add_argument("--new-master", required=True)
    p.add_argument("--seconds", type=float, default=20)
    p.set_defaults(func=probe_old_master)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
