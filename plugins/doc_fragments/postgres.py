# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # Connection options of PostgreSQL (module_utils._pg.pg_connection_spec).
    DOCUMENTATION = r'''
options:
  login_host:
    description:
      - Address of the PostgreSQL server, for example V(127.0.0.1).
      - A directory (starting with V(/)) means the Unix socket in that directory.
      - There is no default on purpose; the module fails with a clear message when it is missing.
    type: str
  login_port:
    description:
      - Port PostgreSQL listens on.
    type: int
    default: 5432
  login_user:
    description:
      - Role to log in as.
      - Required; the module fails with a clear message when it is missing.
    type: str
  login_password:
    description:
      - Password of O(login_user).
      - When not given, the E(PGPASSWORD) environment variable is used.
    type: str
  connect_timeout:
    description:
      - Seconds to wait for the server to accept the connection before failing.
    type: int
    default: 5
  ssl_mode:
    description:
      - libpq's C(sslmode). V(verify-full) checks that the server's certificate chains to O(ca_cert) and names
        O(login_host); the stack's PostgreSQL and PgBouncer accept TLS connections only.
      - When not given, libpq decides (E(PGSSLMODE), else V(prefer)).
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - File holding the CA certificate(s) that verify the server's certificate (libpq's C(sslrootcert)), for
        example the stack CA.
      - When not given, libpq decides (E(PGSSLROOTCERT), else C(~/.postgresql/root.crt)).
    type: path
    aliases: [ssl_rootcert]
  db:
    description:
      - Database to connect to. When not given, libpq uses a database named like O(login_user).
    type: str
requirements:
  - psycopg2 (for example C(pip install psycopg2-binary)) on the host that runs the module.
'''
