#!/usr/bin/env python3
# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the operator playbooks with -vvv and prove no generated secret leaks.

    secret_leak_check.py --inventory INV --secrets FILE --stack NAME [--report FILE]

While the playbooks run (health, backup full and incremental, backups, restore plan, drill,
switchover), a sampler reads /proc/*/cmdline and /proc/*/environ of every process of this
machine (the stack's containers' processes included: they are this kernel's processes) as fast as
it can. Afterwards every file that other users can read in each of the stack's containers is
searched too. Any secret of the stack's secrets file found in a playbook's output, in a sample or
in such a file is a failure (exit 1), reported by secret name and place, never by value.

Secrets are compared as bytes, so a value found anywhere in an argv, an environment or a file is
found whatever surrounds it. The patterns reach the containers on stdin, into a 0600 file.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PLAYBOOKS = [
    ('backup full', ['playbooks/backup.yml', '-e', 'type=full']),
    ('backup incremental', ['playbooks/backup.yml', '-e', 'type=incremental']),
    ('backup redis', ['playbooks/backup.yml', '-e', 'type=redis']),
    ('backups', ['playbooks/backups.yml']),
    ('health', ['playbooks/health.yml']),
    ('restore plan', ['playbooks/restore.yml', '-e', 'service=postgres']),
    ('drill', ['playbooks/drill.yml']),
    ('switchover', ['playbooks/switchover.yml']),
]


def load_secrets(path):
    with open(path, encoding='utf-8') as handle:
        data = yaml.safe_load(handle) or {}
    return dict((name, str(value).encode()) for name, value in data.items() if value and len(str(value)) >= 8)


def find(secrets, blob):
    """Names of the secrets that occur in blob (bytes)."""
    return sorted(name for name, value in secrets.items() if value in blob)


class Sampler(threading.Thread):
    """Reads every process's argv and environment until stopped; keeps what matched."""

    def __init__(self, secrets):
        super().__init__(daemon=True)
        self.secrets = secrets
        self.stop = threading.Event()
        self.hits = {}
        self.samples = 0
        self.processes = set()

    def run(self):
        me = str(os.getpid())
        while not self.stop.is_set():
            for pid in os.listdir('/proc'):
                if not pid.isdigit() or pid == me:
                    continue
                for what in ('cmdline', 'environ'):
                    try:
                        with open('/proc/%s/%s' % (pid, what), 'rb') as handle:
                            blob = handle.read()
                    except OSError:  # the process ended meanwhile
                        continue
                    self.processes.add(pid)
                    for name in find(self.secrets, blob):
                        comm = _comm(pid)
                        self.hits.setdefault((name, what, comm), pid)
            self.samples += 1
            time.sleep(0.002)


def _comm(pid):
    try:
        with open('/proc/%s/comm' % pid, encoding='utf-8', errors='replace') as handle:
            return handle.read().strip()
    except OSError:
        return '?'


def run_playbooks(inventory, secrets, playbooks, env):
    problems, timings = [], {}
    for label, args in playbooks:
        cmd = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-vvv', '-i', inventory] + args
        started = time.monotonic()
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
        timings[label] = round(time.monotonic() - started, 1)
        if proc.returncode != 0:
            lines = proc.stdout.decode(errors='replace').splitlines()
            # What failed (the first failed task and what it printed), else the output's end.
            first = next((i for i, line in enumerate(lines) if line.startswith(('fatal: [', 'failed: ['))), None)
            shown = lines[first:first + 20] if first is not None else lines[-30:]
            problems.append('%s: ansible-playbook exited %s:\n  %s' % (label, proc.returncode, '\n  '.join(shown)))
        for name in find(secrets, proc.stdout):
            problems.append('%s: the -vvv output shows the secret %s' % (label, name))
    return problems, timings


def scan_containers(stack, secrets):
    """Files that other users can read, in every container of the stack, holding a secret."""
    problems = []
    names = subprocess.run(['docker', 'ps', '--filter', 'label=io.psscript.stack=%s' % stack, '--format', '{{.Names}}'],
                           stdout=subprocess.PIPE, check=True, text=True).stdout.split()
    if not names:
        return ['no running container has the label io.psscript.stack=%s: nothing was scanned' % stack], 0
    patterns = b'\n'.join(secrets.values()) + b'\n'
    script = ('umask 077; p=$(mktemp); cat > "$p"; '
              'find / -xdev \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o -type f -perm -004 -size -64M '
              '-print0 2>/dev/null | xargs -0 -r grep -l -F -f "$p" 2>/dev/null; rm -f "$p"')
    for name in names:
        proc = subprocess.run(['docker', 'exec', '-i', name, 'sh', '-c', script], input=patterns,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        for path in proc.stdout.decode(errors='replace').split():
            problems.append('container %s: %s is readable by other users and holds a secret' % (name, path))
    return problems, len(names)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--inventory', required=True)
    parser.add_argument('--secrets', required=True)
    parser.add_argument('--stack', required=True)
    parser.add_argument('--report')
    parser.add_argument('--only', action='append', help='run only this playbook label (repeatable)')
    opts = parser.parse_args(argv)

    secrets = load_secrets(opts.secrets)
    if len(secrets) < 5:
        print('the secrets file %s holds %d secrets: a check against so few cannot prove anything'
              % (opts.secrets, len(secrets)), file=sys.stderr)
        return 1
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0')
    leaked_env = find(secrets, b'\0'.join(('%s=%s' % kv).encode() for kv in env.items()))
    if leaked_env:
        print('this process environment already holds %s: fix the caller' % ', '.join(leaked_env), file=sys.stderr)
        return 1
    playbooks = [p for p in PLAYBOOKS if not opts.only or p[0] in opts.only]

    sampler = Sampler(secrets)
    sampler.start()
    problems, timings = run_playbooks(opts.inventory, secrets, playbooks, env)
    sampler.stop.set()
    sampler.join()
    for (name, what, comm), pid in sorted(sampler.hits.items()):
        problems.append('process %s (%s): /proc/%s/%s holds the secret %s' % (pid, comm, pid, what, name))
    file_problems, containers = scan_containers(opts.stack, secrets)
    problems += file_problems

    report = dict(ok=not problems, problems=problems, playbook_seconds=timings, samples=sampler.samples,
                  processes_seen=len(sampler.processes), containers_scanned=containers, secrets_checked=sorted(secrets))
    text = json.dumps(report, indent=2)
    if opts.report:
        with open(opts.report, 'w', encoding='utf-8') as handle:
            handle.write(text + '\n')
    print(text)
    return 0 if not problems else 1


if __name__ == '__main__':
    sys.exit(main())
