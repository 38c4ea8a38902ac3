# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The backup catalog: ids, entries, atomic publish, listing, retention, restore choice, hashes.

Pure logic plus plain file operations, shared by pg_backup and redis_snapshot (the lock of a root,
listing, verify selection and recording, retention). No subprocess, no database: everything here
is unit-tested.

Layout of a backup root::

    <root>/.lock                 flock held by a module that writes into the root
    <root>/.readers              flock held shared by restores, exclusive by prune
    <root>/.tmp-<id>/            a backup being written (never listed)
    <root>/.scratch-<name>/      scratch space of verify/restore (never listed)
    <root>/<id>/                 a published backup ...
    <root>/<id>/catalog.json     ... complete only once this marker exists (written last)

A backup is listed only when its ``catalog.json`` exists, parses and passes ``check_entry`` (the keys
ordering, chains, retention and restore read, with the right types). An entry that fails is
*unreadable*: reported with the file, the key and the fix, never ordered, chained, restored or
removed, and retention keeps what it may need. An interrupted backup is
therefore never listed, wherever it stopped: before the rename it is a ``.tmp-*`` directory,
after the rename but before the marker it is an id directory without marker. Both are
*leftovers*: reported by listing, removed only when asked and only when older than a grace period.

Backups are ordered by their recorded stop time (server clock), never by name: ids sort by the
client's clock at start, which says nothing about when a backup became consistent.

