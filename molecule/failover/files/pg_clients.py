#!/usr/bin/env python3
"""A small pgbench-like load through PgBouncer: a few concurrent psycopg2 clients, each
running short write transactions in a loop and reconnecting after any error, as an
application's connection pool would.

    pg_clients.py --host 127.0.0.1 --port 6432 --user psscript --dbname psscript
                  --status FILE --stop-file FILE [--clients 4] [--seconds 180]

Every 250 ms, FILE is replaced (atomically) by a JSON status: per client the number of
committed transactions, of errors, the unix time of the last commit and the last error.
The same JSON is printed when the clients stop (stop file, or after --seconds).
The password comes from the environment (PGPASSWORD).

After an error the outcome of the last COMMIT is unknown: the server may have committed it
before it died, without the acknowledgement reaching the client. So, like an application that
uses idempotent keys, a client re-reads its own next row number after reconnecting, and counts
the commits it found applied although never acknowledged ("in_doubt_applied").
"""
import argparse
import json
import os
import sys
import threading
import time

import psycopg2

SETUP = """
CREATE TABLE IF NOT EXISTS failover_load (
    client integer NOT NULL,
    n bigint NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client, n)
)
"""


class Client(threading.Thread):
    def __init__(self, number, args, stop):
        super().__init__(daemon=True)
        self.number = number
        self.args = args
        self.stop = stop
        self.state = dict(client=number, committed=0, errors=0, last_commit=None, last_error=None,
                          connects=0, in_doubt_applied=0)
        self.lock = threading.Lock()

    def snapshot(self):
        with self.lock:
            return dict(self.state)

    def connect(self):
        conn = psycopg2.connect(host=self.args.host, port=self.args.port, user=self.args.user,
                                dbname=self.args.dbname, connect_timeout=2,
                                application_name="failover-load-%d" % self.number)
        with self.lock:
            self.state["connects"] += 1
        return conn

    def run(self):
        conn = None
        n = 0
        in_doubt = False
        while not self.stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = self.connect()
                if in_doubt:
                    # Did the last COMMIT before the error reach the server?
                    with conn.cursor() as cur:
                        cur.execute("SELECT coalesce(max(n) + 1, 0) FROM failover_load WHERE client = %s", (self.number,))
                        next_n = cur.fetchone()[0]
                    conn.commit()
                    if next_n > n:
                        with self.lock:
                            self.state["in_doubt_applied"] += next_n - n
                        n = next_n
                    in_doubt = False
                with conn.cursor() as cur:
                    # One transaction: a write and a read, like pgbench's simple update.
                    cur.execute("INSERT INTO failover_load (client, n) VALUES (%s, %s)", (self.number, n))
                    cur.execute("SELECT count(*) FROM failover_load WHERE client = %s AND n > %s", (self.number, n - 10))
                    cur.fetchone()
                conn.commit()
                n += 1
                with self.lock:
                    self.state["committed"] += 1
                    self.state["last_commit"] = time.time()
            except psycopg2.Error as exc:
                in_doubt = True
                with self.lock:
                    self.state["errors"] += 1
                    self.state["last_error"] = " ".join(str(exc).split())[:200]
                if conn is not None:
                    try:
                        conn.close()
                    except psycopg2.Error:
                        pass
                conn = None
                self.stop.wait(0.2)
                continue
            self.stop.wait(self.args.interval_ms / 1000.0)
        if conn is not None:
            conn.close()


def write_status(path, status):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(status, handle, sort_keys=True)
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6432)
    parser.add_argument("--user", default="psscript")
    parser.add_argument("--dbname", default="psscript")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--interval-ms", type=float, default=5)
    parser.add_argument("--status", required=True)
    parser.add_argument("--stop-file", required=True)
    args = parser.parse_args(argv)

    setup = psycopg2.connect(host=args.host, port=args.port, user=args.user, dbname=args.dbname, connect_timeout=5)
    setup.autocommit = True
    with setup.cursor() as cur:
        cur.execute(SETUP)
    setup.close()

    stop = threading.Event()
    clients = [Client(number, args, stop) for number in range(args.clients)]
    for client in clients:
        client.start()
    started = time.time()
    deadline = time.monotonic() + args.seconds
    stopped_by = "deadline"
    while time.monotonic() < deadline:
        if os.path.exists(args.stop_file):
            stopped_by = "stop-file"
            break
        write_status(args.status, dict(started=started, now=time.time(), running=True,
                                       clients=[client.snapshot() for client in clients]))
        time.sleep(0.25)
    stop.set()
    for client in clients:
        client.join(10)
    status = dict(started=started, now=time.time(), running=False, stopped_by=stopped_by,
                  clients=[client.snapshot() for client in clients])
    write_status(args.status, status)
    print(json.dumps(status, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
