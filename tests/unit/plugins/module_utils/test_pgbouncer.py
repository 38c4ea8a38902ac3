# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for module_utils._pgbouncer (and the pure parts of module_utils._pg).

The inputs are SHOW outputs recorded from real PgBouncer 1.18.0, 1.24.1 and 1.26.1 consoles (see
tests/unit/fixtures/pgbouncer/record_show.py), plus 1.21/1.23 column sets derived from the 1.24.1
recording; each fixture says which it is in its "provenance" field.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import decimal
import json
import os
import re
import stat

import pytest

from ansible_collections.psscript.infra.plugins.module_utils import _pg, _pgbouncer

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'pgbouncer')
VERSIONS = ('1.18.0', '1.21.0', '1.23.1', '1.24.1', '1.26.1')
RECORDED = ('1.18.0', '1.24.1', '1.26.1')  # the ones with SHOW CONFIG
NUMERIC_OID = 1700

# What each version sends, as counted on the fixtures; SHOW STATS: 15 / 15 / 17 / 23 / 25 columns.
EXPECTED_COLUMNS = {
    '1.18.0': dict(stats=15, pools=16, databases=13, clients=18),
    '1.21.0': dict(stats=15, pools=16, databases=13, clients=19),
    '1.23.1': dict(stats=17, pools=16, databases=14, clients=20),
    '1.24.1': dict(stats=23, pools=17, databases=17, clients=21),
    '1.26.1': dict(stats=25, pools=17, databases=17, clients=21),
}


def load(version):
    """Rebuild {command: rows-as-dicts} exactly as _pg.show() returns them through psycopg2."""
    with open(os.path.join(FIXTURES, 'show-%s.json' % version)) as handle:
        recording = json.load(handle)
    raw = {}
    for command, data in recording['commands'].items():
        names = [name for name, dummy in data['columns']]
        numeric = [oid == NUMERIC_OID for dummy, oid in data['columns']]
        raw[command] = [
            dict((name, decimal.Decimal(value) if is_numeric and value is not None else value)
                 for name, value, is_numeric in zip(names, row, numeric))
            for row in data['rows']
        ]
    return raw


def columns(version, command):
    with open(os.path.join(FIXTURES, 'show-%s.json' % version)) as handle:
        return [name for name, dummy in json.load(handle)['commands'][command]['columns']]


def pool(typed, database, user='app'):
    return next(row for row in typed['pools'] if row['database'] == database and row['user'] == user)


# ---------------------------------------------------------------------------------------------
# Typing of recorded output

@pytest.mark.parametrize('version', VERSIONS)
def test_fixture_column_counts_match_the_version(version):
    for command, count in EXPECTED_COLUMNS[version].items():
        assert len(columns(version, command)) == count, command
    assert ('load_balance_hosts' in columns(version, 'pools')) == (version >= '1.24')


def test_recorded_stats_arrive_as_decimal():
    # PgBouncer sends statistics as numeric since 1.12, so psycopg2 gives Decimal: typing must convert.
    raw = load('1.24.1')
    assert isinstance(raw['stats'][0]['total_query_count'], decimal.Decimal)


@pytest.mark.parametrize('version', VERSIONS)
def test_type_results_is_plain_json_with_ints(version):
    typed = _pgbouncer.type_results(load(version))
    json.dumps(typed)  # no Decimal, no datetime: a module can return it as is
    assert typed['version'] == 'PgBouncer %s' % version
    for row in typed['stats']:
        assert isinstance(row['database'], str)
        for column in ('total_xact_count', 'total_query_count', 'total_received', 'total_sent',
                       'total_xact_time', 'total_query_time', 'total_wait_time', 'avg_wait_time'):
            assert isinstance(row[column], int) and not isinstance(row[column], bool), column
    psscript = next(row for row in typed['stats'] if row['database'] == 'psscript')
    assert psscript['total_query_count'] >= 50


