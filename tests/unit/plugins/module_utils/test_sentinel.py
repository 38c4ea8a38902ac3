# -*- coding: utf-8 -*-
"""Unit tests for the pure Sentinel logic (no server needed)."""

from __future__ import annotations

import pytest

from ansible_collections.psscript.infra.plugins.module_utils import _sentinel as s

M = '10.0.0.21:6379'
R1 = '10.0.0.22:6379'
R2 = '10.0.0.23:6379'
S = ['10.0.0.11:26379', '10.0.0.12:26379', '10.0.0.13:26379']


def raw_replica(address, link='ok', flags='slave', down_ms=0, priority=100, offset=1000):
    host, port = s.parse_address(address)
    return {'name': address, 'ip': host, 'port': str(port), 'flags': flags, 'master-link-status': link,
            'master-link-down-time': str(down_ms), 'slave-priority': str(priority),
            'slave-repl-offset': str(offset)}


def view(sentinel, master=M, epoch=3, replicas=(R1, R2), ckquorum=True, tilt=False, flags='master',
         others=2, raw_replicas=None):
    host, port = s.parse_address(master)
    raw_master = {'name': 'mymaster', 'ip': host, 'port': str(port), 'flags': flags,
                  'config-epoch': str(epoch), 'num-slaves': str(len(replicas)),
                  'num-other-sentinels': str(others), 'quorum': '2'}
    if raw_replicas is None:
        raw_replicas = [raw_replica(address) for address in replicas]
    raw_sentinels = [{'ip': '10.0.0.1%d' % i, 'port': '26379', 'flags': 'sentinel'} for i in range(others)]
    info = {'sentinel_tilt': 1 if tilt else 0, 'sentinel_tilt_since_seconds': 4 if tilt else -1}
    return s.build_view(sentinel, raw_master, raw_replicas, raw_sentinels, ckquorum,
                        'OK 3 usable Sentinels' if ckquorum else 'NOQUORUM 1 usable Sentinels', info)


def down(sentinel, error=None):
    return s.unreachable_view(sentinel, error or 'cannot connect to Sentinel %s' % sentinel)


def replication(replicas=((R1, 0, 1000), (R2, 0, 1000)), offset=1000, role='master'):
    info = {'role': role, 'connected_slaves': len(replicas), 'master_repl_offset': offset}
    for index, (address, lag, replica_offset) in enumerate(replicas):
        host, port = s.parse_address(address)
        info['slave%d' % index] = {'ip': host, 'port': port, 'state': 'online', 'offset': replica_offset,
                                   'lag': lag}
    return info


# ------------------------------------------------------------------ addresses

@pytest.mark.parametrize('text, expected', [
    ('127.0.0.1:26379', ('127.0.0.1', 26379)),
    (' redis-1:6379 ', ('redis-1', 6379)),
    ('[::1]:26379', ('::1', 26379)),
    ('[fe80::1%eth0]:6379', ('fe80::1%eth0', 6379)),
])
def test_parse_address(text, expected):
    assert s.parse_address(text) == expected


@pytest.mark.parametrize('text, hint', [
    ('127.0.0.1', 'host:port'),
    ('::1:26379', 'brackets'),
    ('host:0', 'valid port'),
    ('host:65536', 'valid port'),
    ('host:abc', 'valid port'),
    (':6379', 'no host'),
    ('[::1]26379', 'host:port'),
    ('', 'host:port'),
    (None, 'host:port'),
])
def test_parse_address_errors_say_how_to_write_it(text, hint):
    with pytest.raises(s.AddressError, match=hint):
        s.parse_address(text, 'sentinels entry')


def test_format_address_brackets_ipv6():
    assert s.format_address('::1', 26379) == '[::1]:26379'
    assert s.format_address('10.0.0.1', '6379') == '10.0.0.1:6379'


@pytest.mark.parametrize('reply, expected', [
    ('10.0.0.21:6379', M),
    (['10.0.0.21', '6379'], M),
    (('10.0.0.21', 6379), M),
    ({'host': '10.0.0.21', 'port': 6379}, M),
    ({'ip': '10.0.0.21', 'port': '6379'}, M),
    (['::1', '6379'], '[::1]:6379'),
    (None, None), ('', None), ([], None), ('(nil)', None), ({}, None),
])
def test_normalize_address(reply, expected):
    assert s.normalize_address(reply) == expected


