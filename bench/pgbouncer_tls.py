#!/usr/bin/env python3
"""What TLS costs a new connection through PgBouncer, measured in one run on the deployed stack.

pgbench -C (a new connection for every transaction, the worst case for TLS: one handshake each)
runs `SELECT 1` through two PgBouncers that differ only in the client side's TLS:
- the stack's own PgBouncer (client_tls_sslmode = require), the client with sslmode=verify-full and
  the stack CA, dialling the instance name its certificate carries;
- a throwaway copy of it (same image, same pgbouncer.ini, userlist and server side, so the same
  verify-full TLS towards PostgreSQL) with client_tls_sslmode = disable, the client with sslmode=disable.
The two alternate, round after round, so a change of the machine's load weighs on both; the ratio of
the medians is printed. Only the throwaway PgBouncer is created and removed; the stack is not changed.

pgbench runs in a throwaway container of the stack's own postgres image on the project network:
traffic goes only to the stack's own containers.

Usage: bench/pgbouncer_tls.py [--inventory inventories/local] [--seconds 10] [--clients 8] [--rounds 3]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _stack  # noqa: E402


def docker(*args, check=True, env=None):
    proc = subprocess.run(["docker"] + list(args), capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        sys.exit("docker %s failed: %s" % (" ".join(args[:3]), proc.stderr[-2000:]))
    return proc


def copy_config(source, dest):
    """The PgBouncer config directory, owners and modes kept, with the client side's TLS off."""
    shutil.copytree(source, dest, copy_function=shutil.copy2)
    for dirpath, dirnames, filenames in os.walk(source):
        for name in [""] + dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            os.lchown(os.path.join(dest, os.path.relpath(path, source)), st.st_uid, st.st_gid)
    ini = os.path.join(dest, "pgbouncer.ini")
    with open(ini, encoding="utf-8") as handle:
        text = handle.read()
    text, count = re.subn(r"(?m)^client_tls_sslmode\s*=.*$", "client_tls_sslmode = disable", text)
    if count != 1:
        sys.exit("the deployed pgbouncer.ini has no client_tls_sslmode line: is TLS deployed?")
    with open(ini, "w", encoding="utf-8") as handle:
        handle.write(text)


def pgbench(image, network, password, host, port, sslmode, tls_dir, clients, seconds):
    env = dict(os.environ, PGPASSWORD=password, PGSSLMODE=sslmode, PGSSLROOTCERT="/bench/tls/ca.crt")
    proc = docker("run", "--rm", "--network", network, "-e", "PGPASSWORD", "-e", "PGSSLMODE", "-e", "PGSSLROOTCERT",
                  "-v", "%s:/bench:ro" % tls_dir, "--entrypoint", "pgbench", image,
                  "-h", host, "-p", str(port), "-U", "psscript", "-C", "-n", "-c", str(clients), "-j", "2",
                  "-T", str(seconds), "-f", "/bench/select1.sql", "psscript", env=env, check=False)
    out = proc.stdout + proc.stderr
    match = re.search(r"tps = ([0-9.]+)", out)
    if proc.returncode != 0 or not match:
        sys.exit("pgbench (sslmode=%s) failed:\n%s" % (sslmode, out[-2000:]))
    failed = re.search(r"number of failed transactions: (\d+)", out)
    return float(match.group(1)), int(failed.group(1)) if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inventory", default="inventories/local")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    hostvars, groups = _stack.inventory(args.inventory)
    pgb_name = groups["pgbouncer"]["hosts"][0]
    pgb = hostvars[pgb_name]
    stack = pgb.get("stack_name", "psscript")
    network = "%s-network" % stack
    container = "%s-%s" % (stack, pgb_name)
    port = pgb.get("pgbouncer_port", 6432)
    password = _stack.secrets(stack, pgb.get("stack_secrets_file"))["postgres_app_password"]
    info = json.loads(docker("inspect", container).stdout)[0]
    config_dir = next(m["Source"] for m in info["Mounts"] if m["Destination"] == "/etc/pgbouncer")
    pgbouncer_image = info["Config"]["Image"]
    postgres_image = "psscript/postgres:17"
    plain = "%s-bench-pgbouncer-plain" % stack

    work = tempfile.mkdtemp(prefix="pgbouncer-tls-")
    try:
        copy_config(config_dir, os.path.join(work, "config"))
        os.makedirs(os.path.join(work, "bench", "tls"))
        shutil.copy(os.path.join(config_dir, "tls", "ca.crt"), os.path.join(work, "bench", "tls", "ca.crt"))
        with open(os.path.join(work, "bench", "select1.sql"), "w", encoding="utf-8") as handle:
            handle.write("SELECT 1;\n")
        os.chmod(work, 0o755)
        docker("rm", "-f", plain, check=False)
        # The deployed container's open-files limit (pgbouncer_nofile), as the role sets it.
        ulimits = ["--ulimit=%s=%d:%d" % (u["Name"], u["Soft"], u["Hard"]) for u in info["HostConfig"].get("Ulimits") or []]
        docker("run", "-d", "--name", plain, "--network", network, *ulimits,
               "-v", "%s:/etc/pgbouncer:ro" % os.path.join(work, "config"), pgbouncer_image)
        deadline = time.time() + 60
        while docker("exec", plain, "pg_isready", "-q", "-h", "/var/run/postgresql", "-p", str(port),
                     "-d", "pgbouncer", check=False).returncode != 0:
            if time.time() > deadline:
                sys.exit("the plain PgBouncer did not start: %s" % docker("logs", plain, check=False).stderr[-2000:])
            time.sleep(1)

        results = {"tls": [], "plain": []}
        failed = {"tls": 0, "plain": 0}
        for round_no in range(args.rounds):
            order = ["tls", "plain"] if round_no % 2 == 0 else ["plain", "tls"]
            for kind in order:
                host, mode = (pgb_name, "verify-full") if kind == "tls" else (plain, "disable")
                print("round %d: pgbench -C SELECT 1 through %s (sslmode=%s), %d s ..."
                      % (round_no + 1, host, mode, args.seconds), flush=True)
                value, bad = pgbench(postgres_image, network, password, host, port, mode,
                                     os.path.join(work, "bench"), args.clients, args.seconds)
                results[kind].append(value)
                failed[kind] += bad
    finally:
        docker("rm", "-f", plain, check=False)
        shutil.rmtree(work, ignore_errors=True)

    tls, plain_tps = statistics.median(results["tls"]), statistics.median(results["plain"])
    print("\n== pgbench -C (new connection per transaction) SELECT 1 through PgBouncer, %d clients, %d x %d s"
          % (args.clients, args.rounds, args.seconds))
    print("client TLS (verify-full) : %8.1f tps median  %s  (failed %d)"
          % (tls, " ".join("%.1f" % v for v in results["tls"]), failed["tls"]))
    print("client plain text        : %8.1f tps median  %s  (failed %d)"
          % (plain_tps, " ".join("%.1f" % v for v in results["plain"]), failed["plain"]))
    print("ratio TLS/plain          : %8.2f" % (tls / plain_tps))
    return 0 if not failed["tls"] and not failed["plain"] else 1


if __name__ == "__main__":
    sys.exit(main())
