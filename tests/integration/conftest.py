# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A real PostgreSQL 17 for the backup integration tests, and a way to run pg_backup next to it.

The server is the stack's own image (``psscript/postgres:17``) with a minimal configuration rendered
like roles/postgres/templates (WAL archiving through ``psscript-archive-wal`` into a bind-mounted
directory, ``summarize_wal = on``). The module runs where it runs in production: inside the backup
image (``psscript/backup:17``: PostgreSQL 17 client tools, zstd, ansible-core), started with
``docker run --rm`` on the test network, with the collection, the backup directory and the WAL
archive bind-mounted. Everything created here is named ``psscript-dev-backup-*`` and removed
before (leftovers of an earlier run) and after the session.

Run:  .venv/bin/python -m pytest tests/integration -q
(``pytest tests/unit`` never collects these: they live under tests/integration.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

# tests/integration -> repository root, which is the collection root.
COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PREFIX = 'psscript-dev-backup'
NETWORK = PREFIX + '-net'
SUBNET = '172.30.0.0/16'
PG_NAME = PREFIX + '-pg'
PG_IP = '172.30.0.10'
PG_VOLUME = PREFIX + '-pgdata'
PG_IMAGE = 'psscript/postgres:17'
# PSSCRIPT_TEST_IMAGE_BACKUP: another tag of the backup image built from this checkout (several checkouts share
# one engine, and `make images` in another moves psscript/backup:17 to its own build).
BACKUP_IMAGE = os.environ.get('PSSCRIPT_TEST_IMAGE_BACKUP') or 'psscript/backup:17'
HOST_PORT = 49432
SUPERUSER_PASSWORD = 'dev-backup-superuser-Aa1'
BACKUP_USER = 'psscript_backup'
BACKUP_PASSWORD = 'dev-backup-role-Bb2'
PG_UID = 999

# The S3 endpoint (moto's server, tests/support/s3server.py) on the test network.
S3_NAME = PREFIX + '-s3'
S3_IP = '172.30.0.20'
S3_BUCKET = 'psscript-dev-backup'
# A second server whose data directory a live restore replaces.
LIVE_NAME = PREFIX + '-live'
LIVE_IP = '172.30.0.11'

# Mount points inside the backup container.
IN_BACKUPS = '/backups'
IN_WAL = '/wal-archive'

POSTGRESQL_CONF = """\
# Rendered by tests/integration/conftest.py, after roles/postgres/templates/postgresql.conf.j2.
listen_addresses = '*'
port = 5432
max_connections = 50
password_encryption = scram-sha-256
unix_socket_directories = '/var/run/postgresql'
shared_buffers = 64MB
wal_level = replica
max_wal_senders = 5
max_replication_slots = 5
archive_mode = on
archive_command = '/usr/local/bin/psscript-archive-wal %p %f /var/lib/postgresql/wal-archive'
archive_timeout = 60
summarize_wal = on
wal_summary_keep_time = '10d'
logging_collector = off
log_destination = 'stderr'
log_line_prefix = '%m [%p] %q%u@%d '
log_checkpoints = on
"""

PG_HBA_CONF = """\
# TYPE  DATABASE     USER        ADDRESS     METHOD
local   all          postgres                peer
local   all          all                     scram-sha-256
host    all          all         0.0.0.0/0   scram-sha-256
host    replication  {user}      0.0.0.0/0   scram-sha-256
""".format(user=BACKUP_USER)


def docker(*args, check=True, timeout=600, input_text=None):
    proc = subprocess.run(['docker'] + list(args), capture_output=True, text=True, timeout=timeout, input=input_text)
    if check and proc.returncode != 0:
        raise AssertionError('docker %s failed (%s): %s %s' % (' '.join(args), proc.returncode, proc.stdout, proc.stderr))
    return proc


def remove_everything():
    """Remove what an earlier run may have left: only names starting with psscript-dev-backup."""
    names = docker('ps', '-a', '--format', '{{.Names}}', check=False).stdout.split()
    for name in names:
        if name.startswith(PREFIX):
            docker('rm', '-f', '-v', name, check=False)
    docker('network', 'rm', NETWORK, check=False)
    docker('volume', 'rm', '-f', PG_VOLUME, check=False)


def _chown_tree(path, uid):
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, uid, uid)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), uid, uid)


