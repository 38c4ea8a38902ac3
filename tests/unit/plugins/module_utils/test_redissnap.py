# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for module_utils._redissnap: the pure decisions of redis_snapshot.

The redis-check-rdb outputs are what redis-check-rdb 8.0.2 of the psscript/backup image printed for
an RDB written by psscript/redis:8 (2 keys in db0, one with a TTL, 2 in db3), for the same file with
one byte flipped, and for it cut after 50 bytes; fake_rdb() places bytes of that file at their offsets.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os

import pytest

from ansible_collections.psscript.infra.plugins.module_utils import _catalog, _redis, _redisrestore, _redissnap
from ansible_collections.psscript.infra.plugins.module_utils._catalog import BackupError

CHECK_OK = """\
[offset 0] Checking RDB file /d/dump.rdb
[offset 26] AUX FIELD redis-ver = '8.0.2'
[offset 40] AUX FIELD redis-bits = '64'
[offset 52] AUX FIELD ctime = '1795638386'
[offset 67] AUX FIELD used-mem = '788624'
[offset 79] AUX FIELD aof-base = '0'
[offset 81] Selecting DB ID 0
[offset 105] Selecting DB ID 3
[offset 139] Checksum OK
[offset 139] \\o/ RDB looks OK! \\o/
[info] 4 keys read
[info] 1 expires
[info] 0 already expired
[info] 0 subexpires
"""

CHECK_CRC = """\
[offset 0] Checking RDB file /d/bad.rdb
[offset 26] AUX FIELD redis-ver = '8.0.2'
[offset 81] Selecting DB ID 0
[offset 105] Selecting DB ID 3
--- RDB ERROR DETECTED ---
[offset 139] RDB CRC error
[additional info] While doing: check-sum
[info] 4 keys read
[info] 1 expires
[info] 0 already expired
[info] 0 subexpires
"""

CHECK_TRUNCATED = """\
[offset 0] Checking RDB file /d/trunc.rdb
[offset 26] AUX FIELD redis-ver = '8.0.2'
[offset 40] AUX FIELD redis-bits = '64'
--- RDB ERROR DETECTED ---
[offset 48] Unexpected EOF reading RDB file
[additional info] While doing: read-aux
[additional info] Reading type 0 (string)
[info] 0 keys read
[info] 0 expires
[info] 0 already expired
[info] 0 subexpires
"""

# Bytes 0-8 (magic), 77-89 and 100-109 of the RDB above: SELECTDB 0, RESIZEDB 2 1, ... SELECTDB 3, RESIZEDB 2 0.
RDB_HEAD = b'REDIS0012'
RDB_DB0 = bytes.fromhex('c000fe00fb0201fc8a9d7214a2')
RDB_DB3 = bytes.fromhex('61c001fe03fb02000001')


def fake_rdb():
    data = bytearray(120)
    data[0:9] = RDB_HEAD
    data[77:77 + len(RDB_DB0)] = RDB_DB0
    data[100:100 + len(RDB_DB3)] = RDB_DB3
    return bytes(data)


def reader(data):
    return lambda offset, size: data[offset:offset + size]


# ---------------------------------------------------------------------------------------------
# redis-check-rdb, RDB bytes, INFO


def test_parse_check_rdb_ok():
    facts = _redissnap.parse_check_rdb(CHECK_OK)
    assert facts['ok'] is True and facts['error'] is None
    assert (facts['keys'], facts['expires'], facts['already_expired']) == (4, 1, 0)
    assert facts['redis_version'] == '8.0.2' and facts['ctime'] == 1795638386 and facts['used_mem'] == 788624
    assert facts['db_offsets'] == [(0, 81), (3, 105)]


@pytest.mark.parametrize('text, words', [(CHECK_CRC, 'RDB CRC error'), (CHECK_TRUNCATED, 'Unexpected EOF')])
def test_parse_check_rdb_errors(text, words):
    facts = _redissnap.parse_check_rdb(text)
    assert facts['ok'] is False
    assert words in facts['error'] and '[additional info]' in facts['error']


def test_parse_check_rdb_empty_output_is_not_ok():
    assert _redissnap.parse_check_rdb('')['ok'] is False


@pytest.mark.parametrize('data, value, pos', [
    (bytes([0x05]), 5, 1),
    (bytes([0x41, 0x02]), 0x102, 2),
    (bytes([0x80, 0, 1, 0, 0]), 65536, 5),
    (bytes([0x81, 0, 0, 0, 1, 0, 0, 0, 0]), 1 << 32, 9),
])
def test_read_length(data, value, pos):
    assert _redissnap.read_length(data, 0) == (value, pos)


def test_read_length_refuses_special_encoding():
    with pytest.raises(ValueError):
        _redissnap.read_length(bytes([0xC0]), 0)


def test_keys_per_db_reads_resizedb_after_selectdb():
    counts = _redissnap.keys_per_db(reader(fake_rdb()), [(0, 81), (3, 105)])
    assert counts == {'0': {'keys': 2, 'expires': 1}, '3': {'keys': 2, 'expires': 0}}


def test_keys_per_db_none_without_resizedb():
    assert _redissnap.keys_per_db(reader(fake_rdb()), [(0, 80)]) is None
    assert _redissnap.keys_per_db(reader(b''), [(0, 0)]) is None


def test_rdb_version():
    assert _redissnap.rdb_version(RDB_HEAD) == 12
    assert _redissnap.rdb_version(b'PGDMP') is None


