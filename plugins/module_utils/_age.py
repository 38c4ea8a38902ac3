# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Client-side encryption of the S3 copies with ``age`` (the Debian package; the psscript/backup image has it).

Decisions (and why):

- **What is encrypted: every object the backup modules store in S3** (the files of PostgreSQL base backups,
  plain or zstd, the archived WAL the shipper and the backups upload, Redis RDB snapshots). The remote
  ``catalog.json`` stays readable (it holds names, times, LSNs and hashes, no data) and is signed with the
  catalog key. The copies in the backup volume stay plain: the backup host verifies every backup right after it
  is taken (pg_verifybackup, redis-check-rdb), builds incrementals on the parent's files and checks the WAL it
  will replay, which all need the plaintext, and the private key is never on that host. Those copies live on the
  Docker host of the database, whose data directory holds the same rows in clear; the copy that leaves the host
  is the one encrypted.
- **In the stream**: ``age`` reads the local file and boto3 uploads what it writes (no encrypted copy on disk);
  a download is fed to ``age --decrypt`` while it arrives. The SHA-256 of the stored bytes is taken while they
  pass, and the remote catalog records it (``sha256``, ``size``: hashes over what is stored) beside the
  plaintext's (``plain_sha256``, ``plain_size``), so a verify reads S3 without the key and a restore checks both.
