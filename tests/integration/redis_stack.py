# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A real Redis 8 master, two replicas and three Sentinels for the redis_snapshot tests.

Every node is the stack's own image (``psscript/redis:8``) started through its entrypoint, with the
settings roles/redis_sentinel/templates renders (``*.base.conf`` plus the first-start
``*.bootstrap.conf``; AOF on, RDB saves, ``min-replicas-to-write 1``, passwords on data nodes and
Sentinels). The module runs where it runs in production: in the backup image (``psscript/backup:17``)
on the same network, with ``docker run --rm``. Everything is named ``psscript-dev-redis-*`` on
172.29.0.0/16; host ports 49379-49381 (data nodes) and 49389-49391 (Sentinels) on 127.0.0.1 let the
tests look with redis-py from the host. Leftovers of an earlier run are removed first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time

import redis

from conftest import COLLECTION_ROOT, _chown_tree, docker, parse_result

PREFIX = 'psscript-dev-redis'
NETWORK = PREFIX + '-net'
SUBNET = '172.29.0.0/16'
REDIS_IMAGE = 'psscript/redis:8'
BACKUP_IMAGE = 'psscript/backup:17'
REDIS_PASSWORD = 'dev-redis-data-Aa1'
SENTINEL_PASSWORD = 'dev-redis-sentinel-Bb2'
MASTER_NAME = 'mymaster'
REDIS_UID = 998
BACKUP_IP = '172.29.0.50'
S3_IP = '172.29.0.60'

# name: (ip, port, host port)
DATA_NODES = {
    'redis-1': ('172.29.0.31', 6379, 49379),
    'redis-2': ('172.29.0.32', 6380, 49380),
    'redis-3': ('172.29.0.33', 6381, 49381),
}
SENTINELS = {
    'sentinel-1': ('172.29.0.41', 26379, 49389),
    'sentinel-2': ('172.29.0.42', 26380, 49390),
    'sentinel-3': ('172.29.0.43', 26381, 49391),
}
INITIAL_MASTER = 'redis-1'

REDIS_BASE = """\
# Rendered by tests/integration/redis_stack.py, after roles/redis_sentinel/templates/redis.base.conf.j2.
bind 0.0.0.0
port {port}
protected-mode no
dir /data
requirepass {password}
masterauth {password}
replica-announce-ip {ip}
replica-announce-port {port}
replica-read-only yes
replica-serve-stale-data yes
repl-diskless-sync yes
min-replicas-to-write 1
min-replicas-max-lag 10
appendonly yes
appendfsync everysec
save 3600 1 300 100 60 10000
dbfilename dump.rdb
maxmemory 256mb
maxmemory-policy noeviction
tcp-keepalive 60
"""

SENTINEL_BASE = """\
# Rendered by tests/integration/redis_stack.py, after roles/redis_sentinel/templates/sentinel.base.conf.j2.
bind 0.0.0.0
port {port}
protected-mode no
dir /tmp
requirepass {sentinel_password}
sentinel sentinel-pass {sentinel_password}
sentinel announce-ip {ip}
sentinel announce-port {port}
sentinel resolve-hostnames no
sentinel deny-scripts-reconfig yes
# psscript: quorum {name} 2
sentinel down-after-milliseconds {name} 5000
sentinel failover-timeout {name} 20000
sentinel parallel-syncs {name} 1
sentinel auth-pass {name} {password}
"""


def _names():
    return ['%s-%s' % (PREFIX, name) for name in list(DATA_NODES) + list(SENTINELS)]


def remove_everything():
    """Remove what an earlier run may have left: only names starting with psscript-dev-redis."""
    for name in docker('ps', '-a', '--format', '{{.Names}}', check=False).stdout.split():
        if name.startswith(PREFIX):
            docker('rm', '-f', '-v', name, check=False)
    docker('network', 'rm', NETWORK, check=False)
    for name in docker('volume', 'ls', '-q', check=False).stdout.split():
        if name.startswith(PREFIX):
            docker('volume', 'rm', '-f', name, check=False)