def test_keyspace_from_redis_py_and_text():
    parsed = {'db0': {'keys': 1001, 'expires': 1, 'avg_ttl': 5}, 'db3': {'keys': 50}, 'db4': {'keys': 0}}
    assert _redissnap.keyspace(parsed) == {'0': 1001, '3': 50}
    assert _redissnap.keyspace({'db2': 'keys=7,expires=0,avg_ttl=0'}) == {'2': 7}
    assert _redissnap.keyspace(None) == {}


def test_counts_helpers():
    assert _redissnap.plain_counts({'0': {'keys': 3}, '1': {'keys': 0}}) == {'0': 3}
    assert _redissnap.total_keys({'0': 3, '5': 4}) == 7
    assert _redissnap.counts_text({'3': 2, '0': 1}) == 'db0=1, db3=2'
    assert _redissnap.counts_text({}) == 'no keys'
    assert _redissnap.version_tuple('8.0.2') == (8, 0, 2) and _redissnap.version_tuple(None) is None


# ---------------------------------------------------------------------------------------------
# Choosing the node


MASTER = '172.29.0.31:6379'


def replication(master_host='172.29.0.31', master_port=6379, link='up', syncing=0, offset=100, role='slave'):
    return dict(role=role, master_host=master_host, master_port=master_port, master_link_status=link,
                master_sync_in_progress=syncing, slave_repl_offset=offset)


def view(address, master=MASTER, replicas=(), reachable=True):
    if not reachable:
        return dict(address=address, reachable=False, error='down')
    host, port = master.split(':')
    return dict(address=address, reachable=True, error=None, ckquorum_ok=True,
                master=dict(host=host, port=int(port), address=master, flags=['master'], epoch=0),
                replicas=[dict(address=a, flags=list(flags), priority=priority, link_status='ok')
                          for a, flags, priority in replicas])


REPLICAS = [('172.29.0.32:6380', ['slave'], 100), ('172.29.0.33:6381', ['slave'], 100)]


def test_replica_in_sync_reasons():
    assert _redissnap.replica_in_sync(replication(), MASTER) is None
    assert 'did not answer' in _redissnap.replica_in_sync(None, MASTER)
    assert 'role:master' in _redissnap.replica_in_sync(replication(role='master'), MASTER)
    assert 'not 172.29.0.31:6379' in _redissnap.replica_in_sync(replication(master_host='10.0.0.1'), MASTER)
    assert 'down' in _redissnap.replica_in_sync(replication(link='down'), MASTER)
    assert 'syncing' in _redissnap.replica_in_sync(replication(syncing=1), MASTER)


def test_choose_source_prefers_replica_with_highest_offset():
    candidates = ['172.29.0.32:6380', '172.29.0.33:6381']
    infos = {candidates[0]: replication(offset=10), candidates[1]: replication(offset=20)}
    chosen = _redissnap.choose_source(MASTER, candidates, infos)
    assert chosen == dict(address=candidates[1], role='replica', warning=None, skipped={})


def test_choose_source_skips_replicas_not_in_sync():
    candidates = ['172.29.0.32:6380', '172.29.0.33:6381']
    infos = {candidates[0]: replication(link='down', offset=99), candidates[1]: replication(offset=1)}
    chosen = _redissnap.choose_source(MASTER, candidates, infos)
    assert chosen['address'] == candidates[1] and 'down' in chosen['skipped'][candidates[0]]


def test_choose_source_falls_back_to_master_with_warning():
    candidates = ['172.29.0.32:6380']
    chosen = _redissnap.choose_source(MASTER, candidates, {candidates[0]: replication(syncing=1)})
    assert chosen['address'] == MASTER and chosen['role'] == 'master'
    assert 'No replica' in chosen['warning'] and 'syncing' in chosen['warning']
    chosen = _redissnap.choose_source(MASTER, [], {})
    assert chosen['role'] == 'master' and 'no healthy replica' in chosen['warning']


def test_choose_source_master_when_asked():
    chosen = _redissnap.choose_source(MASTER, ['172.29.0.32:6380'], {'172.29.0.32:6380': replication()}, 'master')
    assert chosen['address'] == MASTER and chosen['warning'] is None


def test_agreed_view_master_and_replicas():
    down = [('172.29.0.32:6380', ['slave', 's_down'], 100), ('172.29.0.33:6381', ['slave'], 100)]
    views = [view('s1:1', replicas=REPLICAS), view('s2:2', replicas=down), view('s3:3', reachable=False)]
    assert _redissnap.agreed_view_master(views) == MASTER
    # A replica any agreeing Sentinel flags down is not a snapshot candidate, but a restore covers it.
    assert _redissnap.replica_addresses(views, MASTER) == ['172.29.0.33:6381']
    assert _redissnap.all_replica_addresses(views, MASTER) == ['172.29.0.32:6380', '172.29.0.33:6381']


def test_agreed_view_master_refuses_without_majority():
    views = [view('s1:1'), view('s2:2', master='172.29.0.32:6380'), view('s3:3', reachable=False)]
    with pytest.raises(BackupError) as err:
        _redissnap.agreed_view_master(views)
    assert 'majority' in err.value.msg


# ---------------------------------------------------------------------------------------------
# BGSAVE and waiting


class SaveNode(object):
    """A node whose saves are scripted: INFO persistence replies in turn, BGSAVE replies in turn."""

    address = '172.29.0.32:6380'

    def __init__(self, persistence, bgsave, lastsave=100, now=200):
        self.persistence, self.bgsave, self.saved, self.now = list(persistence), list(bgsave), lastsave, now
        self.sent = []

    def call(self, method, *args, **kwargs):
        if method == 'time':
            return [self.now, 0]
        info = self.persistence.pop(0) if len(self.persistence) > 1 else self.persistence[0]
        return info

    def command(self, *args):
        if args == ('LASTSAVE',):
            return self.saved
        self.sent.append(args)
        reply = self.bgsave.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def refused(detail):
    return _redis.RedisOpError('Redis %s answered BGSAVE with an error: %s' % (SaveNode.address, detail), 'response', detail)


