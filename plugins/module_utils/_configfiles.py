# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A service's config directories and files, converged in one module run (config_files).

Decisions (and why):

- One run for all of a service's directories and files: ansible.builtin.template, copy and file
  cost a module run per directory and two per file (a stat, then the attributes), and on an
  unchanged re-run that was most of a deploy's time.
- What differs is written, nothing else: content is compared by the SHA-1 of its UTF-8 bytes,
  attributes by mode, uid and gid. A file whose content differs is published atomically
  (``_files.write_text_atomic``: temporary file beside it, created 0600, owner and mode set before
  the rename, fsync, rename, fsync of the directory), so a service never reads half a file or a
  secret that is briefly world-readable. A file whose content is right gets chown/chmod only.
- Missing parents of a listed directory are created with its owner and mode, as
  ansible.builtin.file ``state=directory`` does, so switching modules leaves the same tree.
- ``force: false`` leaves an existing file alone entirely (content and attributes), as template
  and copy do: the first-start files a service rewrites itself.
- A path that exists as something else (a directory where a file belongs, a symlink, a file where
  a directory belongs) fails with the path: replacing it, or writing through a link, is the
  operator's decision.
- ``probes`` look into files the module does not write (a service's own runtime state) before
  anything is written, and return whether a line matches, never the content: a role that needs to
  know one fact about such a file learns it in the same module run, where a slurp or a stat cost a
  run of their own per instance.
- Check mode runs the same plan and writes nothing. Contents of ``secret`` files never leave the
  module; for the others, the previous content (in diff mode only) travels base64-encoded,
  because the module hides every ``content`` value from logs and results (``no_log``), which would
  also mask any text that contains one.

The plan (``plan_directory``, ``plan_file``, ``attribute_changes``) is pure and takes the current
state as ``inspect`` reports it; ``converge`` applies it to the file system.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import grp
import hashlib
import os
import pwd
import re
import stat

from ansible_collections.psscript.infra.plugins.module_utils._files import fsync_path, make_directory, write_text_atomic

# What the diff carries at the most (ansible's own default for max_file_size_for_diff).
DIFF_MAX_BYTES = 104448

# Options of one directory and one file: the module's and the action plugin's argument spec.
DIRECTORY_OPTIONS = dict(
    path=dict(type='path', required=True),
    mode=dict(type='raw'),
    owner=dict(type='str'),
    group=dict(type='str'),
)
FILE_OPTIONS = dict(
    dest=dict(type='path', required=True),
    # Read on the controller by the action plugin, which sends their text as content.
    template=dict(type='str'),
    src=dict(type='str'),
    content=dict(type='str', no_log=True),
    mode=dict(type='raw'),
    owner=dict(type='str'),
    group=dict(type='str'),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    force=dict(type='bool', default=True),
    secret=dict(type='bool', default=False),
)
PROBE_OPTIONS = dict(
    path=dict(type='path', required=True),
    regexp=dict(type='str', required=True),
)
FILE_SOURCES = ('template', 'src', 'content')
ARGUMENT_SPEC = dict(
    # Of every directory and file that does not name its own.
    owner=dict(type='str'),
    group=dict(type='str'),
    directories=dict(type='list', elements='dict', default=[], options=DIRECTORY_OPTIONS),
    files=dict(type='list', elements='dict', default=[], options=FILE_OPTIONS,
               mutually_exclusive=[list(FILE_SOURCES)]),
    probes=dict(type='list', elements='dict', default=[], options=PROBE_OPTIONS),
)


class ConfigFilesError(Exception):
    """A request that cannot be converged; the message names the path and the fix."""


def parse_mode(value):
    """An octal mode ('0600', '600', 0o600 as int) as an int; None stays None (leave the mode alone)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigFilesError('mode %r is not an octal mode: write it quoted, like "0644"' % (value,))
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        try:
            mode = int(text, 8)
        except ValueError:
            raise ConfigFilesError('mode %r is not an octal mode: write it quoted, like "0644" (symbolic modes are not supported)' % (value,))
    if not 0 <= mode <= 0o7777:
        raise ConfigFilesError('mode %r is out of range: use 0000 to 7777' % (value,))
    return mode


def resolve_id(name, kind, lookup=None):
    """The numeric id of a user (kind 'owner') or group (kind 'group'): a number is taken as is, a
    name is looked up on the target (lookup: the pwd/grp function, passed in by tests)."""
    if name is None or name == '':
        return None
    text = str(name)
    if text.isdigit():
        return int(text)
    if lookup is None:
        lookup = pwd.getpwnam if kind == 'owner' else grp.getgrnam
    try:
        entry = lookup(text)
    except KeyError:
        raise ConfigFilesError('%s %r does not exist on the target: create it first or give a numeric id'
                               % ('user' if kind == 'owner' else 'group', text))
    return entry[2]


def inspect(path, with_checksum=False):
    """The current state of path, without following a symlink: kind ('absent', 'file', 'directory',
    'link' or 'other'), mode, uid, gid and, for a file when asked, the SHA-1 of its bytes."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {'kind': 'absent'}
    if stat.S_ISLNK(st.st_mode):
        kind = 'link'
    elif stat.S_ISREG(st.st_mode):
        kind = 'file'
    elif stat.S_ISDIR(st.st_mode):
        kind = 'directory'
    else:
        kind = 'other'
    current = {'kind': kind, 'mode': stat.S_IMODE(st.st_mode), 'uid': st.st_uid, 'gid': st.st_gid}
    if kind == 'file' and with_checksum:
        current['sha1'] = file_sha1(path)
    return current


def file_sha1(path):
    digest = hashlib.sha1()
    with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b''):
            digest.update(chunk)
    return digest.hexdigest()


