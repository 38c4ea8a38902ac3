# -*- coding: utf-8 -*-
# Copyright: psscript.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.psscript.infra.plugins.module_utils._scram import matches, user_verifier


def scram_verifier(password, user):
    return user_verifier(str(user), str(password))


def scram_matches(secret, password):
    return matches(str(secret or ""), str(password))


class FilterModule(object):
    def filters(self):
        return {
            "scram_verifier": scram_verifier,
            "scram_matches": scram_matches,
        }
