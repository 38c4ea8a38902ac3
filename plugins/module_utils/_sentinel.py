# -*- coding: utf-8 -*-
# Copyright: (c) 2025, psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure decision logic for Redis Sentinel.

Nothing here opens a socket: every function takes what the Sentinels and the
data nodes answered (see ``build_view``) and decides. ``_redis.py`` does the
talking; the modules and the ``sentinel_majority_master`` filter glue the two.

A *view* is what one Sentinel said about one master, normalised::

    {'address': '10.0.0.5:26379', 'reachable': True, 'error': None,
     'master': {'host': .., 'port': .., 'address': .., 'flags': [..],
                'epoch': 3, 'num_replicas': 2, 'num_other_sentinels': 2,
                'quorum': 2},
     'replicas': [{'host': .., 'port': .., 'address': .., 'flags': [..],
                   'link_status': 'ok', 'link_down_ms': 0, 'priority': 100,
                   'offset': 1234}],
     'sentinels': [{'address': .., 'flags': [..]}],
     'ckquorum_ok': True, 'ckquorum': 'OK 3 usable Sentinels. ...',
     'tilt': False, 'tilt_since_seconds': None}

A view with ``reachable: False`` carries only ``address`` and ``error``.
"""

from __future__ import annotations

import time

DONE = 'done'
WAIT = 'wait'
FAILED = 'failed'

# Sentinel flags that mean "this node is not serving right now".
DOWN_FLAGS = ('s_down', 'o_down', 'disconnected')


class AddressError(ValueError):
    """A host:port string that cannot be parsed."""


# ---------------------------------------------------------------- addresses

def parse_address(text, what='address'):
    """Split ``host:port`` (or ``[v6]:port``) into ``(host, port)``."""
    hint = "write it as host:port, e.g. 10.0.0.5:26379 or [::1]:26379"
    if not isinstance(text, str) or not text.strip():
        raise AddressError("%s %r is not a host:port address: %s" % (what, text, hint))
    value = text.strip()
    if value.startswith('['):
        end = value.find(']')
        if end == -1 or value[end + 1:end + 2] != ':':
            raise AddressError("%s %r is not a host:port address: %s" % (what, text, hint))
        host, port_text = value[1:end], value[end + 2:]
    else:
        if value.count(':') != 1:
            if value.count(':') > 1:
                hint = "put IPv6 addresses in brackets, e.g. [::1]:26379"
            raise AddressError("%s %r is not a host:port address: %s" % (what, text, hint))
        host, port_text = value.split(':')
    if not host:
        raise AddressError("%s %r has no host: %s" % (what, text, hint))
    try:
        port = int(port_text)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise AddressError("%s %r has no valid port (1-65535): %s" % (what, text, hint))
    return host, port


def format_address(host, port):
    """``host:port``, with IPv6 hosts in brackets."""
    if ':' in host and not host.startswith('['):
        return '[%s]:%d' % (host, int(port))
    return '%s:%d' % (host, int(port))


def normalize_address(value):
    """Turn a reply into ``host:port`` or None when it names no master.

    Accepts ``'h:p'``, ``['h', p]`` / ``('h', p)`` (what ``SENTINEL
    GET-MASTER-ADDR-BY-NAME`` answers), ``{'host': h, 'port': p}`` (or ``ip``),
    and None / ``''`` / ``[]`` for "unknown or unreachable".
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value or value in ('(nil)', 'None', 'null'):
            return None
        host, port = parse_address(value, 'master address')
        return format_address(host, port)
    if isinstance(value, dict):
        host = value.get('host', value.get('ip'))
        port = value.get('port')
        if host in (None, '') and port in (None, ''):
            return None
        return _pair_to_address(host, port, value)
    if isinstance(value, (list, tuple)):
        if not value:
            return None
        if len(value) == 1:
            return normalize_address(value[0])
        if len(value) == 2:
            return _pair_to_address(value[0], value[1], value)
    raise AddressError("master address %r is neither host:port, [host, port] nor {host, port}" % (value,))


