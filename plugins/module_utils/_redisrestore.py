# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The restore of a Redis snapshot into a Sentinel-managed set: ``Restore`` (its steps),
``run_restore`` (the order they run in, with the undo snapshot) and ``sentinel_check`` (what the
Sentinels say afterwards).

The decisions (and why) are those of ``_redissnap``'s docstring, from "Restore without losing the
restored data" on; the pure decisions the steps take (``restore_plan``, ``sync_decision``,
``aof_decision``, ``choose_detached``, the restore state file) live there, beside the snapshot code
that shares them, and are unit-tested there.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import shutil
import time

from ansible_collections.psscript.infra.plugins.module_utils import _catalog, _redis, _sentinel
from ansible_collections.psscript.infra.plugins.module_utils._catalog import BackupError
from ansible_collections.psscript.infra.plugins.module_utils._files import write_text_atomic
from ansible_collections.psscript.infra.plugins.module_utils._redissnap import (
    DONE, FAILED, RDB_FILE, SENTINEL_INFO_PERIOD, WAIT, agreed_view_master, all_replica_addresses, aof_decision,
    bgsave_decision, choose_detached, counts_text, keyspace, lastsave, loaded_counts_problems, plain_counts,
    remove_restore_state, restore_plan, rewrite_ended, role_switch_budget, start_bgsave, sync_decision,
    temp_server_config, version_tuple, wait_for, write_restore_state, wrong_masterauth)


