# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""redis_snapshot against a real Redis 8 master, 2 replicas and 3 Sentinels (see redis_stack.py).

The tests share one set and one backup directory and run in file order: backup, verify, list,
prune, restore, bad input, S3.

    .venv/bin/python -m pytest tests/integration/test_redis_snapshot.py -q
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

import redis_stack as rs
from conftest import flip_byte

pytestmark = pytest.mark.integration

S3_NAME = rs.PREFIX + '-s3'
BUCKET = 'redis-snapshots'


@pytest.fixture(scope='module')
def rset():
    """The Redis set (named so as not to shadow the PostgreSQL ``stack`` of conftest.py)."""
    handle = None
    try:
        handle = rs.start()
        yield handle
    finally:
        rs.stop(handle)


@pytest.fixture(scope='module')
def seeded(rset):
    """1000 strings (one with a TTL) in db0 and 50 hashes in db3, on every node; the save rules off.

    With the rules off no node forks by itself during the tests (no test needs them): a node forks
    only for what a test or the module asks, so the tests can count forks per node. A save or AOF
    rewrite started before (by the rules, or after a replica's initial sync) ends first.
    """
    rset.disable_save_rules()
    rset.wait_settled()
    master = rset.client(rset.master())
    pipe = master.pipeline()
    for i in range(1000):
        pipe.set('key:%d' % i, 'value-%d' % i)
    pipe.set('with-ttl', 'x', ex=3600)
    pipe.execute()
    db3 = rset.client(rset.master(), db=3)
    for i in range(50):
        db3.hset('hash:%d' % i, mapping={'a': i, 'b': 'text'})
    rset.wait_settled()
    assert dict((name, keyspace(rset.client(name))) for name in rs.DATA_NODES) == \
        dict((name, {'0': 1001, '3': 50}) for name in rs.DATA_NODES)
    return dict(counts={'0': 1001, '3': 50})


def ok(result):
    assert result['_rc'] == 0 and not result.get('failed'), result
    return result


def failed(result):
    assert result['_rc'] != 0 and result.get('failed'), result
    return result


def catalog_entry(directory, backup_id):
    with open(os.path.join(directory, backup_id, 'catalog.json')) as handle:
        return json.load(handle)


def keyspace(client):
    return dict((name[2:], value['keys']) for name, value in client.info('keyspace').items())


def address(name):
    return '%s:%d' % rs.DATA_NODES[name][:2]


def masterauths(rset):
    return dict((name, rset.client(name).config_get('masterauth')['masterauth']) for name in rset.replicas())


def priorities_sentinels_see(rset):
    """``{replica address: set of the replica-priority values every Sentinel reports}``."""
    seen = {}
    for name in rs.SENTINELS:
        for replica in rset.sentinel(name).execute_command('SENTINEL', 'REPLICAS', rs.MASTER_NAME):
            fields = dict(zip(replica[0::2], replica[1::2])) if isinstance(replica, list) else replica
            seen.setdefault('%s:%s' % (fields['ip'], fields['port']), set()).add(fields['slave-priority'])
    return seen


def failovers_possible(rset):
    """Every Sentinel sees a non-zero replica-priority on every replica (SENTINEL FAILOVER could promote one)."""
    seen = priorities_sentinels_see(rset)
    return sorted(seen) == sorted(address(name) for name in rset.replicas()) and \
        all('0' not in values for values in seen.values())


def state_file(rset):
    return os.path.join(rset.backup_dir, '.restore-state.json')


def set_state(rset):
    """What must survive a failed or check-mode restore: master, its data, replica priorities."""
    master = rset.master()
    client = rset.client(master)
    return dict(master=master, keys=keyspace(client), sample=client.get('key:7'),
                priorities=dict((name, rset.client(name).config_get('replica-priority')['replica-priority'])
                                for name in rset.replicas()))


# ---------------------------------------------------------------------------------------------
# backup


def test_backup_check_mode_writes_nothing(rset, seeded):
    result = ok(rset.module(check_mode=True, env=rset.password_env(), **rset.set_args(action='backup')))
    assert result['changed'] is True and result['msg'].startswith('Would snapshot')
    assert result['source']['role'] == 'replica'
    assert os.listdir(rset.backup_dir) == []


