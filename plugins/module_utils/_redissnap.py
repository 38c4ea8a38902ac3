# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Redis snapshots into the backup catalog, and their restore into a Sentinel-managed set.

Decisions (and why):

* **Over the network only.** The backup container may run on another Docker host than Redis, so
  nothing here reads or writes a Redis volume. A snapshot is fetched with ``redis-cli --rdb`` (the
  replication protocol: the node forks and streams a point-in-time RDB); a restore starts a
  temporary ``redis-server`` in the backup container, loaded from the RDB, and makes the live
  master replicate from it.
* **From a replica by default**: the fork happens there, not on the master that serves writes. The
  node is chosen from what the Sentinel majority says, and checked on the node itself (link up, no
  sync running, replicating the agreed master). Before the fetch the node runs ``BGSAVE SCHEDULE``
  (queued behind an AOF rewrite; asked again after a save that was already running) and we wait for
  ``rdb_bgsave_in_progress:0``,
  ``LASTSAVE`` to advance and ``rdb_last_bgsave_status:ok``: LASTSAVE alone is not proof.
* **Checked before published**: ``redis-check-rdb`` of the image (the same Redis version as the
  stack's image, so it reads the RDB version the servers write) reads the whole file; its key
  counts, and the per-database counts of the RDB's ``RESIZEDB`` records, go into the catalog. The
  RDB is then compressed with zstd (``dump.rdb.zst``, SHA-256 of both the plain and the compressed
  file recorded) and published through ``_catalog`` exactly like a PostgreSQL backup.
* **Restore without losing the restored data to Sentinel or the replicas**: every replica gets
  ``replica-priority 0`` (Sentinel cannot promote any of them) and we wait until the Sentinels see
  it; the master is then made a replica of the temporary server (its own replicas follow it in a
  chain), and promoted back with ``REPLICAOF NO ONE`` once its key counts equal the snapshot's. A
  master that reports ``role:slave`` is flagged down by Sentinel after ``down-after-milliseconds``
  plus 20 s, so that window is bounded below that; on any error the master is promoted back
  (``REPLICAOF NO ONE``) and priorities are restored. The AOF is rewritten from the restored data
  (``BGREWRITEAOF``) or, without AOF, an RDB is saved, so a restart loads the restored data.
* **Undo is always at hand**: before it changes anything, a restore takes an ordinary snapshot of
  the current data into the same catalog (``reason: pre-restore``; restoring its id undoes the
  restore), under the same root lock. It is taken even from an empty set, so the undo command always
  exists. ``latest`` never means a pre-restore snapshot: those are restored by id only.
* **One replica keeps the old data until the new is accepted**: the in-sync replica with the highest
  offset whose ``masterauth`` is the stack password gets a random wrong ``masterauth`` and its master
  link killed (``CLIENT KILL TYPE master``): it stays ``role:slave`` of the right master, link down,
  with its data, and Sentinel leaves a replica that names the right master alone. Once the master
  holds exactly the snapshot's counts, is persisted and the other replicas resynced, ``masterauth``
  goes back and it full-syncs. A failure after the master's data changed leaves it detached (and at
  ``replica-priority 0``, so a later failover cannot promote old data) and says so; a failure before
  re-attaches it. With a single replica it is still detached: the master is read-only during the sync
  anyway, and with ``min-replicas-to-write`` it refuses writes (NOREPLICAS) until that replica is back.
* **A killed run is undone by the next one**: before each change the restore records in
  ``<backup_dir>/.restore-state.json`` (0600, atomic) what it changes: the original replica-priorities,
  the detached replica (its original ``masterauth`` is the module's ``redis_password``: the password
  itself is never written), the temporary server's address and whether the master replicates it. The
  next ``action=restore`` or ``action=backup`` undoes what the file records before anything else.

Commands go through ``run(args, data=None) -> (rc, stdout, stderr)``; passwords travel on stdin
(``redis-cli --askpass``) or in a 0600 file, never on a command line or in a process environment.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import json
import os
import re
import secrets
import shutil
import time

from ansible_collections.psscript.infra.plugins.module_utils import _catalog, _redis, _sentinel
from ansible_collections.psscript.infra.plugins.module_utils._files import write_text_atomic
from ansible_collections.psscript.infra.plugins.module_utils._catalog import BackupError

SERVICE = 'redis'
# A snapshot stands alone (no parent): in the catalog's terms it is a full backup, so chains,
# restore choice and retention ("never remove the newest verified full") apply unchanged.
CATALOG_TYPE = 'full'
RDB_FILE = 'dump.rdb'
ARCHIVE_FILE = 'dump.rdb.zst'
TOOLS = ('redis-cli', 'redis-check-rdb', 'zstd')
RESTORE_TOOLS = TOOLS + ('redis-server',)
# Sentinel flags a master that reports role:slave as down after down-after-milliseconds plus two
# INFO periods (2 x 10 s); stay this many seconds below that.
SENTINEL_INFO_PERIOD = 10
ROLE_SWITCH_MARGIN = 5

# A restore records here what it changed, so that the next run can undo a killed one.
RESTORE_STATE_FILE = '.restore-state.json'
PRE_RESTORE = 'pre-restore'

DONE = _sentinel.DONE
WAIT = _sentinel.WAIT
FAILED = _sentinel.FAILED


# ---------------------------------------------------------------------------------------------
# Reading what redis-check-rdb, INFO and the RDB itself say