class Restore(object):
    """One restore of an RDB into the Sentinel-managed set (see the module docstring for the steps).

    ``sset``: a ``_redis.SentinelSet``; ``open_node(host, port, password)``: a ``_redis.Node``
    factory (the temporary server); ``log(text)``: collects what happened for the result.
    """

    def __init__(self, run, tools, sset, open_node, listen_host, listen_port, password, log,
                 sync_timeout=None, timeout=300, sleep=time.sleep, root=None, username=None, replication=None,
                 tls=None):
        self.run = run
        self.tools = tools
        self.sset = sset
        self.open_node = open_node
        self.listen_host = listen_host
        self.listen_port = int(listen_port)
        self.listen = _sentinel.format_address(listen_host, listen_port)
        self.password = password
        # The module's own ACL user (None: default) and what the replicas authenticate with: (masteruser,
        # masterauth); None: no masteruser, masterauth = password (one password for everything).
        self.username = username
        self.replication = replication or (None, password)
        # The temporary server's TLS (temp_server_config's tls), None: plain TCP.
        self.tls = tls
        self.log = log
        self.sync_timeout = sync_timeout
        self.timeout = timeout
        self.sleep = sleep
        self.priorities = {}
        self.master = None
        self.temp = None
        self.temp_dir = None
        self.master_is_replica = False
        self.detached = None
        self.detached_address = None
        self.detached_keys = None
        self.master_changed = False
        # What the next run must undo if this one is killed: written before each change (root None: not kept).
        self.root = root
        self.state = dict(format=1, pid=os.getpid(), started_at=_catalog.format_time(datetime.datetime.now(datetime.timezone.utc)),
                          listen=self.listen, master=None, priorities={}, detached=None,
                          detached_masterauth='redis_password', temp_server=False, master_replicaof_temp=False,
                          held=False, scratch=None, backup=None)

    def record(self, **changes):
        self.state.update(changes)
        if self.root is not None:
            write_restore_state(self.root, self.state)

    def forget(self):
        if self.root is not None:
            remove_restore_state(self.root)

    # -- looking at the set -------------------------------------------------------------------
    def survey(self):
        """Master, replicas and the time budget from the Sentinel majority; BackupError when unhealthy."""
        views = self.sset.views()
        master = agreed_view_master(views)
        reachable = [view for view in views if view.get('reachable')]
        not_ok = [view['address'] for view in reachable if not view['ckquorum_ok']]
        if not_ok:
            raise BackupError('SENTINEL CKQUORUM fails on %s: fix the Sentinel set before a restore (action=check of '
                              'psscript.infra.sentinel_failover_check)' % ', '.join(not_ok), kind='sentinel')
        flagged = [view['address'] for view in reachable
                   if any(flag in _sentinel.DOWN_FLAGS + ('failover_in_progress',) for flag in view['master']['flags'])]
        if flagged:
            raise BackupError('Sentinel(s) %s flag the master %s as down or failing over: wait until the set is '
                              'healthy' % (', '.join(flagged), master), kind='sentinel')
        down_after = []
        for node in self.sset.sentinels:
            try:
                down_after.append(_redis.sentinel_master(node, self.sset.master_name).get('down-after-milliseconds'))
            except _redis.RedisOpError:  # an unreachable Sentinel has no say in the budget
                pass
        self.master = master
        return dict(master=master, replicas=all_replica_addresses(views, master),
                    budget=role_switch_budget(down_after, self.sync_timeout))

    def node(self, address):
        return self.sset.data_node(address)

    def info(self, address, section):
        return self.node(address).call('info', section, command='INFO %s' % section)

    def counts(self, address):
        return keyspace(self.info(address, 'keyspace'))

    # -- steps --------------------------------------------------------------------------------
    def check_master(self, master, temp_version):
        server = self.info(master, 'server')
        replication = self.info(master, 'replication')
        if replication.get('role') != 'master':
            raise BackupError('%s, named master by the Sentinels, reports role:%s' % (master, replication.get('role')),
                              kind='sentinel')
        live, mine = version_tuple(server.get('redis_version')), version_tuple(temp_version)
        if live and mine and live[:2] < mine[:2]:
            raise BackupError('The master runs Redis %s, older than the restore server %s of this image: it could not '
                              'load the RDB it would send. Use a backup image of the same Redis version'
                              % (server.get('redis_version'), temp_version), kind='version')
        try:
            masterauth = self.node(master).call('config_get', 'masterauth', command='CONFIG GET').get('masterauth')
            masteruser = self.node(master).call('config_get', 'masteruser', command='CONFIG GET').get('masteruser')
        except Exception:  # CONFIG may be renamed or denied: the sync wait will then say what went wrong
            masterauth = masteruser = None
        if masterauth is not None and (masteruser or None) != (self.replication[0] or None):
            raise BackupError('The master authenticates to its masters as user %s (masteruser), not %s: set '
                              'replication_user to the data nodes\' masteruser' % (masteruser or 'default',
                                                                                   self.replication[0] or 'default'),
                              kind='config')
        if masterauth is not None and (masterauth or None) != (self.replication[1] or None):
            raise BackupError('The master\'s masterauth differs from replication_password (default redis_password): '
                              'the master could not authenticate to the restore server. Pass the password the data '
                              'nodes replicate with', kind='config')
        return self.info(master, 'persistence')

    def stop_promotions(self, replicas, budget_wait=None):
        priorities = {}
        for address in replicas:
            try:
                config = self.node(address).call('config_get', 'replica-priority', command='CONFIG GET')
                priorities[address] = config.get('replica-priority')
            except Exception as err:
                raise BackupError('Cannot read replica-priority of replica %s (%s): every replica must answer before a '
                                  'restore' % (address, getattr(err, 'msg', err)), kind='replica')
        self.record(priorities=dict(priorities))
        for address in replicas:
            self.priorities[address] = priorities[address]
            self.node(address).call('config_set', 'replica-priority', 0, command='CONFIG SET')
        self.log('replica-priority 0 on %s (was %s)' % (', '.join(replicas) or 'no replica',
                                                        ', '.join('%s' % v for v in self.priorities.values()) or '-'))
        if not replicas:
            return

        def look():
            seen = {}
            for view in self.sset.views():
                if not view.get('reachable'):
                    continue
                for replica in view['replicas']:
                    if replica['address'] in replicas:
                        seen.setdefault(replica['address'], []).append(replica['priority'])
            return seen

        def decide(seen, elapsed, timeout):
            pending = [a for a in replicas if not seen.get(a) or any(p != 0 for p in seen[a])]
            if not pending:
                return DONE, ''
            if elapsed >= timeout:
                return FAILED, ('the Sentinels still report a non-zero replica-priority for %s after %.0f s'
                                % (', '.join(pending), elapsed))
            return WAIT, ''
        started = time.monotonic()
        state, detail = wait_for(look, decide, budget_wait or 3 * SENTINEL_INFO_PERIOD, interval=0.5, sleep=self.sleep)
        if state != DONE:
            raise BackupError(detail, kind='sentinel')
        self.log('every Sentinel sees replica-priority 0 (after %.1f s)' % (time.monotonic() - started))

    def restore_priorities(self, keep=None):
        """Priorities back on every replica but ``keep`` (a detached replica with old data stays at 0)."""
        problems = []
        restored = []
        for address, value in sorted(self.priorities.items()):
            if address == keep:
                continue
            try:
                self.node(address).call('config_set', 'replica-priority', value, command='CONFIG SET')
                restored.append(address)
            except Exception as err:
                problems.append('could not restore replica-priority %s on %s: %s' % (value, address, getattr(err, 'msg', err)))
        if restored:
            self.log('replica-priority restored on %s' % ', '.join(restored))
        self.priorities = dict((a, v) for a, v in self.priorities.items() if a not in restored)
        self.record(priorities=dict(self.priorities))
        return problems

    def choose_detached(self, master, replicas):
        """The replica kept with the old data (see choose_detached), or None; logs why."""
        replications, masterauths = {}, {}
        for address in replicas:
            try:
                replications[address] = self.info(address, 'replication')
                masterauths[address] = self.node(address).call('config_get', 'masterauth',
                                                               command='CONFIG GET').get('masterauth')
            except Exception:  # it is then not chosen; stop_promotions says why a replica does not answer
                replications[address], masterauths[address] = None, None
        chosen, skipped = choose_detached(master, replicas, replications, masterauths, self.replication[1])
        if not chosen and replicas:
            self.log('no replica kept detached: %s' % '; '.join('%s: %s' % item for item in sorted(skipped.items())))
        return chosen

    def detach(self, address):
        """Keep ``address`` on the old data: wrong masterauth, master link killed, wait for link down."""
        self.record(detached=address)
        self.detached = self.detached_address = address
        node = self.node(address)
        node.call('config_set', 'masterauth', wrong_masterauth(), command='CONFIG SET')
        node.command('CLIENT', 'KILL', 'TYPE', 'master')

        def look():
            return self.info(address, 'replication')

        def decide(replication, elapsed, timeout):
            if replication.get('master_link_status') == 'down' and replication.get('role') == 'slave':
                return DONE, ''
            if elapsed >= timeout:
                return FAILED, ('replica %s did not drop its master link (master_link_status:%s)'
                                % (address, replication.get('master_link_status')))
            return WAIT, ''
        state, detail = wait_for(look, decide, self.timeout, interval=0.1, sleep=self.sleep)
        if state != DONE:
            raise BackupError(detail, kind='detach')
        self.detached_keys = self.counts(address)
        self.log('replica %s detached with the data from before the restore (%s), master link down'
                 % (address, counts_text(self.detached_keys)))

    def detached_facts(self):
        """What the detached replica holds now (it must still be the old data, link down)."""
        replication = self.info(self.detached, 'replication')
        return dict(address=self.detached, keys_before=plain_counts(self.detached_keys),
                    keys_at_accept=plain_counts(self.counts(self.detached)),
                    link_at_accept=replication.get('master_link_status'), role_at_accept=replication.get('role'))

    def reattach(self):
        address = self.detached
        self.node(address).call('config_set', 'masterauth', self.replication[1] or '', command='CONFIG SET')
        self.detached = None
        self.record(detached=None, held=False)
        self.log('masterauth of %s set back: it resyncs from the master' % address)
        return address

    def start_temp_server(self, rdb_path, scratch):
        self.temp_dir = scratch
        target = os.path.join(scratch, RDB_FILE)
        if os.path.abspath(rdb_path) != target:
            shutil.copyfile(rdb_path, target)
        conf = os.path.join(scratch, 'redis.conf')
        settings = temp_server_config(self.listen_host, self.listen_port, self.password, scratch, self.username,
                                      self.replication, tls=self.tls)
        write_text_atomic(conf, settings, mode=0o600)
        rc, out, err = self.run([self.tools['redis-server'], conf])
        if rc != 0:
            raise BackupError('The temporary redis-server did not start (exit code %s): %s' % (rc, (err or out).strip()),
                              kind='temp_server')
        self.record(temp_server=True, scratch=scratch)
        self.temp = self.open_node(self.listen_host, self.listen_port, self.password)

        def look():
            try:
                return self.temp.call('info', 'persistence', command='INFO persistence'), None
            except Exception as err:
                return None, getattr(err, 'msg', str(err))

        def decide(snapshot, elapsed, timeout):
            info, error = snapshot
            if info is not None and str(info.get('loading', 0)) == '0':
                return DONE, ''
            # It daemonizes before it binds: a wrong address shows only in its log, and as no pidfile.
            if info is None and elapsed >= 5 and not self.temp_running():
                return FAILED, ('the temporary redis-server on %s is not running (is restore_listen_host an address of '
                                'this host?); its log: %s' % (self.listen, self.temp_log()))
            if elapsed >= timeout:
                return FAILED, ('the temporary redis-server on %s did not come up loaded within %s s (%s); its log: %s'
                                % (self.listen, timeout, error or 'loading', self.temp_log()))
            return WAIT, ''
        state, detail = wait_for(look, decide, self.timeout, interval=0.2, sleep=self.sleep)
        if state != DONE:
            raise BackupError(detail, kind='temp_server')
        return keyspace(self.temp.call('info', 'keyspace', command='INFO keyspace'))

    def temp_log(self):
        try:
            with open(os.path.join(self.temp_dir, 'redis.log')) as handle:
                return ' | '.join(line.strip() for line in handle.read().splitlines()[-4:])
        except (OSError, IOError, TypeError):
            return 'no log'

    def temp_running(self):
        """Whether the temporary server's process lives. It is an orphan once it daemonized: where
        PID 1 does not reap orphans (``docker run ... ansible``) a dead one stays a zombie."""
        try:
            with open(os.path.join(self.temp_dir, 'redis.pid')) as handle:
                pid = int(handle.read().strip())
            with open('/proc/%d/stat' % pid) as handle:
                return handle.read().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')
        except (OSError, IOError, ValueError, TypeError, IndexError):
            return False

    def stop_temp_server(self):
        if self.temp is not None:
            try:
                self.temp.command('SHUTDOWN', 'NOSAVE')
            except Exception:  # the connection drops when it stops: expected
                pass
            self.temp.close()
            self.temp = None
        for dummy in range(50):
            if not self.temp_running():
                break
            self.sleep(0.1)
        if self.state.get('temp_server'):
            self.record(temp_server=False)

    def sync_master(self, master, want, budget):
        temp_replid = self.temp.call('info', 'replication', command='INFO replication').get('master_replid')
        started = time.monotonic()
        self.record(master_replicaof_temp=True)
        self.master_changed = True
        self.node(master).command('REPLICAOF', self.listen_host, str(self.listen_port))
        self.master_is_replica = True
        self.log('REPLICAOF %s on %s' % (self.listen, master))

        def look():
            try:
                return self.info(master, 'replication'), self.counts(master)
            except Exception:
                return None, {}

        def decide(snapshot, elapsed, timeout):
            return sync_decision(snapshot[0], snapshot[1], want, elapsed, timeout, 'master %s' % master, temp_replid)
        state, detail = wait_for(look, decide, budget, interval=0.1, sleep=self.sleep)
        if state != DONE:
            raise BackupError('The master did not finish its sync from the restore server in time: %s' % detail,
                              kind='sync')
        self.promote(master)
        self.log('master %s synced and promoted back in %.1f s' % (master, time.monotonic() - started))

    def promote(self, master):
        self.node(master).command('REPLICAOF', 'NO', 'ONE')
        self.master_is_replica = False
        self.record(master_replicaof_temp=False)

    def persist(self, master, persistence):
        if str(persistence.get('aof_enabled', 0)) != '0':
            # A replica rewrites its AOF by itself after a full sync; let that one end, then rewrite
            # from the data as it is now (BGREWRITEAOF is refused while a rewrite runs).
            state, detail = wait_for(lambda: self.info(master, 'persistence'), rewrite_ended, self.timeout,
                                     interval=0.2, sleep=self.sleep)
            if state != DONE:
                raise BackupError('The restored data is live but not yet persisted on %s: %s' % (master, detail),
                                  kind='persist')
            before = _sentinel._int(self.info(master, 'persistence').get('aof_rewrites'), 0)
            self.node(master).command('BGREWRITEAOF')
            state, detail = wait_for(lambda: self.info(master, 'persistence'),
                                     lambda p, elapsed, timeout: aof_decision(before, p, elapsed, timeout),
                                     self.timeout, interval=0.2, sleep=self.sleep)
            what = 'AOF rewritten'
        else:
            node = self.node(master)
            before, dummy = start_bgsave(node, self.timeout, self.sleep)
            state, detail = wait_for(lambda: (self.info(master, 'persistence'), lastsave(node)),
                                     lambda s, elapsed, timeout: bgsave_decision(before, s[0], s[1], True, elapsed, timeout),
                                     self.timeout, interval=0.2, sleep=self.sleep)
            what = 'RDB saved'
        if state != DONE:
            raise BackupError('The restored data is live but not yet persisted on %s: %s' % (master, detail), kind='persist')
        self.log('%s on %s' % (what, master))

    def wait_replicas(self, master, replicas, want):
        replid = self.info(master, 'replication').get('master_replid')
        for address in replicas:
            def look(address=address):
                try:
                    return self.info(address, 'replication'), self.counts(address)
                except Exception:
                    return None, {}

            def decide(snapshot, elapsed, timeout, address=address):
                return sync_decision(snapshot[0], snapshot[1], want, elapsed, timeout, 'replica %s' % address, replid)
            state, detail = wait_for(look, decide, self.timeout, interval=0.2, sleep=self.sleep)
            if state != DONE:
                raise BackupError('The restored master is live, but a replica did not resync: %s' % detail,
                                  kind='replica')
            self.log('replica %s in sync: %s' % (address, counts_text(want)))

    def rescue(self):
        """After an error: never leave the set without a master, give failovers back. Returns problems.

        A detached replica is re-attached when the master's data was not touched yet; otherwise it
        stays detached (and at replica-priority 0) with the data from before the restore, recorded
        in the state file so the next run re-attaches it.
        """
        problems = []
        if self.master_is_replica and self.master:
            try:
                self.promote(self.master)
                self.log('rescue: REPLICAOF NO ONE on %s' % self.master)
            except Exception as err:
                problems.append('could not promote %s back (REPLICAOF NO ONE): %s: run it by hand NOW'
                                % (self.master, getattr(err, 'msg', err)))
        held = self.detached if self.master_changed else None
        if self.detached and not held:
            try:
                self.reattach()
            except Exception as err:
                problems.append('could not give %s its masterauth back: %s: CONFIG SET masterauth <redis password> on '
                                'it by hand' % (self.detached, getattr(err, 'msg', err)))
        problems.extend(self.restore_priorities(keep=held))
        if held:
            self.record(held=True)
        return problems