def test_backup_from_a_replica_does_not_fork_the_master(rset, seeded):
    # Count forks on a settled set (the save rules are off): only the module's requests fork.
    rset.wait_settled()
    master_name = rset.master()
    before = dict((name, rset.client(name).info()) for name in rs.DATA_NODES)
    result = ok(rset.module(env=rset.password_env(), **rset.set_args(action='backup')))
    after = dict((name, rset.client(name).info()) for name in rs.DATA_NODES)
    assert after[master_name]['total_forks'] == before[master_name]['total_forks']
    for field in ('rdb_last_save_time', 'rdb_saves'):
        assert after[master_name][field] == before[master_name][field], field

    entry = catalog_entry(rset.backup_dir, result['backup_id'])
    replica_addresses = ['%s:%d' % rs.DATA_NODES[name][:2] for name in rset.replicas()]
    assert entry['source']['role'] == 'replica' and entry['source']['address'] in replica_addresses
    assert entry['service'] == 'redis' and entry['type'] == 'full' and entry['redis_version'].startswith('8.')
    assert entry['rdb_version'] == 12
    assert entry['keys'] == 1051 and entry['expires'] == 1 and entry['keys_by_db'] == seeded['counts']
    assert sorted(entry['files']) == ['dump.rdb.zst'] and entry['rdb_bytes'] > entry['bytes'] > 0
    assert result['backup']['id'] == result['backup_id']
    # The replica that served it saved (BGSAVE) and forked; nothing else forked.
    source = rset.name_of(entry['source']['address'])
    assert after[source]['rdb_saves'] > before[source]['rdb_saves'] and after[source]['rdb_last_bgsave_status'] == 'ok'
    assert [name for name in rs.DATA_NODES if after[name]['total_forks'] != before[name]['total_forks']] == [source]
    assert not [name for name in os.listdir(rset.backup_dir) if name.startswith('.tmp-') or name.startswith('.scratch-')]


# ---------------------------------------------------------------------------------------------
# verify, list, prune


def test_verify_records_the_result(rset):
    result = ok(rset.module(action='verify'))
    assert [r['ok'] for r in result['results']] == [True] and result['results'][0]['keys'] == 1051
    assert catalog_entry(rset.backup_dir, result['results'][0]['id'])['verified'] is True


def test_one_flipped_byte_fails_verify(rset):
    latest = ok(rset.module(action='list'))['latest']
    damaged = os.path.join(rset.workdir, 'damaged')
    os.makedirs(damaged)
    shutil.copytree(os.path.join(rset.backup_dir, latest), os.path.join(damaged, latest))
    flip_byte(os.path.join(damaged, latest, 'dump.rdb.zst'), 40)
    result = failed(rset.module(action='verify', backups=damaged))
    assert 'Verification failed for %s' % latest in result['msg'] and 'SHA-256' in result['msg']
    assert catalog_entry(damaged, latest)['verified'] is False
    # The catalog itself is intact.
    assert catalog_entry(rset.backup_dir, latest)['verified'] is True


def test_list_and_prune(rset, seeded):
    first = ok(rset.module(action='list'))['latest']
    rset.wait_settled()
    second = ok(rset.module(env=rset.password_env(), **rset.set_args(action='backup')))['backup_id']
    listed = ok(rset.module(action='list'))
    assert [b['id'] for b in listed['backups']] == [first, second]
    assert listed['latest'] == second and listed['last_verified_full'] == first
    # The newest verified snapshot is kept whatever the rules say; verify the new one so the old can go.
    ok(rset.module(action='verify', backup_id=second))
    planned = ok(rset.module(check_mode=True, action='prune', keep_days=0, keep_count=1))
    assert planned['removed'] == [first] and planned['kept'] == [second] and planned['changed'] is True
    assert os.path.isdir(os.path.join(rset.backup_dir, first))
    pruned = ok(rset.module(action='prune', keep_days=0, keep_count=1))
    assert pruned['removed'] == [first] and not os.path.exists(os.path.join(rset.backup_dir, first))
    assert [b['id'] for b in ok(rset.module(action='list'))['backups']] == [second]


# ---------------------------------------------------------------------------------------------
# restore


def restore_args(rset, **extra):
    return rset.set_args(action='restore', restore_listen_host=rs.BACKUP_IP, **extra)


def test_restore_check_mode_changes_nothing(rset, seeded):
    before = set_state(rset)
    result = ok(rset.module(check_mode=True, ip=rs.BACKUP_IP, env=rset.password_env(), **restore_args(rset)))
    assert result['changed'] is True and result['master'] == rset.master_address()
    assert any('REPLICAOF %s:16379' % rs.BACKUP_IP in step for step in result['plan'])
    assert set_state(rset) == before


