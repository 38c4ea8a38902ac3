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
  catalog_key_file:
    description:
      - File holding the catalog key (at least 32 characters; in the C(psscript) stack the secret
        C(backup_catalog_key), mounted 0600 into the backup container).
      - With a key, every C(catalog.json) written carries C(hmac), an HMAC-SHA256 of the entry under the key, and
        every entry read, locally or in S3, must carry a matching one. An edited C(catalog.json), or a backup file
        swapped together with the hash its entry records, is then refused like an unreadable entry (never listed,
        chained, restored or removed). Entries written before the key existed are refused until O(action=sign)
        signs them.
      - Without this option the module reads the file named by the environment variable
        C(PSSCRIPT_CATALOG_KEY_FILE) (the backup container sets it); without either, entries are neither signed
        nor checked.
    type: path
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
