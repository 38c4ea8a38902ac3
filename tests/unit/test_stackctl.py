# -*- coding: utf-8 -*-
"""The pure parts of stackctl (cli/stackctl): argument parsing, verb -> command mapping, events, tables."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STACKCTL = os.path.join(REPO, 'stackctl')
sys.path.insert(0, os.path.join(REPO, 'cli'))

from stackctl import args, main as verbs, runner, stack as stackmod  # noqa: E402  (cli/ on the path first)

GROUPS = {
    'postgres': ['postgres-1'], 'pgbouncer': ['pgbouncer-1'],
    'redis': ['redis-1', 'redis-2', 'redis-3'], 'sentinel': ['sentinel-1', 'sentinel-2', 'sentinel-3'],
    'backup': ['backup-1'], 'psscript': [], 'ungrouped': [],
}


def parse(*argv, environ=None):
    return args.parse_args(list(argv), environ=environ or {})


def playbook(*argv):
    return args.playbook_command(parse('-i', 'inv', *argv), 'ansible-playbook')


def book(name):
    return os.path.join(REPO, 'playbooks', name)


# ---------------------------------------------------------------- parsing

def test_inventory_default_env_and_option():
    assert parse('status')['inventory'] == 'inventories/local'
    assert parse('status', environ={'STACKCTL_INVENTORY': '/x'})['inventory'] == '/x'
    assert parse('-i', '/y', 'status', environ={'STACKCTL_INVENTORY': '/x'})['inventory'] == '/y'
    assert parse('--inventory', '/z', 'status')['inventory'] == '/z'


def test_no_verb_and_help():
    assert parse()['verb'] == 'help'
    assert parse('-h')['verb'] == 'help'
    assert parse('help', 'restore')['topic'] == 'restore'


@pytest.mark.parametrize('argv, message', [
    (['frobnicate'], "unknown verb 'frobnicate'; valid verbs: start, stop, restart, status, health"),
    (['help', 'nope'], "unknown verb 'nope'"),
    (['backup', 'mysql'], "unknown backup type 'mysql'; valid: postgres-full, postgres-incremental, redis, all"),
    (['restore', 'mysql'], "unknown restore service 'mysql'; valid: postgres, redis"),
    (['pgbouncer', 'servers'], "unknown pgbouncer view 'servers'; valid: pools, stats, clients, databases"),
    (['redis', 'monitor'], "unknown redis view 'monitor'; valid: sentinel, info, replication"),
    (['logs'], 'the following arguments are required: service'),
    (['status', '--bogus'], 'unrecognized arguments: --bogus'),
    (['restore', 'postgres', '20250101T000000Z-full', '--time', '2025-01-01T00:00:00Z'], 'either BACKUP_ID or --time'),
    (['logs', 'postgres', '--tail', 'lots'], '--tail takes a number'),
])
def test_usage_errors(argv, message):
    with pytest.raises(args.UsageError) as err:
        parse(*argv)
    assert message in str(err.value)


def test_every_verb_lists_every_valid_verb_on_error():
    with pytest.raises(args.UsageError) as err:
        parse('x')
    for verb in args.VERBS:
        assert verb in str(err.value)


def test_shell_command_after_double_dash():
    opts = parse('shell', 'postgres', '--', 'SELECT', '1')
    assert opts['service'] == 'postgres' and opts['command'] == ['SELECT', '1']
    assert parse('shell', 'redis')['command'] is None


def test_options_after_the_verb():
    opts = parse('backup', 'all', '-v', '-e', 'a=1')
    assert opts['verbose'] and opts['extra_vars'] == ['a=1']
    assert parse('logs', 'redis-2', '-f', '--tail', '50') == dict(
        inventory='inventories/local', verbose=False, extra_vars=[], verb='logs', service='redis-2',
        follow=True, tail='50')


# ---------------------------------------------------------------- verb -> command

def test_start_all_is_site_yml_and_start_service_is_no_playbook():
    assert playbook('start') == ['ansible-playbook', '-i', 'inv', book('site.yml')]
    assert playbook('start', 'redis') is None
    assert playbook('stop') is None and playbook('restart', 'pgbouncer') is None


@pytest.mark.parametrize('kind, expected', [
    ('postgres-full', 'full'), ('postgres-incremental', 'incremental'), ('redis', 'redis'), ('all', 'all'),
])
def test_backup_types(kind, expected):
    assert playbook('backup', kind) == ['ansible-playbook', '-i', 'inv', book('backup.yml'), '-e', 'type=' + expected]


def test_report_playbooks():
    assert playbook('backups') == ['ansible-playbook', '-i', 'inv', book('backups.yml')]
    assert playbook('drill') == ['ansible-playbook', '-i', 'inv', book('drill.yml')]
    assert playbook('switchover') == ['ansible-playbook', '-i', 'inv', book('switchover.yml')]
    assert playbook('health') == ['ansible-playbook', '-i', 'inv', book('health.yml')]
    assert playbook('health', '--textfile', '/t/p.prom') == [
        'ansible-playbook', '-i', 'inv', book('health.yml'), '-e', 'health_textfile=/t/p.prom']
    assert playbook('-e', 'x=1', 'drill') == ['ansible-playbook', '-i', 'inv', book('drill.yml'), '-e', 'x=1']


def test_images_and_refresh():
    assert playbook('images') == ['ansible-playbook', '-i', 'inv', book('images.yml')]
    assert playbook('images', '--refresh') == ['ansible-playbook', '-i', 'inv', book('refresh.yml')]


def test_restore_mapping():
    base = ['ansible-playbook', '-i', 'inv', book('restore.yml')]
    assert playbook('restore', 'postgres') == base + ['-e', 'service=postgres']
    assert playbook('restore', 'redis', '20250101T000000Z-redis') == base + [
        '-e', 'service=redis', '-e', 'backup_id=20250101T000000Z-redis']
    assert playbook('restore', 'postgres', '--time', '2025-01-31 13:45:00+00:00') == base + [
        '-e', 'service=postgres', '-e', '{"target_time": "2025-01-31 13:45:00+00:00"}']
    opts = dict(parse('-i', 'inv', 'restore', 'redis', '--rdb-file', '/d/dump.rdb', '--yes'), confirm=True)
    assert args.playbook_command(opts, 'ansible-playbook') == base + [
        '-e', 'service=redis', '-e', '{"rdb_file": "/d/dump.rdb"}', '-e', 'confirm=yes']
    # --yes alone does not confirm: main() confirms with --yes or on the terminal.
    assert 'confirm=yes' not in playbook('restore', 'postgres', '--yes')


def test_verbs_without_a_playbook():
    for argv in (['status'], ['logs', 'postgres'], ['shell', 'redis'], ['pgbouncer', 'pools'],
                 ['redis', 'info'], ['help']):
        assert playbook(*argv) is None


# ---------------------------------------------------------------- services

def test_resolve_services_and_instances_in_start_order():
    assert args.resolve_instances([], GROUPS)[0] == 'postgres-1'
    assert args.resolve_instances([], GROUPS)[-1] == 'backup-1'
    assert args.resolve_instances(['sentinel', 'postgres'], GROUPS) == [
        'postgres-1', 'sentinel-1', 'sentinel-2', 'sentinel-3']
    assert args.resolve_instances(['redis-2', 'redis'], GROUPS) == ['redis-1', 'redis-2', 'redis-3']


def test_unknown_service_lists_valid_ones():
    with pytest.raises(args.UsageError) as err:
        args.resolve_instances(['mysql'], GROUPS)
    assert str(err.value) == (
        "unknown service 'mysql'; valid services: postgres, pgbouncer, redis, sentinel, backup; instances: "
        "postgres-1, pgbouncer-1, redis-1, redis-2, redis-3, sentinel-1, sentinel-2, sentinel-3, backup-1")


def test_service_missing_from_the_inventory_is_unknown():
    groups = dict(GROUPS, backup=[])
    with pytest.raises(args.UsageError) as err:
        args.resolve_instances(['backup'], groups)
    assert 'valid services: postgres, pgbouncer, redis, sentinel;' in str(err.value)


def test_service_of():
    assert args.service_of('redis-3', GROUPS) == 'redis'
    assert args.service_of('nope', GROUPS) is None


# ---------------------------------------------------------------- shell, docker, secrets

INST = dict(container='s-redis-1', port=6379, address='10.0.0.31', app_database='psscript', app_user='psscript')


def test_shell_never_puts_a_password_in_argv():
    argv, secret = stackmod.redis_cli_argv(INST, 'sentinel', ['INFO', 'sentinel'])
    assert argv == ['docker', 'exec', '-i', 's-redis-1', 'redis-cli', '-p', '6379', '--askpass', 'INFO', 'sentinel']
    assert secret == 'redis_sentinel_password'
    argv, env = stackmod.shell_argv(INST, 'redis', ['PING'], interactive=False)
    assert argv == ['docker', 'exec', '-i', '-e', 'REDISCLI_AUTH', 's-redis-1', 'redis-cli', '-p', '6379',
                    '--user', 'admin', '--no-auth-warning', 'PING']
    assert env == {'REDISCLI_AUTH': 'redis_user_admin_password'}
    argv, secret = stackmod.redis_cli_argv(INST, 'redis', ['INFO'])
    assert argv[-4:] == ['--user', 'admin', '--askpass', 'INFO'] and secret == 'redis_user_admin_password'
    argv, env = stackmod.shell_argv(dict(INST, container='s-pgb'), 'pgbouncer', ['SELECT', '1'], interactive=True)
    assert argv[:6] == ['docker', 'exec', '-i', '-t', '-e', 'PGPASSWORD']
    # Over TLS, checking PgBouncer's certificate against the stack CA in its container.
    assert argv[6:11] == ['-e', 'PGSSLMODE=verify-full', '-e', 'PGSSLROOTCERT=/etc/pgbouncer/tls/ca.crt', 's-pgb']
    assert argv[-2:] == ['-c', 'SELECT 1'] and env == {'PGPASSWORD': 'postgres_app_password'}
    argv, env = stackmod.shell_argv(INST, 'sentinel', None, interactive=True)
    assert env == {'REDISCLI_AUTH': 'redis_sentinel_password'} and argv[-1] == '--no-auth-warning'
    argv, env = stackmod.shell_argv(dict(INST, container='s-pg'), 'postgres', None, interactive=False)
    assert argv == ['docker', 'exec', '-i', '-u', 'postgres', 's-pg', 'psql', '-X', '-p', '6379', '-d', 'psscript']
    assert env == {}


def test_redis_cli_speaks_tls_where_the_instance_serves_it():
    tls = ['--tls', '--cacert', '/etc/psscript/tls/ca.crt']
    inst = dict(INST, redis_cli_tls=tls)
    argv, dummy = stackmod.redis_cli_argv(inst, 'sentinel', ['SENTINEL', 'masters'])
    assert argv == ['docker', 'exec', '-i', 's-redis-1', 'redis-cli', '-p', '6379'] + tls + ['--askpass', 'SENTINEL', 'masters']
    argv, dummy = stackmod.shell_argv(inst, 'redis', ['PING'], interactive=False)
    assert argv[6:12] == ['redis-cli', '-p', '6379'] + tls and argv[-4:] == ['--user', 'admin', '--no-auth-warning', 'PING']


def test_shell_refuses_the_backup_service():
    with pytest.raises(args.UsageError):
        stackmod.shell_argv(INST, 'backup', None, interactive=False)


def test_docker_env_local_and_remote():
    assert 'DOCKER_HOST' not in stackmod.docker_env(dict(connection='local'), environ={})
    env = stackmod.docker_env(dict(connection='ssh', ansible_host='db-b', ansible_user='deploy', ansible_port=''),
                              environ={})
    assert env['DOCKER_HOST'] == 'ssh://deploy@db-b'
    env = stackmod.docker_env(dict(connection='ssh', ansible_host='db-c', ansible_user='', ansible_port=2222),
                              environ={})
    assert env['DOCKER_HOST'] == 'ssh://db-c:2222'


@pytest.fixture(autouse=True)
def _own_sys_path(monkeypatch):
    # stack.shared() puts the repo's collections path on sys.path: keep it to the test.
    monkeypatch.setattr(sys, 'path', list(sys.path))


def _stack_with_secrets(tmp_path, text):
    path = tmp_path / 'secrets.yml'
    if text is not None:
        path.write_text(text)
    stack = stackmod.Stack({'inventory': str(tmp_path)})
    stack._facts = {'secrets_file': str(path), 'groups': GROUPS, 'instances': {}}
    return stack


def test_secrets_are_read_by_the_collections_parser(tmp_path):
    from ansible_collections.psscript.infra.plugins.module_utils import _secrets
    from ansible_collections.psscript.infra.plugins.module_utils import _sentinel
    assert stackmod.shared('_secrets') is _secrets and stackmod.shared('_sentinel') is _sentinel
    assert not hasattr(stackmod, 'parse_secrets')
    stack = _stack_with_secrets(tmp_path, "# Generated\nredis_password: abc-DEF_1\npgbouncer_stats_password: 'q1'\n")
    try:
        assert stack.secrets() == {'redis_password': 'abc-DEF_1', 'pgbouncer_stats_password': 'q1'}
        assert stack.secret('pgbouncer_stats_password') == 'q1'
    finally:
        stack.close()


@pytest.mark.parametrize('text, message', [
    ('redis_password: 0123\n', "YAML reads the value of redis_password as an integer, not as the text written; "
                                "quote it (redis_password: '...') to keep it, or delete the line"),
    ('- a list\n', 'must hold a mapping of name: password'),
    (None, 'does not exist (deployed with this inventory?)'),
])
def test_a_bad_secrets_file_is_a_stack_error(tmp_path, text, message):
    stack = _stack_with_secrets(tmp_path, text)
    try:
        with pytest.raises(stackmod.StackError) as err:
            stack.secret('redis_password')
        assert message in str(err.value)
    finally:
        stack.close()


def test_an_emptied_secret_is_missing_not_the_text_none(tmp_path):
    stack = _stack_with_secrets(tmp_path, 'redis_password:\nredis_sentinel_password: s3cret-s3cret\n')
    try:
        assert stack.secret('redis_sentinel_password') == 's3cret-s3cret'
        with pytest.raises(stackmod.StackError, match='has no redis_password .an empty value counts as missing.'):
            stack.secret('redis_password')
    finally:
        stack.close()


def test_live_facts_report_the_secrets_error(tmp_path, monkeypatch):
    """playbooks/instances.yml reads the Redis password through the stack_secrets module; its error is stackctl's."""
    def fake_run(argv):
        out = [a.split('=', 1)[1] for a in argv if a.startswith('instances_file=')][0]
        with open(out, 'w', encoding='utf-8') as handle:
            json.dump({'secrets_file': '/s.yml', 'secrets_error': 'the secrets file /s.yml: YAML reads ...',
                       'groups': GROUPS, 'instances': {}}, handle)
        assert argv[3] == os.path.join(REPO, 'playbooks', 'instances.yml') and 'instances_live=true' in argv
        return 0, None

    monkeypatch.setattr(stackmod, 'find_tool', lambda name: name)
    monkeypatch.setattr(stackmod, 'run_quiet', fake_run)
    stack = stackmod.Stack({'inventory': str(tmp_path)})
    try:
        with pytest.raises(stackmod.StackError, match='^the secrets file /s.yml: YAML reads'):
            stack.facts(live=True)
    finally:
        stack.close()
    with open(os.path.join(REPO, 'playbooks', 'instances.yml'), encoding='utf-8') as handle:
        play = handle.read()
    assert 'psscript.infra.stack_secrets:' in play and 'from_yaml' not in play and 'REDISCLI_AUTH' not in play


