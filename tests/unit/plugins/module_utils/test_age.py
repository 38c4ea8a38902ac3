# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_age: recipients, the Bech32 keys made on the controller, the identity file, age's errors in words, and the
S3 copies encrypted in the stream (with a stand-in for the age binary: a reversible transform)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import io
import os
import stat

import pytest
import yaml

from ansible_collections.psscript.infra.plugins.module_utils import _age, _catalog, _s3
from ansible_collections.psscript.infra.plugins.module_utils._s3 import S3Error, S3Store

# A key pair age-keygen 1.2.1 (Debian trixie) made: the controller's Python must derive the same public key.
VECTOR_SECRET = 'AGE-SECRET-KEY-1VVRL302G3FTMAP4TMMCJY5SMGLRALSCXL60QF0NC22VVA8WW6SDQZJ440L'
VECTOR_PUBLIC = 'age15rz66fcd02jpj5nq604pwgngsgs7sf93ctcse4t7fhgue33wj37qfslul6'
ROLE_VARS = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'roles', 'backup', 'vars', 'main.yml')


def test_public_key_derived_like_age_keygen():
    text = '# created: 2026-12-02T16:02:35Z\n# public key: %s\n%s\n' % (VECTOR_PUBLIC, VECTOR_SECRET)
    assert _age.recipient_of_identity(text) == VECTOR_PUBLIC
    hrp, data = _age.bech32_decode(VECTOR_SECRET)
    assert hrp == 'age-secret-key-' and len(data) == 32
    assert _age.bech32_encode('age-secret-key-', data).upper() == VECTOR_SECRET


def test_identity_text_round_trips():
    secret = bytes(range(32))
    text = _age.identity_text(secret)
    public = _age.recipient_of_identity(text)
    assert '# public key: %s\n' % public in text and _age.RECIPIENT_RE.match(public)
    with pytest.raises(_age.AgeError, match='AGE-SECRET-KEY-1'):
        _age.recipient_of_identity('# nothing here\n')
    with pytest.raises(ValueError, match='checksum'):
        _age.bech32_decode(VECTOR_SECRET[:-1] + ('Q' if VECTOR_SECRET[-1] != 'Q' else 'P'))


@pytest.mark.parametrize('recipients, words', [
    ([VECTOR_PUBLIC], None),
    ([], None),
    (['age1short'], 'age1short is not an age X25519 public key'),
    ([VECTOR_PUBLIC.upper()], 'is not an age X25519 public key'),
    (['ssh-ed25519 AAAAC3Nza'], 'is not an age X25519 public key'),
    ('age1...', 'must be a list'),
])
def test_recipient_problems(recipients, words):
    problems = _age.recipient_problems(recipients)
    assert (problems == []) if words is None else (words in problems[0])
    if words and isinstance(recipients, list):
        assert _s3.check_params(dict(bucket='b', age_recipients=recipients))[0].startswith('s3.age_recipients: ')


def test_the_role_checks_recipients_with_the_same_pattern():
    with open(ROLE_VARS) as handle:
        assert yaml.safe_load(handle)['backup_age_recipient_pattern'] == _age.RECIPIENT_RE.pattern


def test_ensure_identity_file_creates_once_private(tmp_path):
    path = str(tmp_path / 'keys' / 'backup-age-identity.txt')
    assert _age.ensure_identity_file(path, check_mode=True) == ('', True, False) and not os.path.exists(path)
    recipient, created, fixed = _age.ensure_identity_file(path, random_bytes=lambda n: b'\x01' * n)
    assert created and not fixed and _age.RECIPIENT_RE.match(recipient)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    before = open(path).read()
    os.chmod(path, 0o644)
    assert _age.ensure_identity_file(path) == (recipient, False, True)
    assert open(path).read() == before and stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize('stderr, words', [
    ('age: error: no identity matched any of the recipients', 'is not one of the recipients'),
    ('age: error: failed to read header: parsing age header: unexpected intro: "x"', 'not an age file'),
    ('age: error: reading "/k": failed to open file', 'age failed'),
])
def test_describe_failure(stderr, words):
    assert words in _age.describe_failure(stderr, 'Decrypting x', '/k')


