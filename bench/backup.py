#!/usr/bin/env python3
"""Backup benchmark: pg_backup against raw pg_basebackup on a ~1 GiB pgbench database, in one run.

Own throwaway stack ``psscript-bench-backup`` (network 172.23.0.0/16, PostgreSQL 17 from
psscript/postgres:17 with WAL archiving and summarize_wal, published on 127.0.0.1:48432) and a
runner container of psscript/backup:17 (the image the module runs in), both removed at the end.

1. ``pgbench -i -s SCALE`` (70: ~1 GiB).
2. Full backup throughput: raw ``pg_basebackup -Fp -X none -c fast`` vs pg_backup ``type=full``
   (both plain), then raw ``pg_basebackup -Ft -X none -c fast --compress=client-zstd`` vs pg_backup
   ``compress=true`` (both zstd in the stream): each the wall time of one ``docker exec`` in the
   same runner, ``--repeat`` times, the order alternating (raw first, then pg_backup first), so
   both see the same load, each after a ``CHECKPOINT``, a ``sync`` and the backups on disk evicted
   from the page cache; the ratio raw time / pg_backup time of each repetition (= throughput
   ratio; goal >= 0.9) and their median; and the host's CPU during each run (busy and iowait
   shares, from /proc/stat), which says whether it waited for the disk or for the cores, and its
   page cache before the run.
3. Incremental size after changing ~1 % of the rows of pgbench_accounts, twice: clustered
   (one contiguous aid range) and scattered (every 100th aid); goal <= 5 % of the full.
4. Restore time of the full backup with pg_backup ``action=restore`` (hash check,
   pg_combinebackup, recovery to the backup's end, stop); goal <= 60 s.
5. WAL archive lag under ``pgbench -N`` load: the current WAL position is sampled twice a
   second with pg_stat_archiver; the lag of a sample is how long until the archive held that
   position (end of the last archived segment). That is the RPO if the primary's disk died.
   Goal <= 60 s. With no writes, archive_timeout (60 s) bounds it.

Prints the numbers and ratios; asserts nothing about timing.

Usage:  bench/backup.py [--scale 70] [--repeat 3] [--full-only] [--load-seconds 45] [--no-compressed] [--keep]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

_VENV_PYTHON = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv", "bin", "python")
if os.path.exists(_VENV_PYTHON) and os.path.realpath(sys.prefix) != os.path.realpath(os.path.dirname(os.path.dirname(_VENV_PYTHON))):
    os.execv(_VENV_PYTHON, [_VENV_PYTHON] + sys.argv)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The server configuration and the module-result parser of the integration tests: one copy.
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from conftest import PG_HBA_CONF, POSTGRESQL_CONF, parse_result  # noqa: E402

NAME = "psscript-bench-backup"
NETWORK = NAME + "-net"
SUBNET = "172.23.0.0/16"
PG = NAME + "-pg"
PG_IP = "172.23.0.10"
RUNNER = NAME + "-runner"
VOLUME = NAME + "-pgdata"
HOST_PORT = 48432
PG_IMAGE = "psscript/postgres:17"
BACKUP_IMAGE = "psscript/backup:17"
SUPERUSER_PASSWORD = "bench-backup-superuser-Aa1"
BACKUP_USER = "psscript_backup"
BACKUP_PASSWORD = "bench-backup-role-Bb2"
PG_UID = 999
# A 1 GiB load wants more than the tests' small settings; later lines win in postgresql.conf.
BENCH_CONF = """
shared_buffers = 256MB
max_wal_size = 4GB
checkpoint_timeout = 15min
"""


def docker(*args, check=True, timeout=3600, capture=True):
    proc = subprocess.run(["docker"] + list(args), capture_output=capture, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise SystemExit("docker %s failed (%s): %s %s" % (" ".join(args[:3]), proc.returncode, proc.stdout, proc.stderr))
    return proc


def cleanup(workdir=None):
    for name in (RUNNER, PG):
        docker("rm", "-f", "-v", name, check=False)
    docker("network", "rm", NETWORK, check=False)
    docker("volume", "rm", "-f", VOLUME, check=False)
    if workdir:
        # Files written by root in the containers: remove them from a container, then the tree.
        docker("run", "--rm", "-v", "%s:/w" % workdir, "--entrypoint", "sh", BACKUP_IMAGE, "-c", "rm -rf /w/*", check=False)
        shutil.rmtree(workdir, ignore_errors=True)


def build(workdir, scale):
    """A new bench stack in ``workdir`` (anything left by an earlier run removed first), with pgbench data at
    ``scale``."""
    cleanup()
    os.chmod(workdir, 0o755)
    start(workdir)
    docker("exec", "-u", "postgres", PG, "pgbench", "-i", "-q", "-s", str(scale), "postgres")
    psql("VACUUM ANALYZE")


def psql(query, db="postgres"):
    return docker("exec", "-u", "postgres", PG, "psql", "-XAt", "-d", db, "-c", query).stdout.strip()


def runner(*cmd, env=()):
    began = time.monotonic()
    proc = docker("exec", *["-e=" + item for item in env], RUNNER, *cmd, check=False)
    return time.monotonic() - began, proc


def module(collections_path=None, **args):
    """One pg_backup task in the runner; ``collections_path``: another copy of the collection than the mounted tree."""
    args.setdefault("backup_dir", "/backups/catalog")
    seconds, proc = runner("ansible", "localhost", "-m", "psscript.infra.pg_backup", "-a", json.dumps(args),
                           env=["ANSIBLE_COLLECTIONS_PATH=" + collections_path] if collections_path else ())
    result = parse_result(proc)
    if result.get("failed") or result["_rc"] != 0:
        raise SystemExit("pg_backup %s failed: %s" % (args.get("action"), result.get("msg")))
    return seconds, result


def backup_args(**extra):
    args = dict(action="backup", wal_archive_dir="/wal-archive", login_host=PG_IP, login_port=5432,
                login_user=BACKUP_USER, login_password=BACKUP_PASSWORD, wal_wait_timeout=300)
    args.update(extra)
    return args


def du(path):
    return int(docker("exec", RUNNER, "du", "-sb", path).stdout.split()[0])


def gib(value):
    return value / 1024.0 ** 3


def start(workdir):
    conf = os.path.join(workdir, "etc-psscript")
    os.makedirs(os.path.join(conf, "secrets"))
    with open(os.path.join(conf, "postgresql.conf"), "w") as handle:
        handle.write(POSTGRESQL_CONF + BENCH_CONF)
    with open(os.path.join(conf, "pg_hba.conf"), "w") as handle:
        handle.write(PG_HBA_CONF)
    with open(os.path.join(conf, "secrets", "postgres_password"), "w") as handle:
        handle.write(SUPERUSER_PASSWORD)
    os.chmod(os.path.join(conf, "secrets", "postgres_password"), 0o600)
    for dirpath, dirnames, filenames in os.walk(conf):
        os.chown(dirpath, PG_UID, PG_UID)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), PG_UID, PG_UID)
    wal = os.path.join(workdir, "wal-archive")
    backups = os.path.join(workdir, "backups")
    os.makedirs(wal, 0o700)
    os.chown(wal, PG_UID, PG_UID)
    os.makedirs(backups, 0o755)
    docker("network", "create", "--subnet", SUBNET, NETWORK)
    docker("volume", "create", VOLUME)
    docker("run", "-d", "--name", PG, "--network", NETWORK, "--ip", PG_IP, "-p", "127.0.0.1:%d:5432" % HOST_PORT,
           "-v", "%s:/etc/psscript:ro" % conf, "-v", "%s:/var/lib/postgresql/wal-archive" % wal,
           "-v", "%s:/var/lib/postgresql/data" % VOLUME, PG_IMAGE)
    docker("run", "-d", "--name", RUNNER, "--network", NETWORK,
           "-v", "%s:/usr/share/ansible/collections/ansible_collections/psscript/infra:ro" % ROOT,
           "-v", "%s:/backups" % backups, "-v", "%s:/wal-archive" % wal,
           "-e", "ANSIBLE_LOCALHOST_WARNING=0", "-e", "ANSIBLE_INVENTORY_UNPARSED_WARNING=0", "-e", "ANSIBLE_NOCOLOR=1",
           "-e", "ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3", "-e", "PGPASSWORD=" + BACKUP_PASSWORD,
           "--entrypoint", "sleep", BACKUP_IMAGE, "infinity")
    deadline = time.monotonic() + 120
    while docker("exec", "-u", "postgres", PG, "psql", "-XAtc", "SELECT 1", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise SystemExit("PostgreSQL did not start: %s" % docker("logs", PG, check=False).stderr)
        time.sleep(1)
    psql("CREATE ROLE %s LOGIN REPLICATION PASSWORD '%s'" % (BACKUP_USER, BACKUP_PASSWORD))
    psql("GRANT pg_read_all_settings, pg_read_all_stats TO %s" % BACKUP_USER)
    psql("GRANT EXECUTE ON FUNCTION pg_switch_wal() TO %s" % BACKUP_USER)
    runner("mkdir", "-p", "/backups/catalog", "/backups/raw", "/backups/restore")
    runner("chmod", "0755", "/backups/restore")


# Extra arguments of the raw pg_basebackup (--raw-arg), to tell apart what the module's own options cost.
RAW_EXTRA = []


def raw_basebackup(target, compressed):
    cmd = ["pg_basebackup", "-h", PG_IP, "-U", BACKUP_USER, "-w", "-D", target, "-X", "none", "-c", "fast"] + RAW_EXTRA
    cmd += ["-Ft", "--compress=client-zstd"] if compressed else ["-Fp"]
    seconds, proc = runner(*cmd)
    if proc.returncode != 0:
        raise SystemExit("pg_basebackup failed: %s" % proc.stderr)
    return seconds


def evict(top):
    """Drop the files under ``top`` (in the runner) from the page cache: they are clean after ``sync``."""
    seconds, proc = runner("python3", "-c", EVICT, top)
    if proc.returncode != 0:
        raise SystemExit("could not evict %s from the page cache: %s" % (top, proc.stderr))


EVICT = """
import os, sys
for dirpath, dirnames, filenames in os.walk(sys.argv[1]):
    for name in filenames:
        path = os.path.join(dirpath, name)
        if os.path.isfile(path) and not os.path.islink(path):
            fd = os.open(path, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
"""


def cached_gib():
    """The host's page cache (/proc/meminfo ``Cached``), GiB."""
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("Cached:"):
                return int(line.split()[1]) / 1024.0 ** 2
    return 0.0


def cpu_times():
    """The host's CPU time so far (/proc/stat): all of it, and idle and iowait."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    return sum(fields), fields[3], fields[4]


def cpu_share(before):
    """``(busy %, iowait %)`` of the host's CPU since ``before`` (cpu_times): whether a run waited for the disk or for
    the two cores."""
    total, idle, iowait = (b - a for a, b in zip(before, cpu_times()))
    total = max(total, 1)
    return 100.0 * (total - idle - iowait) / total, 100.0 * iowait / total


def module_overhead():
    """Wall time of a pg_backup run that does almost nothing (action=list): ansible's own start-up and
    the module's, paid once per task whatever the backup size; and of ``ansible -m ping`` (ansible's part)."""
    ping = min(runner("ansible", "localhost", "-m", "ping")[0] for dummy in range(2))
    return min(module(action="list")[0] for dummy in range(2)), ping


def full_pair(db_bytes, compressed, overhead, repeat):
    """``repeat`` alternating runs of raw pg_basebackup and pg_backup type=full (same format and compression); the
    module's backups but the last are removed as they come (disk space)."""
    label = "zstd" if compressed else "plain"
    rows = []
    for index in range(repeat):
        timed = {}
        for which in (("raw", "module") if index % 2 == 0 else ("module", "raw")):
            psql("CHECKPOINT")
            # The previous run's writes and the removal of the previous backup (5 GiB at --scale 350) reach the disk
            # here, not inside the next timed run: without it, whichever tool ran right after a removal paid for it.
            runner("sync")
            # And the backups on disk leave the page cache (pg_backup drops its own files, raw pg_basebackup's stay):
            # every run starts with the same page cache, not the one after raw with raw's whole copy in it.
            evict("/backups")
            timed[which + "_cached"] = cached_gib()
            before = cpu_times()
            if which == "raw":
                timed["raw"] = raw_basebackup("/backups/raw/%s" % label, compressed)
                timed["raw_cpu"] = cpu_share(before)
                timed["raw_bytes"] = du("/backups/raw/%s" % label)
            else:
                timed["module"], result = module(**backup_args(type="full", compress=compressed))
                timed["module_cpu"] = cpu_share(before)
        backup = result["backup"]
        row = dict(label=label, raw_seconds=timed["raw"], raw_bytes=timed["raw_bytes"], module_seconds=timed["module"],
                   module_inner=backup["durations"]["total"], module_bytes=backup["bytes"], backup_id=result["backup_id"],
                   durations=backup["durations"], ratio=timed["raw"] / timed["module"],
                   ratio_net=timed["raw"] / max(timed["module"] - overhead, 0.001),
                   ratio_inner=timed["raw"] / max(backup["durations"]["total"], 0.001),
                   first="raw" if index % 2 == 0 else "pg_backup")
        print("full %-5s #%d (%s first) raw pg_basebackup %6.1f s (%.2f GiB, %.0f MiB/s) | pg_backup %6.1f s (module %.1f s: "
              "%s; %.2f GiB, %.0f MiB/s) | throughput ratio %.2f (goal >= 0.9); %.2f without the fixed task start-up, "
              "%.2f of the module's own work; CPU busy/iowait %%: raw %.0f/%.0f, pg_backup %.0f/%.0f; page cache before: "
              "raw %.1f GiB, pg_backup %.1f GiB"
              % ((label, index + 1, row["first"], row["raw_seconds"], gib(row["raw_bytes"]), db_bytes / row["raw_seconds"] / 2 ** 20,
                 row["module_seconds"], backup["durations"]["total"],
                 ", ".join("%s %.1f" % kv for kv in sorted(backup["durations"].items()) if kv[0] != "total"),
                 gib(backup["bytes"]), db_bytes / row["module_seconds"] / 2 ** 20, row["ratio"], row["ratio_net"],
                 row["ratio_inner"]) + timed["raw_cpu"] + timed["module_cpu"] + (timed["raw_cached"], timed["module_cached"])),
              flush=True)
        # Both removals between the pairs, none between the two runs of a pair: the run that comes second never
        # follows a removal, whichever tool it is (removing the raw copy right after it made the module, when second,
        # pay for freeing 5 GiB at --scale 350).
        runner("rm", "-rf", "/backups/raw/%s" % label)
        if rows:
            runner("rm", "-rf", "/backups/catalog/%s" % rows[-1]["backup_id"])
        rows.append(row)
    summary = dict(rows[-1], ratio=statistics.median(r["ratio"] for r in rows),
                   ratio_net=statistics.median(r["ratio_net"] for r in rows),
                   ratio_inner=statistics.median(r["ratio_inner"] for r in rows), ratios=[r["ratio"] for r in rows])
    print("full %-5s median throughput ratio %.2f over %d alternating runs (%s); %.2f without the fixed task start-up, "
          "%.2f of the module's own work (raw / durations.total)"
          % (label, summary["ratio"], repeat, ", ".join("%.2f" % r for r in summary["ratios"]), summary["ratio_net"],
             summary["ratio_inner"]), flush=True)
    return summary