def parse_check_rdb(text):
    """The facts in ``redis-check-rdb`` output.

    Returns ``dict(ok, keys, expires, already_expired, redis_version, ctime, used_mem, db_offsets,
    error)``; ``db_offsets`` lists ``(db, offset)`` where the offset is right after the RDB's
    SELECTDB record (where a RESIZEDB record with the database's sizes follows).
    """
    result = dict(ok=False, keys=None, expires=None, already_expired=None, redis_version=None,
                  ctime=None, used_mem=None, db_offsets=[], error=None)
    errors = []
    in_error = False
    for line in (text or '').splitlines():
        line = line.strip()
        if line == '--- RDB ERROR DETECTED ---':
            in_error = True
            continue
        if in_error and line and not line.startswith('[info]'):
            errors.append(line)
            continue
        match = re.match(r"^\[offset (\d+)\] AUX FIELD ([\w-]+) = '(.*)'$", line)
        if match:
            name, value = match.group(2), match.group(3)
            if name == 'redis-ver':
                result['redis_version'] = value
            elif name == 'ctime' and value.isdigit():
                result['ctime'] = int(value)
            elif name == 'used-mem' and value.isdigit():
                result['used_mem'] = int(value)
            continue
        match = re.match(r'^\[offset (\d+)\] Selecting DB ID (\d+)$', line)
        if match:
            result['db_offsets'].append((int(match.group(2)), int(match.group(1))))
            continue
        if 'RDB looks OK' in line:
            result['ok'] = True
            continue
        match = re.match(r'^\[info\] (\d+) (keys read|expires|already expired)$', line)
        if match:
            key = {'keys read': 'keys', 'expires': 'expires', 'already expired': 'already_expired'}[match.group(2)]
            result[key] = int(match.group(1))
    if in_error:
        result['ok'] = False
        result['error'] = ' | '.join(errors[:4]) or 'RDB error detected'
    return result


def read_length(data, pos):
    """An RDB length at ``data[pos:]``: ``(value, next position)``; ValueError when it is not one."""
    first = data[pos]
    kind = first >> 6
    if kind == 0:
        return first & 0x3F, pos + 1
    if kind == 1:
        return ((first & 0x3F) << 8) | data[pos + 1], pos + 2
    if first == 0x80:
        return int.from_bytes(data[pos + 1:pos + 5], 'big'), pos + 5
    if first == 0x81:
        return int.from_bytes(data[pos + 1:pos + 9], 'big'), pos + 9
    raise ValueError('byte 0x%02x at %d is not an RDB length' % (first, pos))


RESIZEDB = 0xFB


def keys_per_db(read_at, db_offsets):
    """``{db: {'keys': n, 'expires': m}}`` from the RESIZEDB record after each SELECTDB.

    ``read_at(offset, size)`` returns bytes of the RDB (a file or a buffer). None when a database
    has no RESIZEDB record (RDB written before Redis 3.2).
    """
    counts = {}
    for db, offset in db_offsets:
        data = read_at(offset, 19)
        if not data or data[0] != RESIZEDB:
            return None
        try:
            keys, pos = read_length(data, 1)
            expires, dummy = read_length(data, pos)
        except (ValueError, IndexError):
            return None
        counts[str(db)] = dict(keys=keys, expires=expires)
    return counts


def file_reader(path):
    def read_at(offset, size):
        with open(path, 'rb') as handle:
            handle.seek(offset)
            return handle.read(size)
    return read_at


def rdb_version(header):
    """``b'REDIS0012'`` -> 12; None when the header is not an RDB's."""
    match = re.match(br'^REDIS(\d{4})', header or b'')
    return int(match.group(1)) if match else None


def keyspace(info_keyspace):
    """``INFO keyspace`` (parsed by redis-py) -> ``{'0': keys, '3': keys}``."""
    result = {}
    for name, value in (info_keyspace or {}).items():
        match = re.match(r'^db(\d+)$', str(name))
        if not match:
            continue
        if isinstance(value, dict):
            keys = int(value.get('keys', 0))
        else:
            found = re.search(r'keys=(\d+)', str(value))
            keys = int(found.group(1)) if found else 0
        if keys:
            result[match.group(1)] = keys
    return result


def version_tuple(text):
    numbers = re.findall(r'\d+', str(text or ''))[:3]
    return tuple(int(n) for n in numbers) if numbers else None


def total_keys(counts):
    return sum(int(v['keys'] if isinstance(v, dict) else v) for v in (counts or {}).values())


def plain_counts(counts):
    """``{db: {'keys': n, ...}}`` or ``{db: n}`` -> ``{db: n}`` without empty databases."""
    return dict((str(db), int(v['keys'] if isinstance(v, dict) else v)) for db, v in (counts or {}).items()
                if int(v['keys'] if isinstance(v, dict) else v))


# ---------------------------------------------------------------------------------------------
# Choosing the node a snapshot is taken from


def _same_node(host, port, address):
    try:
        return _sentinel.format_address(str(host), int(port)) == address
    except (TypeError, ValueError):
        return False


def replica_in_sync(replication, master):
    """Why a replica cannot serve a consistent snapshot of ``master`` (None when it can)."""
    if replication is None:
        return 'it did not answer'
    if replication.get('role') != 'slave':
        return 'it reports role:%s' % replication.get('role')
    if not _same_node(replication.get('master_host'), replication.get('master_port'), master):
        return 'it replicates %s:%s, not %s' % (replication.get('master_host'), replication.get('master_port'), master)
    if replication.get('master_link_status') != 'up':
        return 'its link to the master is %s' % replication.get('master_link_status')
    if str(replication.get('master_sync_in_progress', 0)) != '0':
        return 'it is still syncing from the master'
    return None