def _pair_to_address(host, port, original):
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise AddressError("master address %r has no valid port" % (original,))
    if not isinstance(host, str) or not host or not 0 < port < 65536:
        raise AddressError("master address %r has no valid host or port" % (original,))
    return format_address(host.strip('[]'), port)


def address_dict(address):
    """``'h:p'`` -> ``{'host': 'h', 'port': p}`` (None stays None)."""
    if address is None:
        return None
    host, port = parse_address(address)
    return {'host': host, 'port': port}


# ------------------------------------------------------------ majority vote

def _group(items):
    """[(key, who)] -> {key: [who, ...]} keeping first-seen order."""
    groups = {}
    for key, who in items:
        groups.setdefault(key, []).append(who)
    return groups


def _describe_groups(groups):
    return '; '.join('%s (%s)' % (key, ', '.join(who)) for key, who in groups.items())


def decide_master(replies, quorum=None):
    """Decide who the master is from what each Sentinel said.

    ``replies`` is a list of replies, or a dict ``{sentinel: reply}`` (the
    sentinel names only make the reasons clearer). A reply is the master
    address the Sentinel reports (any form ``normalize_address`` accepts), or
    None when the Sentinel is unreachable or does not know the master.

    ``quorum`` is how many Sentinels must name the same address; default a
    majority of all replies (``len // 2 + 1``), which is what a failover needs
    too, so a minority partition can never outvote the rest.

    Returns ``(address, reason)``:
      * ``('h:p', None)``: at least ``quorum`` Sentinels, and more than for any
        other address, name ``h:p``;
      * ``(None, None)``: no Sentinel names any master (first deploy, or all
        unreachable): the caller falls back to its configured initial master
        (and should make sure it really is a first deploy);
      * ``(None, reason)``: some Sentinels name a master but none has the
        majority: the caller must stop and not guess.
    """
    if isinstance(replies, dict):
        items = list(replies.items())
    else:
        items = [('Sentinel #%d' % (index + 1), reply) for index, reply in enumerate(replies or [])]
    total = len(items)
    if total == 0:
        return None, None
    if quorum is None:
        needed = total // 2 + 1
    else:
        needed = int(quorum)
        if needed < 1:
            raise ValueError("quorum must be at least 1, got %r" % (quorum,))
    votes = _group((normalize_address(reply), str(who)) for who, reply in items)
    silent = votes.pop(None, [])
    if not votes:
        return None, None
    ranked = sorted(votes.items(), key=lambda kv: -len(kv[1]))
    best, best_voters = ranked[0]
    if needed > total:
        return None, ("quorum %d is more than the %d Sentinels asked: no address can win" % (needed, total))
    if len(ranked) > 1 and len(ranked[1][1]) == len(best_voters):
        return None, ("Sentinels are split with no majority: %s%s; %d needed"
                      % (_describe_groups(votes), _silent_note(silent), needed))
    if len(best_voters) < needed:
        return None, ("only %d of %d Sentinels name the master (%s)%s; %d needed"
                      % (len(best_voters), total, _describe_groups(votes), _silent_note(silent), needed))
    return best, None


def _silent_note(silent):
    if not silent:
        return ''
    return '; no answer from %s' % ', '.join(silent)


# -------------------------------------------------------- normalising views

