#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: sentinel_failover_check
short_description: Check a Redis Sentinel set, switch its master over, or wait for a failover
version_added: 0.1.0
description:
  - With O(action=check) (the default), asks every Sentinel about the master and reports what would
    stop a failover from working, that is unreachable Sentinels, Sentinels that disagree on the master
    or its config epoch, a failing C(SENTINEL CKQUORUM), missing or disconnected replicas, replicas
    that lag, and Sentinels in TILT mode. Fails listing the problems unless O(fail_on_problems=false).
  - With O(action=switchover), performs a planned failover. It briefly pauses writes on the master
    (C(CLIENT PAUSE <ms> WRITE)) so replicas can catch up, asks one Sentinel for
    C(SENTINEL FAILOVER), and waits until every answering Sentinel names the new master, the new
    master reports C(role:master) and the old one C(role:slave).
  - As soon as the Sentinel it asked names the promoted replica (C(SENTINEL GET-MASTER-ADDR-BY-NAME))
    and that replica reports C(role:master), the module makes the old master a replica of it
    (C(REPLICAOF), what Sentinel itself would send only some 8 to 10 seconds later), disconnects
    the old master's normal clients except the Sentinels' (C(CLIENT KILL ID)), and then resumes
    writes (C(CLIENT UNPAUSE)) and saves the change (C(CONFIG REWRITE)). Commands that waited in the
    pause go with their connection, unexecuted; clients reconnect at once, ask the Sentinels and
    find the new master. Nothing is written on the old master after the promotion.
  - The module asks the last listed Sentinel that names the master, because clients ask the
    Sentinels in the listed order, and the Sentinel that runs the failover changes its
    C(SENTINEL MASTER) answer (which redis-py reads) only at the end of the failover, about a second
    after the other Sentinels.
  - With O(action=wait_for_failover), after the master was lost (crash, kill, network), waits until
    the Sentinels agree on a master other than O(old_master).
  - Unreachable Sentinels, wrong passwords and an unknown O(master_name) are reported in words, with
    what to fix.
author:
  - psscript.infra developers (!UNKNOWN)
extends_documentation_fragment:
  - psscript.infra.sentinel
  - psscript.infra.sentinel.tls
  - psscript.infra.attributes
attributes:
  check_mode:
    support: full
    details:
      - O(action=check) and O(action=wait_for_failover) only read, and run unchanged in check mode.
      - O(action=switchover) in check mode checks that a switchover could start (agreed master,
        no failover in progress, a promotable replica), changes nothing, predicts C(changed=true)
        and says in RV(msg) what it would do.
  diff_mode:
    support: none
options:
  action:
    description:
      - V(check) reports the health of the Sentinel set.
      - V(switchover) moves the master role to a replica chosen by Sentinel (planned failover).
      - V(wait_for_failover) waits for the Sentinels to replace a lost master.
    type: str
    choices: [check, switchover, wait_for_failover]
    default: check
  expected_replicas:
    description:
      - Number of replicas the master should have. With O(action=check), each Sentinel that knows
        fewer is a problem.
      - When not set, the number of replicas is not checked.
    type: int
  max_replica_lag:
    description:
      - Largest acceptable replica lag in seconds, as the master reports it in C(INFO replication)
        (C(lag) of each C(slaveN) line, the seconds since the replica last acknowledged; the measure
        C(min-replicas-max-lag) uses). The byte gap to the master's offset is returned beside it.
    type: float
    default: 10
  fail_on_problems:
    description:
      - With O(action=check), fail when any problem is found.
      - Set to V(false) to only report them in RV(problems), for example to decide in a playbook.
    type: bool
    default: true
  old_master:
    description:
      - For O(action=wait_for_failover), the address (C(host:port)) of the master that was lost.
      - Default is the master the Sentinel majority names when the module starts; set it when the
        Sentinels may already have failed over by then.
    type: str
  timeout:
    description:
      - Seconds to wait for O(action=switchover) or O(action=wait_for_failover) to complete.
      - An unplanned failover takes at least C(down-after-milliseconds) plus a few seconds.
    type: float
    default: 30
  pause_writes_ms:
    description:
      - For O(action=switchover), the longest C(CLIENT PAUSE ... WRITE) on the master, set before
        C(SENTINEL FAILOVER) so that replicas receive the last writes before one is promoted. The
        module resumes writes itself as soon as the old master replicates from the new one (about
        1 to 2 seconds after the pause began); this value only bounds the pause if the module
        cannot end it. Cover a promotion (about 1 to 3 seconds).
      - Without the pause, writes that reach the old master between the promotion and its
        conversion to a replica are lost, unless the data nodes set C(min-replicas-to-write 1),
        which makes the old master refuse them once its replicas have moved to the new master.
      - Needs Redis 6.2 or later. V(0) skips the pause.
    type: int
    default: 3000