def text_sha1(text):
    return hashlib.sha1(text.encode('utf-8')).hexdigest()


def attribute_changes(current, mode=None, uid=None, gid=None):
    """{attribute: (before, after)} for each wanted attribute (not None) that differs from current."""
    changes = {}
    for key, want in (('mode', mode), ('uid', uid), ('gid', gid)):
        if want is not None and current.get(key) != want:
            changes[key] = (current.get(key), want)
    return changes


def _wrong_kind(path, current, wanted):
    return ConfigFilesError('%s exists as a %s, not a %s: remove it or choose another path'
                            % (path, current['kind'] if current['kind'] != 'other' else 'special file', wanted))


def plan_directory(path, current, mode=None, uid=None, gid=None):
    """('created' | 'attributes' | 'unchanged', attribute changes) for a wanted directory."""
    if current['kind'] == 'absent':
        return 'created', {}
    if current['kind'] != 'directory':
        raise _wrong_kind(path, current, 'directory')
    changes = attribute_changes(current, mode, uid, gid)
    return ('attributes' if changes else 'unchanged'), changes


def plan_file(dest, current, want_sha1=None, state='present', force=True, mode=None, uid=None, gid=None):
    """What converging one file does, from its current state (``inspect``, with the checksum):
    ('created' | 'content' | 'attributes' | 'removed' | 'unchanged' | 'absent' | 'kept', attribute
    changes). 'content' rewrites the file (with its attributes); 'kept' is an existing file left
    alone because force is false; 'absent' is a file to remove that is not there."""
    kind = current['kind']
    if state == 'absent':
        if kind == 'absent':
            return 'absent', {}
        if kind != 'file':
            raise _wrong_kind(dest, current, 'file')
        return 'removed', {}
    if kind == 'absent':
        return 'created', {}
    if kind != 'file':
        raise _wrong_kind(dest, current, 'file')
    if not force:
        return 'kept', {}
    changes = attribute_changes(current, mode, uid, gid)
    if current.get('sha1') != want_sha1:
        return 'content', changes
    return ('attributes' if changes else 'unchanged'), changes


def _shown(changes):
    """Attribute changes as the diff shows them: mode in octal, ids as numbers."""
    before, after = {}, {}
    for key, (old, new) in sorted(changes.items()):
        show = (lambda v: None if v is None else '%04o' % v) if key == 'mode' else (lambda v: v)
        before[key], after[key] = show(old), show(new)
    return before, after