def test_normalize_address_rejects_garbage():
    with pytest.raises(s.AddressError):
        s.normalize_address(['a', 'b', 'c'])
    with pytest.raises(s.AddressError):
        s.normalize_address(['10.0.0.1', 'x'])


# ------------------------------------------------------------ decide_master

def test_unanimous():
    assert s.decide_master([M, M, M]) == (M, None)


def test_forms_mixed_but_same_address():
    assert s.decide_master([M, ['10.0.0.21', '6379'], {'host': '10.0.0.21', 'port': 6379}]) == (M, None)


def test_majority_with_one_unreachable():
    assert s.decide_master([M, None, M]) == (M, None)


def test_majority_with_one_stale_sentinel():
    assert s.decide_master({'a': M, 'b': R1, 'c': M}) == (M, None)


def test_first_deploy_nobody_knows():
    assert s.decide_master([None, None, None]) == (None, None)
    assert s.decide_master([]) == (None, None)


def test_minority_is_not_enough():
    master, reason = s.decide_master({'a': M, 'b': None, 'c': None})
    assert master is None
    assert 'only 1 of 3' in reason and '2 needed' in reason and 'no answer from b, c' in reason


def test_tie_is_refused():
    master, reason = s.decide_master({'a': M, 'b': R1, 'c': M, 'd': R1})
    assert master is None
    assert 'split' in reason and M in reason and R1 in reason


def test_partition_three_ways():
    master, reason = s.decide_master([M, R1, R2])
    assert master is None and 'split' in reason


def test_tie_refused_even_with_low_quorum():
    # quorum 2 of 5 would let two partitions both "win": refuse.
    master, reason = s.decide_master([M, M, R1, R1, None], quorum=2)
    assert master is None and 'split' in reason


def test_explicit_quorum():
    assert s.decide_master([M, M, R1, None, None], quorum=2) == (M, None)
    master, reason = s.decide_master([M, M, None], quorum=3)
    assert master is None and '3 needed' in reason


def test_quorum_larger_than_sentinels():
    master, reason = s.decide_master([M, M], quorum=3)
    assert master is None and 'more than the 2' in reason


def test_quorum_must_be_positive():
    with pytest.raises(ValueError):
        s.decide_master([M], quorum=0)


def test_even_count_needs_more_than_half():
    master, reason = s.decide_master([M, M, None, None])
    assert master is None and '3 needed' in reason
    assert s.decide_master([M, M, M, None]) == (M, None)


# ------------------------------------------------------------------ evaluate

def test_healthy_set_has_no_problems():
    views = [view(address) for address in S]
    report = s.evaluate(views, expected_replicas=2, max_lag_seconds=10, master_replication=replication())
    assert report['problems'] == []
    assert report['master'] == {'host': '10.0.0.21', 'port': 6379}
    assert report['epoch'] == 3
    assert report['quorum_ok'] is True
    assert [r['port'] for r in report['replicas']] == [6379, 6379]
    assert report['replicas'][0]['lag_seconds'] == 0 and report['replicas'][0]['lag_bytes'] == 0
    assert report['replicas'][0]['state'] == 'online'
    assert [x['master'] for x in report['sentinels']] == [M, M, M]
    assert all(x['reachable'] and x['tilt'] is False for x in report['sentinels'])


def test_unreachable_sentinel_is_a_problem_but_majority_still_decides():
    views = [view(S[0]), down(S[1], 'Sentinel %s refused the password: check sentinel_password' % S[1]),
             view(S[2])]
    report = s.evaluate(views, 2, 10, replication())
    assert report['master'] == {'host': '10.0.0.21', 'port': 6379}
    assert report['problems'] == ['Sentinel %s refused the password: check sentinel_password' % S[1]]
    assert report['sentinels'][1] == {'address': S[1], 'reachable': False, 'tilt': None, 'master': None,
                                      'epoch': None, 'quorum_ok': None,
                                      'error': 'Sentinel %s refused the password: check sentinel_password'
                                      % S[1]}


def test_no_sentinel_answers():
    report = s.evaluate([down(a) for a in S], 2, 10)
    assert report['master'] is None
    assert len(report['problems']) == 4
    assert 'no Sentinel answered' in report['problems'][-1]


