# -*- coding: utf-8 -*-
# Copyright: (c) 2025, psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters about Redis Sentinel; documented in sentinel_majority_master.yml."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.psscript.infra.plugins.module_utils import _sentinel


def _replies(value):
    """Accept a list of replies, a {sentinel: reply} dict, or the ``sentinels``
    list returned by psscript.infra.sentinel_failover_check."""
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, (list, tuple)):
        raise AnsibleFilterError('sentinel_majority_master expects a list or dict of Sentinel replies, got %s'
                                 % type(value).__name__)
    if value and all(isinstance(item, Mapping) and 'address' in item and 'master' in item for item in value):
        return dict((item['address'], item['master'] if item.get('reachable', True) else None) for item in value)
    return list(value)


def sentinel_majority_master(value, quorum=None):
    """The master address (host:port) named by a majority of the Sentinels,
    None when no Sentinel names one (first deploy), an error otherwise."""
    try:
        master, reason = _sentinel.decide_master(_replies(value), quorum)
    except ValueError as exc:  # AddressError too
        raise AnsibleFilterError('sentinel_majority_master: %s' % exc)
    if reason:
        raise AnsibleFilterError('sentinel_majority_master: no Sentinel majority: %s; fix the Sentinels (or '
                                 'wait for the failover to settle) before deploying' % reason)
    return master


class FilterModule(object):

    def filters(self):
        return {'sentinel_majority_master': sentinel_majority_master}