def agreed_view_master(views):
    """The master the Sentinel majority names (BackupError when there is none)."""
    master, reason = _sentinel.decide_master(dict((view['address'], _sentinel.view_master(view)) for view in views))
    if master is None:
        errors = [view.get('error') for view in views if not view.get('reachable') and view.get('error')]
        raise BackupError('No Sentinel majority names the master: %s%s. Check the set with '
                          'psscript.infra.sentinel_failover_check'
                          % (reason or 'no Sentinel answered', ' (%s)' % '; '.join(errors[:3]) if errors else ''),
                          kind='sentinel')
    return master


def replica_addresses(views, master):
    """Replicas of ``master`` that no agreeing Sentinel flags down, in the first agreeing Sentinel's order."""
    agreeing = [view for view in views if _sentinel.view_master(view) == master]
    down = set()
    for view in agreeing:
        for replica in view['replicas']:
            if any(flag in _sentinel.DOWN_FLAGS for flag in replica['flags']):
                down.add(replica['address'])
    result = []
    for view in agreeing[:1]:
        for replica in view['replicas']:
            if replica['address'] and replica['address'] not in down:
                result.append(replica['address'])
    return result


def all_replica_addresses(views, master):
    """Every replica any agreeing Sentinel knows (restore must cover the down ones too)."""
    seen = []
    for view in views:
        if _sentinel.view_master(view) != master:
            continue
        for replica in view['replicas']:
            if replica['address'] and replica['address'] not in seen:
                seen.append(replica['address'])
    return seen


def best_in_sync(master, candidates, replications):
    """The in-sync replica with the highest replication offset (None when none), and why the others are not."""
    skipped = {}
    good = []
    for index, address in enumerate(candidates):
        why = replica_in_sync(replications.get(address), master)
        if why:
            skipped[address] = why
        else:
            offset = _sentinel._int(replications[address].get('slave_repl_offset'), 0)
            good.append((-offset, index, address))
    return (sorted(good)[0][2] if good else None), skipped


def choose_source(master, candidates, replications, source='replica'):
    """Pick the node to snapshot: ``dict(address, role, warning, skipped)``.

    ``candidates``: replica addresses (see replica_addresses); ``replications``: their
    ``INFO replication`` (None when they did not answer). With ``source='replica'`` the in-sync
    replica with the highest replication offset wins; with none in sync, the master (warning).
    """
    if source == 'master':
        return dict(address=master, role='master', warning=None, skipped={})
    best, skipped = best_in_sync(master, candidates, replications)
    if best:
        return dict(address=best, role='replica', warning=None, skipped=skipped)
    details = '; '.join('%s: %s' % item for item in sorted(skipped.items())) or 'the Sentinels know no healthy replica'
    return dict(address=master, role='master', skipped=skipped,
                warning='No replica of %s is in sync (%s): the snapshot is taken from the master, which forks '
                        'for it' % (master, details))


# ---------------------------------------------------------------------------------------------
# BGSAVE


def bgsave_refused_by_running_save(exc):
    """True when BGSAVE was refused because another RDB save runs (the save rules, a replica's sync)."""
    return 'already in progress' in str(getattr(exc, 'detail', None) or exc).lower()


def start_bgsave(node, timeout, sleep=time.sleep, clock=time.monotonic):
    """Start a BGSAVE of our own on ``node``; return ``(LASTSAVE before it, whether it runs already)``.

    ``BGSAVE SCHEDULE`` is queued behind an AOF rewrite, even one that starts between our look and
    the command, where plain BGSAVE is refused. A save that already runs refuses it too: wait for that
    one to end and ask again, reading LASTSAVE only then, so the save we wait for is ours.
    """
    deadline = clock() + timeout
    while True:
        state, detail = wait_for(lambda: node.call('info', 'persistence', command='INFO persistence'), save_ended,
                                 max(deadline - clock(), 0), interval=0.2, sleep=sleep, clock=clock)
        if state != DONE:
            raise BackupError('%s: %s' % (node.address, detail), kind='bgsave')
        before = lastsave(node)
        if lastsave_needs_next_second(before, node.call('time', command='TIME')[0]):
            sleep(1.05)
        try:
            reply = node.command('BGSAVE', 'SCHEDULE')
        except _redis.RedisOpError as exc:
            if bgsave_refused_by_running_save(exc) and clock() < deadline:
                continue
            raise BackupError('%s: %s' % (node.address, exc.msg), kind='bgsave')
        return before, 'scheduled' not in str(reply).lower()


def lastsave_needs_next_second(lastsave, server_time):
    """LASTSAVE has a one-second resolution: a save in the second of the last one would not show."""
    return int(lastsave) >= int(server_time)


def bgsave_decision(before, persistence, lastsave, seen_running, elapsed, timeout):
    """One look at a BGSAVE we asked for: ``(DONE|WAIT|FAILED, detail)``.

    Done only when no save runs, LASTSAVE advanced past ``before`` and the last save's status is
    ok. A save that ran (``seen_running``) and ended without advancing LASTSAVE failed.
    """
    running = str(persistence.get('rdb_bgsave_in_progress', 0)) != '0'
    status = persistence.get('rdb_last_bgsave_status')
    if not running and int(lastsave) > int(before):
        if status == 'ok':
            return DONE, 'LASTSAVE %s' % lastsave
        return FAILED, 'the snapshot ended with rdb_last_bgsave_status:%s' % status
    if not running and seen_running and status != 'ok':
        return FAILED, ('BGSAVE failed (rdb_last_bgsave_status:%s): check the node\'s log, its disk space and '
                        'vm.overcommit_memory' % status)
    if elapsed >= timeout:
        return FAILED, ('BGSAVE did not finish within bgsave_timeout (%s s; rdb_bgsave_in_progress:%s): raise '
                        'bgsave_timeout or check the node' % (timeout, 1 if running else 0))
    return WAIT, 'saving' if running else 'waiting for the save to start'