def test_bgsave_is_always_scheduled_so_an_aof_rewrite_never_refuses_it():
    node = SaveNode([{'rdb_bgsave_in_progress': 0}], ['Background saving scheduled'])
    assert _redissnap.start_bgsave(node, 10, sleep=lambda s: None) == (100, False)
    assert node.sent == [('BGSAVE', 'SCHEDULE')]


def test_bgsave_waits_for_a_save_that_started_meanwhile_then_asks_again():
    # The save rules fork between our look and BGSAVE: refused, wait for that save, ask again.
    node = SaveNode([{'rdb_bgsave_in_progress': 0}, {'rdb_bgsave_in_progress': 1}, {'rdb_bgsave_in_progress': 0}],
                    [refused('ERR Background save already in progress'), 'Background saving started'])
    slept = []
    assert _redissnap.start_bgsave(node, 10, sleep=slept.append) == (100, True)
    assert node.sent == [('BGSAVE', 'SCHEDULE')] * 2
    assert slept, 'it waited for the running save'


def test_bgsave_gives_up_on_another_error_with_the_servers_words():
    node = SaveNode([{'rdb_bgsave_in_progress': 0}], [refused('MISCONF no disk')])
    with pytest.raises(BackupError) as err:
        _redissnap.start_bgsave(node, 10, sleep=lambda s: None)
    assert 'MISCONF no disk' in err.value.msg and err.value.kind == 'bgsave'


def test_bgsave_gives_up_when_a_running_save_never_ends():
    clock = iter(range(0, 1000, 3)).__next__
    node = SaveNode([{'rdb_bgsave_in_progress': 1}], ['never sent'])
    with pytest.raises(BackupError) as err:
        _redissnap.start_bgsave(node, 10, sleep=lambda s: None, clock=clock)
    assert 'did not end' in err.value.msg and node.sent == []


def test_lastsave_needs_next_second():
    assert _redissnap.lastsave_needs_next_second(100, 100) is True
    assert _redissnap.lastsave_needs_next_second(99, 100) is False


def persistence(running=0, status='ok'):
    return dict(rdb_bgsave_in_progress=running, rdb_last_bgsave_status=status)


def test_bgsave_decision():
    decide = _redissnap.bgsave_decision
    assert decide(100, persistence(), 101, True, 1, 60)[0] == _redissnap.DONE
    # LASTSAVE alone is not proof: still running, or not advanced.
    assert decide(100, persistence(running=1), 101, True, 1, 60)[0] == _redissnap.WAIT
    assert decide(100, persistence(), 100, False, 1, 60)[0] == _redissnap.WAIT
    state, detail = decide(100, persistence(status='err'), 100, True, 1, 60)
    assert state == _redissnap.FAILED and 'rdb_last_bgsave_status:err' in detail
    state, detail = decide(100, persistence(running=1), 100, True, 60, 60)
    assert state == _redissnap.FAILED and 'bgsave_timeout' in detail
    # A failed earlier save does not fail a save that has not started yet (scheduled).
    assert decide(100, persistence(status='err'), 100, False, 1, 60)[0] == _redissnap.WAIT


def test_wait_for_polls_until_done_and_times_out():
    ticks = iter(range(100))
    looks = iter([1, 2, 3])
    state, detail = _redissnap.wait_for(lambda: next(looks), lambda v, elapsed, t: (_redissnap.DONE, v) if v == 3
                                        else (_redissnap.WAIT, v), 10, sleep=lambda s: None,
                                        clock=lambda: next(ticks))
    assert (state, detail) == (_redissnap.DONE, 3)
    def late(value, elapsed, limit):
        return (_redissnap.FAILED, 'late') if elapsed >= limit else (_redissnap.WAIT, '')
    state, detail = _redissnap.wait_for(lambda: 0, late, 3, sleep=lambda s: None, clock=iter(range(100)).__next__)
    assert (state, detail) == (_redissnap.FAILED, 'late')


def test_save_and_rewrite_ended():
    assert _redissnap.save_ended({'rdb_bgsave_in_progress': 0}, 0, 5)[0] == _redissnap.DONE
    assert _redissnap.save_ended({'rdb_bgsave_in_progress': 1}, 5, 5)[0] == _redissnap.FAILED
    assert _redissnap.rewrite_ended({'aof_rewrite_in_progress': 0, 'aof_rewrite_scheduled': 1}, 0, 5)[0] == _redissnap.WAIT
    assert _redissnap.rewrite_ended({'aof_rewrite_in_progress': 0, 'aof_rewrite_scheduled': 0}, 0, 5)[0] == _redissnap.DONE


def test_aof_decision():
    info = dict(aof_rewrite_in_progress=0, aof_rewrite_scheduled=0, aof_rewrites=3, aof_last_bgrewrite_status='ok')
    assert _redissnap.aof_decision(2, info, 0, 10)[0] == _redissnap.DONE
    assert _redissnap.aof_decision(3, info, 0, 10)[0] == _redissnap.WAIT
    assert _redissnap.aof_decision(3, info, 10, 10)[0] == _redissnap.FAILED
    assert _redissnap.aof_decision(2, dict(info, aof_last_bgrewrite_status='err'), 0, 10)[0] == _redissnap.FAILED
    assert _redissnap.aof_decision(2, dict(info, aof_rewrite_in_progress=1), 0, 10)[0] == _redissnap.WAIT


