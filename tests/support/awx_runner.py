# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Run a playbook of this project as AWX runs a job: ansible-runner on a private data dir laid out like AWX's.

    python tests/support/awx_runner.py --inventory inventories/local playbooks/drill.yml
    python tests/support/awx_runner.py --inventory "$MOLECULE_EPHEMERAL_DIRECTORY/inventory" \\
        --env MOLECULE_EPHEMERAL_DIRECTORY --under "$MOLECULE_EPHEMERAL_DIRECTORY" playbooks/drill.yml

Run it with the venv's python: ansible-runner starts that venv's ansible-playbook, as the execution
environment's runner starts its own. The private data dir, a new directory under --under (0700: the
runner writes the job's environment into its artifacts), is kept for its artifacts:

    project/        the checkout: every file git tracks or would add, copied (AWX syncs the project here
                    and runs the playbook from it, so the project's ansible.cfg applies)
    collections/ansible_collections/psscript/infra -> project
                    the collection, found through ANSIBLE_COLLECTIONS_PATH as the execution environment's
                    installed copy is (this project is the collection)
    inventory/      a copy of the inventory directory, links followed (AWX writes the job's inventory here)
    env/envvars     ANSIBLE_COLLECTIONS_PATH, ANSIBLE_CONFIG, and the variables named with --env
                    (AWX: the credentials' and the job's environment)
    env/extravars   the -e values (AWX: the job's extra variables and survey answers)
    env/settings    the job timeout
    artifacts/<ident>/   what the runner writes: job_events/*.json, stdout, status, rc

The job sees no ANSIBLE_* or MOLECULE_* variable of the caller's environment: what configures Ansible
is what the data dir says. Prints one JSON object: status and rc of the run, the artifacts directory,
the stats the play published with set_stats (the artifact_data of the playbook_on_stats event, what AWX
shows as the job's artifacts), the recap counts, and each failed or unreachable task's host, name and
message. Exits 0 only when the runner's status is successful with rc 0; otherwise says why on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _copy_project(dest):
    """The working tree's files that git tracks or would add (not ignored ones: .venv, .cache)."""
    listed = subprocess.run(['git', '-C', REPO, 'ls-files', '-z', '-co', '--exclude-standard'],
                            capture_output=True, check=True).stdout.decode('utf-8')
    for name in filter(None, listed.split('\0')):
        source = os.path.join(REPO, name)
        if not os.path.lexists(source):  # tracked, deleted in the working tree
            continue
        target = os.path.join(dest, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)


def _extravars(values):
    """-e KEY=VALUE (a string) or -e JSON_OBJECT, as ansible-playbook reads them."""
    extravars = {}
    for value in values:
        if value.lstrip().startswith('{'):
            extravars.update(json.loads(value))
        elif '=' in value:
            key, _, text = value.partition('=')
            extravars[key] = text
        else:
            raise SystemExit('awx_runner: -e takes KEY=VALUE or a JSON object, not %r' % value)
    return extravars


def lay_out(under, inventory, env_names, extravars, timeout):
    """Create the private data dir and return its path."""
    os.makedirs(under, exist_ok=True)
    data_dir = tempfile.mkdtemp(prefix='awx-runner-', dir=under)
    project = os.path.join(data_dir, 'project')
    _copy_project(project)
    namespace = os.path.join(data_dir, 'collections', 'ansible_collections', 'psscript')
    os.makedirs(namespace)
    os.symlink(os.path.join('..', '..', '..', 'project'), os.path.join(namespace, 'infra'))
    shutil.copytree(inventory, os.path.join(data_dir, 'inventory'))
    missing = [name for name in env_names if name not in os.environ]
    if missing:
        raise SystemExit('awx_runner: --env names variables this environment does not have: %s' % ', '.join(missing))
    envvars = {name: os.environ[name] for name in env_names}
    envvars.update({
        'ANSIBLE_COLLECTIONS_PATH': os.path.join(data_dir, 'collections'),
        'ANSIBLE_CONFIG': os.path.join(project, 'ansible.cfg'),
    })
    env_dir = os.path.join(data_dir, 'env')
    os.makedirs(env_dir)
    for name, content in (('envvars', envvars), ('extravars', extravars), ('settings', {'job_timeout': timeout})):
        with open(os.path.join(env_dir, name), 'w', encoding='utf-8') as handle:
            json.dump(content, handle, indent=2)  # JSON is YAML, which the runner reads
    return data_dir


def _failures(events):
    failures = []
    for event in events:
        data = event.get('event_data', {})
        if event.get('event') == 'runner_on_unreachable' or (event.get('event') == 'runner_on_failed' and not data.get('ignore_errors')):
            result = data.get('res', {})
            failures.append({'host': data.get('host'), 'task': data.get('task'),
                             'msg': result.get('msg') or result.get('stderr') or result.get('reason') or event.get('stdout', '')})
    return failures


def run(data_dir, playbook):
    """Run the playbook with ansible-runner; the summary as a dict."""
    import ansible_runner

    # The job's environment: the runner seeds it with this process's, so Ansible's and molecule's
    # settings are dropped here and the data dir's env/envvars gives them; this venv's bin comes first.
    for name in [n for n in os.environ if n.startswith(('ANSIBLE_', 'MOLECULE_'))]:
        del os.environ[name]
    os.environ['PATH'] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', '')
    ident = os.path.splitext(os.path.basename(playbook))[0]
    runner = ansible_runner.run(private_data_dir=data_dir, playbook=playbook, ident=ident, quiet=True)
    events = list(runner.events)
    stats_event = next((e for e in events if e.get('event') == 'playbook_on_stats'), None)
    return {
        'status': runner.status,
        'rc': runner.rc,
        'playbook': playbook,
        'artifacts': os.path.join(data_dir, 'artifacts', ident),
        'stats': stats_event['event_data'].get('artifact_data') if stats_event else None,
        'recap': runner.stats,
        'failures': _failures(events),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('playbook', help="the playbook's path in the project, e.g. playbooks/drill.yml")
    parser.add_argument('--inventory', required=True, help='inventory directory (hosts file with group_vars/host_vars beside it)')
    parser.add_argument('--env', action='append', default=[], metavar='NAME', help="pass this variable of the caller's environment to the job")
    parser.add_argument('-e', '--extra-vars', action='append', default=[], metavar='KEY=VALUE|JSON', help='an extra variable of the job')
    parser.add_argument('--under', default=tempfile.gettempdir(), help='where the private data dir is created (default: the temporary directory)')
    parser.add_argument('--timeout', type=int, default=3600, help='job timeout in seconds (default 3600)')
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(REPO, args.playbook)):
        raise SystemExit('awx_runner: %s is not a playbook of the project %s' % (args.playbook, REPO))
    if not os.path.isdir(args.inventory):
        raise SystemExit('awx_runner: --inventory %s is not a directory' % args.inventory)
    data_dir = lay_out(os.path.abspath(args.under), args.inventory, args.env, _extravars(args.extra_vars), args.timeout)
    summary = run(data_dir, args.playbook)
    print(json.dumps(summary, indent=2, sort_keys=True))
    if summary['status'] != 'successful' or summary['rc'] != 0:
        why = '; '.join('%s: %s: %s' % (f['host'], f['task'], f['msg']) for f in summary['failures']) or 'no failed task reported'
        sys.stderr.write('awx_runner: %s ended %s with rc %s: %s (job output: %s)\n' % (
            args.playbook, summary['status'], summary['rc'], why, os.path.join(summary['artifacts'], 'stdout')))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
