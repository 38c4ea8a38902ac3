# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The command line: verbs, their arguments, help, and which playbook each verb runs (pure)."""

import argparse
import json
import os

from stackctl import REPO

DEFAULT_INVENTORY = 'inventories/local'

# Services in start order (stop runs the reverse: Sentinels before the data nodes, so a stop
# of the whole stack never triggers a failover; the backup service before what it backs up).
SERVICES = ('postgres', 'pgbouncer', 'redis', 'sentinel', 'backup')
BACKUP_TYPES = {'postgres-full': 'full', 'postgres-incremental': 'incremental', 'redis': 'redis', 'all': 'all'}
RESTORE_SERVICES = ('postgres', 'redis')
PGBOUNCER_VIEWS = ('pools', 'stats', 'clients', 'databases')
REDIS_VIEWS = ('sentinel', 'info', 'replication')

# verb: (arguments, one line of help, details)
VERBS = {
    'start': ('[SERVICE...]', 'start the stack (deploy with playbooks/site.yml) or start the given services',
              'Without SERVICE: playbooks/site.yml, which creates, builds (images) and starts whatever is missing\n'
              'and changes nothing that is already right. With SERVICE: starts those stopped containers\n'
              '(playbooks/containers.yml).'),
    'stop': ('[SERVICE...]', 'stop the given services (default: all); containers and data stay',
             'Stops containers in reverse start order on the Docker host of each instance (playbooks/containers.yml).'),
    'restart': ('[SERVICE...]', 'restart the given services (default: all)',
                'Restarts containers in start order on the Docker host of each instance (playbooks/containers.yml).'),
    'status': ('', 'table of every instance: container, state, health, address, role, packages',
               'Reads the inventory with playbooks/instances.yml; the Redis role comes from each node, the\n'
               "packages (PACKAGE=VERSION of PostgreSQL, PgBouncer, Redis) from the label of the container's image."),
    'health': ('[--textfile PATH]', 'run every health check (playbooks/health.yml); non-zero when unhealthy',
               '--textfile PATH also writes psscript_* metrics for a node-exporter textfile collector.'),
    'logs': ('SERVICE [-f] [--tail N]', "the container's log (-f follows)", ''),
    'shell': ('SERVICE [-- CMD...]', 'psql (postgres, pgbouncer) or redis-cli (redis, sentinel) in the container',
              'postgres: psql as the postgres superuser over the container socket, application database.\n'
              'pgbouncer: psql through PgBouncer as the application user.\n'
              'redis: redis-cli on the master the Sentinel majority names (redis-N for one node); sentinel: redis-cli\n'
              'on a Sentinel. Passwords come from the stack secrets file, never the command line.\n'
              '-- CMD... runs one command and exits: SQL for psql (words joined), arguments for redis-cli.'),
    'backup': ('postgres-full|postgres-incremental|redis|all', 'take a backup (playbooks/backup.yml)', ''),
    'restore': ('postgres|redis [BACKUP_ID | --time T] [--rdb-file PATH] [--yes]',
                'restore a backup (playbooks/restore.yml)',
                'Shows the plan first. On a terminal it then asks for confirmation; --yes confirms\n'
                '(confirm=yes). Without a terminal and without --yes only the plan is shown.'),
    'backups': ('', 'the backup catalog of both services (playbooks/backups.yml)', ''),
    'pgbouncer': ('pools|stats|clients|databases', 'SHOW ... on the PgBouncer console as the stats user', ''),
    'redis': ('sentinel|info|replication', 'INFO sentinel on every Sentinel, INFO on the master, '
              'or INFO replication on every node', ''),
    'switchover': ('', 'planned Redis master switchover (playbooks/switchover.yml)', ''),
    'drill': ('', 'restore drill into scratch containers (playbooks/drill.yml)', ''),
    'images': ('[--refresh]', "build the stack's images where their inputs changed (playbooks/images.yml)",
               '--refresh (playbooks/refresh.yml) also rebuilds each image that has package updates, security updates\n'
               'included, then replaces the containers on an older image one at a time (playbooks/rollout.yml): the\n'
               'Redis master after a switchover.'),
    'help': ('[VERB]', 'this help, or the help of one verb', ''),
}
# Long operations: shown as a progress line of task names.
PROGRESS_VERBS = frozenset(('start', 'stop', 'restart', 'backup', 'restore', 'drill', 'images'))