def _int(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _flags(value):
    if isinstance(value, (list, tuple, set)):
        return sorted(str(flag) for flag in value)
    return [flag for flag in str(value or '').split(',') if flag]


def _node(raw):
    host = raw.get('ip', raw.get('host'))
    port = _int(raw.get('port'))
    node = {'host': host, 'port': port, 'flags': _flags(raw.get('flags'))}
    node['address'] = format_address(host, port) if host and port else None
    return node


def build_view(address, master, replicas=None, sentinels=None, ckquorum_ok=None, ckquorum=None,
               info_sentinel=None):
    """Normalise the raw answers of one Sentinel into a view.

    ``master`` / ``replicas`` / ``sentinels`` are the field/value dicts of
    ``SENTINEL MASTER``, ``SENTINEL REPLICAS`` and ``SENTINEL SENTINELS``;
    ``info_sentinel`` is the parsed ``INFO sentinel`` section.
    """
    master_node = _node(master)
    master_node.update({
        'epoch': _int(master.get('config-epoch')),
        'num_replicas': _int(master.get('num-slaves')),
        'num_other_sentinels': _int(master.get('num-other-sentinels')),
        'quorum': _int(master.get('quorum')),
    })
    replica_nodes = []
    for raw in replicas or []:
        node = _node(raw)
        node.update({
            'link_status': raw.get('master-link-status'),
            'link_down_ms': _int(raw.get('master-link-down-time'), 0),
            'priority': _int(raw.get('slave-priority', raw.get('replica-priority'))),
            'offset': _int(raw.get('slave-repl-offset')),
        })
        replica_nodes.append(node)
    info_sentinel = info_sentinel or {}
    tilt_since = _int(info_sentinel.get('sentinel_tilt_since_seconds'))
    return {
        'address': address,
        'reachable': True,
        'error': None,
        'master': master_node,
        'replicas': replica_nodes,
        'sentinels': [_node(raw) for raw in sentinels or []],
        'ckquorum_ok': ckquorum_ok,
        'ckquorum': ckquorum,
        'tilt': bool(_int(info_sentinel.get('sentinel_tilt'), 0)),
        'tilt_since_seconds': tilt_since if tilt_since is not None and tilt_since >= 0 else None,
    }


def likely_master(views):
    """The majority's master, else the address most Sentinels name (ties:
    the first listed), else None. For reporting and for choosing which node
    to read ``INFO replication`` from, never for a decision."""
    master, dummy = decide_master(dict((view['address'], view_master(view)) for view in views))
    if master is not None:
        return master
    named = _group((view_master(view), view['address']) for view in views if view_master(view))
    if not named:
        return None
    return sorted(named.items(), key=lambda kv: -len(kv[1]))[0][0]


def unreachable_view(address, error):
    """The view of a Sentinel that did not answer (``error`` says why)."""
    return {'address': address, 'reachable': False, 'error': error}


def view_master(view):
    """The master address a view names, or None."""
    if not view.get('reachable'):
        return None
    return (view.get('master') or {}).get('address')


# ------------------------------------------------------------------ evaluate

def evaluate(sentinel_views, expected_replicas=None, max_lag_seconds=10.0, master_replication=None,
             master_error=None, master_name='mymaster'):
    """Check a Sentinel deployment and list what is wrong with it.

    ``master_replication`` is the master's parsed ``INFO replication`` (or
    None with ``master_error`` saying why it could not be read). Replica lag
    is the master's per-replica ``lag`` field: seconds since that replica's
    last acknowledgement (replicas ACK every second; the same measure as
    ``min-replicas-max-lag``). The byte gap ``master_repl_offset - offset`` is
    reported beside it. Link state and flags come from the Sentinels.

    Returns the module's report: ``master``, ``replicas``, ``sentinels``,
    ``epoch``, ``quorum_ok`` and ``problems`` (list of sentences).
    """
    views = list(sentinel_views)
    problems = []
    reachable = [view for view in views if view.get('reachable')]

    for view in views:
        if not view.get('reachable'):
            problems.append(view.get('error') or 'Sentinel %s did not answer' % view['address'])

    sentinels_out = []
    for view in views:
        if view.get('reachable'):
            sentinels_out.append({
                'address': view['address'], 'reachable': True, 'error': None,
                'tilt': view['tilt'], 'master': view_master(view), 'epoch': view['master']['epoch'],
                'quorum_ok': view['ckquorum_ok'],
            })
        else:
            sentinels_out.append({
                'address': view['address'], 'reachable': False, 'error': view.get('error'),
                'tilt': None, 'master': None, 'epoch': None, 'quorum_ok': None,
            })

    report = {'master': None, 'replicas': [], 'sentinels': sentinels_out, 'epoch': None,
              'quorum_ok': False, 'problems': problems}
    if not reachable:
        problems.append("no Sentinel answered for master '%s', nothing else can be checked" % master_name)
        return report

    # Who is the master: all answering Sentinels should say the same.
    by_master = _group((view_master(view), view['address']) for view in reachable)
    if len(by_master) > 1:
        problems.append("Sentinels disagree on the address of master '%s': %s"
                        % (master_name, _describe_groups(by_master)))
    master, reason = decide_master(dict((view['address'], view_master(view)) for view in views))
    if reason:
        problems.append("no Sentinel majority for master '%s': %s" % (master_name, reason))
        master = likely_master(views)
    report['master'] = address_dict(master)

    by_epoch = _group((view['master']['epoch'], view['address']) for view in reachable)
    if len(by_epoch) > 1:
        problems.append("Sentinels disagree on the config epoch of master '%s': %s"
                        % (master_name, _describe_groups(by_epoch)))
    epochs = [epoch for epoch in by_epoch if epoch is not None]
    report['epoch'] = max(epochs) if epochs else None

    report['quorum_ok'] = all(view['ckquorum_ok'] for view in reachable)
    for view in reachable:
        if not view['ckquorum_ok']:
            problems.append("Sentinel %s: SENTINEL CKQUORUM %s failed: %s"
                            % (view['address'], master_name, view.get('ckquorum') or 'no reason given'))
        if view['tilt']:
            since = view.get('tilt_since_seconds')
            problems.append("Sentinel %s is in TILT mode%s: it will not fail over until its clock has been "
                            "steady for 30 s (check for CPU starvation or clock jumps)"
                            % (view['address'], ' for %d s' % since if since is not None else ''))
        bad = [flag for flag in view['master']['flags'] if flag in DOWN_FLAGS + ('failover_in_progress',)]
        if bad:
            problems.append("Sentinel %s flags master %s as %s"
                            % (view['address'], view_master(view), ','.join(bad)))

    few_others = _group((view['master']['num_other_sentinels'], view['address']) for view in reachable
                        if (view['master']['num_other_sentinels'] or 0) < len(views) - 1)
    for others, who in few_others.items():
        problems.append("Sentinel(s) %s know only %d other Sentinel(s) of master '%s', expected %d: check that "
                        "the Sentinels can reach each other (and sentinel announce-ip/port)"
                        % (', '.join(who), others or 0, master_name, len(views) - 1))

    agreeing = [view for view in reachable if view_master(view) == master]
    if expected_replicas is not None:
        short = _group((len(view['replicas']), view['address'])
                       for view in agreeing if len(view['replicas']) < expected_replicas)
        for count, who in short.items():
            problems.append("Sentinel(s) %s know %d replica(s) of master '%s', expected %d"
                            % (', '.join(who), count, master_name, expected_replicas))

    report['replicas'] = _replicas(agreeing, master, master_replication, master_error, max_lag_seconds,
                                   problems)
    return report


def _replicas(agreeing, master, replication, master_error, max_lag_seconds, problems):
    if master_error:
        problems.append(master_error)
    elif replication is not None and replication.get('role') != 'master':
        problems.append("%s is named master by the Sentinels but reports role:%s"
                        % (master, replication.get('role')))
    connected = {}
    master_offset = None
    if replication is not None and replication.get('role') == 'master':
        master_offset = _int(replication.get('master_repl_offset'))
        for key, value in replication.items():
            if key.startswith('slave') and isinstance(value, dict) and value.get('ip'):
                connected[format_address(value['ip'], value.get('port'))] = value
    if not agreeing:
        return []

    # The first agreeing Sentinel is the reference for the replica list; down
    # flags are collected from every agreeing Sentinel, since one Sentinel
    # that cannot see a replica is a partition worth knowing about.
    down = {}
    for view in agreeing:
        for replica in view['replicas']:
            for flag in replica['flags']:
                if flag in DOWN_FLAGS:
                    down.setdefault(replica['address'], {}).setdefault(flag, []).append(view['address'])
    out = []
    for replica in agreeing[0]['replicas']:
        address = replica['address']
        entry = {
            'host': replica['host'], 'port': replica['port'], 'flags': replica['flags'],
            'link_status': replica['link_status'],
            'link_down_seconds': max(replica['link_down_ms'], 0) / 1000.0,
            'priority': replica['priority'], 'lag_seconds': None, 'lag_bytes': None, 'state': None,
        }
        # A replica flagged down gets one sentence; its link and absence
        # from the master's list follow from it.
        flagged = _group((tuple(who), flag) for flag, who in sorted(down.get(address, {}).items()))
        for who, flags in flagged.items():
            problems.append("replica %s is %s according to Sentinel(s) %s"
                            % (address, ', '.join(flags), ', '.join(who)))
        if replica['link_status'] != 'ok' and not flagged:
            problems.append("replica %s: link to the master is %s%s"
                            % (address, replica['link_status'] or 'unknown',
                               ' (down for %.1f s)' % entry['link_down_seconds']
                               if entry['link_down_seconds'] > 0 else ''))
        if replication is not None and replication.get('role') == 'master':
            seen = connected.get(address)
            if seen is None:
                if not flagged:
                    problems.append("replica %s is not connected to master %s (absent from its INFO replication)"
                                    % (address, master))
            else:
                entry['state'] = seen.get('state')
                entry['lag_seconds'] = _int(seen.get('lag'))
                offset = _int(seen.get('offset'))
                if master_offset is not None and offset is not None:
                    entry['lag_bytes'] = max(master_offset - offset, 0)
                if entry['state'] != 'online':
                    problems.append("replica %s is not online on master %s (state=%s)"
                                    % (address, master, entry['state']))
                if entry['lag_seconds'] is not None and entry['lag_seconds'] > max_lag_seconds:
                    problems.append("replica %s lags %s s behind master %s (max_replica_lag %s)"
                                    % (address, entry['lag_seconds'], master, max_lag_seconds))
        out.append(entry)
    return out


# -------------------------------------------------------------- switchover

def switchover_blockers(report, views):
    """Reasons a planned switchover cannot start (empty list: go ahead).

    Only what would make ``SENTINEL FAILOVER`` refuse or pick nobody counts
    (no agreed master, ``-INPROG``, ``-NOGOODSLAVE``); lag and a missing
    minority Sentinel do not block a planned switchover.
    """
    blockers = []
    master = report['master'] and format_address(report['master']['host'], report['master']['port'])
    reachable = [view for view in views if view.get('reachable')]
    if master is None or any(view_master(view) != master for view in reachable):
        blockers.append('the Sentinels do not agree on the current master (run action=check)')
        return blockers
    for view in reachable:
        if 'failover_in_progress' in view['master']['flags']:
            blockers.append('Sentinel %s has a failover in progress for %s: wait for it (action=wait_for_failover)'
                            % (view['address'], master))
            break
    if not any(promotable(replica) for replica in report['replicas']):
        blockers.append('no replica of %s can be promoted (all down, link not ok, or replica-priority 0): '
                        'Sentinel would answer -NOGOODSLAVE' % master)
    return blockers


def promotable(replica):
    """Whether Sentinel could pick this replica (as reported by ``evaluate``)."""
    return (replica.get('link_status') == 'ok' and replica.get('priority') != 0
            and not any(flag in DOWN_FLAGS for flag in replica.get('flags') or []))


def pick_failover_sentinel(views, master):
    """The last answering Sentinel that names ``master`` (None if none).

    The last, because clients ask the Sentinels in the listed order, and the one that runs the
    failover is the last to name the new master in ``SENTINEL MASTER(S)`` (see the decisions above
    ``release_step``).
    """
    for view in reversed(views):
        if view.get('reachable') and view_master(view) == master:
            return view['address']
    return None


# --------------------------------------------------------------- polling

def agreed_master(views, total=None):
    """``(address, None)`` when every answering Sentinel names the same
    master and they are a majority of ``total`` (default ``len(views)``);
    else ``(None, reason)``."""
    total = len(views) if total is None else total
    reachable = [view for view in views if view.get('reachable')]
    needed = total // 2 + 1
    if len(reachable) < needed:
        return None, ('only %d of %d Sentinels answer, %d needed' % (len(reachable), total, needed))
    named = _group((view_master(view), view['address']) for view in reachable)
    if len(named) > 1:
        return None, 'Sentinels do not agree yet: %s' % _describe_groups(named)
    return list(named)[0], None


def _timed_out(reason, elapsed, timeout):
    return FAILED, 'not done after %.1f s (timeout %s s): %s' % (elapsed, timeout, reason)


def switchover_decision(old_master, views, roles, elapsed, timeout, total=None):
    """Decide a switchover from one snapshot.

    ``roles`` maps node address -> ``role`` from its ``INFO replication``
    (None when it did not answer). Done when the answering Sentinels (a
    majority) agree on a new master, it reports ``role:master`` and the old
    master reports ``role:slave``. Returns ``(DONE, new_master)``,
    ``(WAIT, reason)`` or ``(FAILED, reason)`` once ``elapsed >= timeout``.
    """
    master, reason = agreed_master(views, total)
    if master is not None:
        if master == old_master:
            reason = 'the Sentinels still name the old master %s' % old_master
        elif roles.get(master) != 'master':
            reason = 'new master %s reports role:%s' % (master, roles.get(master) or 'unknown (no answer)')
        elif roles.get(old_master) != 'slave':
            reason = 'old master %s reports role:%s' % (old_master, roles.get(old_master) or 'unknown (no answer)')
        else:
            return DONE, master
    if elapsed >= timeout:
        return _timed_out(reason, elapsed, timeout)
    return WAIT, reason


# ------------------------------------------------------ releasing the old master
#
# Decisions (and why), for a planned switchover:
# * The asked Sentinel names the promoted replica in SENTINEL GET-MASTER-ADDR-BY-NAME as soon as
#   it has seen the promotion (failover state reconf-slaves); from then on the failover cannot be
#   undone: a newer config epoch wins on every Sentinel. It sends its hello at once, so the other
#   Sentinels name the new master a few milliseconds later. Its own SENTINEL MASTER(S) reply, which
#   the views and redis-py's discovery read, changes only at the end of the failover, once the
#   other replicas have been reconfigured (a second or more later).
# * So the module asks the last listed Sentinel to fail over (``pick_failover_sentinel``): clients
#   ask the Sentinels in the listed order and move on only when one does not answer, and the first
#   ones name the new master first.
# * Sentinel turns a live old master into a replica only after it has reported role:master for
#   8 s (four hello periods) after the switch. The module does it at once (REPLICAOF, what Sentinel
#   sends; CONFIG REWRITE once writes are resumed), while the old master's writes are still paused:
#   nothing written there after the promotion can be lost, and its offset has not moved past the
#   point the new master can continue from (partial resync; a paused master publishes no hello).
# * Only once the old master replicates from the new one are its clients disconnected and writes
#   resumed: commands that waited in the pause go with their connections, unexecuted, and a client
#   that comes back meets a replica (READONLY, or a role check) and asks the Sentinels again, never
#   a master that takes writes no replica will keep.

DEMOTE = 'demote'
RELEASE = 'release'

# Sentinel names its connections to the data nodes sentinel-<id>-cmd and sentinel-<id>-pubsub.
SENTINEL_CLIENT_PREFIX = 'sentinel-'


def replica_of(replication):
    """``host:port`` a node replicates from, from its parsed ``INFO replication`` (None if it is
    not a replica or did not answer)."""
    if not replication or replication.get('role') != 'slave':
        return None
    host, port = replication.get('master_host'), _int(replication.get('master_port'))
    if not host or not port:
        return None
    return format_address(str(host), port)


def release_step(old_master, sentinel, named, replication):
    """The next step for the paused old master of a switchover, from one snapshot.

    ``named`` is the master address (``SENTINEL GET-MASTER-ADDR-BY-NAME``) the Sentinel asked for
    ``SENTINEL FAILOVER`` (``sentinel``) names now, or why it did not answer (``(None, error)``);
    ``replication`` maps node address -> parsed ``INFO replication`` (None: no answer).
    Returns ``(WAIT, reason)``; ``(DEMOTE, new_master)`` when that Sentinel names a new master
    that reports role:master while the old master still reports role:master (make it a replica
    of ``new_master`` now); or ``(RELEASE, new_master)`` once the old master replicates from
    ``new_master`` (disconnect its clients, then resume writes).
    """
    new_master, error = named
    if new_master is None:
        return WAIT, 'Sentinel %s names no master: %s' % (sentinel, error or 'no reply')
    if new_master == old_master:
        return WAIT, 'Sentinel %s still names the old master %s' % (sentinel, old_master)
    new_role = (replication.get(new_master) or {}).get('role')
    if new_role != 'master':
        return WAIT, 'new master %s reports role:%s' % (new_master, new_role or 'unknown (no answer)')
    old = replication.get(old_master)
    if old is None:
        return WAIT, 'old master %s does not answer' % old_master
    if old.get('role') == 'master':
        return DEMOTE, new_master
    following = replica_of(old)
    if following == new_master:
        return RELEASE, new_master
    return WAIT, 'old master %s reports role:%s, replicating from %s' % (old_master, old.get('role'), following)


def release_decision(step, detail, elapsed, timeout):
    """``poll``'s reading of a ``release_step``: DONE (with the new master) once the old master may
    be released, FAILED at the timeout (with the last reason), else WAIT."""
    if step == RELEASE:
        return DONE, detail
    reason = detail if step == WAIT else 'the old master still reports role:master after REPLICAOF %s' % detail
    if elapsed >= timeout:
        return _timed_out(reason, elapsed, timeout)
    return WAIT, reason


def parse_client_list(reply):
    """``CLIENT LIST`` -> list of {field: value} (the reply's text, or redis-py's parsed list)."""
    if isinstance(reply, (list, tuple)):
        return [dict(item) for item in reply]
    if isinstance(reply, bytes):
        reply = reply.decode('utf-8', 'replace')
    clients = []
    for line in (reply or '').splitlines():
        # Names cannot hold spaces (CLIENT SETNAME refuses them); a value may hold '='.
        fields = dict(part.split('=', 1) for part in line.split(' ') if '=' in part)
        if fields:
            clients.append(fields)
    return clients


def clients_to_disconnect(clients, own_id):
    """Ids of the clients to disconnect from a demoted master: all but our own connection, the
    Sentinels' (named ``sentinel-...``: they would reconnect anyway, but must keep monitoring) and
    replication links (flags S, M) or subscribers (P), in case the list was not filtered by type."""
    ids = []
    for client in clients:
        client_id = _int(client.get('id'))
        if client_id is None or client_id == _int(own_id):
            continue
        if str(client.get('name') or '').startswith(SENTINEL_CLIENT_PREFIX):
            continue
        if set(str(client.get('flags') or '')) & set('SMP'):
            continue
        ids.append(client_id)
    return ids


def failover_decision(old_master, views, elapsed, timeout, roles=None, total=None):
    """Decide a wait for an unplanned failover from one snapshot.

    Done when the answering Sentinels (a majority) agree on a master other
    than ``old_master``; if ``roles`` says the new master answered with
    another role than master, keep waiting (it is still being promoted).
    """
    master, reason = agreed_master(views, total)
    if master is not None:
        role = (roles or {}).get(master)
        if master == old_master:
            reason = 'the Sentinels still name %s' % old_master
        elif role is not None and role != 'master':
            reason = 'new master %s still reports role:%s' % (master, role)
        else:
            return DONE, master
    if elapsed >= timeout:
        return _timed_out(reason, elapsed, timeout)
    return WAIT, reason


def poll(take_snapshot, decide, interval=0.25, clock=time.monotonic, sleep=time.sleep):
    """Call ``decide(take_snapshot(), elapsed)`` until it is not WAIT.

    Returns ``(state, detail, elapsed_seconds)``. ``decide`` is expected to
    return FAILED once its own timeout is reached, so this always ends.
    """
    start = clock()
    while True:
        snapshot = take_snapshot()
        elapsed = clock() - start
        state, detail = decide(snapshot, elapsed)
        if state != WAIT:
            return state, detail, elapsed
        sleep(interval)