class RedisStack(object):
    """Handles on the set, from the host, and the module run in the backup image."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.backup_dir = os.path.join(workdir, 'backups')
        self.sentinel_addresses = ['%s:%d' % (ip, port) for ip, port, dummy in SENTINELS.values()]

    # -- the set, from the host ----------------------------------------------------------------
    def client(self, name, db=0):
        ip, port, host_port = DATA_NODES[name]
        return redis.Redis(host='127.0.0.1', port=host_port, password=REDIS_PASSWORD, db=db, socket_timeout=5,
                           decode_responses=True)

    def sentinel(self, name):
        ip, port, host_port = SENTINELS[name]
        return redis.Redis(host='127.0.0.1', port=host_port, password=SENTINEL_PASSWORD, socket_timeout=5,
                           decode_responses=True)

    def name_of(self, address):
        for name, (ip, port, dummy) in DATA_NODES.items():
            if address == '%s:%d' % (ip, port):
                return name
        raise AssertionError('no data node at %s' % address)

    def master_address(self):
        """The master every Sentinel names (asserts they agree)."""
        named = set()
        for name in SENTINELS:
            host, port = self.sentinel(name).execute_command('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME)
            named.add('%s:%s' % (host, port))
        assert len(named) == 1, named
        return named.pop()

    def master(self):
        return self.name_of(self.master_address())

    def replicas(self):
        master = self.master()
        return [name for name in DATA_NODES if name != master]

    def disable_save_rules(self):
        """``CONFIG SET save ""`` on every data node: from now on a node forks only when asked to.

        The rules (REDIS_BASE, as the role renders them) would otherwise start a BGSAVE by themselves
        whenever a node has had enough writes for long enough, racing the saves the tests and the
        module ask for and changing the fork counts the tests compare.
        """
        for name in DATA_NODES:
            self.client(name).config_set('save', '')

    def wait_settled(self, timeout=120):
        """Wait until every data node is settled (see ``unsettled``): nothing forks now or is about to."""
        seen = {}

        def settled():
            seen.clear()
            seen.update((name, unsettled(self.client(name))) for name in DATA_NODES)
            return not any(seen.values())
        try:
            wait_until(settled, timeout, 'every data node settled')
        except AssertionError as err:
            raise AssertionError('%s: %s' % (err, dict((name, why) for name, why in seen.items() if why)))

    def logs(self, name, tail='40'):
        proc = docker('logs', '--tail', tail, '%s-%s' % (PREFIX, name), check=False)
        return proc.stdout + proc.stderr

    # -- the module, run inside the backup image -----------------------------------------------
    def module(self, check_mode=False, ip=None, backups=None, volumes=(), env=None, **args):
        """Run redis_snapshot with ``args`` in the backup image; return the task result dict.

        ``ip``: the container's address on the network (a restore listens on it); ``backups``: the
        host directory mounted at /backups (default: the stack's); ``env``: environment variables.
        """
        cmd = self.module_command(check_mode, ip, backups, volumes, env, **args)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        return parse_result(proc)

    def start_module(self, name, ip=None, env=None, **args):
        """The module in a container named ``PREFIX-name``, in the background (a test may kill it):
        ``subprocess.Popen``; ``parse_result(proc)`` of its outcome after ``communicate()``."""
        cmd = self.module_command(False, ip, None, (), env, _name='%s-%s' % (PREFIX, name), **args)
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def module_command(self, check_mode, ip, backups, volumes, env, _name=None, **args):
        args.setdefault('backup_dir', '/backups')
        cmd = ['docker', 'run', '--rm', '--network', NETWORK]
        if _name:
            cmd += ['--name', _name]
        if ip:
            cmd += ['--ip', ip]
        cmd += ['-v', '%s:/usr/share/ansible/collections/ansible_collections/psscript/infra:ro' % COLLECTION_ROOT,
                '-v', '%s:/backups' % (backups or self.backup_dir)]
        for volume in volumes:
            cmd += ['-v', volume]
        environment = dict(ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_INVENTORY_UNPARSED_WARNING='0', ANSIBLE_NOCOLOR='1',
                           ANSIBLE_DEPRECATION_WARNINGS='0', ANSIBLE_PYTHON_INTERPRETER='/usr/bin/python3')
        environment.update(env or {})
        for key, value in sorted(environment.items()):
            cmd += ['-e', '%s=%s' % (key, value)]
        cmd += ['--entrypoint', 'ansible', BACKUP_IMAGE, 'localhost', '-m', 'psscript.infra.redis_snapshot',
                '-a', json.dumps(args)]
        if check_mode:
            cmd.append('--check')
        return cmd

    def set_args(self, **extra):
        """Connection arguments; passwords travel in the environment (REDIS_PASSWORD, REDIS_SENTINEL_PASSWORD)."""
        args = dict(sentinels=self.sentinel_addresses, master_name=MASTER_NAME)
        args.update(extra)
        return args

    @staticmethod
    def password_env():
        return dict(REDIS_PASSWORD=REDIS_PASSWORD, REDIS_SENTINEL_PASSWORD=SENTINEL_PASSWORD)


def _write(path, text, uid=REDIS_UID, mode=0o640):
    with open(path, 'w') as handle:
        handle.write(text)
    os.chmod(path, mode)
    os.chown(path, uid, uid)


def _start_node(stack, name, kind, ip, port, host_port):
    conf = os.path.join(stack.workdir, name)
    os.makedirs(os.path.join(conf, 'state'))
    fields = dict(ip=ip, port=port, password=REDIS_PASSWORD, sentinel_password=SENTINEL_PASSWORD, name=MASTER_NAME)
    master_ip, master_port, dummy = DATA_NODES[INITIAL_MASTER]
    if kind == 'server':
        _write(os.path.join(conf, 'redis.base.conf'), REDIS_BASE.format(**fields))
        bootstrap = '' if name == INITIAL_MASTER else 'replicaof %s %d\n' % (master_ip, master_port)
        _write(os.path.join(conf, 'redis.bootstrap.conf'), bootstrap)
    else:
        _write(os.path.join(conf, 'sentinel.base.conf'), SENTINEL_BASE.format(**fields))
        _write(os.path.join(conf, 'sentinel.bootstrap.conf'),
               'sentinel monitor %s %s %d 2\n' % (MASTER_NAME, master_ip, master_port))
    _chown_tree(conf, REDIS_UID)
    cmd = ['run', '-d', '--name', '%s-%s' % (PREFIX, name), '--hostname', name, '--network', NETWORK, '--ip', ip,
           '-p', '127.0.0.1:%d:%d' % (host_port, port), '-v', '%s:/etc/psscript' % conf]
    if kind == 'server':
        cmd += ['-v', '%s-%s-data:/data' % (PREFIX, name)]
    docker(*(cmd + [REDIS_IMAGE, kind]))


def wait_until(predicate, timeout, what, interval=0.5):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except redis.RedisError as err:
            last = err
        time.sleep(interval)
    raise AssertionError('timed out after %s s waiting for %s (%s)' % (timeout, what, last))


def unsettled(client):
    """Why this data node may fork now or soon, or has not got every write yet ([] when neither).

    A save (BGSAVE, or the RDB a replica's sync is fed from), an AOF rewrite running or scheduled,
    a dataset loading; on a replica, a link not up or a sync running; on a master, a replica not
    ``online`` (one waiting for its sync gets a fork after ``repl-diskless-sync-delay``) or behind the
    master's replication offset.
    """
    info = client.info()
    why = ['%s:%s' % (field, info.get(field)) for field in
           ('loading', 'rdb_bgsave_in_progress', 'aof_rewrite_in_progress', 'aof_rewrite_scheduled',
            'module_fork_in_progress') if str(info.get(field, 0)) != '0']
    if info['role'] == 'slave':
        if info.get('master_link_status') != 'up' or str(info.get('master_sync_in_progress')) != '0':
            why.append('link %s, sync in progress %s' % (info.get('master_link_status'), info.get('master_sync_in_progress')))
        return why
    replicas = [info['slave%d' % number] for number in range(int(info.get('connected_slaves', 0)))]
    if len(replicas) != len(DATA_NODES) - 1:
        why.append('%d replica(s) connected' % len(replicas))
    why += ['replica %s:%s %s at offset %s of %s' % (r['ip'], r['port'], r['state'], r['offset'], info['master_repl_offset'])
            for r in replicas if r['state'] != 'online' or int(r['offset']) < int(info['master_repl_offset'])]
    return why


def healthy(stack):
    """Every Sentinel names the initial master, knows 2 replicas and 2 other Sentinels, CKQUORUM ok."""
    for name in SENTINELS:
        sentinel = stack.sentinel(name)
        master = sentinel.execute_command('SENTINEL', 'MASTER', MASTER_NAME)
        fields = dict(zip(master[0::2], master[1::2])) if isinstance(master, list) else master
        if fields.get('num-slaves') != '2' or fields.get('num-other-sentinels') != '2':
            return False
        if 'ok' not in str(sentinel.execute_command('SENTINEL', 'CKQUORUM', MASTER_NAME)).lower():
            return False
    for name in DATA_NODES:
        info = stack.client(name).info('replication')
        if name != INITIAL_MASTER and info.get('master_link_status') != 'up':
            return False
    return True


def start():
    """Remove leftovers, start the set, wait until it is healthy; return a RedisStack."""
    for image in (REDIS_IMAGE, BACKUP_IMAGE):
        if docker('image', 'inspect', image, check=False).returncode != 0:
            raise AssertionError('image %s is not built: run `make images`' % image)
    remove_everything()
    workdir = tempfile.mkdtemp(prefix='psscript-dev-redis-')
    os.chmod(workdir, 0o755)
    stack = RedisStack(workdir)
    os.makedirs(stack.backup_dir, 0o750)
    docker('network', 'create', '--subnet', SUBNET, NETWORK)
    for name, (ip, port, host_port) in DATA_NODES.items():
        _start_node(stack, name, 'server', ip, port, host_port)
    for name, (ip, port, host_port) in SENTINELS.items():
        _start_node(stack, name, 'sentinel', ip, port, host_port)
    wait_until(lambda: healthy(stack), 90, 'a healthy Sentinel set')
    return stack


def stop(stack):
    remove_everything()
    if stack is not None:
        shutil.rmtree(stack.workdir, ignore_errors=True)
