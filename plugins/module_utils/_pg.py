# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one place that connects to PostgreSQL and to the PgBouncer admin console.

Modules extend the shared argument specs::

    argument_spec = pgbouncer_console_spec()
    argument_spec.update(...)

and document them with the ``psscript.infra.pgbouncer`` (or ``psscript.infra.postgres``)
doc fragment. Every psycopg2 error is turned into ``PgConnectionError`` whose message names
the cause and the fix, so modules only call ``module.fail_json(msg=str(err))``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

from ansible.module_utils.basic import env_fallback

try:
    import psycopg2
    import psycopg2.extensions
except ImportError:
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None

# What the module tells the operator to install when psycopg2 is missing.
PSYCOPG2_REQUIREMENT = 'psycopg2 (pip install psycopg2-binary)'

# The admin console database of PgBouncer; it is not configurable in PgBouncer.
CONSOLE_DB = 'pgbouncer'

# SHOW commands this collection may send to the console. Anything else is refused before it is
# sent, so no user input ever reaches the console unchecked.
SHOW_COMMANDS = frozenset((
    'clients', 'config', 'databases', 'dns_hosts', 'dns_zones', 'lists', 'mem', 'peer_pools',
    'peers', 'pools', 'servers', 'sockets', 'state', 'stats', 'stats_averages', 'stats_totals',
    'totals', 'users', 'version',
))


class PgConnectionError(Exception):
    """A connection or console error, with an operator-readable message (cause and fix)."""

    def __init__(self, msg):
        super(PgConnectionError, self).__init__(msg)
        self.msg = msg


# libpq's sslmode values. Unset (None), libpq decides: PGSSLMODE, else prefer.
SSL_MODES = ('disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full')


def _connection_spec(port, password_env, db):
    """The connection options both specs share; only the port, password variable and db differ."""
    return dict(
        login_host=dict(type='str'),
        login_port=dict(type='int', default=port),
        login_user=dict(type='str'),
        login_password=dict(type='str', no_log=True, fallback=(env_fallback, [password_env])),
        connect_timeout=dict(type='int', default=5),
        ssl_mode=dict(type='str', choices=list(SSL_MODES)),
        ca_cert=dict(type='path', aliases=['ssl_rootcert']),
        db=db,
    )


def tls_options(params):
    """libpq's TLS connection options from the params (``sslmode``, ``sslrootcert``); only those that are set."""
    options = {}
    if params.get('ssl_mode'):
        options['sslmode'] = params['ssl_mode']
    if params.get('ca_cert'):
        options['sslrootcert'] = params['ca_cert']
    return options


def pg_connection_spec():
    """Return a fresh argument spec for a PostgreSQL connection (document with psscript.infra.postgres)."""
    return _connection_spec(5432, 'PGPASSWORD', dict(type='str'))


def pgbouncer_console_spec():
    """Return a fresh argument spec for the PgBouncer admin console (document with psscript.infra.pgbouncer)."""
    return _connection_spec(6432, 'PGBOUNCER_PASSWORD', dict(type='str', default=CONSOLE_DB, choices=[CONSOLE_DB]))


def _require(params, what):
    """Fail with a readable message when a connection option that has no safe default is missing."""
    if not params.get('login_host'):
        raise PgConnectionError(
            "login_host is not set: give the address of the %s to connect to "
            "(for example 127.0.0.1, or a Unix socket directory)" % what)
    if not params.get('login_user'):
        raise PgConnectionError("login_user is not set: give the role to log in to the %s as" % what)
    if params.get('connect_timeout') is not None and params['connect_timeout'] < 1:
        raise PgConnectionError("connect_timeout must be at least 1 second, got %s" % params['connect_timeout'])


