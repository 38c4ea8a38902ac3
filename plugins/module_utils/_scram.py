# -*- coding: utf-8 -*-
# Copyright: psscript.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SCRAM-SHA-256 secrets in PostgreSQL's stored format.

PostgreSQL stores `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
(RFC 5802/7677). Setting a role's password to such a secret means the plain
password never reaches the server (nor its logs), and PgBouncer can use the
same secret from userlist.txt: it then authenticates clients and servers
without a plain-text password and without computing PBKDF2 on every login.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import hmac

PREFIX = "SCRAM-SHA-256$"
DEFAULT_ITERATIONS = 4096


class ScramError(ValueError):
    """A stored secret that is not in SCRAM-SHA-256 format."""


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def derived_salt(user, password):
    """A stable 16-byte salt for a user's password, so re-runs render the same secret."""
    return hashlib.sha256(("psscript-scram-salt\0%s\0%s" % (user, password)).encode("utf-8")).digest()[:16]


def verifier(password, salt, iterations=DEFAULT_ITERATIONS):
    """The stored SCRAM-SHA-256 secret of a password with this salt (bytes)."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return "%s%d:%s$%s:%s" % (PREFIX, iterations, _b64(salt), _b64(stored_key), _b64(server_key))


def parse(secret):
    """(iterations, salt bytes) of a stored secret."""
    if not secret or not secret.startswith(PREFIX):
        raise ScramError("not a SCRAM-SHA-256 secret")
    try:
        head, _keys = secret[len(PREFIX):].split("$", 1)
        iterations, salt = head.split(":", 1)
        return int(iterations), base64.b64decode(salt, validate=True)
    except (ValueError, TypeError):
        raise ScramError("malformed SCRAM-SHA-256 secret")


def matches(secret, password):
    """True when the stored secret was made from this password."""
    try:
        iterations, salt = parse(secret)
    except ScramError:
        return False
    return hmac.compare_digest(verifier(password, salt, iterations), secret)


def user_verifier(user, password):
    """The secret the stack stores for this user (stable salt)."""
    return verifier(password, derived_salt(user, password))
