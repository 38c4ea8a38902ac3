# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A real S3 HTTP endpoint for the module_utils tests: moto's server, started once per session on
127.0.0.1 (a free port), reset before every test that uses it. boto3 reaches it over HTTP exactly
as it reaches MinIO or AWS, through ``_s3.make_client``."""

from __future__ import annotations

import urllib.request

import pytest
from moto.server import ThreadedMotoServer

from ansible_collections.psscript.infra.plugins.module_utils import _s3

REGION = 'us-east-1'
ACCESS_KEY = 'testing'
SECRET_KEY = 'testing'


@pytest.fixture(scope='session')
def s3_server():
    server = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield 'http://%s:%d' % (host, port)
    finally:
        server.stop()


@pytest.fixture
def s3_endpoint(s3_server, monkeypatch):
    """The endpoint URL, emptied (every bucket gone) and with no AWS profile of this machine in the way."""
    for name in ('AWS_PROFILE', 'AWS_CONFIG_FILE', 'AWS_SHARED_CREDENTIALS_FILE'):
        monkeypatch.delenv(name, raising=False)
    with urllib.request.urlopen(urllib.request.Request(s3_server + '/moto-api/reset', data=b'', method='POST'),
                                timeout=30) as answer:
        assert answer.status == 200
    return s3_server


@pytest.fixture
def s3_client(s3_endpoint):
    """A boto3 S3 client of that endpoint, built like the modules build theirs (path addressing, s3v4)."""
    return _s3.make_client(dict(endpoint_url=s3_endpoint, region=REGION, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                                validate_certs=True))


@pytest.fixture(autouse=True)
def no_catalog_key(monkeypatch):
    """Every test starts without a catalog key (module state of _catalog) and without the environment
    variable that names one."""
    from ansible_collections.psscript.infra.plugins.module_utils import _catalog
    monkeypatch.delenv(_catalog.KEY_FILE_ENV, raising=False)
    _catalog.use_key(None)
    yield
    _catalog.use_key(None)