def test_the_package_holds_no_play_text():
    for name in os.listdir(os.path.join(REPO, 'cli', 'stackctl')):
        if name.endswith('.py'):
            with open(os.path.join(REPO, 'cli', 'stackctl', name), encoding='utf-8') as handle:
                text = handle.read()
            assert 'hosts:' not in text and 'ansible.builtin.' not in text.replace('ansible.builtin.debug', '').replace(
                'ansible.builtin.default', ''), name


INSTANCES = {'redis-1': dict(address='10.0.0.31', port=6379), 'redis-2': dict(address='10.0.0.32', port=6380),
             'redis-3': dict(address='10.0.0.33', port=6381)}


@pytest.mark.parametrize('answers, expected', [
    # The majority decides, not the first Sentinel that answers (it may be the stale one).
    ({'sentinel-1': '10.0.0.31:6379', 'sentinel-2': '10.0.0.32:6380', 'sentinel-3': '10.0.0.32:6380'}, 'redis-2'),
    ({'sentinel-1': None, 'sentinel-2': '10.0.0.33:6381', 'sentinel-3': '10.0.0.33:6381'}, 'redis-3'),
])
def test_redis_master_is_the_sentinel_majoritys(monkeypatch, answers, expected):
    stack = stackmod.Stack({'inventory': '/inv'})
    stack._facts = {'groups': GROUPS, 'instances': INSTANCES, 'master_name': 'mymaster'}

    def redis_cli(name, argv):
        if answers[name] is None:
            raise stackmod.StackError('%s: unreachable' % name)
        return '%s\n%s\n' % tuple(answers[name].split(':'))
    monkeypatch.setattr(stack, 'redis_cli', redis_cli)
    try:
        assert stack.redis_master() == expected
    finally:
        stack.close()