def test_check_identity_file(tmp_path):
    with pytest.raises(_age.AgeError, match='no private key was given'):
        _age.check_identity_file(None)
    with pytest.raises(_age.AgeError, match='does not exist'):
        _age.check_identity_file(str(tmp_path / 'nope'))


def test_commands():
    assert _age.encrypt_command('age', ['a', 'b']) == ['age', '--encrypt', '--recipient', 'a', '--recipient', 'b']
    assert _age.decrypt_command('age', '/k') == ['age', '--decrypt', '--identity', '/k']


# ---------------------------------------------------------------------------------------------
# S3 copies encrypted in the stream (moto's S3; a stand-in for the age binary)

MAGIC = b'FAKE-AGE\n'


def _scramble(data):
    return bytes(b ^ 0x5A for b in data)


class FakeReader(object):
    def __init__(self, path):
        with open(path, 'rb') as handle:
            self._buf = io.BytesIO(MAGIC + _scramble(handle.read()))
        self._digest, self.size, self.sha256 = hashlib.sha256(), 0, None

    def read(self, size=-1):
        data = self._buf.read(size)
        self._digest.update(data)
        self.size += len(data)
        return data

    def close(self):
        self.sha256 = self._digest.hexdigest()

    def abort(self):
        pass


class FakeAge(object):
    """Encrypts by XOR behind a header; decrypts only with the identity file whose text is 'right'."""

    def open_encrypted(self, path, recipients):
        return FakeReader(path)

    def decrypt_to(self, chunks, identity_file, target, what):
        _age.check_identity_file(identity_file)
        data = b''.join(chunks)
        with open(identity_file) as handle:
            if handle.read().strip() != 'right':
                raise _age.AgeError(_age.describe_failure('no identity matched any of the recipients', what, identity_file))
        with open(target, 'wb') as handle:
            handle.write(_scramble(data[len(MAGIC):]))
        return _age.hash_path(target)


@pytest.fixture
def s3_env(s3_client):
    s3_client.create_bucket(Bucket='psscript-test')
    return s3_client


def _params(**extra):
    result = dict(bucket='psscript-test', prefix='enc', endpoint_url=None, region='us-east-1', access_key='testing',
                  secret_key='testing', sse=None, sse_kms_key_id=None, validate_certs=True, age_recipients=[VECTOR_PUBLIC])
    result.update(extra)
    return result


def _backup(root, backup_id):
    staged = _catalog.start_backup(root, backup_id)
    os.makedirs(os.path.join(staged, 'data'))
    with open(os.path.join(staged, 'data', 'rows'), 'wb') as handle:
        handle.write(b'PLAINTEXT-MARKER ' * 500)
    entry = _catalog.make_entry(backup_id, 'full', _catalog.utc_now(), _catalog.utc_now(), _catalog.hash_tree(staged))
    _catalog.publish(root, entry, staged)
    return entry