notes:
  - The master is whatever a majority of the listed Sentinels name. Replica link state and flags
    come from the Sentinels (the first one that agrees with the majority lists the replicas; a
    replica flagged down by any agreeing Sentinel is a problem); lag comes from the master's
    C(INFO replication).
  - The host running the module must reach the Sentinels and the Redis nodes at the addresses the
    Sentinels announce.
  - "ACL: O(redis_user) needs C(+ping +info) for O(action=check) and O(action=wait_for_failover); O(action=switchover)
    also needs C(+client|pause +client|unpause +client|id +client|list +client|kill +replicaof +config|rewrite)
    on the data nodes."
seealso:
  - name: Redis Sentinel documentation
    description: How Sentinel detects failures, elects a leader and promotes a replica.
    link: https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/
'''

EXAMPLES = r'''
- name: Check that the Sentinel set can fail over
  psscript.infra.sentinel_failover_check:
    sentinels:
      - 10.10.0.11:26379
      - 10.10.0.12:26379
      - 10.10.0.13:26379
    master_name: mymaster
    sentinel_password: "{{ redis_sentinel_password }}"
    redis_user: monitor
    redis_password: "{{ redis_monitor_password }}"
    expected_replicas: 2
    max_replica_lag: 5

- name: Report problems without failing, then decide
  psscript.infra.sentinel_failover_check:
    sentinels: "{{ redis_sentinel_addresses }}"
    fail_on_problems: false
  register: sentinel_health

- name: Show who is master
  ansible.builtin.debug:
    msg: "master is {{ sentinel_health.master.host }}:{{ sentinel_health.master.port }}"
  when: sentinel_health.master is not none

- name: Planned switchover before maintenance of the master host
  psscript.infra.sentinel_failover_check:
    sentinels: "{{ redis_sentinel_addresses }}"
    action: switchover
    pause_writes_ms: 2000
    timeout: 60
  environment:
    REDIS_SENTINEL_PASSWORD: "{{ redis_sentinel_password }}"
    REDIS_USERNAME: failover
    REDIS_PASSWORD: "{{ redis_failover_password }}"
  register: switchover

- name: Wait until the Sentinels replace a master that was killed
  psscript.infra.sentinel_failover_check:
    sentinels: "{{ redis_sentinel_addresses }}"
    action: wait_for_failover
    old_master: 10.10.0.21:6379
    timeout: 60
'''

RETURN = r'''
msg:
  description: What was found or done, in one sentence.
  returned: always
  type: str
  sample: "Sentinel set of 'mymaster' is healthy: master 10.10.0.21:6379, 2 replica(s), 3/3 Sentinels"
master:
  description:
    - The master named by the majority of the Sentinels (with O(action=check), when there is no
      majority, the address most Sentinels name).
    - V(null) when no Sentinel answered.
  returned: when O(action=check)
  type: dict
  sample: {"host": "10.10.0.21", "port": 6379}
  contains:
    host:
      description: Host or IP address of the master as the Sentinels announce it.
      type: str
    port:
      description: Port of the master.
      type: int
replicas:
  description: The replicas of the master, as listed by the first Sentinel that agrees with the majority.
  returned: when O(action=check)
  type: list
  elements: dict
  sample:
    - {"host": "10.10.0.22", "port": 6379, "flags": ["slave"], "link_status": "ok", "link_down_seconds": 0.0,
       "priority": 100, "state": "online", "lag_seconds": 0, "lag_bytes": 0}
  contains:
    host:
      description: Host or IP address of the replica.
      type: str
    port:
      description: Port of the replica.
      type: int
    flags:
      description: Sentinel flags of the replica (C(slave), C(s_down), C(disconnected), ...).
      type: list
      elements: str
    link_status:
      description: The replica's link to the master, as the Sentinel saw it (C(ok) or C(err)).
      type: str
    link_down_seconds:
      description: Seconds the replica's link to the master has been down (0 when up).
      type: float
    priority:
      description: The replica's C(replica-priority); 0 means Sentinel never promotes it.
      type: int
    state:
      description: The replica's state in the master's C(INFO replication) (C(online) when in sync);
        V(null) when the master could not be asked or does not list it.
      type: str
    lag_seconds:
      description: Seconds since the replica last acknowledged, from the master's C(INFO replication);
        V(null) when unknown.
      type: int
    lag_bytes:
      description: Bytes of replication stream the replica has not acknowledged yet; V(null) when unknown.
      type: int