def test_redis_master_without_a_majority_is_an_error(monkeypatch):
    stack = stackmod.Stack({'inventory': '/inv'})
    stack._facts = {'groups': GROUPS, 'instances': INSTANCES, 'master_name': 'mymaster'}
    answers = {'sentinel-1': '10.0.0.31 6379', 'sentinel-2': '10.0.0.32 6380', 'sentinel-3': ''}
    monkeypatch.setattr(stack, 'redis_cli', lambda name, argv: answers[name])
    try:
        with pytest.raises(stackmod.StackError, match='no Sentinel majority names a master of mymaster'):
            stack.redis_master()
    finally:
        stack.close()


# ---------------------------------------------------------------- the entry point and the venv

def _entry():
    """The root ./stackctl's functions, without running it (run_name is not __main__)."""
    return runpy.run_path(STACKCTL, run_name='stackctl_entry')


def test_venv_python_only_when_running_under_another_interpreter(tmp_path):
    venv_python = _entry()['venv_python']
    venv = tmp_path / 'venv'
    assert venv_python(prefix='/usr', venv=str(venv)) is None       # no venv: stay
    (venv / 'bin').mkdir(parents=True)
    python = venv / 'bin' / 'python'
    python.write_text('#!/bin/sh\n')
    python.chmod(0o755)
    assert venv_python(prefix='/usr', venv=str(venv)) == str(python)
    assert venv_python(prefix=str(venv), venv=str(venv)) is None   # already under it


