# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Pure logic on PgBouncer admin console output: typing, thresholds, Prometheus text, atomic files.

Nothing here talks to the network (that is _pg.py), so all of it is unit-tested against SHOW
output recorded from real PgBouncer versions.

PgBouncer changes its SHOW column sets between releases (SHOW STATS has 15 columns in 1.21, 17 in
1.23, 23 in 1.24; SHOW POOLS gained load_balance_hosts in 1.24; SHOW DATABASES renamed
reserve_pool to reserve_pool_size). Everything here therefore works by column name, keeps columns
it does not know, and tolerates missing ones. Times from PgBouncer are microseconds; each one is
also returned in seconds under ``<column>_seconds``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import decimal
import math
import os
import re

from ansible_collections.psscript.infra.plugins.module_utils._files import write_text_atomic

# Columns that hold text, whatever they look like (a host may be "10", a database "2024").
STRING_COLUMNS = frozenset((
    'addr', 'addrs', 'application_name', 'connect_time', 'database', 'default', 'force_user', 'host',
    'hostname', 'key', 'link', 'list', 'load_balance_hosts', 'local_addr', 'name', 'pool_mode', 'ptr',
    'replication', 'request_time', 'serial', 'state', 'tls', 'type', 'user', 'value', 'version',
    'zonename',
))

# Columns in microseconds: each gains a float twin "<column>_seconds".
MICROSECOND_COLUMNS = frozenset((
    'avg_query_time', 'avg_server_lifetime', 'avg_wait_time', 'avg_xact_time',
    'total_query_time', 'total_server_lifetime', 'total_wait_time', 'total_xact_time',
))

# Waits given as whole seconds plus a microsecond part: "<seconds column>_seconds" joins them.
SPLIT_WAIT_COLUMNS = (('maxwait', 'maxwait_us'), ('wait', 'wait_us'))

# The SHOW commands whose rows are returned as lists of dicts; lists/config/version are reshaped.
SHOW_CHOICES = ('pools', 'stats', 'databases', 'lists', 'config', 'clients', 'servers')
DEFAULT_SHOW = ['pools', 'stats', 'databases', 'lists']

_INT_RE = re.compile(r'^-?[0-9]+$')
_FLOAT_RE = re.compile(r'^-?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$')


def _coerce(column, value):
    """Type one value by its column name, falling back on the value's own type for unknown columns."""
    if value is None:
        return None
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if column in STRING_COLUMNS:
        return value if isinstance(value, str) else str(value)
    if column == 'changeable':
        return str(value).lower() in ('yes', 'true', '1', 't', 'on')
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float):
        return value
    text = str(value).strip()
    if _INT_RE.match(text):
        return int(text)
    if _FLOAT_RE.match(text):
        return float(text)
    return value if isinstance(value, str) else text


def type_row(row):
    """Return a typed copy of one SHOW row (a dict keyed by column name), with the seconds twins added."""
    typed = dict((column, _coerce(column, value)) for column, value in row.items())
    for column in MICROSECOND_COLUMNS:
        if isinstance(typed.get(column), (int, float)) and not isinstance(typed[column], bool):
            typed[column + '_seconds'] = typed[column] / 1000000.0
    for seconds_column, micro_column in SPLIT_WAIT_COLUMNS:
        seconds = typed.get(seconds_column)
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
            micro = typed.get(micro_column)
            micro = micro if isinstance(micro, (int, float)) and not isinstance(micro, bool) else 0
            typed[seconds_column + '_seconds'] = seconds + micro / 1000000.0
    return typed


def type_rows(rows):
    """Type every row of one SHOW command."""
    return [type_row(row) for row in rows or []]


def lists_as_dict(rows):
    """SHOW LISTS is one (list, items) row per counter: return {list: items}."""
    result = {}
    for row in type_rows(rows):
        if row.get('list') is not None:
            result[row['list']] = row.get('items')
    return result


def config_as_dict(rows):
    """SHOW CONFIG is one (key, value, default, changeable) row per setting: return {key: typed value}."""
    result = {}
    for row in rows or []:
        key = row.get('key')
        if key is not None:
            # Values are text in every version (unix_socket_mode too: 511, not 0777); numbers become ints.
            result[key] = _coerce('config_value', row.get('value'))
    return result


def version_from_rows(rows):
    """SHOW VERSION returns one row; give its text ('PgBouncer 1.24.1'), or None."""
    for row in rows or []:
        for value in row.values():
            if value is not None:
                return str(value)
    return None