sentinels:
  description: What each listed Sentinel answered, in the order of O(sentinels).
  returned: when O(action=check)
  type: list
  elements: dict
  sample:
    - {"address": "10.10.0.11:26379", "reachable": true, "error": null, "tilt": false,
       "master": "10.10.0.21:6379", "epoch": 3, "quorum_ok": true}
  contains:
    address:
      description: The Sentinel, as C(host:port).
      type: str
    reachable:
      description: Whether the Sentinel answered all queries about the master.
      type: bool
    error:
      description: Why it did not (unreachable, wrong password, unknown master name); V(null) when it did.
      type: str
    tilt:
      description: Whether the Sentinel is in TILT mode; V(null) when it did not answer.
      type: bool
    master:
      description: The master address (C(host:port)) this Sentinel names; V(null) when it did not answer.
      type: str
    epoch:
      description: The master's config epoch according to this Sentinel; V(null) when it did not answer.
      type: int
    quorum_ok:
      description: Whether C(SENTINEL CKQUORUM) succeeded on this Sentinel; V(null) when it did not answer.
      type: bool
epoch:
  description: The highest config epoch of the master reported by any Sentinel; V(null) when no Sentinel answered.
  returned: when O(action=check)
  type: int
  sample: 3
quorum_ok:
  description: Whether C(SENTINEL CKQUORUM) succeeded on every answering Sentinel.
  returned: when O(action=check)
  type: bool
  sample: true
problems:
  description: Everything that stands in the way of a clean failover, one sentence each; empty when healthy.
  returned: when O(action=check), and with O(action=switchover) when it cannot start
  type: list
  elements: str
  sample:
    - "cannot connect to Sentinel 10.10.0.13:26379 (Connection refused): check the address and that the Sentinel is running"
    - "replica 10.10.0.23:6379 lags 14 s behind master 10.10.0.21:6379 (max_replica_lag 10.0)"
old_master:
  description:
    - The master before the switchover or failover.
    - With O(action=wait_for_failover), O(old_master) when set, otherwise the master the Sentinel majority named
      when the module started.
  returned: when O(action=switchover) or O(action=wait_for_failover)
  type: dict
  sample: {"host": "10.10.0.21", "port": 6379}
  contains:
    host:
      description: Host or IP address of the old master.
      type: str
    port:
      description: Port of the old master.
      type: int
new_master:
  description: The master the Sentinels agree on afterwards; V(null) in check mode.
  returned: when O(action=switchover) or O(action=wait_for_failover) succeeds
  type: dict
  sample: {"host": "10.10.0.22", "port": 6379}
  contains:
    host:
      description: Host or IP address of the new master, as the Sentinels announce it.
      type: str
    port:
      description: Port of the new master.
      type: int
writes_paused_ms:
  description:
    - Milliseconds from C(CLIENT PAUSE) to C(CLIENT UNPAUSE) on the old master, that is how long
      writes were held back; V(null) when O(pause_writes_ms=0).
  returned: when O(action=switchover) ran (not in check mode)
  type: int
  sample: 1180
