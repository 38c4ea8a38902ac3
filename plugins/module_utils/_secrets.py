# -*- coding: utf-8 -*-
# Copyright: psscript.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The stack's generated passwords: created on first run, reused ever after.

The file lives on the controller, mode 0600 in a 0700 directory, and is written
atomically (temporary file, fsync, rename), so an interrupted run never leaves
a half-written file that would make the next run generate new passwords.

Decisions (and why):
- One parser (parse) for everyone who reads the file: the stack_secrets module and ./stackctl.
- An empty or null value means the password is missing, so ensure() generates it again; an
  operator who empties a line asks for a new password, never for the literal "None".
- A value YAML reads as anything but a string (0123 as the integer 83, 1e5, yes, a list) is an
  error naming the key, never converted: str() of what YAML made of it is not what was written,
  and the services would get a different password from the one the operator sees.
- write() single-quotes every value, so any YAML reader (1.1 or 1.2) reads back the same strings,
  even a generated password made only of digits or looking like 1e5.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import secrets
import stat

from ansible_collections.psscript.infra.plugins.module_utils._files import write_text_atomic

try:
    import yaml
except ImportError:  # pragma: no cover - ansible-core always ships PyYAML
    yaml = None

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# URL-safe alphabet: no quoting needed in redis.conf, pgbouncer.ini or an env file.
ALPHABET_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class SecretsError(Exception):
    """A secrets file that cannot be read, parsed or written."""


def generate(length):
    """A random password of exactly `length` URL-safe characters."""
    if length < 16:
        raise SecretsError("secret length must be at least 16 characters, not %d" % length)
    return secrets.token_urlsafe(length)[:length]


def _yaml_type(value):
    """What YAML made of a value, in the operator's words."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "a %s" % type(value).__name__


def parse(text, source="the secrets file"):
    """The name: password mapping in text (YAML); empty or null values are left out (missing).

    Raises SecretsError, naming the key and the fix, for a value that YAML does not read as a
    string; the value itself is never put in the message."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SecretsError("cannot read %s: %s" % (source, exc))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SecretsError("%s must hold a mapping of name: password" % source)
    secrets = {}
    for name, value in data.items():
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise SecretsError("%s: secret name %r must be lower-case letters, digits and underscores"
                               % (source, name))
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise SecretsError(
                "%s: YAML reads the value of %s as %s, not as the text written; quote it (%s: '...') "
                "to keep it, or delete the line to generate a new password"
                % (source, name, _yaml_type(value), name))
        secrets[name] = value
    return secrets


def load(path):
    """The secrets stored at path ({} when the file does not exist); see parse."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretsError("cannot read the secrets file %s: %s" % (path, exc))
    return parse(text, "the secrets file %s" % path)


def ensure(existing, names, length, generator=generate):
    """(secrets, added): existing values kept, missing names generated."""
    for name in names:
        if not NAME_RE.match(name):
            raise SecretsError("secret name %r must be lower-case letters, digits and underscores" % name)
    result = dict(existing)
    added = []
    for name in names:
        value = result.get(name)
        if value is None or value == "":
            result[name] = generator(length)
            added.append(name)
        elif not ALPHABET_RE.match(value):
            raise SecretsError(
                "the stored secret %r has characters outside [A-Za-z0-9_-]; "
                "it would need quoting in the services' config files: replace it" % name
            )
    return result, added


def mode_is_private(path):
    """True when only the owner can read or write the file."""
    return stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0


class _Quoted(str):
    """A value written single-quoted, so that YAML reads it back as this string."""


def _represent_quoted(dumper, value):
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style="'")


if yaml is not None:
    class _SecretsDumper(yaml.SafeDumper):
        """SafeDumper that single-quotes _Quoted values (names stay plain where YAML allows)."""

    _SecretsDumper.add_representer(_Quoted, _represent_quoted)


def dump(data):
    """The file's text for data: a header, then name: 'password' per line, sorted by name."""
    return "# Generated by psscript.infra. Keep this file private (0600); back it up.\n" + yaml.dump(
        dict((name, _Quoted(value)) for name, value in sorted(data.items())),
        Dumper=_SecretsDumper, default_flow_style=False, allow_unicode=True)


def write(path, data):
    """Write the secrets atomically with mode 0600 (directory 0700)."""
    text = dump(data)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
        write_text_atomic(path, text, 0o600)
    except OSError as exc:
        raise SecretsError("cannot write the secrets file %s: %s" % (path, exc))