@pytest.mark.parametrize('version', VERSIONS)
def test_microsecond_columns_are_also_in_seconds(version):
    typed = _pgbouncer.type_results(load(version))
    for row in typed['stats']:
        for column in ('total_wait_time', 'total_query_time', 'total_xact_time', 'avg_query_time', 'avg_wait_time'):
            assert row[column + '_seconds'] == pytest.approx(row[column] / 1e6)
            assert isinstance(row[column + '_seconds'], float)


@pytest.mark.parametrize('version', VERSIONS)
def test_saturated_pool_as_recorded(version):
    typed = _pgbouncer.type_results(load(version))
    busy = pool(typed, 'psscript')
    assert busy['cl_waiting'] == 2
    assert busy['sv_active'] == 3
    assert busy['pool_mode'] == 'transaction'
    assert busy['maxwait_seconds'] == pytest.approx(busy['maxwait'] + busy['maxwait_us'] / 1e6)
    assert 1.0 < busy['maxwait_seconds'] < 2.0
    assert pool(typed, 'reports')['cl_waiting'] == 0


@pytest.mark.parametrize('version', VERSIONS)
def test_version_specific_columns_are_kept_not_required(version):
    typed = _pgbouncer.type_results(load(version))
    stats = typed['stats'][0]
    assert ('total_server_assignment_count' in stats) == (version >= '1.23')
    assert ('total_bind_count' in stats) == (version >= '1.24')
    # Client logins are counted in 1.26.1 (the image's version), not in 1.24.1; no 1.25 was recorded.
    assert ('total_client_login_count' in stats) == (version >= '1.26')
    databases = dict((row['name'], row) for row in typed['databases'])
    assert databases['psscript']['pool_size'] == 3
    assert databases['reports']['pool_size'] == 5
    reserve = 'reserve_pool_size' if version >= '1.24' else 'reserve_pool'
    assert databases['psscript'][reserve] == 0


@pytest.mark.parametrize('version', VERSIONS)
def test_clients_wait_seconds_and_text_timestamps(version):
    typed = _pgbouncer.type_results(load(version))
    waiting = [row for row in typed['clients'] if row['state'] == 'waiting']
    assert len(waiting) == 2
    for row in waiting:
        assert row['wait_seconds'] == pytest.approx(row['wait'] + row['wait_us'] / 1e6)
        assert isinstance(row['connect_time'], str) and row['connect_time'].endswith('UTC')
        assert isinstance(row['port'], int)


@pytest.mark.parametrize('version', VERSIONS)
def test_lists_become_a_mapping(version):
    lists = _pgbouncer.type_results(load(version))['lists']
    assert lists['databases'] == 3
    assert lists['pools'] == 3
    assert all(isinstance(value, int) for value in lists.values())


@pytest.mark.parametrize('version', RECORDED)
def test_config_becomes_a_typed_mapping(version):
    config = _pgbouncer.type_results(load(version))['config']
    assert config['default_pool_size'] == 5
    assert config['max_client_conn'] == 100
    assert config['pool_mode'] == 'transaction'
    assert config['listen_addr'] == '127.0.0.1'
    assert config['unix_socket_mode'] == 511  # PgBouncer shows it in decimal
    assert config['server_reset_query'] == 'DISCARD ALL'


def test_unknown_columns_are_typed_by_value():
    row = _pgbouncer.type_row({
        'database': 'x', 'new_counter': decimal.Decimal('12'), 'new_ratio': decimal.Decimal('0.25'),
        'new_text': 'abc', 'new_digits': '42', 'new_float_text': '1.5', 'new_null': None,
        'new_time': datetime.datetime(2025, 1, 2, 3, 4, 5), 'new_bool': True,
    })
    assert row == {
        'database': 'x', 'new_counter': 12, 'new_ratio': 0.25, 'new_text': 'abc', 'new_digits': 42,
        'new_float_text': 1.5, 'new_null': None, 'new_time': '2025-01-02T03:04:05', 'new_bool': True,
    }