def type_results(raw):
    """Type the raw {command: rows} of several SHOW commands; lists/config become dicts, version a string."""
    result = {}
    for command, rows in raw.items():
        if command == 'lists':
            result[command] = lists_as_dict(rows)
        elif command == 'config':
            result[command] = config_as_dict(rows)
        elif command == 'version':
            result[command] = version_from_rows(rows)
        else:
            result[command] = type_rows(rows)
    return result


# ---------------------------------------------------------------------------------------------
# Thresholds

def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _fmt(value):
    if isinstance(value, float):
        text = ('%.3f' % value).rstrip('0').rstrip('.')
        return text if text not in ('', '-0') else '0'
    return str(value)


def check_thresholds(max_cl_waiting=None, max_wait_seconds=None, max_server_utilisation=None):
    """Return an error message for thresholds that make no sense, or None."""
    if max_cl_waiting is not None and max_cl_waiting < 0:
        return 'max_cl_waiting must be 0 or more, got %s' % max_cl_waiting
    if max_wait_seconds is not None and max_wait_seconds < 0:
        return 'max_wait_seconds must be 0 or more, got %s' % max_wait_seconds
    if max_server_utilisation is not None and not 0 <= max_server_utilisation <= 1:
        return ('max_server_utilisation is a fraction of pool_size between 0 and 1 (0.9 = 90%%), got %s'
                % max_server_utilisation)
    return None


def pool_size_for(database, databases, config):
    """The pool_size that bounds a pool: SHOW DATABASES pool_size, else SHOW CONFIG default_pool_size."""
    for row in databases or []:
        if row.get('name') == database:
            size = _number(row.get('pool_size'))
            if size is not None and size > 0:
                return size
            break
    size = _number((config or {}).get('default_pool_size'))
    return size if size is not None and size > 0 else None


def evaluate_thresholds(pools, databases=None, config=None, max_cl_waiting=None, max_wait_seconds=None,
                        max_server_utilisation=None):
    """Compare typed SHOW POOLS rows with the limits; return one breach dict per pool and metric.

    A breach is {pool, database, user, metric, value, limit, message}; a limit left at None is not
    checked, and a metric that the PgBouncer version does not report is skipped.
    """
    breaches = []

    def breach(row, metric, value, limit, limit_name, extra=''):
        pool = '%s/%s' % (row.get('database'), row.get('user'))
        breaches.append(dict(
            pool=pool, database=row.get('database'), user=row.get('user'), metric=metric, value=value,
            limit=limit,
            message='pool %s: %s %s%s > %s %s' % (pool, metric, _fmt(value), extra, limit_name, _fmt(limit)),
        ))

    for row in pools or []:
        cl_waiting = _number(row.get('cl_waiting'))
        if max_cl_waiting is not None and cl_waiting is not None and cl_waiting > max_cl_waiting:
            breach(row, 'cl_waiting', cl_waiting, max_cl_waiting, 'max_cl_waiting')

        waited = _number(row.get('maxwait_seconds'))
        if waited is None:
            waited = _number(row.get('maxwait'))
        if max_wait_seconds is not None and waited is not None and waited > max_wait_seconds:
            breach(row, 'maxwait_seconds', waited, max_wait_seconds, 'max_wait_seconds')

        if max_server_utilisation is not None:
            busy = [_number(row.get(col)) for col in ('sv_active', 'sv_used')]
            size = pool_size_for(row.get('database'), databases, config)
            if size and all(b is not None for b in busy):
                used = sum(busy)
                ratio = used / float(size)
                if ratio > max_server_utilisation:
                    breach(row, 'server_utilisation', round(ratio, 4), max_server_utilisation,
                           'max_server_utilisation', ' (sv_active+sv_used %s of pool_size %s)' % (used, size))
    return breaches


def commands_needed(show, max_cl_waiting=None, max_wait_seconds=None, max_server_utilisation=None,
                    prometheus=False):
    """The SHOW commands to run: those asked for, plus what the thresholds and the textfile need."""
    needed = set(show or []) | set(['version'])
    if max_cl_waiting is not None or max_wait_seconds is not None or max_server_utilisation is not None:
        needed.add('pools')
    if max_server_utilisation is not None:
        needed.update(('databases', 'config'))
    if prometheus:
        needed.update(('pools', 'stats', 'databases', 'lists', 'config'))
    order = ('version',) + SHOW_CHOICES
    return [name for name in order if name in needed] + sorted(needed - set(order))


# ---------------------------------------------------------------------------------------------
# Prometheus text exposition, with the metric names of prometheus-community/pgbouncer_exporter