def test_restore_brings_back_the_snapshot_on_master_and_replicas(rset, seeded):
    master_name = rset.master()
    master = rset.client(master_name)
    epoch = rset.sentinel('sentinel-1').execute_command('SENTINEL', 'MASTER', rs.MASTER_NAME)
    epoch = dict(zip(epoch[0::2], epoch[1::2]))['config-epoch']
    # Change the data after the snapshot: overwrite, delete, add, and a database the snapshot does not have.
    master.set('key:7', 'changed')
    master.delete('key:8', 'key:9')
    master.set('added-after', '1')
    rset.client(master_name, db=5).set('other-db', '1')
    rset.client(master_name, db=3).flushdb()
    rset.wait_settled()
    for name in rs.DATA_NODES:
        assert keyspace(rset.client(name)) == {'0': 1000, '5': 1}, name

    result = ok(rset.module(ip=rs.BACKUP_IP, env=rset.password_env(), **restore_args(rset)))
    assert result['master'] == rset.master_address() == '%s:%d' % rs.DATA_NODES[master_name][:2]
    assert result['restored_keys'] == seeded['counts']
    # The data it replaced is in the catalog first, marked, and the result says how to go back to it.
    pre = catalog_entry(rset.backup_dir, result['pre_restore_snapshot'])
    assert pre['reason'] == 'pre-restore' and pre['label'] == 'before restoring %s' % result['backup_id']
    assert pre['keys_by_db'] == {'0': 1000, '5': 1}
    assert result['undo'] == 'restore.yml -e service=redis -e backup_id=%s -e confirm=yes' % pre['id']
    # One replica kept the old data, its link down, until the restored data was accepted; then it resynced.
    detached = result['detached_replica']
    assert detached['address'] in [address(name) for name in rset.replicas()]
    assert detached['keys_before'] == detached['keys_at_accept'] == {'0': 1000, '5': 1}
    assert detached['link_at_accept'] == 'down' and detached['role_at_accept'] == 'slave'
    assert masterauths(rset) == dict((name, rs.REDIS_PASSWORD) for name in rset.replicas())
    assert not os.path.exists(state_file(rset))
    # latest is still the snapshot restored, not the newer pre-restore one.
    planned = ok(rset.module(check_mode=True, ip=rs.BACKUP_IP, env=rset.password_env(), **restore_args(rset)))
    assert planned['backup_id'] == result['backup_id']
    assert any(step.startswith('take a pre-restore snapshot') for step in planned['plan'])
    assert any(step.startswith('detach replica ') for step in planned['plan'])
    for name in rs.DATA_NODES:
        client = rset.client(name)
        assert keyspace(client) == seeded['counts'], name
        assert client.get('key:7') == 'value-7' and client.get('key:8') == 'value-8', name
        assert client.get('added-after') is None and client.ttl('with-ttl') > 0, name
        assert rset.client(name, db=3).hget('hash:49', 'b') == 'text', name
    # Failovers are possible again, nothing failed over, the Sentinels are healthy.
    for name in rset.replicas():
        assert rset.client(name).config_get('replica-priority')['replica-priority'] == '100'
        assert rset.client(name).info('replication')['master_link_status'] == 'up'
    assert result['sentinel']['problems'] == [] and result['sentinel']['quorum_ok'] is True
    for name in rs.SENTINELS:
        fields = rset.sentinel(name).execute_command('SENTINEL', 'MASTER', rs.MASTER_NAME)
        fields = dict(zip(fields[0::2], fields[1::2]))
        assert fields['config-epoch'] == epoch and 's_down' not in fields['flags'] and 'o_down' not in fields['flags']
        assert 'OK' in rset.sentinel(name).execute_command('SENTINEL', 'CKQUORUM', rs.MASTER_NAME)
    # The AOF was rewritten from the restored data; the temporary server is gone with its scratch directory.
    persistence = master.info('persistence')
    assert persistence['aof_enabled'] == 1 and persistence['aof_last_bgrewrite_status'] == 'ok'
    assert any(line.startswith('AOF rewritten') for line in result['log'])
    assert not [name for name in os.listdir(rset.backup_dir) if name.startswith('.scratch-')]
    # A write through the master reaches the replicas (min-replicas-to-write is met again).
    master.set('after-restore', 'yes')
    rset.wait_settled()
    assert [rset.client(name).get('after-restore') for name in rs.DATA_NODES] == ['yes'] * 3