def save_ended(persistence, elapsed, timeout):
    if str(persistence.get('rdb_bgsave_in_progress', 0)) == '0':
        return DONE, ''
    if elapsed >= timeout:
        return FAILED, 'a save already running did not end within %s s' % timeout
    return WAIT, 'a save runs'


def rewrite_ended(persistence, elapsed, timeout):
    if str(persistence.get('aof_rewrite_in_progress', 0)) == '0' and str(persistence.get('aof_rewrite_scheduled', 0)) == '0':
        return DONE, ''
    if elapsed >= timeout:
        return FAILED, 'an AOF rewrite already running did not end within %s s' % timeout
    return WAIT, 'an AOF rewrite runs'


def wait_for(look, decide, timeout, interval=0.2, sleep=time.sleep, clock=time.monotonic):
    """Poll ``decide(look(), elapsed, timeout)`` until it is not WAIT; return (state, detail)."""
    start = clock()
    while True:
        snapshot = look()
        state, detail = decide(snapshot, clock() - start, timeout)
        if state != WAIT:
            return state, detail
        sleep(interval)


# ---------------------------------------------------------------------------------------------
# Space


def expected_size(entries, used_memory):
    """Bytes the next snapshot needs (plain RDB plus its compressed copy), and where the figure comes from."""
    known = [e for e in _catalog.sort_by_stop(entries) if e.get('rdb_bytes')]
    if known:
        last = known[-1]
        return int(last['rdb_bytes']) + int(last.get('bytes') or 0), 'size of the last snapshot %s' % last['id']
    if used_memory:
        return int(used_memory) * 2, 'used_memory of the source node, twice (plain RDB and compressed copy)'
    return 0, 'unknown (no snapshot yet and used_memory could not be read)'


# ---------------------------------------------------------------------------------------------
# Restore decisions


def role_switch_budget(down_after_ms_values, wanted=None):
    """Seconds the master may report role:slave before a Sentinel would flag it down (minus a margin)."""
    values = [int(v) for v in down_after_ms_values if v is not None]
    if not values:
        raise BackupError('No Sentinel reported down-after-milliseconds for the master', kind='sentinel')
    budget = min(values) / 1000.0 + 2 * SENTINEL_INFO_PERIOD - ROLE_SWITCH_MARGIN
    if wanted:
        budget = min(budget, float(wanted))
    return budget


def loaded_counts_problems(catalog_counts, keys, expires, loaded):
    """Compare what the temporary server loaded with the snapshot's counts.

    ``catalog_counts``: keys per database (None when unknown: only the total ``keys`` is compared).
    A server that loads an RDB as a master drops keys whose TTL passed, so up to ``expires`` keys
    may be missing; none may be added.
    """
    got = plain_counts(loaded)
    problems = []
    if catalog_counts is not None:
        want = plain_counts(catalog_counts)
        for db in sorted(set(want) | set(got), key=int):
            if got.get(db, 0) > want.get(db, 0):
                problems.append('db%s holds %d keys, the snapshot %d' % (db, got.get(db, 0), want.get(db, 0)))
        keys = total_keys(want)
    elif total_keys(got) > int(keys or 0):
        problems.append('%d keys loaded, the snapshot holds %d' % (total_keys(got), int(keys or 0)))
    missing = int(keys or 0) - total_keys(got)
    if missing > int(expires or 0):
        problems.append('%d keys are missing (only %d keys of the snapshot have a TTL and may have expired)'
                        % (missing, int(expires or 0)))
    return problems


def counts_text(counts):
    counts = plain_counts(counts)
    return ', '.join('db%s=%d' % (db, counts[db]) for db in sorted(counts, key=int)) or 'no keys'


def sync_decision(replication, counts, want, elapsed, timeout, what, replid=None):
    """Has ``what`` finished a full sync and does it hold ``want``? ``(DONE|WAIT|FAILED, detail)``.

    ``replid``: the replication id of the history it must follow (its master's); equal key counts
    alone could be old data that happens to have as many keys.
    """
    if replication is None:
        detail = '%s did not answer' % what
    elif replication.get('master_link_status') != 'up':
        detail = '%s: link to its master is %s' % (what, replication.get('master_link_status'))
    elif str(replication.get('master_sync_in_progress', 0)) != '0':
        detail = '%s is still receiving the snapshot' % what
    elif replid and replication.get('master_replid') != replid:
        detail = '%s still follows replication id %s, not %s' % (what, replication.get('master_replid'), replid)
    elif plain_counts(counts) != plain_counts(want):
        detail = '%s holds %s, expected %s' % (what, counts_text(counts), counts_text(want))
    else:
        return DONE, '%s holds %s' % (what, counts_text(counts))
    if elapsed >= timeout:
        return FAILED, '%s (after %.1f s)' % (detail, elapsed)
    return WAIT, detail


def aof_decision(before_rewrites, persistence, elapsed, timeout):
    """Has an AOF rewrite started after ``before_rewrites`` finished well?"""
    running = str(persistence.get('aof_rewrite_in_progress', 0)) != '0' or \
        str(persistence.get('aof_rewrite_scheduled', 0)) != '0'
    rewrites = _sentinel._int(persistence.get('aof_rewrites'), 0)
    status = persistence.get('aof_last_bgrewrite_status')
    if not running and rewrites > int(before_rewrites):
        if status == 'ok':
            return DONE, 'AOF rewritten'
        return FAILED, 'the AOF rewrite failed (aof_last_bgrewrite_status:%s): check the master\'s log and disk' % status
    if elapsed >= timeout:
        return FAILED, 'the AOF rewrite did not finish within %s s' % timeout
    return WAIT, 'rewriting the AOF'