def test_disagreement_on_master_and_epoch():
    views = [view(S[0]), view(S[1]), view(S[2], master=R1, epoch=4)]
    report = s.evaluate(views, 2, 10, replication())
    assert report['master']['host'] == '10.0.0.21'
    assert report['epoch'] == 4
    text = '\n'.join(report['problems'])
    assert 'disagree on the address' in text and R1 in text
    assert 'disagree on the config epoch' in text


def test_no_majority_reports_most_named_and_a_problem():
    views = [view(S[0]), down(S[1]), down(S[2])]
    report = s.evaluate(views, 2, 10, replication())
    assert report['master']['host'] == '10.0.0.21'
    assert any('no Sentinel majority' in p for p in report['problems'])


def test_ckquorum_tilt_and_master_flags():
    views = [view(S[0], ckquorum=False), view(S[1], tilt=True), view(S[2], flags='master,s_down')]
    report = s.evaluate(views, 2, 10, replication())
    assert report['quorum_ok'] is False
    text = '\n'.join(report['problems'])
    assert 'CKQUORUM mymaster failed: NOQUORUM' in text
    assert 'Sentinel %s is in TILT mode for 4 s' % S[1] in text
    assert 'flags master %s as s_down' % M in text
    assert report['sentinels'][1]['tilt'] is True


def test_sentinel_that_knows_too_few_others():
    views = [view(S[0], others=1), view(S[1]), view(S[2])]
    report = s.evaluate(views, 2, 10, replication())
    assert report['problems'] == [
        "Sentinel(s) %s know only 1 other Sentinel(s) of master 'mymaster', expected 2: check that the "
        "Sentinels can reach each other (and sentinel announce-ip/port)" % S[0]]


def test_fewer_replicas_than_expected_grouped():
    views = [view(a, replicas=(R1,)) for a in S]
    report = s.evaluate(views, 2, 10, replication(replicas=((R1, 0, 1000),)))
    assert report['problems'] == ["Sentinel(s) %s know 1 replica(s) of master 'mymaster', expected 2"
                                  % ', '.join(S)]


def test_expected_replicas_unset_skips_count():
    views = [view(a, replicas=(R1,)) for a in S]
    report = s.evaluate(views, None, 10, replication(replicas=((R1, 0, 1000),)))
    assert report['problems'] == []


def test_replica_flagged_down_is_one_sentence():
    bad = [raw_replica(R1), raw_replica(R2, link='err', flags='slave,s_down,disconnected', down_ms=4500)]
    views = [view(S[0], raw_replicas=bad), view(S[1], raw_replicas=bad), view(S[2])]
    report = s.evaluate(views, 2, 10, replication(replicas=((R1, 0, 1000),)))
    assert report['problems'] == ['replica %s is disconnected, s_down according to Sentinel(s) %s, %s'
                                  % (R2, S[0], S[1])]
    assert report['replicas'][1]['link_down_seconds'] == 4.5
    assert report['replicas'][1]['lag_seconds'] is None


def test_replica_flags_seen_by_different_sentinels():
    one = [raw_replica(R1), raw_replica(R2, flags='slave,s_down')]
    two = [raw_replica(R1), raw_replica(R2, flags='slave,s_down,disconnected')]
    views = [view(S[0], raw_replicas=one), view(S[1], raw_replicas=two), view(S[2])]
    report = s.evaluate(views, 2, 10, replication())
    assert report['problems'] == [
        'replica %s is disconnected according to Sentinel(s) %s' % (R2, S[1]),
        'replica %s is s_down according to Sentinel(s) %s, %s' % (R2, S[0], S[1]),
    ]


def test_replica_link_down_without_flags():
    bad = [raw_replica(R1), raw_replica(R2, link='err', down_ms=4500)]
    views = [view(a, raw_replicas=bad) for a in S]
    report = s.evaluate(views, 2, 10, replication(replicas=((R1, 0, 1000),)))
    assert report['problems'] == [
        'replica %s: link to the master is err (down for 4.5 s)' % R2,
        'replica %s is not connected to master %s (absent from its INFO replication)' % (R2, M),
    ]
    bad = [raw_replica(R1), raw_replica(R2, link='err', down_ms=0)]
    report = s.evaluate([view(a, raw_replicas=bad) for a in S], 2, 10, replication())
    assert report['problems'] == ['replica %s: link to the master is err' % R2]