# (column, metric suffix, help)
_POOL_GAUGES = (
    ('cl_active', 'client_active_connections',
     'Client connections linked to server connection and able to process queries, shown as connection'),
    ('cl_active_cancel_req', 'client_active_cancel_connections',
     'Client connections that have forwarded query cancellations to the server and are waiting for the server response'),
    ('cl_waiting', 'client_waiting_connections', 'Client connections waiting on a server connection, shown as connection'),
    ('cl_waiting_cancel_req', 'client_waiting_cancel_connections',
     'Client connections that have not forwarded query cancellations to the server yet'),
    ('sv_active', 'server_active_connections', 'Server connections linked to a client connection, shown as connection'),
    ('sv_active_cancel', 'server_active_cancel_connections', 'Server connections that are currently forwarding a cancel request'),
    ('sv_being_canceled', 'server_being_canceled_connections',
     'Servers that could become idle but wait until all in-flight cancel requests sent to cancel a query on them have completed'),
    ('sv_idle', 'server_idle_connections', 'Server connections idle and ready for a client query, shown as connection'),
    ('sv_used', 'server_used_connections',
     'Server connections idle more than server_check_delay, needing server_check_query, shown as connection'),
    ('sv_tested', 'server_testing_connections',
     'Server connections currently running either server_reset_query or server_check_query, shown as connection'),
    ('sv_login', 'server_login_connections', 'Server connections currently in the process of logging in, shown as connection'),
    ('maxwait_seconds', 'client_maxwait_seconds', 'Age of oldest unserved client connection, shown as second'),
)

_STATS_COUNTERS = (
    ('total_query_count', 'queries_pooled_total', 'Total number of SQL queries pooled'),
    ('total_query_time_seconds', 'queries_duration_seconds_total',
     'Total number of seconds spent by pgbouncer when actively connected to PostgreSQL, executing queries'),
    ('total_received', 'received_bytes_total',
     'Total volume in bytes of network traffic received by pgbouncer, shown as bytes'),
    ('total_sent', 'sent_bytes_total', 'Total volume in bytes of network traffic sent by pgbouncer, shown as bytes'),
    ('total_wait_time_seconds', 'client_wait_seconds_total', 'Time spent by clients waiting for a server in seconds'),
    ('total_xact_count', 'sql_transactions_pooled_total', 'Total number of SQL transactions pooled'),
    ('total_xact_time_seconds', 'server_in_transaction_seconds_total',
     'Total number of seconds spent by pgbouncer when connected to PostgreSQL in a transaction, '
     'either idle in transaction or executing queries'),
    ('total_client_parse_count', 'client_parses_total',
     'Total number of prepared statement Parse messages received from clients'),
    ('total_server_parse_count', 'server_parses_total',
     'Total number of prepared statement Parse messages sent by pgbouncer to PostgreSQL'),
    ('total_bind_count', 'binds_total', 'Total number of prepared statements readied for execution with a Bind message'),
)

# (columns tried in order, metric suffix, help); reserve_pool was renamed reserve_pool_size in 1.24.
_DATABASE_GAUGES = (
    (('pool_size',), 'pool_size', 'Maximum number of server connections'),
    (('reserve_pool', 'reserve_pool_size'), 'reserve_pool', 'Maximum number of additional connections for this database'),
    (('max_connections',), 'max_connections', 'Maximum number of allowed connections for this database'),
    (('current_connections',), 'current_connections', 'Current number of connections for this database'),
    (('paused',), 'paused', '1 if this database is currently paused, else 0'),
    (('disabled',), 'disabled', '1 if this database is currently disabled, else 0'),
)
_DATABASE_LABELS = ('name', 'host', 'port', 'database', 'force_user', 'pool_mode')

_LIST_GAUGES = (
    ('databases', 'databases', 'Count of databases'),
    ('users', 'users', 'Count of users'),
    ('pools', 'pools', 'Count of pools'),
    ('free_clients', 'free_clients', 'Count of free clients'),
    ('used_clients', 'used_clients', 'Count of used clients'),
    ('login_clients', 'login_clients', 'Count of clients in login state'),
    ('free_servers', 'free_servers', 'Count of free servers'),
    ('used_servers', 'used_servers', 'Count of used servers'),
    ('dns_names', 'cached_dns_names', 'Count of DNS names in the cache'),
    ('dns_zones', 'cached_dns_zones', 'Count of DNS zones in the cache'),
    ('dns_queries', 'in_flight_dns_queries', 'Count of in-flight DNS queries'),
)

_CONFIG_GAUGES = (
    ('max_client_conn', 'config_max_client_connections', 'Config maximum number of client connections'),
    ('max_user_connections', 'config_max_user_connections', 'Config maximum number of server connections per user'),
)

