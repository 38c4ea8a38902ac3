#!/usr/bin/env python3
# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Capture the stack's bridge while it works, and prove nothing crossed it in clear (issue 10).

    capture_check.py --inventory INV --secrets FILE --stack NAME --app-env FILE
                     --sentinels 127.0.0.1:P,... --pgbouncer 127.0.0.1:P [--pcap FILE] [--seconds S]

tcpdump (Debian's) records every packet on the bridge of the stack's network while:
  - a Redis writer (redis-py through the Sentinels, TLS as app.env says) and a PostgreSQL writer (psycopg2
    through PgBouncer, verify-full) write marker values: one random token per run, in every value;
  - a replica of the Redis master resyncs in full (REPLICAOF NO ONE, then REPLICAOF its master again: its new
    replication ID is unknown to the master, which sends it a whole RDB; the master's sync_full must grow);
  - the operator takes a full PostgreSQL backup and a Redis snapshot (playbooks/backup.yml).
Then the capture is searched for the token and for every generated secret (as bytes: any place in any packet).
As a control that the capture sees what crosses the bridge, a plain-text canary is sent to a data node's TLS
port (it is refused, but its bytes cross the bridge): the canary must be found, or the search proves nothing.

Prints one JSON report; exits 1 when a marker or a secret is found, the canary is not, a step failed or the
capture holds too little traffic of any service. Secrets are reported by name, never by value.
"""

import argparse
import json
import os
import secrets as random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from secret_leak_check import load_secrets, find, run_playbooks  # noqa: E402  pylint: disable=wrong-import-position
# The application's redis-py client of docs/MIGRATION.md: the writer connects as an application does.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'bench'))
from redis_app_client import sentinel_client  # noqa: E402  pylint: disable=wrong-import-position

PLAYBOOKS = [
    ('backup full', ['playbooks/backup.yml', '-e', 'type=full']),
    ('backup redis', ['playbooks/backup.yml', '-e', 'type=redis']),
]


def read_env(path):
    env = {}
    with open(path, encoding='utf-8') as handle:
        for line in handle:
            if '=' in line and not line.startswith('#'):
                name, _, value = line.rstrip('\n').partition('=')
                env[name] = value
    return env


def bridge_of(network):
    """The host interface of a Docker bridge network: its bridge.name option, else br-<first 12 of its ID>."""
    info = json.loads(subprocess.run(['docker', 'network', 'inspect', network], stdout=subprocess.PIPE,
                                     check=True).stdout)[0]
    name = (info.get('Options') or {}).get('com.docker.network.bridge.name') or 'br-' + info['Id'][:12]
    if not os.path.exists('/sys/class/net/' + name):
        raise SystemExit('the bridge %s of network %s is not on this host' % (name, network))
    return name


def stack_network(stack):
    """({address on the network: container name}, the network) of the stack's running containers: the one Docker
    network all of them are on (the stack's own)."""
    names = subprocess.run(['docker', 'ps', '--filter', 'label=io.psscript.stack=%s' % stack, '--format', '{{.Names}}'],
                           stdout=subprocess.PIPE, check=True, text=True).stdout.split()
    networks = [json.loads(subprocess.run(['docker', 'inspect', '-f', '{{json .NetworkSettings.Networks}}', name],
                                          stdout=subprocess.PIPE, check=True).stdout) for name in names]
    shared = set.intersection(*[set(nets) for nets in networks]) if networks else set()
    if len(shared) != 1:
        raise SystemExit('the containers of stack %s share %d networks, not one: %s' % (stack, len(shared), sorted(shared)))
    network = shared.pop()
    return dict((nets[network]['IPAddress'], name) for name, nets in zip(names, networks)), network


class Capture(object):
    """tcpdump on an interface into a pcap file, from start() until stop()."""

    def __init__(self, interface, path):
        self.interface, self.path, self.proc = interface, path, None

    def start(self):
        self.proc = subprocess.Popen(['tcpdump', '-i', self.interface, '-n', '-s', '0', '-U', '-w', self.path],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        line = self.proc.stderr.readline().decode(errors='replace')  # "listening on br-...": capturing from now on
        if 'listening on' not in line:
            raise SystemExit('tcpdump did not start: %s %s' % (line, self.proc.stderr.read().decode(errors='replace')))

    def stop(self):
        time.sleep(0.5)  # the last packets out of the kernel's buffer
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(30)


def pcap_payloads(path):
    """({IPv4 address: TCP payload bytes sent or received}, the payloads joined) of an Ethernet pcap."""
    with open(path, 'rb') as handle:
        data = handle.read()
    order = '<' if struct.unpack('<I', data[:4])[0] in (0xa1b2c3d4, 0xa1b23c4d) else '>'
    offset, sizes, payloads = 24, {}, []
    while offset + 16 <= len(data):
        caplen = struct.unpack(order + 'IIII', data[offset:offset + 16])[2]
        frame = data[offset + 16:offset + 16 + caplen]
        offset += 16 + caplen
        if len(frame) < 34 or frame[12:14] != b'\x08\x00' or frame[23] != 6:  # IPv4, TCP
            continue
        tcp = frame[14 + (frame[14] & 0x0f) * 4:]
        if len(tcp) < 20:
            continue
        payload = tcp[(tcp[12] >> 4) * 4:]
        if payload:
            for address in (socket.inet_ntoa(frame[26:30]), socket.inet_ntoa(frame[30:34])):
                sizes[address] = sizes.get(address, 0) + len(payload)
            payloads.append(payload)
    return sizes, b'\0'.join(payloads)


def redis_writer(env, sentinels, token, stop, result):
    try:
        master = sentinel_client(env, sentinels).master_for(env['REDIS_SENTINEL_MASTER'])
        count = 0
        while not stop.is_set():
            pipe = master.pipeline(transaction=False)
            for _ in range(50):
                pipe.set('capture:%d' % count, '%s%08d' % (token, count), ex=600)
                count += 1
            pipe.execute()
            time.sleep(0.02)
        result['redis_written'] = count
        result['redis_read_back'] = master.get('capture:0') == ('%s%08d' % (token, 0)).encode()
    except Exception as exc:  # reported, and the check fails
        result['redis_error'] = '%s: %s' % (type(exc).__name__, exc)


def postgres_writer(env, pgbouncer, token, stop, result):
    import psycopg2  # the venv's (requirements.txt)

    host, _, port = pgbouncer.rpartition(':')
    count = 0
    try:
        conn = psycopg2.connect(host=host, port=int(port), dbname=env['DB_NAME'], user=env['DB_USER'],
                                password=env['DB_PASSWORD'], sslmode='verify-full', sslrootcert=env['DB_SSLROOTCERT'],
                                connect_timeout=10)
        conn.autocommit = True
        with conn, conn.cursor() as cur:
            cur.execute('CREATE TABLE IF NOT EXISTS capture_marker (v text)')
            while not stop.is_set() or count == 0:
                cur.executemany('INSERT INTO capture_marker (v) VALUES (%s)',
                                [('%s%08d' % (token, count + i),) for i in range(100)])
                count += 100
                time.sleep(0.05)
            cur.execute('SELECT count(*) FROM capture_marker WHERE v LIKE %s', (token + '%',))
            result['postgres_read_back'] = cur.fetchone()[0]
        conn.close()
        result['postgres_written'] = count
    except Exception as exc:  # reported, and the check fails
        result['postgres_error'] = '%s: %s' % (type(exc).__name__, exc)


def redis_cli(container, port, ca, user, password, *args):
    """redis-cli in the container; ca: the stack CA's path in the container (TLS), or None (plain TCP)."""
    argv = ['docker', 'exec', '-i', container, 'redis-cli', '-p', str(port)]
    if ca:
        argv += ['--tls', '--cacert', ca]
    argv += ['--user', user, '--askpass'] + list(args)
    proc = subprocess.run(argv, input=(password + '\n').encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError('%s: redis-cli %s: %s' % (container, args[0], proc.stderr.decode(errors='replace')))
    return proc.stdout.decode(errors='replace')


def info_field(text, name):
    for line in text.splitlines():
        if line.startswith(name + ':'):
            return line.split(':', 1)[1].strip()
    return None


def full_resync(env, sentinels, stack, admin_password, container_ca, result):
    """A replica of the master drops and rejoins with a new replication ID: the master must send it a full RDB."""
    sentinel = sentinel_client(env, sentinels)
    master_host, master_port = sentinel.discover_master(env['REDIS_SENTINEL_MASTER'])
    replicas = sentinel.discover_slaves(env['REDIS_SENTINEL_MASTER'])
    if not replicas:
        raise RuntimeError('the master has no replica to resync')
    by_address = stack_network(stack)[0]
    master, replica = by_address[master_host], by_address[replicas[0][0]]
    ca = container_ca if env.get('REDIS_TLS') == 'true' else None  # redis-cli --cacert, or plain TCP
    before = int(info_field(redis_cli(master, master_port, ca, 'admin', admin_password, 'INFO', 'stats'), 'sync_full'))
    redis_cli(replica, replicas[0][1], ca, 'admin', admin_password, 'REPLICAOF', 'NO', 'ONE')
    redis_cli(replica, replicas[0][1], ca, 'admin', admin_password, 'REPLICAOF', master_host, str(master_port))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = redis_cli(replica, replicas[0][1], ca, 'admin', admin_password, 'INFO', 'replication')
        if info_field(info, 'master_link_status') == 'up':
            break
        time.sleep(0.5)
    after = int(info_field(redis_cli(master, master_port, ca, 'admin', admin_password, 'INFO', 'stats'), 'sync_full'))
    result['full_resyncs'] = after - before
    result['resynced_replica'] = replica
    result['replica_link'] = info_field(info, 'master_link_status')


def plain_canary(address, port, canary):
    """Plain text to a TLS port: refused, but its bytes cross the bridge (the capture's control)."""
    with socket.create_connection((address, port), timeout=5) as sock:
        sock.sendall(b'*2\r\n$4\r\nECHO\r\n$%d\r\n%s\r\n' % (len(canary), canary))
        try:
            sock.recv(1024)
        except OSError:
            pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ('inventory', 'secrets', 'stack', 'app-env', 'sentinels', 'pgbouncer'):
        parser.add_argument('--' + name, required=True)
    parser.add_argument('--container-ca', required=True,
                        help="the stack CA's path inside the Redis containers (redis-cli --cacert of the resync)")
    parser.add_argument('--pcap', default=None)
    parser.add_argument('--seconds', type=float, default=5.0, help='write load before the resync and the backups')
    args = parser.parse_args()

    env = read_env(args.app_env)
    secrets = load_secrets(args.secrets)
    with open(args.secrets, encoding='utf-8') as handle:
        admin_password = str(yaml.safe_load(handle)['redis_user_admin_password'])  # the resync's REPLICAOF
    token = 'capmark' + random.token_hex(12)
    canary = ('capcanary' + random.token_hex(12)).encode()
    pcap = args.pcap or os.path.join(os.path.dirname(os.path.abspath(args.secrets)), 'capture.pcap')
    report, problems = {}, []

    by_address, network = stack_network(args.stack)
    capture = Capture(bridge_of(network), pcap)
    capture.start()
    stop, result = threading.Event(), {}
    writers = [threading.Thread(target=redis_writer, args=(env, args.sentinels, token, stop, result)),
               threading.Thread(target=postgres_writer, args=(env, args.pgbouncer, token, stop, result))]
    try:
        for writer in writers:
            writer.start()
        master = sentinel_client(env, args.sentinels).discover_master(env['REDIS_SENTINEL_MASTER'])
        plain_canary(master[0], int(master[1]), canary)
        time.sleep(args.seconds)
        try:
            full_resync(env, args.sentinels, args.stack, admin_password, args.container_ca, result)
        except Exception as exc:  # reported, and the check fails
            problems.append('full resync: %s: %s' % (type(exc).__name__, exc))
        playbook_problems, report['playbook_seconds'] = run_playbooks(args.inventory, secrets, PLAYBOOKS,
                                                                      dict(os.environ, ANSIBLE_NOCOLOR='1'))
        problems += playbook_problems
    finally:
        stop.set()
        for writer in writers:
            writer.join(120)
        capture.stop()

    sizes, payload = pcap_payloads(pcap)
    report.update(result)
    report['capture_bytes'] = len(payload)
    # The payload bytes each container sent or received: every one must have carried traffic for the search to mean
    # much (a service whose traffic bypassed the capture would be searched for nothing).
    report['payload_bytes'] = dict((name, sizes.get(address, 0)) for address, name in by_address.items())
    report['canary_found'] = canary in payload
    report['marker_found'] = token.encode() in payload
    report['secrets_found'] = find(secrets, payload)

    for name in ('redis_error', 'postgres_error'):
        if name in result:
            problems.append(result[name])
    if not result.get('redis_written') or not result.get('redis_read_back'):
        problems.append('the Redis writer wrote nothing, or its first marker is not on the master')
    if not result.get('postgres_read_back') or result['postgres_read_back'] < result.get('postgres_written', 1):
        problems.append('the PostgreSQL writer\'s markers are not all in the table')
    if result.get('full_resyncs', 0) < 1 or result.get('replica_link') != 'up':
        problems.append('no full resync of a replica was seen (sync_full did not grow, or its link is not up)')
    if not report['canary_found']:
        problems.append('the plain-text canary is not in the capture: it does not see the bridge, and proves nothing')
    if report['marker_found']:
        problems.append('a marker value crossed the bridge in clear')
    if report['secrets_found']:
        problems.append('secrets crossed the bridge in clear: %s' % ', '.join(report['secrets_found']))
    for name, size in sorted(report['payload_bytes'].items()):
        if size < 1000:
            problems.append('the capture holds only %d payload bytes of %s' % (size, name))
    report['problems'] = problems
    print(json.dumps(report, indent=1, sort_keys=True))
    return 1 if problems else 0



if __name__ == '__main__':
    sys.exit(main())
