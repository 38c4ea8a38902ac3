#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pgbouncer_stats
short_description: Read PgBouncer pool statistics, check thresholds, and export them to Prometheus
version_added: 0.1.0
description:
  - Connects to the PgBouncer admin console, runs the requested C(SHOW) commands and returns their
    rows typed by column name (integers, floats, text), so the same tasks work across PgBouncer
    versions whose column sets differ (1.18 to 1.26 and later).
  - Every time column given by PgBouncer in microseconds is also returned in seconds, as
    C(<column>_seconds) (for example C(total_wait_time_seconds) in RV(stats)); C(maxwait) and C(maxwait_us)
    of C(SHOW POOLS) are joined into C(maxwait_seconds) in RV(pools).
  - Optionally compares every pool with limits on waiting clients, the oldest wait, and server
    connection use, and fails (or only reports) when one is exceeded.
  - Optionally writes the metrics, under the names used by C(prometheus-community/pgbouncer_exporter),
    to a file for the node_exporter textfile collector. The file is replaced atomically.
author:
  - psscript.infra developers (!UNKNOWN)
extends_documentation_fragment:
  - psscript.infra.pgbouncer
  - psscript.infra.attributes
attributes:
  check_mode:
    support: full
    details:
      - The console is only read. In check mode the textfile is not written; the task reports C(changed) when it would change.
  diff_mode:
    support: full
    details:
      - Shows the textfile before and after.
options:
  show:
    description:
      - The C(SHOW) commands to run and return, each under its own key.
      - V(clients) and V(servers) list one row per connection and can be large on busy instances.
    type: list
    elements: str
    choices: [pools, stats, databases, lists, config, clients, servers]
    default: [pools, stats, databases, lists]
  max_cl_waiting:
    description:
      - Largest acceptable number of clients waiting for a server connection in one pool (C(cl_waiting)).
    type: int
  max_wait_seconds:
    description:
      - Largest acceptable age, in seconds, of the oldest client waiting in one pool
        (C(maxwait) plus C(maxwait_us) of C(SHOW POOLS)).
    type: float
  max_server_utilisation:
    description:
      - Largest acceptable share of a pool's server connections in use, between V(0) and V(1).
      - Use is (C(sv_active) + C(sv_used)) / C(pool_size), where C(pool_size) comes from C(SHOW DATABASES)
        for the pool's database, or from C(default_pool_size) in C(SHOW CONFIG).
      - Per-user C(pool_size) overrides (C([users]) section) are not taken into account.
    type: float
  fail_on_threshold:
    description:
      - Fail the task when a threshold is exceeded. The message lists every breach.
      - When V(false), breaches are only returned in RV(breaches).
    type: bool
    default: true
  prometheus_textfile:
    description:
      - File to write the metrics to, in the Prometheus text exposition format, for example
        C(/var/lib/node_exporter/textfile/pgbouncer.prom). Its directory must exist.
      - The file is written before thresholds are evaluated, so it is current even when the task fails.
      - When the console cannot be reached, the file is replaced by one holding C(pgbouncer_up 0).
      - The console's own pseudo-database V(pgbouncer) is left out of the file. Its counters count only the C(SHOW)
        commands of this module, so they would rewrite the file, and report C(changed), on every run.
      - The task reports C(changed) when the file content changed. Counters of real databases move with traffic,
        so on a busy instance that is almost every run; on an idle one a rerun reports no change.
    type: path
seealso:
  - name: PgBouncer admin console
    description: Meaning of every SHOW column.
    link: https://www.pgbouncer.org/usage.html#admin-console
  - name: pgbouncer_exporter
    description: The exporter whose metric names the textfile uses.
    link: https://github.com/prometheus-community/pgbouncer_exporter
'''

EXAMPLES = r'''
- name: Read pools and stats through the stats user
  psscript.infra.pgbouncer_stats:
    login_host: 127.0.0.1
    login_port: 6432
    login_user: stats
    login_password: "{{ pgbouncer_stats_password }}"
  register: pgbouncer

- name: Show how long clients of psscript waited in total
  ansible.builtin.debug:
    msg: "{{ pgbouncer.stats | selectattr('database', 'equalto', 'psscript') | map(attribute='total_wait_time_seconds') | first }}"

