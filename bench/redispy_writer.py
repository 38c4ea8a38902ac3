#!/usr/bin/env python3
"""molecule/failover/files/sentinel_writer.py's `write`, with redis-py's default options or with the
settings docs/MIGRATION.md recommends instead of that writer's own timeouts; the twin of
bench/ioredis_writer.js.

    redispy_writer.py --options default|recommended  WRITE-ARGUMENTS

WRITE-ARGUMENTS are sentinel_writer.py's `write` arguments (--sentinels, --log, --stop-file,
--start, --run, --seconds, --interval-ms, --wait-ms): SET then WAIT on the same connection, every
acknowledged key logged as "<key> <unix time> <master host:port>", a JSON summary at the end.
Passwords come from the environment: REDIS_SENTINEL_PASSWORD, and REDIS_USERNAME with REDIS_PASSWORD.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "molecule", "failover", "files"))
import sentinel_writer  # noqa: E402

# Keep in step with docs/MIGRATION.md ("Client settings for failovers and switchovers").
OPTIONS = {
    "default": ({}, {}),
    "recommended": (
        # The Sentinels: a dead one must not hold up the discovery.
        dict(socket_timeout=0.5, socket_connect_timeout=0.5),
        dict(
            # A killed master's address answers nothing: give up connecting after 0.5 s.
            socket_connect_timeout=0.5,
            # Never wait for ever on a dead master; longer than a switchover's write pause.
            socket_timeout=5.0,
            # No retry=: redis-py 6.4 retries on the same connection without asking the Sentinels
            # again (redis/redis-py#3874), so it keeps reaching the demoted master. The application
            # retries the operation instead: a new attempt takes a connection that asks the Sentinels.
        ),
    ),
}


def sentinel_class(options):
    """sentinel_writer's Sentinel with ``options`` in place of the writer's own settings (it keeps
    the passwords the writer passes)."""
    sentinel_options, client_options = OPTIONS[options]

    class OptionSentinel(sentinel_writer.Sentinel):
        def __init__(self, sentinels, sentinel_kwargs=None, password=None, username=None, **ignored):
            # TLS (app.env's REDIS_TLS) is how the set is reached, not an option: kept for both.
            tls = sentinel_writer.tls_options()
            kwargs = dict(password=(sentinel_kwargs or {}).get("password"), **sentinel_options, **tls)
            super().__init__(sentinels, sentinel_kwargs=kwargs, password=password, username=username,
                             **client_options, **tls)

    return OptionSentinel


def main(argv):
    if len(argv) < 2 or argv[0] != "--options" or argv[1] not in OPTIONS:
        sys.stderr.write("usage: redispy_writer.py --options %s WRITE-ARGUMENTS\n" % "|".join(OPTIONS))
        return 2
    sentinel_writer.Sentinel = sentinel_class(argv[1])
    return sentinel_writer.main(["write"] + argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