# ---------------------------------------------------------------------------------------------
# bad input: clear failures, data untouched


def test_unknown_backup_id_fails_with_data_intact(rset):
    before = set_state(rset)
    result = failed(rset.module(ip=rs.BACKUP_IP, env=rset.password_env(),
                                 **restore_args(rset, backup_id='20200101T000000Z-full')))
    assert '20200101T000000Z-full is not in the catalog' in result['msg']
    assert set_state(rset) == before


def test_wrong_redis_password_fails_with_data_intact(rset):
    before = set_state(rset)
    env = dict(rset.password_env(), REDIS_PASSWORD='not-the-password')
    result = failed(rset.module(ip=rs.BACKUP_IP, env=env, **restore_args(rset)))
    assert 'refused the password' in result['msg'] and 'redis_password' in result['msg']
    assert set_state(rset) == before
    result = failed(rset.module(env=env, **rset.set_args(action='backup')))
    assert 'password' in result['msg']
    entries = [e for e in ok(rset.module(action='list'))['backups'] if e.get('reason') != 'pre-restore']
    assert len(entries) == 1 and not [n for n in os.listdir(rset.backup_dir) if n.startswith('.tmp-')]


def test_failed_restore_gives_failovers_back(rset):
    """The temporary server cannot start (an address this container does not have): priorities come back."""
    before = set_state(rset)
    result = failed(rset.module(ip=rs.BACKUP_IP, env=rset.password_env(),
                                **rset.set_args(action='restore', restore_listen_host='172.29.0.99')))
    assert 'is not running' in result['msg'] and 'restore_listen_host' in result['msg']
    assert 'the live data was not touched' in result['msg']
    assert any(line.startswith('replica-priority 0') for line in result['log'])
    assert any(line.startswith('replica-priority restored') for line in result['log'])
    assert set_state(rset) == before
    # It failed before the master changed: the detached replica got its masterauth back and resyncs.
    assert result['detached_replica']['held'] is False
    assert any(line.startswith('replica %s detached' % result['detached_replica']['address']) for line in result['log'])
    assert masterauths(rset) == dict((name, rs.REDIS_PASSWORD) for name in rset.replicas())
    assert not os.path.exists(state_file(rset))
    rset.wait_settled()


def test_killed_restore_is_undone_by_the_next_restore(rset, seeded):
    """SIGKILL while a replica is detached and every priority is 0: the next run gives failovers back.

    The temporary server cannot start (an address the container does not have), so the run waits at
    least 5 s in that step with a replica detached: the test kills it there, not at a moment it races.
    """
    rset.wait_settled()
    before = set_state(rset)
    proc = rset.start_module('killed', ip=rs.BACKUP_IP, env=rset.password_env(),
                             **rset.set_args(action='restore', restore_listen_host='172.29.0.99'))
    try:
        def detached():
            if not os.path.exists(state_file(rset)):
                return None
            with open(state_file(rset)) as handle:
                state = json.load(handle)
            if not state.get('detached') or not state.get('temp_server'):
                return None
            link = rset.client(rset.name_of(state['detached'])).info('replication')['master_link_status']
            return state if link == 'down' else None
        state = rs.wait_until(detached, 120, 'the restore to detach a replica and start its temporary server',
                              interval=0.05)
        rs.docker('kill', '%s-killed' % rs.PREFIX)
    finally:
        proc.communicate(timeout=120)
    # What a killed run left: no replica can be promoted, one replica cut off, the state file.
    assert stat_mode(state_file(rset)) == 0o600
    assert [rset.client(name).config_get('replica-priority')['replica-priority'] for name in rset.replicas()] == ['0', '0']
    assert masterauths(rset)[rset.name_of(state['detached'])] != rs.REDIS_PASSWORD
    assert rs.REDIS_PASSWORD not in open(state_file(rset)).read()
    rs.wait_until(lambda: not failovers_possible(rset), 60, 'the Sentinels to see replica-priority 0')

    result = ok(rset.module(ip=rs.BACKUP_IP, env=rset.password_env(), **restore_args(rset)))
    recovered = result['recovered_from_interrupted_restore']
    assert recovered['problems'] == [] and recovered['pid'] == state['pid']
    assert 'masterauth of %s set back to redis_password: it resyncs from the master' % state['detached'] in recovered['steps']
    assert sorted(step for step in recovered['steps'] if step.startswith('replica-priority')) == \
        ['replica-priority 100 restored on %s' % address(name) for name in sorted(rset.replicas())]
    assert result['restored_keys'] == seeded['counts'] and not os.path.exists(state_file(rset))
    after = set_state(rset)
    assert after['priorities'] == before['priorities'] and after['master'] == before['master']
    assert masterauths(rset) == dict((name, rs.REDIS_PASSWORD) for name in rset.replicas())
    assert not [name for name in os.listdir(rset.backup_dir) if name.startswith('.scratch-')]
    rs.wait_until(lambda: failovers_possible(rset), 60, 'every Sentinel to see non-zero replica priorities')


