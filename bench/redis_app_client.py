#!/usr/bin/env python3
"""The application's Redis client (redis-py) through the Sentinels with TLS, configured from app.env
(docs/MIGRATION.md shows this file). Writes a key on the master the Sentinels name, reads it back, and prints one
JSON line: the master, and the TLS of the connection to it.

    set -a; . ~/.config/psscript/psscript/app.env; set +a; python3 bench/redis_app_client.py
"""
import json
import os
import sys

from redis.sentinel import Sentinel


def tls_kwargs(env):
    """redis-py's TLS arguments from app.env ({} for plain TCP). REDIS_TLS=true: the Sentinels and the data nodes
    serve TLS only. Each certificate must chain to the stack CA (REDIS_TLS_CA) and name the address connected to
    (ssl_check_hostname; IP addresses included)."""
    if env.get("REDIS_TLS") != "true":
        return {}
    return dict(ssl=True, ssl_ca_certs=env["REDIS_TLS_CA"], ssl_cert_reqs="required", ssl_check_hostname=True)


def sentinel_client(env, sentinels=None, **options):
    """A Sentinel client as app.env describes it: TLS twice, for the Sentinels (sentinel_kwargs) and for the master
    they name. ``sentinels``: "host:port,..." (default REDIS_SENTINEL_NODES); ``options``: more connection arguments
    of the master's connections."""
    tls = tls_kwargs(env)
    nodes = [(item.rpartition(":")[0], int(item.rpartition(":")[2]))
             for item in (sentinels or env["REDIS_SENTINEL_NODES"]).split(",")]
    return Sentinel(nodes, sentinel_kwargs=dict(password=env["REDIS_SENTINEL_PASSWORD"], socket_timeout=5.0, **tls),
                    username=env["REDIS_USERNAME"], password=env["REDIS_PASSWORD"], socket_timeout=5.0,
                    **dict(tls, **options))


def main():
    env = os.environ
    sentinel = sentinel_client(env, decode_responses=True)
    master = sentinel.master_for(env["REDIS_SENTINEL_MASTER"])
    key = "app-client:%d" % os.getpid()
    master.set(key, "written-over-tls", ex=60)
    value = master.get(key)
    # Only to report it: the TLS of a connection of the pool.
    connection = master.connection_pool.get_connection()
    try:
        sock = connection._sock
        report = dict(ok=value == "written-over-tls", master="%s:%s" % sentinel.discover_master(env["REDIS_SENTINEL_MASTER"]),
                      encrypted=hasattr(sock, "version"), tls_version=sock.version() if hasattr(sock, "version") else None)
    finally:
        master.connection_pool.release(connection)
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # the example's output is one JSON line either way
        print(json.dumps(dict(ok=False, error="%s: %s" % (type(exc).__name__, exc))))
        sys.exit(1)
