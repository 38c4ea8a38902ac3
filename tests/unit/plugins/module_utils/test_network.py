# -*- coding: utf-8 -*-
from __future__ import annotations

import pytest

from ansible_collections.psscript.infra.plugins.module_utils._network import (
    AddressError,
    duplicate_addresses,
    instance_address,
)


def test_address_is_network_plus_index():
    assert instance_address("172.25.0.0/16", 31) == "172.25.0.31"
    assert instance_address("172.25.0.0/16", 300) == "172.25.1.44"
    assert instance_address("10.1.2.0/24", "10") == "10.1.2.10"


def test_adding_an_instance_never_moves_the_others():
    before = {name: instance_address("172.25.0.0/16", idx) for name, idx in [("redis-1", 31), ("redis-2", 32)]}
    after = {name: instance_address("172.25.0.0/16", idx) for name, idx in [("redis-0", 30), ("redis-1", 31), ("redis-2", 32)]}
    assert all(after[name] == address for name, address in before.items())


@pytest.mark.parametrize("index", [0, 1, 255, 256, -3])
def test_reserved_or_outside_indexes_are_refused(index):
    with pytest.raises(AddressError) as err:
        instance_address("10.1.2.0/24", index)
    assert "outside the usable range 2..254" in str(err.value)


def test_gateway_only_when_asked():
    assert instance_address("172.25.0.0/16", 1, allow_reserved=True) == "172.25.0.1"


@pytest.mark.parametrize("subnet", ["172.25.0.1/16", "not-a-net", "172.25.0.0/33"])
def test_bad_subnet_is_a_clear_error(subnet):
    with pytest.raises(AddressError, match="stack_subnet"):
        instance_address(subnet, 10)


def test_bad_index_is_a_clear_error():
    with pytest.raises(AddressError, match="whole number"):
        instance_address("172.25.0.0/16", "ten")


def test_duplicates_are_reported_with_every_instance():
    assert duplicate_addresses({"a": "10.0.0.2", "b": "10.0.0.3", "c": "10.0.0.2"}) == {"10.0.0.2": ["a", "c"]}
    assert duplicate_addresses({"a": "10.0.0.2", "b": "10.0.0.3"}) == {}