def test_backup_undoes_a_restore_killed_while_the_master_replicated_the_temporary_server(rset, seeded):
    """The state a run killed in the master's sync leaves (made by hand: that step lasts well under a
    second here), undone by the next action=backup before its snapshot."""
    rset.wait_settled()
    master, replicas = rset.master(), rset.replicas()
    detached = replicas[-1]
    with open(state_file(rset), 'w') as handle:
        json.dump(dict(format=1, pid=4242, started_at='2026-01-01T00:00:00.000000Z', backup='by-hand',
                       listen='%s:16379' % rs.BACKUP_IP, master=address(master), held=False, scratch=None,
                       priorities=dict((address(name), '100') for name in replicas), detached=address(detached),
                       detached_masterauth='redis_password', temp_server=True, master_replicaof_temp=True), handle)
    os.chmod(state_file(rset), 0o600)
    for name in replicas:
        rset.client(name).config_set('replica-priority', 0)
    rset.client(detached).config_set('masterauth', 'not-the-password')
    rset.client(detached).execute_command('CLIENT', 'KILL', 'TYPE', 'master')
    rset.client(master).execute_command('REPLICAOF', rs.BACKUP_IP, '16379')
    assert rset.client(master).info('replication')['role'] == 'slave'

    result = ok(rset.module(env=rset.password_env(), **rset.set_args(action='backup')))
    recovered = result['recovered_from_interrupted_restore']
    assert recovered['steps'][:2] == [
        'REPLICAOF NO ONE on %s (it still replicated the temporary server %s:16379)' % (address(master), rs.BACKUP_IP),
        'no temporary server left on %s:16379' % rs.BACKUP_IP]
    assert result['backup_id'] and not os.path.exists(state_file(rset))
    assert rset.client(master).info('replication')['role'] == 'master' and rset.master() == master
    assert masterauths(rset) == dict((name, rs.REDIS_PASSWORD) for name in replicas)
    assert [rset.client(name).config_get('replica-priority')['replica-priority'] for name in replicas] == ['100', '100']
    rset.wait_settled()
    assert dict((name, keyspace(rset.client(name))) for name in rs.DATA_NODES) == \
        dict((name, seeded['counts']) for name in rs.DATA_NODES)
    rs.wait_until(lambda: failovers_possible(rset), 60, 'every Sentinel to see non-zero replica priorities')


def stat_mode(path):
    return os.stat(path).st_mode & 0o777


def test_wrong_sentinel_password_fails_clearly(rset):
    env = dict(rset.password_env(), REDIS_SENTINEL_PASSWORD='wrong')
    result = failed(rset.module(env=env, **rset.set_args(action='backup')))
    assert 'sentinel_password' in result['msg']


# ---------------------------------------------------------------------------------------------
# S3


@pytest.fixture(scope='module')
def s3(rset):
    sys.path.insert(0, os.path.join(rs.COLLECTION_ROOT, 'tests', 'support'))
    try:
        import s3server
    finally:
        sys.path.pop(0)
    import boto3
    host = s3server.start(S3_NAME, rs.NETWORK, rs.S3_IP)
    try:
        client = boto3.client('s3', endpoint_url=host, aws_access_key_id=s3server.ACCESS_KEY,
                              aws_secret_access_key=s3server.SECRET_KEY, region_name=s3server.REGION)
        client.create_bucket(Bucket=BUCKET)
        option = dict(bucket=BUCKET, prefix='dev', endpoint_url=s3server.network_endpoint(S3_NAME),
                      region=s3server.REGION, access_key=s3server.ACCESS_KEY, secret_key=s3server.SECRET_KEY,
                      sse='AES256')
        yield dict(client=client, option=option)
    finally:
        s3server.stop(S3_NAME)