def _explain(err, params, console):
    """Turn a psycopg2 connection error into a sentence naming the cause and the fix."""
    text = str(err).strip()
    detail = text.splitlines()[-1].strip() if text else type(err).__name__
    host, port, user = params.get('login_host'), params.get('login_port'), params.get('login_user')
    service = 'PgBouncer console' if console else 'PostgreSQL'
    where = '%s at %s:%s' % (service, host, port)
    lowered = text.lower()
    if 'could not translate host name' in lowered:
        return "Cannot resolve login_host '%s' (%s): check the host name or use an IP address" % (host, detail)
    if 'connection refused' in lowered or 'no such file or directory' in lowered:
        fix = 'check that PgBouncer runs and listens there (listen_addr/listen_port)' if console else \
            'check that PostgreSQL runs and listens there (listen_addresses/port)'
        return 'Cannot connect to %s: connection refused; %s' % (where, fix)
    if 'timeout expired' in lowered:
        return ('%s did not answer within connect_timeout=%ss: check the address, firewalls, and that the '
                'process is not overloaded' % (where, params.get('connect_timeout')))
    if 'no password supplied' in lowered:
        env = 'PGBOUNCER_PASSWORD' if console else 'PGPASSWORD'
        return "%s asked for a password for user '%s' and none was given: set login_password or %s" % (where, user, env)
    if console and 'not allowed' in lowered:
        return ("PgBouncer console refused user '%s' (not allowed): add it to stats_users or admin_users "
                "(pgbouncer_stats_users / pgbouncer_admin_users) and reload PgBouncer" % user)
    if any(s in lowered for s in ('authentication failed', 'no such user', 'password authentication')):
        if console:
            return ("PgBouncer console refused login for user '%s': check pgbouncer_stats_users and userlist.txt "
                    "(the password or SCRAM secret there must match login_password) [%s]" % (user, detail))
        return ("PostgreSQL refused login for user '%s' at %s:%s: check the password and pg_hba.conf [%s]"
                % (user, host, port, detail))
    if 'certificate verify failed' in lowered:
        return ("%s presented a certificate that ca_cert (%s) does not verify: give the stack CA's certificate "
                "(the stack role's stack_tls_dir/ca.crt; in the containers tls/ca.crt) [%s]"
                % (where, params.get('ca_cert') or 'the default root certificate', detail))
    if 'does not match host name' in lowered:
        return ("%s presented a certificate that does not name '%s': connect with a name or address in its subject "
                "alternative names (container, instance name, stack or endpoint address, localhost, 127.0.0.1) [%s]"
                % (where, host, detail))
    if 'ssl required' in lowered or 'no encryption' in lowered:
        return ("%s accepts TLS connections only: set ssl_mode (verify-full, with ca_cert the stack CA) instead of "
                "disable [%s]" % (where, detail))
    if 'pg_hba.conf' in lowered:
        return "PostgreSQL at %s:%s has no pg_hba.conf entry for user '%s': add one and reload [%s]" % (host, port, user, detail)
    if 'no such database' in lowered or 'does not exist' in lowered:
        return 'Connected to %s but: %s; check the db option' % (where, detail)
    return 'Cannot connect to %s as user %s: %s' % (where, user, detail)


def _connect(params, dbname, console):
    kwargs = dict(
        host=params['login_host'],
        port=params['login_port'],
        user=params['login_user'],
        connect_timeout=params['connect_timeout'],
    )
    if dbname:
        kwargs['dbname'] = dbname
    if params.get('login_password') is not None:
        kwargs['password'] = params['login_password']
    kwargs.update(tls_options(params))
    try:
        conn = psycopg2.connect(**kwargs)
        # autocommit: psycopg2 must never send BEGIN (the console answers "invalid command 'BEGIN'").
        conn.autocommit = True
    except psycopg2.Error as err:
        raise PgConnectionError(_explain(err, params, console))
    return conn


def connect_postgres(params):
    """Open an autocommit psycopg2 connection to PostgreSQL from pg_connection_spec() params."""
    _require(params, 'PostgreSQL server')
    return _connect(params, params.get('db'), console=False)


def connect_console(params):
    """Open an autocommit psycopg2 connection to the PgBouncer admin console (database pgbouncer).

    The console speaks only the simple query protocol: use show() (plain cursor.execute, no bind
    parameters), never a transaction.
    """
    _require(params, 'PgBouncer console')
    return _connect(params, CONSOLE_DB, console=True)


def show(conn, what):
    """Run ``SHOW <WHAT>`` on the console and return its rows as dicts keyed by column name.

    ``what`` must be one of SHOW_COMMANDS; values are returned as psycopg2 decoded them
    (statistics columns arrive as Decimal: PgBouncer sends them as numeric).
    """
    name = str(what).strip().lower()
    if name not in SHOW_COMMANDS:
        raise PgConnectionError('SHOW %s is not an allowed console command (allowed: %s)'
                                % (what, ', '.join(sorted(SHOW_COMMANDS))))
    query = 'SHOW ' + name.upper()
    try:
        cur = conn.cursor()
        try:
            cur.execute(query)
            columns = [col[0] for col in cur.description or ()]
            rows = cur.fetchall() if columns else []
        finally:
            cur.close()
    except psycopg2.Error as err:
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0]
        if 'admin access needed' in detail:
            detail += ' (this SHOW needs a user listed in admin_users)'
        raise PgConnectionError('%s failed on the PgBouncer console: %s' % (query, detail))
    return [dict(zip(columns, row)) for row in rows]