def test_replica_lag_over_threshold():
    views = [view(a) for a in S]
    report = s.evaluate(views, 2, 5, replication(replicas=((R1, 0, 1000), (R2, 12, 400))))
    assert report['problems'] == ['replica %s lags 12 s behind master %s (max_replica_lag 5)' % (R2, M)]
    assert report['replicas'][1]['lag_bytes'] == 600


def test_replica_not_online_on_master():
    info = replication()
    info['slave1']['state'] = 'wait_bgsave'
    report = s.evaluate([view(a) for a in S], 2, 10, info)
    assert report['problems'] == ['replica %s is not online on master %s (state=wait_bgsave)' % (R2, M)]


def test_master_unreachable_or_not_a_master():
    views = [view(a) for a in S]
    report = s.evaluate(views, 2, 10, None, 'cannot connect to Redis %s (refused)' % M)
    assert report['problems'] == ['cannot connect to Redis %s (refused)' % M]
    assert report['replicas'][0]['lag_seconds'] is None
    report = s.evaluate(views, 2, 10, {'role': 'slave'})
    assert report['problems'] == ['%s is named master by the Sentinels but reports role:slave' % M]


# --------------------------------------------------------------- switchover

def test_switchover_can_start_on_a_healthy_set():
    views = [view(a) for a in S]
    report = s.evaluate(views, 2, 10, replication())
    assert s.switchover_blockers(report, views) == []
    assert s.pick_failover_sentinel(views, M) == S[2]


def test_switchover_picks_the_last_agreeing_sentinel():
    views = [view(S[0]), view(S[1], master=R1), down(S[2])]
    assert s.pick_failover_sentinel(views, M) == S[0]
    assert s.pick_failover_sentinel([view(a) for a in S], M) == S[2]
    assert s.pick_failover_sentinel(views, R2) is None


def test_switchover_blocked_by_disagreement_inprog_and_nogoodslave():
    views = [view(S[0]), view(S[1], master=R1), view(S[2])]
    report = s.evaluate(views, 2, 10, replication())
    assert 'do not agree' in s.switchover_blockers(report, views)[0]

    views = [view(S[0], flags='master,failover_in_progress'), view(S[1]), view(S[2])]
    report = s.evaluate(views, 2, 10, replication())
    assert any('failover in progress' in b for b in s.switchover_blockers(report, views))

    bad = [raw_replica(R1, priority=0), raw_replica(R2, link='err')]
    views = [view(a, raw_replicas=bad) for a in S]
    report = s.evaluate(views, 2, 10, replication())
    assert any('NOGOODSLAVE' in b for b in s.switchover_blockers(report, views))


def test_promotable():
    assert s.promotable({'link_status': 'ok', 'priority': 100, 'flags': ['slave']})
    assert not s.promotable({'link_status': 'ok', 'priority': 0, 'flags': ['slave']})
    assert not s.promotable({'link_status': 'err', 'priority': 100, 'flags': ['slave']})
    assert not s.promotable({'link_status': 'ok', 'priority': 100, 'flags': ['slave', 's_down']})


# ------------------------------------------------------------------ polling

def test_agreed_master_needs_a_majority_answering_and_agreeing():
    assert s.agreed_master([view(a) for a in S]) == (M, None)
    assert s.agreed_master([view(S[0]), down(S[1]), view(S[2])]) == (M, None)
    master, reason = s.agreed_master([view(S[0]), down(S[1]), down(S[2])])
    assert master is None and 'only 1 of 3' in reason
    master, reason = s.agreed_master([view(S[0]), view(S[1], master=R1), view(S[2])])
    assert master is None and 'do not agree yet' in reason


def test_switchover_decision_sequence():
    before = [view(a) for a in S]
    during = [view(S[0], master=R1, epoch=4), view(S[1]), view(S[2])]
    after = [view(a, master=R1, epoch=4) for a in S]
    roles = {M: 'master', R1: 'slave'}
    assert s.switchover_decision(M, before, roles, 1, 30) == (s.WAIT, 'the Sentinels still name the old master %s' % M)
    state, reason = s.switchover_decision(M, during, roles, 1, 30)
    assert state == s.WAIT and 'do not agree yet' in reason
    state, reason = s.switchover_decision(M, after, {M: 'master', R1: 'slave'}, 2, 30)
    assert state == s.WAIT and 'new master %s reports role:slave' % R1 in reason
    state, reason = s.switchover_decision(M, after, {M: 'master', R1: 'master'}, 2, 30)
    assert state == s.WAIT and 'old master %s reports role:master' % M in reason
    state, reason = s.switchover_decision(M, after, {M: None, R1: 'master'}, 2, 30)
    assert state == s.WAIT and 'unknown (no answer)' in reason
    assert s.switchover_decision(M, after, {M: 'slave', R1: 'master'}, 3, 30) == (s.DONE, R1)