def test_s3_round_trip(rset, seeded, s3):
    # The restores before left replicas that resynced and rewrite their AOF: let that end first.
    rset.wait_settled()
    taken = ok(rset.module(env=rset.password_env(), **rset.set_args(action='backup', s3=s3['option'])))
    backup_id = taken['backup_id']
    assert taken['s3']['url'] == 's3://%s/dev/redis/%s/' % (BUCKET, backup_id) and taken['s3']['verified_at']
    assert catalog_entry(rset.backup_dir, backup_id)['verified'] is True
    keys = sorted(o['Key'] for o in s3['client'].list_objects_v2(Bucket=BUCKET, Prefix='dev/redis/')['Contents'])
    assert keys == ['dev/redis/%s/catalog.json' % backup_id, 'dev/redis/%s/dump.rdb.zst' % backup_id]
    head = s3['client'].head_object(Bucket=BUCKET, Key='dev/redis/%s/dump.rdb.zst' % backup_id)
    assert head['ServerSideEncryption'] == 'AES256'

    listed = ok(rset.module(action='list', s3=s3['option']))
    assert listed['s3_latest'] == backup_id and [b['id'] for b in listed['s3_backups']] == [backup_id]
    verified = ok(rset.module(action='verify', backup_id=backup_id, s3=s3['option']))
    assert 's3 sha256' in verified['results'][0]['checks']

    # The local copy is gone: restore downloads it (verified against its catalog) and loads it.
    shutil.rmtree(os.path.join(rset.backup_dir, backup_id))
    master = rset.client(rset.master())
    master.set('key:1', 'changed-before-s3-restore')
    rset.wait_settled()
    assert [rset.client(name).get('key:1') for name in rs.DATA_NODES] == ['changed-before-s3-restore'] * 3
    restored = ok(rset.module(ip=rs.BACKUP_IP, env=rset.password_env(),
                               **restore_args(rset, backup_id=backup_id, s3=s3['option'])))
    assert restored['downloaded_from_s3'] == [backup_id] and restored['backup_id'] == backup_id
    for name in rs.DATA_NODES:
        assert rset.client(name).get('key:1') == 'value-1', name
    assert os.path.isfile(os.path.join(rset.backup_dir, backup_id, 'catalog.json'))

    # Prune applies the same plan to the S3 copies: a newer verified copy lets the older one go.
    rset.wait_settled()
    newer = ok(rset.module(env=rset.password_env(), **rset.set_args(action='backup', s3=s3['option'])))['backup_id']
    planned = ok(rset.module(check_mode=True, action='prune', keep_days=0, keep_count=1, s3=s3['option']))
    assert planned['s3']['removed'] == [backup_id] and planned['s3']['kept'] == [newer]
    pruned = ok(rset.module(action='prune', keep_days=0, keep_count=1, s3=s3['option']))
    assert pruned['s3']['removed'] == [backup_id] and pruned['s3']['kept'] == [newer]
    keys = sorted(o['Key'] for o in s3['client'].list_objects_v2(Bucket=BUCKET, Prefix='dev/redis/')['Contents'])
    assert keys == ['dev/redis/%s/catalog.json' % newer, 'dev/redis/%s/dump.rdb.zst' % newer]
    assert [b['id'] for b in ok(rset.module(action='list'))['backups']] == [newer]


def test_restore_from_an_rdb_file(rset):
    """Import: a plain dump.rdb (here unpacked from the newest snapshot) instead of a catalog id."""
    latest = ok(rset.module(action='list'))['latest']
    entry = catalog_entry(rset.backup_dir, latest)
    imports = os.path.join(rset.workdir, 'import')
    os.makedirs(imports)
    subprocess.run(['zstd', '-q', '-d', '-o', os.path.join(imports, 'dump.rdb'),
                    os.path.join(rset.backup_dir, latest, 'dump.rdb.zst')], check=True)
    master = rset.client(rset.master())
    master.set('key:2', 'changed-before-import')
    rset.wait_settled()
    assert [rset.client(name).get('key:2') for name in rs.DATA_NODES] == ['changed-before-import'] * 3
    result = ok(rset.module(ip=rs.BACKUP_IP, env=rset.password_env(), volumes=['%s:/import:ro' % imports],
                            **restore_args(rset, rdb_file='/import/dump.rdb')))
    assert result['rdb_file'] == '/import/dump.rdb' and 'backup_id' not in result
    assert result['restored_keys'] == entry['keys_by_db']
    for name in rs.DATA_NODES:
        assert rset.client(name).get('key:2') == 'value-2', name
