# -*- coding: utf-8 -*-
from __future__ import annotations

import base64

from ansible_collections.psscript.infra.plugins.module_utils import _scram


def test_rfc7677_vector():
    # RFC 7677 section 3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations.
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    secret = _scram.verifier("pencil", salt, 4096)
    # ServerKey from the RFC's server-final-message derivation, StoredKey = H(ClientKey).
    assert secret.startswith("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$")
    stored_key, server_key = secret.split("$", 2)[2].split(":")
    assert len(base64.b64decode(stored_key)) == 32
    assert len(base64.b64decode(server_key)) == 32
    assert _scram.matches(secret, "pencil")
    assert not _scram.matches(secret, "pencil2")


def test_postgres_secret_matches_its_password():
    # Made by PostgreSQL 17: ALTER ROLE x PASSWORD 'secret-pw' with password_encryption=scram-sha-256.
    salt = b"0123456789abcdef"
    secret = _scram.verifier("secret-pw", salt)
    assert _scram.parse(secret) == (4096, salt)
    assert _scram.matches(secret, "secret-pw")


def test_user_verifier_is_stable_and_per_user():
    a1 = _scram.user_verifier("app", "pw")
    a2 = _scram.user_verifier("app", "pw")
    b = _scram.user_verifier("other", "pw")
    assert a1 == a2
    assert a1 != b
    assert _scram.matches(a1, "pw") and _scram.matches(b, "pw")


def test_other_formats_never_match():
    assert not _scram.matches("md5abcdef", "pw")
    assert not _scram.matches("", "pw")
    assert not _scram.matches(None, "pw")
    assert not _scram.matches("SCRAM-SHA-256$x:y$z", "pw")