# ---------------------------------------------------------------------------------------------
# Space, budget, counts, plan


def entry(backup_id, stop, **extra):
    base = dict(id=backup_id, type='full', service='redis', started_at=stop, stopped_at=stop, files={})
    base.update(extra)
    return base


def test_expected_size():
    entries = [entry('20250101T000000Z-full', '2025-01-01T00:00:01Z', rdb_bytes=1000, bytes=300),
               entry('20250102T000000Z-full', '2025-01-02T00:00:01Z', rdb_bytes=2000, bytes=500)]
    assert _redissnap.expected_size(entries, 10)[0] == 2500
    assert _redissnap.expected_size([], 4096) == (8192, 'used_memory of the source node, twice (plain RDB and compressed copy)')
    assert _redissnap.expected_size([], None)[0] == 0


def test_role_switch_budget():
    # down-after 5000 ms: SDOWN after 5 + 20 s; stay 5 s below.
    assert _redissnap.role_switch_budget(['5000', '30000', None]) == 20.0
    assert _redissnap.role_switch_budget(['5000'], wanted=8) == 8.0
    with pytest.raises(BackupError):
        _redissnap.role_switch_budget([None])


def test_loaded_counts_problems():
    catalog = {'0': 10, '3': 2}
    assert _redissnap.loaded_counts_problems(catalog, 12, 0, {'0': 10, '3': 2}) == []
    # Keys with a TTL may have expired on load, no more.
    assert _redissnap.loaded_counts_problems(catalog, 12, 3, {'0': 8, '3': 2}) == []
    problems = _redissnap.loaded_counts_problems(catalog, 12, 1, {'0': 8, '3': 2})
    assert problems and '2 keys are missing' in problems[0]
    problems = _redissnap.loaded_counts_problems(catalog, 12, 0, {'0': 10, '3': 2, '5': 1})
    assert problems and 'db5 holds 1 keys' in problems[0]
    # Per-database counts unknown: totals only.
    assert _redissnap.loaded_counts_problems(None, 12, 0, {'0': 12}) == []
    assert _redissnap.loaded_counts_problems(None, 12, 0, {'0': 13})


def test_sync_decision():
    up = dict(master_link_status='up', master_sync_in_progress=0, master_replid='abc')
    want = {'0': 5}
    assert _redissnap.sync_decision(up, {'0': 5}, want, 0, 10, 'master m', 'abc')[0] == _redissnap.DONE
    state, detail = _redissnap.sync_decision(up, {'0': 5}, want, 0, 10, 'replica r', 'def')
    assert state == _redissnap.WAIT and 'replication id' in detail
    assert _redissnap.sync_decision(dict(up, master_link_status='down'), {}, want, 0, 10, 'm')[0] == _redissnap.WAIT
    assert _redissnap.sync_decision(dict(up, master_sync_in_progress=1), {}, want, 0, 10, 'm')[0] == _redissnap.WAIT
    state, detail = _redissnap.sync_decision(up, {'0': 4}, want, 10, 10, 'master m')
    assert state == _redissnap.FAILED and 'holds db0=4, expected db0=5' in detail
    assert _redissnap.sync_decision(None, {}, want, 10, 10, 'm')[0] == _redissnap.FAILED


def test_restore_plan_names_every_step():
    plan = _redissnap.restore_plan(MASTER, ['r1:1', 'r2:2'], '172.29.0.50:16379', 'id', 'db0=5', True, 20.0)
    text = '\n'.join(plan)
    for words in ('replica-priority 0 on r1:1, r2:2', 'REPLICAOF 172.29.0.50:16379', 'REPLICAOF NO ONE',
                  'BGREWRITEAOF', 'at most 20 s', 'restore replica-priority', 'CKQUORUM'):
        assert words in text
    assert 'BGSAVE' in '\n'.join(_redissnap.restore_plan(MASTER, [], 'l:1', 'f', 'x', False, 20.0))


def test_temp_server_config_quotes_password_and_turns_persistence_off():
    text = _redissnap.temp_server_config('172.29.0.50', 16379, 'a"b\\c', '/backups/.scratch-x')
    lines = text.splitlines()
    assert 'bind 172.29.0.50' in lines and 'port 16379' in lines and 'appendonly no' in lines and 'save ""' in lines
    assert 'requirepass "a\\"b\\\\c"' in lines
    assert 'dir /backups/.scratch-x' in lines
    assert 'requirepass' not in _redissnap.temp_server_config('h', 1, None, '/d')


def test_temp_server_config_with_acl_users_holds_hashes_only():
    lines = _redissnap.temp_server_config('h', 1, 'pw-restore', '/d', 'restore', ('replica', 'pw-replica')).splitlines()
    sha = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    assert 'user default off' in lines
    assert 'user restore on #%s ~* &* +@all' % sha('pw-restore') in lines
    assert 'user replica on #%s ~* &* +@all' % sha('pw-replica') in lines
    assert not [line for line in lines if 'pw-' in line or line.startswith('requirepass')]
    # The module as an ACL user, the master with masterauth alone (no masteruser): the default user takes it.
    lines = _redissnap.temp_server_config('h', 1, 'pw-restore', '/d', 'restore', (None, 'pw-old')).splitlines()
    assert 'user default on #%s ~* &* +@all' % sha('pw-old') in lines


# ---------------------------------------------------------------------------------------------
# Files and catalog (real files in tmp_path, a fake run for the tools)


