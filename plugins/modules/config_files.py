#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: psscript.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: config_files
short_description: Write a service's config directories and files in one module run
version_added: 0.3.0
author:
  - psscript.infra developers (!UNKNOWN)
extends_documentation_fragment:
  - psscript.infra.attributes
description:
  - Creates the directories in O(directories), then writes the files in O(files), each only when it differs from
    what the target holds (content by SHA-1, then mode, owner and group). One module run for all of them, where
    M(ansible.builtin.template), M(ansible.builtin.copy) and M(ansible.builtin.file) cost one run per directory and
    two per file.
  - A file is rendered from a role template (O(files[].template), on the controller with the task's variables, as
    M(ansible.builtin.template) renders it), copied from a role file (O(files[].src)), or given as O(files[].content).
  - A changed file is replaced atomically. It is written to a temporary file beside it, created C(0600), given its
    owner and mode, flushed to disk and renamed over the old one, so a reader never sees it half-written or with
    the wrong mode.
  - Missing parents of a listed directory are created with that directory's owner and mode, as
    M(ansible.builtin.file) does with C(state=directory).
  - A path that exists as something else (a symlink, a directory where a file belongs) fails, naming it.
  - Every O(files[].content) is hidden from logs and results, as C(no_log) hides a password. The module never
    returns a file's content. The diff shows the content of the files that are not O(files[].secret).
  - Use RV(changed_files) to act on one file only, for example to notify a handler only when the file a service
    reads changed.