def _attributes_diff(path, changes):
    before, after = _shown(changes)
    return {'before_header': path, 'after_header': path,
            'before': dict({'path': path}, **before), 'after': dict({'path': path}, **after)}


def _apply_attributes(path, changes):
    if 'uid' in changes or 'gid' in changes:
        os.lchown(path, changes['uid'][1] if 'uid' in changes else -1, changes['gid'][1] if 'gid' in changes else -1)
    if 'mode' in changes:
        os.chmod(path, changes['mode'][1])


def _missing_parents(path):
    """path and its missing ancestors, outermost first."""
    missing = []
    current = os.path.abspath(path)
    while not os.path.lexists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return list(reversed(missing))


def converge_directory(path, mode, uid, gid, check_mode):
    """Create or fix one directory; returns (action, diff entry or None)."""
    current = inspect(path)
    action, changes = plan_directory(path, current, mode, uid, gid)
    diff = None
    if action == 'created':
        diff = {'before_header': path, 'after_header': path,
                'before': {'path': path, 'state': 'absent'},
                'after': dict({'path': path, 'state': 'directory'}, **_shown(
                    attribute_changes({}, mode, uid, gid))[1])}
        if not check_mode:
            for missing in _missing_parents(path):
                # Private until its mode is set, when one is wanted. Not made here: another run made it
                # since (instances on one Docker host share their parent directories and converge at the
                # same time). A parent is theirs, as it would be had they run first; the directory asked
                # for gets this run's attributes.
                if not make_directory(missing, 0o700 if mode is not None else 0o777, follow_links=False) \
                        and missing != path:
                    continue
                # As ansible.builtin.file: every directory it creates gets the wanted attributes.
                _apply_attributes(missing, attribute_changes(inspect(missing), mode, uid, gid))
    elif action == 'attributes':
        diff = _attributes_diff(path, changes)
        if not check_mode:
            _apply_attributes(path, changes)
    return action, diff


def converge_file(spec, mode, uid, gid, check_mode, want_diff):
    """Write, fix or remove one file; returns (action, diff entries).

    In diff mode, the entry of a file that is not secret and whose content changes holds its
    previous content in base64 (``before_b64``, empty for a new file) and, added by converge, the
    file's position in the request (``file_index``), no ``before``/``after``: the action plugin adds
    those, from the content it sent."""
    dest = spec['dest']
    content = spec.get('content')
    state = spec.get('state') or 'present'
    if state == 'present' and content is None:
        raise ConfigFilesError('%s: give its content (content, template or src) or state: absent' % dest)
    want_sha1 = text_sha1(content) if state == 'present' else None
    current = inspect(dest, with_checksum=state == 'present')
    action, changes = plan_file(dest, current, want_sha1, state, spec.get('force', True), mode, uid, gid)
    diffs = []
    secret = spec.get('secret', False)
    if action in ('created', 'content'):
        if want_diff:
            if secret:
                diffs.append({'prepared': '%s: secret content %s (not shown)'
                                          % (dest, 'created' if action == 'created' else 'changed')})
            elif max(len(content), os.path.getsize(dest) if action == 'content' else 0) > DIFF_MAX_BYTES:
                diffs.append({'prepared': '%s: content changed (larger than %d bytes, not shown)' % (dest, DIFF_MAX_BYTES)})
            else:
                diffs.append({'before_header': dest, 'after_header': dest,
                              'before_b64': '' if action == 'created' else _read_b64(dest)})
        if action == 'content' and changes:
            diffs.append(_attributes_diff(dest, changes))
        if not check_mode:
            keep = current if action == 'content' else {}
            write_text_atomic(
                dest, content,
                mode=mode if mode is not None else keep.get('mode'),
                uid=uid if uid is not None else keep.get('uid'),
                gid=gid if gid is not None else keep.get('gid'))
    elif action == 'attributes':
        diffs.append(_attributes_diff(dest, changes))
        if not check_mode:
            _apply_attributes(dest, changes)
    elif action == 'removed':
        diffs.append({'before_header': dest, 'after_header': dest,
                      'before': {'path': dest, 'state': 'file'}, 'after': {'path': dest, 'state': 'absent'}})
        if not check_mode:
            os.unlink(dest)
            fsync_path(os.path.dirname(os.path.abspath(dest)), directory=True)
    return action, diffs