class UsageError(Exception):
    """Wrong command line: the message says what is valid; exit 2."""


class StackError(Exception):
    """An operation failed: the message says why; exit 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError('%s\nusage: %s' % (message, self.format_usage().strip().replace('usage: ', '')))


def usage_text(verb=None):
    """Help for every verb, or for one."""
    if verb is not None:
        args, summary, details = VERBS[verb]
        text = 'usage: stackctl [-i INVENTORY] [-v] %s %s\n\n%s\n' % (verb, args, summary)
        return text + ('\n' + details + '\n' if details else '')
    lines = ['usage: stackctl [-i INVENTORY] [-v] [-e VAR=VALUE] VERB [ARGS]', '',
             'Options: -i/--inventory (default $STACKCTL_INVENTORY or %s), -v Ansible\'s full output,' % DEFAULT_INVENTORY,
             '         -e extra variables passed to the playbooks.', '', 'Verbs:']
    width = max(len(v) for v in VERBS)
    for verb, (args, summary, _details) in VERBS.items():
        lines.append('  %-*s  %s' % (width, verb, summary))
        if args:
            lines.append('  %-*s    %s %s' % (width, '', verb, args))
    lines += ['', 'SERVICE: postgres, pgbouncer, redis, sentinel, backup, or an instance name (redis-2).']
    return '\n'.join(lines) + '\n'


def unknown_verb_message(verb):
    return 'unknown verb %r; valid verbs: %s' % (verb, ', '.join(VERBS))


def _choice(value, choices, what):
    if value not in choices:
        raise UsageError('unknown %s %r; valid: %s' % (what, value, ', '.join(choices)))
    return value


def _verb_parser(verb):
    sub = _Parser(prog='stackctl %s' % verb, add_help=False)
    # Options are accepted after the verb too.
    sub.add_argument('-v', '--verbose', action='store_true')
    sub.add_argument('-e', '--extra-vars', action='append', default=[])
    if verb in ('start', 'stop', 'restart'):
        sub.add_argument('services', nargs='*')
    elif verb == 'health':
        sub.add_argument('--textfile')
    elif verb == 'logs':
        sub.add_argument('service')
        sub.add_argument('-f', '--follow', action='store_true')
        sub.add_argument('--tail', default='200')
    elif verb == 'shell':
        sub.add_argument('service')
    elif verb == 'backup':
        sub.add_argument('type')
    elif verb == 'restore':
        sub.add_argument('service')
        sub.add_argument('backup_id', nargs='?')
        sub.add_argument('--time', dest='target_time')
        sub.add_argument('--rdb-file')
        sub.add_argument('--yes', action='store_true')
    elif verb in ('pgbouncer', 'redis'):
        sub.add_argument('view')
    elif verb == 'images':
        sub.add_argument('--refresh', action='store_true')
    elif verb == 'help':
        sub.add_argument('topic', nargs='?')
    return sub


def _check(result):
    verb = result['verb']
    if verb == 'help' and result['topic'] is not None and result['topic'] not in VERBS:
        raise UsageError(unknown_verb_message(result['topic']))
    if verb == 'backup':
        _choice(result['type'], list(BACKUP_TYPES), 'backup type')
    if verb == 'restore':
        _choice(result['service'], RESTORE_SERVICES, 'restore service')
        if result['backup_id'] and result['target_time']:
            raise UsageError('give either BACKUP_ID or --time, not both')
    if verb == 'pgbouncer':
        _choice(result['view'], PGBOUNCER_VIEWS, 'pgbouncer view')
    if verb == 'redis':
        _choice(result['view'], REDIS_VIEWS, 'redis view')
    if verb == 'logs' and not str(result['tail']).isdigit() and result['tail'] != 'all':
        raise UsageError('--tail takes a number of lines or "all"')


def parse_args(argv, environ=None):
    """The command line as a dict: verb, its arguments, inventory, verbose, extra_vars."""
    environ = os.environ if environ is None else environ
    top = _Parser(prog='stackctl', add_help=False)
    top.add_argument('-i', '--inventory', default=environ.get('STACKCTL_INVENTORY') or DEFAULT_INVENTORY)
    top.add_argument('-v', '--verbose', action='store_true')
    top.add_argument('-e', '--extra-vars', action='append', default=[])
    top.add_argument('-h', '--help', action='store_true')
    top.add_argument('verb', nargs='?')
    top.add_argument('rest', nargs=argparse.REMAINDER)
    ns = top.parse_args(argv)
    result = dict(inventory=ns.inventory, verbose=ns.verbose, extra_vars=ns.extra_vars)
    if ns.help or ns.verb is None:
        result.update(verb='help', topic=None)
        return result
    verb = ns.verb
    if verb not in VERBS:
        raise UsageError(unknown_verb_message(verb))
    rest = list(ns.rest)
    command = None
    if verb == 'shell' and '--' in rest:
        command = rest[rest.index('--') + 1:]
        rest = rest[:rest.index('--')]
    args = vars(_verb_parser(verb).parse_args(rest))
    result['verbose'] = result['verbose'] or args.pop('verbose')
    result['extra_vars'] = result['extra_vars'] + args.pop('extra_vars')
    result.update(args)
    result['verb'] = verb
    if verb == 'shell':
        result['command'] = command
    _check(result)
    return result


def resolve_instances(names, groups):
    """Instances (inventory hosts) for service or instance names, in start order.

    groups maps each service (inventory group) to its instances. No name means every instance.
    An unknown name raises UsageError listing the valid ones.
    """
    known = [s for s in SERVICES if groups.get(s)]
    instances = [h for s in known for h in groups[s]]
    if not names:
        return instances
    wanted = set()
    for name in names:
        if name in known:
            wanted.update(groups[name])
        elif name in instances:
            wanted.add(name)
        else:
            raise UsageError('unknown service %r; valid services: %s; instances: %s'
                             % (name, ', '.join(known), ', '.join(instances)))
    return [h for h in instances if h in wanted]


def service_of(instance, groups):
    for service in SERVICES:
        if instance in groups.get(service, []):
            return service
    return None


def playbook(name):
    return os.path.join(REPO, 'playbooks', name)


def playbook_command(opts, ansible_playbook='ansible-playbook'):
    """argv of the playbook a verb runs, or None for verbs that talk to the containers directly
    (logs, shell, pgbouncer, redis) or need the inventory's instances first (status, and
    start/stop/restart of services: see containers_command)."""
    verb = opts['verb']
    extra = []
    if verb == 'start' and not opts.get('services'):
        book = 'site.yml'
    elif verb == 'health':
        book = 'health.yml'
        if opts.get('textfile'):
            extra += ['-e', 'health_textfile=%s' % os.path.abspath(opts['textfile'])]
    elif verb == 'switchover':
        book = 'switchover.yml'
    elif verb == 'backup':
        book = 'backup.yml'
        extra += ['-e', 'type=%s' % BACKUP_TYPES[opts['type']]]
    elif verb == 'backups':
        book = 'backups.yml'
    elif verb == 'drill':
        book = 'drill.yml'
    elif verb == 'images':
        book = 'refresh.yml' if opts.get('refresh') else 'images.yml'
    elif verb == 'restore':
        book = 'restore.yml'
        extra += ['-e', 'service=%s' % opts['service']]
        if opts.get('backup_id'):
            extra += ['-e', 'backup_id=%s' % opts['backup_id']]
        if opts.get('target_time'):
            extra += ['-e', json.dumps({'target_time': opts['target_time']})]
        if opts.get('rdb_file'):
            extra += ['-e', json.dumps({'rdb_file': os.path.abspath(opts['rdb_file'])})]
        if opts.get('confirm'):
            extra += ['-e', 'confirm=yes']
    else:
        return None
    return _with_extra_vars([ansible_playbook, '-i', opts['inventory'], playbook(book)], opts) + extra


def containers_command(opts, instances, ansible_playbook='ansible-playbook'):
    """argv of playbooks/containers.yml for start/stop/restart of ``instances`` (in that order)."""
    return _with_extra_vars([ansible_playbook, '-i', opts['inventory'], playbook('containers.yml'),
                             '-e', 'containers_action=%s' % opts['verb'],
                             '-e', 'containers_hosts=%s' % ','.join(instances)], opts)


def instances_command(opts, out, live, ansible_playbook='ansible-playbook'):
    """argv of playbooks/instances.yml writing the inventory's instances to ``out``."""
    return [ansible_playbook, '-i', opts['inventory'], playbook('instances.yml'),
            '-e', 'instances_file=%s' % out, '-e', 'instances_live=%s' % ('true' if live else 'false')]


def _with_extra_vars(argv, opts):
    for item in opts.get('extra_vars') or []:
        argv += ['-e', item]
    return argv
