# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""psscript.infra.sentinel_endpoints: the one place that turns Sentinel instances into host:port."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.psscript.infra.plugins.filter.sentinel import FilterModule

sentinel_endpoints = FilterModule().filters()['sentinel_endpoints']


def instance(name, host, port):
    return {'name': name, 'service': 'sentinel', 'endpoint_host': host, 'endpoint_port': port}


def test_facts_and_hostvars_give_the_same_endpoints_in_order():
    facts = [instance('sentinel-2', '172.25.0.42', 26380), instance('sentinel-1', '10.0.0.5', '26379')]
    hostvars = [{'inventory_hostname': f['name'], 'stack_instance': f} for f in facts]
    assert sentinel_endpoints(facts) == ['172.25.0.42:26380', '10.0.0.5:26379']
    assert sentinel_endpoints(hostvars) == ['172.25.0.42:26380', '10.0.0.5:26379']


def test_ipv6_hosts_in_brackets():
    assert sentinel_endpoints([instance('s', 'fd00::5', 26379)]) == ['[fd00::5]:26379']


@pytest.mark.parametrize('bad', [
    {'inventory_hostname': 'sentinel-3'},                      # the stack role did not run for it
    instance('sentinel-3', '', 26379),
    instance('sentinel-3', '10.0.0.5', None),
])
def test_an_instance_without_endpoint_is_named(bad):
    with pytest.raises(AnsibleFilterError, match='sentinel-3'):
        sentinel_endpoints([instance('sentinel-1', '10.0.0.5', 26379), bad])


def test_an_invalid_port_is_refused():
    with pytest.raises(AnsibleFilterError, match='port'):
        sentinel_endpoints([instance('sentinel-1', '10.0.0.5', 70000)])


def test_not_a_list():
    with pytest.raises(AnsibleFilterError, match='list'):
        sentinel_endpoints('10.0.0.5:26379')