def restore_plan(master, replicas, listen, source, keys_text, aof, budget, pre_snapshot=False, detached=None):
    """The steps a restore takes, in words (check mode returns them; the real run logs them).

    ``pre_snapshot``: whether a pre-restore snapshot is taken first; ``detached``: the replica kept
    with the data from before the restore (None: none is kept).
    """
    steps = ['check %s: SHA-256 and redis-check-rdb' % source]
    if pre_snapshot:
        steps.append('take a pre-restore snapshot of the current data into the catalog (like action=backup, from '
                     'an in-sync replica); restoring its id undoes the restore')
    if replicas:
        steps.append('set replica-priority 0 on %s and wait until the Sentinels see it (no failover can promote '
                     'them)' % ', '.join(replicas))
    if detached:
        steps.append('detach replica %s (masterauth set to a random value, its master link killed): it keeps the '
                     'data from before the restore until the restored data is accepted' % detached)
        if len(replicas) == 1:
            steps[-1] += ('; it is the only replica, so until it is back the master has none (with '
                          'min-replicas-to-write it refuses writes: NOREPLICAS)')
    elif replicas:
        steps.append('keep no replica detached (none is in sync with masterauth = redis_password)')
    steps += [
        'start a temporary redis-server on %s loaded from the snapshot (appendonly no, no saves) and check it '
        'holds %s' % (listen, keys_text),
        'REPLICAOF %s on the master %s (its replicas follow it), wait for the full sync and the same key counts '
        '(at most %.0f s, below the time Sentinel takes to flag a master reporting role:slave)' % (listen, master, budget),
        'REPLICAOF NO ONE on %s and check its key counts again' % master,
        'BGREWRITEAOF on %s and wait for it' % master if aof else 'BGSAVE on %s and wait for it (appendonly is off)' % master,
    ]
    others = [address for address in replicas if address != detached]
    if others:
        verb = 'is' if len(others) == 1 else 'are'
        steps.append('wait until %s %s in sync with the same key counts' % (', '.join(others), verb))
    if detached:
        steps.append('the restored data is accepted: give %s its masterauth back and wait until it has resynced' % detached)
    if replicas:
        steps.append('restore replica-priority on %s' % ', '.join(replicas))
    steps += ['stop the temporary server',
              'check the Sentinel majority: master still %s, CKQUORUM ok, no problem reported' % master]
    return steps


def choose_detached(master, replicas, replications, masterauths, password):
    """The replica a restore keeps detached with the old data: ``(address or None, why not the others)``.

    ``replications``: ``INFO replication`` per replica; ``masterauths``: its ``masterauth`` (None when
    CONFIG GET was refused). Only an in-sync replica (it holds the current data) whose masterauth is
    ``password`` (the recovery of a killed run sets it back from the module's redis_password, never
    from a file) qualifies; the highest offset wins.
    """
    eligible = []
    skipped = {}
    for address in replicas:
        auth = masterauths.get(address)
        if auth is None or (auth or None) != (password or None):
            skipped[address] = 'its masterauth %s' % ('could not be read' if auth is None else 'is not redis_password')
        else:
            eligible.append(address)
    best, not_in_sync = best_in_sync(master, eligible, replications)
    skipped.update(not_in_sync)
    return best, skipped


def wrong_masterauth():
    """A masterauth no master accepts: the detached replica's link stays down."""
    return 'psscript-restore-detached-%s' % secrets.token_hex(16)


# ---------------------------------------------------------------------------------------------
# The state file of a restore in progress (undone by the next run when the run was killed)


def restore_state_path(root):
    return os.path.join(root, RESTORE_STATE_FILE)


def write_restore_state(root, state):
    write_text_atomic(restore_state_path(root), json.dumps(state, indent=2, sort_keys=True) + '\n', mode=0o600)


def read_restore_state(root):
    """The recorded state of an interrupted restore, or None. BackupError when it cannot be read."""
    path = restore_state_path(root)
    try:
        with open(path) as handle:
            state = json.load(handle)
    except (IOError, OSError) as err:
        if not os.path.exists(path):
            return None
        raise BackupError('%s cannot be read (%s): fix its permissions' % (path, err), kind='state')
    except ValueError as err:
        raise BackupError('%s is damaged (%s): check each replica\'s replica-priority and masterauth and the master\'s '
                          'role by hand, then remove the file' % (path, err), kind='state')
    if not isinstance(state, dict) or state.get('format') != 1:
        raise BackupError('%s is not a restore state this module wrote: check the set by hand, then remove the file'
                          % path, kind='state')
    return state


def remove_restore_state(root):
    try:
        os.unlink(restore_state_path(root))
    except OSError:
        if os.path.exists(restore_state_path(root)):
            raise


def recovery_plan(state, master_replication):
    """What undoes the recorded ``state``: a list of ``(step, address, value)``.

    Steps: ``replicaof-no-one`` (the recorded master still replicates the recorded temporary server),
    ``stop-temp-server``, ``masterauth`` (the detached replica gets redis_password back),
    ``replica-priority`` (the recorded original value). ``master_replication``: the recorded
    master's ``INFO replication`` (None when it did not answer: it is then left to Sentinel).
    """
    steps = []
    listen = state.get('listen')
    master = state.get('master')
    if master and master_replication is not None and master_replication.get('role') == 'slave' and listen and \
            _same_node(master_replication.get('master_host'), master_replication.get('master_port'), listen):
        steps.append(('replicaof-no-one', master, None))
    if listen and state.get('temp_server'):
        steps.append(('stop-temp-server', listen, state.get('scratch')))
    if state.get('detached'):
        steps.append(('masterauth', state['detached'], None))
    for address, value in sorted((state.get('priorities') or {}).items()):
        steps.append(('replica-priority', address, value))
    return steps