def test_text_columns_stay_text_even_when_numeric():
    row = _pgbouncer.type_row({'database': 2024, 'host': '10', 'user': 'app', 'changeable': 'yes'})
    assert row == {'database': '2024', 'host': '10', 'user': 'app', 'changeable': True}


def test_missing_microsecond_part_and_missing_columns():
    row = _pgbouncer.type_row({'database': 'a', 'user': 'b', 'maxwait': 3})
    assert row['maxwait_seconds'] == 3.0
    assert _pgbouncer.type_rows(None) == []
    assert _pgbouncer.type_results({}) == {}


# ---------------------------------------------------------------------------------------------
# Thresholds

def breaches_for(version, **limits):
    typed = _pgbouncer.type_results(load(version))
    return _pgbouncer.evaluate_thresholds(typed['pools'], typed.get('databases'), typed.get('config'), **limits)


@pytest.mark.parametrize('version', VERSIONS)
def test_no_limits_no_breaches(version):
    assert breaches_for(version) == []


@pytest.mark.parametrize('version', VERSIONS)
def test_cl_waiting_breach(version):
    assert breaches_for(version, max_cl_waiting=2) == []  # 2 waiting is not more than 2
    found = breaches_for(version, max_cl_waiting=1)
    assert found == [dict(pool='psscript/app', database='psscript', user='app', metric='cl_waiting', value=2, limit=1,
                          message='pool psscript/app: cl_waiting 2 > max_cl_waiting 1')]


@pytest.mark.parametrize('version', VERSIONS)
def test_max_wait_breach_uses_microseconds(version):
    typed = _pgbouncer.type_results(load(version))
    waited = pool(typed, 'psscript')['maxwait_seconds']
    found = breaches_for(version, max_wait_seconds=1.0)
    assert [(b['pool'], b['metric']) for b in found] == [('psscript/app', 'maxwait_seconds')]
    assert found[0]['value'] == pytest.approx(waited)
    assert found[0]['message'] == 'pool psscript/app: maxwait_seconds %s > max_wait_seconds 1' % (
        ('%.3f' % waited).rstrip('0').rstrip('.'))
    assert breaches_for(version, max_wait_seconds=5.0) == []


@pytest.mark.parametrize('version', VERSIONS)
def test_server_utilisation_uses_database_pool_size(version):
    found = breaches_for(version, max_server_utilisation=0.9)
    # psscript: sv_active 3 + sv_used 0 of pool_size 3; reports: 0 of 5; pgbouncer: 0 of 2.
    assert found == [dict(
        pool='psscript/app', database='psscript', user='app', metric='server_utilisation', value=1.0, limit=0.9,
        message='pool psscript/app: server_utilisation 1 (sv_active+sv_used 3 of pool_size 3) > max_server_utilisation 0.9')]
    assert breaches_for(version, max_server_utilisation=1.0) == []


def test_server_utilisation_falls_back_to_default_pool_size():
    pools = [dict(database='auto_db', user='app', sv_active=4, sv_used=1)]
    config = {'default_pool_size': 5}
    assert _pgbouncer.pool_size_for('auto_db', [], config) == 5
    found = _pgbouncer.evaluate_thresholds(pools, [], config, max_server_utilisation=0.5)
    assert [(b['metric'], b['value']) for b in found] == [('server_utilisation', 1.0)]
    # A database row without a usable pool_size also falls back.
    databases = [dict(name='auto_db', pool_size=None)]
    assert _pgbouncer.pool_size_for('auto_db', databases, config) == 5


def test_server_utilisation_skipped_without_pool_size_or_columns():
    assert _pgbouncer.evaluate_thresholds([dict(database='a', user='b', sv_active=9, sv_used=9)], [], {},
                                          max_server_utilisation=0.1) == []
    assert _pgbouncer.evaluate_thresholds([dict(database='a', user='b', sv_active=9)], [], {'default_pool_size': 2},
                                          max_server_utilisation=0.1) == []