NAMESPACE = 'pgbouncer'

# The console's own pseudo-database. Its counters count only the SHOW commands that collect the
# metrics, so they would change the textfile on every run (changed=true forever): left out.
ADMIN_DB = 'pgbouncer'


def _escape_label(value):
    return str(value).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def _escape_help(text):
    return text.replace('\\', '\\\\').replace('\n', '\\n')


def _format_value(value):
    if isinstance(value, bool):
        return '1' if value else '0'
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return 'NaN'
    if math.isinf(value):
        return '+Inf' if value > 0 else '-Inf'
    return repr(value)


class _Exposition:
    """Collects metric families in insertion order and renders them with HELP and TYPE lines."""

    def __init__(self):
        self._families = []
        self._index = {}

    def add(self, name, kind, help_text, labels, value):
        value = _number(value)
        if value is None:
            return
        if name not in self._index:
            self._index[name] = (kind, help_text, [])
            self._families.append(name)
        label_text = ','.join('%s="%s"' % (key, _escape_label('' if val is None else val)) for key, val in labels)
        self._index[name][2].append((label_text, value))

    def render(self):
        lines = []
        for name in self._families:
            kind, help_text, samples = self._index[name]
            lines.append('# HELP %s %s' % (name, _escape_help(help_text)))
            lines.append('# TYPE %s %s' % (name, kind))
            for label_text, value in sorted(samples, key=lambda sample: sample[0]):
                sample = '%s{%s}' % (name, label_text) if label_text else name
                lines.append('%s %s' % (sample, _format_value(value)))
        return '\n'.join(lines) + '\n' if lines else ''


def render_prometheus(results, up=True, include_admin_db=False):
    """Render typed results (as from type_results) in the Prometheus text exposition format.

    Metric names and labels follow prometheus-community/pgbouncer_exporter, so its dashboards and
    alerts work on a node_exporter textfile. Rows of the admin pseudo-database are left out unless
    include_admin_db. With up=False only ``pgbouncer_up 0`` is written.
    """
    out = _Exposition()
    results = results or {}

    def rows(command, key='database'):
        return [row for row in results.get(command) or [] if include_admin_db or row.get(key) != ADMIN_DB]

    if up:
        for row in rows('pools'):
            labels = (('database', row.get('database')), ('user', row.get('user')))
            for column, suffix, help_text in _POOL_GAUGES:
                out.add('%s_pools_%s' % (NAMESPACE, suffix), 'gauge', help_text, labels, row.get(column))
        for row in rows('stats'):
            labels = (('database', row.get('database')),)
            for column, suffix, help_text in _STATS_COUNTERS:
                out.add('%s_stats_%s' % (NAMESPACE, suffix), 'counter', help_text, labels, row.get(column))
        for row in rows('databases', key='name'):
            labels = tuple((label, row.get(label)) for label in _DATABASE_LABELS)
            for columns, suffix, help_text in _DATABASE_GAUGES:
                value = next((row[c] for c in columns if row.get(c) is not None), None)
                out.add('%s_databases_%s' % (NAMESPACE, suffix), 'gauge', help_text, labels, value)
        lists = results.get('lists') or {}
        for key, suffix, help_text in _LIST_GAUGES:
            out.add('%s_%s' % (NAMESPACE, suffix), 'gauge', help_text, (), lists.get(key))
        config = results.get('config') or {}
        for key, suffix, help_text in _CONFIG_GAUGES:
            out.add('%s_%s' % (NAMESPACE, suffix), 'gauge', help_text, (), config.get(key))
        if results.get('version'):
            out.add('%s_version_info' % NAMESPACE, 'gauge', 'The pgbouncer version info',
                    (('version', results['version']),), 1)
    out.add('%s_up' % NAMESPACE, 'gauge', 'The pgbouncer scrape succeeded', (), 1 if up else 0)
    return out.render()


# ---------------------------------------------------------------------------------------------
# Files

def read_text(path):
    """Return the file's text, or None when it does not exist."""
    try:
        with open(path, 'r') as handle:
            return handle.read()
    except (IOError, OSError) as err:
        if getattr(err, 'errno', None) == 2:
            return None
        raise


def write_file_atomic(path, content, mode=0o644):
    """Write content to path atomically; return True when the file changed.

    The text goes to a temporary file in the same directory (so a reader such as node_exporter
    never sees a half-written file, and the temporary name does not end in .prom), is fsynced,
    renamed over the target with os.replace, and the directory is fsynced so the rename survives
    a crash. An existing file keeps its permissions.
    """
    if read_text(path) == content:
        return False
    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    write_text_atomic(path, content, mode)
    return True