- name: Fail when clients queue up or servers run out
  psscript.infra.pgbouncer_stats:
    login_host: 127.0.0.1
    login_user: stats
    show: [pools]
    max_cl_waiting: 10
    max_wait_seconds: 2.5
    max_server_utilisation: 0.9
  environment:
    PGBOUNCER_PASSWORD: "{{ pgbouncer_stats_password }}"

- name: Export metrics for node_exporter every run, and only report breaches
  psscript.infra.pgbouncer_stats:
    login_host: 127.0.0.1
    login_user: stats
    login_password: "{{ pgbouncer_stats_password }}"
    max_cl_waiting: 10
    fail_on_threshold: false
    prometheus_textfile: /var/lib/node_exporter/textfile/pgbouncer.prom
  register: pgbouncer_health
'''

RETURN = r'''
version:
  description: Version reported by C(SHOW VERSION).
  returned: success
  type: str
  sample: PgBouncer 1.24.1
pools:
  description:
    - Rows of C(SHOW POOLS), one per (database, user) pool, with every column PgBouncer sent, typed by column name.
    - C(maxwait_seconds) joins C(maxwait) and C(maxwait_us).
    - The sub-keys listed are those of PgBouncer 1.24; a column another version adds is returned too, typed the same way.
  returned: when V(pools) is in O(show)
  type: list
  elements: dict
  contains:
    database:
      description: Database of the pool.
      type: str
    user:
      description: User of the pool.
      type: str
    cl_active:
      description: Client connections linked to a server connection and able to process queries.
      type: int
    cl_waiting:
      description: Client connections that have sent queries but have no server connection yet.
      type: int
    cl_active_cancel_req:
      description: Client connections that have forwarded a query cancellation to the server and wait for its answer.
      type: int
    cl_waiting_cancel_req:
      description: Client connections that have not forwarded their query cancellation to the server yet.
      type: int
    sv_active:
      description: Server connections linked to a client connection.
      type: int
    sv_active_cancel:
      description: Server connections currently forwarding a cancel request.
      type: int
    sv_being_canceled:
      description: Server connections that could become idle but wait until the cancel requests sent for them complete.
      type: int
    sv_idle:
      description: Server connections unused and ready for a client query.
      type: int
    sv_used:
      description: Server connections idle for more than C(server_check_delay), which need C(server_check_query) before use.
      type: int
    sv_tested:
      description: Server connections running C(server_reset_query) or C(server_check_query).
      type: int
    sv_login:
      description: Server connections currently logging in.
      type: int
    maxwait:
      description: Whole seconds the oldest waiting client of the pool has waited.
      type: int
    maxwait_us:
      description: Microsecond part of that wait.
      type: int
    maxwait_seconds:
      description: The whole wait of the oldest waiting client in seconds, C(maxwait) + C(maxwait_us) / 1000000 (added by this module).
      type: float
    pool_mode:
      description: Pooling mode of the pool (V(session), V(transaction) or V(statement)).
      type: str
    load_balance_hosts:
      description: The C(load_balance_hosts) setting of the pool's database; V(null) when not set.
      returned: with PgBouncer 1.24 and later
      type: str
  sample:
    - database: psscript
      user: app
      cl_active: 3
      cl_waiting: 2
      cl_active_cancel_req: 0
      cl_waiting_cancel_req: 0
      sv_active: 3
      sv_active_cancel: 0
      sv_being_canceled: 0
      sv_idle: 0
      sv_used: 0
      sv_tested: 0
      sv_login: 0
      maxwait: 1
      maxwait_us: 407365
      maxwait_seconds: 1.407365
      pool_mode: transaction
      load_balance_hosts: null