def test_several_breaches_each_reported():
    typed = _pgbouncer.type_results(load('1.24.1'))
    found = _pgbouncer.evaluate_thresholds(typed['pools'], typed['databases'], typed['config'],
                                           max_cl_waiting=0, max_wait_seconds=0.5, max_server_utilisation=0.5)
    assert sorted(b['metric'] for b in found) == ['cl_waiting', 'maxwait_seconds', 'server_utilisation']
    assert all(b['pool'] == 'psscript/app' for b in found)


@pytest.mark.parametrize('limits, error', [
    (dict(max_cl_waiting=-1), 'max_cl_waiting must be 0 or more'),
    (dict(max_wait_seconds=-0.5), 'max_wait_seconds must be 0 or more'),
    (dict(max_server_utilisation=1.5), 'max_server_utilisation is a fraction'),
    (dict(max_server_utilisation=-0.1), 'max_server_utilisation is a fraction'),
])
def test_check_thresholds_rejects_nonsense(limits, error):
    assert error in _pgbouncer.check_thresholds(**limits)


def test_check_thresholds_accepts_sane_limits():
    assert _pgbouncer.check_thresholds() is None
    assert _pgbouncer.check_thresholds(max_cl_waiting=0, max_wait_seconds=0.0, max_server_utilisation=1.0) is None


def test_commands_needed():
    assert _pgbouncer.commands_needed(['clients']) == ['version', 'clients']
    assert _pgbouncer.commands_needed(['stats'], max_cl_waiting=1) == ['version', 'pools', 'stats']
    assert _pgbouncer.commands_needed([], max_server_utilisation=0.9) == ['version', 'pools', 'databases', 'config']
    assert _pgbouncer.commands_needed(['servers'], prometheus=True) == [
        'version', 'pools', 'stats', 'databases', 'lists', 'config', 'servers']


# ---------------------------------------------------------------------------------------------
# Prometheus text exposition

METRIC_NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE_RE = re.compile(r'^(%s)(\{%s(?:,%s)*\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$' % (METRIC_NAME, LABEL, LABEL))


def parse_exposition(text):
    """Check the text format strictly enough for node_exporter; return {family: [sample lines]}."""
    assert text.endswith('\n')
    families, current, seen = {}, None, set()
    for line in text.splitlines():
        if line.startswith('# HELP '):
            current = line.split(' ')[2]
            assert current not in families, 'family %s declared twice' % current
            families[current] = []
        elif line.startswith('# TYPE '):
            name, kind = line.split(' ')[2:4]
            assert name == current and kind in ('gauge', 'counter')
        else:
            match = SAMPLE_RE.match(line)
            assert match, line
            assert match.group(1) == current, 'sample outside its family: %s' % line
            series = match.group(1) + (match.group(2) or '')
            assert series not in seen, 'duplicate series %s' % series
            seen.add(series)
            families[current].append(line)
    return families


@pytest.mark.parametrize('version', VERSIONS)
def test_prometheus_exposition_is_valid_and_uses_exporter_names(version):
    text = _pgbouncer.render_prometheus(_pgbouncer.type_results(load(version)))
    families = parse_exposition(text)
    for name in ('pgbouncer_up', 'pgbouncer_version_info', 'pgbouncer_pools_client_active_connections',
                 'pgbouncer_pools_client_waiting_connections', 'pgbouncer_pools_server_active_connections',
                 'pgbouncer_pools_server_idle_connections', 'pgbouncer_pools_server_used_connections',
                 'pgbouncer_pools_client_maxwait_seconds', 'pgbouncer_stats_queries_pooled_total',
                 'pgbouncer_stats_queries_duration_seconds_total', 'pgbouncer_stats_received_bytes_total',
                 'pgbouncer_stats_sent_bytes_total', 'pgbouncer_stats_sql_transactions_pooled_total',
                 'pgbouncer_stats_server_in_transaction_seconds_total', 'pgbouncer_stats_client_wait_seconds_total',
                 'pgbouncer_databases_pool_size', 'pgbouncer_databases_reserve_pool',
                 'pgbouncer_databases_current_connections', 'pgbouncer_pools', 'pgbouncer_free_clients'):
        assert families.get(name), name
    assert 'pgbouncer_pools_client_waiting_connections{database="psscript",user="app"} 2' in families[
        'pgbouncer_pools_client_waiting_connections']
    assert families['pgbouncer_up'] == ['pgbouncer_up 1']
    assert families['pgbouncer_version_info'] == ['pgbouncer_version_info{version="PgBouncer %s"} 1' % version]
    assert '# TYPE pgbouncer_stats_queries_pooled_total counter' in text
    assert '# TYPE pgbouncer_pools_client_maxwait_seconds gauge' in text
    assert ('pgbouncer_stats_binds_total' in families) == (version >= '1.24')
    assert ('pgbouncer_config_max_client_connections' in families) == (version in RECORDED)


