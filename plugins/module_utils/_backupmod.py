# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The skeleton both backup modules share: pg_backup (PostgreSQL) and redis_snapshot (Redis).

A module keeps what is its service's own (how a backup is taken, verified and restored) and calls
these for the rest: finding its tools, the S3 store, copying a verified backup to S3, the list,
verify and prune actions, the incremental-to-full fallback and the dispatch of ``main``.

Decisions (and why):

* **One result vocabulary** (``RESULT_KEYS``): playbooks, stackctl and the health checks read the
  results of both modules, so one fact has one name in both. The backup just taken is ``backup``
  (its catalog summary), the newest verified full one is ``last_verified_full`` (a Redis snapshot
  is always a full backup), and ``downloaded_from_s3`` is always the list of ids a restore fetched.
* **The list action reports ages and free space itself** (``*_age_seconds``, ``free_bytes``,
  ``total_bytes``, ``free_percent``): a health check compares numbers with its limits instead of
  parsing timestamps and ``df`` output in a template.
* **The fallback rule is written once** (``full_instead``): an incremental backup that cannot be
  taken (no parent to build on, no WAL summaries, a parent the server does not match) becomes a
  full one only when ``fallback_to_full`` allows it; otherwise the module fails naming both fixes.
* **The module is passed in** (its ``params``, ``check_mode``, ``warn``, ``fail_json``,
  ``get_bin_path``, ``exit_json``) and the clock as an argument, so every function here is
  unit-tested with a fake module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import traceback

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.psscript.infra.plugins.module_utils import _catalog, _diskspace, _s3
from ansible_collections.psscript.infra.plugins.module_utils._catalog import BackupError, CatalogError
from ansible_collections.psscript.infra.plugins.module_utils._s3 import S3Error

# The result keys the two modules share, and what they mean (both RETURN docs document each; a unit test
# checks it).
RESULT_KEYS = {
    'backup_id': 'id of the backup taken (action=backup) or restored (action=restore)',
    'backup': 'catalog summary of the backup just taken (was "entry" in redis_snapshot)',
    'expected_bytes': 'the size a backup is expected to need, checked before it starts',
    'free_bytes': 'free bytes of the file system of backup_dir (action=backup: before it; action=list: now)',
    'total_bytes': 'size of the file system of backup_dir (action=list)',
    'free_percent': 'free share of that file system in percent (action=list)',
    'latest': 'id of the newest restorable backup',
    'last_verified_full': 'id of the newest full backup that passed verification (was "last_verified" in '
                          'redis_snapshot)',
    'latest_age_seconds': 'seconds since the newest restorable backup ended (action=list)',
    'last_verified_full_age_seconds': 'seconds since the newest verified full backup ended (action=list)',
    'downloaded_from_s3': 'ids a restore fetched from S3, always a list (was a bool in redis_snapshot)',
}


def find_tools(module, names, missing, opt_dirs=None, check=None):
    """``{name: path}`` of the commands ``names``; the module fails with ``missing % dict(name=...)``
    when one is not found, or with what ``check(path)`` returns (a problem, or None when it fits)."""
    tools = {}
    for name in names:
        path = module.get_bin_path(name, opt_dirs=opt_dirs or [])
        if not path:
            module.fail_json(msg=missing % dict(name=name))
        problem = check(path) if check is not None else None
        if problem:
            module.fail_json(msg=problem)
        tools[name] = path
    return tools


def s3_store(module, area):
    """The S3 copies of this service's backups (``area``: 'postgres', 'redis'), or None when the s3
    option is not given."""
    if not module.params['s3']:
        return None
    if not _s3.HAS_BOTO3:
        module.fail_json(msg=missing_required_lib(_s3.BOTO3_REQUIREMENT), exception=_s3.BOTO3_IMPORT_ERROR)
    return _s3.S3Store(module.params['s3'], area)


def open_root(module, root, result):
    """Create backup_dir for a backup (in check mode only warn that it would be) and lock it:
    returns the lock to release, or None (check mode, or no directory yet)."""
    if not os.path.isdir(root):
        if module.check_mode:
            module.warn('backup_dir %s does not exist yet; it would be created' % root)
        else:
            result['changed'] = _catalog.ensure_dir(root)
    return None if module.check_mode or not os.path.isdir(root) else _catalog.RootLock(root).acquire()


def entries(root):
    """The local catalog's entries, oldest first; none when backup_dir does not exist (yet)."""
    return _catalog.list_backups(root)['backups'] if os.path.isdir(root) else []


