# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The authenticated catalog: entries signed with the catalog key (HMAC-SHA256), and every entry read,
locally and in S3, refused when its hmac is missing or does not match."""

from __future__ import annotations

import datetime
import json
import os

import pytest

from ansible_collections.psscript.infra.plugins.module_utils import _catalog
from ansible_collections.psscript.infra.plugins.module_utils._catalog import CatalogError
from ansible_collections.psscript.infra.plugins.module_utils._s3 import S3Error, S3Store

UTC = datetime.timezone.utc
KEY = b'k' * 40
BUCKET = 'psscript-mac'


def _backup(root, backup_id='20250101T000000Z-full', content=b'data'):
    staged = _catalog.start_backup(root, backup_id)
    os.makedirs(os.path.join(staged, 'data'))
    with open(os.path.join(staged, 'data', 'file'), 'wb') as handle:
        handle.write(content * 100)
    stop = datetime.datetime(2025, 1, 1, tzinfo=UTC)
    entry = _catalog.make_entry(backup_id, 'full', stop - datetime.timedelta(seconds=5), stop, _catalog.hash_tree(staged))
    _catalog.publish(root, entry, staged)
    return entry


def _marker(root, backup_id='20250101T000000Z-full'):
    return os.path.join(root, backup_id, _catalog.CATALOG_FILE)


def _edit(root, change, backup_id='20250101T000000Z-full'):
    with open(_marker(root, backup_id)) as handle:
        entry = json.load(handle)
    change(entry)
    with open(_marker(root, backup_id), 'w') as handle:
        json.dump(entry, handle)


def _listed(root):
    listed = _catalog.list_backups(root)
    return [e['id'] for e in listed['backups']], [u['error'] for u in listed['unreadable']]


def test_with_a_key_entries_are_signed_and_read_back(tmp_path):
    _catalog.use_key(KEY)
    entry = _backup(str(tmp_path))
    with open(_marker(str(tmp_path))) as handle:
        stored = json.load(handle)
    assert stored['hmac'] == _catalog.entry_mac(stored, KEY) and len(stored['hmac']) == 64
    assert _listed(str(tmp_path)) == ([entry['id']], [])
    # Recording a verify result rewrites the entry: signed again.
    _catalog.record_verify(str(tmp_path), entry, dict(ok=True, problems=[]))
    assert _listed(str(tmp_path)) == ([entry['id']], [])


def test_an_edited_entry_is_refused(tmp_path):
    _catalog.use_key(KEY)
    _backup(str(tmp_path))
    _edit(str(tmp_path), lambda e: e.update(stopped_at='2025-01-02T00:00:00.000000Z'))
    ids, errors = _listed(str(tmp_path))
    assert ids == [] and len(errors) == 1
    assert 'does not match its hmac' in errors[0] and 'action=sign' in errors[0]


def test_a_file_swapped_with_its_recorded_hash_is_refused(tmp_path):
    _catalog.use_key(KEY)
    entry = _backup(str(tmp_path))
    path = os.path.join(str(tmp_path), entry['id'], 'data', 'file')
    with open(path, 'wb') as handle:
        handle.write(b'evil' * 100)
    swapped = _catalog.hash_tree(os.path.join(str(tmp_path), entry['id']))
    _edit(str(tmp_path), lambda e: e.update(files=swapped))
    ids, errors = _listed(str(tmp_path))
    assert ids == [] and 'does not match its hmac' in errors[0]
    # Without the key the same entry would pass every hash check: only the MAC tells.
    _catalog.use_key(None)
    assert _listed(str(tmp_path))[0] == [entry['id']]


def test_an_unsigned_entry_is_refused_with_a_key_and_read_without(tmp_path):
    entry = _backup(str(tmp_path))
    with open(_marker(str(tmp_path))) as handle:
        assert 'hmac' not in json.load(handle)
    assert _listed(str(tmp_path)) == ([entry['id']], [])
    _catalog.use_key(KEY)
    ids, errors = _listed(str(tmp_path))
    assert ids == [] and 'has no hmac' in errors[0]
    # Another key: the signature does not match.
    _catalog.sign_unsigned(str(tmp_path))
    _catalog.use_key(b'x' * 40)
    assert 'does not match its hmac' in _listed(str(tmp_path))[1][0]


def test_writing_without_a_key_drops_a_stale_hmac(tmp_path):
    _catalog.use_key(KEY)
    entry = _backup(str(tmp_path))
    _catalog.use_key(None)
    _catalog.record_verify(str(tmp_path), entry, dict(ok=False, problems=['x']))
    with open(_marker(str(tmp_path))) as handle:
        assert 'hmac' not in json.load(handle)


def test_sign_unsigned_adopts_only_sound_unsigned_entries(tmp_path):
    root = str(tmp_path)
    _backup(root, '20250101T000000Z-full')
    _backup(root, '20250102T000000Z-full')
    _catalog.use_key(KEY)
    _backup(root, '20250103T000000Z-full')
    _edit(root, lambda e: e.update(bytes=1), '20250103T000000Z-full')
    _edit(root, lambda e: e.pop('stopped_at'), '20250102T000000Z-full')
    before = open(_marker(root, '20250101T000000Z-full')).read()
    dry = _catalog.sign_unsigned(root, check_mode=True)
    assert dry['signed'] == ['20250101T000000Z-full']
    assert open(_marker(root, '20250101T000000Z-full')).read() == before
    done = _catalog.sign_unsigned(root)
    assert done['signed'] == ['20250101T000000Z-full']
    assert sorted(item['id'] for item in done['refused']) == ['20250102T000000Z-full', '20250103T000000Z-full']
    assert _listed(root)[0] == ['20250101T000000Z-full']
    assert _catalog.sign_unsigned(root)['signed'] == []


def test_sign_needs_a_key(tmp_path):
    with pytest.raises(CatalogError, match='No catalog key'):
        _catalog.sign_unsigned(str(tmp_path))


def test_read_key_refuses_missing_and_short_keys(tmp_path):
    with pytest.raises(CatalogError, match='Cannot read the catalog key'):
        _catalog.read_key(str(tmp_path / 'none'))
    short = tmp_path / 'short'
    short.write_text('abc\n')
    with pytest.raises(CatalogError, match='fewer than 32'):
        _catalog.read_key(str(short))
    good = tmp_path / 'good'
    good.write_text('%s\n' % ('z' * 40))
    assert _catalog.read_key(str(good)) == b'z' * 40


def test_use_key_file_reads_the_option_else_the_environment(tmp_path):
    first, second = tmp_path / 'a', tmp_path / 'b'
    first.write_text('a' * 32)
    second.write_text('b' * 32)
    assert _catalog.use_key_file(str(first), environ={_catalog.KEY_FILE_ENV: str(second)})
    assert _catalog.entry_mac({}, b'a' * 32) == _catalog.entry_mac({}, _catalog._KEY['key'])
    assert _catalog.use_key_file(None, environ={_catalog.KEY_FILE_ENV: str(second)})
    assert _catalog._KEY['key'] == b'b' * 32
    assert not _catalog.use_key_file(None, environ={})


def test_the_mac_covers_every_key_but_itself():
    entry = dict(id='x', files={'a': dict(sha256='0' * 64, size=1)}, verified=None)
    mac = _catalog.entry_mac(entry, KEY)
    assert _catalog.entry_mac(dict(entry, hmac='whatever'), KEY) == mac
    assert _catalog.entry_mac(dict(entry, verified=True), KEY) != mac
    assert _catalog.entry_mac(dict(entry, files={'a': dict(sha256='1' * 64, size=1)}), KEY) != mac


@pytest.fixture
def bucket(s3_client):
    s3_client.create_bucket(Bucket=BUCKET)
    return s3_client


def _params():
    return dict(bucket=BUCKET, prefix='site', endpoint_url=None, region='us-east-1', access_key='testing',
                secret_key='testing', sse='AES256', sse_kms_key_id=None, validate_certs=True)


def test_s3_copies_are_signed_checked_and_adopted(bucket, tmp_path):
    root = str(tmp_path / 'local')
    os.makedirs(root)
    store = S3Store(_params(), 'postgres', client=bucket)
    unsigned = _backup(root, '20250101T000000Z-full')
    store.upload(root, unsigned)
    _catalog.use_key(KEY)
    signed = _backup(root, '20250102T000000Z-full')
    store.upload(root, signed)
    marker = 'site/postgres/20250102T000000Z-full/catalog.json'
    remote = json.loads(bucket.get_object(Bucket=BUCKET, Key=marker)['Body'].read())
    # The remote entry (with its directory list) carries its own MAC.
    assert remote['hmac'] == _catalog.entry_mac(remote, KEY) and 's3_dirs' in remote
    listing = store.listing()
    assert [e['id'] for e in listing['entries']] == [signed['id']]
    assert [u['id'] for u in listing['unreadable']] == [unsigned['id']]

    # A remote entry edited in the bucket is refused by the listing and by a download.
    remote['files']['data/file']['size'] += 1
    bucket.put_object(Bucket=BUCKET, Key=marker, Body=json.dumps(remote).encode())
    assert store.list_entries() == []
    elsewhere = str(tmp_path / 'elsewhere')
    os.makedirs(elsewhere)
    with pytest.raises(S3Error, match='does not match its hmac'):
        store.download(elsewhere, signed['id'])

    adopted = store.sign_unsigned()
    assert adopted['signed'] == [unsigned['id']] and [u['id'] for u in adopted['refused']] == [signed['id']]
    assert [e['id'] for e in store.list_entries()] == [unsigned['id']]
    got = store.download(elsewhere, unsigned['id'])
    assert _catalog.list_backups(elsewhere)['backups'][0]['id'] == got['id']
