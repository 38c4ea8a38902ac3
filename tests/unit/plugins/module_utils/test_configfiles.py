# -*- coding: utf-8 -*-
from __future__ import annotations

import base64
import os
import stat

import pytest

from ansible_collections.psscript.infra.plugins.module_utils import _configfiles as cf

UID, GID = os.getuid(), os.getgid()


def mode_of(path):
    return stat.S_IMODE(os.lstat(str(path)).st_mode)


# ---- pure logic


@pytest.mark.parametrize('value, mode', [(None, None), ('0600', 0o600), ('755', 0o755), (0o640, 0o640), (' 0700 ', 0o700)])
def test_parse_mode(value, mode):
    assert cf.parse_mode(value) == mode


@pytest.mark.parametrize('value', ['u+rw', '0999', '17777', True, -1])
def test_parse_mode_refuses_what_is_not_an_octal_mode(value):
    with pytest.raises(cf.ConfigFilesError, match='mode'):
        cf.parse_mode(value)


def test_resolve_id_takes_numbers_as_they_are_and_looks_names_up():
    looked_up = []

    def lookup(name):
        looked_up.append(name)
        if name == 'redis':
            return ('redis', 'x', 998)
        raise KeyError(name)

    assert cf.resolve_id(None, 'owner', lookup) is None
    assert cf.resolve_id('999', 'owner', lookup) == 999
    assert cf.resolve_id(0, 'group', lookup) == 0
    assert cf.resolve_id('redis', 'owner', lookup) == 998
    with pytest.raises(cf.ConfigFilesError, match="group 'nogroup' does not exist on the target"):
        cf.resolve_id('nogroup', 'group', lookup)
    assert looked_up == ['redis', 'nogroup']


def test_attribute_changes_only_for_wanted_attributes_that_differ():
    current = {'kind': 'file', 'mode': 0o644, 'uid': 0, 'gid': 0}
    assert cf.attribute_changes(current) == {}
    assert cf.attribute_changes(current, mode=0o644, uid=0, gid=0) == {}
    assert cf.attribute_changes(current, mode=0o600, gid=999) == {'mode': (0o644, 0o600), 'gid': (0, 999)}


FILE = {'kind': 'file', 'mode': 0o600, 'uid': 999, 'gid': 999, 'sha1': 'aaa'}


@pytest.mark.parametrize('current, kwargs, action', [
    ({'kind': 'absent'}, {}, 'created'),
    (FILE, dict(want_sha1='aaa', mode=0o600, uid=999, gid=999), 'unchanged'),
    (FILE, dict(want_sha1='bbb', mode=0o600), 'content'),
    (FILE, dict(want_sha1='aaa', mode=0o644), 'attributes'),
    (FILE, dict(want_sha1='bbb', mode=0o644, force=False), 'kept'),
    ({'kind': 'absent'}, dict(force=False), 'created'),
    (FILE, dict(state='absent'), 'removed'),
    ({'kind': 'absent'}, dict(state='absent'), 'absent'),
])
def test_plan_file(current, kwargs, action):
    assert cf.plan_file('/x', current, **kwargs)[0] == action


def test_plan_file_content_change_carries_the_attribute_changes():
    assert cf.plan_file('/x', FILE, want_sha1='bbb', mode=0o640) == ('content', {'mode': (0o600, 0o640)})


@pytest.mark.parametrize('kind', ['directory', 'link', 'other'])
def test_plan_file_refuses_what_is_not_a_file(kind):
    with pytest.raises(cf.ConfigFilesError, match='/x exists as a'):
        cf.plan_file('/x', {'kind': kind, 'mode': 0o755, 'uid': 0, 'gid': 0})


def test_plan_directory():
    current = {'kind': 'directory', 'mode': 0o755, 'uid': 0, 'gid': 0}
    assert cf.plan_directory('/d', {'kind': 'absent'}, 0o700) == ('created', {})
    assert cf.plan_directory('/d', current, 0o755, 0, 0) == ('unchanged', {})
    assert cf.plan_directory('/d', current, 0o700) == ('attributes', {'mode': (0o755, 0o700)})
    with pytest.raises(cf.ConfigFilesError, match='/d exists as a file, not a directory'):
        cf.plan_directory('/d', {'kind': 'file', 'mode': 0o644, 'uid': 0, 'gid': 0})