- **Recipients** are ``age1...`` X25519 public keys (the inventory's ``backup_age_recipients``); every
  object is encrypted to all of them, so any one private key restores (rotation: add the new key, deploy,
  retire the old one once no kept backup needs it). Plugin and SSH recipients are refused: they need more on the
  backup host than the ``age`` binary.
- **The identity** (private key) is only given to a restore (``s3.age_identity_file``), as a file path: never in
  a module argument's value, a command line or a log. A restore without it, or with one that does not match,
  fails before anything is written.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re
import subprocess
import tempfile

# Bech32 (lower case) X25519 recipient: "age1" and 58 data characters.
RECIPIENT_RE = re.compile(r'^age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}$')
METHOD = 'age'
# What the remote catalog.json records about an encrypted copy.
ENCRYPTION_KEY = 'encryption'
_CHUNK = 1024 * 1024
MISSING = ('the age binary is not installed here: install the Debian package age (the psscript/backup image has it; '
           'rebuild it with playbooks/images.yml)')
IDENTITY_FIX = ('give the private key that matches one of the recipients (restore_age_identity_file, or the s3 '
                'option\'s age_identity_file)')


class AgeError(Exception):
    """An encryption problem with an operator-readable message."""

    def __init__(self, msg):
        super(AgeError, self).__init__(msg)
        self.msg = msg


def recipient_problems(recipients):
    """Why ``recipients`` cannot be used (list of phrases; [] when fine)."""
    if not isinstance(recipients, (list, tuple)):
        return ['age recipients must be a list of age1... public keys']
    problems = []
    for item in recipients:
        if not isinstance(item, str) or not RECIPIENT_RE.match(item):
            shown = item if isinstance(item, str) and len(item) < 80 else repr(item)[:40] + '...'
            problems.append('%s is not an age X25519 public key (age1 followed by 58 bech32 characters; '
                            'age-keygen -y <identity file> prints it)' % shown)
    return problems


def encryption_record(recipients):
    """The ``encryption`` field of a remote catalog entry encrypted to ``recipients``."""
    return dict(method=METHOD, recipients=sorted(recipients))


def encrypt_command(binary, recipients):
    cmd = [binary, '--encrypt']
    for recipient in recipients:
        cmd += ['--recipient', recipient]
    return cmd


def decrypt_command(binary, identity_file):
    return [binary, '--decrypt', '--identity', identity_file]


def describe_failure(stderr, what, identity_file=None):
    """The message for a failed ``age`` run: the cause and the fix."""
    text = (stderr or '').strip().replace('\n', ' ')
    if 'no identity matched' in text:
        return ('%s: the private key in %s is not one of the recipients it was encrypted to; %s'
                % (what, identity_file, IDENTITY_FIX))
    if 'header' in text or 'armor' in text or 'unknown format' in text or 'intro' in text:
        return '%s: not an age file, or its header is damaged (age: %s)' % (what, text)
    if identity_file and ('identity' in text or 'identities' in text):
        return '%s: %s is not a usable age identity file (age: %s); %s' % (what, identity_file, text, IDENTITY_FIX)
    return '%s: age failed (%s)' % (what, text or 'no message')


def check_identity_file(path):
    """Fail (AgeError) unless ``path`` is a private key file the restore can read."""
    if not path:
        raise AgeError('The S3 copy is encrypted with age and no private key was given; %s' % IDENTITY_FIX)
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise AgeError('The age identity file %s does not exist or cannot be read; %s' % (path, IDENTITY_FIX))


class Age(object):
    """The ``age`` binary, run through ``popen`` (``subprocess.Popen`` unless a test gives another)."""

    def __init__(self, binary='age', popen=None):
        self.binary = binary
        self.popen = popen or subprocess.Popen

    def open_encrypted(self, path, recipients):
        """A file-like object: the age encryption of the file ``path``, made while it is read."""
        return EncryptedReader(self, path, recipients)

    def decrypt_to(self, chunks, identity_file, target, what):
        """Decrypt the ciphertext ``chunks`` (an iterable of bytes) into the file ``target``; returns
        ``(sha256 hex, size)`` of the plaintext written. Raises AgeError with the reason."""
        check_identity_file(identity_file)
        with tempfile.TemporaryFile() as errors:
            with open(target, 'wb') as out:
                try:
                    proc = self.popen(decrypt_command(self.binary, identity_file), stdin=subprocess.PIPE, stdout=out,
                                      stderr=errors)
                except OSError as err:
                    raise AgeError('%s: %s (%s)' % (what, MISSING, err))
                try:
                    for chunk in chunks:
                        proc.stdin.write(chunk)
                except (IOError, OSError):  # age stopped reading: its exit status and message say why
                    pass
                finally:
                    try:
                        proc.stdin.close()
                    except (IOError, OSError):
                        pass
                rc = proc.wait()
                out.flush()
                os.fsync(out.fileno())
            if rc != 0:
                errors.seek(0)
                raise AgeError(describe_failure(errors.read().decode('utf-8', 'replace'), what, identity_file))
        return hash_path(target)


def hash_path(path):
    digest, size = hashlib.sha256(), 0
    with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b''):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class EncryptedReader(object):
    """``read()`` returns the ciphertext ``age --encrypt`` writes for ``path`` (boto3's upload_fileobj reads it);
    ``sha256``/``size`` are the stored bytes' once ``close()`` has checked that age succeeded."""

    def __init__(self, age, path, recipients):
        problems = recipient_problems(recipients)
        if problems or not recipients:
            raise AgeError('Cannot encrypt: %s' % ('; '.join(problems) or 'no age recipient'))
        self.path = path
        self._source = open(path, 'rb')
        self._errors = tempfile.TemporaryFile()
        try:
            self._proc = age.popen(encrypt_command(age.binary, recipients), stdin=self._source, stdout=subprocess.PIPE,
                                   stderr=self._errors)
        except OSError as err:
            self._source.close()
            self._errors.close()
            raise AgeError('Encrypting %s: %s (%s)' % (path, MISSING, err))
        self._digest = hashlib.sha256()
        self.size = 0
        self.sha256 = None

    def read(self, size=-1):
        data = self._proc.stdout.read(size if size is not None and size >= 0 else -1)
        self._digest.update(data)
        self.size += len(data)
        return data

    def close(self):
        """Wait for age; raise AgeError when it failed (the upload must then not be trusted)."""
        if self.sha256 is not None:
            return
        rest = self._proc.stdout.read()
        self._digest.update(rest)
        self.size += len(rest)
        self._proc.stdout.close()
        rc = self._proc.wait()
        self._source.close()
        self._errors.seek(0)
        message = self._errors.read().decode('utf-8', 'replace')
        self._errors.close()
        if rc != 0:
            raise AgeError(describe_failure(message, 'Encrypting %s' % self.path))
        if rest:
            raise AgeError('Encrypting %s: the upload stopped before the end of the encrypted stream' % self.path)
        self.sha256 = self._digest.hexdigest()

    def abort(self):
        try:
            self._proc.kill()
        except OSError:
            pass
        self._proc.wait()
        self._source.close()
        self._errors.close()


