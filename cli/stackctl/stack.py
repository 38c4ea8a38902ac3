# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The stack as the inventory describes it: instances (playbooks/instances.yml), secrets (the
collection's _secrets parser), the Docker engine of each instance, the Redis master (the Sentinel
majority, decided by the collection's _sentinel.decide_master, as the roles decide it)."""

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

from stackctl import REPO
from stackctl.args import StackError, UsageError, instances_command, playbook, resolve_instances, service_of
from stackctl.runner import collections_path, find_tool, run_quiet


def shared(name):
    """A module of the collection's module_utils (``_secrets``, ``_sentinel``): the one copy of that logic."""
    if name == '_secrets':
        try:
            import yaml  # noqa: F401  pylint: disable=unused-import  (the parser needs it)
        except ImportError:
            raise StackError('reading the stack secrets file needs PyYAML: run `make venv` (or `make up`) in %s' % REPO)
    path = collections_path()
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        return importlib.import_module('ansible_collections.psscript.infra.plugins.module_utils.%s' % name)
    except ImportError as exc:
        raise StackError('cannot import the collection from %s (%s): run `make collection` in %s' % (path, exc, REPO))


# ---------------------------------------------------------------- pure helpers

def docker_env(inst, environ=None):
    """Environment for the docker CLI that reaches the instance's engine (ssh:// for remote hosts)."""
    env = dict(os.environ if environ is None else environ)
    if inst.get('connection') in ('local', None, ''):
        return env
    host = inst.get('ansible_host') or inst.get('docker_host')
    user = inst.get('ansible_user')
    port = inst.get('ansible_port')
    env['DOCKER_HOST'] = 'ssh://%s%s%s' % (user + '@' if user else '', host, ':%s' % port if port else '')
    return env


def redis_cli_argv(inst, service, args):
    """(docker argv, secret name) for one redis-cli command: the password goes on its stdin (--askpass),
    so it is in no argv and no environment, neither here nor in the container. Data nodes: as the ACL user admin."""
    secret = REDIS_ADMIN_SECRET if service == 'redis' else 'redis_sentinel_password'
    return (['docker', 'exec', '-i', inst['container'], 'redis-cli', '-p', str(inst['port'])] + redis_tls(inst)
            + redis_login(service) + ['--askpass'] + list(args)), secret


# The data nodes' ACL user of the operator (stack_redis_users) and its secret; Sentinels: the default user.
REDIS_ADMIN_USER = 'admin'
# psql in the PgBouncer container logs in over TLS, checking PgBouncer's certificate against the stack CA there
# (the pgbouncer role's tls/ca.crt in its config directory, mounted at /etc/pgbouncer).
PGBOUNCER_TLS_ENV = ['-e', 'PGSSLMODE=verify-full', '-e', 'PGSSLROOTCERT=/etc/pgbouncer/tls/ca.crt']
REDIS_ADMIN_SECRET = 'redis_user_admin_password'


def redis_tls(inst):
    """redis-cli's TLS arguments in the instance's container (playbooks/instances.yml: [] when it serves plain TCP)."""
    return list(inst.get('redis_cli_tls') or [])


def redis_login(service):
    return ['--user', REDIS_ADMIN_USER] if service == 'redis' else []


def shell_argv(inst, service, command, interactive):
    """(docker argv, env additions) for `shell`: the secret goes in the environment, never in argv."""
    base = ['docker', 'exec', '-i'] + (['-t'] if interactive else [])
    container, port = inst['container'], str(inst['port'])
    if service == 'postgres':
        argv = base + ['-u', 'postgres', container, 'psql', '-X', '-p', port, '-d', inst['app_database']]
        env = {}
    elif service == 'pgbouncer':
        argv = base + ['-e', 'PGPASSWORD'] + PGBOUNCER_TLS_ENV + [container, 'psql', '-X', '-h', '127.0.0.1', '-p', port,
                       '-U', inst['app_user'], '-d', inst['app_database']]
        env = {'PGPASSWORD': 'postgres_app_password'}
    elif service in ('redis', 'sentinel'):
        argv = (base + ['-e', 'REDISCLI_AUTH', container, 'redis-cli', '-p', port] + redis_tls(inst) + redis_login(service)
                + ['--no-auth-warning'])
        env = {'REDISCLI_AUTH': REDIS_ADMIN_SECRET if service == 'redis' else 'redis_sentinel_password'}
    else:
        raise UsageError('shell works for postgres, pgbouncer, redis and sentinel, not %s' % service)
    if command:
        if service in ('postgres', 'pgbouncer'):
            argv += ['-v', 'ON_ERROR_STOP=1', '-c', ' '.join(command)]
        else:
            argv += list(command)
    return argv, env


def master_address_reply(text):
    """``host:port`` from redis-cli's answer to SENTINEL get-master-addr-by-name, or None."""
    parts = (text or '').split()
    return '%s:%s' % (parts[0], parts[1]) if len(parts) == 2 else None


def node_at(address, groups, instances):
    """The Redis data node (inventory host) at ``host:port``, or None."""
    for node in groups.get('redis', []):
        inst = instances[node]
        if '%s:%s' % (inst['address'], inst['port']) == address:
            return node
    return None