# ---- on real files


def request(root, **file_overrides):
    """A service's request: two directories (one with a missing parent) and three files."""
    conf = dict({'dest': str(root / 'svc' / 'app.conf'), 'content': 'port 1\n', 'mode': '0600'}, **file_overrides)
    return (
        [{'path': str(root / 'svc'), 'mode': '0700'}, {'path': str(root / 'svc' / 'state' / 'deep'), 'mode': '0750'}],
        [conf,
         {'dest': str(root / 'svc' / 'password'), 'content': 'secret\n', 'mode': '0600', 'secret': True},
         {'dest': str(root / 'svc' / 'bootstrap.conf'), 'content': 'first\n', 'mode': '0644', 'force': False}],
    )


def test_first_run_creates_everything_and_a_second_changes_nothing(tmp_path):
    directories, files = request(tmp_path)
    result = cf.converge(directories, files, owner=str(UID), group=str(GID))
    assert result['changed']
    assert result['changed_directories'] == [d['path'] for d in directories]
    assert result['changed_files'] == [f['dest'] for f in files]
    # Missing parents get the attributes of the directory that needed them, as ansible.builtin.file does.
    assert mode_of(tmp_path / 'svc' / 'state') == 0o750
    assert mode_of(tmp_path / 'svc' / 'state' / 'deep') == 0o750
    assert mode_of(tmp_path / 'svc') == 0o700
    assert (tmp_path / 'svc' / 'app.conf').read_text() == 'port 1\n'
    assert mode_of(tmp_path / 'svc' / 'app.conf') == 0o600
    assert mode_of(tmp_path / 'svc' / 'bootstrap.conf') == 0o644

    again = cf.converge(directories, files, owner=str(UID), group=str(GID))
    assert not again['changed']
    assert again['changed_files'] == [] and again['changed_directories'] == []
    assert [f['action'] for f in again['files']] == ['unchanged', 'unchanged', 'kept']


def test_changed_content_is_replaced_atomically_and_keeps_the_mode_it_is_not_told(tmp_path):
    directories, files = request(tmp_path)
    cf.converge(directories, files)
    os.chmod(str(tmp_path / 'svc' / 'app.conf'), 0o640)
    directories, files = request(tmp_path, content='port 2\n', mode=None)
    result = cf.converge(directories, files)
    assert result['changed_files'] == [files[0]['dest']]
    assert result['files'][0] == {'dest': files[0]['dest'], 'action': 'content'}
    assert (tmp_path / 'svc' / 'app.conf').read_text() == 'port 2\n'
    assert mode_of(tmp_path / 'svc' / 'app.conf') == 0o640
    assert sorted(os.listdir(str(tmp_path / 'svc'))) == ['app.conf', 'bootstrap.conf', 'password', 'state']


def test_attributes_alone_are_fixed_in_place(tmp_path):
    directories, files = request(tmp_path)
    cf.converge(directories, files)
    conf = tmp_path / 'svc' / 'app.conf'
    inode = os.stat(str(conf)).st_ino
    os.chmod(str(conf), 0o644)
    os.chmod(str(tmp_path / 'svc'), 0o755)
    result = cf.converge(directories, files)
    assert result['changed_files'] == [str(conf)]
    assert result['changed_directories'] == [str(tmp_path / 'svc')]
    assert mode_of(conf) == 0o600 and mode_of(tmp_path / 'svc') == 0o700
    assert os.stat(str(conf)).st_ino == inode


def test_force_false_leaves_an_existing_file_alone(tmp_path):
    directories, files = request(tmp_path)
    cf.converge(directories, files)
    boot = tmp_path / 'svc' / 'bootstrap.conf'
    boot.write_text('rewritten by the service\n')
    os.chmod(str(boot), 0o600)
    result = cf.converge(directories, files)
    assert result['files'][2]['action'] == 'kept' and not result['changed']
    assert boot.read_text() == 'rewritten by the service\n' and mode_of(boot) == 0o600


