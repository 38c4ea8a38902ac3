# -*- coding: utf-8 -*-
"""Unit tests for the TLS connection options of module_utils._pg (ssl_mode, ca_cert) and pg_basebackup's
environment: unset, libpq decides as before; set, they reach psycopg2 and libpq's tools."""

from __future__ import annotations

import pytest

from ansible_collections.psscript.infra.plugins.module_utils import _pg, _pgbackup

PARAMS = dict(login_host='172.26.0.10', login_port=5432, login_user='psscript_backup', login_password='pw',
              connect_timeout=5, db='postgres')


def test_both_specs_have_the_tls_options_unset_by_default():
    for spec in (_pg.pg_connection_spec(), _pg.pgbouncer_console_spec()):
        assert spec['ssl_mode']['choices'] == list(_pg.SSL_MODES) and 'default' not in spec['ssl_mode']
        assert spec['ca_cert']['type'] == 'path' and spec['ca_cert']['aliases'] == ['ssl_rootcert']


@pytest.mark.parametrize('params, options', [
    (dict(), {}),
    (dict(ssl_mode=None, ca_cert=None), {}),
    (dict(ssl_mode='verify-full', ca_cert='/etc/psscript/tls/ca.crt'),
     dict(sslmode='verify-full', sslrootcert='/etc/psscript/tls/ca.crt')),
    (dict(ssl_mode='require'), dict(sslmode='require')),
])
def test_tls_options_pass_only_what_is_set(params, options):
    assert _pg.tls_options(params) == options


class _Connection:
    autocommit = False


def test_connect_hands_the_tls_options_to_psycopg2(monkeypatch):
    seen = {}

    def connect(**kwargs):
        seen.update(kwargs)
        return _Connection()

    monkeypatch.setattr(_pg.psycopg2, 'connect', connect)
    _pg.connect_postgres(dict(PARAMS, ssl_mode='verify-full', ca_cert='/ca.crt'))
    assert seen['sslmode'] == 'verify-full' and seen['sslrootcert'] == '/ca.crt'
    seen.clear()
    _pg.connect_postgres(dict(PARAMS))
    assert 'sslmode' not in seen and 'sslrootcert' not in seen


def test_pg_basebackup_gets_the_tls_options_in_its_environment_only_when_set():
    env = _pgbackup.connection_env(dict(PARAMS, ssl_mode='verify-full', ca_cert='/ca.crt'), '/tmp/x/pgpass')
    assert env['PGSSLMODE'] == 'verify-full' and env['PGSSLROOTCERT'] == '/ca.crt'
    env = _pgbackup.connection_env(dict(PARAMS), None)
    assert 'PGSSLMODE' not in env and 'PGSSLROOTCERT' not in env


@pytest.mark.parametrize('error, expected', [
    ('connection to server at "172.26.0.10", port 5432 failed: SSL error: certificate verify failed\n',
     "PostgreSQL at 172.26.0.10:5432 presented a certificate that ca_cert (/wrong.crt) does not verify"),
    ('connection to server at "172.26.0.10", port 5432 failed: server certificate for "psscript-postgres-1" (and 4 '
     'other names) does not match host name "db.invalid"\n',
     "does not name '172.26.0.10': connect with a name or address in its subject alternative names"),
    ('connection to server at "172.26.0.10", port 5432 failed: FATAL:  no pg_hba.conf entry for host "172.26.0.1", '
     'user "psscript", database "psscript", no encryption\n',
     'PostgreSQL at 172.26.0.10:5432 accepts TLS connections only: set ssl_mode'),
])
def test_tls_errors_name_cause_and_fix(error, expected):
    assert expected in _pg._explain(Exception(error), dict(PARAMS, ca_cert='/wrong.crt'), console=False)


def test_pgbouncer_refusing_plain_text_names_the_fix():
    text = _pg._explain(Exception('connection to server at "127.0.0.1", port 6432 failed: FATAL:  SSL required\n'),
                        dict(PARAMS, login_host='127.0.0.1', login_port=6432), console=True)
    assert 'PgBouncer console at 127.0.0.1:6432 accepts TLS connections only' in text
