#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: psscript.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: age_identity
short_description: Create the stack's age identity for encrypted backups on the controller, once
version_added: 0.1.0
author:
  - psscript.infra developers (!UNKNOWN)
description:
  - Reads the age identity (X25519 private key, the format C(age-keygen) writes) at O(path), or creates one there
    with mode C(0600) (its directory C(0700)) when there is none, and returns its public key (RV(recipient)).
  - The backup role uses it when encryption is on and the inventory names no recipient
    (C(backup_age_recipients)), so a stack with S3 copies encrypts them from its first backup. The private key
    stays on the controller beside the secrets file; only the public key reaches the backup host.
  - Generated in Python (the C(cryptography) library ansible-core requires); no C(age) binary is needed on the
    controller. An existing file is never changed; one with another mode than C(0600) is set to C(0600).
  - Run it on the controller (C(delegate_to) the controller, C(run_once)) with C(no_log).
options:
  path:
    description: Path of the identity file on the controller.
    type: path
    required: true
attributes:
  check_mode:
    support: full
    details: In check mode nothing is written; for a missing file RV(recipient) is empty.
  diff_mode:
    support: none
extends_documentation_fragment:
  - psscript.infra.attributes
"""

EXAMPLES = r"""
- name: The stack's age identity (created once), and its public key
  psscript.infra.age_identity:
    path: "{{ stack_secrets_file | dirname }}/backup-age-identity.txt"
  delegate_to: localhost
  run_once: true
  no_log: true
  register: backup_age_identity
"""

RETURN = r"""
recipient:
  description: The identity's public key (C(age1...)); empty in check mode when the file does not exist yet.
  returned: success
  type: str
  sample: age1pka4x7r52xtwsdjt6rszp2h4vyjq0crpraggg37k98qltg3hcs7q9nrwm6
created:
  description: Whether this run created the identity file.
  returned: success
  type: bool
  sample: false
path:
  description: Path of the identity file.
  returned: success
  type: str
  sample: /root/.config/psscript/psscript/backup-age-identity.txt
"""


from ansible.module_utils.basic import AnsibleModule
from ansible_collections.psscript.infra.plugins.module_utils import _age


def main():
    module = AnsibleModule(argument_spec=dict(path=dict(type="path", required=True)), supports_check_mode=True)
    path = module.params["path"]
    try:
        recipient, created, mode_fixed = _age.ensure_identity_file(path, check_mode=module.check_mode)
    except (_age.AgeError, OSError, ValueError) as exc:
        module.fail_json(msg="age identity %s: %s" % (path, getattr(exc, "msg", None) or exc))
    module.exit_json(changed=created or mode_fixed, recipient=recipient, created=created, path=path)


if __name__ == "__main__":
    main()
