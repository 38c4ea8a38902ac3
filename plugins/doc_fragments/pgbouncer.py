# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # Connection options of the PgBouncer admin console (module_utils._pg.pgbouncer_console_spec).
    DOCUMENTATION = r'''
options:
  login_host:
    description:
      - Address of the PgBouncer instance whose admin console to query, for example V(127.0.0.1).
      - A directory (starting with V(/)) means the Unix socket in that directory.
      - There is no default on purpose; the module fails with a clear message when it is missing.
    type: str
  login_port:
    description:
      - Port PgBouncer listens on (C(listen_port) in C(pgbouncer.ini)).
    type: int
    default: 6432
  login_user:
    description:
      - User to log in to the console as. It must be listed in C(stats_users) (enough for C(SHOW))
        or C(admin_users) of PgBouncer, and in its C(auth_file) (C(userlist.txt)) or reachable
        through C(auth_query).
      - Required; the module fails with a clear message when it is missing.
    type: str
  login_password:
    description:
      - Password of O(login_user).
      - When not given, the E(PGBOUNCER_PASSWORD) environment variable is used.
    type: str
  connect_timeout:
    description:
      - Seconds to wait for the console to accept the connection before failing.
    type: int
    default: 5
  ssl_mode:
    description:
      - libpq's C(sslmode). V(verify-full) checks that PgBouncer's certificate chains to O(ca_cert) and names
        O(login_host); the stack's PgBouncer accepts TLS connections only.
      - When not given, libpq decides (E(PGSSLMODE), else V(prefer)).
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - File holding the CA certificate(s) that verify PgBouncer's certificate (libpq's C(sslrootcert)), for
        example the stack CA.
      - When not given, libpq decides (E(PGSSLROOTCERT), else C(~/.postgresql/root.crt)).
    type: path
    aliases: [ssl_rootcert]
  db:
    description:
      - The console database. PgBouncer always calls it V(pgbouncer); the option exists only so that
        the connection options have the same shape as for PostgreSQL.
    type: str
    default: pgbouncer
    choices: [pgbouncer]
notes:
  - The PgBouncer admin console speaks only the simple query protocol and has no transactions;
    the connection is made in autocommit mode and sends plain C(SHOW) commands without parameters.
requirements:
  - psycopg2 (for example C(pip install psycopg2-binary)) on the host that runs the module.
'''
