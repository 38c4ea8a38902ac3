# -*- coding: utf-8 -*-
"""The pure parts of ./stackctl: argument parsing, verb -> command mapping, messages, tables."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STACKCTL = os.path.join(REPO, 'stackctl')


def _load():
    loader = importlib.machinery.SourceFileLoader('stackctl', STACKCTL)
    spec = importlib.util.spec_from_loader('stackctl', loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


stackctl = _load()

GROUPS = {
    'postgres': ['postgres-1'], 'pgbouncer': ['pgbouncer-1'],
    'redis': ['redis-1', 'redis-2', 'redis-3'], 'sentinel': ['sentinel-1', 'sentinel-2', 'sentinel-3'],
    'backup': ['backup-1'], 'psscript': [], 'ungrouped': [],
}


def parse(*argv, environ=None):
    return stackctl.parse_args(list(argv), environ=environ or {})


def playbook(*argv):
    return stackctl.playbook_command(parse('-i', 'inv', *argv), 'ansible-playbook')


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
    with pytest.raises(stackctl.UsageError) as err:
        parse(*argv)
    assert message in str(err.value)


def test_every_verb_lists_every_valid_verb_on_error():
    with pytest.raises(stackctl.UsageError) as err:
        parse('x')
    for verb in stackctl.VERBS:
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


def test_restore_mapping():
    base = ['ansible-playbook', '-i', 'inv', book('restore.yml')]
    assert playbook('restore', 'postgres') == base + ['-e', 'service=postgres']
    assert playbook('restore', 'redis', '20250101T000000Z-redis') == base + [
        '-e', 'service=redis', '-e', 'backup_id=20250101T000000Z-redis']
    assert playbook('restore', 'postgres', '--time', '2025-01-31 13:45:00+00:00') == base + [
        '-e', 'service=postgres', '-e', '{"target_time": "2025-01-31 13:45:00+00:00"}']
    opts = dict(parse('-i', 'inv', 'restore', 'redis', '--rdb-file', '/d/dump.rdb', '--yes'), confirm=True)
    assert stackctl.playbook_command(opts, 'ansible-playbook') == base + [
        '-e', 'service=redis', '-e', '{"rdb_file": "/d/dump.rdb"}', '-e', 'confirm=yes']
    # --yes alone does not confirm: main() confirms with --yes or on the terminal.
    assert 'confirm=yes' not in playbook('restore', 'postgres', '--yes')


def test_verbs_without_a_playbook():
    for argv in (['status'], ['logs', 'postgres'], ['shell', 'redis'], ['pgbouncer', 'pools'],
                 ['redis', 'info'], ['help']):
        assert playbook(*argv) is None


# ---------------------------------------------------------------- services

def test_resolve_services_and_instances_in_start_order():
    assert stackctl.resolve_instances([], GROUPS)[0] == 'postgres-1'
    assert stackctl.resolve_instances([], GROUPS)[-1] == 'backup-1'
    assert stackctl.resolve_instances(['sentinel', 'postgres'], GROUPS) == [
        'postgres-1', 'sentinel-1', 'sentinel-2', 'sentinel-3']
    assert stackctl.resolve_instances(['redis-2', 'redis'], GROUPS) == ['redis-1', 'redis-2', 'redis-3']


def test_unknown_service_lists_valid_ones():
    with pytest.raises(stackctl.UsageError) as err:
        stackctl.resolve_instances(['mysql'], GROUPS)
    assert str(err.value) == (
        "unknown service 'mysql'; valid services: postgres, pgbouncer, redis, sentinel, backup; instances: "
        "postgres-1, pgbouncer-1, redis-1, redis-2, redis-3, sentinel-1, sentinel-2, sentinel-3, backup-1")


def test_service_missing_from_the_inventory_is_unknown():
    groups = dict(GROUPS, backup=[])
    with pytest.raises(stackctl.UsageError) as err:
        stackctl.resolve_instances(['backup'], groups)
    assert 'valid services: postgres, pgbouncer, redis, sentinel;' in str(err.value)


def test_service_of():
    assert stackctl.service_of('redis-3', GROUPS) == 'redis'
    assert stackctl.service_of('nope', GROUPS) is None


# ---------------------------------------------------------------- shell, docker, secrets

INST = dict(container='s-redis-1', port=6379, address='10.0.0.31', app_database='psscript', app_user='psscript')


def test_shell_never_puts_a_password_in_argv():
    argv, secret = stackctl.redis_cli_argv(INST, 'sentinel', ['INFO', 'sentinel'])
    assert argv == ['docker', 'exec', '-i', 's-redis-1', 'redis-cli', '-p', '6379', '--askpass', 'INFO', 'sentinel']
    assert secret == 'redis_sentinel_password'
    argv, env = stackctl.shell_argv(INST, 'redis', ['PING'], interactive=False)
    assert argv == ['docker', 'exec', '-i', '-e', 'REDISCLI_AUTH', 's-redis-1', 'redis-cli', '-p', '6379',
                    '--no-auth-warning', 'PING']
    assert env == {'REDISCLI_AUTH': 'redis_password'}
    argv, env = stackctl.shell_argv(dict(INST, container='s-pgb'), 'pgbouncer', ['SELECT', '1'], interactive=True)
    assert argv[:6] == ['docker', 'exec', '-i', '-t', '-e', 'PGPASSWORD']
    assert argv[-2:] == ['-c', 'SELECT 1'] and env == {'PGPASSWORD': 'postgres_app_password'}
    argv, env = stackctl.shell_argv(INST, 'sentinel', None, interactive=True)
    assert env == {'REDISCLI_AUTH': 'redis_sentinel_password'} and argv[-1] == '--no-auth-warning'
    argv, env = stackctl.shell_argv(dict(INST, container='s-pg'), 'postgres', None, interactive=False)
    assert argv == ['docker', 'exec', '-i', '-u', 'postgres', 's-pg', 'psql', '-X', '-p', '6379', '-d', 'psscript']
    assert env == {}


def test_shell_refuses_the_backup_service():
    with pytest.raises(stackctl.UsageError):
        stackctl.shell_argv(INST, 'backup', None, interactive=False)


def test_docker_env_local_and_remote():
    assert 'DOCKER_HOST' not in stackctl.docker_env(dict(connection='local'), environ={})
    env = stackctl.docker_env(dict(connection='ssh', ansible_host='db-b', ansible_user='deploy', ansible_port=''),
                              environ={})
    assert env['DOCKER_HOST'] == 'ssh://deploy@db-b'
    env = stackctl.docker_env(dict(connection='ssh', ansible_host='db-c', ansible_user='', ansible_port=2222),
                              environ={})
    assert env['DOCKER_HOST'] == 'ssh://db-c:2222'


@pytest.fixture(autouse=True)
def _own_sys_path(monkeypatch):
    # stackctl.secrets_module() puts the repo's collections path on sys.path: keep it to the test.
    monkeypatch.setattr(sys, 'path', list(sys.path))


def _stack_with_secrets(tmp_path, text):
    path = tmp_path / 'secrets.yml'
    if text is not None:
        path.write_text(text)
    stack = stackctl.Stack({'inventory': str(tmp_path)})
    stack._facts = {'secrets_file': str(path), 'groups': GROUPS, 'instances': {}}
    return stack


def test_secrets_are_read_by_the_collections_parser(tmp_path):
    from ansible_collections.psscript.infra.plugins.module_utils import _secrets
    assert stackctl.secrets_module() is _secrets
    assert not hasattr(stackctl, 'parse_secrets')
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
        with pytest.raises(stackctl.StackError) as err:
            stack.secret('redis_password')
        assert message in str(err.value)
    finally:
        stack.close()


def test_an_emptied_secret_is_missing_not_the_text_none(tmp_path):
    stack = _stack_with_secrets(tmp_path, 'redis_password:\nredis_sentinel_password: s3cret-s3cret\n')
    try:
        assert stack.secret('redis_sentinel_password') == 's3cret-s3cret'
        with pytest.raises(stackctl.StackError, match='has no redis_password .an empty value counts as missing.'):
            stack.secret('redis_password')
    finally:
        stack.close()


def test_live_facts_report_the_secrets_error(tmp_path, monkeypatch):
    """The facts play reads the Redis password through the stack_secrets module; its error is stackctl's."""
    def fake_run(argv, **kwargs):
        out = [a.split('=', 1)[1] for a in argv if a.startswith('stackctl_facts_file=')][0]
        with open(out, 'w', encoding='utf-8') as handle:
            json.dump({'secrets_file': '/s.yml', 'secrets_error': 'the secrets file /s.yml: YAML reads ...',
                       'groups': GROUPS, 'instances': {}}, handle)
        return subprocess.CompletedProcess(argv, 0, stdout='')

    monkeypatch.setattr(stackctl, 'find_tool', lambda name: name)
    monkeypatch.setattr(stackctl.subprocess, 'run', fake_run)
    stack = stackctl.Stack({'inventory': str(tmp_path)})
    try:
        with pytest.raises(stackctl.StackError, match='^the secrets file /s.yml: YAML reads'):
            stack.facts(live=True)
    finally:
        stack.close()
    assert 'psscript.infra.stack_secrets:' in stackctl.FACTS_PLAY and 'from_yaml' not in stackctl.FACTS_PLAY


