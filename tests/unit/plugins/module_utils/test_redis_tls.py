# -*- coding: utf-8 -*-
"""Unit tests for the TLS options of module_utils._redis (tls, ca_cert): what reaches redis-py, redis-cli and
the temporary restore server's settings, and how a failed handshake is explained."""

from __future__ import annotations

import pytest
import redis

from ansible_collections.psscript.infra.plugins.module_utils import _redis, _redissnap

CA = '/etc/psscript/tls/ca.crt'


def test_both_specs_have_the_tls_options_off_by_default():
    for spec in (_redis.sentinel_connection_spec(), _redis.redis_connection_spec()):
        assert spec['tls'] == dict(type='bool', default=False)
        assert spec['ca_cert'] == dict(type='path')


@pytest.mark.parametrize('params, tls', [
    (dict(tls=False, ca_cert=None), None),
    (dict(), None),
    (dict(tls=True, ca_cert=None), {'ca_cert': None}),
    (dict(tls=True, ca_cert=CA), {'ca_cert': CA}),
    # a CA implies TLS: it is never silently ignored
    (dict(tls=False, ca_cert=CA), {'ca_cert': CA}),
])
def test_tls_from_params(params, tls):
    assert _redis.tls_from_params(params) == tls


def test_client_kwargs_verify_chain_and_name_with_a_ca_and_nothing_without():
    assert _redis.client_tls_kwargs(None) == {}
    assert _redis.client_tls_kwargs({'ca_cert': CA}) == dict(ssl=True, ssl_ca_certs=CA, ssl_cert_reqs='required',
                                                             ssl_check_hostname=True)
    assert _redis.client_tls_kwargs({'ca_cert': None}) == dict(ssl=True, ssl_ca_certs=None, ssl_cert_reqs='none',
                                                               ssl_check_hostname=False)


def test_cli_args():
    assert _redis.cli_tls_args(None) == []
    assert _redis.cli_tls_args({'ca_cert': CA}) == ['--tls', '--cacert', CA]
    assert _redis.cli_tls_args({'ca_cert': None}) == ['--tls', '--insecure']


def test_nodes_of_a_set_share_its_tls_setting_and_open_ssl_connections():
    sset = _redis.SentinelSet(['10.0.0.1:26379', '10.0.0.2:26379'], tls={'ca_cert': CA})
    nodes = sset.sentinels + [sset.data_node('10.0.0.3:6379')]
    for node in nodes:
        pool = node.client.connection_pool
        assert pool.connection_class is redis.SSLConnection
        assert pool.connection_kwargs['ssl_ca_certs'] == CA and pool.connection_kwargs['ssl_check_hostname'] is True
    plain = _redis.open_node('10.0.0.3', 6379)
    assert plain.client.connection_pool.connection_class is redis.Connection


def test_a_failed_handshake_names_the_ca_and_the_names():
    exc = redis.exceptions.ConnectionError('Error 1 connecting to 10.0.0.3:6379. [SSL: CERTIFICATE_VERIFY_FAILED] '
                                           'certificate verify failed: unable to get local issuer certificate')
    msg, reason = _redis.describe_error(exc, 'Redis', '10.0.0.3:6379', 'redis_password', True)
    assert reason == 'tls' and 'ca_cert' in msg and "certificate's names" in msg
    msg, reason = _redis.describe_error(redis.exceptions.ConnectionError('Connection closed by server.'),
                                        'Redis', '10.0.0.3:6379', 'redis_password', True)
    assert reason == 'unreachable' and 'tls' in msg


def test_temp_server_serves_tls_only_with_the_given_certificate():
    tls = dict(cert='/x/server.crt', key='/x/server.key', ca_cert=CA)
    lines = _redissnap.temp_server_config('172.29.0.50', 16379, 'pw', '/d', tls=tls).splitlines()
    assert 'port 0' in lines and 'tls-port 16379' in lines and 'port 16379' not in lines
    for line in ('tls-cert-file /x/server.crt', 'tls-key-file /x/server.key', 'tls-ca-cert-file ' + CA,
                 'tls-auth-clients no'):
        assert line in lines
    assert not any(line.startswith('tls-') for line in _redissnap.temp_server_config('h', 1, 'pw', '/d').splitlines())