def test_state_absent_removes_the_file_once(tmp_path):
    stale = tmp_path / 's3.json'
    stale.write_text('{}\n')
    files = [{'dest': str(stale), 'state': 'absent'}]
    assert cf.converge([], files)['files'] == [{'dest': str(stale), 'action': 'removed'}]
    assert not stale.exists()
    assert cf.converge([], files)['files'] == [{'dest': str(stale), 'action': 'absent'}]


def test_check_mode_reports_what_would_change_and_writes_nothing(tmp_path):
    directories, files = request(tmp_path)
    result = cf.converge(directories, files, check_mode=True, want_diff=True)
    assert result['changed_files'] == [f['dest'] for f in files]
    assert result['changed_directories'] == [d['path'] for d in directories]
    assert os.listdir(str(tmp_path)) == []

    cf.converge(directories, files)
    directories, files = request(tmp_path, content='port 2\n')
    before = (tmp_path / 'svc' / 'app.conf').read_text()
    result = cf.converge(directories, files, check_mode=True)
    assert result['changed_files'] == [files[0]['dest']]
    assert (tmp_path / 'svc' / 'app.conf').read_text() == before


def test_diff_never_carries_a_secret_and_carries_the_old_content_of_the_others(tmp_path):
    directories, files = request(tmp_path)
    cf.converge(directories, files)
    directories, files = request(tmp_path, content='port 2\n')
    files[1]['content'] = 'new secret\n'
    result = cf.converge(directories, files, want_diff=True)
    conf, password = [entry for entry in result['diff'] if entry.get('before_header', '').endswith('app.conf')
                      or 'password' in entry.get('prepared', '')]
    assert base64.b64decode(conf['before_b64']) == b'port 1\n' and conf['file_index'] == 0
    assert 'after' not in conf
    assert password == {'prepared': '%s: secret content changed (not shown)' % files[1]['dest']}
    assert 'new secret' not in repr(result) and 'secret\\n' not in repr(result)


def test_no_diff_without_diff_mode(tmp_path):
    directories, files = request(tmp_path)
    assert 'diff' not in cf.converge(directories, files)


def test_a_bad_entry_fails_before_anything_is_written(tmp_path):
    directories, files = request(tmp_path)
    files[-1]['mode'] = 'u=rw'
    with pytest.raises(cf.ConfigFilesError, match='symbolic modes are not supported'):
        cf.converge(directories, files)
    assert os.listdir(str(tmp_path)) == []


def test_each_file_is_listed_once(tmp_path):
    files = [{'dest': str(tmp_path / 'a'), 'content': '1'}, {'dest': str(tmp_path / 'a'), 'content': '2'}]
    with pytest.raises(cf.ConfigFilesError, match='listed twice'):
        cf.converge([], files)


def test_a_missing_parent_directory_is_named(tmp_path):
    with pytest.raises(cf.ConfigFilesError, match='parent directory is missing'):
        cf.converge([], [{'dest': str(tmp_path / 'nowhere' / 'a.conf'), 'content': 'x'}])


def test_a_symlink_is_never_written_through(tmp_path):
    target = tmp_path / 'target'
    target.write_text('kept\n')
    (tmp_path / 'link').symlink_to(target)
    with pytest.raises(cf.ConfigFilesError, match='exists as a link'):
        cf.converge([], [{'dest': str(tmp_path / 'link'), 'content': 'x'}])
    assert target.read_text() == 'kept\n'


def test_content_is_required_for_a_present_file(tmp_path):
    with pytest.raises(cf.ConfigFilesError, match='give its content'):
        cf.converge([], [{'dest': str(tmp_path / 'a')}])


@pytest.mark.skipif(os.geteuid() != 0, reason='changing a file owner needs root')
def test_owner_and_group_of_new_and_existing_files(tmp_path):
    files = [{'dest': str(tmp_path / 'a'), 'content': 'x', 'owner': '999', 'group': '998', 'mode': '0600'}]
    cf.converge([], files)
    st = os.stat(str(tmp_path / 'a'))
    assert (st.st_uid, st.st_gid) == (999, 998)
    os.chown(str(tmp_path / 'a'), 0, 0)
    assert cf.converge([], files)['files'][0]['action'] == 'attributes'
    st = os.stat(str(tmp_path / 'a'))
    assert (st.st_uid, st.st_gid) == (999, 998)