def test_prometheus_values_are_seconds_and_labels_follow_the_exporter():
    typed = _pgbouncer.type_results(load('1.24.1'))
    families = parse_exposition(_pgbouncer.render_prometheus(typed))
    stats = next(row for row in typed['stats'] if row['database'] == 'psscript')
    expected = 'pgbouncer_stats_client_wait_seconds_total{database="psscript"} %r' % (stats['total_wait_time'] / 1e6)
    assert expected in families['pgbouncer_stats_client_wait_seconds_total']
    waited = pool(typed, 'psscript')['maxwait_seconds']
    assert 'pgbouncer_pools_client_maxwait_seconds{database="psscript",user="app"} %r' % waited in families[
        'pgbouncer_pools_client_maxwait_seconds']
    assert ('pgbouncer_databases_pool_size{name="psscript",host="127.0.0.1",port="55432",database="psscript",'
            'force_user="",pool_mode=""} 3') in families['pgbouncer_databases_pool_size']


def test_prometheus_leaves_out_the_admin_database():
    # Its counters only count our own SHOW commands: keeping them would rewrite the file every run.
    typed = _pgbouncer.type_results(load('1.24.1'))
    assert any(row['database'] == 'pgbouncer' for row in typed['stats'])
    text = _pgbouncer.render_prometheus(typed)
    assert 'database="pgbouncer"' not in text and 'name="pgbouncer"' not in text
    assert 'pgbouncer_stats_queries_pooled_total{database="pgbouncer"}' in _pgbouncer.render_prometheus(
        typed, include_admin_db=True)


def test_prometheus_output_is_deterministic():
    typed = _pgbouncer.type_results(load('1.18.0'))
    assert _pgbouncer.render_prometheus(typed) == _pgbouncer.render_prometheus(typed)


def test_prometheus_label_escaping():
    text = _pgbouncer.render_prometheus({'pools': [{'database': 'we"ird\\db\nx', 'user': 'u', 'cl_waiting': 1}]})
    assert 'pgbouncer_pools_client_waiting_connections{database="we\\"ird\\\\db\\nx",user="u"} 1' in text
    parse_exposition(text)


def test_prometheus_down():
    assert _pgbouncer.render_prometheus(None, up=False) == (
        '# HELP pgbouncer_up The pgbouncer scrape succeeded\n# TYPE pgbouncer_up gauge\npgbouncer_up 0\n')


# ---------------------------------------------------------------------------------------------
# Atomic file write

def test_write_file_atomic(tmp_path):
    target = str(tmp_path / 'pgbouncer.prom')
    assert _pgbouncer.read_text(target) is None
    assert _pgbouncer.write_file_atomic(target, 'a 1\n') is True
    assert _pgbouncer.read_text(target) == 'a 1\n'
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert _pgbouncer.write_file_atomic(target, 'a 1\n') is False
    os.chmod(target, 0o640)
    assert _pgbouncer.write_file_atomic(target, 'a 2\n') is True
    assert _pgbouncer.read_text(target) == 'a 2\n'
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert os.listdir(str(tmp_path)) == ['pgbouncer.prom']  # no temporary file left behind