def check_space(root, needed, why):
    """``_diskspace.check_free_space`` of backup_dir, or of its parent when it is still to be created."""
    return _diskspace.check_free_space(root if os.path.isdir(root) else os.path.dirname(root), needed, why)


def full_instead(module, result, why):
    """The fallback rule: an incremental backup that cannot be taken (``why``) becomes a full one
    when ``fallback_to_full`` allows it (a warning and ``fell_back_to_full``); returns the new
    ``(type, parent)``. Otherwise the module fails naming both fixes."""
    if not module.params.get('fallback_to_full'):
        module.fail_json(msg='Cannot take an incremental backup: %s. Take a full backup (type=full), or set '
                             'fallback_to_full=true' % why, **result)
    module.warn('Taking a full backup instead of an incremental one: %s' % why)
    result['fell_back_to_full'] = True
    return 'full', None


def took(result, entry, msg):
    """Record the backup just taken in ``result`` (the shared vocabulary)."""
    result.update(changed=True, backup_id=entry['id'], backup=_catalog.summary(entry), msg=msg)
    return result


def copy_to_s3(result, store, root, entry, outcome, noun, fix='', before_upload=None):
    """Record the verify ``outcome`` of the backup just taken; when it passed, copy it to S3 (after
    ``before_upload()``) and check the copy. ``result`` gets ``s3``, the updated ``backup`` and msg.
    A failed verification or copy raises BackupError naming the backup (``noun``: 'backup',
    'snapshot'); ``fix`` ends the refusal message."""
    noun = noun[0].upper() + noun[1:]
    try:
        result['s3'] = store.upload_verified(root, entry, outcome, '%s %%(id)s was taken but failed verification, so it '
                                             'was not copied to S3: %%(problems)s%s' % (noun, fix),
                                             before_upload=before_upload)
    except S3Error as err:
        raise BackupError('%s %s was taken and verified, but its S3 copy failed: %s' % (noun, entry['id'], err.msg))
    result.update(backup=_catalog.summary(entry),
                  msg='%s, verified it and copied it to %s' % (result['msg'], result['s3']['url']))
    return result


def ages(listed, now):
    """``latest_age_seconds`` and ``last_verified_full_age_seconds`` of a listing: seconds from the
    named backup's ``stopped_at`` to ``now`` (an aware datetime), None when there is none."""
    by_id = dict((item['id'], item) for item in listed.get('backups') or [])
    found = {}
    for key in ('latest', 'last_verified_full'):
        item = by_id.get(listed.get(key)) or {}
        stopped = item.get('stopped_at')
        found[key + '_age_seconds'] = int((now - _catalog.parse_time(stopped)).total_seconds()) if stopped else None
    return found


def listing(root, store, local_listing, now, disk_usage=None):
    """What ``action=list`` returns: ``local_listing(root)`` (the catalog), the S3 catalog when
    ``store`` is given, the ages (``ages``) and the free space of backup_dir's file system."""
    result = dict(changed=False, **local_listing(root))
    if store is not None:
        store.add_listing(result)
    result.update(ages(result, now))
    space = dict(free_bytes=None, total_bytes=None, free_percent=None)
    if os.path.isdir(root):
        space = _diskspace.usage(root, **(dict(disk_usage=disk_usage) if disk_usage else {}))
    result.update(space)
    return result


def verify(module, root, store, verify_local, noun, fix, remote_marks_local=False):
    """``action=verify``: the chosen backups (``backup_id``: all, latest or one id, local or only in
    S3) checked by ``verify_local(entry, entries)`` and, when in S3, their copies there."""
    local = _catalog.list_backups(root)['backups']
    remote = store.list_entries() if store is not None else []
    chosen = _catalog.select_for_verify(local, module.params['backup_id'], root, noun=noun, remote=remote)
    results, changed = _s3.verify_backups(root, chosen, set(e['id'] for e in local),
                                          lambda entry: verify_local(entry, local), store,
                                          set(e['id'] for e in remote), record=not module.check_mode,
                                          remote_marks_local=remote_marks_local)
    failure, msg = _catalog.verify_messages(results, noun, fix)
    if failure:
        module.fail_json(msg=failure, results=results, changed=changed)
    return dict(changed=changed, results=results, msg=msg)


def _wal_summary(names):
    return dict(count=len(names), first=names[0] if names else None, last=names[-1] if names else None)


def _counted(plan, wal, noun):
    text = '%d %s(s)' % (len(plan['removed']), noun)
    return text if wal is None else '%s and %d WAL file(s)' % (text, len(wal))