def flip_byte(path, offset):
    """Corrupt a backup file in place: invert one byte."""
    with open(path, 'r+b') as handle:
        handle.seek(offset)
        value = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([value[0] ^ 0xFF]))


def pytest_configure(config):
    config.addinivalue_line('markers', 'integration: needs Docker and the psscript images (tests/integration)')


class Stack(object):
    """Handles on the server and on the directories shared with the backup container."""

    prefix = PREFIX
    in_backups = IN_BACKUPS

    def __init__(self, workdir):
        self.workdir = workdir
        self.conf_dir = os.path.join(workdir, 'etc-psscript')
        self.wal_dir = os.path.join(workdir, 'wal-archive')
        self.backup_dir = os.path.join(workdir, 'backups')

    # -- SQL from the host, through the published port -----------------------------------------
    def connect(self, user='postgres', password=SUPERUSER_PASSWORD, dbname='postgres'):
        import psycopg2
        conn = psycopg2.connect(host='127.0.0.1', port=HOST_PORT, user=user, password=password, dbname=dbname,
                                connect_timeout=30)  # the shared machine can be very loaded
        conn.autocommit = True
        return conn

    def sql(self, query, dbname='postgres'):
        conn = self.connect(dbname=dbname)
        try:
            cur = conn.cursor()
            cur.execute(query)
            rows = cur.fetchall() if cur.description else None
            cur.close()
            return rows
        finally:
            conn.close()

    def pg_exec(self, *cmd):
        return docker('exec', PG_NAME, *cmd)

    def pg_logs(self):
        proc = docker('logs', PG_NAME, check=False)
        return proc.stdout + proc.stderr

    # -- the module, run inside the backup image -----------------------------------------------
    def module_command(self, args, check_mode=False, name=None, backups=None, wal=None, mounts=None, volumes=()):
        """``docker run`` of the backup image running ``ansible localhost -m psscript.infra.pg_backup``.

        ``backups``/``wal``: host directories mounted at /backups and /wal-archive (default: the
        stack's); ``mounts``: replaces the /backups bind mount (for example a small tmpfs);
        ``volumes``: more ``host:container`` bind mounts.
        """
        cmd = ['docker', 'run', '--rm', '--network', NETWORK]
        if name:
            cmd += ['--name', name]
        cmd += ['-v', '%s:/usr/share/ansible/collections/ansible_collections/psscript/infra:ro' % COLLECTION_ROOT]
        cmd += mounts if mounts is not None else ['-v', '%s:%s' % (backups or self.backup_dir, IN_BACKUPS)]
        cmd += [
            '-v', '%s:%s' % (wal or self.wal_dir, IN_WAL),
        ]
        for volume in volumes:
            cmd += ['-v', volume]
        cmd += [
            '-e', 'ANSIBLE_LOCALHOST_WARNING=0', '-e', 'ANSIBLE_INVENTORY_UNPARSED_WARNING=0',
            '-e', 'ANSIBLE_NOCOLOR=1', '-e', 'ANSIBLE_DEPRECATION_WARNINGS=0',
            '-e', 'ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3',
            '--entrypoint', 'ansible', BACKUP_IMAGE,
            'localhost', '-m', 'psscript.infra.pg_backup', '-a', json.dumps(args),
        ]
        if check_mode:
            cmd.append('--check')
        return cmd

    def module(self, check_mode=False, backups=None, wal=None, mounts=None, volumes=(), **args):
        """Run pg_backup with ``args`` in the backup image; return the task result dict."""
        args.setdefault('backup_dir', IN_BACKUPS)
        cmd = self.module_command(args, check_mode, backups=backups, wal=wal, mounts=mounts, volumes=volumes)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        return parse_result(proc)

    def start_module(self, name, backups=None, volumes=(), **args):
        """Start pg_backup in a named container in the background; return the Popen."""
        args.setdefault('backup_dir', IN_BACKUPS)
        cmd = self.module_command(args, name=name, backups=backups, volumes=volumes)
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    @staticmethod
    def finish_module(proc, timeout):
        """Wait for a start_module() run and return its task result."""
        out, err = proc.communicate(timeout=timeout)
        return parse_result(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))

    def new_backup_dir(self, name):
        path = os.path.join(self.workdir, name)
        os.makedirs(path, 0o750)
        return path

    def backup_args(self, **extra):
        args = dict(action='backup', wal_archive_dir=IN_WAL, login_host=PG_IP, login_port=5432,
                    login_user=BACKUP_USER, login_password=BACKUP_PASSWORD, connect_timeout=30)
        args.update(extra)
        return args