def incremental(full_bytes, where, label):
    rows = int(psql("SELECT count(*) FROM pgbench_accounts"))
    changed = psql("WITH u AS (UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE %s RETURNING 1) "
                   "SELECT count(*) FROM u" % where)
    psql("CHECKPOINT")
    seconds, result = module(**backup_args(type="incremental"))
    size = result["backup"]["bytes"]
    print("incremental %-9s %s of %d rows changed (%.2f %%): %.1f MiB = %.2f %% of the full (goal <= 5 %%), %.1f s"
          % (label, changed, rows, 100.0 * int(changed) / rows, size / 2 ** 20, 100.0 * size / full_bytes, seconds),
          flush=True)
    return dict(label=label, changed=int(changed), rows=rows, bytes=size, percent=100.0 * size / full_bytes, seconds=seconds)


def archive_lag(load_seconds):
    seg = int(psql("SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'"))
    load = subprocess.Popen(["docker", "exec", "-u", "postgres", PG, "pgbench", "-n", "-N", "-c", "4", "-j", "2",
                             "-T", str(load_seconds), "postgres"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    samples = []
    query = ("SELECT extract(epoch FROM clock_timestamp()), pg_current_wal_lsn() - '0/0'::pg_lsn, "
             "coalesce(last_archived_wal, '') FROM pg_stat_archiver")
    end = time.monotonic() + load_seconds + 90
    while time.monotonic() < end:
        when, lsn, last = psql(query).split("|")
        archived = 0
        if len(last) >= 24:
            archived = (int(last[8:16], 16) * (0x100000000 // seg) + int(last[16:24], 16) + 1) * seg
        samples.append((float(when), int(float(lsn)), archived))
        if load.poll() is not None and archived >= samples[-1][1] - seg and len(samples) > 4:
            break  # load over and the archive caught up to the current segment
        time.sleep(0.5)
    output = load.communicate()[0]
    lags, pending = [], []
    for i, (when, lsn, dummy) in enumerate(samples):
        done = next((t for t, dummy2, arch in samples[i:] if arch >= lsn), None)
        if done is None:
            pending.append(when)
        else:
            lags.append(done - when)
    tps = [line for line in output.splitlines() if line.startswith("tps")]
    written = (samples[-1][1] - samples[0][1]) / 2.0 ** 20 if samples else 0
    result = dict(samples=len(samples), measured=len(lags), p50=statistics.median(lags) if lags else None,
                  p95=sorted(lags)[int(0.95 * (len(lags) - 1))] if lags else None, max=max(lags) if lags else None,
                  wal_mib=written, tps=tps[0] if tps else output.strip()[-200:])
    print("WAL archive lag under pgbench -N -c 4 for %d s (%s; %.0f MiB of WAL): p50 %.1f s, p95 %.1f s, max %.1f s over "
          "%d samples (goal <= 60 s); %d late samples never archived within the window (the last, partial segment)"
          % (load_seconds, result["tps"], written, result["p50"] or -1, result["p95"] or -1, result["max"] or -1,
             len(lags), len(pending)), flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (70 is about 1 GiB)")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each full backup pair")
    parser.add_argument("--full-only", action="store_true", help="only the full backup pairs (no incrementals, restore, "
                        "archive lag)")
    parser.add_argument("--load-seconds", type=int, default=45)
    parser.add_argument("--no-compressed", action="store_true", help="skip the zstd pair")
    parser.add_argument("--raw-arg", action="append", default=[],
                        help="an extra argument of the raw pg_basebackup, e.g. --raw-arg=--manifest-checksums=SHA256 (repeatable)")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()
    RAW_EXTRA.extend(args.raw_arg)
    for image in (PG_IMAGE, BACKUP_IMAGE):
        if docker("image", "inspect", image, check=False).returncode != 0:
            raise SystemExit("image %s is not built: run `make images`" % image)
    began = time.monotonic()
    workdir = tempfile.mkdtemp(prefix=NAME + "-")
    try:
        step = time.monotonic()
        build(workdir, args.scale)
        db_bytes = int(psql("SELECT sum(pg_database_size(oid)) FROM pg_database"))
        print("pgbench -i -s %d: %.2f GiB in all databases, %.0f s" % (args.scale, gib(db_bytes), time.monotonic() - step),
              flush=True)
        overhead, ping = module_overhead()
        print("pg_backup task start-up (action=list on an empty catalog): %.1f s, of which ansible -m ping %.1f s"
              % (overhead, ping), flush=True)
        # The plain pair last: the incrementals build on the newest backup, the plain full.
        fulls = [] if args.no_compressed else [full_pair(db_bytes, True, overhead, args.repeat)]
        plain_full = full_pair(db_bytes, False, overhead, args.repeat)
        fulls.insert(0, plain_full)
        if args.full_only:
            print("\nsummary: full plain ratio %.2f (module's own work %.2f)%s (medians of %d alternating runs); bench "
                  "wall time %.0f s"
                  % (fulls[0]["ratio"], fulls[0]["ratio_inner"], ", zstd ratio %.2f (module's own work %.2f)"
                     % (fulls[1]["ratio"], fulls[1]["ratio_inner"]) if len(fulls) > 1 else "", args.repeat,
                     time.monotonic() - began))
            return 0
        rows = int(psql("SELECT count(*) FROM pgbench_accounts"))
        incs = [incremental(plain_full["module_bytes"], "aid BETWEEN %d AND %d" % (rows // 2, rows // 2 + rows // 100 - 1),
                            "clustered"),
                incremental(plain_full["module_bytes"], "aid % 100 = 7", "scattered")]
        seconds, result = module(action="restore", backup_id=plain_full["backup_id"], restore_dir="/backups/restore/full",
                                 wal_archive_dir="/wal-archive", check_query="SELECT count(*) FROM pgbench_accounts")
        print("restore of the full backup %s (%.2f GiB): %.1f s (goal <= 60 s), %s rows, %s"
              % (plain_full["backup_id"], gib(plain_full["module_bytes"]), seconds, result["check_result"],
                 result["recovery_stop"]), flush=True)
        runner("rm", "-rf", "/backups/restore/full")
        lag = archive_lag(args.load_seconds)
        print("\nsummary: full plain ratio %.2f%s; incremental %.2f %% (clustered) / %.2f %% (scattered) of the full; "
              "restore %.1f s; archive lag p95 %.1f s, max %.1f s; bench wall time %.0f s"
              % (fulls[0]["ratio"], ", zstd ratio %.2f" % fulls[1]["ratio"] if len(fulls) > 1 else "",
                 incs[0]["percent"], incs[1]["percent"], seconds, lag["p95"] or -1, lag["max"] or -1,
                 time.monotonic() - began))
    finally:
        if args.keep:
            print("kept: %s, %s, %s (remove with docker rm -f -v; workdir %s)" % (PG, RUNNER, NETWORK, workdir))
        else:
            cleanup(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
