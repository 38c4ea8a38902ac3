#!/usr/bin/env python3
"""Plain full backups interleaved: raw pg_basebackup, pg_backup from the working tree, and pg_backup as of another
commit, on one bench stack, in rounds whose order rotates.

A change to how pg_backup copies is worth a few per cent at most, and a disk's speed drifts by more than that from
one minute to the next: two bench runs one after the other cannot tell such a change from the drift. Here the three
commands run one after the other in every round, the order rotating (raw, tree, rev; then tree, rev, raw; ...), with
a ``CHECKPOINT`` and ``sync`` before each and the output removed after each, so each round compares the three under
the same disk and the medians over the rounds compare the versions.

The stack is bench/backup.py's (``psscript-bench-backup``); ``--reuse`` takes one left by ``bench/backup.py --keep``
(or by this script's ``--keep``) as it is, else it is built with ``pgbench -i -s SCALE``. The other version is
``git archive REV`` copied into the runner and chosen with ``ANSIBLE_COLLECTIONS_PATH``.

Prints each round and the medians (wall time of the whole task, and its ``basebackup`` step and tail); asserts
nothing about timing. With ``--job`` each pg_backup backup is followed, as in the backup role's job, by
``action=verify`` of it (with the WAL archive), timed apart, and the medians of the job (backup + verify) are
printed too: what a version saves in the backup and pays in the verify, or the reverse.

Usage:  bench/backup_ab.py --against REV [--scale 700] [--rounds 8] [--job] [--reuse] [--keep]
"""
import argparse
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile

import backup as bench  # bench/backup.py: the stack, the runner, the raw command

AGAINST_PATH = "/opt/against"
TAIL_STEPS = ("hash", "wal_wait", "sync")


def export(rev):
    """``git archive REV`` laid out as a collection path, as a tar stream for ``docker cp -``."""
    archive = subprocess.run(["git", "-C", bench.ROOT, "archive", "--format=tar", rev], check=True,
                             capture_output=True).stdout
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(archive)) as source, tarfile.open(fileobj=out, mode="w") as target:
        for member in source.getmembers():
            data = source.extractfile(member) if member.isfile() else None
            member.name = "ansible_collections/psscript/infra/" + member.name
            target.addfile(member, data)
    return out.getvalue()


def run_module(collections_path, job):
    """One plain full backup by the version at ``collections_path`` (None: the tree): its wall time and durations, and
    with ``job`` the wall time of its verify (else None)."""
    seconds, result = bench.module(collections_path, **bench.backup_args(type="full", compress=False))
    verify = None
    if job:
        verify, dummy = bench.module(collections_path, action="verify", backup_id=result["backup_id"],
                                     wal_archive_dir="/wal-archive")
    bench.runner("rm", "-rf", "/backups/catalog/%s" % result["backup_id"])
    return seconds, result["backup"]["durations"], verify


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--against", required=True, help="the commit to compare the working tree with (e.g. HEAD)")
    parser.add_argument("--scale", type=int, default=700, help="pgbench scale when the stack is built (700: 10 GiB)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--job", action="store_true", help="time each backup's verify too, as the backup job runs it")
    parser.add_argument("--reuse", action="store_true", help="use the kept bench stack as it is")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()
    workdir = None
    if not args.reuse:
        workdir = tempfile.mkdtemp(prefix=bench.NAME + "-")
        bench.build(workdir, args.scale)
    try:
        db_bytes = int(bench.psql("SELECT sum(pg_database_size(oid)) FROM pg_database"))
        bench.runner("rm", "-rf", AGAINST_PATH)
        bench.runner("mkdir", "-p", AGAINST_PATH)
        subprocess.run(["docker", "cp", "-", "%s:%s" % (bench.RUNNER, AGAINST_PATH)], input=export(args.against),
                       check=True, capture_output=True)
        names = ["raw", "tree", args.against]
        print("%.2f GiB in all databases; %d rounds of %s, the order rotating" % (bench.gib(db_bytes), args.rounds,
                                                                               ", ".join(names)), flush=True)
        times = dict((name, []) for name in names)
        steps = dict((name, []) for name in names[1:])
        verifies = dict((name, []) for name in names[1:])
        for index in range(args.rounds):
            order = names[index % 3:] + names[:index % 3]
            line = []
            for name in order:
                bench.psql("CHECKPOINT")
                bench.runner("sync")
                if name == "raw":
                    seconds = bench.raw_basebackup("/backups/raw/plain", False)
                    bench.runner("rm", "-rf", "/backups/raw/plain")
                    line.append("raw %.1f s" % seconds)
                else:
                    seconds, durations, verify = run_module(AGAINST_PATH if name == args.against else None, args.job)
                    tail = durations["total"] - durations["basebackup"]
                    steps[name].append((durations["basebackup"], tail))
                    # The tail's parts: hashes still to take, the archive wait, the last fsyncs.
                    line.append("%s %.1f s (basebackup %.1f, tail %.1f: %s)%s"
                                % (name, seconds, durations["basebackup"], tail,
                                   ", ".join("%s %.1f" % (key, durations[key]) for key in TAIL_STEPS if key in durations),
                                   "" if verify is None else " + verify %.1f s" % verify))
                    if verify is not None:
                        verifies[name].append(verify)
                times[name].append(seconds)
            print("round %d: %s" % (index + 1, " | ".join(line)), flush=True)
        raw = statistics.median(times["raw"])
        print("\nmedians over %d rounds: raw %.1f s" % (args.rounds, raw))
        for name in names[1:]:
            whole = statistics.median(times[name])
            print("  %-12s %.1f s, ratio raw/task %.3f (per round: %s); basebackup step %.1f s, tail %.1f s"
                  % (name, whole, raw / whole,
                     ", ".join("%.2f" % (r / m) for r, m in zip(times["raw"], times[name])),
                     statistics.median(s[0] for s in steps[name]), statistics.median(s[1] for s in steps[name])))
            if verifies[name]:
                jobs = [backup + verify for backup, verify in zip(times[name], verifies[name])]
                print("  %-12s verify %.1f s, job (backup + verify) %.1f s (per round: %s)"
                      % ("", statistics.median(verifies[name]), statistics.median(jobs),
                         ", ".join("%.1f" % j for j in jobs)))
    finally:
        if args.keep or args.reuse:
            print("kept: %s, %s, %s" % (bench.PG, bench.RUNNER, bench.NETWORK))
        else:
            bench.cleanup(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