# ---------------------------------------------------------------- the repo's venv

def test_venv_python_only_when_running_under_another_interpreter(tmp_path):
    venv = tmp_path / 'venv'
    assert stackctl.venv_python(prefix='/usr', venv=str(venv)) is None       # no venv: stay
    (venv / 'bin').mkdir(parents=True)
    python = venv / 'bin' / 'python'
    python.write_text('#!/bin/sh\n')
    python.chmod(0o755)
    assert stackctl.venv_python(prefix='/usr', venv=str(venv)) == str(python)
    assert stackctl.venv_python(prefix=str(venv), venv=str(venv)) is None   # already under it


def test_loading_stackctl_does_not_re_exec(monkeypatch):
    """Only running it as a script re-runs it under the venv; tests load it as a module."""
    def no_exec(path, argv):
        raise AssertionError('loading stackctl must not re-exec')
    monkeypatch.setattr(os, 'execv', no_exec)
    monkeypatch.setattr(sys, 'prefix', '/not/the/venv')
    _load()


# ---------------------------------------------------------------- output

def test_render_table():
    text = stackctl.render_table(['instance', 'role'], [['redis-1', 'master'], ['postgres-1', None]])
    assert text == ('instance    role\n'
                    '----------  ------\n'
                    'redis-1     master\n'
                    'postgres-1  -\n')


