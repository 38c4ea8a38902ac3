#!/usr/bin/env python3
"""WAL shipping RPO: how long after a commit its WAL is in S3, with the stack's defaults.

Own throwaway stack ``psscript-bench-walrpo`` (network 172.21.0.0/16, PostgreSQL 17 from psscript/postgres:17
archiving like the postgres role, with its default ``postgres_archive_timeout``; moto's S3 server; a runner
of psscript/backup:17 running the backup container's WAL shipper, ``roles/backup/files/wal-shipper``, every
``backup_wal_ship_interval`` seconds, the role's default), all removed at the end. No backup runs.

A writer commits one row a second for ``--seconds``; after each commit it notes the WAL segment holding the
commit (``pg_walfile_name(pg_current_wal_lsn())``). A poller lists the bucket's WAL area every 0.25 s and
notes when each segment first appears. A row's RPO is that time minus its commit time: what a lost host
would lose if it died right before. Prints count, median, p95 and max; asserts nothing about timing.

Usage:  bench/wal_rpo.py [--seconds 180] [--keep]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

_VENV_PYTHON = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv", "bin", "python")
if os.path.exists(_VENV_PYTHON) and os.path.realpath(sys.prefix) != os.path.realpath(os.path.dirname(os.path.dirname(_VENV_PYTHON))):
    os.execv(_VENV_PYTHON, [_VENV_PYTHON] + sys.argv)

import yaml  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
import s3server  # noqa: E402

# The backup benchmark's throwaway stack (server, WAL archive, runner of the backup image), under other names.
import backup as stack  # noqa: E402

stack.NAME = "psscript-bench-walrpo"
stack.NETWORK = stack.NAME + "-net"
stack.SUBNET = "172.21.0.0/16"
stack.PG = stack.NAME + "-pg"
stack.PG_IP = "172.21.0.10"
stack.RUNNER = stack.NAME + "-runner"
stack.VOLUME = stack.NAME + "-pgdata"
stack.HOST_PORT = 48434
S3_NAME = stack.NAME + "-s3"
S3_IP = "172.21.0.20"
BUCKET = "psscript-bench-walrpo"
IN_COLLECTIONS = "/usr/share/ansible/collections"
SHIPPER = IN_COLLECTIONS + "/ansible_collections/psscript/infra/roles/backup/files/wal-shipper"


def role_default(role, name):
    with open(os.path.join(ROOT, "roles", role, "defaults", "main.yml")) as handle:
        return yaml.safe_load(handle)[name]


def write_in_runner(path, text):
    proc = subprocess.run(["docker", "exec", "-i", stack.RUNNER, "sh", "-c", 'cat > "$0"', path], input=text, text=True,
                          capture_output=True)
    if proc.returncode != 0:
        raise SystemExit("writing %s in the runner failed: %s" % (path, proc.stderr))


def start_shipper(interval, params):
    """The backup container's shipper with a config directory laid out like /etc/psscript."""
    conf = "/tmp/etc-psscript"
    stack.docker("exec", stack.RUNNER, "mkdir", "-p", conf + "/jobs", conf + "/secrets", "/backups/logs")
    write_in_runner(conf + "/jobs/settings.yml", "s3: true\nwal_ship_interval: %d\n" % interval)
    write_in_runner(conf + "/secrets/s3.json", json.dumps(params))
    stack.docker("exec", "-d", "-e", "ANSIBLE_COLLECTIONS_PATH=" + IN_COLLECTIONS, stack.RUNNER, "python3", SHIPPER,
                 "--config-dir", conf, "--archive", "/wal-archive", "--log", "/backups/logs/backup.log")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=180, help="how long the writer commits one row a second")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()
    archive_timeout = int(role_default("postgres", "postgres_archive_timeout"))
    interval = int(role_default("backup", "backup_wal_ship_interval"))
    stack.BENCH_CONF += "archive_timeout = %d\n" % archive_timeout  # later lines win in postgresql.conf
    stack.cleanup()
    s3server.stop(S3_NAME)
    workdir = tempfile.mkdtemp(prefix="psscript-bench-walrpo-")
    os.chmod(workdir, 0o755)
    try:
        stack.start(workdir)
        host_endpoint = s3server.start(S3_NAME, stack.NETWORK, S3_IP)
        import boto3
        client = boto3.client("s3", endpoint_url=host_endpoint, region_name=s3server.REGION,
                              aws_access_key_id=s3server.ACCESS_KEY, aws_secret_access_key=s3server.SECRET_KEY)
        client.create_bucket(Bucket=BUCKET)
        start_shipper(interval, dict(bucket=BUCKET, prefix="bench", endpoint_url=s3server.network_endpoint(S3_NAME),
                                     region=s3server.REGION, access_key=s3server.ACCESS_KEY,
                                     secret_key=s3server.SECRET_KEY))
        stack.psql("CREATE TABLE rpo (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
        # No CHECKPOINT first: the image's entrypoint reloads the server once it is out of recovery, which wakes
        # the checkpointer so archive_timeout holds from the start (#12 item 9; before, the first timed switch
        # came only after checkpoint_timeout). The image id says which entrypoint this run had.
        print("server image %s" % stack.docker("inspect", "-f", "{{.Image}}", stack.PG).stdout.strip()[:19], flush=True)

        seen = {}
        done = threading.Event()

        def poll():
            while not done.is_set():
                now = time.time()
                for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="bench/postgres/wal/"):
                    for item in page.get("Contents") or []:
                        seen.setdefault(item["Key"].rsplit("/", 1)[1], now)
                time.sleep(0.25)
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()

        import psycopg2
        conn = psycopg2.connect(host="127.0.0.1", port=stack.HOST_PORT, user="postgres",
                                password=stack.SUPERUSER_PASSWORD, dbname="postgres", connect_timeout=30)
        conn.autocommit = True
        cur = conn.cursor()
        rows = []
        print("archive_timeout=%d s, ship interval=%d s: one row a second for %d s" % (archive_timeout, interval,
                                                                                       args.seconds), flush=True)
        began = time.time()
        for row in range(1, args.seconds + 1):
            cur.execute("INSERT INTO rpo (id) VALUES (%s)", (row,))
            committed = time.time()
            cur.execute("SELECT pg_walfile_name(pg_current_wal_lsn())")
            rows.append((row, committed, cur.fetchone()[0]))
            time.sleep(max(0.0, began + row - time.time()))
        # The last rows' segment is closed by archive_timeout (no more writes needed); wait for it.
        wanted = set(segment for dummy, dummy2, segment in rows)
        deadline = time.time() + archive_timeout + 120
        while not wanted <= set(seen) and time.time() < deadline:
            time.sleep(0.5)
        done.set()
        missing = sorted(wanted - set(seen))
        rpo = sorted(seen[segment] - committed for dummy, committed, segment in rows if segment in seen)
        if not rpo:
            raise SystemExit("no row's WAL reached S3: see the shipper's log and the server's archiver")
        print("rows: %d, segments: %d, not in S3 after %d s: %s" % (len(rows), len(wanted), archive_timeout + 120,
                                                                    missing or "none"))
        print("RPO (commit -> its WAL segment in S3), seconds: median %.1f  p95 %.1f  max %.1f  min %.1f"
              % (statistics.median(rpo), rpo[int(len(rpo) * 0.95) - 1], rpo[-1], rpo[0]))
        log = stack.docker("exec", stack.RUNNER, "sh", "-c", "cat /backups/logs/backup.log 2>/dev/null", check=False)
        print("shipper failures logged: %d" % log.stdout.count("wal-ship FAILED"))
    finally:
        if not args.keep:
            s3server.stop(S3_NAME)
            stack.cleanup(workdir)


if __name__ == "__main__":
    main()