def test_loading_the_entry_point_does_not_re_exec(monkeypatch):
    """Only running it as a script re-runs it under the venv."""
    def no_exec(path, argv):
        raise AssertionError('loading stackctl must not re-exec')
    monkeypatch.setattr(os, 'execv', no_exec)
    monkeypatch.setattr(sys, 'prefix', '/not/the/venv')
    _entry()


# ---------------------------------------------------------------- output

def test_render_table():
    text = verbs.render_table(['instance', 'role'], [['redis-1', 'master'], ['postgres-1', None]])
    assert text == ('instance    role\n'
                    '----------  ------\n'
                    'redis-1     master\n'
                    'postgres-1  -\n')


def test_status_rows():
    facts = {'order': ['redis-2', 'backup-1'], 'instances': {
        'redis-2': dict(container='s-redis-2', state='running', health='', address='10.0.0.32', port=6380,
                        role='slave', packages='redis-server=8.0.2-3 redis-sentinel=8.0.2-3'),
        'backup-1': dict(container='s-backup-1', state='missing', health='', address='10.0.0.50', port='', role=''),
    }}
    assert verbs.status_rows(facts) == [
        ['redis-2', 's-redis-2', 'running', '', '10.0.0.32:6380', 'replica', 'redis-server=8.0.2-3 redis-sentinel=8.0.2-3'],
        ['backup-1', 's-backup-1', 'missing', '', '10.0.0.50', '', ''],
    ]