def prune(module, root, store, noun, remove_wal=None, remove_s3_wal=None):
    """``action=prune``: the retention rules over the local catalog (under the root's lock and its
    readers lock, so no restore reads what is deleted) and over the S3 copies.

    With WAL (pg_backup) ``remove_wal(oldest_wal_needed)`` and ``remove_s3_wal(store,
    oldest_wal_needed)`` remove the WAL no kept backup needs and return the names (in check mode
    only name them); the result then has ``removed_wal``, else no ``oldest_wal_needed``."""
    params = module.params
    lock = None if module.check_mode else _catalog.RootLock(root).acquire()
    readers = None
    try:
        readers = None if module.check_mode else _catalog.RootLock(root, readers=True).acquire()
        result = _catalog.prune(root, params['keep_days'], params['keep_count'], params['stale_after_hours'] * 3600,
                                module.check_mode)
        plans = [(result, remove_wal(result['oldest_wal_needed']) if remove_wal is not None else None, '')]
        if store is not None:
            remote = store.prune(keep_days=params['keep_days'], keep_count=params['keep_count'],
                                 dry_run=module.check_mode)
            plans.append((remote, remove_s3_wal(store, remote['oldest_wal_needed']) if remove_s3_wal else None, 'S3: '))
    finally:
        if readers is not None:
            readers.release()
        if lock is not None:
            lock.release()
    verb = 'Would remove' if module.check_mode else 'Removed'
    texts = []
    for plan, wal, where in plans:
        for warning in plan.pop('warnings'):
            module.warn(where + warning)
        if wal is None:
            del plan['oldest_wal_needed']
        else:
            plan['removed_wal'] = _wal_summary(wal)
        result['changed'] = result['changed'] or bool(wal) or (plan is not result and bool(plan['removed']))
        done = 'in S3 ' + verb.lower() if where else verb
        texts.append('%s %s, kept %d' % (done, _counted(plan, wal, noun), len(plan['kept'])))
    if store is not None:
        result['s3'] = plans[1][0]
    result['msg'] = '; '.join(texts)
    return result


def sign(module, root, store):
    """``action=sign``: sign with the catalog key every entry written before it existed (sound, without
    ``hmac``), in backup_dir and, with S3, in the bucket. Entries with a wrong ``hmac`` are not signed:
    they are reported in ``refused`` (and a warning), and stay refused."""
    if not _catalog.use_key_file(module.params.get('catalog_key_file')):
        module.fail_json(msg='action=sign needs the catalog key: set catalog_key_file (or $%s) to the file of the '
                             'stack secret backup_catalog_key' % _catalog.KEY_FILE_ENV)
    lock = None if module.check_mode else _catalog.RootLock(root).acquire()
    try:
        local = _catalog.sign_unsigned(root, module.check_mode)
        remote = store.sign_unsigned(module.check_mode) if store is not None else dict(signed=[], refused=[])
    finally:
        if lock is not None:
            lock.release()
    refused = local['refused'] + remote['refused']
    for item in refused:
        module.warn('Not signed: %s' % item['error'])
    verb = 'Would sign' if module.check_mode else 'Signed'
    return dict(changed=bool(local['signed'] or remote['signed']), signed=local['signed'], s3_signed=remote['signed'],
                refused=refused,
                msg='%s %d local and %d S3 catalog entries written before the catalog key; %d refused'
                    % (verb, len(local['signed']), len(remote['signed']), len(refused)))


def run(module, actions, errors=(), fs_hint='backup_dir', without_root=('backup',)):
    """The dispatch of ``main``: ``actions[action](module, backup_dir)`` and ``exit_json`` of its
    result. Every action but those in ``without_root`` needs backup_dir to exist; ``errors`` (with
    the catalog's, backups' and S3's) fail with their message, file system errors with ``fs_hint``
    (what to check)."""
    action = module.params['action']
    root = module.params['backup_dir']
    try:
        if action not in without_root and not os.path.isdir(root):
            module.fail_json(msg='backup_dir %s does not exist: check the path (and the volume mount)' % root)
        # The catalog key (catalog_key_file, else $PSSCRIPT_CATALOG_KEY_FILE): entries written are signed,
        # entries read are checked.
        _catalog.use_key_file(module.params.get('catalog_key_file'))
        result = actions[action](module, root)
    except (BackupError, CatalogError, S3Error) + tuple(errors) as err:
        module.fail_json(msg=err.msg)
    except (IOError, OSError) as err:
        module.fail_json(msg='%s failed on the file system: %s; check permissions and space of %s'
                             % (action, err, fs_hint), exception=traceback.format_exc())
    module.exit_json(**result)