def test_write_file_atomic_missing_directory_raises_and_leaves_nothing(tmp_path):
    with pytest.raises(OSError):
        _pgbouncer.write_file_atomic(str(tmp_path / 'missing' / 'x.prom'), 'a 1\n')
    assert os.listdir(str(tmp_path)) == []


# ---------------------------------------------------------------------------------------------
# _pg: argument specs, the SHOW allow-list, error messages (texts recorded from PgBouncer 1.24.1)

def test_specs_are_fresh_and_secret():
    first, second = _pg.pgbouncer_console_spec(), _pg.pgbouncer_console_spec()
    first['login_port']['default'] = 1
    assert second['login_port']['default'] == 6432
    assert second['login_password']['no_log'] is True
    assert second['login_password']['fallback'][1] == ['PGBOUNCER_PASSWORD']
    assert second['login_host'].get('default') is None
    assert second['db']['default'] == 'pgbouncer'
    pg = _pg.pg_connection_spec()
    assert pg['login_port']['default'] == 5432
    assert pg['login_password']['fallback'][1] == ['PGPASSWORD']
    assert set(pg) == set(second)


class _NoConnection(object):
    def cursor(self):
        raise AssertionError('a refused command must not reach the console')


@pytest.mark.parametrize('what', ['pools; SHUTDOWN', 'shutdown', 'POOLS --', ''])
def test_show_refuses_commands_outside_the_allow_list(what):
    with pytest.raises(_pg.PgConnectionError) as err:
        _pg.show(_NoConnection(), what)
    assert 'not an allowed console command' in err.value.msg


@pytest.mark.parametrize('params, text', [
    (dict(login_user='stats'), 'login_host is not set'),
    (dict(login_host='127.0.0.1'), 'login_user is not set'),
    (dict(login_host='127.0.0.1', login_user='stats', connect_timeout=0), 'connect_timeout must be at least 1'),
])
def test_missing_connection_options_fail_clearly(params, text):
    base = dict(login_host=None, login_port=6432, login_user=None, login_password=None, connect_timeout=5)
    base.update(params)
    with pytest.raises(_pg.PgConnectionError) as err:
        _pg.connect_console(base)
    assert text in err.value.msg


PARAMS = dict(login_host='127.0.0.1', login_port=6432, login_user='stats', connect_timeout=5)


@pytest.mark.parametrize('error, expected', [
    ('connection to server at "127.0.0.1", port 6432 failed: FATAL:  SASL authentication failed\n',
     "PgBouncer console refused login for user 'stats': check pgbouncer_stats_users and userlist.txt"),
    ('connection to server at "127.0.0.1", port 6432 failed: FATAL:  not allowed\n',
     "PgBouncer console refused user 'stats' (not allowed): add it to stats_users or admin_users"),
    ('connection to server at "127.0.0.1", port 6432 failed: fe_sendauth: no password supplied\n',
     'set login_password or PGBOUNCER_PASSWORD'),
    ('connection to server at "127.0.0.1", port 6432 failed: Connection refused\n\tIs the server running on that host '
     'and accepting TCP/IP connections?\n',
     'Cannot connect to PgBouncer console at 127.0.0.1:6432: connection refused; check that PgBouncer runs'),
    ('connection to server at "127.0.0.1", port 6432 failed: timeout expired\n',
     'PgBouncer console at 127.0.0.1:6432 did not answer within connect_timeout=5s'),
    ('could not translate host name "no-such-host.invalid" to address: Name or service not known\n',
     "Cannot resolve login_host '127.0.0.1'"),
])
def test_console_errors_name_cause_and_fix(error, expected):
    assert expected in _pg._explain(Exception(error), PARAMS, console=True)


def test_postgres_errors_name_cause_and_fix():
    text = _pg._explain(Exception('FATAL:  password authentication failed for user "app"'),
                        dict(PARAMS, login_user='app', login_port=5432), console=False)
    assert text.startswith("PostgreSQL refused login for user 'app' at 127.0.0.1:5432: check the password and pg_hba.conf")