def _event(name, **fields):
    return json.dumps(dict(fields, _event=name))


def test_events_tasks_messages_and_the_failure_that_ended_the_run():
    lines = [
        '[WARNING]: not an event',
        _event('v2_playbook_on_play_start', play={'name': 'x'}),
        _event('v2_playbook_on_task_start', task={'name': 'psscript.infra.stack : Instance names'}),
        _event('v2_runner_on_ok', task={'name': 'Report'}, hosts={'a': {'action': 'ansible.builtin.debug',
                                                                         'msg': 'a (c-a): stop'}}),
        _event('v2_runner_on_ok', task={'name': 'Table'}, hosts={'b': {'action': 'debug', 'msg': ['line one', 'line two']}}),
        _event('v2_runner_on_ok', task={'name': 'Loop'}, hosts={'c': {'action': 'ansible.builtin.debug', 'results': [
            {'msg': 'item one'}, {'msg': ''}, {'msg': 'item two'}]}}),
        _event('v2_runner_on_ok', task={'name': 'Data'}, hosts={'c': {'action': 'ansible.builtin.debug',
                                                                       'backup_catalog': {'x': 1}}}),
        _event('v2_runner_on_ok', task={'name': 'Not debug'}, hosts={'a': {'action': 'command', 'msg': 'no'}}),
        # A failure that a rescue handles comes first; the one that ended the run last.
        _event('v2_runner_on_failed', task={'name': 'Plan'}, hosts={'a': {'msg': 'inner', 'failed': True}}),
        _event('v2_runner_on_failed', task={'name': 'Say why'},
               hosts={'a': {'msg': 'No restore: Backup X is not\n  in the catalog. Nothing was changed.', 'failed': True}}),
        '{"not": "an event"}',
    ]
    outcome = runner.Outcome()
    started = [outcome.add(e) for e in (runner.parse_event(line) for line in lines) if e is not None]
    assert [n for n in started if n] == ['psscript.infra.stack : Instance names']
    assert outcome.messages == ['a (c-a): stop', 'line one\nline two', 'item one', 'item two']
    assert outcome.error() == 'No restore: Backup X is not in the catalog. Nothing was changed.'