stats:
  description:
    - Rows of C(SHOW STATS), one per database, with every column PgBouncer sent, typed by column name.
    - C(total_*) counters are totals since PgBouncer started; C(avg_*) values cover the last C(stats_period).
    - Each microsecond column also appears in seconds as C(<column>_seconds) (added by this module).
    - The sub-keys listed are those of PgBouncer 1.24; a column another version adds is returned too, typed the same way.
  returned: when V(stats) is in O(show)
  type: list
  elements: dict
  contains:
    database:
      description: The database the statistics are about.
      type: str
    total_server_assignment_count:
      description: Times a server connection was assigned to a client.
      returned: with PgBouncer 1.23 and later
      type: int
    total_xact_count:
      description: SQL transactions pooled.
      type: int
    total_query_count:
      description: SQL commands pooled.
      type: int
    total_received:
      description: Bytes of network traffic received by PgBouncer.
      type: int
    total_sent:
      description: Bytes of network traffic sent by PgBouncer.
      type: int
    total_xact_time:
      description: Microseconds PgBouncer was connected to PostgreSQL in a transaction, idle in transaction or executing queries.
      type: int
    total_xact_time_seconds:
      description: C(total_xact_time) in seconds.
      type: float
    total_query_time:
      description: Microseconds PgBouncer was actively connected to PostgreSQL, executing queries.
      type: int
    total_query_time_seconds:
      description: C(total_query_time) in seconds.
      type: float
    total_wait_time:
      description: Microseconds clients spent waiting for a server connection.
      type: int
    total_wait_time_seconds:
      description: C(total_wait_time) in seconds.
      type: float
    total_client_parse_count:
      description: Prepared statement C(Parse) messages received from clients.
      returned: with PgBouncer 1.24 and later
      type: int
    total_server_parse_count:
      description: Prepared statement C(Parse) messages PgBouncer sent to PostgreSQL.
      returned: with PgBouncer 1.24 and later
      type: int
    total_bind_count:
      description: Prepared statements readied for execution by a C(Bind) message.
      returned: with PgBouncer 1.24 and later
      type: int
    avg_server_assignment_count:
      description: Server assignments per second in the last C(stats_period).
      returned: with PgBouncer 1.23 and later
      type: int
    avg_xact_count:
      description: Transactions per second in the last C(stats_period).
      type: int
    avg_query_count:
      description: Queries per second in the last C(stats_period).
      type: int
    avg_recv:
      description: Bytes received per second in the last C(stats_period).
      type: int
    avg_sent:
      description: Bytes sent per second in the last C(stats_period).
      type: int
    avg_xact_time:
      description: Average transaction duration in the last C(stats_period), in microseconds.
      type: int
    avg_xact_time_seconds:
      description: C(avg_xact_time) in seconds.
      type: float
    avg_query_time:
      description: Average query duration in the last C(stats_period), in microseconds.
      type: int
    avg_query_time_seconds:
      description: C(avg_query_time) in seconds.
      type: float
    avg_wait_time:
      description: Average time clients waited for a server connection in the last C(stats_period), in microseconds.
      type: int
    avg_wait_time_seconds:
      description: C(avg_wait_time) in seconds.
      type: float
    avg_client_parse_count:
      description: Client C(Parse) messages per second in the last C(stats_period).
      returned: with PgBouncer 1.24 and later
      type: int
    avg_server_parse_count:
      description: Server C(Parse) messages per second in the last C(stats_period).
      returned: with PgBouncer 1.24 and later
      type: int
    avg_bind_count:
      description: C(Bind) messages per second in the last C(stats_period).
      returned: with PgBouncer 1.24 and later
      type: int
  sample:
    - database: psscript
      total_server_assignment_count: 53
      total_xact_count: 55
      total_query_count: 55
      total_received: 1062
      total_sent: 3140
      total_xact_time: 4679
      total_xact_time_seconds: 0.004679
      total_query_time: 4679
      total_query_time_seconds: 0.004679
      total_wait_time: 24009
      total_wait_time_seconds: 0.024009
      total_client_parse_count: 0
      total_server_parse_count: 0
      total_bind_count: 0
      avg_server_assignment_count: 1
      avg_xact_count: 2
      avg_query_count: 2
      avg_recv: 32
      avg_sent: 0
      avg_xact_time: 0
      avg_xact_time_seconds: 0.0
      avg_query_time: 0
      avg_query_time_seconds: 0.0
      avg_wait_time: 2912
      avg_wait_time_seconds: 0.002912
      avg_client_parse_count: 0
      avg_server_parse_count: 0
      avg_bind_count: 0