def test_encrypted_upload_verifies_without_key_and_downloads_with_it(s3_env, tmp_path):
    root, restores = str(tmp_path / 'local'), str(tmp_path / 'restore')
    os.makedirs(root)
    os.makedirs(restores)
    entry = _backup(root, '20250101T000000Z-full')
    store = S3Store(_params(), 'postgres', client=s3_env, age=FakeAge())
    summary = store.upload(root, entry)
    assert summary['encryption'] == dict(method='age', recipients=[VECTOR_PUBLIC])
    stored = s3_env.get_object(Bucket='psscript-test', Key='enc/postgres/20250101T000000Z-full/data/rows')['Body'].read()
    assert stored.startswith(MAGIC) and b'PLAINTEXT-MARKER' not in stored
    remote = store.get_entry(entry['id'])
    item = remote['files']['data/rows']
    assert item['sha256'] == hashlib.sha256(stored).hexdigest() and item['size'] == len(stored)
    assert (item['plain_sha256'], item['plain_size']) == (entry['files']['data/rows']['sha256'], entry['files']['data/rows']['size'])
    # Verify reads S3 with no key at all, for the local entry and for the remote-only one.
    assert S3Store(_params(age_recipients=[]), 'postgres', client=s3_env, age=FakeAge()).verify(entry)['checks'] == \
        ['s3 sizes', 's3 age', 's3 sha256']
    assert store.verify(remote)['ok']
    # Download: refused without the key, and with the wrong one, before anything is published.
    with pytest.raises(S3Error, match='no private key was given') as caught:
        store.download(restores, entry['id'])
    assert caught.value.kind == 'key' and os.listdir(restores) == []
    wrong, right = tmp_path / 'wrong', tmp_path / 'right'
    wrong.write_text('wrong')
    right.write_text('right')
    with pytest.raises(S3Error, match='not one of the recipients'):
        S3Store(_params(age_identity_file=str(wrong)), 'postgres', client=s3_env, age=FakeAge()).download(restores, entry['id'])
    assert os.listdir(restores) == []
    got = S3Store(_params(age_identity_file=str(right)), 'postgres', client=s3_env, age=FakeAge()).download(restores, entry['id'])
    assert got['files'] == entry['files'] and got['s3']['encryption']['method'] == 'age' and 'encryption' not in got
    with open(os.path.join(restores, entry['id'], 'data', 'rows'), 'rb') as handle:
        assert handle.read() == b'PLAINTEXT-MARKER ' * 500
    assert _catalog.read_entry(os.path.join(restores, entry['id']))['files'] == entry['files']


def test_encrypted_copy_of_another_backup_is_refused(s3_env, tmp_path):
    root = str(tmp_path / 'local')
    os.makedirs(root)
    entry = _backup(root, '20250101T000000Z-full')
    store = S3Store(_params(), 'postgres', client=s3_env, age=FakeAge())
    store.upload(root, entry)
    other = dict(entry, files={'data/rows': dict(entry['files']['data/rows'], sha256='0' * 64)})
    with pytest.raises(S3Error, match='not a copy of the local backup'):
        store.verify(other)


def test_encrypted_wal_area(s3_env, tmp_path):
    archive, dest = tmp_path / 'wal', tmp_path / 'fetched'
    archive.mkdir()
    dest.mkdir()
    names = ['000000010000000000000001', '00000002.history']
    (archive / names[0]).write_bytes(b'WAL-MARKER' * 100)
    (archive / names[1]).write_bytes(b'1\t0/3000000\tno recovery target specified\n')
    store = S3Store(_params(), 'postgres', client=s3_env, age=FakeAge())
    assert store.put_area('wal', str(archive), names)['uploaded'] == names
    assert store.put_area('wal', str(archive), names) == dict(uploaded=[], present=names)
    assert store.area_encrypted('wal', names) == names[:1]
    body = s3_env.get_object(Bucket='psscript-test', Key='enc/postgres/wal/' + names[0])['Body'].read()
    assert b'WAL-MARKER' not in body
    # The history file needs no key (a restore's plan reads it in the backup container); the segment does.
    assert store.get_area('wal', names[1:], str(dest)) == names[1:]
    with pytest.raises(S3Error, match='no private key') as caught:
        store.get_area('wal', names[:1], str(dest))
    assert caught.value.kind == 'key'
    (tmp_path / 'right').write_text('right')
    keyed = S3Store(_params(age_identity_file=str(tmp_path / 'right')), 'postgres', client=s3_env, age=FakeAge())
    assert keyed.get_area('wal', names[:1], str(dest)) == names[:1]
    assert (dest / names[0]).read_bytes() == b'WAL-MARKER' * 100


def test_a_missing_age_binary_is_said_in_words(tmp_path):
    plain = tmp_path / 'plain'
    plain.write_bytes(b'x')
    (tmp_path / 'key').write_text('k')
    age = _age.Age(binary=str(tmp_path / 'no-age-here'))
    with pytest.raises(_age.AgeError, match='install the Debian package age'):
        age.open_encrypted(str(plain), [VECTOR_PUBLIC])
    with pytest.raises(_age.AgeError, match='install the Debian package age'):
        age.decrypt_to([b'x'], str(tmp_path / 'key'), str(tmp_path / 'out'), 'Decrypting x')