def test_an_error_without_an_event_comes_from_stderr():
    outcome = runner.Outcome()
    outcome.rc, outcome.stderr = 1, ("[WARNING]: x\n[ERROR]: Unable to parse /inv as an inventory source\n"
                                     "Origin: /inv\n")
    assert outcome.error() == 'Unable to parse /inv as an inventory source'
    outcome.stderr = 'ERROR! the playbook: x could not be found\n'
    assert outcome.error() == 'the playbook: x could not be found'
    outcome.stderr = ''
    assert outcome.error() == 'ansible-playbook exited 1'
    failed = runner.failure(json.loads(_event('v2_runner_on_unreachable', task={'name': 'Container'},
                                              hosts={'redis-2': {'unreachable': True}})))
    assert failed == ('Container', 'redis-2', 'failed')


def test_run_playbook_shows_progress_messages_and_one_line_on_failure(tmp_path, capsys):
    """A real subprocess printing the callback's events: the operator sees tasks, the report, one error line."""
    script = tmp_path / 'fake-playbook'
    events = [_event('v2_playbook_on_task_start', task={'name': 'Check'}),
              _event('v2_runner_on_ok', task={'name': 'Plan'}, hosts={'h': {'action': 'debug', 'msg': ['Would restore X']}}),
              _event('v2_runner_on_failed', task={'name': 'Refuse'}, hosts={'h': {'msg': 'Restore refused: damaged'}})]
    script.write_text('#!/bin/sh\ncat <<"EOF"\n%s\nEOF\necho "[WARNING]: noise" >&2\nexit 2\n' % '\n'.join(events))
    script.chmod(0o755)
    rc = runner.run_playbook([str(script)], progress=True, verbose=False)
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == 'TASK 1: Check\nWould restore X\n'
    assert err.startswith('stackctl: Restore refused: damaged (failed after 1 tasks in ') and err.count('\n') == 1