def test_switchover_decision_times_out_with_last_reason():
    before = [view(a) for a in S]
    state, reason = s.switchover_decision(M, before, {M: 'master'}, 30.2, 30)
    assert state == s.FAILED
    assert 'timeout 30 s' in reason and 'still name the old master' in reason


def node_info(role, master=None):
    info = {'role': role}
    if master:
        host, port = s.parse_address(master)
        info.update(master_host=host, master_port=port, master_link_status='up')
    return info


def test_release_step_sequence():
    asked = S[2]
    # Before the promotion the asked Sentinel names the old master.
    assert s.release_step(M, asked, (M, None), {M: node_info('master')}) == (
        s.WAIT, 'Sentinel %s still names the old master %s' % (asked, M))
    state, reason = s.release_step(M, asked, (R1, None), {M: node_info('master'), R1: node_info('slave', M)})
    assert state == s.WAIT and 'new master %s reports role:slave' % R1 in reason
    promoted = {M: node_info('master'), R1: node_info('master')}
    assert s.release_step(M, asked, (R1, None), promoted) == (s.DEMOTE, R1)
    demoted = {M: node_info('slave', R1), R1: node_info('master')}
    assert s.release_step(M, asked, (R1, None), demoted) == (s.RELEASE, R1)


def test_release_step_waits_when_unsure():
    state, reason = s.release_step(M, S[2], (None, 'cannot connect'), {})
    assert (state, reason) == (s.WAIT, 'Sentinel %s names no master: cannot connect' % S[2])
    state, reason = s.release_step(M, S[2], (R1, None), {R1: None, M: node_info('master')})
    assert state == s.WAIT and 'unknown (no answer)' in reason
    state, reason = s.release_step(M, S[2], (R1, None), {R1: node_info('master'), M: None})
    assert state == s.WAIT and 'does not answer' in reason
    # Replicating from another node than the one the Sentinel promoted: not ours to release.
    state, reason = s.release_step(M, S[2], (R1, None), {R1: node_info('master'), M: node_info('slave', R2)})
    assert state == s.WAIT and 'replicating from %s' % R2 in reason


def test_release_decision():
    assert s.release_decision(s.RELEASE, R1, 1.2, 30) == (s.DONE, R1)
    assert s.release_decision(s.DEMOTE, R1, 1.2, 30) == (
        s.WAIT, 'the old master still reports role:master after REPLICAOF %s' % R1)
    assert s.release_decision(s.WAIT, 'new master %s reports role:slave' % R1, 1.2, 30) == (
        s.WAIT, 'new master %s reports role:slave' % R1)
    state, reason = s.release_decision(s.WAIT, 'Sentinel %s still names the old master %s' % (S[2], M), 30.5, 30)
    assert state == s.FAILED and 'timeout 30 s' in reason and 'still names the old master' in reason


def test_replica_of():
    assert s.replica_of(node_info('slave', R1)) == R1
    assert s.replica_of({'role': 'slave', 'master_host': '::1', 'master_port': '6379'}) == '[::1]:6379'
    assert s.replica_of(node_info('master')) is None
    assert s.replica_of({'role': 'slave'}) is None
    assert s.replica_of(None) is None


CLIENT_LIST = (
    'id=3 addr=10.0.0.11:40000 laddr=10.0.0.21:6379 fd=8 name=sentinel-5a1b2c3d-cmd age=90 idle=0 flags=N db=0 '
    'cmd=ping user=default\n'
    'id=7 addr=10.0.0.90:51000 laddr=10.0.0.21:6379 fd=10 name= age=30 idle=0 flags=N db=0 cmd=set user=default\n'
    'id=8 addr=10.0.0.91:51002 laddr=10.0.0.21:6379 fd=11 name=app-worker age=30 idle=0 flags=b db=0 cmd=wait '
    'user=default lib-name=ioredis\n'
    'id=9 addr=10.0.0.5:52000 laddr=10.0.0.21:6379 fd=12 name= age=0 idle=0 flags=N db=0 cmd=client|list '
    'user=default\n'
    'id=11 addr=10.0.0.22:6379 laddr=10.0.0.21:6379 fd=13 name= age=2 idle=0 flags=S db=0 cmd=replconf user=default\n'
)


