# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The verbs, and main(): exit 0 on success, 1 when an operation fails (one line on stderr, the
cause), 2 for a wrong command line."""

import os
import subprocess
import sys
import threading

from stackctl import REPO
from stackctl.args import (PROGRESS_VERBS, StackError, UsageError, containers_command, parse_args,
                           playbook_command, service_of, usage_text)
from stackctl.runner import find_tool, run_playbook
from stackctl.stack import PGBOUNCER_TLS_ENV, Stack, docker_env, shell_argv

EXIT_USAGE = 2


def render_table(headers, rows):
    """Plain text table, columns as wide as their widest cell."""
    cells = [[str(h) for h in headers]] + [['-' if c is None or c == '' else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ['  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines) + '\n'


def status_rows(facts):
    """Rows of the status table from the instances playbook's result."""
    rows = []
    for name in facts['order']:
        inst = facts['instances'][name]
        role = inst.get('role') or ''
        role = {'slave': 'replica'}.get(role, role)
        address = inst['address'] + (':%s' % inst['port'] if inst.get('port') else '')
        rows.append([name, inst['container'], inst.get('state') or 'missing', inst.get('health') or '',
                     address, role, inst.get('packages') or ''])
    return rows


def one_instance(stack, name):
    """The instance a service name means for one command: the Redis master for ``redis``."""
    if name == 'redis' and stack.facts()['groups'].get('redis'):
        return stack.redis_master()
    return stack.instances([name])[0]


def cmd_status(stack, opts):
    facts = stack.facts(live=True)
    sys.stdout.write(render_table(['instance', 'container', 'state', 'health', 'address', 'role', 'packages'],
                                  status_rows(facts)))
    return 0


def cmd_logs(stack, opts):
    names = stack.instances([opts['service']])
    base = ['docker', 'logs', '--tail', str(opts['tail'])] + (['-f'] if opts['follow'] else [])
    if len(names) == 1:
        return stack.docker(names[0], base + [stack.instance(names[0])['container']])
    # Several instances: each line prefixed with its instance, followed side by side with -f.
    threads, codes = [], {}

    def follow(name):
        inst = stack.instance(name)
        proc = subprocess.Popen(base + [inst['container']], env=docker_env(inst), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            sys.stdout.write('%s | %s' % (name, line))
        codes[name] = proc.wait()

    for name in names:
        if opts['follow']:
            thread = threading.Thread(target=follow, args=(name,), daemon=True)
            thread.start()
            threads.append(thread)
        else:
            follow(name)
    for thread in threads:
        thread.join()
    return max(codes.values() or [0])


def cmd_shell(stack, opts):
    name = one_instance(stack, opts['service'])
    service = service_of(name, stack.facts()['groups'])
    interactive = not opts['command'] and sys.stdin.isatty() and sys.stdout.isatty()
    argv, env = shell_argv(stack.instance(name), service, opts['command'], interactive)
    return stack.docker(name, argv, env)


def cmd_pgbouncer(stack, opts):
    name = stack.instances(['pgbouncer'])[0]
    inst = stack.instance(name)
    argv = ['docker', 'exec', '-i', '-e', 'PGPASSWORD'] + PGBOUNCER_TLS_ENV + [inst['container'], 'psql', '-X', '-h', '127.0.0.1',
            '-p', str(inst['port']), '-U', inst['stats_user'], '-d', 'pgbouncer', '-c', 'SHOW %s' % opts['view'].upper()]
    return stack.docker(name, argv, {'PGPASSWORD': 'pgbouncer_stats_password'})


def cmd_redis(stack, opts):
    facts = stack.facts()
    view = opts['view']
    if view == 'info':
        targets, args = [stack.redis_master()], ['INFO']
    elif view == 'replication':
        targets, args = facts['groups'].get('redis', []), ['INFO', 'replication']
    else:
        targets, args = facts['groups'].get('sentinel', []), ['INFO', 'sentinel']
    rc = 0
    for name in targets:
        sys.stdout.write('== %s (%s)\n' % (name, facts['instances'][name]['container']))
        try:
            sys.stdout.write(stack.redis_cli(name, args).replace('\r\n', '\n'))
        except StackError as exc:
            sys.stdout.write('unreachable: %s\n' % exc)
            rc = 1
    return rc


def cmd_containers(stack, opts):
    instances = stack.instances(opts.get('services') or [])
    if opts['verb'] == 'stop':
        instances = list(reversed(instances))
    return run_playbook(containers_command(opts, instances, find_tool('ansible-playbook')), progress=True,
                        verbose=opts['verbose'])


def run_verb_playbook(opts, **changes):
    argv = playbook_command(dict(opts, **changes), find_tool('ansible-playbook'))
    if not os.path.exists(argv[3]):
        raise StackError('%s not found: this collection has no playbook for %r yet' % (argv[3], opts['verb']))
    return run_playbook(argv, progress=opts['verb'] in PROGRESS_VERBS and not changes.get('plan_only'),
                        verbose=opts['verbose'])


def cmd_restore(opts):
    if opts['yes']:
        return run_verb_playbook(opts, confirm=True)
    rc = run_verb_playbook(opts, plan_only=True)
    if rc != 0:
        return rc
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        sys.stdout.write('Plan only: nothing was changed. Re-run with --yes to restore.\n')
        return 0
    answer = input('Restore %s as planned above? This replaces live data. Type "yes": ' % opts['service'])
    if answer.strip() != 'yes':
        sys.stdout.write('Not confirmed: nothing was changed.\n')
        return 1
    return run_verb_playbook(opts, confirm=True)


HANDLERS = {'status': cmd_status, 'logs': cmd_logs, 'shell': cmd_shell, 'pgbouncer': cmd_pgbouncer,
            'redis': cmd_redis}


def dispatch(opts):
    verb = opts['verb']
    if verb == 'restore':
        return cmd_restore(opts)
    stack = Stack(opts)
    try:
        if verb in ('stop', 'restart') or (verb == 'start' and opts.get('services')):
            return cmd_containers(stack, opts)
        if verb in HANDLERS:
            return HANDLERS[verb](stack, opts)
        return run_verb_playbook(opts)
    finally:
        stack.close()


def main(argv=None):
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        sys.stderr.write('stackctl: %s\n' % exc)
        return EXIT_USAGE
    if opts['verb'] == 'help':
        sys.stdout.write(usage_text(opts.get('topic')))
        return 0
    inventory = opts['inventory']
    if not os.path.exists(inventory) and not os.path.exists(os.path.join(REPO, inventory)):
        sys.stderr.write('stackctl: inventory %s not found\n' % inventory)
        return EXIT_USAGE
    if not os.path.isabs(inventory) and not os.path.exists(inventory):
        inventory = os.path.join(REPO, inventory)
    opts['inventory'] = os.path.abspath(inventory)
    try:
        return dispatch(opts)
    except UsageError as exc:
        sys.stderr.write('stackctl: %s\n' % exc)
        return EXIT_USAGE
    except StackError as exc:
        sys.stderr.write('stackctl: %s\n' % exc)
        return 1
    except KeyboardInterrupt:
        return 130