def test_a_large_file_is_not_diffed(tmp_path):
    big = 'x' * (cf.DIFF_MAX_BYTES + 1)
    result = cf.converge([], [{'dest': str(tmp_path / 'big'), 'content': big}], want_diff=True)
    assert result['diff'] == [{'prepared': '%s: content changed (larger than %d bytes, not shown)'
                                           % (tmp_path / 'big', cf.DIFF_MAX_BYTES)}]


# ---- probes


def test_probes_report_what_the_files_held_before_anything_was_written(tmp_path):
    running = tmp_path / 'running.conf'
    running.write_text('port 0\ntls-port 6379\n')
    missing = tmp_path / 'never.conf'
    # A file of the run that a probe also looks at: the probe sees it as it was, before the write.
    conf = tmp_path / 'app.conf'
    conf.write_text('tls-port 1\n')
    result = cf.converge([], [{'dest': str(conf), 'content': 'port 1\n'}], probes=[
        {'path': str(running), 'regexp': '^tls-port '},
        {'path': str(running), 'regexp': '^port 6379$'},
        {'path': str(missing), 'regexp': '^tls-port '},
        {'path': str(conf), 'regexp': '^tls-port '},
    ])
    assert result['probes'] == [
        {'path': str(running), 'exists': True, 'matched': True},
        {'path': str(running), 'exists': True, 'matched': False},
        {'path': str(missing), 'exists': False, 'matched': False},
        {'path': str(conf), 'exists': True, 'matched': True},
    ]
    assert conf.read_text() == 'port 1\n'
    # Never the content: only booleans and the path come back.
    assert 'tls-port 6379' not in repr(result)


def test_a_probe_needs_a_regular_expression_and_a_file(tmp_path):
    with pytest.raises(cf.ConfigFilesError, match='not a regular expression'):
        cf.converge([], [], probes=[{'path': str(tmp_path / 'x'), 'regexp': '('}])
    with pytest.raises(cf.ConfigFilesError, match='a directory, not a file'):
        cf.converge([], [], probes=[{'path': str(tmp_path), 'regexp': 'x'}])


def test_no_probes_is_an_empty_list(tmp_path):
    assert cf.converge([], [])['probes'] == []


def _other_run_makes(monkeypatch, make):
    """Between this run's look at what is missing and its mkdir, another run makes a path (instances on one
    Docker host converge at the same time and share their parent directories)."""
    real = cf._missing_parents

    def racing(path):
        missing = real(path)
        make(missing)
        return missing
    monkeypatch.setattr(cf, '_missing_parents', racing)


def test_a_parent_made_meanwhile_by_another_run_is_theirs(tmp_path, monkeypatch):
    shared, own = tmp_path / 'shared', tmp_path / 'shared' / 'sentinel-3'
    _other_run_makes(monkeypatch, lambda missing: os.mkdir(missing[0], 0o755))
    result = cf.converge([{'path': str(own), 'mode': '0700'}], [])
    assert result['changed_directories'] == [str(own)]
    assert mode_of(shared) == 0o755 and mode_of(own) == 0o700


def test_the_directory_made_meanwhile_by_another_run_gets_this_runs_attributes(tmp_path, monkeypatch):
    own = tmp_path / 'sentinel-3'
    _other_run_makes(monkeypatch, lambda missing: os.mkdir(missing[-1], 0o755))
    cf.converge([{'path': str(own), 'mode': '0700'}], [])
    assert mode_of(own) == 0o700


def test_a_file_made_meanwhile_where_a_parent_goes_fails(tmp_path, monkeypatch):
    shared = tmp_path / 'shared'
    _other_run_makes(monkeypatch, lambda missing: open(missing[0], 'w').close())
    with pytest.raises(Exception, match='File exists'):
        cf.converge([{'path': str(shared / 'sentinel-3'), 'mode': '0700'}], [])
    assert shared.is_file()