def fake_run(outputs):
    calls = []

    def run(args, environ_update=None):
        calls.append((list(args), environ_update))
        name = os.path.basename(args[0])
        if name == 'zstd':
            src, dst = args[-1], args[args.index('-o') + 1]
            with open(src, 'rb') as handle, open(dst, 'wb') as out:
                out.write(handle.read())
            return 0, '', ''
        return outputs[name]
    run.calls = calls
    return run


TOOLS = {'redis-check-rdb': '/usr/bin/redis-check-rdb', 'zstd': '/usr/bin/zstd'}


def test_check_rdb_adds_version_and_per_db_counts(tmp_path):
    path = tmp_path / 'dump.rdb'
    path.write_bytes(fake_rdb())
    facts = _redissnap.check_rdb(fake_run({'redis-check-rdb': (0, CHECK_OK, '')}), TOOLS['redis-check-rdb'], str(path))
    assert facts['rdb_version'] == 12
    assert facts['keys_by_db'] == {'0': {'keys': 2, 'expires': 1}, '3': {'keys': 2, 'expires': 0}}


def test_check_rdb_raises_on_damage(tmp_path):
    path = tmp_path / 'dump.rdb'
    path.write_bytes(fake_rdb())
    with pytest.raises(BackupError) as err:
        _redissnap.check_rdb(fake_run({'redis-check-rdb': (1, CHECK_CRC, '')}), TOOLS['redis-check-rdb'], str(path))
    assert 'RDB CRC error' in err.value.msg and err.value.kind == 'damaged'


def publish_fake(root, backup_id='20250102T000000Z-full', stop='2025-01-02T00:00:05.000000Z', **extra):
    staged = _catalog.start_backup(str(root), backup_id)
    with open(os.path.join(staged, _redissnap.ARCHIVE_FILE), 'wb') as handle:
        handle.write(fake_rdb())
    digest, size = _catalog.hash_file(os.path.join(staged, _redissnap.ARCHIVE_FILE))
    item = _catalog.make_entry(backup_id, 'full', stop, stop, _catalog.hash_tree(staged), service='redis',
                               keys=4, rdb_sha256=digest, rdb_bytes=size, **extra)
    _catalog.publish(str(root), item, staged)
    return item


def test_verify_snapshot_ok_and_damaged(tmp_path):
    item = publish_fake(tmp_path)
    run = fake_run({'redis-check-rdb': (0, CHECK_OK, '')})
    outcome = _redissnap.verify_snapshot(run, TOOLS, str(tmp_path), item)
    assert outcome['ok'] is True and outcome['keys'] == 4
    assert not [name for name in os.listdir(str(tmp_path)) if name.startswith('.scratch-')]
    # One flipped byte: the SHA-256 check fails before anything is unpacked.
    archive = tmp_path / item['id'] / _redissnap.ARCHIVE_FILE
    data = bytearray(archive.read_bytes())
    data[5] ^= 0xFF
    archive.write_bytes(bytes(data))
    outcome = _redissnap.verify_snapshot(run, TOOLS, str(tmp_path), item)
    assert outcome['ok'] is False and 'SHA-256' in outcome['problems'][0]


def test_verify_snapshot_reports_key_count_mismatch(tmp_path):
    item = publish_fake(tmp_path)
    item['keys'] = 5
    outcome = _redissnap.verify_snapshot(fake_run({'redis-check-rdb': (0, CHECK_OK, '')}), TOOLS, str(tmp_path), item)
    assert outcome['ok'] is False and 'reads 4 keys, the catalog records 5' in outcome['problems'][0]


def test_record_verification(tmp_path):
    item = publish_fake(tmp_path)
    assert _catalog.record_verify(str(tmp_path), item, dict(ok=False, problems=['bad']))
    stored = json.loads((tmp_path / item['id'] / 'catalog.json').read_text())
    assert stored['verified'] is False and stored['verify_error'] == 'bad'


def test_listing_and_prune(tmp_path):
    old = publish_fake(tmp_path, '20250101T000000Z-full', '2025-01-01T00:00:05.000000Z')
    new = publish_fake(tmp_path, '20250102T000000Z-full', '2025-01-02T00:00:05.000000Z')
    listed = _redissnap.listing(str(tmp_path))
    assert [b['id'] for b in listed['backups']] == [old['id'], new['id']] and listed['latest'] == new['id']
    assert listed['last_verified_full'] is None
    plan = _catalog.prune(str(tmp_path), 0, 1, 3600, check_mode=True)
    assert plan['removed'] == [old['id']] and os.path.isdir(str(tmp_path / old['id']))
    done = _catalog.prune(str(tmp_path), 0, 1, 3600, check_mode=False)
    assert done['removed'] == [old['id']] and not os.path.exists(str(tmp_path / old['id']))
    assert done['kept'] == [new['id']]


def test_choose_for_restore_local_first_then_s3():
    a = entry('20250101T000000Z-full', '2025-01-01T00:00:05Z')
    b = entry('20250102T000000Z-full', '2025-01-02T00:00:05Z')
    assert _redissnap.choose_for_restore([a], [a, b], 'latest') == (b, True)
    assert _redissnap.choose_for_restore([a, b], [b], 'latest') == (b, False)
    assert _redissnap.choose_for_restore([a], [], a['id']) == (a, False)
    with pytest.raises(_catalog.CatalogError):
        _redissnap.choose_for_restore([a], [], '20991231T000000Z-full')
    with pytest.raises(BackupError):
        _redissnap.choose_for_restore([], [], 'latest')
    # A snapshot that failed verification is never chosen as latest.
    assert _redissnap.choose_for_restore([a, dict(b, verified=False)], [], 'latest') == (a, False)