databases:
  description:
    - Rows of C(SHOW DATABASES), one per configured or automatic database, with every column PgBouncer sent, typed by
      column name.
    - The sub-keys listed are those of PgBouncer 1.24 (plus C(reserve_pool), its name before 1.24); a column another
      version adds is returned too, typed the same way.
  returned: when V(databases) is in O(show)
  type: list
  elements: dict
  contains:
    name:
      description: Name of the database entry, as clients ask for it.
      type: str
    host:
      description: Host PgBouncer connects to; V(null) for a Unix socket and for the console's own database V(pgbouncer).
      type: str
    port:
      description: Port PgBouncer connects to.
      type: int
    database:
      description: Name of the database PgBouncer connects to.
      type: str
    force_user:
      description: The user every connection to this database uses; V(null) when not forced.
      type: str
    pool_size:
      description: Largest number of server connections per pool of this database.
      type: int
    min_pool_size:
      description: Smallest number of server connections kept per pool.
      type: int
    reserve_pool_size:
      description: Additional server connections allowed per pool when clients wait too long.
      returned: with PgBouncer 1.24 and later
      type: int
    reserve_pool:
      description: The same as C(reserve_pool_size), under its name before PgBouncer 1.24.
      returned: with PgBouncer before 1.24
      type: int
    server_lifetime:
      description: Seconds after which an unused server connection is closed.
      returned: with PgBouncer 1.23 and later
      type: int
    pool_mode:
      description: Pooling mode set for this database; V(null) when the global C(pool_mode) applies.
      type: str
    load_balance_hosts:
      description: The C(load_balance_hosts) setting of this database; V(null) when not set.
      returned: with PgBouncer 1.24 and later
      type: str
    max_connections:
      description: Largest number of server connections allowed for this database; V(0) means no limit.
      type: int
    current_connections:
      description: Current server connections for this database.
      type: int
    max_client_connections:
      description: Largest number of client connections allowed for this database; V(0) means no limit.
      returned: with PgBouncer 1.24 and later
      type: int
    current_client_connections:
      description: Current client connections for this database.
      returned: with PgBouncer 1.24 and later
      type: int
    paused:
      description: V(1) when the database is paused, else V(0).
      type: int
    disabled:
      description: V(1) when the database is disabled, else V(0).
      type: int
  sample:
    - name: psscript
      host: 127.0.0.1
      port: 5432
      database: psscript
      force_user: null
      pool_size: 20
      min_pool_size: 0
      reserve_pool_size: 0
      server_lifetime: 3600
      pool_mode: null
      load_balance_hosts: null
      max_connections: 0
      current_connections: 3
      max_client_connections: 0
      current_client_connections: 5
      paused: 0
      disabled: 0
lists:
  description:
    - C(SHOW LISTS) as a mapping of list name to item count.
    - Keys are the list names PgBouncer sends, one per row; the sub-keys listed are those of PgBouncer 1.24.
  returned: when V(lists) is in O(show)
  type: dict
  contains:
    databases:
      description: Count of databases.
      type: int
    users:
      description: Count of users.
      type: int
    peers:
      description: Count of peers.
      returned: with PgBouncer 1.19 and later
      type: int
    pools:
      description: Count of pools.
      type: int
    peer_pools:
      description: Count of peer pools.
      returned: with PgBouncer 1.19 and later
      type: int
    free_clients:
      description: Count of free client slots.
      type: int
    used_clients:
      description: Count of used client slots.
      type: int
    login_clients:
      description: Count of clients in login state.
      type: int
    free_servers:
      description: Count of free server slots.
      type: int
    used_servers:
      description: Count of used server slots.
      type: int
    dns_names:
      description: Count of DNS names in the cache.
      type: int
    dns_zones:
      description: Count of DNS zones in the cache.
      type: int
    dns_queries:
      description: Count of in-flight DNS queries.
      type: int
    dns_pending:
      description: Count of pending DNS queries (PgBouncer documents it as unused).
      type: int
  sample:
    databases: 3
    users: 4
    peers: 0
    pools: 3
    peer_pools: 0
    free_clients: 44
    used_clients: 6
    login_clients: 0
    free_servers: 46
    used_servers: 4
    dns_names: 0
    dns_zones: 0
    dns_queries: 0
    dns_pending: 0
config:
  description:
    - C(SHOW CONFIG) as a mapping of setting to its current value.
    - Keys are the setting names (C(key) column) of the running PgBouncer, every one it reports, so they vary with the
      version; values come from the C(value) column (C(default) and C(changeable) are not returned).
    - A value that is a whole number is an integer (on/off settings are V(0) or V(1), C(unix_socket_mode) is decimal,
      V(511) for C(0777)), a decimal number a float, anything else text; an unset setting is V(null) or an empty string.
  returned: when V(config) is in O(show)
  type: dict
  sample:
    default_pool_size: 20
    max_client_conn: 100
    pool_mode: transaction
    listen_addr: 127.0.0.1
    log_connections: 1
    auth_user: null