options:
  owner:
    description: User name or numeric uid of every directory and file that does not name its own.
    type: str
  group:
    description: Group name or numeric gid of every directory and file that does not name its own.
    type: str
  directories:
    description: Directories to create or fix, in order, before any file is written.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the directory.
        type: path
        required: true
      mode:
        description:
          - Octal mode, quoted (V("0700")). Symbolic modes are not supported.
          - Omitted, a new directory gets the umask's default and an existing one keeps its mode.
        type: raw
      owner:
        description: User name or numeric uid. Omitted (here and in O(owner)), the owner is left as it is.
        type: str
      group:
        description: Group name or numeric gid. Omitted (here and in O(group)), the group is left as it is.
        type: str
  files:
    description: Files to write or remove, in order, after the directories. Each O(files[].dest) once.
    type: list
    elements: dict
    default: []
    suboptions:
      dest:
        description: Absolute path of the file on the target. Its directory must exist or be listed in O(directories).
        type: path
        required: true
      template:
        description:
          - A template of the role (its C(templates/) directory) or a path, rendered on the controller with the
            task's variables, with the defaults of M(ansible.builtin.template) (V(ansible_managed) included).
          - Exactly one of O(files[].template), O(files[].src) and O(files[].content) with O(files[].state=present).
        type: str
      src:
        description: A file of the role (its C(files/) directory) or a path on the controller, copied byte for byte
          (UTF-8 text only).
        type: str
      content:
        description: The file's content, as is (no newline is added).
        type: str
      mode:
        description:
          - Octal mode, quoted (V("0600")).
          - Omitted, a new file gets the umask's default and an existing one keeps its mode.
        type: raw
      owner:
        description: User name or numeric uid. Omitted (here and in O(owner)), a new file belongs to the user the
          module runs as and an existing one keeps its owner.
        type: str
      group:
        description: Group name or numeric gid. Omitted (here and in O(group)), a new file gets that user's group and
          an existing one keeps its group.
        type: str
      state:
        description: V(absent) removes the file when it exists (and needs no content).
        type: str
        choices: [present, absent]
        default: present
      force:
        description: V(false) writes the file only when it does not exist and then leaves it alone (content, owner and
          mode), as with M(ansible.builtin.template).
        type: bool
        default: true
      secret:
        description: The diff says that the content of the file changed, never what it was or is.
        type: bool
        default: false
  probes:
    description:
      - Files to look into, not to write (a service's own runtime state, say), before any directory or file is written.
      - RV(probes) says, for each, whether it exists and whether one of its lines matches O(probes[].regexp); the
        content is never returned. A probe costs nothing more than the module run that writes the files.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the file on the target. A missing file is no error.
        type: path
        required: true
      regexp:
        description: A Python regular expression, searched with C(re.MULTILINE) (V(^) and V($) match at each line).
        type: str
        required: true
attributes:
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
    support: full
  check_mode:
    support: full
    details: Nothing is written; RV(changed_files), RV(changed_directories) and the diff say what would change.
  diff_mode:
    support: full
    details: Content diffs of the files that are not secret (up to 100 KiB), created directories, and changes of mode,
      owner and group.
notes:
  - Templates are rendered with the template engine of ansible-core 2.19 or later; with an older core a task that
    renders one fails and says so.
  - SELinux contexts, ACLs and extended attributes are not managed.
seealso:
  - module: ansible.builtin.template
  - module: ansible.builtin.copy
  - module: ansible.builtin.file
"""

EXAMPLES = r"""
- name: Write PgBouncer's config directory and files (any change reloads it)
  psscript.infra.config_files:
    owner: "999"
    group: "999"
    directories:
      - {path: /var/lib/psscript/psscript/pgbouncer-1, mode: "0700"}
    files:
      - {dest: /var/lib/psscript/psscript/pgbouncer-1/pgbouncer.ini, template: pgbouncer.ini.j2, mode: "0600"}
      - {dest: /var/lib/psscript/psscript/pgbouncer-1/userlist.txt, template: userlist.txt.j2, mode: "0600", secret: true}
  notify: Reload pgbouncer

- name: Passwords, a copied script and a file that must go
  psscript.infra.config_files:
    files:
      - {dest: /etc/myapp/secrets/db_password, content: "{{ db_password }}\n", mode: "0600", secret: true}
      - {dest: /etc/myapp/run-job, src: run-job, mode: "0755"}
      - {dest: /etc/myapp/secrets/s3.json, state: absent}
  register: myapp_config

- name: Write a service's settings, and learn whether the file it runs with now turns TLS on
  psscript.infra.config_files:
    files:
      - {dest: /etc/myapp/settings.conf, template: settings.conf.j2, mode: "0600"}
    probes:
      - {path: /var/lib/myapp/running.conf, regexp: '^tls-port '}
  register: myapp_files

- name: Note whether the running service uses TLS (false when the file does not exist yet)
  ansible.builtin.set_fact:
    myapp_runs_tls: "{{ myapp_files.probes[0].matched }}"

- name: Restart only when the settings file changed
  ansible.builtin.debug:
    msg: settings changed
  changed_when: true
  when: "'/etc/myapp/settings.conf' in myapp_config['changed_files']"
  notify: Restart myapp
"""

RETURN = r"""
changed_files:
  description: The files written, whose mode, owner or group was fixed, or removed (in check mode, that would be).
  returned: success
  type: list
  elements: str
  sample: ["/var/lib/psscript/psscript/pgbouncer-1/pgbouncer.ini"]
changed_directories:
  description: The directories created or whose mode, owner or group was fixed (in check mode, that would be).
  returned: success
  type: list
  elements: str
  sample: []
files:
  description: Every file of O(files), in order, with what was done to it.
  returned: success
  type: list
  elements: dict
  contains:
    dest:
      description: The file.
      type: str
      sample: /var/lib/psscript/psscript/pgbouncer-1/pgbouncer.ini
    action:
      description:
        - V(created), V(content) (rewritten), V(attributes) (mode, owner or group fixed), V(removed), V(unchanged),
          V(absent) (to remove and not there) or V(kept) (exists, O(files[].force=false)).
      type: str
      sample: unchanged
  sample: [{"dest": "/var/lib/psscript/psscript/pgbouncer-1/pgbouncer.ini", "action": "unchanged"}]
probes:
  description: Every probe of O(probes), in order, as it found its file before anything was written.
  returned: success
  type: list
  elements: dict
  contains:
    path:
      description: The file.
      type: str
      sample: /var/lib/myapp/running.conf
    exists:
      description: Whether the file exists.
      type: bool
      sample: true
    matched:
      description: Whether a line of it matches O(probes[].regexp) (V(false) when it does not exist).
      type: bool
      sample: false
  sample: [{"path": "/var/lib/myapp/running.conf", "exists": true, "matched": false}]
directories:
  description: Every directory of O(directories), in order, with what was done to it.
  returned: success
  type: list
  elements: dict
  contains:
    path:
      description: The directory.
      type: str
      sample: /var/lib/psscript/psscript/pgbouncer-1
    action:
      description: V(created), V(attributes) or V(unchanged).
      type: str
      sample: unchanged
  sample: [{"path": "/var/lib/psscript/psscript/pgbouncer-1", "action": "unchanged"}]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.psscript.infra.plugins.module_utils._configfiles import ARGUMENT_SPEC, ConfigFilesError, converge


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    try:
        result = converge(module.params['directories'], module.params['files'],
                          check_mode=module.check_mode, want_diff=module._diff,
                          owner=module.params['owner'], group=module.params['group'],
                          probes=module.params['probes'])
    except ConfigFilesError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