def _read_b64(path):
    with open(path, 'rb') as handle:
        return base64.b64encode(handle.read()).decode('ascii')


CHANGED_ACTIONS = ('created', 'content', 'attributes', 'removed')


def probe(path, regexp):
    """Whether the file exists and whether a line of it matches regexp (re.MULTILINE, so ^ and $ are
    a line's ends): {'path', 'exists', 'matched'}. The content itself is never returned."""
    try:
        pattern = re.compile(regexp, re.MULTILINE)
    except re.error as exc:
        raise ConfigFilesError('probe of %s: %r is not a regular expression: %s' % (path, regexp, exc))
    try:
        with open(path, 'rb') as handle:
            text = handle.read().decode('utf-8', errors='replace')
    except FileNotFoundError:
        return {'path': path, 'exists': False, 'matched': False}
    except IsADirectoryError:
        raise ConfigFilesError('probe of %s: it is a directory, not a file' % path)
    return {'path': path, 'exists': True, 'matched': pattern.search(text) is not None}


def converge(directories, files, check_mode=False, want_diff=False, owner=None, group=None,
             lookup_user=None, lookup_group=None, probes=None):
    """Run the probes, then converge the directories (in order), then the files (in order); owner
    and group apply to the entries that do not name theirs. Returns the module's result:
    changed, changed_directories, changed_files, directories and files (path and action each),
    probes (see probe), and in diff mode diff (a list; see converge_file for the content entries)."""
    result = {'changed': False, 'changed_directories': [], 'changed_files': [],
              'directories': [], 'files': []}
    diffs = []
    # Before anything is written: what the files held when the run began.
    result['probes'] = [_guard(spec['path'], probe, spec['path'], spec['regexp']) for spec in probes or []]

    def ids(spec):
        return (parse_mode(spec.get('mode')),
                resolve_id(_either(spec.get('owner'), owner), 'owner', lookup_user),
                resolve_id(_either(spec.get('group'), group), 'group', lookup_group))

    # Validate every entry before touching anything: a typo in the last file changes nothing.
    planned = [(spec,) + ids(spec) for spec in directories or []]
    planned_files = [(spec,) + ids(spec) for spec in files or []]
    seen = set()
    for spec in files or []:
        if spec['dest'] in seen:
            raise ConfigFilesError('%s is listed twice in files: list each file once' % spec['dest'])
        seen.add(spec['dest'])

    for spec, mode, uid, gid in planned:
        action, diff = _guard(spec['path'], converge_directory, spec['path'], mode, uid, gid, check_mode)
        result['directories'].append({'path': spec['path'], 'action': action})
        if action != 'unchanged':
            result['changed_directories'].append(spec['path'])
            if diff:
                diffs.append(diff)
    for index, (spec, mode, uid, gid) in enumerate(planned_files):
        action, file_diffs = _guard(spec['dest'], converge_file, spec, mode, uid, gid, check_mode, want_diff)
        result['files'].append({'dest': spec['dest'], 'action': action})
        if action in CHANGED_ACTIONS:
            result['changed_files'].append(spec['dest'])
        for entry in file_diffs:
            if 'before_b64' in entry:
                entry['file_index'] = index  # which file's content is the after
        diffs.extend(file_diffs)
    result['changed'] = bool(result['changed_directories'] or result['changed_files'])
    if want_diff:
        result['diff'] = diffs
    return result


def _either(value, default):
    return default if value is None else value


def _guard(path, function, *args):
    """Run one step; an OSError becomes a ConfigFilesError that names the path."""
    try:
        return function(*args)
    except OSError as exc:
        hint = ''
        if isinstance(exc, FileNotFoundError):
            hint = ': its parent directory is missing (list it in directories)'
        elif isinstance(exc, PermissionError):
            hint = ': permission denied (become root, or fix the parent directory\'s owner)'
        raise ConfigFilesError('%s: %s%s' % (path, exc.strerror or exc, hint))