def test_server_time_and_lastsave_conversions():
    class Node(object):
        def call(self, method, command=None):
            return (1795638386, 250000)

        def command(self, *args):
            return datetime.datetime.fromtimestamp(1795638386)
    moment = _redissnap.server_time(Node())
    assert moment.tzinfo is not None and moment.microsecond == 250000
    assert _redissnap.lastsave(Node()) == 1795638386


# ---------------------------------------------------------------------------------------------
# Restore safety: the replica kept detached, the pre-restore snapshot, the state a killed run leaves

M = '172.29.0.31:6379'
R2 = '172.29.0.32:6380'
R3 = '172.29.0.33:6381'


def test_choose_detached_prefers_in_sync_highest_offset_with_the_stack_password():
    replications = {R2: replication(offset=50), R3: replication(offset=90)}
    auths = {R2: 'pw', R3: 'pw'}
    assert _redissnap.choose_detached(MASTER, [R2, R3], replications, auths, 'pw') == (R3, {})
    # A replica whose masterauth is not redis_password could not be given it back from the module's parameter.
    chosen, skipped = _redissnap.choose_detached(MASTER, [R2, R3], replications, dict(auths, **{R3: 'old'}), 'pw')
    assert chosen == R2 and skipped == {R3: 'its masterauth is not redis_password'}
    # Not in sync: it does not hold the current data; unreadable masterauth (CONFIG denied): not chosen.
    chosen, skipped = _redissnap.choose_detached(MASTER, [R2, R3], {R2: replication(link='down'), R3: None},
                                                 {R2: 'pw', R3: None}, 'pw')
    assert chosen is None and skipped == {R2: 'its link to the master is down',
                                          R3: 'its masterauth could not be read'}
    assert _redissnap.choose_detached(MASTER, [], {}, {}, 'pw') == (None, {})
    # The only replica is still detached.
    assert _redissnap.choose_detached(MASTER, [R2], {R2: replication()}, {R2: 'pw'}, 'pw')[0] == R2


def test_restore_plan_says_pre_restore_snapshot_and_detached_replica():
    steps = _redissnap.restore_plan(M, [R2, R3], '172.29.0.50:16379', 'snap', 'db0=5', True, 20.0,
                                    pre_snapshot=True, detached=R3)
    text = '\n'.join(steps)
    assert steps[1].startswith('take a pre-restore snapshot of the current data')
    assert 'detach replica %s' % R3 in text and 'wait until %s is in sync' % R2 in text
    assert 'give %s its masterauth back' % R3 in text and 'NOREPLICAS' not in text
    single = '\n'.join(_redissnap.restore_plan(M, [R2], 'l', 's', 'k', True, 20.0, detached=R2))
    assert 'only replica' in single and 'NOREPLICAS' in single and 'pre-restore' not in single
    none = _redissnap.restore_plan(M, [R2], 'l', 's', 'k', True, 20.0, detached=None)
    assert any(step.startswith('keep no replica detached') for step in none)


def test_wrong_masterauth_is_random():
    assert _redissnap.wrong_masterauth() != _redissnap.wrong_masterauth()


def test_restore_state_file_is_private_atomic_and_checked(tmp_path):
    root = str(tmp_path)
    assert _redissnap.read_restore_state(root) is None
    _redissnap.write_restore_state(root, dict(format=1, priorities={R2: '100'}))
    path = os.path.join(root, '.restore-state.json')
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert _redissnap.read_restore_state(root) == dict(format=1, priorities={R2: '100'})
    assert sorted(os.listdir(root)) == ['.restore-state.json']
    _redissnap.remove_restore_state(root)
    _redissnap.remove_restore_state(root)  # already gone: fine
    with open(path, 'w') as handle:
        handle.write('{"format": 1, "prio')
    with pytest.raises(BackupError, match='is damaged'):
        _redissnap.read_restore_state(root)
    with open(path, 'w') as handle:
        handle.write('{"format": 7}')
    with pytest.raises(BackupError, match='not a restore state this module wrote'):
        _redissnap.read_restore_state(root)


def killed_state(**extra):
    state = dict(format=1, pid=7, started_at='2026-01-01T00:00:00.000000Z', listen='172.29.0.50:16379', master=M,
                 priorities={R2: '100', R3: '50'}, detached=R3, temp_server=True, scratch=None, held=False, backup='b')
    state.update(extra)
    return state


def test_recovery_plan_undoes_only_what_is_still_changed():
    on_temp = replication(master_host='172.29.0.50', master_port=16379)
    assert _redissnap.recovery_plan(killed_state(), on_temp) == [
        ('replicaof-no-one', M, None), ('stop-temp-server', '172.29.0.50:16379', None),
        ('masterauth', R3, None), ('replica-priority', R2, '100'), ('replica-priority', R3, '50')]
    # The master is a master again, or follows another node (Sentinel failed over), or does not answer: left alone.
    for master_replication in ({'role': 'master'}, replication(master_host='172.29.0.32', master_port=6380), None):
        steps = _redissnap.recovery_plan(killed_state(temp_server=False, detached=None), master_replication)
        assert steps == [('replica-priority', R2, '100'), ('replica-priority', R3, '50')]