def test_help_texts():
    text = args.usage_text()
    for verb in args.VERBS:
        assert '\n  %s ' % verb in text
    assert 'confirm=yes' in args.usage_text('restore')


# ---------------------------------------------------------------- the executable

def _run(*argv):
    return subprocess.run([sys.executable, STACKCTL] + list(argv), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, check=False)


def test_executable_unknown_verb_exits_2():
    proc = _run('frobnicate')
    assert proc.returncode == 2
    assert 'valid verbs: start, stop, restart' in proc.stderr


def test_executable_help_exits_0():
    proc = _run('help', 'shell')
    assert proc.returncode == 0 and 'redis-cli' in proc.stdout


VENV_PYTHON = os.path.join(REPO, '.venv', 'bin', 'python')
OTHER_PYTHON = getattr(sys, '_base_executable', sys.executable)


@pytest.mark.skipif(OTHER_PYTHON == sys.executable or not os.path.exists(VENV_PYTHON),
                    reason="needs the repo's venv and another interpreter")
def test_executable_started_by_another_python_re_runs_under_the_venv():
    probe = textwrap.dedent('''
        import os, runpy, sys
        def fake_execv(path, argv):
            print('EXEC', path, argv[1:])
            sys.exit(0)
        os.execv = fake_execv
        sys.argv = [%r, 'help']
        runpy.run_path(%r, run_name='__main__')
    ''' % (STACKCTL, STACKCTL))
    proc = subprocess.run([OTHER_PYTHON, '-c', probe], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, check=False)
    assert proc.stdout == 'EXEC %s %r\n' % (VENV_PYTHON, [os.path.realpath(STACKCTL), 'help']), proc.stderr
    proc = subprocess.run([OTHER_PYTHON, STACKCTL, 'help', 'shell'], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, check=False)
    assert proc.returncode == 0 and 'redis-cli' in proc.stdout


def test_executable_missing_inventory_exits_2():
    proc = _run('-i', '/nonexistent/inventory', 'status')
    assert proc.returncode == 2 and 'not found' in proc.stderr


def _stack_for(inventory):
    stack = stackmod.Stack({'inventory': str(inventory)})
    return stack


def test_facts_cache_key_follows_the_inventory(tmp_path):
    inventory = tmp_path / 'inv'
    (inventory / 'group_vars').mkdir(parents=True)
    (inventory / 'hosts.yml').write_text('psscript: {hosts: {redis-1: {}}}\n')
    stack = _stack_for(inventory)
    try:
        first = stack._cache_path()
        assert first is not None and first == stack._cache_path()
        (inventory / 'group_vars' / 'all.yml').write_text('stack_name: other\n')
        second = stack._cache_path()
        assert second != first
        (inventory / 'hosts.yml').write_text('psscript: {hosts: {redis-2: {}}}\n')
        assert stack._cache_path() not in (first, second)
    finally:
        stack.close()


def test_dynamic_inventory_is_never_cached(tmp_path):
    script = tmp_path / 'inventory.py'
    script.write_text('#!/bin/sh\necho {}\n')
    script.chmod(0o755)
    stack = _stack_for(script)
    try:
        assert stack._cache_path() is None
    finally:
        stack.close()
