# -*- coding: utf-8 -*-
# Copyright: (c) 2025, psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place that connects to Redis and Redis Sentinel.

Argument specs (documented by the ``psscript.infra.sentinel`` doc fragment),
connections with bounded timeouts and no hidden retries, and the mapping of
redis-py exceptions to ``RedisOpError`` whose message names the cause and the
fix. The decisions themselves live in ``_sentinel.py``.
"""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import env_fallback

from ansible_collections.psscript.infra.plugins.module_utils import _sentinel

try:
    import redis
    from redis import exceptions as redis_exc
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError:
    HAS_REDIS = False
    REDIS_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_REDIS = True
    REDIS_IMPORT_ERROR = None


# ------------------------------------------------------------ argument specs

def sentinel_connection_spec():
    """A fresh argument spec for modules that talk to a Sentinel set."""
    return dict(
        sentinels=dict(type='list', elements='str', required=True),
        master_name=dict(type='str', default='mymaster'),
        sentinel_password=dict(type='str', no_log=True,
                               fallback=(env_fallback, ['REDIS_SENTINEL_PASSWORD'])),
        redis_user=dict(type='str', fallback=(env_fallback, ['REDIS_USERNAME'])),
        redis_password=dict(type='str', no_log=True, fallback=(env_fallback, ['REDIS_PASSWORD'])),
        socket_timeout=dict(type='float', default=2.0),
        **tls_spec()
    )


def tls_spec():
    """The TLS options every Redis/Sentinel connection takes (the doc fragments' ``tls`` and ``ca_cert``)."""
    return dict(
        tls=dict(type='bool', default=False),
        ca_cert=dict(type='path'),
    )


def tls_from_params(params):
    """The ``tls`` value of Node and SentinelSet from module parameters: None (plain TCP), or
    ``{'ca_cert': path or None}``. A CA certificate implies TLS: it is never set to be ignored."""
    if not params.get('tls') and not params.get('ca_cert'):
        return None
    return {'ca_cert': params.get('ca_cert') or None}


def client_tls_kwargs(tls):
    """redis-py's keyword arguments for ``tls``: with a CA certificate, the server's certificate and its name
    (host name or IP address) are verified, like libpq's verify-full; without one, TLS is required but the
    certificate is not checked (libpq's require)."""
    if not tls:
        return {}
    ca_cert = tls.get('ca_cert')
    return dict(ssl=True, ssl_ca_certs=ca_cert, ssl_cert_reqs='required' if ca_cert else 'none',
                ssl_check_hostname=bool(ca_cert))


def cli_tls_args(tls):
    """redis-cli's arguments for ``tls`` (it checks the certificate's chain, not its names)."""
    if not tls:
        return []
    return ['--tls'] + (['--cacert', tls['ca_cert']] if tls.get('ca_cert') else ['--insecure'])


def redis_connection_spec():
    """A fresh argument spec for modules that talk to one Redis node."""
    return dict(
        login_host=dict(type='str', default='127.0.0.1'),
        login_port=dict(type='int', default=6379),
        login_user=dict(type='str'),
        login_password=dict(type='str', no_log=True, fallback=(env_fallback, ['REDISCLI_AUTH'])),
        socket_timeout=dict(type='float', default=2.0),
        **tls_spec()
    )


# -------------------------------------------------------------------- errors

class RedisOpError(Exception):
    """A failed Redis/Sentinel operation, with a message fit for ``fail_json``.

    ``reason`` is one of: ``address``, ``unreachable``, ``tls``, ``timeout``, ``auth``,
    ``no_such_master``, ``loading``, ``denied``, ``response``.
    """

    def __init__(self, msg, reason='response', detail=None):
        super(RedisOpError, self).__init__(msg)
        self.msg = msg
        self.reason = reason
        self.detail = detail  # the server's own words, when it answered


def parse_address(text, what='address'):
    """``host:port`` / ``[v6]:port`` -> ``(host, port)``; RedisOpError if malformed."""
    try:
        return _sentinel.parse_address(text, what)
    except _sentinel.AddressError as exc:
        raise RedisOpError(str(exc), 'address')


def describe_error(exc, kind, address, password_option, password_given, command='', master_name=None):
    """Map a redis-py exception to ``(message, reason)``.

    ``kind`` is ``Sentinel`` or ``Redis``; ``password_option`` the option an
    operator fixes when the password is wrong.
    """
    text = str(exc).strip()
    upper = text.upper()
    what = '%s %s' % (kind, address)
    if 'CALLED WITHOUT ANY PASSWORD CONFIGURED' in upper or 'NO PASSWORD IS SET' in upper:
        return ("%s has no password configured but %s is set: unset %s or set requirepass on the %s"
                % (what, password_option, password_option, kind), 'auth')
    if (isinstance(exc, redis_exc.AuthenticationError) or 'NOAUTH' in upper or 'WRONGPASS' in upper
            or 'AUTHENTICATION REQUIRED' in upper):
        if not password_given:
            return "%s requires a password: set %s" % (what, password_option), 'auth'
        return "%s refused the password: check %s" % (what, password_option), 'auth'
    if isinstance(exc, redis_exc.NoPermissionError) or upper.startswith('NOPERM'):
        return ("%s denied %s for this user (%s): grant the command to the user or use another one"
                % (what, command or 'the command', text), 'denied')
    if 'NO SUCH MASTER' in upper:
        return ("%s does not monitor a master named '%s': check master_name" % (what, master_name), 'no_such_master')
    if upper.startswith('INPROG'):
        return ("%s refused %s: a failover of '%s' is already in progress (-INPROG): wait for it with "
                "action=wait_for_failover, then run action=check" % (what, command, master_name), 'response')
    if upper.startswith('NOGOODSLAVE'):
        return ("%s found no replica of '%s' it can promote (-NOGOODSLAVE): every replica is down, has been "
                "disconnected from the master too long, or has replica-priority 0; run action=check"
                % (what, master_name), 'response')
    if isinstance(exc, redis_exc.BusyLoadingError):
        return "%s is still loading its dataset: retry when loading is done" % what, 'loading'
    if isinstance(exc, redis_exc.TimeoutError):
        return ("%s did not answer within socket_timeout: check that it runs and is reachable, or raise "
                "socket_timeout" % what, 'timeout')
    if isinstance(exc, redis_exc.ConnectionError):
        if 'CERTIFICATE' in upper or 'SSL' in upper or 'TLS' in upper or 'HOSTNAME' in upper:
            return ("TLS with %s failed (%s): check ca_cert (the CA that signed the %s's certificate), that the "
                    "address is one of the certificate's names, and that the %s serves TLS"
                    % (what, text or type(exc).__name__, kind, kind), 'tls')
        return ("cannot connect to %s (%s): check the address, that the %s is running, and tls (a %s that "
                "serves TLS only drops a plain connection)" % (what, text or type(exc).__name__, kind, kind), 'unreachable')
    if isinstance(exc, redis_exc.ResponseError):
        return "%s answered %s with an error: %s" % (what, command or 'a command', text), 'response'
    return "%s failed on %s: %s: %s" % (what, command or 'a command', type(exc).__name__, text), 'response'


# --------------------------------------------------------------- one node

class Node(object):
    """One Redis or Sentinel endpoint; every call maps errors to RedisOpError."""

    def __init__(self, host, port, password=None, socket_timeout=2.0, kind='Redis',
                 password_option='redis_password', master_name=None, username=None, tls=None):
        self.host = host
        # None: plain TCP; {'ca_cert': path or None}: TLS (tls_from_params).
        self.tls = tls
        # An ACL user (AUTH username password); None: the default user (requirepass).
        self.username = username or None
        self.port = int(port)
        self.address = _sentinel.format_address(host, port)
        self.password = password or None
        self.socket_timeout = socket_timeout
        self.kind = kind
        self.password_option = password_option
        self.master_name = master_name
        self._client = None

    @property
    def client(self):
        if self._client is None:
            # No retries: a health check must report a dead node after one
            # socket_timeout, not after redis-py's backoff schedule.
            self._client = redis.Redis(
                host=self.host, port=self.port, username=self.username, password=self.password,
                socket_timeout=self.socket_timeout, socket_connect_timeout=self.socket_timeout,
                decode_responses=True, retry=Retry(NoBackoff(), 0), health_check_interval=0,
                **client_tls_kwargs(self.tls))
        return self._client

    def call(self, method, *args, **kwargs):
        """``client.<method>(*args)`` with errors mapped to RedisOpError."""
        command = kwargs.pop('command', None) or method.upper().replace('_', ' ')
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except redis_exc.RedisError as exc:
            msg, reason = describe_error(exc, self.kind, self.address, self.password_option,
                                         self.password is not None, command, self.master_name)
            raise RedisOpError(msg, reason, str(exc))

    def command(self, *args):
        """A raw command (no redis-py reply parsing); args as sent."""
        return self.call('execute_command', *args, command=' '.join(str(arg) for arg in args[:2]))

    def close(self):
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # closing must never mask the real outcome
                pass
            self._client = None


def open_node(host, port, password=None, socket_timeout=2.0, username=None, tls=None):
    """A Node for one Redis data node (``login_*`` options)."""
    return Node(host, port, password, socket_timeout, kind='Redis', password_option='login_password',
                username=username, tls=tls)


def info(node, section):
    """Parsed ``INFO <section>`` as a dict."""
    return node.call('info', section, command='INFO %s' % section)


def ping(node):
    """``PONG`` when the node answers PING (redis-py turns the reply into True)."""
    reply = node.call('ping')
    return 'PONG' if reply is True else str(reply)


def keyspace(node):
    """{db number as text: key count} from ``INFO keyspace`` (databases with keys only).

    INFO answers while the dataset is still loading, with partial counts: refuse until it is loaded.
    """
    if int(info(node, 'persistence').get('loading', 0)):
        raise RedisOpError('%s %s is still loading its dataset: retry when loading is done' % (node.kind, node.address),
                           'loading')
    counts = {}
    for name, value in info(node, 'keyspace').items():
        if name.startswith('db') and name[2:].isdigit():
            counts[name[2:]] = int(value['keys'] if isinstance(value, dict) else dict(
                part.split('=', 1) for part in str(value).split(','))['keys'])
    return counts


def replication_role(node):
    """``role`` from ``INFO replication`` (``master`` / ``slave``)."""
    return info(node, 'replication').get('role')


def _pairs(reply):
    """[k1, v1, k2, v2, ...] (RESP2) or a dict (RESP3) -> dict."""
    if isinstance(reply, dict):
        return dict(reply)
    return dict(zip(reply[0::2], reply[1::2]))


def _pipeline(node, commands, label):
    """Send ``commands`` (argument tuples) in one round trip; the replies, an error instance in
    place of a command the server refused."""
    try:
        pipe = node.client.pipeline(transaction=False)
        for args in commands:
            pipe.execute_command(*args)
        return pipe.execute(raise_on_error=False)
    except redis_exc.RedisError as exc:
        msg, reason = describe_error(exc, node.kind, node.address, node.password_option,
                                     node.password is not None, label, node.master_name)
        raise RedisOpError(msg, reason, str(exc))


def make_replica(node, host, port):
    """``REPLICAOF host port``: the node replicates from ``host:port`` from now on (its config file
    still says otherwise until ``rewrite_config``)."""
    return node.command('REPLICAOF', host, int(port))


def rewrite_config(node):
    """``CONFIG REWRITE``, so that a restart keeps what was changed at run time; None, or why the
    file could not be written (Sentinel rewrites it at its next reconfiguration of the node)."""
    try:
        node.command('CONFIG', 'REWRITE')
    except RedisOpError as exc:
        return exc.detail or exc.msg
    return None


def disconnect_clients(node):
    """Disconnect every normal client of a node but our own connection and the Sentinels'
    (``CLIENT LIST TYPE normal``, then ``CLIENT KILL ID`` each); how many were disconnected."""
    own = node.call('client_id', command='CLIENT ID')
    clients = _sentinel.parse_client_list(node.call('client_list', _type='normal', command='CLIENT LIST TYPE normal'))
    ids = _sentinel.clients_to_disconnect(clients, own)
    if not ids:
        return 0
    replies = _pipeline(node, [('CLIENT', 'KILL', 'ID', client_id) for client_id in ids], 'CLIENT KILL')
    # A client that left meanwhile counts 0; an error (e.g. no permission) counts nothing.
    return sum(reply for reply in replies if isinstance(reply, int))


# ------------------------------------------------------------- a Sentinel

def sentinel_master(node, master_name):
    return _pairs(node.command('SENTINEL', 'MASTER', master_name))


def sentinel_master_address(node, master_name):
    """``host:port`` a Sentinel gives clients for the master (``SENTINEL GET-MASTER-ADDR-BY-NAME``),
    None when it knows none. During a failover it names the promoted replica as soon as the
    promotion is seen, while ``SENTINEL MASTER`` still names the old master until the end."""
    return _sentinel.normalize_address(node.command('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', master_name))


def sentinel_replicas(node, master_name):
    # SENTINEL REPLICAS exists since 5.0; SLAVES still works everywhere.
    return [_pairs(item) for item in node.command('SENTINEL', 'SLAVES', master_name)]


def sentinel_sentinels(node, master_name):
    return [_pairs(item) for item in node.command('SENTINEL', 'SENTINELS', master_name)]


def sentinel_ckquorum(node, master_name):
    """``(ok, message)``; a NOQUORUM answer is a result, not an error."""
    try:
        return True, str(node.command('SENTINEL', 'CKQUORUM', master_name))
    except RedisOpError as exc:
        if not (exc.detail or '').upper().startswith(('NOQUORUM', 'NOMAJORITY')):
            raise
        return False, exc.detail


def monitored_masters(node):
    """Names of the masters a Sentinel monitors ([] if it cannot tell)."""
    try:
        return sorted(_pairs(item).get('name') for item in node.command('SENTINEL', 'MASTERS'))
    except RedisOpError:
        return []


def query_sentinel(node, master_name, full=True):
    """One Sentinel's view of ``master_name`` (see ``_sentinel.build_view``).

    Never raises for the Sentinel's own failures: an unreachable Sentinel, a
    wrong password or an unknown master name give an unreachable view whose
    ``error`` says why. ``full=False`` asks only ``SENTINEL MASTER`` (polling).
    """
    try:
        master = sentinel_master(node, master_name)
        if not full:
            return _sentinel.build_view(node.address, master)
        replicas = sentinel_replicas(node, master_name)
        sentinels = sentinel_sentinels(node, master_name)
        ok, message = sentinel_ckquorum(node, master_name)
        info_sentinel = info(node, 'sentinel')
    except RedisOpError as exc:
        msg = exc.msg
        if exc.reason == 'no_such_master':
            msg = ("Sentinel %s does not monitor a master named '%s' (it monitors: %s): check master_name"
                   % (node.address, master_name, ', '.join(monitored_masters(node)) or 'no master at all'))
        view = _sentinel.unreachable_view(node.address, msg)
        view['reason'] = exc.reason
        return view
    return _sentinel.build_view(node.address, master, replicas, sentinels, ok, message, info_sentinel)


# ----------------------------------------------------------- a Sentinel set

class SentinelSet(object):
    """The Sentinels of one master plus the data nodes they name."""

    def __init__(self, sentinels, master_name='mymaster', sentinel_password=None, redis_password=None,
                 socket_timeout=2.0, redis_user=None, tls=None):
        if not sentinels:
            raise RedisOpError('sentinels is empty: list every Sentinel as host:port', 'address')
        self.master_name = master_name
        self.redis_password = redis_password
        self.redis_user = redis_user or None
        self.socket_timeout = socket_timeout
        # One setting for the Sentinels and the data nodes they name: Sentinel's tls-replication makes it
        # reach both over TLS, so a set serves TLS everywhere or nowhere.
        self.tls = tls
        self.sentinels = []
        seen = set()
        for text in sentinels:
            host, port = parse_address(text, 'sentinels entry')
            address = _sentinel.format_address(host, port)
            if address in seen:
                raise RedisOpError('sentinels lists %s twice: each Sentinel must be listed once, or it '
                                   'would vote twice' % address, 'address')
            seen.add(address)
            self.sentinels.append(Node(host, port, sentinel_password, socket_timeout, kind='Sentinel',
                                       password_option='sentinel_password', master_name=master_name, tls=tls))
        self._data_nodes = {}

    def views(self, full=True):
        return [query_sentinel(node, self.master_name, full) for node in self.sentinels]

    def sentinel(self, address):
        for node in self.sentinels:
            if node.address == address:
                return node
        raise RedisOpError('%s is not one of the listed sentinels' % address, 'address')

    def data_node(self, address):
        if address not in self._data_nodes:
            host, port = parse_address(address)
            self._data_nodes[address] = Node(host, port, self.redis_password, self.socket_timeout,
                                             kind='Redis', password_option='redis_password', username=self.redis_user,
                                             tls=self.tls)
        return self._data_nodes[address]

    def replication(self, address):
        """``(INFO replication dict, None)`` or ``(None, error message)``."""
        try:
            return info(self.data_node(address), 'replication'), None
        except RedisOpError as exc:
            return None, exc.msg

    def roles(self, addresses):
        """{address: role or None} for the given data nodes."""
        roles = {}
        for address in addresses:
            if address and address not in roles:
                replication, dummy = self.replication(address)
                roles[address] = replication.get('role') if replication else None
        return roles

    def pause_writes(self, address, milliseconds):
        return self.data_node(address).call('client_pause', int(milliseconds), all=False,
                                            command='CLIENT PAUSE %d WRITE' % int(milliseconds))

    def unpause(self, address):
        return self.data_node(address).call('client_unpause', command='CLIENT UNPAUSE')

    def failover(self, sentinel_address):
        return self.sentinel(sentinel_address).command('SENTINEL', 'FAILOVER', self.master_name)

    def named_master(self, sentinel_address):
        """``(address, None)`` the Sentinel gives clients for the master, or ``(None, why not)``."""
        try:
            return sentinel_master_address(self.sentinel(sentinel_address), self.master_name), None
        except (RedisOpError, _sentinel.AddressError) as exc:
            return None, getattr(exc, 'msg', str(exc))

    def make_replica(self, address, master_address):
        """Make ``address`` a replica of ``master_address`` (see ``make_replica``)."""
        host, port = parse_address(master_address)
        return make_replica(self.data_node(address), host, port)

    def rewrite_config(self, address):
        return rewrite_config(self.data_node(address))

    def disconnect_clients(self, address):
        """Disconnect the normal clients of ``address`` (see ``disconnect_clients``)."""
        return disconnect_clients(self.data_node(address))

    def close(self):
        for node in self.sentinels + list(self._data_nodes.values()):
            node.close()