def test_parse_client_list():
    clients = s.parse_client_list(CLIENT_LIST)
    assert [client['id'] for client in clients] == ['3', '7', '8', '9', '11']
    assert clients[0]['name'] == 'sentinel-5a1b2c3d-cmd' and clients[1]['name'] == ''
    assert clients[3]['cmd'] == 'client|list'
    assert s.parse_client_list(CLIENT_LIST.encode('ascii')) == clients
    assert s.parse_client_list([{'id': '7', 'name': ''}]) == [{'id': '7', 'name': ''}]
    assert s.parse_client_list('') == [] and s.parse_client_list(None) == []


def test_clients_to_disconnect_skips_ours_sentinels_and_replication():
    clients = s.parse_client_list(CLIENT_LIST)
    assert s.clients_to_disconnect(clients, 9) == [7, 8]
    assert s.clients_to_disconnect(clients, '9') == [7, 8]
    assert s.clients_to_disconnect(clients + [{'id': '12', 'flags': 'P', 'name': ''}, {'name': 'no id'}], 9) == [7, 8]
    assert s.clients_to_disconnect([], 9) == []


def test_failover_decision():
    old = [view(a) for a in S]
    new = [view(S[0], master=R2, epoch=4), down(S[1]), view(S[2], master=R2, epoch=4)]
    assert s.failover_decision(M, old, 5, 30)[0] == s.WAIT
    assert s.failover_decision(M, new, 5, 30) == (s.DONE, R2)
    assert s.failover_decision(M, new, 5, 30, roles={R2: None}) == (s.DONE, R2)
    assert s.failover_decision(M, new, 5, 30, roles={R2: 'slave'})[0] == s.WAIT
    state, reason = s.failover_decision(M, old, 31, 30)
    assert state == s.FAILED and 'still name %s' % M in reason


class FakeClock(object):
    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_poll_until_done():
    clock = FakeClock()
    snapshots = iter([
        ([view(a) for a in S], {M: 'master'}),
        ([view(S[0], master=R1), view(S[1]), view(S[2])], {M: 'master'}),
        ([view(a, master=R1) for a in S], {M: 'slave', R1: 'master'}),
    ])

    def decide(snap, elapsed):
        return s.switchover_decision(M, snap[0], snap[1], elapsed, 30)

    state, detail, elapsed = s.poll(lambda: next(snapshots), decide, 0.5, clock, clock.sleep)
    assert (state, detail) == (s.DONE, R1)
    assert clock.sleeps == [0.5, 0.5] and elapsed == 1.0


def test_poll_gives_up_at_timeout():
    clock = FakeClock()

    def decide(snap, elapsed):
        return s.failover_decision(M, snap, elapsed, 2, None)

    state, detail, elapsed = s.poll(lambda: [view(a) for a in S], decide, 0.5, clock, clock.sleep)
    assert state == s.FAILED and elapsed == 2.0 and len(clock.sleeps) == 4


def test_likely_master():
    assert s.likely_master([view(a) for a in S]) == M
    assert s.likely_master([view(S[0], master=R1), down(S[1]), down(S[2])]) == R1
    assert s.likely_master([down(a) for a in S]) is None


def test_build_view_parses_sentinel_fields():
    v = view(S[0], tilt=True)
    assert v['master']['epoch'] == 3 and v['master']['num_other_sentinels'] == 2
    assert v['master']['flags'] == ['master']
    assert v['replicas'][0]['priority'] == 100 and v['replicas'][0]['link_status'] == 'ok'
    assert v['tilt'] is True and v['tilt_since_seconds'] == 4
    assert view(S[0])['tilt_since_seconds'] is None


# ----------------------------------------- error wording of _redis (no server)
# _redis is the I/O side; only its pure error mapping is tested here.

redis_exc = pytest.importorskip('redis.exceptions')


