# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # Catalog options shared by the backup modules (module_utils._catalog.catalog_spec).
    DOCUMENTATION = r'''
options:
  backup_dir:
    description:
      - Directory that holds the backup catalog, one sub-directory per backup named by its id
        (C(YYYYmmddTHHMMSSZ-full) or C(...-incremental)), each with a C(catalog.json) marker written last.
      - A backup without its marker (interrupted, or being written) is never listed, verified, restored or
        counted by retention. Other names in the directory (for example C(logs)) are left alone.
      - Created (mode C(0750)) when missing.
    type: path
    required: true
  keep_days:
    description:
      - Retention window for O(action=prune), in days. Every backup that stopped within the window is kept, and
        so is the newest backup that stopped before it (it is needed to restore the start of the window).
      - V(0) keeps no window, only what the other rules keep.
      - Retention rules add up; a backup is removed only when no rule keeps it. The newest verified full backup,
        and every parent of a kept incremental backup, are always kept.
    type: int
    default: 30
  keep_count:
    description:
      - For O(action=prune), also keep the newest O(keep_count) backups that did not fail verification,
        whatever their age.
    type: int
  stale_after_hours:
    description:
      - O(action=prune) deletes leftovers of interrupted backups (C(.tmp-*) and C(.scratch-*) directories, and
        backup directories without marker) once nothing in them changed for this many hours.
      - Listing only reports them.
    type: int
    default: 24
'''