# ---------------------------------------------------------------------------------------------
# Identities generated on the controller (no age binary there): X25519 keys in age's Bech32 encoding.

_BECH32 = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l'
SECRET_HRP = 'age-secret-key-'
PUBLIC_HRP = 'age'


def _polymod(values):
    generators = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3]
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1ffffff) << 5 ^ value
        for i in range(5):
            check ^= generators[i] if (top >> i) & 1 else 0
    return check


def _hrp_expand(hrp):
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _to_5bit(data):
    acc, bits, out = 0, 0, []
    for byte in bytearray(data):
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            out.append((acc >> bits) & 31)
    if bits:
        out.append((acc << (5 - bits)) & 31)
    return out


def _from_5bit(values):
    acc, bits, out = 0, 0, bytearray()
    for value in values:
        acc = (acc << 5) | value
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 255)
    if bits >= 5 or (acc & ((1 << bits) - 1)):
        raise ValueError('invalid padding')
    return bytes(out)


def bech32_encode(hrp, data):
    values = _to_5bit(data)
    checksum = _polymod(_hrp_expand(hrp) + values + [0] * 6) ^ 1
    values += [(checksum >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + '1' + ''.join(_BECH32[v] for v in values)


def bech32_decode(text):
    """``(hrp, bytes)`` of a Bech32 string (either case); ValueError when it is not one."""
    lowered = text.lower()
    if text not in (lowered, text.upper()) or '1' not in lowered:
        raise ValueError('not a Bech32 string')
    hrp, dummy, rest = lowered.rpartition('1')
    if len(rest) < 6 or any(c not in _BECH32 for c in rest):
        raise ValueError('not a Bech32 string')
    values = [_BECH32.index(c) for c in rest]
    if _polymod(_hrp_expand(hrp) + values) != 1:
        raise ValueError('bad Bech32 checksum')
    return hrp, _from_5bit(values[:-6])


def public_key_of(secret_bytes):
    """The X25519 public key of a 32-byte private key (cryptography, which ansible-core requires)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives import serialization
    key = X25519PrivateKey.from_private_bytes(secret_bytes)
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def identity_text(secret_bytes, created=None):
    """An age identity file (as age-keygen writes it) for ``secret_bytes``."""
    public = bech32_encode(PUBLIC_HRP, public_key_of(secret_bytes))
    return ('# created: %s\n# public key: %s\n%s\n'
            % (created or 'by psscript.infra', public, bech32_encode(SECRET_HRP, secret_bytes).upper()))


def recipient_of_identity(text):
    """The ``age1...`` public key of the first X25519 identity in an identity file's text."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith('AGE-SECRET-KEY-1'):
            hrp, data = bech32_decode(line)
            if hrp != SECRET_HRP or len(data) != 32:
                break
            return bech32_encode(PUBLIC_HRP, public_key_of(data))
    raise AgeError('No AGE-SECRET-KEY-1... line (an age X25519 identity) in the identity file')


def ensure_identity_file(path, check_mode=False, random_bytes=os.urandom):
    """Read the identity at ``path`` or create it (0600, directory 0700). Returns ``(recipient, created,
    mode_fixed)``; in check mode nothing is written and a missing file gives recipient ''."""
    if os.path.exists(path):
        with open(path) as handle:
            recipient = recipient_of_identity(handle.read())
        mode_fixed = (os.stat(path).st_mode & 0o777) != 0o600
        if mode_fixed and not check_mode:
            os.chmod(path, 0o600)
        return recipient, False, mode_fixed
    if check_mode:
        return '', True, False
    directory = os.path.dirname(path) or '.'
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    text = identity_text(random_bytes(32))
    tmp = '%s.tmp.%d' % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, 'w') as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(tmp, path)
    return recipient_of_identity(text), True, False