clients_disconnected:
  description:
    - How many normal clients of the old master the module disconnected once it had become a
      replica (its own connection and the Sentinels' are kept), so that they ask the Sentinels
      for the new master at once.
  returned: when O(action=switchover) ran (not in check mode)
  type: int
  sample: 12
duration_ms:
  description:
    - For O(action=switchover), milliseconds from pausing writes (or from C(SENTINEL FAILOVER)) until
      the new master was confirmed.
    - For O(action=wait_for_failover), milliseconds the module waited.
  returned: when O(action=switchover) or O(action=wait_for_failover) ran (not in check mode)
  type: int
  sample: 2140
sentinel:
  description: The Sentinel (C(host:port)) that was asked for C(SENTINEL FAILOVER) (or would be, in check mode).
  returned: when O(action=switchover)
  type: str
  sample: 10.10.0.11:26379
'''

import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.psscript.infra.plugins.module_utils import _redis
from ansible_collections.psscript.infra.plugins.module_utils import _sentinel

POLL_INTERVAL = 0.25
POLL_INTERVAL_PAUSED = 0.02


def inspect(sset, params):
    """Query every Sentinel and the master; the ``evaluate`` report plus views."""
    views = sset.views()
    master = _sentinel.likely_master(views)
    replication, master_error = sset.replication(master) if master else (None, None)
    report = _sentinel.evaluate(views, params['expected_replicas'], params['max_replica_lag'],
                                replication, master_error, params['master_name'])
    return report, views


def run_check(module, sset):
    report, views = inspect(sset, module.params)
    name = module.params['master_name']
    if report['problems']:
        report['msg'] = ("%d problem(s) with the Sentinels of '%s': %s"
                         % (len(report['problems']), name, '; '.join(report['problems'])))
        if module.params['fail_on_problems']:
            module.fail_json(**report)
    else:
        master = report['master']
        report['msg'] = ("Sentinel set of '%s' is healthy: master %s, %d replica(s), %d/%d Sentinels"
                         % (name, _sentinel.format_address(master['host'], master['port']),
                            len(report['replicas']), len(views), len(views)))
    return dict(changed=False, **report)


def run_switchover(module, sset):
    params = module.params
    name = params['master_name']
    report, views = inspect(sset, params)
    blockers = _sentinel.switchover_blockers(report, views)
    if blockers:
        module.fail_json(msg="Cannot switch over '%s': %s" % (name, '; '.join(blockers)),
                         problems=report['problems'])
    old = _sentinel.format_address(report['master']['host'], report['master']['port'])
    sentinel = _sentinel.pick_failover_sentinel(views, old)
    pause_ms = params['pause_writes_ms']
    result = dict(changed=True, old_master=report['master'], sentinel=sentinel)
    if module.check_mode:
        result['new_master'] = None
        result['msg'] = ("Would %sask Sentinel %s to fail over '%s' and wait up to %s s for a new master"
                         % ('pause writes on %s for %d ms, ' % (old, pause_ms) if pause_ms else '',
                            sentinel, name, params['timeout']))
        return result

    state = {'paused': False, 'resumed': None, 'disconnected': 0}

    def unpause():
        # Best effort: the pause expires by itself after pause_writes_ms.
        if state['paused']:
            try:
                sset.unpause(old)
                state['paused'] = False
            except _redis.RedisOpError:
                pass

    def release():
        """One look at the asked Sentinel and the two nodes; demote the old master, disconnect its
        clients and resume writes when _sentinel.release_step says so."""
        named = sset.named_master(sentinel)
        replication = dict((address, sset.replication(address)[0]) for address in (old, named[0]) if address)
        step, target = _sentinel.release_step(old, sentinel, named, replication)
        if step == _sentinel.DEMOTE:
            sset.make_replica(old, target)
            replication[old] = sset.replication(old)[0]
            step, target = _sentinel.release_step(old, sentinel, named, replication)
        if step == _sentinel.RELEASE:
            state['disconnected'] = sset.disconnect_clients(old)
            unpause()
            state['resumed'] = time.monotonic()
            problem = sset.rewrite_config(old)
            if problem:
                module.warn('%s replicates from %s, but CONFIG REWRITE failed (%s): Sentinel rewrites its config '
                            'file at its next reconfiguration' % (old, target, problem))
        return step, target

    def released(step, elapsed):
        return _sentinel.release_decision(step[0], step[1], elapsed, params['timeout'])

    def snapshot():
        current = sset.views(full=False)
        addresses = [old] + [_sentinel.view_master(view) for view in current]
        return current, sset.roles(addresses)

    def done(snap, dummy):
        # The timeout counts from the start, release included.
        return _sentinel.switchover_decision(old, snap[0], snap[1], time.monotonic() - start, params['timeout'])

    start = time.monotonic()
    try:
        if pause_ms:
            try:
                sset.pause_writes(old, pause_ms)
            except _redis.RedisOpError as exc:
                module.fail_json(msg="%s (CLIENT PAUSE ... WRITE needs Redis 6.2+; pause_writes_ms: 0 skips "
                                     "the pause); nothing was changed" % exc.msg)
            state['paused'] = True
        sset.failover(sentinel)
        try:
            # Writes wait while this polls: look often until they are resumed.
            status, detail, dummy = _sentinel.poll(release, released, POLL_INTERVAL_PAUSED)
        except _redis.RedisOpError as exc:
            status, detail = _sentinel.FAILED, exc.msg
        if status != _sentinel.DONE:
            # Sentinel converts the old master itself some 10 s after the switch, once writes resume.
            module.warn('Could not make %s a replica of the new master and disconnect its clients (%s): writes '
                        'resume now' % (old, detail))
            unpause()
        status, detail, dummy = _sentinel.poll(snapshot, done, POLL_INTERVAL)
    finally:
        unpause()
    end = time.monotonic()
    result['duration_ms'] = int((end - start) * 1000)
    # Unless the module resumed writes, the pause ended when it expired (or at the final UNPAUSE).
    paused = int(((state['resumed'] or end) - start) * 1000)
    result['writes_paused_ms'] = (paused if state['resumed'] else min(paused, pause_ms)) if pause_ms else None
    result['clients_disconnected'] = state['disconnected']
    if status != _sentinel.DONE:
        module.fail_json(msg="Switchover of '%s' from %s asked of Sentinel %s did not complete: %s; Sentinel may "
                             "still finish it: see action=check or action=wait_for_failover"
                             % (name, old, sentinel, detail), **result)
    result['new_master'] = _sentinel.address_dict(detail)
    result['msg'] = ("Switched '%s' over from %s to %s in %d ms (writes paused %s, %d client(s) of the old master "
                     "disconnected)" % (name, old, detail, result['duration_ms'],
                                        '%d ms' % result['writes_paused_ms'] if pause_ms else 'not',
                                        state['disconnected']))
    return result


def run_wait_for_failover(module, sset):
    params = module.params
    name = params['master_name']
    if params['old_master']:
        host, port = _redis.parse_address(params['old_master'], 'old_master')
        old = _sentinel.format_address(host, port)
    else:
        views = sset.views(full=False)
        old, reason = _sentinel.decide_master(dict((view['address'], _sentinel.view_master(view))
                                                   for view in views))
        if old is None:
            errors = [view['error'] for view in views if view.get('error')]
            module.fail_json(msg="Cannot tell the current master of '%s' to wait for its replacement: %s; set "
                                 "old_master" % (name, reason or '; '.join(errors) or 'no Sentinel names one'))

    def snapshot():
        current = sset.views(full=False)
        master, dummy = _sentinel.agreed_master(current)
        return current, sset.roles([master]) if master and master != old else {}

    def decide(snap, elapsed):
        return _sentinel.failover_decision(old, snap[0], elapsed, params['timeout'], snap[1])

    status, detail, elapsed = _sentinel.poll(snapshot, decide, POLL_INTERVAL)
    result = dict(changed=False, old_master=_sentinel.address_dict(old), duration_ms=int(elapsed * 1000))
    if status != _sentinel.DONE:
        module.fail_json(msg="The Sentinels did not replace master %s of '%s': %s" % (old, name, detail),
                         **result)
    result['new_master'] = _sentinel.address_dict(detail)
    result['msg'] = "The Sentinels replaced master %s of '%s' by %s after %d ms" % (
        old, name, detail, result['duration_ms'])
    return result


ACTIONS = {
    'check': run_check,
    'switchover': run_switchover,
    'wait_for_failover': run_wait_for_failover,
}


def main():
    argument_spec = _redis.sentinel_connection_spec()
    argument_spec.update(
        action=dict(type='str', default='check', choices=list(ACTIONS)),
        expected_replicas=dict(type='int'),
        max_replica_lag=dict(type='float', default=10.0),
        fail_on_problems=dict(type='bool', default=True),
        old_master=dict(type='str'),
        timeout=dict(type='float', default=30.0),
        pause_writes_ms=dict(type='int', default=3000),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not _redis.HAS_REDIS:
        module.fail_json(msg=missing_required_lib('redis'), exception=_redis.REDIS_IMPORT_ERROR)

    params = module.params
    for option in ('socket_timeout', 'timeout'):
        if params[option] <= 0:
            module.fail_json(msg='%s must be more than 0 seconds, got %s' % (option, params[option]))
    for option in ('pause_writes_ms', 'expected_replicas', 'max_replica_lag'):
        if params[option] is not None and params[option] < 0:
            module.fail_json(msg='%s must not be negative, got %s' % (option, params[option]))

    try:
        sset = _redis.SentinelSet(params['sentinels'], params['master_name'], params['sentinel_password'],
                                  params['redis_password'], params['socket_timeout'], params['redis_user'],
                                  tls=_redis.tls_from_params(params))
        try:
            result = ACTIONS[params['action']](module, sset)
        finally:
            sset.close()
    except _redis.RedisOpError as exc:
        module.fail_json(msg=exc.msg)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