def parse_result(proc):
    """The task result from ansible's ad-hoc output ``localhost | SUCCESS => {...}``.

    The backup image has ansible-core only (no json callback); the minimal callback prints the
    result as JSON after ``=>``, and warnings on stderr: they are returned under ``_stderr``.
    """
    marker = proc.stdout.find('localhost | ')
    arrow = proc.stdout.find(' => ', marker) if marker >= 0 else -1
    if arrow >= 0:
        try:
            result, dummy = json.JSONDecoder().raw_decode(proc.stdout[arrow + 4:].lstrip())
        except ValueError:
            result = None
        if isinstance(result, dict):
            # The callback prints the status in the header (``FAILED!``) and drops the key.
            if proc.stdout[marker + len('localhost | '):arrow].startswith('FAILED'):
                result['failed'] = True
            result['_stderr'] = proc.stderr
            result['_rc'] = proc.returncode
            return result
    raise AssertionError('ansible did not return a JSON result (rc %s):\n%s\n%s' % (proc.returncode, proc.stdout, proc.stderr))


def _wait_ready(stack, timeout=90):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            stack.sql('SELECT 1')
            return
        except Exception as err:  # noqa: BLE001  (any error: keep waiting)
            last = err
            time.sleep(1)
    raise AssertionError('PostgreSQL did not become ready: %s\n%s' % (last, stack.pg_logs()))


@pytest.fixture(scope='session')
def stack():
    # A missing engine or image is a failure, not a skip: `make integration` builds the images first.
    if shutil.which('docker') is None or docker('info', check=False).returncode != 0:
        pytest.fail('no Docker engine answers: run scripts/docker-engine.sh')
    for image in (PG_IMAGE, BACKUP_IMAGE):
        if docker('image', 'inspect', image, check=False).returncode != 0:
            pytest.fail('image %s is not built: run `make images`' % image)
    remove_everything()
    workdir = tempfile.mkdtemp(prefix='psscript-dev-backup-')
    os.chmod(workdir, 0o755)
    stack = Stack(workdir)
    os.makedirs(os.path.join(stack.conf_dir, 'secrets'))
    with open(os.path.join(stack.conf_dir, 'postgresql.conf'), 'w') as handle:
        handle.write(POSTGRESQL_CONF)
    with open(os.path.join(stack.conf_dir, 'pg_hba.conf'), 'w') as handle:
        handle.write(PG_HBA_CONF)
    with open(os.path.join(stack.conf_dir, 'secrets', 'postgres_password'), 'w') as handle:
        handle.write(SUPERUSER_PASSWORD)
    os.chmod(os.path.join(stack.conf_dir, 'secrets', 'postgres_password'), 0o600)
    os.chmod(os.path.join(stack.conf_dir, 'secrets'), 0o700)
    _chown_tree(stack.conf_dir, PG_UID)
    os.makedirs(stack.wal_dir, 0o700)
    os.chown(stack.wal_dir, PG_UID, PG_UID)
    os.makedirs(stack.backup_dir, 0o750)
    try:
        docker('network', 'create', '--subnet', SUBNET, NETWORK)
        docker('volume', 'create', PG_VOLUME)
        docker('run', '-d', '--name', PG_NAME, '--network', NETWORK, '--ip', PG_IP,
               '-p', '127.0.0.1:%d:5432' % HOST_PORT,
               '-v', '%s:/etc/psscript:ro' % stack.conf_dir,
               '-v', '%s:/var/lib/postgresql/wal-archive' % stack.wal_dir,
               '-v', '%s:/var/lib/postgresql/data' % PG_VOLUME,
               PG_IMAGE)
        _wait_ready(stack)
        # The backup role as the postgres role creates it (bootstrap.sql.j2): REPLICATION, no superuser.
        stack.sql("CREATE ROLE %s LOGIN REPLICATION NOSUPERUSER PASSWORD '%s'" % (BACKUP_USER, BACKUP_PASSWORD))
        stack.sql('GRANT pg_read_all_settings, pg_read_all_stats TO %s' % BACKUP_USER)
        yield stack
    finally:
        remove_everything()
        shutil.rmtree(workdir, ignore_errors=True)


