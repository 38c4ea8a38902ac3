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


def sentinel_endpoints(instances):
    """Each Sentinel where the other nodes and clients reach it (``host:port``), from the
    ``stack_instance`` facts the stack role publishes (or hostvars that hold them)."""
    if not isinstance(instances, (list, tuple)):
        raise AnsibleFilterError('sentinel_endpoints expects a list of instances (stack_instance facts), got %s'
                                 % type(instances).__name__)
    endpoints = []
    for item in instances:
        instance = item.get('stack_instance', item) if isinstance(item, Mapping) else None
        if not isinstance(instance, Mapping) or not instance.get('endpoint_host') or not instance.get('endpoint_port'):
            name = item.get('inventory_hostname', item) if isinstance(item, Mapping) else item
            raise AnsibleFilterError('sentinel_endpoints: %s has no published endpoint; run the psscript.infra.stack '
                                     'role for every Sentinel instance in the play first' % (name,))
        try:
            host, port = _sentinel.parse_address(
                _sentinel.format_address(str(instance['endpoint_host']), int(instance['endpoint_port'])),
                what='Sentinel %s' % instance.get('name', ''))
        except (TypeError, ValueError) as exc:  # AddressError too
            raise AnsibleFilterError('sentinel_endpoints: %s' % exc)
        endpoints.append(_sentinel.format_address(host, port))
    return endpoints


class FilterModule(object):

    def filters(self):
        return {'sentinel_majority_master': sentinel_majority_master, 'sentinel_endpoints': sentinel_endpoints}