def test_status_rows():
    facts = {'order': ['redis-2', 'backup-1'], 'instances': {
        'redis-2': dict(container='s-redis-2', state='running', health='', address='10.0.0.32', port=6380,
                        role='slave'),
        'backup-1': dict(container='s-backup-1', state='missing', health='', address='10.0.0.50', port='', role=''),
    }}
    assert stackctl.status_rows(facts) == [
        ['redis-2', 's-redis-2', 'running', '', '10.0.0.32:6380', 'replica'],
        ['backup-1', 's-backup-1', 'missing', '', '10.0.0.50', ''],
    ]


def test_task_names_and_messages():
    output = [
        'PLAY [x] ***\n',
        'TASK [psscript.infra.stack : Instance names] *********\n',
        'ok: [a]\n',
        'TASK [Report] ***\n',
        'ok: [a] => \n',
        '    msg: a (c-a): stop\n',
        'ok: [b -> localhost] => \n',
        '    msg: |-\n',
        '        line one\n',
        '        line two\n',
        'ok: [c] => \n',
        '    msg:\n',
        '    - item one\n',
        '    - item two\n',
        'RUNNING HANDLER [restart] ***\n',
        'changed: [a] =>\n',
        '    msg: not from debug\n',
    ]
    assert [stackctl.task_name(line) for line in output if stackctl.task_name(line)] == [
        'psscript.infra.stack : Instance names', 'Report', 'restart']
    assert stackctl.result_messages(output) == ['a (c-a): stop', 'line one\nline two', '- item one\n- item two']


def test_help_texts():
    text = stackctl.usage_text()
    for verb in stackctl.VERBS:
        assert '\n  %s ' % verb in text
    assert 'confirm=yes' in stackctl.usage_text('restore')


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
    stack = stackctl.Stack({'inventory': str(inventory)})
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