class S3(object):
    """The test's S3 endpoint: ``params(prefix)`` for the module (inside the network), ``client`` for the host."""

    def __init__(self, host_endpoint, network_endpoint, access_key, secret_key, region):
        import boto3
        self.host_endpoint = host_endpoint
        self.network_endpoint = network_endpoint
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.client = boto3.client('s3', endpoint_url=host_endpoint, region_name=region,
                                   aws_access_key_id=access_key, aws_secret_access_key=secret_key)
        self.bucket = S3_BUCKET

    def params(self, prefix, **extra):
        result = dict(bucket=self.bucket, prefix=prefix, endpoint_url=self.network_endpoint, region=self.region,
                      access_key=self.access_key, secret_key=self.secret_key)
        result.update(extra)
        return result

    def keys(self, prefix):
        found = []
        for page in self.client.get_paginator('list_objects_v2').paginate(Bucket=self.bucket, Prefix=prefix):
            found.extend(item['Key'] for item in page.get('Contents') or [])
        return sorted(found)


@pytest.fixture(scope='session')
def s3(stack):
    """moto's S3 server as psscript-dev-backup-s3 on the test network (removed with the stack)."""
    sys.path.insert(0, os.path.join(COLLECTION_ROOT, 'tests', 'support'))
    try:
        import s3server
    finally:
        sys.path.pop(0)
    host = s3server.start(S3_NAME, NETWORK, S3_IP)
    endpoint = S3(host, s3server.network_endpoint(S3_NAME), s3server.ACCESS_KEY, s3server.SECRET_KEY, s3server.REGION)
    endpoint.client.create_bucket(Bucket=S3_BUCKET)
    yield endpoint
    s3server.stop(S3_NAME)


def start_live_server(stack, data_dir, archive_dir):
    """Run psscript/postgres:17 as psscript-dev-backup-live on ``data_dir`` (the volume, PGDATA is its pgdata)."""
    docker('rm', '-f', '-v', LIVE_NAME, check=False)
    docker('run', '-d', '--name', LIVE_NAME, '--network', NETWORK, '--ip', LIVE_IP,
           '-v', '%s:/etc/psscript:ro' % stack.conf_dir,
           '-v', '%s:/var/lib/postgresql/wal-archive' % archive_dir,
           '-v', '%s:/var/lib/postgresql/data' % data_dir,
           PG_IMAGE)
    deadline = time.time() + 90
    while True:
        proc = docker('exec', '-u', 'postgres', LIVE_NAME, 'psql', '-XAtc', 'SELECT 1', check=False)
        if proc.returncode == 0 and proc.stdout.strip() == '1':
            return
        if time.time() > deadline:
            raise AssertionError('live server did not start: %s' % docker('logs', LIVE_NAME, check=False).stderr)
        time.sleep(1)


def live_sql(query, dbname='postgres'):
    return docker('exec', '-u', 'postgres', LIVE_NAME, 'psql', '-XAt', '-d', dbname, '-c', query).stdout.strip()


def stop_live_server():
    docker('stop', '-t', '60', LIVE_NAME)