def recover_interrupted(root, sset, open_node, password, log, scratch_root=None, replication_password=None):
    """Undo what an interrupted restore recorded in ``root``; None when there is nothing to undo.

    ``password``: the module's own (the temporary server's); ``replication_password``: the replicas'
    ``masterauth`` (default ``password``: one password for everything).
    Returns ``dict(started_at, pid, held, steps, problems)``; the state file is removed when every
    step worked, and rewritten with what is left otherwise (BackupError then, nothing else may run).
    """
    state = read_restore_state(root)
    if state is None:
        return None
    master = state.get('master')
    replication = None
    if master:
        try:
            replication = sset.data_node(master).call('info', 'replication', command='INFO replication')
        except Exception as err:
            log('recovery: the recorded master %s does not answer (%s): left to Sentinel'
                % (master, getattr(err, 'msg', err)))
    done, problems = [], []
    left = dict(state)
    for step, address, value in recovery_plan(state, replication):
        try:
            if step == 'replicaof-no-one':
                sset.data_node(address).command('REPLICAOF', 'NO', 'ONE')
                text = 'REPLICAOF NO ONE on %s (it still replicated the temporary server %s)' % (address, state['listen'])
            elif step == 'stop-temp-server':
                text = stop_leftover_temp_server(open_node, address, password, value, root if scratch_root is None
                                                 else scratch_root)
                left['temp_server'] = False
            elif step == 'masterauth':
                masterauth = password if replication_password is None else replication_password
                sset.data_node(address).call('config_set', 'masterauth', masterauth or '', command='CONFIG SET')
                text = 'masterauth of %s set back to redis_password: it resyncs from the master' % address
                left['detached'] = None
            else:
                sset.data_node(address).call('config_set', 'replica-priority', value, command='CONFIG SET')
                text = 'replica-priority %s restored on %s' % (value, address)
                left['priorities'] = dict((a, v) for a, v in left['priorities'].items() if a != address)
        except Exception as err:
            problems.append('%s on %s: %s' % (step, address, getattr(err, 'msg', err)))
            continue
        done.append(text)
        log('recovery: %s' % text)
    outcome = dict(started_at=state.get('started_at'), pid=state.get('pid'), backup=state.get('backup'),
                   held=state.get('held'), steps=done, problems=problems)
    if problems:
        write_restore_state(root, left)
        raise BackupError('An interrupted restore (started %s) left the set changed and it could not all be undone: %s. '
                          'Fix it by hand (CONFIG SET replica-priority / masterauth, REPLICAOF NO ONE on the master) or '
                          'retry' % (state.get('started_at'), '; '.join(problems)), kind='recovery')
    remove_restore_state(root)
    return outcome


def stop_leftover_temp_server(open_node, listen, password, scratch, root):
    """SHUTDOWN NOSAVE the temporary server a killed run left running (if it still runs), remove its directory."""
    host, port = _redis.parse_address(listen)
    node = open_node(host, port, password)
    try:
        node.command('SHUTDOWN', 'NOSAVE')
        text = 'the temporary server on %s stopped' % listen
    except Exception:  # nothing listens (the container restarted), or it stopped as it dropped the connection
        text = 'no temporary server left on %s' % listen
    finally:
        node.close()
    if scratch and os.path.dirname(os.path.abspath(scratch)) == os.path.abspath(root) and \
            os.path.basename(scratch).startswith(_catalog.SCRATCH_PREFIX):
        shutil.rmtree(scratch, ignore_errors=True)
    return text


def temp_server_config(listen_host, port, password, directory, username=None, replication=None, tls=None):
    """redis.conf of the temporary restore server (written 0600: it holds the password).

    ``tls``: ``{'cert': path, 'key': path, 'ca_cert': path}`` when the stack's Redis serves TLS: the server
    listens with TLS only, on the same port, with a certificate of the stack CA, which the master (whose
    ``tls-replication`` is on) checks when it replicates from it. None: plain TCP.

    ``username``: the ACL user the module logs in as (None: the default user, ``requirepass``);
    ``replication``: ``(masteruser, masterauth)`` the live master authenticates with when it replicates
    from this server (None: the default user and ``password``). Every user may run everything: the
    server lives for one restore, on the backup container's address only.
    """
    lines = [
        'bind %s' % listen_host,
    ] + (['port 0', 'tls-port %d' % int(port), 'tls-cert-file %s' % tls['cert'], 'tls-key-file %s' % tls['key'],
          'tls-ca-cert-file %s' % tls['ca_cert'], 'tls-auth-clients no']
         if tls else ['port %d' % int(port)]) + [
        'protected-mode no',
        'daemonize yes',
        'pidfile %s' % os.path.join(directory, 'redis.pid'),
        'logfile %s' % os.path.join(directory, 'redis.log'),
        'dir %s' % directory,
        'dbfilename %s' % RDB_FILE,
        'appendonly no',
        'save ""',
        'repl-diskless-sync yes',
        'repl-diskless-sync-delay 0',
        'maxmemory 0',
    ]
    repl_user, repl_password = replication or (None, None)
    accounts = ([(username, password)] if username else []) + ([(repl_user, repl_password)] if repl_user else [])
    if not accounts:
        if password:
            lines.append('requirepass "%s"' % password.replace('\\', '\\\\').replace('"', '\\"'))
        return '\n'.join(lines) + '\n'
    # The default user serves whoever logs in without a user name (the module, or the master's masterauth alone).
    default = password if not username else (repl_password if not repl_user else None)
    if username and repl_user:
        lines.append('user default off')
    else:
        lines.append('user default on %s ~* &* +@all' % acl_password(default))
    for name, secret in accounts:
        lines.append('user %s on %s ~* &* +@all' % (name, acl_password(secret)))
    return '\n'.join(lines) + '\n'