class FakeNode(object):
    """A data node: CONFIG GET/SET, INFO replication/keyspace, REPLICAOF and CLIENT KILL TYPE master."""

    def __init__(self, role='slave', priority='100', masterauth='pw', keys=5, offset=100):
        self.config = {'replica-priority': priority, 'masterauth': masterauth}
        self.replication = replication(role=role, offset=offset)
        self.keys = keys
        self.commands = []
        self.broken = False

    def call(self, method, *args, **kwargs):
        if self.broken:
            raise _redis.RedisOpError('Redis at x did not answer')
        if method == 'config_get':
            return {args[0]: self.config[args[0]]}
        if method == 'config_set':
            self.config[args[0]] = str(args[1])
            if args[0] == 'masterauth' and args[1] == 'pw' and self.replication['role'] == 'slave':
                self.replication['master_link_status'] = 'up'
            return True
        if args[0] == 'keyspace':
            return {'db0': {'keys': self.keys}} if self.keys else {}
        return dict(self.replication) if args[0] == 'replication' else {}

    def command(self, *args):
        if self.broken:
            raise _redis.RedisOpError('Redis at x did not answer')
        self.commands.append(args)
        if args[:4] == ('CLIENT', 'KILL', 'TYPE', 'master'):
            self.replication['master_link_status'] = 'down'
        if args == ('REPLICAOF', 'NO', 'ONE'):
            self.replication['role'] = 'master'

    def close(self):
        pass


class FakeSet(object):
    def __init__(self, nodes):
        self.nodes = nodes

    def data_node(self, address):
        return self.nodes[address]

    def views(self):
        replicas = [dict(address=a, priority=int(n.config['replica-priority'])) for a, n in self.nodes.items() if a != M]
        return [dict(reachable=True, replicas=replicas)]


def nothing_listens(host, port, password):
    node = FakeNode()
    node.broken = True
    return node


def test_recover_interrupted_undoes_a_killed_run_and_removes_the_state(tmp_path):
    root = str(tmp_path)
    scratch = os.path.join(root, '.scratch-restore-1-2')
    os.makedirs(scratch)
    nodes = {M: FakeNode(role='slave'), R2: FakeNode(priority='0'), R3: FakeNode(priority='0', masterauth='wrong')}
    nodes[M].replication.update(master_host='172.29.0.50', master_port=16379)
    nodes[R3].replication['master_link_status'] = 'down'
    assert _redissnap.recover_interrupted(root, FakeSet(nodes), nothing_listens, 'pw', print) is None
    _redissnap.write_restore_state(root, killed_state(scratch=scratch))
    log = []
    outcome = _redissnap.recover_interrupted(root, FakeSet(nodes), nothing_listens, 'pw', log.append)
    assert outcome['problems'] == [] and outcome['pid'] == 7 and len(outcome['steps']) == 5 and len(log) == 5
    assert nodes[M].replication['role'] == 'master'
    assert [nodes[a].config['replica-priority'] for a in (R2, R3)] == ['100', '50']
    assert nodes[R3].config['masterauth'] == 'pw' and nodes[R3].replication['master_link_status'] == 'up'
    assert os.listdir(root) == []  # state file and the killed run's scratch directory


def test_recover_interrupted_keeps_what_it_could_not_undo(tmp_path):
    root = str(tmp_path)
    nodes = {M: FakeNode(role='master'), R2: FakeNode(priority='0'), R3: FakeNode(priority='0', masterauth='x')}
    nodes[R3].broken = True
    _redissnap.write_restore_state(root, killed_state(temp_server=False))
    with pytest.raises(BackupError, match='could not all be undone') as caught:
        _redissnap.recover_interrupted(root, FakeSet(nodes), nothing_listens, 'pw', print)
    assert R3 in caught.value.msg and nodes[R2].config['replica-priority'] == '100'
    left = _redissnap.read_restore_state(root)
    assert left['priorities'] == {R3: '50'} and left['detached'] == R3


class FakeRestore(_redisrestore.Restore):
    """The real Restore bookkeeping (priorities, detach, rescue, state file) over fake nodes; the temporary
    server, the master's sync, persistence and the replicas' resync are stubs that can fail."""

    def __init__(self, root, nodes, fail_at=None):
        super(FakeRestore, self).__init__(None, {}, FakeSet(nodes), None, '172.29.0.50', 16379, 'pw', self.note,
                                          sleep=lambda seconds: None, root=root)
        self.nodes = nodes
        self.fail_at = fail_at
        self.lines = []
        self.states = []
        self.waited = []

    def note(self, text):
        self.lines.append(text)

    def record(self, **changes):
        super(FakeRestore, self).record(**changes)
        self.states.append(json.loads(json.dumps(self.state)))

    def step(self, name):
        if self.fail_at == name:
            raise BackupError('%s failed' % name, kind=name)

    def survey(self):
        self.master = M
        return dict(master=M, replicas=[R2, R3], budget=20.0)

    def check_master(self, master, temp_version):
        return {'aof_enabled': 1}

    def start_temp_server(self, rdb_path, scratch):
        self.record(temp_server=True, scratch=scratch)
        self.step('temp')
        return {'0': 3}

    def sync_master(self, master, want, budget):
        self.record(master_replicaof_temp=True)
        self.master_changed = True
        self.master_is_replica = True
        self.nodes[M].keys = 3
        self.step('sync')
        self.promote(master)

    def persist(self, master, persistence):
        self.step('persist')

    def wait_replicas(self, master, replicas, want):
        self.waited.append(list(replicas))
        for address in replicas:
            self.nodes[address].keys = 3
        self.step('replicas')

    def stop_temp_server(self):
        if self.state.get('temp_server'):
            self.record(temp_server=False)


def restore_nodes():
    nodes = {M: FakeNode(role='master'), R2: FakeNode(offset=50), R3: FakeNode(offset=90)}
    nodes[M].replication['role'] = 'master'
    return nodes


def pre_snapshot():
    return dict(id='20260101T000000Z-full', source=dict(address=R2), keys=5)


SNAP = dict(name='20250101T000000Z-full', keys=3, expires=0, keys_by_db={'0': 3})