class Stack(object):
    """The inventory's instances, resolved once through playbooks/instances.yml."""

    def __init__(self, opts):
        self.opts = opts
        self._facts = None
        self._secrets = None
        self.workdir = tempfile.mkdtemp(prefix='stackctl-')

    def close(self):
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _cache_path(self):
        """Where the inventory's static facts are cached, keyed by everything they derive from.

        Names, addresses and ports come only from the inventory files, the stack role and the
        instances playbook, so a second call with none changed reuses them instead of running the
        playbook again (which takes seconds). Executable (dynamic) inventories are never cached."""
        inventory = os.path.abspath(self.opts['inventory'])
        digest = hashlib.sha256()
        for top in (inventory, os.path.join(REPO, 'roles', 'stack'), playbook('instances.yml')):
            if os.path.isfile(top):
                files = [top]
            else:
                files = sorted(os.path.join(d, f) for d, _, fs in os.walk(top, followlinks=True) for f in fs)
            for path in files:
                if os.access(path, os.X_OK) and path.startswith(inventory):
                    return None
                digest.update(path.encode() + b'\0')
                try:
                    with open(path, 'rb') as handle:
                        digest.update(handle.read())
                except OSError:
                    return None
        return os.path.join(REPO, '.cache', 'stackctl', digest.hexdigest()[:32] + '.json')

    def _cached_facts(self):
        path = self._cache_path()
        if path is None or not os.path.exists(path):
            return None
        try:
            with open(path, encoding='utf-8') as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def _store(self, facts):
        path = self._cache_path()
        if path is None:
            return
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = path + '.tmp'
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'w', encoding='utf-8') as handle:
            json.dump(facts, handle)
        os.replace(tmp, path)

    def facts(self, live=False):
        if self._facts is not None and (self._facts.get('live') or not live):
            return self._facts
        if not live:
            cached = self._cached_facts()
            if cached is not None:
                cached['live'] = False
                self._facts = cached
                return cached
        out = os.path.join(self.workdir, 'instances.json')
        rc, error = run_quiet(instances_command(self.opts, out, live, find_tool('ansible-playbook')))
        if rc != 0 or not os.path.exists(out):
            raise StackError('reading the inventory %s failed: %s' % (self.opts['inventory'], error))
        with open(out, encoding='utf-8') as handle:
            facts = json.load(handle)
        if facts.get('secrets_error'):
            raise StackError(facts['secrets_error'])
        facts['order'] = resolve_instances([], facts['groups'])
        facts['live'] = live
        self._facts = facts
        if not live:
            self._store(facts)
        return facts

    def secrets(self):
        """The stack's passwords, read as the stack_secrets module reads them."""
        if self._secrets is None:
            path = self.facts()['secrets_file']
            if not os.path.exists(path):
                raise StackError('the stack secrets file %s does not exist (deployed with this inventory?)' % path)
            parser = shared('_secrets')
            try:
                self._secrets = parser.load(path)
            except parser.SecretsError as exc:
                raise StackError(str(exc))
        return self._secrets

    def secret(self, name):
        """One password; a clear error when the file lacks it (or its value was emptied)."""
        secrets = self.secrets()
        if name not in secrets:
            raise StackError('the stack secrets file %s has no %s (an empty value counts as missing): '
                             '`stackctl start` generates it and deploys it' % (self.facts()['secrets_file'], name))
        return secrets[name]

    def instances(self, names):
        return resolve_instances(names, self.facts()['groups'])

    def instance(self, name):
        return self.facts()['instances'][name]

    def docker(self, name, argv, env_secrets=None):
        """Run the docker CLI against the instance's engine, attached to this terminal."""
        env = docker_env(self.instance(name))
        for var, secret in (env_secrets or {}).items():
            env[var] = self.secret(secret)
        return subprocess.call(argv, env=env)

    def redis_cli(self, name, args):
        inst = self.instance(name)
        argv, secret = redis_cli_argv(inst, service_of(name, self.facts()['groups']), args)
        proc = subprocess.run(argv, env=docker_env(inst), input=self.secret(secret) + '\n',
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise StackError('%s: %s' % (name, proc.stderr.strip() or 'docker exited %d' % proc.returncode))
        return proc.stdout

    def redis_master(self):
        """The data node a majority of the Sentinels names master (_sentinel.decide_master)."""
        facts = self.facts()
        replies = {}
        for sentinel in facts['groups'].get('sentinel', []):
            try:
                replies[sentinel] = master_address_reply(
                    self.redis_cli(sentinel, ['SENTINEL', 'get-master-addr-by-name', facts['master_name']]))
            except StackError:
                replies[sentinel] = None
        address, reason = shared('_sentinel').decide_master(replies)
        if address is None:
            raise StackError('no Sentinel majority names a master of %s%s: check `stackctl redis sentinel`'
                             % (facts['master_name'], ' (%s)' % reason if reason else ''))
        node = node_at(address, facts['groups'], facts['instances'])
        if node is None:
            raise StackError('the Sentinels name %s master of %s, which is no Redis instance of the inventory'
                             % (address, facts['master_name']))
        return node