def acl_password(secret):
    """An ACL rule that sets ``secret`` as the only password, by its SHA-256 (no clear text in the file)."""
    if not secret:
        return 'nopass'
    return '#' + hashlib.sha256(secret.encode('utf-8')).hexdigest()


# ---------------------------------------------------------------------------------------------
# Catalog actions (listing, verify, prune and the S3 copies are _backupmod's, _catalog's and _s3's,
# shared with pg_backup)


def listing(root):
    """``_catalog.listing`` (a snapshot is always a full backup, so ``last_verified_full`` is the
    newest verified snapshot)."""
    result = _catalog.listing(root)
    # latest means what a restore of latest takes (choose_for_restore): never a pre-restore snapshot.
    regular = [e['id'] for e in result['backups'] if e.get('restorable', True) and e.get('reason') != PRE_RESTORE]
    result['latest'] = regular[-1] if regular else None
    return result


def choose_for_restore(local, remote, backup_id):
    """The entry to restore from the local and S3 catalogs, and whether it must be downloaded.

    A local copy wins over the remote one of the same id; ``latest`` is the newest restorable
    snapshot of either that is not a pre-restore snapshot.
    """
    local_ids = set(e['id'] for e in local)
    merged = list(local) + [e for e in remote or [] if e['id'] not in local_ids]
    if not merged:
        raise BackupError('There is no snapshot to restore (the catalog%s is empty): take one first, or pass rdb_file'
                          % (' and S3' if remote is not None else ''), kind='missing')
    if backup_id in (None, '', 'latest'):
        # The pre-restore snapshot of the last restore is newer than what was restored: latest must
        # not silently undo that restore. Pre-restore snapshots are restored by id.
        regular = [e for e in merged if e.get('reason') != PRE_RESTORE]
        if not regular:
            raise BackupError('There is no snapshot to restore but pre-restore ones (%s): restore one of those by id'
                              % ', '.join(e['id'] for e in merged), kind='missing')
        merged = regular
    chosen = _catalog.select_backup(merged, target=backup_id)[-1]
    return chosen, chosen['id'] not in local_ids


# ---------------------------------------------------------------------------------------------
# Files: check, compress, decompress


def check_rdb(run, tool, path):
    """Run redis-check-rdb; return the parsed facts plus ``rdb_version`` and per-db counts (BackupError if bad)."""
    rc, out, err = run([tool, path])
    facts = parse_check_rdb(out + '\n' + (err or ''))
    if rc != 0 or not facts['ok']:
        detail = facts['error'] or ' | '.join([line for line in (out + (err or '')).splitlines() if line.strip()][-3:])
        raise BackupError('redis-check-rdb finds %s damaged (exit code %s): %s' % (path, rc, detail or 'no message'),
                          kind='damaged')
    with open(path, 'rb') as handle:
        facts['rdb_version'] = rdb_version(handle.read(9))
    facts['keys_by_db'] = keys_per_db(file_reader(path), facts['db_offsets'])
    if facts['keys_by_db'] is not None and total_keys(facts['keys_by_db']) != facts['keys']:
        facts['keys_by_db'] = None  # RESIZEDB sizes disagree with what was read: trust only the total
    return facts


def compress(run, tool, plain, packed):
    rc, out, err = run([tool, '-q', '-T0', '-f', '-o', packed, plain])
    if rc != 0:
        raise BackupError('zstd failed (exit code %s): %s; check the space in %s'
                          % (rc, (err or out).strip(), os.path.dirname(packed)))


def decompress(run, tool, packed, plain):
    rc, out, err = run([tool, '-q', '-d', '-f', '-o', plain, packed])
    if rc != 0:
        raise BackupError('Unpacking %s failed (zstd exit code %s): %s' % (packed, rc, (err or out).strip()),
                          kind='damaged')


def scratch_dir(root, what):
    path = os.path.join(root, '%s%s-%d-%d' % (_catalog.SCRATCH_PREFIX, what, os.getpid(), int(time.time() * 1000)))
    os.makedirs(path, 0o700)
    return path


# ---------------------------------------------------------------------------------------------
# Backup