**Authenticated entries.** With a catalog key (``use_key``: the modules' ``catalog_key_file``, from the
stack's secrets), every entry written carries ``hmac``: HMAC-SHA256 of the entry's canonical JSON
(every other key, sorted, compact) under that key. An entry read without it, or whose ``hmac`` does not
match, is unreadable like a broken one: an edited ``catalog.json``, or a file swapped together with the
hash the entry records for it, is refused (``mac_problem``). Entries written before the key existed are
signed once by ``sign_unsigned`` (the modules' ``action=sign``), never implicitly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import fcntl
import hashlib
import hmac
import json
import os
import re
import shutil
import time

from ansible_collections.psscript.infra.plugins.module_utils._files import fsync_path, hash_file, make_directory, write_text_atomic

CATALOG_FILE = 'catalog.json'
CATALOG_FORMAT = 1
TMP_PREFIX = '.tmp-'
SCRATCH_PREFIX = '.scratch-'
LOCK_FILE = '.lock'
READERS_LOCK_FILE = '.readers'
TYPES = ('full', 'incremental')
ID_RE = re.compile(r'^(?P<stamp>\d{8}T\d{6}Z)-(?P<type>full|incremental)$')
WAL_FILE_RE = re.compile(r'^(?P<tli>[0-9A-F]{8})(?P<log>[0-9A-F]{8})(?P<seg>[0-9A-F]{8})'
                         r'(?P<suffix>\.partial|\.[0-9A-F]{8}\.backup)?$')
# The entry key holding the entry's HMAC, and the environment variable naming the key file (the backup
# container sets it for cron jobs and docker exec alike; catalog_key_file overrides it).
MAC_KEY = 'hmac'
# An entry with ``sealed: false`` records the SHA-256 of its small files only (pg_backup's plain backups, until
# their first verify hashes the rest: see _pgbackup); a verify outcome carries the map that seals it under SEAL_KEY.
SEALED_KEY = 'sealed'
SEAL_KEY = 'seal'
KEY_FILE_ENV = 'PSSCRIPT_CATALOG_KEY_FILE'
# The key in use (use_key): None = entries are neither signed nor checked. One per process: a module
# run, or one script run.
_KEY = {'key': None}


class CatalogError(Exception):
    """A catalog problem with an operator-readable message (cause and fix)."""

    def __init__(self, msg):
        super(CatalogError, self).__init__(msg)
        self.msg = msg


class BackupError(Exception):
    """A backup failure with an operator-readable message; ``kind`` lets callers react (fallback)."""

    def __init__(self, msg, kind='error'):
        super(BackupError, self).__init__(msg)
        self.msg = msg
        self.kind = kind


class RootLock(object):
    """A non-blocking flock on ``<root>/.lock`` held while a job writes into the root.

    ``readers=True`` locks ``<root>/.readers`` instead: restores hold it shared for their whole run
    (they read backups and WAL), prune holds it exclusive (it deletes them), so a restore and a
    cleanup never overlap, while backups (which only add) run beside a restore.
    """

    def __init__(self, root, readers=False, shared=False):
        self.path = os.path.join(root, READERS_LOCK_FILE if readers else LOCK_FILE)
        self.readers = readers
        self.shared = shared
        self.handle = None

    def acquire(self):
        self.handle = open(self.path, 'a+')
        try:
            fcntl.flock(self.handle.fileno(), (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except (IOError, OSError):
            self.handle.seek(0)
            holder = self.handle.read().strip() or 'unknown'
            self.handle.close()
            self.handle = None
            if self.shared:
                raise BackupError('A cleanup (prune) holds %s (pid %s) and is deleting old backups: wait for it to '
                                  'finish, then retry' % (self.path, holder), kind='locked')
            if self.readers:
                raise BackupError('A restore is reading these backups (%s, pid %s): old backups are removed after it '
                                  'ends; retry then' % (self.path, holder), kind='locked')
            raise BackupError('Another backup job holds %s (pid %s): wait for it to finish, then retry'
                              % (self.path, holder), kind='locked')
        if not self.shared:
            self.handle.seek(0)
            self.handle.truncate()
            self.handle.write(str(os.getpid()))
            self.handle.flush()
        return self

    def release(self):
        if self.handle is not None:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


# ---------------------------------------------------------------------------------------------
# Time and ids


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def format_time(moment):
    """ISO 8601 in UTC with microseconds and a Z: sortable as text, exact as a value."""
    if moment.tzinfo is None:
        raise ValueError('refusing a naive datetime: %r' % (moment,))
    return moment.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def parse_time(text):
    """Parse an ISO 8601 time that names its offset (``Z``, ``+00:00``, ``+02``); naive is refused.

    A time without offset is ambiguous (the server would read it in its own TimeZone), so the
    caller must say which one it means.
    """
    if isinstance(text, datetime.datetime):
        value = text
    else:
        raw = str(text).strip()
        if raw.endswith('Z') or raw.endswith('z'):
            raw = raw[:-1] + '+00:00'
        raw = raw.replace(' ', 'T', 1) if 'T' not in raw else raw
        # Python < 3.11 wants "+HH:MM"; accept "+HH" and "+HHMM" as PostgreSQL prints them.
        match = re.match(r'^(.*[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)([+-])(\d{2})(?::?(\d{2}))?$', raw)
        if match:
            raw = '%s%s%s:%s' % (match.group(1), match.group(2), match.group(3), match.group(4) or '00')
        frac = re.search(r'\.(\d+)', raw)
        if frac and len(frac.group(1)) != 6:
            digits = (frac.group(1) + '000000')[:6]
            raw = raw[:frac.start(1)] + digits + raw[frac.end(1):]
        try:
            value = datetime.datetime.fromisoformat(raw)
        except ValueError:
            raise CatalogError("Cannot read the time '%s': use ISO 8601 with an offset, for example "
                               "2025-01-31T13:45:00Z or 2025-01-31 14:45:00+01:00" % text)
    if value.tzinfo is None:
        raise CatalogError("The time '%s' has no UTC offset: add one (Z or +HH:MM) so it is not read in "
                           "another time zone" % text)
    return value.astimezone(datetime.timezone.utc)


def new_backup_id(backup_type, now=None):
    """``YYYYmmddTHHMMSSZ-<type>``: sortable UTC start stamp plus the type, a valid directory name."""
    if backup_type not in TYPES:
        raise CatalogError('Unknown backup type %r: use one of %s' % (backup_type, ', '.join(TYPES)))
    moment = (now or utc_now()).astimezone(datetime.timezone.utc)
    return '%s-%s' % (moment.strftime('%Y%m%dT%H%M%SZ'), backup_type)


def is_backup_id(name):
    return bool(ID_RE.match(name or ''))


# ---------------------------------------------------------------------------------------------
# LSNs and WAL file names (PostgreSQL)


def parse_lsn(text):
    """``'16/B374D848'`` -> int."""
    match = re.match(r'^\s*([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})\s*$', str(text))
    if not match:
        raise CatalogError('Not an LSN: %r' % (text,))
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(value):
    return '%X/%X' % (value >> 32, value & 0xFFFFFFFF)


def _segments_per_id(seg_size):
    if seg_size <= 0 or seg_size & (seg_size - 1):
        raise CatalogError('WAL segment size must be a power of two, got %r' % (seg_size,))
    return 0x100000000 // seg_size


def wal_file_name(timeline, segno, seg_size):
    per_id = _segments_per_id(seg_size)
    return '%08X%08X%08X' % (timeline, segno // per_id, segno % per_id)


def wal_segments(timeline, start_lsn, stop_lsn, seg_size):
    """Names of the WAL segments holding [start_lsn, stop_lsn) on one timeline.

    The stop LSN is the end of the last record; when it falls exactly on a segment boundary the
    last record ended in the previous segment (PostgreSQL's XLByteToPrevSeg).
    """
    if isinstance(start_lsn, str):
        start_lsn = parse_lsn(start_lsn)
    if isinstance(stop_lsn, str):
        stop_lsn = parse_lsn(stop_lsn)
    if stop_lsn < start_lsn:
        raise CatalogError('WAL range ends (%s) before it starts (%s)' % (format_lsn(stop_lsn), format_lsn(start_lsn)))
    first = start_lsn // seg_size
    last = (stop_lsn - 1) // seg_size if stop_lsn > start_lsn else first
    return [wal_file_name(timeline, segno, seg_size) for segno in range(first, last + 1)]


def wal_position(name):
    """The position part of a WAL file name (log + seg), comparable across timelines, or None."""
    match = WAL_FILE_RE.match(name)
    if not match:
        return None
    return match.group('log') + match.group('seg')


def wal_files_to_remove(names, oldest_needed):
    """WAL archive files that lie wholly before ``oldest_needed`` (a segment name), sorted.

    Compared by position (log, seg), not by full name: the timeline comes first in the name, so
    ``000000020000000000000003`` sorts after ``000000010000000000000009`` although it is older.
    Timeline history files (``*.history``) and anything that is not a WAL file are always kept.
    """
    if not oldest_needed:
        return []
    limit = wal_position(oldest_needed)
    if limit is None:
        raise CatalogError('Not a WAL segment name: %r' % (oldest_needed,))
    return sorted(name for name in names if wal_position(name) is not None and wal_position(name) < limit)


# ---------------------------------------------------------------------------------------------
# Reading PostgreSQL backup metadata


def parse_backup_label(text):
    """Fields of a ``backup_label`` file: start LSN/WAL file, timeline, label, incremental parent LSN."""
    fields = {}
    for line in text.splitlines():
        if ':' in line:
            key, value = line.split(':', 1)
            fields[key.strip()] = value.strip()
    match = re.match(r'^([0-9A-F]+/[0-9A-F]+) \(file ([0-9A-F]{24})\)$', fields.get('START WAL LOCATION', ''))
    if not match:
        raise CatalogError('backup_label has no readable START WAL LOCATION: the backup is damaged')
    result = dict(
        start_lsn=match.group(1),
        start_wal=match.group(2),
        timeline=int(fields.get('START TIMELINE', '0') or 0),
        label=fields.get('LABEL'),
        backup_from=fields.get('BACKUP FROM'),
    )
    if 'INCREMENTAL FROM LSN' in fields:
        result['incremental_from_lsn'] = fields['INCREMENTAL FROM LSN']
    return result


def parse_manifest(text):
    """System identifier and WAL ranges of a ``backup_manifest`` (version 1 or 2)."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise CatalogError('backup_manifest is not valid JSON (%s): the backup is damaged' % err)
    ranges = []
    for item in data.get('WAL-Ranges') or []:
        ranges.append(dict(timeline=int(item['Timeline']), start_lsn=item['Start-LSN'], end_lsn=item['End-LSN']))
    if not ranges:
        raise CatalogError('backup_manifest lists no WAL range: the backup is damaged')
    sysid = data.get('System-Identifier')
    return dict(
        manifest_version=data.get('PostgreSQL-Backup-Manifest-Version'),
        system_identifier=str(sysid) if sysid is not None else None,
        wal_ranges=ranges,
        file_count=len(data.get('Files') or []),
    )


def required_wal(wal_ranges, seg_size):
    """Every WAL file a backup needs to become consistent: its segments, plus history files past timeline 1."""
    names = []
    for item in wal_ranges:
        names.extend(wal_segments(item['timeline'], item['start_lsn'], item['end_lsn'], seg_size))
        if item['timeline'] > 1:
            names.append('%08X.history' % item['timeline'])
    seen = set()
    return [n for n in names if not (n in seen or seen.add(n))]


# ---------------------------------------------------------------------------------------------
# Files: hashing, fsync, atomic writes


def _walk_files(top):
    """Relative paths (with '/') of the regular files under top, sorted; symlinks are refused."""
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, top).replace(os.sep, '/')
            if os.path.islink(full):
                raise CatalogError('%s is a symbolic link; backups must hold plain files only '
                                   '(tablespaces are not supported)' % full)
            found.append(rel)
    return sorted(found)


def hash_tree(top, exclude=(CATALOG_FILE,)):
    """``{relative path: {'sha256': hex, 'size': bytes}}`` for every file under top."""
    result = {}
    for rel in _walk_files(top):
        if rel in exclude:
            continue
        digest, size = hash_file(os.path.join(top, rel))
        result[rel] = dict(sha256=digest, size=size)
    return result


def check_hashes(backup_path, entry):
    """Compare a backup directory with the files its entry records; return the problems found.

    Every recorded file must be there with its recorded size and, where the entry records one, its
    SHA-256; no other file may be there. The data files of an unsealed entry (``sealed``), which records
    no SHA-256 for them, are checked for presence and size only."""
    return _compare_files(backup_path, entry, False)[0]


def seal_files(backup_path, entry):
    """``check_hashes`` of an unsealed entry that also hashes the files it records no SHA-256 for:
    ``(problems, files)``, ``files`` being the map that seals it (``record_verify``), None on a problem."""
    problems, files = _compare_files(backup_path, entry, True)
    return problems, None if problems else files


def _compare_files(backup_path, entry, seal):
    """``(problems, {rel: {sha256, size}} of the files hashed)``; with ``seal`` every recorded file is hashed,
    else only those the entry records a SHA-256 for."""
    problems, files = [], {}
    recorded = entry.get('files') or {}
    if not recorded:
        return ['the catalog entry records no files: it cannot be checked'], files
    try:
        present = set(r for r in _walk_files(backup_path) if r != CATALOG_FILE)
    except (OSError, CatalogError) as err:
        return ['cannot read %s: %s' % (backup_path, err)], files
    for rel in sorted(recorded):
        want = recorded[rel]
        full = os.path.join(backup_path, rel)
        if rel not in present:
            problems.append('%s: missing' % rel)
            continue
        size = os.path.getsize(full)
        if size != want['size']:
            problems.append('%s: size %d, recorded %d' % (rel, size, want['size']))
            continue
        if 'sha256' not in want and not seal:
            continue
        digest, size = hash_file(full)
        files[rel] = dict(sha256=digest, size=size)
        if 'sha256' in want and digest != want['sha256']:
            problems.append('%s: SHA-256 %s, recorded %s' % (rel, digest, want['sha256']))
        elif size != want['size']:
            problems.append('%s: size %d while it was hashed, recorded %d' % (rel, size, want['size']))
    for rel in sorted(present - set(recorded)):
        problems.append('%s: not recorded in the catalog (added after the backup)' % rel)
    return problems, files


def fsync_tree(top):
    """fsync every file, then every directory bottom-up, then top itself."""
    for dirpath, dirnames, filenames in os.walk(top, topdown=False):
        for name in filenames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                fsync_path(full)
        fsync_path(dirpath, directory=True)


def write_json_atomic(path, data):
    """Write JSON to ``path`` atomically (temporary file, fsync, rename, fsync the directory)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + '\n')


# ---------------------------------------------------------------------------------------------
# The catalog key: HMAC of every entry


def read_key(path):
    """The catalog key from ``path`` (its stripped content, bytes); CatalogError when it is missing,
    unreadable, empty or shorter than 32 characters."""
    try:
        with open(path, 'rb') as handle:
            key = handle.read().strip()
    except (IOError, OSError) as err:
        raise CatalogError('Cannot read the catalog key %s (%s): it comes from the stack secrets '
                           '(backup_catalog_key); re-run site.yml to install it' % (path, getattr(err, 'strerror', None) or err))
    if len(key) < 32:
        raise CatalogError('The catalog key %s holds %d characters, fewer than 32: put a random key of at least 32 '
                           'characters there (the stack secret backup_catalog_key)' % (path, len(key)))
    return key


def use_key(key):
    """Sign every entry written from now on with ``key`` (bytes), and refuse every entry read without a
    matching ``hmac``; None: do neither (a stack without a catalog key)."""
    _KEY['key'] = key or None


def use_key_file(path=None, environ=None):
    """``use_key`` with the key read from ``path``, else from the file ``$PSSCRIPT_CATALOG_KEY_FILE``
    names; no key when neither is set. Returns whether a key is in use."""
    path = path or (os.environ if environ is None else environ).get(KEY_FILE_ENV)
    use_key(read_key(path) if path else None)
    return _KEY['key'] is not None


def entry_mac(entry, key):
    """HMAC-SHA256 (hex) of the entry's canonical JSON, its ``hmac`` left out."""
    body = dict((k, v) for k, v in entry.items() if k != MAC_KEY)
    text = json.dumps(body, sort_keys=True, separators=(',', ':'), ensure_ascii=True)
    return hmac.new(key, text.encode('ascii'), hashlib.sha256).hexdigest()


def sign_entry(entry):
    """Set (with a key) or drop (without one) the entry's ``hmac``, in place; returns the entry."""
    if _KEY['key'] is None:
        entry.pop(MAC_KEY, None)
    else:
        entry[MAC_KEY] = entry_mac(entry, _KEY['key'])
    return entry


def mac_problem(entry):
    """Why the entry is not authenticated by the key in use (a phrase), or None (it is, or no key)."""
    key = _KEY['key']
    if key is None or not isinstance(entry, dict):
        return None
    mac = entry.get(MAC_KEY)
    if not mac:
        return ('has no hmac: it was not written with the catalog key (written by hand, or before the key '
                'existed)')
    if not isinstance(mac, str) or not hmac.compare_digest(mac, entry_mac(entry, key)):
        return ('does not match its hmac: it was changed after it was written (an edited entry, or a file '
                'swapped together with the hash recorded for it)')
    return None


# ---------------------------------------------------------------------------------------------
# Entries and publishing


def make_entry(backup_id, backup_type, started_at, stopped_at, files, parent=None, **extra):
    """A catalog entry. ``extra`` carries service-specific fields (LSNs, versions, durations...)."""
    if backup_type not in TYPES:
        raise CatalogError('Unknown backup type %r' % (backup_type,))
    if backup_type == 'incremental' and not parent:
        raise CatalogError('An incremental backup needs a parent id')
    if backup_type == 'full' and parent:
        raise CatalogError('A full backup has no parent')
    entry = dict(
        format=CATALOG_FORMAT,
        id=backup_id,
        type=backup_type,
        parent=parent,
        started_at=format_time(started_at) if isinstance(started_at, datetime.datetime) else started_at,
        stopped_at=format_time(stopped_at) if isinstance(stopped_at, datetime.datetime) else stopped_at,
        files=files,
        bytes=sum(item['size'] for item in files.values()),
        verified=None,
        verified_at=None,
        verify_error=None,
    )
    entry.update(extra)
    return entry


def tmp_path(root, backup_id):
    return os.path.join(root, TMP_PREFIX + backup_id)


def start_backup(root, backup_id):
    """Create and return ``<root>/.tmp-<id>/``; refuse when the id is taken."""
    if not is_backup_id(backup_id):
        raise CatalogError('Invalid backup id %r' % (backup_id,))
    if os.path.exists(os.path.join(root, backup_id)):
        raise CatalogError('A backup named %s already exists in %s: wait a second and retry' % (backup_id, root))
    path = tmp_path(root, backup_id)
    os.mkdir(path, 0o700)
    return path


def publish(root, entry, staged, write_marker=None, synced=False):
    """Make a staged backup visible: fsync files and dirs, rename to ``<root>/<id>``, marker last.

    ``synced``: the caller has fsynced every file and directory of ``staged`` since its last write (as
    ``_files.SyncWhileWriting.finish`` does), so they are not fsynced again.
    ``write_marker`` is for tests (simulate a crash before the marker); normally write_entry.
    Returns the final path.
    """
    backup_id = entry['id']
    final = os.path.join(root, backup_id)
    if os.path.exists(final):
        raise CatalogError('Cannot publish %s: %s already exists' % (backup_id, final))
    if not synced:
        fsync_tree(staged)
    os.rename(staged, final)
    fsync_path(root, directory=True)
    (write_marker or write_entry)(final, entry)
    return final


def write_entry(backup_path, entry):
    """(Re)write the marker of a backup atomically, signed with the catalog key in use (``sign_entry``);
    used by publish and by verify to record results."""
    write_json_atomic(os.path.join(backup_path, CATALOG_FILE), sign_entry(entry))


def is_sealed(entry):
    """Whether the entry records the SHA-256 of every file (``sealed`` absent: written before unsealed
    entries existed, when every entry did)."""
    return entry.get(SEALED_KEY) is not False


def record_verify(root, entry, outcome):
    """Record a verify outcome (``dict(ok, problems)``) in the backup's catalog.json; return whether the
    recorded state changed. An unsealed entry whose verify passed is sealed with the file map the verify
    hashed (``outcome[SEAL_KEY]``, taken out of the outcome in any case)."""
    seal = outcome.pop(SEAL_KEY, None)
    changed = entry.get('verified') is not outcome['ok']
    if outcome['ok'] and seal and not is_sealed(entry):
        entry.update({'files': seal, SEALED_KEY: True})
        changed = True
    entry['verified'] = outcome['ok']
    entry['verified_at'] = format_time(utc_now())
    entry['verify_error'] = None if outcome['ok'] else '; '.join(outcome['problems'])[:2000]
    write_entry(os.path.join(root, entry['id']), entry)
    return changed


# What happens to a backup whose catalog.json cannot be used, and what the operator does about it.
SKIPPED = 'the backup is skipped (never listed, chained, restored or removed)'
UNREADABLE_FIX = 'remove the directory or restore its catalog.json from S3'
# For an entry the catalog key does not authenticate.
MAC_FIX = ('if you wrote or checked it yourself, sign it with the catalog key (action=sign); otherwise remove '
           'it and restore the backup from another copy')


def _problem_with_time(entry, key):
    value = entry.get(key)
    if value is None:
        return 'has no %s' % key
    if not isinstance(value, str):
        return 'has %s %r, which is not a time' % (key, value)
    try:
        parse_time(value)
    except (CatalogError, ValueError, TypeError):
        return 'has %s %r, which is not an ISO 8601 time with a UTC offset' % (key, value)
    return None


def _problem_with_files(files, sealed):
    if files is None:
        return 'has no files'
    if not isinstance(files, dict):
        return 'has files that are not a map of path to sha256 and size'
    for rel, item in sorted(files.items()):
        if not isinstance(item, dict) or not _is_count(item.get('size')):
            return 'records the file %s without a size' % rel
        if not isinstance(item.get('sha256'), str) and (sealed or 'sha256' in item):
            return 'records the file %s without a sha256' % rel
    return None


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def entry_problem(entry, backup_id):
    """What makes a catalog entry unusable (a phrase such as ``has no stopped_at``), or None.

    Checks every key ordering, chains, retention, verify and restore read: ``id`` (equal to
    ``backup_id``, the directory name), ``type`` (the one the id names), ``started_at`` and
    ``stopped_at`` (times with an offset), ``files`` (each with its size, and its SHA-256 unless the entry
    is unsealed), ``parent`` (a backup id, required for an incremental), and the optional ``sealed``,
    ``verified``, ``wal_start`` and byte counts.
    """
    if not isinstance(entry, dict):
        return 'is not a JSON object but %s' % type(entry).__name__
    if entry.get('id') is None:
        return 'has no id'
    if entry['id'] != backup_id:
        return 'describes %r, not %s' % (entry['id'], backup_id)
    named = ID_RE.match(backup_id or '')
    if entry.get('type') not in TYPES:
        return 'has no type' if entry.get('type') is None else 'has type %r (not full or incremental)' % (entry['type'],)
    if named and named.group('type') != entry['type']:
        return 'has type %s, but its id says %s' % (entry['type'], named.group('type'))
    for key in ('stopped_at', 'started_at'):
        problem = _problem_with_time(entry, key)
        if problem:
            return problem
    if entry.get(SEALED_KEY, True) not in (True, False):
        return 'has %s %r (true or false)' % (SEALED_KEY, entry[SEALED_KEY])
    problem = _problem_with_files(entry.get('files'), is_sealed(entry))
    if problem:
        return problem
    parent = entry.get('parent')
    if entry['type'] == 'incremental' and not parent:
        return 'is an incremental backup without parent'
    if parent is not None and not (isinstance(parent, str) and is_backup_id(parent)):
        return 'has parent %r, which is not a backup id' % (parent,)
    if entry.get('verified') not in (None, True, False):
        return 'has verified %r (true, false or null)' % (entry['verified'],)
    wal_start = entry.get('wal_start')
    if wal_start is not None and not (isinstance(wal_start, str) and wal_position(wal_start)):
        return 'has wal_start %r, which is not a WAL segment name' % (wal_start,)
    for key in ('bytes', 'data_bytes', 'rdb_bytes'):
        if entry.get(key) is not None and not _is_count(entry[key]):
            return 'has %s %r, which is not a byte count' % (key, entry[key])
    return None


def check_entry(entry, path, backup_id=None, fix=UNREADABLE_FIX):
    """The problem of the entry read from ``<path>/catalog.json`` in words (the file, the key, the
    fix), or None when the entry can be used. ``backup_id``: the id it must carry (default: the
    last part of ``path``). ``path`` may be an S3 URL; ``fix`` says what the operator does."""
    if backup_id is None:
        backup_id = os.path.basename(os.path.normpath(path))
    problem = entry_problem(entry, backup_id)
    if problem is None:
        problem, fix = mac_problem(entry), MAC_FIX
    if problem is None:
        return None
    return '%s/%s %s: %s; %s' % (path.rstrip('/'), CATALOG_FILE, problem, SKIPPED, fix)


def load_entry(backup_path):
    """``(entry, problem)``: the parsed catalog.json of a backup directory (None when it does not parse)
    and what makes it unusable (``check_entry``), or None when it can be used."""
    marker = os.path.join(backup_path, CATALOG_FILE)
    try:
        with open(marker, 'rb') as handle:
            entry = json.loads(handle.read().decode('utf-8'))
    except (OSError, IOError) as err:
        return None, '%s cannot be read (%s): %s; %s' % (marker, getattr(err, 'strerror', None) or err, SKIPPED,
                                                         UNREADABLE_FIX)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None, '%s is not valid JSON (%s): %s; %s' % (marker, err, SKIPPED, UNREADABLE_FIX)
    return entry, check_entry(entry, backup_path)


def read_entry(backup_path):
    """The catalog entry of a backup directory; CatalogError (with the file, the key and the fix) when
    it cannot be used."""
    entry, problem = load_entry(backup_path)
    if problem:
        raise CatalogError(problem)
    return entry


def unsigned(entry, backup_id):
    """Whether an entry is sound but carries no hmac: what ``sign_unsigned`` adopts."""
    return isinstance(entry, dict) and entry_problem(entry, backup_id) is None and not entry.get(MAC_KEY)


def sign_unsigned(root, check_mode=False):
    """Sign, with the key in use, every published entry of ``root`` that is sound but has no ``hmac``
    (written before the catalog key existed). An entry with a wrong ``hmac`` or another problem is not
    signed: it stays refused. Returns ``dict(signed=[ids], refused=[unreadable_item dicts])``."""
    if _KEY['key'] is None:
        raise CatalogError('No catalog key to sign with: set catalog_key_file (or $%s) to the file of the stack '
                           'secret backup_catalog_key' % KEY_FILE_ENV)
    result = dict(signed=[], refused=[])
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        path = os.path.join(root, name)
        if not is_backup_id(name) or not os.path.isfile(os.path.join(path, CATALOG_FILE)):
            continue
        entry, problem = load_entry(path)
        if problem is None:
            continue
        if unsigned(entry, name):
            if not check_mode:
                write_entry(path, entry)
            result['signed'].append(name)
        else:
            result['refused'].append(unreadable_item(path, name, problem, entry))
    return result


def remove_backup(root, backup_id):
    """Unpublish first (remove the marker, fsync), then delete: a crash leaves a leftover, never a listed half."""
    path = os.path.join(root, backup_id)
    marker = os.path.join(path, CATALOG_FILE)
    if os.path.exists(marker):
        os.unlink(marker)
        fsync_path(path, directory=True)
    shutil.rmtree(path)
    fsync_path(root, directory=True)


def _newest_mtime(path):
    newest = os.lstat(path).st_mtime
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
            except OSError:
                pass
    return newest


def stop_time(entry):
    return parse_time(entry['stopped_at'])


def sort_by_stop(entries):
    """Oldest first by recorded stop time (then start time, then id), never by name alone."""
    return sorted(entries, key=lambda e: (stop_time(e), parse_time(e.get('started_at') or e['stopped_at']), e['id']))


def unreadable_item(path, backup_id, problem, entry=None):
    """How an unusable entry is reported: ``dict(path, id, error, parent, wal_start)``. ``parent`` and
    ``wal_start`` are what its catalog.json still says when it parses (None otherwise): retention
    keeps that parent and that WAL for it."""
    parent = wal_start = None
    if isinstance(entry, dict):
        if isinstance(entry.get('parent'), str) and is_backup_id(entry['parent']):
            parent = entry['parent']
        if isinstance(entry.get('wal_start'), str) and wal_position(entry['wal_start']):
            wal_start = entry['wal_start']
    return dict(path=path, id=backup_id, error=problem, parent=parent, wal_start=wal_start)


def list_backups(root, remove_leftovers_older_than=None, now=None):
    """Read the catalog of ``root``.

    Returns ``dict(backups=[entries oldest->newest by stop time], leftovers=[...], removed=[...],
    unreadable=[...])``. Leftovers are ``.tmp-*``/``.scratch-*`` directories and id directories
    without marker; with ``remove_leftovers_older_than`` (seconds) those whose newest file is
    older than that are deleted. Other names (``logs``, ``.lock``, ``.readers``) are ignored. A backup whose
    catalog.json does not parse or fails ``check_entry`` is only reported in ``unreadable``
    (``unreadable_item``), never listed nor removed.
    """
    result = dict(backups=[], leftovers=[], removed=[], unreadable=[])
    if not os.path.isdir(root):
        return result
    clock = time.time() if now is None else now
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if not os.path.isdir(path) or os.path.islink(path):
            continue
        leftover = name.startswith(TMP_PREFIX) or name.startswith(SCRATCH_PREFIX)
        if not leftover and is_backup_id(name):
            if not os.path.exists(os.path.join(path, CATALOG_FILE)):
                leftover = True
            else:
                entry, problem = load_entry(path)
                if problem:
                    result['unreadable'].append(unreadable_item(path, name, problem, entry))
                else:
                    result['backups'].append(entry)
                continue
        if not leftover:
            continue
        age = clock - _newest_mtime(path)
        item = dict(path=path, name=name, age_seconds=int(age))
        if remove_leftovers_older_than is not None and age >= remove_leftovers_older_than:
            shutil.rmtree(path)
            result['removed'].append(item)
        else:
            result['leftovers'].append(item)
    if result['removed']:
        fsync_path(root, directory=True)
    result['backups'] = sort_by_stop(result['backups'])
    return result


# ---------------------------------------------------------------------------------------------
# Chains, restore choice, retention


def by_id(entries):
    return dict((e['id'], e) for e in entries)


def chain(entries, backup_id):
    """The backups a restore of ``backup_id`` needs, full first. Raises when a parent is missing."""
    index = by_id(entries)
    if backup_id not in index:
        raise CatalogError('Backup %s is not in the catalog' % backup_id)
    result = []
    current = index[backup_id]
    seen = set()
    while True:
        if current['id'] in seen:
            raise CatalogError('The parents of %s form a loop at %s: the catalog is damaged' % (backup_id, current['id']))
        seen.add(current['id'])
        result.append(current)
        if current['type'] == 'full':
            break
        parent = current.get('parent')
        if parent not in index:
            raise CatalogError('Backup %s needs %s, which is not in the catalog: it cannot be restored; '
                               'take a new full backup' % (backup_id, parent))
        current = index[parent]
    result.reverse()
    return result


def usable(entry):
    """A backup that did not fail verification (never verified counts as usable)."""
    return entry.get('verified') is not False


def restorable(entries, entry):
    try:
        return all(usable(e) for e in chain(entries, entry['id']))
    except CatalogError:
        return False


def select_backup(entries, target='latest', target_time=None):
    """Choose what to restore; return its chain (full first).

    ``target_time`` with ``target`` latest: the newest backup whose recorded stop time is strictly
    before it (a backup that ended after the target cannot stop before it: recovery would silently
    replay to its end). ``target``: ``latest`` or a backup id; an id with a ``target_time`` must have
    ended before it (a restore plan pins the id it chose, so the run restores exactly that chain).
    Backups that failed verification, or whose chain is broken, are never chosen.
    """
    ordered = sort_by_stop(entries)
    if target not in (None, '', 'latest'):
        result = _chain_of_id(entries, ordered, target)
        if target_time is not None and stop_time(result[-1]) >= parse_time(target_time):
            raise CatalogError('Backup %s ended at %s, not before target_time %s: choose an earlier backup or a later '
                               'target_time' % (target, result[-1]['stopped_at'], format_time(parse_time(target_time))))
        return result
    if target_time is not None:
        when = parse_time(target_time)
        candidates = [e for e in ordered if stop_time(e) < when and restorable(entries, e)]
        if not candidates:
            good = [e for e in ordered if restorable(entries, e)]
            if not good:
                raise CatalogError('No restorable backup in the catalog: take a full backup first')
            raise CatalogError('No backup ended before %s: the oldest restorable one (%s) ended at %s; choose a later '
                               'target_time' % (format_time(when), good[0]['id'], good[0]['stopped_at']))
        return chain(entries, candidates[-1]['id'])
    candidates = [e for e in ordered if restorable(entries, e)]
    if not candidates:
        raise CatalogError('No restorable backup in the catalog: take a full backup first')
    return chain(entries, candidates[-1]['id'])


def _chain_of_id(entries, ordered, target):
    index = by_id(entries)
    if target not in index:
        known = ', '.join(e['id'] for e in ordered[-5:]) or 'none'
        raise CatalogError('Backup %s is not in the catalog (newest: %s)' % (target, known))
    result = chain(entries, target)
    bad = [e['id'] for e in result if not usable(e)]
    if bad:
        raise CatalogError('Backup %s cannot be restored: %s failed verification' % (target, ', '.join(bad)))
    return result


def _stamp(backup_id):
    """The start stamp of an id (``YYYYmmddTHHMMSSZ``, the client's clock; sorts as text), or None."""
    match = ID_RE.match(backup_id or '')
    return match.group('stamp') if match else None


def _keep_for_unreadable(item, ordered, reasons, index):
    """Keep what an unreadable backup may need; return ``(warning, wal_bound, wal_known)``.

    It is never removed (it is not in ``ordered``). An incremental keeps its parent (whose own
    parents the caller keeps) when its catalog.json still names it; when it does not, every
    backup that started before it (its parent is one of them). Its WAL starts at its own
    ``wal_start`` when known, else not before the start of the newest backup that started before
    it (backups of a root never overlap: the root lock); with neither, its WAL is unknown.
    """
    name = item.get('id') or os.path.basename(os.path.normpath(item['path']))
    stamp = _stamp(name)
    earlier = [e for e in ordered if stamp is not None and (_stamp(e['id']) or stamp) < stamp]
    warning = '%s. Until then retention keeps it' % item['error']
    if name.endswith('-incremental'):
        parent = item.get('parent')
        if parent in index:
            reasons[parent].append('parent of unreadable %s' % name)
            warning += ', and the chain of its parent %s' % parent
        elif parent is None and earlier:
            for e in earlier:
                reasons[e['id']].append('started before unreadable incremental %s, which may need it' % name)
            warning += ', and every backup that started before it (%d): its parent is unknown' % len(earlier)
    if item.get('wal_start'):
        return warning, item['wal_start'], True
    starts = [e['wal_start'] for e in sorted(earlier, key=lambda e: e['id']) if e.get('wal_start')]
    if starts:
        return warning, starts[-1], True
    return warning, None, False


def plan_retention(entries, keep_days=None, keep_count=None, now=None, unreadable=()):
    """Decide which backups to keep and which to remove.

    A backup is kept when any rule keeps it:

    * ``keep_count``: it is among the newest ``keep_count`` restorable backups (by stop time);
    * ``keep_days``: it stopped within the last ``keep_days`` days, or it is the newest restorable
      backup that stopped before that window (without it, the start of the window cannot be restored);
    * it is the newest verified full backup (or, when none is verified, the newest restorable full);
    * it is a parent (transitively) of a kept incremental;
    * an unreadable backup may need it (see ``unreadable``).

    Restorable: the backup and every parent it needs are in the catalog and did not fail
    verification. A backup that failed verification is kept only by the window (for inspection).

    ``unreadable`` (``unreadable_item`` dicts) are never removed: they are not in ``entries``, and
    what they may need is kept too (``_keep_for_unreadable``), each with a warning that names it.

    Returns ``dict(keep=[ids], remove=[ids], reasons={id: [why]}, oldest_wal_needed=name|None,
    warnings=[...])``; ``keep`` and ``remove`` are ordered by stop time.
    """
    if keep_days is None and keep_count is None:
        raise CatalogError('Retention needs keep_days or keep_count: without either, every backup but one would go')
    if keep_count is not None and keep_count < 1:
        raise CatalogError('keep_count must be at least 1, got %s' % keep_count)
    if keep_days is not None and keep_days < 0:
        raise CatalogError('keep_days cannot be negative, got %s' % keep_days)
    now = now or utc_now()
    ordered = sort_by_stop(entries)
    index = by_id(ordered)
    good = [e for e in ordered if restorable(ordered, e)]
    reasons = dict((e['id'], []) for e in ordered)
    warnings = []
    unreadable_ids = set(item.get('id') for item in unreadable)

    if keep_count is not None:
        for e in good[-keep_count:]:
            reasons[e['id']].append('among the newest %d restorable backups' % keep_count)
    if keep_days is not None:
        cutoff = now - datetime.timedelta(days=keep_days)
        for e in ordered:
            if stop_time(e) >= cutoff:
                reasons[e['id']].append('stopped within the last %s days' % keep_days)
        before = [e for e in good if stop_time(e) < cutoff]
        if before:
            reasons[before[-1]['id']].append('newest backup before the %s-day window: restores its start' % keep_days)
    verified_fulls = [e for e in ordered if e['type'] == 'full' and e.get('verified') is True]
    if verified_fulls:
        reasons[verified_fulls[-1]['id']].append('newest verified full backup')
    else:
        fulls = [e for e in good if e['type'] == 'full']
        if fulls:
            reasons[fulls[-1]['id']].append('newest restorable full backup (no full backup is verified yet)')
            warnings.append('No full backup is verified: run the verify action so retention can rely on one')

    wal_bounds, wal_unknown = [], []
    for item in unreadable:
        warning, bound, known = _keep_for_unreadable(item, ordered, reasons, index)
        warnings.append(warning)
        if known:
            wal_bounds.append(bound)
        else:
            wal_unknown.append(item.get('id') or item['path'])

    # Parents of kept incrementals, transitively (newest first so a chain is walked once).
    for e in reversed(ordered):
        if not reasons[e['id']] or e['type'] != 'incremental':
            continue
        child, parent, seen = e, e.get('parent'), set([e['id']])
        while child['type'] == 'incremental' and parent not in seen:  # a loop of parents ends the walk
            seen.add(parent)
            if parent not in index:
                warnings.append('Backup %s needs %s, which %s: it cannot be restored' % (
                    child['id'], parent, 'has an unreadable catalog.json' if parent in unreadable_ids else 'is missing'))
                break
            why = 'parent of kept %s' % child['id']
            if why not in reasons[parent]:
                reasons[parent].append(why)
            child = index[parent]
            parent = child.get('parent')

    keep = [e['id'] for e in ordered if reasons[e['id']]]
    remove = [e['id'] for e in ordered if not reasons[e['id']]]
    oldest = None
    for start in [index[backup_id].get('wal_start') for backup_id in keep] + wal_bounds:
        if start and (oldest is None or wal_position(start) < wal_position(oldest)):
            oldest = start
    if oldest is not None and wal_unknown:
        warnings.append('The WAL %s needs is unknown (its catalog.json cannot be read): no archived WAL is removed '
                        'until it is fixed' % ', '.join(wal_unknown))
        oldest = None
    return dict(keep=keep, remove=remove, reasons=dict((k, v) for k, v in reasons.items() if v),
                oldest_wal_needed=oldest, warnings=warnings)


def summary(entry):
    """An entry without its per-file map (which can hold thousands of files), for module results."""
    result = dict((k, v) for k, v in entry.items() if k != 'files')
    result['file_count'] = len(entry.get('files') or {})
    return result


# ---------------------------------------------------------------------------------------------
# The list, verify and prune actions of the backup modules


def summarize(entries):
    """Entries without per-file hashes, each with ``restorable``; plus the newest restorable id."""
    items = []
    for entry in entries:
        item = summary(entry)
        item['restorable'] = restorable(entries, entry)
        items.append(item)
    good = [item for item in items if item['restorable']]
    return items, good[-1]['id'] if good else None


def listing(root):
    """What ``action=list`` reports of a local catalog: ``dict(backups, latest, last_verified_full,
    leftovers, unreadable)``."""
    catalog = list_backups(root)
    backups, latest = summarize(catalog['backups'])
    verified_fulls = [e for e in catalog['backups'] if e['type'] == 'full' and e.get('verified') is True]
    return dict(backups=backups, latest=latest, last_verified_full=verified_fulls[-1]['id'] if verified_fulls else None,
                leftovers=catalog['leftovers'], unreadable=catalog['unreadable'])


def select_for_verify(entries, wanted, root, noun='backup', remote=()):
    """The entries ``action=verify`` checks: ``all``, ``latest`` (the newest local one) or one id.

    An id found only in ``remote`` (entries of the S3 copies) selects that remote entry, whose copy
    is then what can be checked. Raises CatalogError naming the fix when nothing matches.
    """
    if wanted == 'all':
        return list(entries)
    if wanted == 'latest':
        if not entries:
            raise CatalogError('There is no %s in %s to verify: take one first (action=backup)' % (noun, root))
        return entries[-1:]
    chosen = [e for e in entries if e['id'] == wanted] or [e for e in remote if e['id'] == wanted][:1]
    if not chosen:
        raise CatalogError('%s %s is not in the catalog of %s (action=list shows the ids)'
                           % (noun[:1].upper() + noun[1:], wanted, root))
    return chosen


def verify_messages(results, noun, fix):
    """``(failure, msg)`` of a verify action: the failure message (None when every result is ok) and the
    message of success. ``fix``: what the operator does about a failed one ('take a new full backup')."""
    failed = [r for r in results if not r['ok']]
    failure = None
    if failed:
        failure = 'Verification failed for %s: %s. Do not restore from it; %s' % (
            ', '.join(r['id'] for r in failed), '; '.join(failed[0]['problems'][:5]), fix)
    return failure, 'Verified %d %s(s): %s' % (len(results), noun, ', '.join(r['id'] for r in results) or 'none')


def prune(root, keep_days, keep_count, grace_seconds, check_mode):
    """Apply ``plan_retention`` to the local catalog and remove leftovers older than ``grace_seconds``;
    in check mode only say what would go.

    Returns ``dict(changed, removed, kept, reasons, oldest_wal_needed, warnings, removed_leftovers,
    leftovers, unreadable)``.
    """
    catalog = list_backups(root, remove_leftovers_older_than=None if check_mode else grace_seconds)
    plan = plan_retention(catalog['backups'], keep_days=keep_days, keep_count=keep_count,
                          unreadable=catalog['unreadable'])
    removed_leftovers = catalog['removed']
    if check_mode:
        removed_leftovers = [item for item in catalog['leftovers'] if item['age_seconds'] >= grace_seconds]
    else:
        for backup_id in plan['remove']:
            remove_backup(root, backup_id)
    return dict(changed=bool(plan['remove'] or removed_leftovers), removed=plan['remove'], kept=plan['keep'],
                reasons=plan['reasons'], oldest_wal_needed=plan['oldest_wal_needed'], warnings=plan['warnings'],
                removed_leftovers=removed_leftovers,
                leftovers=[item for item in catalog['leftovers'] if item not in removed_leftovers],
                unreadable=catalog['unreadable'])


def ensure_dir(path, mode=0o750):
    """The backup root (and its parents): True when this call made it."""
    return make_directory(path, mode, parents=True)


def catalog_spec():
    """Argument spec shared by the backup modules (document with psscript.infra.backup)."""
    return dict(
        backup_dir=dict(type='path', required=True),
        catalog_key_file=dict(type='path', no_log=False),
        keep_days=dict(type='int', default=30),
        keep_count=dict(type='int'),
        stale_after_hours=dict(type='int', default=24),
    )
