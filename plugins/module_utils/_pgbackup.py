# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""PostgreSQL 17 base backups into the catalog: pg_basebackup, WAL check, compression, verify.

Decisions (and why):

* **No WAL in the backup** (``-X none``); plain format (``-Fp``) unless compressed.
  pg_combinebackup only reads plain backups, and the WAL archive is the point-in-time-recovery layer that every restore reads
  anyway; copying WAL into each backup would make every incremental at least one 16 MB segment.
  Without WAL a backup is only usable once the WAL from its start to its end is archived, so:
  with ``-X none`` the server itself waits for that WAL to be archived before pg_basebackup
  returns, and we then check that every segment of the backup's WAL range (read from its
  ``backup_manifest``, timeline history files included) is present in ``wal_archive_dir``,
  waiting a bounded time (and asking for ``pg_switch_wal()`` once, when the role may). Only
  then is the backup published.
* **A plain backup is published unsealed, and its first verify seals it.** The catalog's SHA-256 of
  every file (what restores, S3 copies and the catalog key's HMAC rely on) costs a read of the whole
  backup and 0.8 s of CPU per GiB. Taken during the copy, beside pg_basebackup, it made the backup
  0.84-0.95 of raw pg_basebackup on two cores; asked of the server (``--manifest-checksums=SHA256``) it
  made pg_basebackup itself 25 % slower, since the walsender computes it inside the stream
  (docs/BENCHMARKS.md). Yet every backup job verifies its backup right after taking it, and that
  verify read every file through SHA-256 once more. So the backup records what it has for free: the
  files written, checked to be exactly those the manifest lists with its sizes, and our SHA-256 of
  the manifest, whose CRC32C checksums cover every file (``sealed: false``, signed like any entry).
  The first verify hashes every file, runs pg_verifybackup against that manifest, and only when both
  pass records the hashes and ``sealed: true`` (``_catalog.record_verify``): one read of the data
  fewer per job, and the job's second read is the verify it always was. Until then, a restore checks
  an unsealed backup's sizes and the manifest's hash, and pg_verifybackup checks its contents against
  the manifest, as a restore always does. An unsealed backup is never copied to S3: the copy is made
  after the verify that seals it.
* **Compression = one ``data.tar.zst`` per backup, compressed in the stream**
  (``-Ft --compress=client-zstd``: pg_basebackup writes ``base.tar.zst`` and a plain
  ``backup_manifest``, moved to ``data.tar.zst`` and ``backup_manifest``). No plain copy is ever
  written. pg_verifybackup and pg_combinebackup of PostgreSQL 17 read only plain directories, so
  a compressed backup is unpacked to be checked or restored (``extract_data`` puts the manifest
  beside the unpacked files). The catalog records the SHA-256 of the archive (a read of the
  compressed bytes only) and of the manifest, whose checksums (CRC32C) cover the contents. The plain
  manifest is what the next incremental (``--incremental=<parent>/backup_manifest``) needs, so
  compressed parents work.
* **Free space is checked first**: the expected size is the plain size of the last full
  backup, or the sum of ``pg_database_size()`` when there is none (a compressed backup never
  needs more than that: nothing plain is written).
* **Any failure removes the partial backup** (``.tmp-<id>``); a crash that prevents even that
  leaves a leftover that listing never shows and prune removes after a grace period.
* **A restore to the end of the archived WAL proves it got there.** PostgreSQL ends archive
  recovery with "archive recovery complete" whenever restore_command finds no next segment, so a
  segment missing, damaged or unreadable in the middle of the archive looks like success and
  loses everything after it. Before anything is built, ``check_replay`` walks the WAL the way the
  startup process will (timeline history of ``recovery_target_timeline=latest``; branches left by
  earlier restores aside) and refuses a gap before newer WAL, a timeline it cannot follow, and a
  segment that is not a complete segment of this cluster (size and first page header; no full
  parse: replay reads every record anyway) or differs from a recorded SHA-256 (each backup records
  its own WAL's). After replay, the switch point of the new timeline's history (the end of the
  last record replayed) must lie in the newest segment of that walk, and the log must not report a
  damaged record inside it. A point-in-time restore needs less: PostgreSQL itself says when it
  stopped short of a target time.

Every command goes through a ``run(args, environ_update=None) -> (rc, stdout, stderr)`` callable
(``AnsibleModule.run_command`` in the module, a fake in tests). Passwords travel in a 0600 pgpass
file that exists while the command runs (``password_file``), never on a command line or in a
process environment.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import grp
import json
import os
import pwd
import re
import shlex
import shutil
import socket
import struct
import tempfile
import time

from ansible_collections.psscript.infra.plugins.module_utils import _catalog
# BackupError lives in _catalog (its RootLock raises it); pg_backup and its tests import it from here.
from ansible_collections.psscript.infra.plugins.module_utils._catalog import BackupError
from ansible_collections.psscript.infra.plugins.module_utils._diskspace import check_free_space
from ansible_collections.psscript.infra.plugins.module_utils import _files
from ansible_collections.psscript.infra.plugins.module_utils._files import fsync_path

DATA_DIR = 'data'
ARCHIVE_FILE = 'data.tar.zst'
MANIFEST_FILE = 'backup_manifest'
TOOLS = ('pg_basebackup', 'pg_verifybackup', 'pg_combinebackup')
# What pg_basebackup checksums every file with while it streams: PostgreSQL's default CRC32C, what pg_verifybackup
# checks. The catalog's SHA-256 of each file comes from the module itself (see the decisions above).
MANIFEST_CHECKSUMS = 'CRC32C'
# Compression in the stream, by pg_basebackup itself (tar format; see the decisions above).
STREAM_COMPRESSION = 'client-zstd'
BASE_ARCHIVE = 'base.tar.zst'
APPLICATION_NAME = 'psscript.infra.pg_backup'


# ---------------------------------------------------------------------------------------------
# Small pure helpers


def tool_major(version_output):
    """``'pg_basebackup (PostgreSQL) 17.12 (Debian ...)'`` -> 17."""
    match = re.search(r'\(PostgreSQL\)\s+(\d+)', version_output or '')
    if not match:
        raise BackupError('Cannot read the PostgreSQL client version from %r' % (version_output,))
    return int(match.group(1))


# libpq's TLS connection options and the environment variables that carry them to its programs.
TLS_ENV = dict(sslmode='PGSSLMODE', sslrootcert='PGSSLROOTCERT')


def tls_env(options):
    """libpq's TLS options (``sslmode``, ``sslrootcert``) as pg_basebackup's or pg_receivewal's environment;
    only those that are set."""
    return dict((TLS_ENV[key], value) for key, value in options.items() if key in TLS_ENV and value)


def connection_env(params, passfile=None):
    """Environment of pg_basebackup: the password only as a 0600 file's path (see password_file), and the TLS
    options (ssl_mode, ca_cert) when given."""
    env = dict(PGAPPNAME=APPLICATION_NAME, PGCONNECT_TIMEOUT=str(params.get('connect_timeout') or 5))
    if passfile:
        env['PGPASSFILE'] = passfile
    env.update(tls_env(dict(sslmode=params.get('ssl_mode'), sslrootcert=params.get('ca_cert'))))
    return env


@contextlib.contextmanager
def password_file(password):
    """A private pgpass file holding ``password`` for any server, removed afterwards (None: no file).

    PGPASSWORD would put the password in the process environment, which /proc shows to root and
    which crash reports and debuggers copy; a 0600 file in a 0700 directory is read once by libpq.
    """
    if password is None:
        yield None
        return
    directory = tempfile.mkdtemp(prefix='psscript-pgpass-')
    path = os.path.join(directory, 'pgpass')
    try:
        escaped = password.replace('\\', '\\\\').replace(':', '\\:')
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w') as handle:
            handle.write('*:*:*:*:%s\n' % escaped)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def basebackup_command(binary, params, target, label, parent_manifest=None, max_rate=None, compress=False):
    """The pg_basebackup command line (no password on it; see connection_env)."""
    cmd = [binary, '--pgdata', target, '--format', 'tar' if compress else 'plain', '--wal-method', 'none',
           '--checkpoint', 'fast', '--no-sync', '--manifest-checksums', MANIFEST_CHECKSUMS, '--label', label,
           '--no-password', '--host', params['login_host'], '--port', str(params['login_port']),
           '--username', params['login_user']]
    if compress:
        cmd += ['--compress', STREAM_COMPRESSION]
    if parent_manifest:
        cmd += ['--incremental', parent_manifest]
    if max_rate:
        cmd += ['--max-rate', str(max_rate)]
    return cmd


def explain_basebackup_failure(rc, stderr, params, parent_id=None):
    """Turn pg_basebackup's stderr into a BackupError naming cause and fix."""
    text = (stderr or '').strip()
    lines = [line for line in text.splitlines() if line.strip()]
    detail = ' | '.join(lines[-3:]) if lines else 'exit code %s, no message' % rc
    low = text.lower()
    where = '%s:%s' % (params.get('login_host'), params.get('login_port'))
    if 'wal summar' in low:
        return BackupError(
            'PostgreSQL cannot take an incremental backup on top of %s: the WAL summaries since that backup are '
            'not available (summarize_wal was off then, or they were removed after wal_summary_keep_time). '
            'A full backup is needed: run with type=full, or set fallback_to_full=true [%s]' % (parent_id, detail),
            kind='wal_summaries')
    if 'system identifier in backup manifest' in low or 'manifest requires wal from' in low \
            or 'timeline' in low and 'manifest' in low:
        return BackupError(
            'The parent backup %s does not match this server (another cluster, or a timeline it does not have): '
            'take a full backup (type=full or fallback_to_full=true) [%s]' % (parent_id, detail), kind='parent_mismatch')
    if 'must be superuser or replication role' in low or 'permission denied to start wal sender' in low:
        return BackupError("User '%s' may not take base backups: ALTER ROLE %s REPLICATION [%s]"
                           % (params.get('login_user'), params.get('login_user'), detail))
    if 'pg_hba.conf' in low:
        return BackupError("PostgreSQL at %s has no pg_hba.conf entry for a replication connection of user '%s': "
                           "add 'host replication %s <network> scram-sha-256' and reload [%s]"
                           % (where, params.get('login_user'), params.get('login_user'), detail))
    if 'password authentication failed' in low or 'no password supplied' in low:
        return BackupError("PostgreSQL at %s refused the password of user '%s': check login_password (or PGPASSWORD) [%s]"
                           % (where, params.get('login_user'), detail))
    if 'max_wal_senders' in low or 'too many clients' in low or 'remaining connection slots' in low:
        return BackupError('PostgreSQL at %s has no free WAL sender / connection slot: raise max_wal_senders (or '
                           'wait for other backups and replicas) [%s]' % (where, detail))
    if 'no space left on device' in low:
        return BackupError('The backup directory ran out of space during pg_basebackup: free space or prune old '
                           'backups (action=prune) [%s]' % detail)
    if 'could not connect' in low or 'connection refused' in low or 'timeout expired' in low \
            or 'could not translate host name' in low:
        return BackupError('pg_basebackup cannot connect to PostgreSQL at %s: check login_host/login_port and that '
                           'the server runs [%s]' % (where, detail))
    if any(s in low for s in ('terminating', 'server closed the connection', 'unexpected termination',
                              'copy stream ended', 'could not read copy data', 'could not receive data')):
        return BackupError('PostgreSQL ended the base backup connection (server restart, or the walsender was '
                           'terminated): run the backup again [%s]' % detail)
    return BackupError('pg_basebackup failed (exit code %s): %s' % (rc, detail))


def expected_size(entries, database_bytes, compress):
    """Bytes needed for the next backup, and where the figure comes from."""
    fulls = [e for e in _catalog.sort_by_stop(entries) if e['type'] == 'full' and e.get('data_bytes')]
    if fulls:
        base, source = int(fulls[-1]['data_bytes']), 'size of the last full backup %s' % fulls[-1]['id']
    elif database_bytes:
        base, source = int(database_bytes), 'sum of pg_database_size() on the server'
    else:
        return 0, 'unknown (no full backup yet and the database size could not be read)'
    if compress:
        return base, source + ' (compressed in the stream: at most that)'
    return base, source


def choose_parent(entries, facts):
    """The parent of an incremental backup: the newest backup by stop time of this cluster that did
    not fail verification, or None."""
    for entry in reversed(entries):
        if entry.get('service', 'postgresql') != 'postgresql' or not _catalog.usable(entry):
            continue
        if facts.get('system_identifier') and entry.get('system_identifier') not in (None, facts['system_identifier']):
            continue
        return entry
    return None


def incremental_parent(facts, entries, root):
    """``(parent, why)``: the backup an incremental builds on, or None and why none can be taken
    (server older than 17, ``summarize_wal`` off, no backup of this cluster to build on)."""
    if facts['version_num'] // 10000 < 17:
        return None, 'the server is PostgreSQL %s; incremental backups need 17 or later' % facts['version']
    if not facts['summarize_wal']:
        return None, 'summarize_wal is off on the server (turn it on, then take a full backup to build on)'
    parent = choose_parent(entries, facts)
    if parent is None:
        return None, 'there is no backup of this cluster in %s to build on' % root
    return parent, None


def newest_wal_age(archive_dir, now):
    """Seconds since the newest WAL segment in ``archive_dir`` was written (by mtime; ``now`` in
    epoch seconds), or None when it holds none."""
    times = [os.stat(os.path.join(archive_dir, name)).st_mtime for name in os.listdir(archive_dir)
             if SEGMENT_RE.match(name)]
    return int(now - max(times)) if times else None


def wait_for_wal(archive_dir, names, timeout, on_missing=None, sleep=time.sleep, clock=time.monotonic, poll=1.0):
    """Wait until every file in ``names`` is in ``archive_dir``; return the ones still missing.

    ``on_missing`` is called once, after the first poll that finds files missing (to ask for a WAL
    switch); the wait never exceeds ``timeout`` seconds.
    """
    deadline = clock() + timeout
    asked = False
    while True:
        missing = [n for n in names if not os.path.isfile(os.path.join(archive_dir, n))]
        if not missing:
            return []
        if not asked and on_missing is not None:
            asked = True
            on_missing(missing)
        if clock() >= deadline:
            return missing
        sleep(min(poll, max(0.0, deadline - clock())))


# ---------------------------------------------------------------------------------------------
# Server facts (psycopg2 connection from _pg.connect_postgres)


def _one(conn, query):
    cur = conn.cursor()
    try:
        cur.execute(query)
        row = cur.fetchone()
    finally:
        cur.close()
    return row


def server_facts(conn):
    """What a backup needs to know about the server; optional facts are None when not readable."""
    try:
        row = _server_settings(conn)
    except Exception as err:  # pylint: disable=broad-except
        # psycopg2 errors: this module_utils does not import psycopg2 itself (see _pg).
        raise BackupError('Cannot read the server settings a backup needs: %s' % str(err).strip().splitlines()[0])
    facts = dict(version_num=row[0], version=row[1], summarize_wal=row[2] == 'on', wal_segment_size=int(row[3]),
                 in_recovery=row[4], archive_mode=row[5], system_identifier=None, database_bytes=None)
    for key, query in (('system_identifier', 'SELECT system_identifier::text FROM pg_control_system()'),
                       ('database_bytes', 'SELECT sum(pg_database_size(oid))::bigint FROM pg_database')):
        try:
            facts[key] = _one(conn, query)[0]
        except Exception:  # pylint: disable=broad-except
            # Optional facts: a role without the privilege still backs up, with fewer checks.
            pass
    return facts


SERVER_SETTINGS_QUERY = (
    "SELECT current_setting('server_version_num')::int, current_setting('server_version'), "
    "current_setting('summarize_wal'), "
    "(SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'), "
    "pg_is_in_recovery(), current_setting('archive_mode')")


def _server_settings(conn):
    return _one(conn, SERVER_SETTINGS_QUERY)


def server_now(conn):
    """The server's clock (UTC): recovery_target_time is judged against it, not ours.

    Read just before pg_basebackup starts and just after it returns (with ``-X none`` it returns once
    the end WAL is archived), so the recorded stop time is at or after the backup's real end: a
    backup chosen as "ended before the target" really did.
    """
    try:
        return _one(conn, 'SELECT clock_timestamp()')[0]
    except Exception as err:  # pylint: disable=broad-except
        raise BackupError('Lost the SQL connection to the server during the backup: %s; run the backup again'
                          % str(err).strip().splitlines()[0])


def archiver_status(conn):
    try:
        row = _one(conn, 'SELECT last_archived_wal, last_failed_wal, last_failed_time, failed_count FROM pg_stat_archiver')
    except Exception:  # pylint: disable=broad-except
        return ''
    return ('pg_stat_archiver: last archived %s, last failed %s at %s, %s failures'
            % (row[0], row[1], row[2], row[3]))


def switch_wal(conn):
    """Ask for a WAL switch; return None or why it was not possible (the role may lack the grant)."""
    try:
        _one(conn, 'SELECT pg_switch_wal()')
    except Exception as err:  # pylint: disable=broad-except
        return ('pg_switch_wal() failed (%s); to let the backup role close the current segment: '
                'GRANT EXECUTE ON FUNCTION pg_switch_wal() TO <backup role>' % str(err).strip().splitlines()[0])
    return None


# ---------------------------------------------------------------------------------------------
# Layout of a published backup


def manifest_path(backup_path, entry):
    return os.path.join(backup_path, MANIFEST_FILE)


def _files_on_disk(top):
    """``{relative path: size}`` of the regular files under top; symlinks are refused (no tablespaces)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                raise BackupError('%s is a symbolic link; backups must hold plain files only (tablespaces are not '
                                  'supported)' % full)
            found[os.path.relpath(full, top).replace(os.sep, '/')] = os.path.getsize(full)
    return found


def manifest_files(manifest_text):
    """``{path: dict(size)}`` of the files a ``backup_manifest`` lists; raises when a file has no checksum of
    ``MANIFEST_CHECKSUMS`` there (``--manifest-checksums`` ignored) or no size."""
    try:
        listed = json.loads(manifest_text).get('Files') or []
    except (ValueError, AttributeError) as err:
        raise BackupError('backup_manifest is not a JSON object (%s): run the backup again' % err)
    result = {}
    for item in listed:
        path, found, checksum = item.get('Path'), item.get('Checksum-Algorithm'), item.get('Checksum')
        size = item.get('Size')
        if not isinstance(path, str) or found != MANIFEST_CHECKSUMS or not isinstance(checksum, str) \
                or not isinstance(size, int) or isinstance(size, bool):
            raise BackupError('backup_manifest lists %s without a %s checksum and size (%s %r): pg_basebackup did not '
                              'hash as asked (--manifest-checksums=%s); check that the client tools are PostgreSQL 13 '
                              'or later' % (path or item.get('Encoded-Path'), MANIFEST_CHECKSUMS, found, checksum,
                                            MANIFEST_CHECKSUMS))
        result[path] = dict(size=size)
    return result


def plain_files(staged, listed):
    """The unsealed file map of a plain backup in ``<staged>/data``, once the files written are checked to be exactly
    those the manifest lists (``listed``, from manifest_files), with those sizes: the size of each, and our SHA-256 of
    the manifest (in ``data/`` and the copy beside it, which this writes)."""
    data = os.path.join(staged, DATA_DIR)
    written = _files_on_disk(data)
    written.pop(MANIFEST_FILE, None)
    problems = ['%s: listed in backup_manifest, not written' % rel for rel in sorted(set(listed) - set(written))]
    problems += ['%s: written, not listed in backup_manifest' % rel for rel in sorted(set(written) - set(listed))]
    problems += ['%s: %d bytes, backup_manifest says %d' % (rel, written[rel], listed[rel]['size'])
                 for rel in sorted(set(written) & set(listed)) if written[rel] != listed[rel]['size']]
    if problems:
        raise BackupError('pg_basebackup wrote a backup that differs from its own backup_manifest (%s%s): run the backup '
                          'again' % ('; '.join(problems[:5]), '; ...' if len(problems) > 5 else ''))
    files = dict((DATA_DIR + '/' + rel, dict(size=item['size'])) for rel, item in listed.items())
    shutil.copyfile(os.path.join(data, MANIFEST_FILE), os.path.join(staged, MANIFEST_FILE))
    digest, size = _catalog.hash_file(os.path.join(staged, MANIFEST_FILE))
    files[DATA_DIR + '/' + MANIFEST_FILE] = files[MANIFEST_FILE] = dict(sha256=digest, size=size)
    return files


def packed_files(staged):
    """Move what ``pg_basebackup -Ft --compress`` wrote into ``<staged>/data`` to ``data.tar.zst`` and
    ``backup_manifest``; return the catalog's file map (our SHA-256 of both: a read of the compressed bytes)."""
    data = os.path.join(staged, DATA_DIR)
    names = sorted(os.listdir(data))
    if names != sorted([BASE_ARCHIVE, MANIFEST_FILE]):
        raise BackupError('pg_basebackup wrote %s, not just %s and %s: tablespaces are not supported in compressed '
                          'backups' % (', '.join(names), BASE_ARCHIVE, MANIFEST_FILE))
    os.rename(os.path.join(data, BASE_ARCHIVE), os.path.join(staged, ARCHIVE_FILE))
    os.rename(os.path.join(data, MANIFEST_FILE), os.path.join(staged, MANIFEST_FILE))
    os.rmdir(data)
    files = {}
    for name in (ARCHIVE_FILE, MANIFEST_FILE):
        digest, size = _catalog.hash_file(os.path.join(staged, name))
        files[name] = dict(sha256=digest, size=size)
    return files


def archived_label(run, archive):
    """The ``backup_label`` inside a ``data.tar.zst`` written by pg_basebackup: its first member, so tar stops
    after it (``--occurrence=1``) instead of unpacking the whole archive."""
    rc, out, err = run(['tar', '--use-compress-program', 'zstd -dq', '--occurrence=1', '-xOf', archive, 'backup_label'])
    if rc != 0 or 'START WAL LOCATION' not in (out or ''):
        raise BackupError('Cannot read backup_label from %s (tar/zstd exit code %s): %s; check that zstd is installed'
                          % (archive, rc, (err or out or '').strip()))
    return out


def extract_data(run, backup_path, dest):
    """Unpack ``data.tar.zst`` of a compressed backup into ``dest`` (created)."""
    os.makedirs(dest, 0o700)
    rc, out, err = run(['tar', '--use-compress-program', 'zstd -q', '-C', dest, '-xf',
                        os.path.join(backup_path, ARCHIVE_FILE)])
    if rc != 0:
        raise BackupError('Unpacking %s failed (exit code %s): %s' % (os.path.join(backup_path, ARCHIVE_FILE), rc,
                                                                      (err or out).strip()))
    # Archives compressed by pg_basebackup in the stream do not hold the manifest: it lies beside them.
    if not os.path.exists(os.path.join(dest, MANIFEST_FILE)):
        shutil.copyfile(os.path.join(backup_path, MANIFEST_FILE), os.path.join(dest, MANIFEST_FILE))
    return dest


# ---------------------------------------------------------------------------------------------
# Backup


def take_backup(run, tools, params, root, backup_type, parent, wal_archive_dir, facts, compress,
                clock_now, on_wal_missing, max_rate=None, wal_wait_timeout=120):
    """Take, check and publish one base backup; return its catalog entry.

    ``parent``: the catalog entry of the parent for an incremental (None for a full).
    ``clock_now()``: the server's clock. ``on_wal_missing(missing)``: called once while waiting for
    WAL (asks the server for a WAL switch). Raises BackupError; the staged directory is removed on
    any failure.
    """
    backup_id = _catalog.new_backup_id(backup_type)
    staged = _catalog.start_backup(root, backup_id)
    durations = {}
    try:
        began = time.time()
        started_at = clock_now()
        parent_manifest = None
        if backup_type == 'incremental':
            parent_manifest = manifest_path(os.path.join(root, parent['id']), parent)
        data = os.path.join(staged, DATA_DIR)
        cmd = basebackup_command(tools['pg_basebackup'], params, data, backup_id, parent_manifest, max_rate, compress)
        # pg_basebackup runs with --no-sync; the files it has finished are fsynced while it copies the rest, and a plain
        # backup's leave the page cache (a compressed one's archive is hashed next).
        with password_file(params.get('login_password')) as passfile, \
                _files.SyncWhileWriting(staged, drop=not compress) as syncer:
            rc, out, err = run(cmd, environ_update=connection_env(params, passfile))
        if rc != 0:
            raise explain_basebackup_failure(rc, err or out, params, parent and parent['id'])
        stopped_at = clock_now()
        durations['basebackup'] = round(time.time() - began, 3)

        step = time.time()
        # The file map: with the archive's hash when compressed, else unsealed (see the decisions above).
        if compress:
            files = packed_files(staged)
            label_text = archived_label(run, os.path.join(staged, ARCHIVE_FILE))
            manifest_file = os.path.join(staged, MANIFEST_FILE)
        else:
            with open(os.path.join(data, 'backup_label')) as handle:
                label_text = handle.read()
            manifest_file = os.path.join(data, MANIFEST_FILE)
        with open(manifest_file) as handle:
            manifest_text = handle.read()
        label = _catalog.parse_backup_label(label_text)
        manifest = _catalog.parse_manifest(manifest_text)
        listed = manifest_files(manifest_text)
        if not compress:
            files = plain_files(staged, listed)
        # Plain sizes (what a restore unpacks), compressed or not: the listed files plus the manifest.
        data_bytes = sum(item['size'] for item in listed.values()) + os.path.getsize(manifest_file)
        durations['hash'] = round(time.time() - step, 3)
        seg_size = facts['wal_segment_size']
        needed = _catalog.required_wal(manifest['wal_ranges'], seg_size)

        step = time.time()
        missing = wait_for_wal(wal_archive_dir, needed, wal_wait_timeout, on_missing=on_wal_missing)
        durations['wal_wait'] = round(time.time() - step, 3)
        if missing:
            raise BackupError('The backup is not usable yet: WAL file(s) %s did not reach %s within %ss. Check '
                              'archive_command and that wal_archive_dir is the archive it writes to; the partial backup '
                              'was removed' % (', '.join(missing), wal_archive_dir, wal_wait_timeout), kind='wal_missing')

        step = time.time()
        # The backup's own WAL as archived now: a restore compares it before replaying it.
        wal_sha256 = dict((name, _catalog.hash_file(os.path.join(wal_archive_dir, name))[0]) for name in needed)
        durations['hash'] += round(time.time() - step, 3)
        # pg_basebackup ran with --no-sync: what the syncer did not fsync while it ran is fsynced here, and publish
        # does not fsync the tree again; timed apart because on slow disks it is most of the cost.
        step = time.time()
        syncer.finish()
        durations['sync'] = round(time.time() - step, 3)
        last = manifest['wal_ranges'][-1]
        entry = _catalog.make_entry(
            backup_id, backup_type, started_at, stopped_at, files,
            parent=parent['id'] if parent else None,
            service='postgresql',
            layout='tar.zst' if compress else 'plain',
            compressed=bool(compress),
            sealed=bool(compress),
            compression=STREAM_COMPRESSION if compress else None,
            manifest_checksums=MANIFEST_CHECKSUMS,
            data_bytes=data_bytes,
            start_lsn=label['start_lsn'],
            stop_lsn=last['end_lsn'],
            timeline=label['timeline'],
            stop_timeline=last['timeline'],
            wal_ranges=manifest['wal_ranges'],
            wal_start=label['start_wal'],
            wal_stop=[name for name in needed if not name.endswith('.history')][-1],
            wal_segment_size=seg_size,
            wal_files=needed,
            wal_sha256=wal_sha256,
            system_identifier=manifest['system_identifier'] or facts.get('system_identifier'),
            server_version=facts['version'],
            server_version_num=facts['version_num'],
            incremental_from_lsn=label.get('incremental_from_lsn'),
            durations=durations,
        )
        durations['total'] = round(time.time() - began, 3)
        _catalog.publish(root, entry, staged, synced=True)
        return entry
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------------------
# Verify


def _data_dir(run, root, entry, scratch):
    """A plain data directory of the backup: in place, or unpacked into scratch."""
    path = os.path.join(root, entry['id'])
    if entry.get('layout') == 'tar.zst':
        return extract_data(run, path, os.path.join(scratch, entry['id']))
    return os.path.join(path, DATA_DIR)


def verify_backup(run, tools, root, entry, entries, wal_archive_dir=None, scratch_root=None, hashes_checked=False):
    """Check one backup: our SHA-256 of every file, pg_verifybackup (with the archived WAL when given),
    and for an incremental ``pg_combinebackup --dry-run`` over its chain.

    ``hashes_checked``: the caller has just compared every file with the catalog (``check_chain_hashes``,
    under the lock it still holds), so the SHA-256 step is not run again: a restore would otherwise read
    each local backup twice (the check is reported as ``sha256 (checked before)``).
    An unsealed backup has its files hashed here (``sha256 (to seal)``); when every check passes, the
    result carries the file map that seals it (``_catalog.SEAL_KEY``, recorded by ``record_verify``).

    Returns ``dict(id, ok, problems=[...], checks=[...])``; does not record anything.
    """
    result = dict(id=entry['id'], ok=False, problems=[], checks=[])
    seal = None
    if hashes_checked:
        result['checks'].append('sha256 (checked before)')
    else:
        path = os.path.join(root, entry['id'])
        if _catalog.is_sealed(entry):
            problems = _catalog.check_hashes(path, entry)
            result['checks'].append('sha256')
        else:
            problems, seal = _catalog.seal_files(path, entry)
            result['checks'].append('sha256 (to seal)')
        if problems:
            result['problems'] = problems
            return result
    scratch = None
    try:
        needs_scratch = entry.get('layout') == 'tar.zst' or (
            entry['type'] == 'incremental' and any(e.get('layout') == 'tar.zst' for e in _safe_chain(entries, entry)))
        if needs_scratch:
            base = scratch_root or root
            packed = [m for m in (_safe_chain(entries, entry) if entry['type'] == 'incremental' else [entry])
                      if m.get('layout') == 'tar.zst']
            check_free_space(base, sum(int(m.get('data_bytes') or 0) for m in packed),
                             'plain size of %s, unpacked to verify' % ', '.join(m['id'] for m in packed))
            scratch = os.path.join(base, _catalog.SCRATCH_PREFIX + 'verify-%s-%d' % (entry['id'], os.getpid()))
            os.makedirs(scratch, 0o700)
        data = _data_dir(run, root, entry, scratch)
        cmd = [tools['pg_verifybackup'], '--quiet']
        cmd += ['--wal-directory', wal_archive_dir] if wal_archive_dir else ['--no-parse-wal']
        cmd.append(data)
        rc, out, err = run(cmd)
        result['checks'].append('pg_verifybackup' + (' with WAL' if wal_archive_dir else ''))
        if rc != 0:
            result['problems'].extend(line.strip() for line in (err or out).splitlines() if line.strip())
            if not result['problems']:
                result['problems'].append('pg_verifybackup failed with exit code %s' % rc)
            return result
        if entry['type'] == 'incremental':
            members = _catalog.chain(entries, entry['id'])
            dirs = []
            for member in members:
                if member['id'] == entry['id']:
                    dirs.append(data)
                elif member.get('layout') == 'tar.zst':
                    dirs.append(_data_dir(run, root, member, scratch))
                else:
                    dirs.append(os.path.join(root, member['id'], DATA_DIR))
            out_dir = os.path.join(scratch or os.path.join(root, _catalog.SCRATCH_PREFIX + 'combine-%d' % os.getpid()), 'combined')
            rc, out, err = run([tools['pg_combinebackup'], '--dry-run', '--output', out_dir] + dirs)
            result['checks'].append('pg_combinebackup --dry-run over %s' % ' + '.join(m['id'] for m in members))
            if rc != 0:
                result['problems'].extend(line.strip() for line in (err or out).splitlines() if line.strip())
                return result
        result['ok'] = True
        if seal:
            result[_catalog.SEAL_KEY] = seal
        return result
    except (BackupError, _catalog.CatalogError) as err:
        result['problems'].append(err.msg)
        return result
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def _safe_chain(entries, entry):
    try:
        return _catalog.chain(entries, entry['id'])
    except _catalog.CatalogError:
        return [entry]


# ---------------------------------------------------------------------------------------------
# Restore into an empty directory, then prove it by recovering it with a temporary server

RESTORE_TOOLS = ('pg_combinebackup', 'pg_ctl', 'psql')

# What the startup process logs (PostgreSQL 13-17), and what each line means for the target.
_STOPPING = re.compile(r'recovery stopping (before|after) .*')
_NOT_REACHED = 'recovery ended before configured recovery target was reached'


def restore_command(wal_dirs):
    """``restore_command`` reading the first of ``wal_dirs`` that has the file (the WAL archive, then
    the segments fetched from S3 for this restore)."""
    dirs = [d.rstrip('/') for d in wal_dirs]
    parts = ['cp "%s/%%f" "%%p"' % dirs[-1]]
    for directory in reversed(dirs[:-1]):
        parts.insert(0, 'test -f "%s/%%f" && cp "%s/%%f" "%%p" ||' % (directory, directory))
    return ' '.join(parts)


def recovery_settings(wal_archive_dir, socket_dir, hba_file, ident_file, target_time=None, immediate=False,
                      extra_wal_dirs=()):
    """Server options (``-c name=value``) for the temporary recovery: nothing is written to the
    restored configuration, so the directory can later be started with the stack's own settings.

    Promote at the target (so a reached target ends recovery, and one not reached is a FATAL
    "recovery ended before configured recovery target was reached"); socket only; no archiving
    (the real archive is only read, by ``restore_command``); hot_standby off so no parameter of the
    restored cluster (max_connections...) can block recovery.
    """
    settings = [
        ('restore_command', restore_command([wal_archive_dir] + list(extra_wal_dirs))),
        ('recovery_target_action', 'promote'),
        ('archive_mode', 'off'),
        ('summarize_wal', 'off'),
        ('hot_standby', 'off'),
        ('listen_addresses', ''),
        ('port', '5432'),
        ('unix_socket_directories', socket_dir),
        ('hba_file', hba_file),
        ('ident_file', ident_file),
        ('logging_collector', 'off'),
        ('shared_preload_libraries', ''),
    ]
    if target_time is not None:
        settings.append(('recovery_target_time', _catalog.format_time(target_time).replace('T', ' ').replace('Z', '+00')))
    elif immediate:
        settings.append(('recovery_target', 'immediate'))
    return settings


def recovery_outcome(log_text, target_time=None, immediate=False):
    """Read the temporary server's log: ``dict(reached, stop, problems)``.

    With a target (time or immediate) it counts as reached only when the startup process says it
    stopped there; replaying to the end of the WAL counts when archive recovery completed.
    """
    lines = log_text.splitlines()
    # Refused connections of our own polling (hot_standby is off) are not problems of the recovery.
    noise = ('not accepting connections', 'is starting up', 'is shutting down')
    problems = [line for line in lines if _NOT_REACHED in line or (
        re.search(r'\b(FATAL|PANIC)\b', line) and not any(n in line for n in noise))]
    stop = None
    for line in lines:
        match = _STOPPING.search(line)
        if match:
            stop = match.group(0)
    completed = any('archive recovery complete' in line for line in lines)
    redo_done = [line.split('LOG:', 1)[-1].strip() for line in lines if 'redo done at' in line]
    if any(_NOT_REACHED in line for line in lines):
        reached = False
    elif target_time is not None or immediate:
        reached = stop is not None and completed
    else:
        reached = completed
        stop = redo_done[-1] if redo_done else None
    return dict(reached=reached, stop=stop, problems=problems)


def redo_done_lsn(log_text):
    """The LSN of the last "redo done at X/Y" line of a server log, or None."""
    found = re.findall(r'redo done at ([0-9A-F]+/[0-9A-F]+)', log_text or '')
    return found[-1] if found else None


def _as_user(cmd, user):
    """Run a server-side command as ``user`` (PostgreSQL refuses to run as root)."""
    if os.geteuid() == 0 and user != 'root':
        return ['runuser', '-u', user, '--'] + cmd
    return cmd


def _chown_tree(top, user):
    if os.geteuid() != 0:
        return
    record = pwd.getpwnam(user)
    for dirpath, dirnames, filenames in os.walk(top):
        os.lchown(dirpath, record.pw_uid, record.pw_gid)
        for name in filenames + dirnames:
            os.lchown(os.path.join(dirpath, name), record.pw_uid, record.pw_gid)


def _chown(path, user):
    if os.geteuid() == 0:
        record = pwd.getpwnam(user)
        os.lchown(path, record.pw_uid, record.pw_gid)


def _log_tail(path, count=25):
    try:
        with open(path) as handle:
            return [line.rstrip() for line in handle.readlines()[-count:]]
    except (IOError, OSError):
        return []


def restore_backup(run, tools, root, members, restore_dir, wal_archive_dir, target_time=None, immediate=False,
                   run_as='postgres', timeout=600, check_query=None, check_db='postgres', scratch_root=None,
                   sleep=time.sleep, clock=time.monotonic, extra_wal_dirs=(), replay_plan=None, mark_history=False):
    """Rebuild ``members`` (a chain, full first) into ``restore_dir`` and recover it to the target.

    pg_combinebackup writes the data directory (compressed members are unpacked into scratch first);
    a temporary server (socket only, as ``run_as``) replays the archived WAL to the target and
    promotes; the log must say the target was reached; for a restore to the end, replay must have
    reached the newest segment of ``replay_plan`` (check_replay), since "archive recovery complete"
    is also what a missing or damaged segment in the middle of the archive ends in; ``check_query``
    runs on the result; the server is stopped. With ``mark_history`` the new timeline's history is
    marked for the live server to archive (mark_history_for_archiving). On failure the restored
    directory is removed (it was empty before).
    ``extra_wal_dirs``: more directories ``restore_command`` reads after the archive (WAL fetched from S3).
    Returns ``dict(reached, stop, end, check_result, recovery_log, history_marked)``.
    """
    if os.path.exists(restore_dir) and (not os.path.isdir(restore_dir) or os.listdir(restore_dir)):
        raise BackupError('restore_dir %s exists and is not empty: a restore never overwrites; give an empty or new '
                          'directory' % restore_dir)
    parent = os.path.dirname(os.path.abspath(restore_dir))
    if not os.path.isdir(parent):
        raise BackupError('The parent of restore_dir (%s) does not exist: create it or choose another place' % parent)
    base = scratch_root or root
    packed = [m for m in members if m.get('layout') == 'tar.zst']
    check_free_space(parent, int(members[0].get('data_bytes') or 0), 'plain size of the full backup %s' % members[0]['id'])
    if packed:
        check_free_space(base, sum(int(m.get('data_bytes') or 0) for m in packed),
                         'plain size of %s, unpacked to restore' % ', '.join(m['id'] for m in packed))
    created = not os.path.exists(restore_dir)
    scratch = os.path.join(base, _catalog.SCRATCH_PREFIX + 'restore-%d' % os.getpid())
    os.makedirs(scratch, 0o700)
    # The temporary server's own small files (socket, log, hba) live where run_as can reach them.
    server_dir = tempfile.mkdtemp(prefix='psscript-pg-restore-')
    server_started = False
    log_file = os.path.join(server_dir, 'recovery.log')
    result = dict(reached=False, stop=None, end=None, check_result=None, recovery_log=[], history_marked=[])
    try:
        dirs = [_data_dir(run, root, m, os.path.join(scratch, 'unpacked')) if m.get('layout') == 'tar.zst'
                else os.path.join(root, m['id'], DATA_DIR) for m in members]
        rc, out, err = run([tools['pg_combinebackup'], '--output', restore_dir] + dirs)
        if rc != 0:
            raise BackupError('pg_combinebackup could not rebuild %s: %s'
                              % (' + '.join(m['id'] for m in members), (err or out).strip()))
        shutil.rmtree(os.path.join(scratch, 'unpacked'), ignore_errors=True)
        os.chmod(restore_dir, 0o700)
        with open(os.path.join(restore_dir, 'recovery.signal'), 'w'):
            pass
        # The server reads only what we give it: our own hba/ident files and a private socket.
        socket_dir = os.path.join(server_dir, 'socket')
        os.makedirs(socket_dir, 0o700)
        hba_file = os.path.join(server_dir, 'pg_hba.conf')
        ident_file = os.path.join(server_dir, 'pg_ident.conf')
        with open(hba_file, 'w') as handle:
            handle.write('local all all peer\n')
        with open(ident_file, 'w'):
            pass
        with open(log_file, 'w'):
            pass
        _chown_tree(restore_dir, run_as)
        _chown_tree(server_dir, run_as)
        readable = ['-a', '-r', wal_archive_dir, '-a', '-x', wal_archive_dir]
        for directory in extra_wal_dirs:
            _chown_tree(directory, run_as)
            readable += ['-a', '-r', directory, '-a', '-x', directory]
        rc, out, err = run(_as_user(['test', '-w', restore_dir] + readable, run_as))
        if rc != 0:
            raise BackupError('User %s cannot write %s or read the WAL archive %s (a parent directory it cannot enter?): '
                              'choose a restore_dir that %s can reach, or fix the permissions'
                              % (run_as, restore_dir, wal_archive_dir, run_as))
        settings = recovery_settings(wal_archive_dir, socket_dir, hba_file, ident_file, target_time, immediate,
                                     extra_wal_dirs)
        options = ' '.join('-c %s' % shlex.quote('%s=%s' % item) for item in settings)
        rc, out, err = run(_as_user([tools['pg_ctl'], '--pgdata', restore_dir, '--log', log_file, '--options', options,
                                     '--wait', '--timeout', str(timeout), 'start'], run_as))
        server_started = True
        start_error = (err or out).strip() if rc != 0 else None
        deadline = clock() + timeout
        psql = _as_user([tools['psql'], '--no-psqlrc', '--no-align', '--tuples-only', '--quiet', '--host', socket_dir,
                         '--port', '5432', '--dbname', check_db], run_as)
        while start_error is None:
            rc, out, err = run(psql + ['--command', 'SELECT pg_is_in_recovery()'])
            if rc == 0 and out.strip() == 'f':
                break
            status, dummy, dummy2 = run(_as_user([tools['pg_ctl'], '--pgdata', restore_dir, 'status'], run_as))
            if status != 0 or clock() >= deadline:
                break
            sleep(1)
        with open(log_file) as handle:
            log_text = handle.read()
        outcome = recovery_outcome(log_text, target_time, immediate)
        result.update(reached=outcome['reached'], stop=outcome['stop'], recovery_log=_log_tail(log_file))
        chain_ids = ' + '.join(m['id'] for m in members)
        if not outcome['reached']:
            why = outcome['problems'][-1] if outcome['problems'] else (
                start_error or 'recovery did not end within restore_timeout=%ss' % timeout)
            raise BackupError('Recovery of %s did not reach the target (%s): %s. Nothing was left in %s; check that the '
                              'WAL up to the target is in %s, or choose an earlier target_time'
                              % (chain_ids, describe_target(target_time, immediate), why, restore_dir, wal_archive_dir),
                              kind='target_not_reached')
        result['end'] = replay_end(restore_dir)
        if replay_plan is not None and target_time is None and not immediate:
            end_lsn = result['end']['lsn'] if result['end'] else redo_done_lsn(log_text)
            why = replay_shortfall(replay_plan, end_lsn, log_text) if end_lsn else (
                'neither a new timeline history nor "redo done at" says where replay ended')
            if why:
                result['reached'] = False
                raise BackupError('Recovery of %s stopped before the end of the archived WAL: %s. Nothing was left in %s'
                                  % (chain_ids, why, restore_dir), kind='end_not_reached')
        if check_query:
            rc, out, err = run(psql + ['--command', check_query])
            if rc != 0:
                raise BackupError('check_query failed on the restored database: %s' % (err or out).strip(), kind='check_failed')
            result['check_result'] = out.strip()
        rc, out, err = run(_as_user([tools['pg_ctl'], '--pgdata', restore_dir, '--mode', 'fast', '--wait', 'stop'], run_as))
        server_started = rc != 0
        if rc != 0:
            raise BackupError('The temporary server on %s did not stop: %s' % (restore_dir, (err or out).strip()))
        if mark_history:
            result['history_marked'] = mark_history_for_archiving(restore_dir, wal_archive_dir, run_as)
        return result
    except BaseException as err:
        if server_started:
            run(_as_user([tools['pg_ctl'], '--pgdata', restore_dir, '--mode', 'immediate', '--wait', 'stop'], run_as))
        if isinstance(err, BackupError) and not result['recovery_log']:
            result['recovery_log'] = _log_tail(log_file)
        if isinstance(err, BackupError):
            err.result = result
        if created:
            shutil.rmtree(restore_dir, ignore_errors=True)
        else:
            for name in os.listdir(restore_dir) if os.path.isdir(restore_dir) else []:
                path = os.path.join(restore_dir, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(server_dir, ignore_errors=True)


def describe_target(target_time=None, immediate=False):
    if target_time is not None:
        return 'recovery_target_time %s' % _catalog.format_time(target_time)
    if immediate:
        return 'the end of the backup (recovery_target immediate)'
    return 'the end of the archived WAL'


# ---------------------------------------------------------------------------------------------
# The WAL a restore replays: which segments, whether the archive lets replay reach its end, and
# whether it did.
#
# Replay to "latest" goes on until restore_command finds no next segment, and PostgreSQL then says
# "archive recovery complete" whether that was the real end or a segment missing or damaged in the
# middle. So before a restore we walk the archive the way the startup process will (timeline history
# included) and refuse a gap or a damaged segment; after replay we compare where it ended with the
# newest segment of that walk.

SEGMENT_RE = re.compile(r'^(?P<tli>[0-9A-F]{8})(?P<log>[0-9A-F]{8})(?P<seg>[0-9A-F]{8})$')
XLP_LONG_HEADER = 0x0002
# XLOG_PAGE_MAGIC per major version (src/include/access/xlog_internal.h); other majors skip this one check.
XLOG_PAGE_MAGIC = {15: 0xD110, 16: 0xD113, 17: 0xD116}
# XLogLongPageHeaderData: magic, info, tli, pageaddr, rem_len, (padding), sysid, seg_size, xlog_blcksz.
_LONG_HEADER = struct.Struct('<HHIQI4xQII')
# What the startup process logs when a WAL record or page it read is damaged (xlogreader.c, xlogrecovery.c).
# Not "successfully skipped missing contrecord": that is replay of a record a crashed primary wrote over.
_WAL_DAMAGE = re.compile(
    r'incorrect resource manager data checksum|invalid record length|invalid magic number|invalid info bits|'
    r'unexpected pageaddr|incorrect prev-link|invalid resource manager ID|invalid record offset|'
    r'contrecord is requested|there is no contrecord flag|invalid contrecord length|'
    r'unexpected timeline ID|out-of-sequence timeline ID|WAL file is from different database system|'
    r'record length \d+ at \S+ too long|invalid compressed image|could not decompress image|'
    r'out-of-order block_id|invalid block_id')
# Where the damage is: the LSN after "at" or "LSN" (a prev-link message names a bogus one first), else the first.
_LSN_AT = re.compile(r'\b(?:at|LSN) ([0-9A-F]{1,8}/[0-9A-F]{1,8})\b')
_LSN_IN_TEXT = re.compile(r'\b([0-9A-F]{1,8}/[0-9A-F]{1,8})\b')
_SHOWN = 5  # names listed in a message before "..."


def segment_of(name, seg_size):
    """``(timeline, segment number)`` of a WAL segment file name; None for anything else (history files,
    ``.backup`` labels, ``.partial`` segments, which restore_command is never asked for)."""
    match = SEGMENT_RE.match(name or '')
    if not match:
        return None
    per_id = 0x100000000 // seg_size
    return int(match.group('tli'), 16), int(match.group('log'), 16) * per_id + int(match.group('seg'), 16)


def lsn_segment(lsn, seg_size, end=False):
    """Segment number holding ``lsn``; with ``end``, of the byte before it (an end position on a segment
    boundary belongs to the segment it closes, PostgreSQL's XLByteToPrevSeg)."""
    return ((lsn - 1) if end and lsn else lsn) // seg_size


def _shown(names):
    names = list(names)
    return ', '.join(names[:_SHOWN]) + (' and %d more' % (len(names) - _SHOWN) if len(names) > _SHOWN else '')


def parse_history(text, name='history file'):
    """A timeline history file, oldest first: ``[(timeline, switch LSN)]``. The file's own timeline begins at
    the last switch point."""
    entries = []
    for line in (text or '').splitlines():
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        fields = line.split()
        try:
            entry = (int(fields[0]), _catalog.parse_lsn(fields[1]))
        except (IndexError, ValueError, _catalog.CatalogError):
            raise BackupError('%s has a line that is not "<timeline> <switch LSN> <reason>": %r. The archive is '
                              'damaged: put back an intact copy of %s (S3, another archive)' % (name, line, name),
                              kind='timeline')
        if entries and entry[0] <= entries[-1][0]:
            raise BackupError('%s lists timeline %d after %d: put back an intact copy of it' % (name, entry[0], entries[-1][0]),
                              kind='timeline')
        entries.append(entry)
    return entries


def timeline_ranges(target, history_text, name=None):
    """What each timeline of ``target``'s history covers, oldest first: ``[dict(tli, begin, end)]`` (LSNs;
    ``begin`` None from the start, ``end`` None for ``target`` itself), as readTimeLineHistory() builds it."""
    ranges, begin = [], None
    for tli, switch in parse_history(history_text, name or '%08X.history' % target):
        ranges.append(dict(tli=tli, begin=begin, end=switch))
        begin = switch
    ranges.append(dict(tli=target, begin=begin, end=None))
    return ranges


def newest_timeline(start, names):
    """recovery_target_timeline 'latest': from the backup's timeline, the last of an unbroken run of history
    files (findNewestTimeLine probes ``<tli + 1>.history`` until one is missing)."""
    tli = start
    while '%08X.history' % (tli + 1) in names:
        tli += 1
    return tli


def plan_replay(names, read_history, backup, seg_size):
    """Walk the WAL a restore of ``backup`` (the newest catalog entry of the chain) replays, as the startup
    process will, over ``names`` (every file restore_command can fetch). ``read_history(name)`` returns the
    text of a history file among them.

    From the backup's start segment each next segment comes from the newest timeline of the target's history
    that has begun by then and is not older than the one before (XLogFileReadAnyTLI); the walk ends where no
    such file exists, which is where replay will end. Archived segments that belong to the target's history but
    lie after that point are stranded behind a gap. Pure: reads nothing but through ``read_history``.

    Returns ``dict(timeline, timelines, ranges, seg_size, start_segno, path, last_segno, newest, gaps, stranded,
    unfollowed, not_replayed, backup_end, not_child, backup_id)``: ``path`` lists the segment names in replay
    order; ``not_replayed`` counts the archived segments from the backup's start on that replay does not read
    (a parent's copy of the segment a timeline began in, branches abandoned by earlier restores).
    """
    names = set(names)
    files = {}
    for name in names:
        parsed = segment_of(name, seg_size)
        if parsed:
            files.setdefault(parsed[1], {})[parsed[0]] = name
    start_tli = int(backup['timeline'])
    start = segment_of(backup['wal_start'], seg_size)[1]
    target = newest_timeline(start_tli, names)
    history = '%08X.history' % target
    ranges = timeline_ranges(target, read_history(history) if history in names else '', history)
    by_tli = dict((r['tli'], r) for r in ranges)

    # The backup must lie on the target's history, or PostgreSQL stops: "requested timeline N is not a
    # child of this server's history" (an abandoned timeline left in the archive by a rollback).
    not_child = None
    stop_tli = int(backup.get('stop_timeline') or start_tli)
    start_lsn = _catalog.parse_lsn(backup['start_lsn']) if backup.get('start_lsn') else start * seg_size
    stop_lsn = _catalog.parse_lsn(backup['stop_lsn']) if backup.get('stop_lsn') else start_lsn
    for tli, lsn in ((start_tli, start_lsn), (stop_tli, stop_lsn)):
        covered = by_tli.get(tli)
        if covered is None:
            not_child = ('the newest timeline in the archive, %d (%s), does not descend from timeline %d of backup %s'
                         % (target, history, tli, backup.get('id')))
            break
        if covered['end'] is not None and lsn > covered['end']:
            not_child = ('the newest timeline in the archive, %d (%s), left timeline %d at %s, before backup %s reached %s '
                         'on it' % (target, history, tli, _catalog.format_lsn(covered['end']), backup.get('id'),
                                    _catalog.format_lsn(lsn)))
            break

    path, current, segno = [], 0, start
    while not_child is None:
        chosen = None
        for covered in reversed(ranges):
            if covered['tli'] < current:
                break
            if covered['begin'] is not None and segno < covered['begin'] // seg_size:
                continue
            if covered['tli'] in files.get(segno, {}):
                chosen = covered['tli']
                break
        if chosen is None:
            break
        path.append(files[segno][chosen])
        current = chosen
        segno += 1
    last_segno = start + len(path) - 1

    def on_history(tli, number):
        covered = by_tli.get(tli)
        if covered is None:
            return False
        if covered['begin'] is not None and number < covered['begin'] // seg_size:
            return False
        return covered['end'] is None or number <= lsn_segment(covered['end'], seg_size, end=True)

    stranded, not_replayed, unfollowed, replayed = [], 0, [], set(path)
    for number in sorted(files):
        for tli, name in sorted(files[number].items()):
            if tli > target:
                unfollowed.append(name)
            elif number > last_segno and not_child is None and on_history(tli, number):
                stranded.append(name)
            elif number >= start and name not in replayed:
                not_replayed += 1
    unfollowed += sorted(n for n in names if HISTORY_RE.match(n) and int(n[:8], 16) > target + 1)
    newest_segno = max([segment_of(n, seg_size)[1] for n in stranded] + [last_segno])
    gaps = [expected_name(ranges, n, seg_size) for n in range(last_segno + 1, newest_segno)
            if not any(on_history(tli, n) for tli in files.get(n, {}))]
    if stranded and not gaps:
        gaps = [expected_name(ranges, last_segno + 1, seg_size)]  # archived only on a branch replay does not take
    if backup.get('wal_stop'):
        backup_end = segment_of(backup['wal_stop'], seg_size)[1]
    else:
        backup_end = lsn_segment(stop_lsn, seg_size, end=True)
    return dict(timeline=target, timelines=[r['tli'] for r in ranges], ranges=ranges, seg_size=seg_size, start_segno=start,
                path=path, last_segno=last_segno, newest=stranded[-1] if stranded else (path[-1] if path else None),
                gaps=gaps, stranded=stranded, unfollowed=sorted(set(unfollowed)), not_replayed=not_replayed,
                backup_end=backup_end, not_child=not_child, backup_id=backup.get('id'))


def expected_name(ranges, segno, seg_size):
    """The name of segment ``segno`` on the newest timeline of ``ranges`` that has begun by then."""
    tli = [r['tli'] for r in ranges if r['begin'] is None or segno >= r['begin'] // seg_size][-1]
    return _catalog.wal_file_name(tli, segno, seg_size)


def replay_name(plan, segno):
    """The segment name replay reads for ``segno`` (on its path), or the one it asks for there."""
    index = segno - plan['start_segno']
    if 0 <= index < len(plan['path']):
        return plan['path'][index]
    return expected_name(plan['ranges'], segno, plan['seg_size'])


def plan_problems(plan, to_end, archive='the WAL archive'):
    """What makes ``plan`` unable to reach its target: ``[(kind, message)]``, each with cause and fix.

    Every restore needs the backup's own WAL and the backup on the recovery timeline; a restore to the end
    (``to_end``) needs every archived segment of the recovery path reachable, and no timeline it cannot follow."""
    problems = []
    if plan['not_child']:
        problems.append(('timeline', 'PostgreSQL would stop with "requested timeline %d is not a child of this server\'s '
                                     'history": %s. If timeline %d is the live one (a point-in-time restore made it), take '
                                     'a new full backup and restore that; if a rollback abandoned it, move its history file '
                                     'and segments out of %s (docs/OPERATIONS.md, Roll back)'
                         % (plan['timeline'], plan['not_child'], plan['timeline'], archive)))
        return problems
    if plan['last_segno'] < plan['backup_end']:
        missing = replay_name(plan, plan['last_segno'] + 1)
        problems.append(('wal_missing', 'the WAL of backup %s itself is incomplete: %s is not in %s, so the restored '
                                        'data could never become consistent. Put the segment back (from S3 or another '
                                        'copy), or restore another backup' % (plan['backup_id'], missing, archive)))
        return problems
    if to_end and plan['stranded']:
        problems.append(('wal_gap', 'the archive has a gap: replay from backup %s would stop after %s because %s is '
                                    'missing, but archived WAL of the recovery path (timeline %s) goes on to %s (%d '
                                    'segment(s) after the gap) and would be lost silently. Put the missing segment(s) '
                                    'back into %s (from S3 or another copy), or restore to a point before the gap with '
                                    'target_time' % (plan['backup_id'], replay_name(plan, plan['last_segno']),
                                                     _shown(plan['gaps']), '/'.join(str(t) for t in plan['timelines']),
                                                     plan['newest'], len(plan['stranded']), archive)))
    if to_end and plan['unfollowed']:
        problems.append(('timeline', 'the archive holds %s of a timeline after %d, but recovery follows timelines only '
                                     'through an unbroken run of history files and stops at %d (%08X.history is '
                                     'missing), so that WAL would not be replayed. Put the missing history file back, or '
                                     'move the files of the abandoned timeline out of %s'
                         % (_shown(plan['unfollowed']), plan['timeline'], plan['timeline'], plan['timeline'] + 1, archive)))
    return problems


def read_page_header(path):
    """The long page header at the start of a WAL segment file, as a dict; None when the file is too short."""
    with open(path, 'rb') as handle:
        raw = handle.read(_LONG_HEADER.size)
    if len(raw) < _LONG_HEADER.size:
        return None
    fields = _LONG_HEADER.unpack(raw)
    return dict(zip(('magic', 'info', 'tli', 'pageaddr', 'rem_len', 'sysid', 'seg_size', 'blcksz'), fields))


def user_ids(user):
    """``(uid, gids)`` of an OS user, or None when this system does not know it."""
    try:
        record = pwd.getpwnam(user)
    except KeyError:
        return None
    gids = set([record.pw_gid] + [g.gr_gid for g in grp.getgrall() if user in g.gr_mem])
    return record.pw_uid, gids


def readable_by(stat, ids):
    """Whether a file with ``stat`` is readable by ``ids`` (uid, gids) through its mode bits."""
    uid, gids = ids
    if uid == 0:
        return True
    if stat.st_uid == uid:
        return bool(stat.st_mode & 0o400)
    if stat.st_gid in gids:
        return bool(stat.st_mode & 0o040)
    return bool(stat.st_mode & 0o004)


def segment_problems(path, name, plan, system_identifier=None, major=None, sha256=None, reader=None):
    """Why the segment file ``path`` cannot be the segment ``name`` of this cluster: its size, whether
    ``reader`` (``(user, uid, gids)``, who runs restore_command) may read it, its first page header (magic,
    long-header flag, page address, timeline, system identifier, segment size), and the recorded SHA-256
    when one is known. Returns a list of problems (empty: fine)."""
    seg_size = plan['seg_size']
    tli, segno = segment_of(name, seg_size)
    stat = os.stat(path)
    size = stat.st_size
    if reader is not None and not readable_by(stat, reader[1:]):
        return ['%s: user %s cannot read it (owner uid %d, mode %04o): chown it to %s or make it readable'
                % (name, reader[0], stat.st_uid, stat.st_mode & 0o7777, reader[0])]
    if size != seg_size:
        return ['%s: %d bytes, a WAL segment has %d (truncated or not a segment)' % (name, size, seg_size)]
    header = read_page_header(path)
    problems = []
    magic = XLOG_PAGE_MAGIC.get(major)
    if magic is not None and header['magic'] != magic:
        problems.append('%s: page magic %04X, PostgreSQL %s writes %04X (zeroed, or not WAL of this version)'
                        % (name, header['magic'], major, magic))
    if not header['info'] & XLP_LONG_HEADER:
        problems.append('%s: the first page has no long header (not the start of a segment)' % name)
    if header['pageaddr'] != segno * seg_size:
        problems.append('%s: its first page is WAL position %s, not %s (a renamed or misplaced file)'
                        % (name, _catalog.format_lsn(header['pageaddr']), _catalog.format_lsn(segno * seg_size)))
    # The first segment of a timeline is a copy of its parent's up to the switch: its first page may be older.
    first_of_timeline = [r for r in plan['ranges'] if r['tli'] == tli and r['begin'] is not None
                         and r['begin'] // seg_size == segno]
    allowed = [t for t in plan['timelines'] if t <= tli] if first_of_timeline else [tli]
    if header['tli'] not in allowed:
        expected = ' or '.join(str(t) for t in allowed)
        problems.append('%s: its first page is of timeline %d, expected %s' % (name, header['tli'], expected))
    if header['info'] & XLP_LONG_HEADER:
        if header['seg_size'] != seg_size:
            problems.append('%s: written with segment size %d, the backup uses %d' % (name, header['seg_size'], seg_size))
        if system_identifier and str(header['sysid']) != str(system_identifier):
            problems.append('%s: from database system %s, the backup is of %s (another cluster archived here?)'
                            % (name, header['sysid'], system_identifier))
    if sha256 and not problems:
        digest, dummy = _catalog.hash_file(path)
        if digest != sha256:
            problems.append('%s: SHA-256 %s, recorded %s' % (name, digest, sha256))
    return problems


def check_replay(backup, wal_dirs, to_end, more_names=(), recorded=None, major=None, run_as=None):
    """The WAL check before a restore: plan the replay over ``wal_dirs`` (restore_command's order: the archive,
    then WAL fetched from S3) and ``more_names`` (files S3 has that are not fetched yet, in check mode), refuse
    what cannot reach the target, then check every segment file replay will read (``segment_problems``, with
    the SHA-256 in ``recorded`` ``{name: sha256}`` where the catalog has one; those in the archive readable by
    ``run_as``).

    Segments after the backup's own WAL are refused only for a restore to the end: a point-in-time restore
    may stop before them (and PostgreSQL says so when it cannot reach its target). Returns the plan, with
    ``checked``, ``hashed``, ``unchecked`` (not local yet) and ``warnings``; raises BackupError (kind
    ``wal_gap``, ``wal_missing``, ``timeline`` or ``wal_damaged``) when the restore cannot reach its target.
    """
    seg_size = int(backup.get('wal_segment_size') or 16 * 1024 * 1024)
    located = {}
    for directory in wal_dirs:
        for name in os.listdir(directory) if os.path.isdir(directory) else []:
            located.setdefault(name, os.path.join(directory, name))
    names = set(located) | set(more_names)

    def read_history(name):
        if name not in located:
            raise BackupError('%s is in S3 only and was not fetched: run the restore without check mode' % name)
        with open(located[name]) as handle:
            return handle.read()
    archive = wal_dirs[0]
    plan = plan_replay(names, read_history, backup, seg_size)
    problems = plan_problems(plan, to_end, archive)
    plan['warnings'] = []
    if not to_end and plan['stranded']:
        plan['warnings'].append('The WAL archive has a gap after backup %s: %s missing, archived WAL goes on to %s. A '
                                'target after the gap cannot be reached' % (backup.get('id'), _shown(plan['gaps']),
                                                                            plan['newest']))
    if problems:
        raise BackupError('Refusing to restore to %s: %s. Nothing was changed'
                          % ('the end of the archived WAL' if to_end else 'the target',
                             '; '.join(text for kind, text in problems)), kind=problems[0][0])
    recorded = recorded or {}
    ids = user_ids(run_as) if run_as else None
    reader = (run_as,) + ids if ids else None
    damaged, checked, hashed, unchecked = [], 0, 0, 0
    for index, name in enumerate(plan['path']):
        if name not in located:
            unchecked += 1
            continue
        # Files fetched from S3 are handed to run_as by restore_backup; those in the archive must be readable already.
        in_archive = located[name] == os.path.join(archive, name)
        found = segment_problems(located[name], name, plan, backup.get('system_identifier'), major, recorded.get(name),
                                 reader if in_archive else None)
        checked += 1
        hashed += 1 if recorded.get(name) else 0
        if found and (to_end or plan['start_segno'] + index <= plan['backup_end']):
            damaged.extend(found)
        elif found:
            plan['warnings'].append('A segment after backup %s is damaged or unreadable (%s): a target after it cannot be '
                                    'reached'
                                    % (backup.get('id'), found[0]))
    plan.update(checked=checked, hashed=hashed, unchecked=unchecked)
    if damaged:
        raise BackupError('Refusing to restore: WAL that replay would read is damaged or unreadable (%s%s). Nothing '
                          'was changed. Put intact, readable copies into %s (from S3 or another copy), or restore to a '
                          'point before the damage with target_time'
                          % ('; '.join(damaged[:_SHOWN]), '; ...' if len(damaged) > _SHOWN else '', archive),
                          kind='wal_damaged')
    return plan


def replay_summary(plan):
    """What the module returns of a replay plan (``wal_check``): no per-segment list."""
    return dict(timeline=plan['timeline'], timelines=plan['timelines'], first=plan['path'][0] if plan['path'] else None,
                last=plan['path'][-1] if plan['path'] else None, segments=len(plan['path']), newest=plan['newest'],
                gaps=plan['gaps'], checked=plan.get('checked', 0), hashed=plan.get('hashed', 0),
                unchecked=plan.get('unchecked', 0), not_replayed=plan['not_replayed'])


def replay_end(data_dir):
    """Where replay ended in a promoted data directory: ``dict(lsn, timeline, new_timeline)`` from the history
    file the promotion wrote (its last switch point is the end of the last record replayed), or None."""
    pg_wal = os.path.join(data_dir, 'pg_wal')
    names = sorted(n for n in os.listdir(pg_wal) if HISTORY_RE.match(n)) if os.path.isdir(pg_wal) else []
    if not names:
        return None
    with open(os.path.join(pg_wal, names[-1])) as handle:
        entries = parse_history(handle.read(), names[-1])
    if not entries:
        return None
    return dict(lsn=_catalog.format_lsn(entries[-1][1]), timeline=entries[-1][0], new_timeline=int(names[-1][:8], 16))


def replay_shortfall(plan, end_lsn, log_text):
    """Why replay that ended at ``end_lsn`` (text) did not reach the end of the WAL ``plan`` found, or None.

    It fell short when it ended in a segment before the newest one of the plan, or when the startup process
    complained about a damaged record inside the archived WAL (replay then ends early inside a segment)."""
    seg_size = plan['seg_size']
    end = _catalog.parse_lsn(end_lsn)
    end_segno = lsn_segment(end, seg_size, end=True)
    limit = (max(plan['last_segno'], end_segno) + 1) * seg_size
    damage = []
    for line in (log_text or '').splitlines():
        if 'redo done at' in line:
            break
        match = (_LSN_AT.search(line) or _LSN_IN_TEXT.search(line)) if _WAL_DAMAGE.search(line) else None
        if match and _catalog.parse_lsn(match.group(1)) < limit:
            damage.append(line.split('LOG:', 1)[-1].strip())
    said = ' (the server said: %s)' % damage[-1] if damage else ''
    if end_segno < plan['last_segno']:
        return ('replay ended at %s, in %s, and did not go on into %s%s, but the archive holds WAL up to %s: that '
                'segment is damaged or unreadable. Replace it with an intact copy (S3, another archive), or restore to '
                'a point before it with target_time'
                % (end_lsn, replay_name(plan, end_segno), replay_name(plan, end_segno + 1), said, plan['newest']))
    if damage:
        return ('replay ended at %s on a damaged WAL record inside %s%s. Replace that segment with an intact copy, or '
                'restore to a point before it with target_time' % (end_lsn, replay_name(plan, end_segno), said))
    return None


def mark_history_for_archiving(data_dir, archive_dir, run_as):
    """Let the live server archive the timeline history files of a restored directory: ``archive_status/
    <name>.ready`` for each history file in ``pg_wal`` that ``archive_dir`` lacks (the recovery ran with
    archiving off). Without its history the new timeline is invisible to the next restore, which would then
    choose the same timeline again and collide with its archived segments. A history file of the same name with
    other content in the archive means another server took that timeline: raises (kind ``timeline``).
    Returns the names marked."""
    pg_wal = os.path.join(data_dir, 'pg_wal')
    marked = []
    for name in sorted(n for n in os.listdir(pg_wal) if HISTORY_RE.match(n)):
        ours, theirs = os.path.join(pg_wal, name), os.path.join(archive_dir, name)
        if os.path.exists(theirs):
            if _catalog.hash_file(ours) != _catalog.hash_file(theirs):
                raise BackupError('The WAL archive %s already holds %s with other content (another server took that '
                                  'timeline since the restore began): restore again' % (archive_dir, name), kind='timeline')
            continue
        ready = os.path.join(pg_wal, 'archive_status', name + '.ready')
        with open(ready, 'w'):
            pass
        _chown(ready, run_as)
        marked.append(name)
    return marked


# ---------------------------------------------------------------------------------------------
# Before a restore: hashes, WAL from S3, the live data directory

HISTORY_RE = re.compile(r'^[0-9A-F]{8}\.history$')
S3_WAL_AREA = 'wal'


def wal_names_since(names, since):
    """WAL archive files at or after the segment ``since`` (by position, any timeline), plus every
    timeline history file, sorted. ``since`` None: every WAL file."""
    limit = _catalog.wal_position(since) if since else None
    found = []
    for name in names:
        position = _catalog.wal_position(name)
        if HISTORY_RE.match(name) or position is not None and (limit is None or position >= limit):
            found.append(name)
    return sorted(found)


def oldest_wal_start(entries):
    """The oldest ``wal_start`` of ``entries`` by position, or None."""
    starts = [e['wal_start'] for e in entries if e.get('wal_start')]
    return min(starts, key=_catalog.wal_position) if starts else None


def check_chain_hashes(root, members):
    """Re-hash every backup of the chain against the catalog; raise (kind ``checksum``) on any difference.
    (Of an unsealed backup only the sizes and the manifest's hash: verify_backup's pg_verifybackup, which
    every restore runs next, checks its files against that manifest.)

    Runs before a restore touches anything: a damaged backup is refused, not half restored."""
    problems = []
    for member in members:
        problems.extend('%s: %s' % (member['id'], p) for p in _catalog.check_hashes(os.path.join(root, member['id']), member))
    if problems:
        raise BackupError('Refusing to restore: backup files differ from the SHA-256 the catalog recorded (%s%s). Nothing '
                          'was changed; restore another backup (backup_id, target_time) or fetch an intact copy'
                          % ('; '.join(problems[:5]), '; ...' if len(problems) > 5 else ''), kind='checksum')
    return len(members)


def upload_wal(store, archive_dir, since, required=()):
    """Copy the archived WAL from ``since`` on (and history files) to ``<prefix>/postgres/wal/`` in S3,
    skipping what is there already. ``required`` must all be in S3 afterwards (raises otherwise).
    Returns ``dict(uploaded, present)`` counts and the first/last uploaded names."""
    remote = store.list_area(S3_WAL_AREA)
    local = wal_names_since(os.listdir(archive_dir), since)
    result = store.put_area(S3_WAL_AREA, archive_dir, [n for n in local if n not in remote], present=remote)
    have = set(remote) | set(result['uploaded'])
    missing = [n for n in required if n not in have]
    if missing:
        raise BackupError('WAL file(s) %s the backup needs are neither in %s nor in S3: the S3 copy could not be '
                          'restored; take a new backup' % (', '.join(missing), archive_dir), kind='wal_missing')
    return dict(uploaded=len(result['uploaded']), present=len(local) - len(result['uploaded']),
                first=result['uploaded'][0] if result['uploaded'] else None,
                last=result['uploaded'][-1] if result['uploaded'] else None)


def s3_only_wal(store, archive_dir, since):
    """The WAL from ``since`` on (and history files) that S3 has and ``archive_dir`` lacks, sorted."""
    local = set(os.listdir(archive_dir)) if os.path.isdir(archive_dir) else set()
    return [n for n in wal_names_since(store.list_area(S3_WAL_AREA), since) if n not in local]


def fetch_wal(store, archive_dir, dest, since, names=None):
    """Download into ``dest`` the WAL from ``since`` on that S3 has and ``archive_dir`` lacks (or ``names``,
    a list from s3_only_wal); return the names."""
    wanted = s3_only_wal(store, archive_dir, since) if names is None else names
    return store.get_area(S3_WAL_AREA, wanted, dest)


def read_postmaster_pid(data_dir):
    """Fields of ``postmaster.pid`` (pid, data_dir, start, port, socket_dir, listen, status) or None."""
    try:
        with open(os.path.join(data_dir, 'postmaster.pid')) as handle:
            lines = handle.read().splitlines()
    except (IOError, OSError):
        return None
    names = ('pid', 'data_dir', 'start', 'port', 'socket_dir', 'listen', 'shmem', 'status')
    fields = dict((name, lines[i].strip() if i < len(lines) else None) for i, name in enumerate(names))
    try:
        fields['pid'] = int(fields['pid'])
    except (TypeError, ValueError):
        fields['pid'] = None
    return fields


def local_postmaster_alive(pid):
    """Whether ``pid`` is a live postgres process in this PID namespace."""
    if not pid:
        return False
    try:
        with open('/proc/%d/comm' % pid) as handle:
            return handle.read().strip() in ('postgres', 'postmaster')
    except (IOError, OSError):
        return False


def server_answers(host, port, timeout=3.0):
    """Whether something accepts TCP connections at host:port (a running server)."""
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except (OSError, ValueError):
        return False
    sock.close()
    return True


def live_dir_state(data_dir, login_host=None, login_port=5432, answers=server_answers, alive=local_postmaster_alive):
    """Decide whether the live data directory may be replaced; ``dict(ok, why, postmaster_pid)``.

    ``postmaster.pid`` exists while a server runs and stays after a crash. Its PID means nothing
    from another container (PID namespaces), so: a live postgres process here, or a server answering
    at ``login_host`` (the stack's address of this data directory), means running; a pid file with
    neither is only accepted when ``login_host`` was given to check (a crashed server)."""
    pid = read_postmaster_pid(data_dir)
    if login_host and answers(login_host, login_port):
        return dict(ok=False, postmaster_pid=pid,
                    why='a PostgreSQL server answers at %s:%s: stop it first (the restore playbook stops the container)'
                    % (login_host, login_port))
    if pid is None:
        return dict(ok=True, postmaster_pid=None, why=None)
    if alive(pid['pid']):
        return dict(ok=False, postmaster_pid=pid,
                    why='postmaster.pid in %s names process %s, a running postgres: stop the server first'
                    % (data_dir, pid['pid']))
    if not login_host:
        return dict(ok=False, postmaster_pid=pid,
                    why='postmaster.pid in %s (pid %s, status %s) says a server runs or crashed, and without login_host '
                        'the module cannot check which: stop the server, or give login_host/login_port of the stopped '
                        'server so it can check that nothing answers there' % (data_dir, pid['pid'], pid['status']))
    return dict(ok=True, postmaster_pid=pid, why=None)


def live_names(data_dir, backup_id, now):
    """Sibling names for a live restore: where the restored copy is built, and where the old data goes."""
    parent, base = os.path.split(os.path.normpath(data_dir))
    stamp = now.strftime('%Y%m%dT%H%M%SZ')
    return (os.path.join(parent, '%s.restore-%s-%s' % (base, backup_id, stamp)),
            os.path.join(parent, '%s.before-%s-%s' % (base, backup_id, stamp)))


def swap_live(data_dir, restored, moved_aside):
    """Move the current data directory aside and the restored one into its place: two renames in
    one directory (one file system), then an fsync of that directory. Returns where the old data is
    (None when there was none)."""
    parent = os.path.dirname(os.path.normpath(data_dir))
    old = None
    if os.path.lexists(data_dir):
        os.rename(data_dir, moved_aside)
        old = moved_aside
    try:
        os.rename(restored, data_dir)
    except OSError:
        if old:
            os.rename(moved_aside, data_dir)
        raise
    fsync_path(parent, directory=True)
    return old