def take_snapshot(run, tools, node, source, root, clock_now, bgsave_timeout, fetch_timeout, password, sleep=time.sleep,
                  extra=None):
    """BGSAVE on ``node``, fetch, check, compress, hash and publish; return the catalog entry.

    ``node``: a ``_redis.Node``; ``source``: the choose_source() result; ``clock_now()``: the node's
    clock; ``password``: the node's password, given to redis-cli on stdin. The staged directory is
    removed on any failure. ``extra``: more catalog fields (a pre-restore snapshot's ``reason``, ``label``).
    """
    backup_id = _catalog.new_backup_id(CATALOG_TYPE)
    durations = {}
    began = time.time()
    server = node.call('info', 'server', command='INFO server')
    persistence = node.call('info', 'persistence', command='INFO persistence')
    if str(persistence.get('loading', 0)) != '0':
        raise BackupError('%s is still loading its dataset: retry later' % node.address, kind='loading')
    before, running = start_bgsave(node, bgsave_timeout, sleep)
    started_at = clock_now()
    seen = {'running': running}

    def look():
        return node.call('info', 'persistence', command='INFO persistence'), lastsave(node)

    def decide(snapshot, elapsed, timeout):
        info, lastsave = snapshot
        if str(info.get('rdb_bgsave_in_progress', 0)) != '0':
            seen['running'] = True
        return bgsave_decision(before, info, lastsave, seen['running'], elapsed, timeout)

    state, detail = wait_for(look, decide, bgsave_timeout, interval=0.2, sleep=sleep)
    if state != DONE:
        raise BackupError('%s: %s' % (node.address, detail), kind='bgsave')
    durations['bgsave'] = round(time.time() - began, 3)

    staged = _catalog.start_backup(root, backup_id)
    try:
        plain = os.path.join(staged, RDB_FILE)
        step = time.time()
        cmd = ['timeout', str(int(fetch_timeout)), tools['redis-cli'], '-h', node.host, '-p', str(node.port)]
        # The password on stdin (--askpass): never in an argv or a process environment.
        cmd += ['--user', node.username] if getattr(node, 'username', None) else []
        cmd += _redis.cli_tls_args(getattr(node, 'tls', None))
        cmd += ['--askpass'] if password else []
        rc, out, err = run(cmd + ['--rdb', plain], data=password or None)
        if rc != 0 or not os.path.isfile(plain):
            why = ' | '.join(line.strip() for line in (err or out).splitlines() if line.strip())[-400:]
            if rc == 124:
                why = 'no complete RDB within fetch_timeout (%s s)' % fetch_timeout
            raise BackupError('Fetching the RDB from %s with redis-cli --rdb failed (exit code %s): %s. Check '
                              'redis_password and that the node accepts SYNC from this host' % (node.address, rc, why),
                              kind='fetch')
        stopped_at = clock_now()
        durations['fetch'] = round(time.time() - step, 3)
        step = time.time()
        facts = check_rdb(run, tools['redis-check-rdb'], plain)
        durations['check'] = round(time.time() - step, 3)
        step = time.time()
        rdb_sha256, rdb_bytes = _catalog.hash_file(plain)
        compress(run, tools['zstd'], plain, os.path.join(staged, ARCHIVE_FILE))
        os.unlink(plain)
        durations['compress'] = round(time.time() - step, 3)
        files = _catalog.hash_tree(staged)
        durations['total'] = round(time.time() - began, 3)
        keys_by_db = facts['keys_by_db']
        entry = _catalog.make_entry(
            backup_id, CATALOG_TYPE, started_at, stopped_at, files,
            service=SERVICE,
            layout='rdb.zst',
            compressed=True,
            source=dict(address=node.address, role=source['role']),
            redis_version=server.get('redis_version'),
            rdb_version=facts['rdb_version'],
            rdb_created_at=_catalog.format_time(_to_datetime(facts['ctime'])) if facts['ctime'] else None,
            rdb_bytes=rdb_bytes,
            rdb_sha256=rdb_sha256,
            data_bytes=rdb_bytes,
            keys=facts['keys'],
            expires=facts['expires'],
            keys_by_db=dict((db, v['keys']) for db, v in keys_by_db.items()) if keys_by_db is not None else None,
            expires_by_db=dict((db, v['expires']) for db, v in keys_by_db.items()) if keys_by_db is not None else None,
            durations=durations,
            **(extra or {})
        )
        _catalog.publish(root, entry, staged)
        return entry
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def _to_datetime(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)


def lastsave(node):
    """``LASTSAVE`` as epoch seconds (redis-py turns the reply into a datetime)."""
    value = node.command('LASTSAVE')
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            return int(time.mktime(value.timetuple()))
        return int(value.timestamp())
    return int(value)


def server_time(node):
    """The node's clock (``TIME``) as an aware datetime: catalog times come from the server, not this host."""
    seconds, micros = node.call('time', command='TIME')
    return _to_datetime(int(seconds) + int(micros) / 1000000.0)


# ---------------------------------------------------------------------------------------------
# Verify


def unpack_checked(run, tools, root, entry, scratch):
    """Check hashes, unpack into ``scratch`` and check the RDB; return ``(path, facts, problems)``."""
    problems = _catalog.check_hashes(os.path.join(root, entry['id']), entry)
    if problems:
        return None, None, problems
    plain = os.path.join(scratch, RDB_FILE)
    try:
        decompress(run, tools['zstd'], os.path.join(root, entry['id'], ARCHIVE_FILE), plain)
        digest, size = _catalog.hash_file(plain)
        if entry.get('rdb_sha256') and (digest != entry['rdb_sha256'] or size != entry.get('rdb_bytes')):
            return None, None, ['%s unpacked: SHA-256 %s (%d bytes), recorded %s (%s bytes)'
                                % (RDB_FILE, digest, size, entry['rdb_sha256'], entry.get('rdb_bytes'))]
        facts = check_rdb(run, tools['redis-check-rdb'], plain)
    except BackupError as err:
        return None, None, [err.msg]
    if entry.get('keys') is not None and facts['keys'] != entry['keys']:
        problems.append('redis-check-rdb reads %s keys, the catalog records %s' % (facts['keys'], entry['keys']))
    return plain, facts, problems


def verify_snapshot(run, tools, root, entry):
    """``dict(id, ok, problems, checks)``: SHA-256 of the files, then redis-check-rdb of the unpacked RDB."""
    result = dict(id=entry['id'], ok=False, problems=[], checks=['sha256', 'redis-check-rdb'])
    scratch = scratch_dir(root, 'verify-' + entry['id'])
    try:
        dummy, facts, problems = unpack_checked(run, tools, root, entry, scratch)
        result['problems'] = problems
        result['ok'] = not problems
        if facts:
            result['keys'] = facts['keys']
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
