# -*- coding: utf-8 -*-
# Copyright: psscript.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.psscript.infra.plugins.module_utils._network import (
    AddressError,
    duplicate_addresses,
    instance_address,
)


def _instance_address(subnet, index, allow_reserved=False):
    try:
        return instance_address(subnet, index, allow_reserved=allow_reserved)
    except AddressError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    def filters(self):
        return {
            "instance_address": _instance_address,
            "duplicate_addresses": duplicate_addresses,
        }