clients:
  description:
    - Rows of C(SHOW CLIENTS), one per client connection, with every column PgBouncer sent, typed by column name.
    - C(wait_seconds) joins C(wait) and C(wait_us).
    - The sub-keys listed are those of PgBouncer 1.24; a column another version adds is returned too, typed the same way.
  returned: when V(clients) is in O(show)
  type: list
  elements: dict
  contains: &connection_columns
    type:
      description: V(C) for a client connection, V(S) for a server connection.
      type: str
    user:
      description: User of the connection.
      type: str
    database:
      description: Database of the connection.
      type: str
    replication:
      description: Replication type of the connection, V(none), V(logical) or V(physical).
      returned: with PgBouncer 1.23 and later
      type: str
    state:
      description: State of the connection, for example V(active), V(idle), V(waiting) (clients) or V(used) (servers).
      type: str
    addr:
      description: IP address of the peer (the client, or the PostgreSQL server), or V(unix) for a Unix socket.
      type: str
    port:
      description: Port of the peer.
      type: int
    local_addr:
      description: Address of PgBouncer's end of the connection.
      type: str
    local_port:
      description: Port of PgBouncer's end of the connection.
      type: int
    connect_time:
      description: When the connection was made, as PgBouncer prints it (C(YYYY-MM-DD HH:MM:SS UTC)).
      type: str
    request_time:
      description: When the last request was issued, in the same format.
      type: str
    wait:
      description: Whole seconds of the current wait (a client waiting for a server connection).
      type: int
    wait_us:
      description: Microsecond part of that wait.
      type: int
    wait_seconds:
      description: The whole current wait in seconds, C(wait) + C(wait_us) / 1000000 (added by this module).
      type: float
    close_needed:
      description: V(1) when the connection will be closed as soon as possible, else V(0).
      type: int
    ptr:
      description: Address of the connection's internal object in PgBouncer, an identifier.
      type: str
    link:
      description: C(ptr) of the connection it is linked to (server for a client, client for a server); empty when none.
      type: str
    remote_pid:
      description:
        - For a server connection, the PID of its PostgreSQL backend.
        - For a client, its PID when it connected over a Unix socket and the system tells it; otherwise V(0).
      type: int
    tls:
      description: The TLS connection, as PgBouncer describes it (protocol, cipher); empty for plain connections.
      type: str
    application_name:
      description: The C(application_name) the client set; empty when none.
      type: str
    prepared_statements:
      description: Number of prepared statements PgBouncer tracks on the connection.
      returned: with PgBouncer 1.21 and later
      type: int
    id:
      description: Unique ID of the connection.
      returned: with PgBouncer 1.24 and later
      type: int
  sample:
    - type: C
      user: app
      database: psscript
      replication: none
      state: waiting
      addr: 127.0.0.1
      port: 47258
      local_addr: 127.0.0.1
      local_port: 6432
      connect_time: "2026-11-25 17:27:50 UTC"
      request_time: "2026-11-25 17:27:50 UTC"
      wait: 1
      wait_us: 409024
      wait_seconds: 1.409024
      close_needed: 0
      ptr: "0x55a7d8343640"
      link: ""
      remote_pid: 0
      tls: ""
      application_name: ""
      prepared_statements: 0
      id: 10
servers:
  description:
    - Rows of C(SHOW SERVERS), one per server connection, with the same columns as RV(clients), typed by column name.
    - C(wait_seconds) joins C(wait) and C(wait_us).
  returned: when V(servers) is in O(show)
  type: list
  elements: dict
  contains: *connection_columns
  sample:
    - type: S
      user: app
      database: psscript
      replication: none
      state: active
      addr: 127.0.0.1
      port: 5432
      local_addr: 127.0.0.1
      local_port: 52100
      connect_time: "2026-11-25 17:27:50 UTC"
      request_time: "2026-11-25 17:27:50 UTC"
      wait: 0
      wait_us: 0
      wait_seconds: 0.0
      close_needed: 0
      ptr: "0x55a7d834bfe0"
      link: "0x55a7d8343380"
      remote_pid: 28950
      tls: ""
      application_name: ""
      prepared_statements: 0
      id: 9