def run_restore(restore, rdb_path, snapshot, scratch, temp_version, check_mode=False, pre_snapshot=None):
    """Drive a Restore of ``rdb_path``; ``snapshot``: its ``keys``, ``expires`` and ``keys_by_db``
    (catalog entry or redis-check-rdb facts). ``pre_snapshot()``: takes the pre-restore snapshot and
    returns its catalog entry (None: none is taken). Returns the result dict; raises BackupError after
    rescuing the set."""
    survey = restore.survey()
    master, replicas, budget = survey['master'], survey['replicas'], survey['budget']
    persistence = restore.check_master(master, temp_version)
    aof = str(persistence.get('aof_enabled', 0)) != '0'
    detached = restore.choose_detached(master, replicas)
    expected_counts = snapshot.get('keys_by_db')
    keys_text = counts_text(expected_counts) if expected_counts is not None else '%s keys' % snapshot.get('keys')
    result = dict(master=master, replicas=replicas, listen=restore.listen, role_switch_budget_seconds=budget,
                  expected_keys=plain_counts(expected_counts) if expected_counts is not None else None,
                  detached_replica=dict(address=detached) if detached else None)
    result['plan'] = restore_plan(master, replicas, restore.listen, snapshot.get('name') or os.path.basename(rdb_path),
                                  keys_text, aof, budget, pre_snapshot=pre_snapshot is not None, detached=detached)
    if check_mode:
        return result
    if pre_snapshot is not None:
        taken = pre_snapshot()
        result['pre_restore_snapshot'] = taken['id']
        restore.log('pre-restore snapshot %s taken from %s: %s keys (to undo the restore, restore this id)'
                    % (taken['id'], taken['source']['address'], taken.get('keys')))
    stage = ['nothing was changed yet']
    restore.record(master=master, backup=snapshot.get('name'), pre_restore_snapshot=result.get('pre_restore_snapshot'))
    try:
        restore.stop_promotions(replicas)
        stage[0] = 'the live data was not touched'
        if detached:
            restore.detach(detached)
        loaded = restore.start_temp_server(rdb_path, scratch)
        problems = loaded_counts_problems(expected_counts, snapshot.get('keys'), snapshot.get('expires'), loaded)
        if problems:
            raise BackupError('The restore server did not load what the snapshot holds: %s' % '; '.join(problems),
                              kind='keys')
        restore.log('temporary server %s loaded %s' % (restore.listen, counts_text(loaded)))
        result['restored_keys'] = plain_counts(loaded)
        stage[0] = 'the master may hold its old data or the restored data: check its keys'
        restore.sync_master(master, loaded, budget)
        stage[0] = 'the master holds the restored data'
        after = restore.counts(master)
        if plain_counts(after) != plain_counts(loaded):
            raise BackupError('After REPLICAOF NO ONE the master holds %s, not the restored %s (writes arrived?)'
                              % (counts_text(after), counts_text(loaded)), kind='keys')
        restore.persist(master, persistence)
        restore.wait_replicas(master, [address for address in replicas if address != detached], loaded)
        if detached:
            # Accepted: the master holds the snapshot's counts, persisted, the other replicas follow it.
            result['detached_replica'] = restore.detached_facts()
            restore.log('restored data accepted; %s still held %s (master link %s)'
                        % (detached, counts_text(result['detached_replica']['keys_at_accept']),
                           result['detached_replica']['link_at_accept']))
            restore.reattach()
            restore.wait_replicas(master, [detached], loaded)
    except BaseException as err:
        held = restore.detached if restore.master_changed else None
        problems = restore.rescue()
        restore.stop_temp_server()
        if not problems and not held:
            restore.forget()
        msg = getattr(err, 'msg', None) or '%s: %s' % (type(err).__name__, err)
        msg += ' (%s; master %s%s)' % (stage[0], master, ', failovers allowed again' if not problems else '')
        if held:
            msg += held_text(held, restore.detached_keys, result.get('pre_restore_snapshot'))
        if problems:
            msg += '. ALSO: ' + '; '.join(problems)
        raise BackupError(msg, kind=getattr(err, 'kind', 'restore'))
    problems = restore.restore_priorities()
    restore.stop_temp_server()
    if problems:
        raise BackupError('The data is restored, but: %s' % '; '.join(problems), kind='priority')
    restore.forget()
    return result


