# -*- coding: utf-8 -*-
"""Unit tests for the pure parts of the probes (pg_probe, redis_probe): no server needed."""

from __future__ import annotations

import datetime
import decimal

import pytest

from ansible_collections.psscript.infra.plugins.module_utils import _pg, _redis


class FakeNode(object):
    """Answers INFO <section> from canned dicts, the way redis-py parses them."""

    kind = 'Redis'
    address = '10.0.0.21:6379'

    def __init__(self, sections):
        self.sections = sections

    def call(self, method, *args, **kwargs):
        if method == 'ping':
            return True
        assert method == 'info'
        return self.sections[args[0]]


@pytest.mark.parametrize('value, text', [
    (None, ''), (True, 't'), (False, 'f'), (1, '1'), (decimal.Decimal('2.50'), '2.50'), ('x|y', 'x|y'),
    (datetime.date(2026, 12, 1), '2026-12-01'),
])
def test_cells_read_as_psql_prints_them(value, text):
    assert _pg._text(value) == text


def test_keyspace_counts_keys_per_database():
    node = FakeNode({'persistence': {'loading': 0},
                     'keyspace': {'db0': {'keys': 1000, 'expires': 1, 'avg_ttl': 0}, 'db3': {'keys': 50}}})
    assert _redis.keyspace(node) == {'0': 1000, '3': 50}


def test_keyspace_reads_unparsed_values_too():
    node = FakeNode({'persistence': {'loading': 0}, 'keyspace': {'db12': 'keys=7,expires=0,avg_ttl=0'}})
    assert _redis.keyspace(node) == {'12': 7}


def test_keyspace_of_an_empty_server_is_empty():
    assert _redis.keyspace(FakeNode({'persistence': {'loading': 0}, 'keyspace': {}})) == {}


def test_keyspace_refuses_while_loading():
    # INFO answers during loading with partial counts: a drill must not take them as the restored data.
    node = FakeNode({'persistence': {'loading': 1}, 'keyspace': {'db0': {'keys': 10}}})
    with pytest.raises(_redis.RedisOpError) as err:
        _redis.keyspace(node)
    assert err.value.reason == 'loading'
    assert 'still loading' in err.value.msg


def test_ping_reports_pong():
    assert _redis.ping(FakeNode({})) == 'PONG'