def _describe(exc, password_given=True, kind='Sentinel', command='SENTINEL MASTER'):
    from ansible_collections.psscript.infra.plugins.module_utils import _redis
    return _redis.describe_error(exc, kind, '127.0.0.1:26379', 'sentinel_password', password_given, command,
                                 'mymaster')


@pytest.mark.parametrize('exc, given, expected, reason', [
    (redis_exc.AuthenticationError('invalid username-password pair or user is disabled.'), True,
     'Sentinel 127.0.0.1:26379 refused the password: check sentinel_password', 'auth'),
    (redis_exc.AuthenticationError('Authentication required.'), False,
     'Sentinel 127.0.0.1:26379 requires a password: set sentinel_password', 'auth'),
    (redis_exc.AuthenticationError('AUTH <password> called without any password configured for the default '
                                   'user. Are you sure your configuration is correct?'), True,
     'has no password configured but sentinel_password is set', 'auth'),
    (redis_exc.ResponseError('No such master with that name'), True,
     "does not monitor a master named 'mymaster': check master_name", 'no_such_master'),
    (redis_exc.TimeoutError('Timeout reading from socket'), True, 'did not answer within socket_timeout',
     'timeout'),
    (redis_exc.ConnectionError('Error 111 connecting to 127.0.0.1:26379. Connection refused.'), True,
     'cannot connect to Sentinel 127.0.0.1:26379 (Error 111', 'unreachable'),
    (redis_exc.ResponseError('INPROG Failover already in progress'), True, '-INPROG', 'response'),
    (redis_exc.ResponseError('NOGOODSLAVE No suitable replica to promote'), True, '-NOGOODSLAVE', 'response'),
    (redis_exc.NoPermissionError("this user has no permissions to run the 'sentinel|master' command"), True,
     'denied SENTINEL MASTER for this user', 'denied'),
    (redis_exc.BusyLoadingError('Redis is loading the dataset in memory'), True, 'still loading', 'loading'),
    (redis_exc.ResponseError('ERR unknown command'), True, 'answered SENTINEL MASTER with an error', 'response'),
])
def test_redis_errors_say_cause_and_fix(exc, given, expected, reason):
    msg, got_reason = _describe(exc, given)
    assert expected in msg
    assert got_reason == reason


def test_redis_parse_address_raises_redis_op_error():
    from ansible_collections.psscript.infra.plugins.module_utils import _redis
    with pytest.raises(_redis.RedisOpError, match='brackets') as info:
        _redis.parse_address('::1:26379', 'sentinels entry')
    assert info.value.reason == 'address'


def test_connection_specs_are_fresh_and_secret():
    from ansible_collections.psscript.infra.plugins.module_utils import _redis
    one, two = _redis.sentinel_connection_spec(), _redis.sentinel_connection_spec()
    one['master_name']['default'] = 'changed'
    assert two['master_name']['default'] == 'mymaster'
    assert two['sentinel_password']['no_log'] and two['redis_password']['no_log']
    assert _redis.redis_connection_spec()['login_password']['no_log']


# --------------------------------------------- sentinel_majority_master filter

def _filter(value, quorum=None):
    from ansible_collections.psscript.infra.plugins.filter.sentinel import sentinel_majority_master
    return sentinel_majority_master(value, quorum)


def test_filter_majority_first_deploy_and_split():
    from ansible.errors import AnsibleFilterError
    assert _filter([M, ['10.0.0.21', '6379'], None]) == M
    assert _filter([None, '', []]) is None
    with pytest.raises(AnsibleFilterError, match='no Sentinel majority'):
        _filter({'a': M, 'b': R1})
    with pytest.raises(AnsibleFilterError, match='expects a list or dict'):
        _filter('10.0.0.21:6379')


def test_filter_accepts_the_modules_sentinels_list():
    sentinels = [{'address': S[0], 'reachable': True, 'master': M},
                 {'address': S[1], 'reachable': False, 'master': None},
                 {'address': S[2], 'reachable': True, 'master': M}]
    assert _filter(sentinels) == M
    from ansible.errors import AnsibleFilterError
    with pytest.raises(AnsibleFilterError, match=r'no answer from 10\.0\.0\.12:26379, 10\.0\.0\.13:26379'):
        _filter(sentinels[:2] + [{'address': S[2], 'reachable': False, 'master': None, 'error': 'x'}]
                + [{'address': '10.0.0.14:26379', 'reachable': True, 'master': R1}])
