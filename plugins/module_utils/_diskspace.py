# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Free space of the backup volume, for both backup modules (pg_backup, redis_snapshot).

Decisions (and why):

* **Check before writing**: a backup that fills the volume half-way fails late and can take the
  WAL archive (the same volume on small hosts) down with it, so the expected size is checked first
  and the error names where the estimate came from.
* **The list action reports the space itself** (``usage``), so health checks read numbers instead
  of parsing ``df`` output in a template.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import shutil

from ansible_collections.psscript.infra.plugins.module_utils._catalog import BackupError


def human_bytes(value):
    """``1536`` -> ``'1.5 KiB'``."""
    value = float(value)
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(value) < 1024 or unit == 'TiB':
            return ('%d %s' % (value, unit)) if unit == 'B' else ('%.1f %s' % (value, unit))
        value /= 1024.0
    return '%d B' % value


def check_free_space(path, needed, source, disk_usage=shutil.disk_usage):
    """The free bytes of ``path``'s file system; BackupError (kind ``no_space``) when fewer than
    ``needed``. ``source``: where the estimate of ``needed`` comes from, for the message."""
    free = disk_usage(path).free
    if needed and free < needed:
        raise BackupError('Not enough free space in %s: %s free, about %s needed (%s). Free space there, prune old '
                          'backups (action=prune), or move backup_dir' % (path, human_bytes(free), human_bytes(needed), source),
                          kind='no_space')
    return free


def usage(path, disk_usage=shutil.disk_usage):
    """``dict(free_bytes, total_bytes, free_percent)`` of ``path``'s file system (``free_percent``
    rounded to 0.1; None when the size is 0)."""
    found = disk_usage(path)
    percent = round(100.0 * found.free / found.total, 1) if found.total else None
    return dict(free_bytes=found.free, total_bytes=found.total, free_percent=percent)
