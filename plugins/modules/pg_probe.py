#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pg_probe
short_description: Ask PostgreSQL or PgBouncer whether it answers, run a read-only query, fingerprint tables
version_added: 0.3.0
description:
  - What the operator playbooks (health, drill) ask a PostgreSQL server or a PgBouncer database,
    through psycopg2 on the host that runs the task.
  - The password is a module argument (never logged), so no client program (C(psql), C(pg_isready)) is
    needed and no password appears on any command line or in any process environment.
  - O(action=ping) connects and runs one query, like C(pg_isready) but through authentication, and tells
    whether the server is in recovery.
  - O(action=query) runs one read-only statement and returns its rows as text.
  - O(action=fingerprint) reads every table of the database in one C(REPEATABLE READ) snapshot and returns
    its row count and the md5 of its rows in order, with the snapshot's time; two fingerprints are equal
    exactly when the tables hold the same rows.
  - O(action=switch_wal) writes a commit record and closes the current WAL segment, so that everything up
    to now reaches the WAL archive.
author:
  - psscript.infra developers (!UNKNOWN)
extends_documentation_fragment:
  - psscript.infra.postgres
  - psscript.infra.attributes
attributes:
  check_mode:
    support: full
    details:
      - O(action=ping), O(action=query) and O(action=fingerprint) only read. O(action=switch_wal) is skipped in
        check mode and reports C(changed).
  diff_mode:
    support: none
options:
  action:
    description:
      - What to do; see the description.
    type: str
    choices: [ping, query, fingerprint, switch_wal]
    default: ping
  query:
    description:
      - The statement for O(action=query). It runs in a read-only transaction.
    type: str
notes:
  - Through PgBouncer in transaction pooling every action but O(action=switch_wal) works unchanged; nothing
    session-level is set.
'''

EXAMPLES = r'''
- name: Is PostgreSQL up, and is it a primary?
  psscript.infra.pg_probe:
    login_host: 172.25.0.10
    login_user: psscript
    login_password: "{{ app_password }}"
    db: psscript
  register: pg

- name: A query through PgBouncer as the application user
  psscript.infra.pg_probe:
    action: query
    login_host: 127.0.0.1
    login_port: 6432
    login_user: psscript
    login_password: "{{ app_password }}"
    db: psscript
    query: SELECT count(*) FROM orders

- name: Fingerprint the tables of a database
  psscript.infra.pg_probe:
    action: fingerprint
    login_host: 172.25.0.10
    login_user: postgres
    login_password: "{{ superuser_password }}"
    db: psscript
  register: live
'''

RETURN = r'''
in_recovery:
  description: Whether the server is in recovery (a standby, or a restore still replaying).
  returned: action is ping
  type: bool
  sample: false
server_version:
  description: The server's version (through PgBouncer, the PostgreSQL server behind it).
  returned: action is ping
  type: str
  sample: "17.6 (Debian 17.6-0+deb13u1)"
rows:
  description:
    - The rows of the query, in the order it returns them.
    - Each row is a list of text cells, one per column of the query's result, in the order of its select list;
      column names are not returned. NULL is an empty string, booleans are V(t) or V(f), other values their text
      (numbers and dates as Python prints them).
  returned: action is query
  type: list
  elements: list
  sample: [["1"]]
snapshot_time:
  description: The time of the snapshot the fingerprint was read in (UTC).
  returned: action is fingerprint
  type: str
  sample: "2026-12-01T04:05:06.123456Z"
tables:
  description: One entry per table of the database, ordered by schema and name.
  returned: action is fingerprint
  type: list
  elements: dict
  contains:
    table:
      description: Schema and name of the table.
      type: str
      sample: public.orders
    rows:
      description: Number of rows.
      type: int
      sample: 1000
    md5:
      description: md5 of the rows as text, in order, joined by newlines.
      type: str
      sample: 9e107d9d372bb6826bd81d3542a419d6
segment:
  description: File name of the WAL segment that was closed (it is archived next).
  returned: action is switch_wal and not in check mode
  type: str
  sample: "000000010000000000000005"
elapsed_ms:
  description: Milliseconds from connecting to the answer.
  returned: success
  type: int
  sample: 4
'''

import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.psscript.infra.plugins.module_utils import _pg

ACTIONS = {
    'ping': lambda conn, p: _pg.ping(conn),
    'query': lambda conn, p: dict(rows=_pg.query(conn, p['query'])),
    'fingerprint': lambda conn, p: _pg.fingerprint(conn),
    'switch_wal': lambda conn, p: dict(segment=_pg.switch_wal(conn)),
}


def main():
    argument_spec = _pg.pg_connection_spec()
    argument_spec.update(
        action=dict(type='str', choices=sorted(ACTIONS), default='ping'),
        query=dict(type='str'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[('action', 'query', ['query'])])
    if not _pg.HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib(_pg.PSYCOPG2_REQUIREMENT), exception=_pg.PSYCOPG2_IMPORT_ERROR)
    action = module.params['action']
    changed = action == 'switch_wal'
    if changed and module.check_mode:
        module.exit_json(changed=True, elapsed_ms=0)
    started = time.monotonic()
    try:
        conn = _pg.connect_postgres(module.params)
        try:
            result = ACTIONS[action](conn, module.params)
        finally:
            conn.close()
    except _pg.PgConnectionError as err:
        module.fail_json(msg=err.msg)
    module.exit_json(changed=changed, elapsed_ms=int((time.monotonic() - started) * 1000), **result)


if __name__ == '__main__':
    main()