def console_show_all(params, commands):
    """Connect to the console, run SHOW for each command, close; return {command: rows}."""
    conn = connect_console(params)
    try:
        return dict((name, show(conn, name)) for name in commands)
    finally:
        conn.close()


# ------------------------------------------------------------------ probes (pg_probe)
# What operators' playbooks ask a server (health, drill), through psycopg2 with the password as a
# module argument: no psql or pg_isready on the host, no password in any process's argv or env.

# Per table of the database, in one REPEATABLE READ snapshot: rows and md5 of the rows in order.
# The snapshot's time comes first; it is the time a point-in-time restore must reach.
FINGERPRINT_TIME_SQL = ("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                        "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
FINGERPRINT_TABLES_SQL = (
    "SELECT format('SELECT %L, count(*), md5(coalesce(string_agg(t::text, E''\\n'' ORDER BY t::text), '''')) "
    "FROM %I.%I AS t', n.nspname || '.' || c.relname, n.nspname, c.relname) "
    "FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
    "WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' "
    "ORDER BY n.nspname, c.relname")


def _text(value):
    """A result cell as text, the way psql prints it (NULL as '', booleans as t/f)."""
    if value is None:
        return ''
    if isinstance(value, bool):
        return 't' if value else 'f'
    return str(value)


def _failed(what, err):
    """A psycopg2 error of a statement as a PgConnectionError naming what failed."""
    detail = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return PgConnectionError('%s failed: %s' % (what, detail))


def _transaction(conn, what, work, isolation=None, readonly=False):
    """``work(cursor)`` in one transaction; its result. psycopg2 errors -> PgConnectionError naming ``what``."""
    try:
        conn.autocommit = False
        conn.set_session(isolation_level=isolation, readonly=readonly)
        with conn.cursor() as cur:
            result = work(cur)
        conn.commit()
        return result
    except psycopg2.Error as err:
        raise _failed(what, err)


def _run(conn, what, statements, isolation=None, readonly=False):
    """Run statements in one transaction; return the rows of the last one."""
    def work(cur):
        rows = []
        for statement in statements:
            cur.execute(statement)
            rows = cur.fetchall() if cur.description else []
        return rows
    return _transaction(conn, what, work, isolation, readonly)


def ping(conn):
    """{'in_recovery', 'server_version'}: the server accepts connections and answers a query."""
    row = _run(conn, 'SELECT pg_is_in_recovery()', ['SELECT pg_is_in_recovery(), current_setting(\'server_version\')'])[0]
    return dict(in_recovery=bool(row[0]), server_version=row[1])


def query(conn, sql):
    """The rows of one read-only statement, each a list of text cells."""
    return [[_text(v) for v in row] for row in _run(conn, 'The query', [sql], readonly=True)]


def fingerprint(conn):
    """{'snapshot_time', 'tables': [{'table', 'rows', 'md5'}]} of the connected database, one snapshot."""
    def work(cur):
        cur.execute(FINGERPRINT_TIME_SQL)
        snapshot_time = cur.fetchone()[0]
        cur.execute(FINGERPRINT_TABLES_SQL)
        tables = []
        for (sql,) in cur.fetchall():
            cur.execute(sql)
            name, rows, digest = cur.fetchone()
            tables.append(dict(table=name, rows=int(rows), md5=digest))
        return dict(snapshot_time=snapshot_time, tables=tables)
    return _transaction(conn, 'Fingerprinting the tables', work, 'REPEATABLE READ', readonly=True)


def switch_wal(conn):
    """Write a commit record, close the current WAL segment; return the closed segment's file name.

    An idle server's pg_switch_wal() closes nothing, and recovery to a time can only confirm it got
    there when a commit follows the target in the archive: the empty transaction gives both.
    """
    _run(conn, 'SELECT pg_current_xact_id()', ['SELECT pg_current_xact_id()'])
    return _run(conn, 'SELECT pg_switch_wal()', ['SELECT pg_walfile_name(pg_switch_wal())'])[0][0]