breaches:
  description:
    - Thresholds exceeded, one item per pool and metric. Empty when no threshold is set or none is exceeded.
    - O(max_cl_waiting) is checked against metric C(cl_waiting), O(max_wait_seconds) against C(maxwait_seconds),
      O(max_server_utilisation) against C(server_utilisation).
  returned: always
  type: list
  elements: dict
  contains:
    pool:
      description: The pool, as C(database/user).
      type: str
    database:
      description: Database of the pool.
      type: str
    user:
      description: User of the pool.
      type: str
    metric:
      description: What was measured.
      type: str
    value:
      description: The measured value.
      type: float
    limit:
      description: The limit it exceeded.
      type: float
    message:
      description: One line for humans.
      type: str
  sample:
    - pool: psscript/app
      database: psscript
      user: app
      metric: cl_waiting
      value: 12
      limit: 10
      message: "pool psscript/app: cl_waiting 12 > max_cl_waiting 10"
prometheus_textfile:
  description: Path of the metrics file written (or, in check mode, that would be written).
  returned: when O(prometheus_textfile) is set
  type: str
  sample: /var/lib/node_exporter/textfile/pgbouncer.prom
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.psscript.infra.plugins.module_utils import _pgbouncer
from ansible_collections.psscript.infra.plugins.module_utils._pg import (
    HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR, PSYCOPG2_REQUIREMENT, PgConnectionError, console_show_all, pgbouncer_console_spec,
)


def publish(module, result, path, content):
    """Write (or, in check mode, compare) the textfile; return whether it changes."""
    before = _pgbouncer.read_text(path)
    if module._diff:
        result['diff'] = dict(before=before or '', after=content, before_header=path, after_header=path)
    if module.check_mode:
        return before != content
    return _pgbouncer.write_file_atomic(path, content)


def main():
    argument_spec = pgbouncer_console_spec()
    argument_spec.update(
        show=dict(type='list', elements='str', choices=list(_pgbouncer.SHOW_CHOICES), default=list(_pgbouncer.DEFAULT_SHOW)),
        max_cl_waiting=dict(type='int'),
        max_wait_seconds=dict(type='float'),
        max_server_utilisation=dict(type='float'),
        fail_on_threshold=dict(type='bool', default=True),
        prometheus_textfile=dict(type='path'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib(PSYCOPG2_REQUIREMENT), exception=PSYCOPG2_IMPORT_ERROR)
    p = module.params
    limits = dict((k, p[k]) for k in ('max_cl_waiting', 'max_wait_seconds', 'max_server_utilisation'))
    error = _pgbouncer.check_thresholds(**limits)
    if error:
        module.fail_json(msg=error)
    textfile = p['prometheus_textfile']
    result = dict(changed=False, breaches=[])
    if textfile:
        result['prometheus_textfile'] = textfile

    try:
        raw = console_show_all(p, _pgbouncer.commands_needed(p['show'], prometheus=bool(textfile), **limits))
    except PgConnectionError as err:
        if textfile:
            try:
                result['changed'] = publish(module, result, textfile, _pgbouncer.render_prometheus(None, up=False))
            except (IOError, OSError) as write_err:
                module.warn('could not record pgbouncer_up 0 in %s: %s' % (textfile, write_err))
        module.fail_json(msg=err.msg, **result)

    typed = _pgbouncer.type_results(raw)
    result['version'] = typed.get('version')
    result.update((name, typed[name]) for name in p['show'])
    if textfile:
        try:
            result['changed'] = publish(module, result, textfile, _pgbouncer.render_prometheus(typed))
        except (IOError, OSError) as err:
            module.fail_json(msg='Cannot write prometheus_textfile %s: %s; check that its directory exists and is writable'
                             % (textfile, err), **result)

    result['breaches'] = _pgbouncer.evaluate_thresholds(
        typed.get('pools'), typed.get('databases'), typed.get('config'), **limits)
    if result['breaches'] and p['fail_on_threshold']:
        module.fail_json(msg='PgBouncer thresholds exceeded: ' + '; '.join(b['message'] for b in result['breaches']),
                         **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