def test_run_restore_keeps_one_replica_on_the_old_data_until_accepted(tmp_path):
    nodes = restore_nodes()
    restore = FakeRestore(str(tmp_path), nodes)
    result = _redisrestore.run_restore(restore, 'dump.rdb', SNAP, str(tmp_path), '8.0.2', pre_snapshot=pre_snapshot)
    assert result['pre_restore_snapshot'] == '20260101T000000Z-full'
    assert result['detached_replica'] == dict(address=R3, keys_before={'0': 5}, keys_at_accept={'0': 5},
                                              link_at_accept='down', role_at_accept='slave')
    # The other replica was waited for first, the detached one after it got its masterauth back.
    assert restore.waited == [[R2], [R3]]
    assert nodes[R3].config['masterauth'] == 'pw' and nodes[R3].commands == [('CLIENT', 'KILL', 'TYPE', 'master')]
    assert [nodes[a].config['replica-priority'] for a in (R2, R3)] == ['100', '100']
    assert not os.path.exists(_redissnap.restore_state_path(str(tmp_path)))
    # Each change was recorded before it was made, never with the password.
    first_detached = next(s for s in restore.states if s['detached'])
    assert first_detached['priorities'] == {R2: '100', R3: '100'} and nodes[R3].commands
    assert not any('"pw"' in json.dumps(s) for s in restore.states)
    assert any(s['master_replicaof_temp'] for s in restore.states)


def test_run_restore_failing_before_the_master_changed_reattaches(tmp_path):
    nodes = restore_nodes()
    restore = FakeRestore(str(tmp_path), nodes, fail_at='temp')
    with pytest.raises(BackupError) as caught:
        _redisrestore.run_restore(restore, 'dump.rdb', SNAP, str(tmp_path), '8.0.2', pre_snapshot=pre_snapshot)
    assert 'the live data was not touched' in caught.value.msg and 'still holds' not in caught.value.msg
    assert nodes[R3].config['masterauth'] == 'pw' and nodes[R3].replication['master_link_status'] == 'up'
    assert [nodes[a].config['replica-priority'] for a in (R2, R3)] == ['100', '100']
    assert not os.path.exists(_redissnap.restore_state_path(str(tmp_path)))


@pytest.mark.parametrize('fail_at', ['sync', 'persist', 'replicas'])
def test_run_restore_failing_after_the_master_changed_keeps_the_old_data_detached(tmp_path, fail_at):
    nodes = restore_nodes()
    restore = FakeRestore(str(tmp_path), nodes, fail_at=fail_at)
    with pytest.raises(BackupError) as caught:
        _redisrestore.run_restore(restore, 'dump.rdb', SNAP, str(tmp_path), '8.0.2', pre_snapshot=pre_snapshot)
    msg = caught.value.msg
    assert 'Replica %s still holds the data from before the restore (db0=5)' % R3 in msg
    assert 'backup_id=20260101T000000Z-full' in msg and 're-attaches it' in msg
    assert nodes[M].replication['role'] == 'master'
    assert nodes[R3].config['masterauth'] != 'pw' and nodes[R3].replication['master_link_status'] == 'down'
    # No failover may promote the old data: the held replica stays at 0, the other one can be promoted again.
    assert [nodes[a].config['replica-priority'] for a in (R2, R3)] == ['100', '0']
    state = _redissnap.read_restore_state(str(tmp_path))
    assert state['held'] is True and state['detached'] == R3 and state['priorities'] == {R3: '100'}
    assert state['master_replicaof_temp'] is False and state['temp_server'] is False
    # The next run re-attaches it.
    outcome = _redissnap.recover_interrupted(str(tmp_path), FakeSet(nodes), nothing_listens, 'pw', print)
    assert outcome['held'] is True and nodes[R3].config['masterauth'] == 'pw'
    assert nodes[R3].config['replica-priority'] == '100'


def test_run_restore_check_mode_plans_without_snapshot_or_change(tmp_path):
    nodes = restore_nodes()
    restore = FakeRestore(str(tmp_path), nodes)

    def must_not_run():
        raise AssertionError('check mode took a snapshot')
    result = _redisrestore.run_restore(restore, 'dump.rdb', SNAP, str(tmp_path), '8.0.2', check_mode=True,
                                    pre_snapshot=must_not_run)
    assert result['detached_replica'] == {'address': R3} and 'pre_restore_snapshot' not in result
    assert any('pre-restore snapshot' in step for step in result['plan'])
    assert restore.states == [] and nodes[R3].commands == []


def test_choose_for_restore_latest_is_never_a_pre_restore_snapshot():
    regular = entry('20250101T000000Z-full', '2025-01-01T00:00:05.000000Z')
    pre = entry('20250102T000000Z-full', '2025-01-02T00:00:05.000000Z', reason='pre-restore')
    assert _redissnap.choose_for_restore([regular, pre], None, 'latest')[0]['id'] == regular['id']
    assert _redissnap.choose_for_restore([regular, pre], None, pre['id'])[0]['id'] == pre['id']
    with pytest.raises(BackupError, match='restore one of those by id'):
        _redissnap.choose_for_restore([pre], None, 'latest')


def test_listing_latest_is_never_a_pre_restore_snapshot(tmp_path):
    regular = publish_fake(tmp_path, '20250101T000000Z-full', '2025-01-01T00:00:05.000000Z')
    pre = publish_fake(tmp_path, '20250102T000000Z-full', '2025-01-02T00:00:05.000000Z', reason='pre-restore')
    listed = _redissnap.listing(str(tmp_path))
    assert [b['id'] for b in listed['backups']] == [regular['id'], pre['id']] and listed['latest'] == regular['id']