def held_text(held, keys, pre_restore_id):
    """The failure message's part on the replica kept detached with the data from before the restore."""
    text = ('. Replica %s still holds the data from before the restore (%s): its master link is down on purpose '
            '(masterauth set to a wrong value) and its replica-priority stays 0, so no failover promotes it. '
            % (held, counts_text(keys)))
    if pre_restore_id:
        text += ('The pre-restore snapshot %s holds the same data: to go back, restore.yml -e service=redis -e '
                 'backup_id=%s. ' % (pre_restore_id, pre_restore_id))
    text += ('To copy it from the replica instead: redis-cli -h <replica> --rdb <file> now. The next redis_snapshot run '
             '(backup or restore) re-attaches it (masterauth back, full resync), which replaces that data')
    return text


def sentinel_check(sset, master, timeout, expected_replicas=None, sleep=time.sleep):
    """Wait until the Sentinel majority names ``master`` with no problem (evaluate); return the report."""
    def look():
        views = sset.views()
        current = _sentinel.likely_master(views)
        replication, error = sset.replication(current) if current else (None, None)
        return _sentinel.evaluate(views, expected_replicas, 10.0, replication, error, sset.master_name)

    def decide(report, elapsed, limit):
        named = report['master'] and _sentinel.format_address(report['master']['host'], report['master']['port'])
        if named and named != master:
            return FAILED, 'the Sentinels now name %s as master, not %s: a failover happened' % (named, master)
        if named == master and not report['problems']:
            return DONE, report
        if elapsed >= limit:
            return FAILED, '; '.join(report['problems']) or 'no Sentinel majority'
        return WAIT, report
    return wait_for(look, decide, timeout, interval=1.0, sleep=sleep)
