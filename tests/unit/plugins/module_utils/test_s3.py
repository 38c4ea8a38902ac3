# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for module_utils._s3: the pure helpers, and S3Store against a real S3 HTTP endpoint
(moto's server on 127.0.0.1, started by conftest.py; the integration tests run the same server)."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys

import botocore.exceptions
import pytest

from ansible_collections.psscript.infra.plugins.module_utils import _catalog, _s3
from ansible_collections.psscript.infra.plugins.module_utils._s3 import S3Error, S3Store

UTC = datetime.timezone.utc
BUCKET = 'psscript-test'


# ---------------------------------------------------------------------------------------------
# Pure helpers


def test_argument_spec_matches_the_contract():
    spec = _s3.s3_argument_spec()
    assert list(spec) == ['s3']
    opts = spec['s3']['options']
    assert spec['s3']['type'] == 'dict' and spec['s3']['default'] is None
    assert opts['bucket'] == dict(type='str', required=True)
    assert opts['prefix']['default'] == ''
    assert opts['secret_key']['no_log'] is True
    assert opts['sse']['choices'] == ['AES256', 'aws:kms']
    assert opts['validate_certs'] == dict(type='bool', default=True)
    assert opts['read_timeout'] == dict(type='int', default=120) and opts['max_attempts'] == dict(type='int', default=5)
    assert sorted(opts) == sorted(['bucket', 'prefix', 'endpoint_url', 'region', 'access_key', 'secret_key', 'sse',
                                   'sse_kms_key_id', 'validate_certs', 'read_timeout', 'max_attempts', 'age_recipients',
                                   'age_identity_file'])


@pytest.mark.parametrize('prefix, kind, expected', [
    ('', 'postgres', 'postgres'),
    (None, 'redis', 'redis'),
    ('prod', 'postgres', 'prod/postgres'),
    ('/prod//site-a/', 'redis', 'prod/site-a/redis'),
])
def test_base_key(prefix, kind, expected):
    assert _s3.base_key(prefix, kind) == expected


def test_base_key_refuses_unknown_kind():
    with pytest.raises(S3Error, match='Unknown S3 object kind'):
        _s3.base_key('', 'mysql')


@pytest.mark.parametrize('params, problem', [
    (dict(bucket='b', sse_kms_key_id='k'), 'needs s3.sse=aws:kms'),
    (dict(bucket='b', sse='AES256', sse_kms_key_id='k'), 'needs s3.sse=aws:kms'),
    (dict(bucket='b', access_key='a'), 'give both'),
    (dict(bucket='b', secret_key='s'), 'give both'),
    (dict(bucket='b', prefix='a/../b'), "must not contain '..'"),
    (dict(bucket='b', read_timeout=0), 's3.read_timeout must be 1 or more'),
    (dict(bucket='b', max_attempts=0), 's3.max_attempts must be 1 or more'),
])
def test_check_params(params, problem):
    assert any(problem in p for p in _s3.check_params(params))


def test_check_params_accepts_good_ones():
    assert _s3.check_params(None) == []
    assert _s3.check_params(dict(bucket='b', sse='aws:kms', sse_kms_key_id='k', access_key='a', secret_key='s')) == []


def test_client_config_takes_the_timeout_and_attempts_or_the_defaults():
    pytest.importorskip('botocore')
    given = _s3._client_config(dict(bucket='b', read_timeout=5, max_attempts=1))
    assert given.read_timeout == 5 and given.retries == {'max_attempts': 1, 'mode': 'standard'}
    # A settings file (the WAL shipper's s3.json) without them gets the argument spec's defaults.
    default = _s3._client_config(dict(bucket='b'))
    assert default.read_timeout == _s3.READ_TIMEOUT == 120
    assert default.retries == {'max_attempts': _s3.MAX_ATTEMPTS, 'mode': 'standard'}


def test_put_args_always_carry_sse_and_hash():
    assert _s3.put_args(dict(bucket='b'), 'ab') == {'Metadata': {'sha256': 'ab'}}
    assert _s3.put_args(dict(sse='AES256', sse_kms_key_id=None), 'ab') == {
        'ServerSideEncryption': 'AES256', 'Metadata': {'sha256': 'ab'}}
    assert _s3.put_args(dict(sse='aws:kms', sse_kms_key_id='alias/backup')) == {
        'ServerSideEncryption': 'aws:kms', 'SSEKMSKeyId': 'alias/backup'}


@pytest.mark.parametrize('rel', ['', '/etc/passwd', '../x', 'a/../../x', 'a//b', './a'])
def test_check_relpath_refuses_escapes(rel):
    with pytest.raises(S3Error):
        _s3.check_relpath(rel)


@pytest.mark.parametrize('name', ['', '.hidden', 'a/b', '..', 'a b'])
def test_check_name_refuses(name):
    with pytest.raises(S3Error):
        _s3.check_name(name)


def _client_error(code, status):
    return botocore.exceptions.ClientError({'Error': {'Code': code, 'Message': 'msg'},
                                            'ResponseMetadata': {'HTTPStatusCode': status}}, 'PutObject')


@pytest.mark.parametrize('err, kind, words', [
    (_client_error('NoSuchBucket', 404), 'bucket', 'does not exist at http://s3:9000: create it'),
    (_client_error('AccessDenied', 403), 'access', 'Access denied to s3://b/k'),
    (_client_error('InvalidAccessKeyId', 403), 'access', 'check s3.access_key and s3.secret_key'),
    (_client_error('NoSuchKey', 404), 'missing', 's3://b/k does not exist'),
    (_client_error('404', 404), 'missing', 'does not exist'),
    (_client_error('SlowDown', 503), 'error', 'SlowDown'),
    (botocore.exceptions.NoCredentialsError(), 'access', 'No S3 credentials'),
    (botocore.exceptions.EndpointConnectionError(endpoint_url='http://s3:9000'), 'connect', 'Cannot reach'),
])
def test_explain_client_error(err, kind, words):
    result = _s3.explain_client_error(err, dict(bucket='b', endpoint_url='http://s3:9000'), 'upload', 'k')
    assert result.kind == kind and words in result.msg, result.msg


# What a fresh interpreter has imported after loading both backup modules: their start-up (every
# task, also without s3) must not pay for boto3 (#12 item 3).
_IMPORTS = """
import sys
%s
import ansible_collections.psscript.infra.plugins.modules.pg_backup
import ansible_collections.psscript.infra.plugins.modules.redis_snapshot
from ansible_collections.psscript.infra.plugins.module_utils import _s3
print(_s3.HAS_BOTO3, sorted(m for m, mod in sys.modules.items() if mod and m.split('.')[0] in ('boto3', 'botocore')))
try:
    _s3.make_client(dict(bucket='b', endpoint_url='http://127.0.0.1:9'))
except _s3.S3Error as err:
    print(err.kind, err.msg)
else:
    print('client', sorted(m for m in ('boto3', 'botocore.config', 'botocore.exceptions') if m in sys.modules))
"""


def _fresh_python(prelude=''):
    proc = subprocess.run([sys.executable, '-c', _IMPORTS % prelude], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_boto3_is_imported_only_when_a_client_is_made():
    loaded, client = _fresh_python()
    assert loaded == 'True []'
    assert client == "client ['boto3', 'botocore.config', 'botocore.exceptions']"


def test_missing_boto3_is_a_clear_error_not_an_import_failure():
    # sys.modules[name] = None makes both find_spec and import report the package as absent.
    loaded, failure = _fresh_python("sys.modules['boto3'] = None")
    assert loaded == 'False []'
    assert failure.startswith('error The s3 option needs the Python library boto3 (pip install boto3'), failure


def test_compare_remote():
    entry = dict(files={'a': dict(size=1, sha256='x'), 'b/c': dict(size=2, sha256='y')})
    assert _s3.compare_remote(entry, {'a': 1, 'b/c': 2, 'catalog.json': 9}, 'catalog.json') == []
    problems = _s3.compare_remote(entry, {'a': 3, 'extra': 1}, 'catalog.json')
    assert problems == ['a: size 3 in S3, recorded 1', 'b/c: missing in S3',
                        'extra: in S3 but not recorded in the catalog',
                        'catalog.json: missing in S3 (the upload did not finish)']
    assert 'records no files' in _s3.compare_remote(dict(files={}), {}, 'catalog.json')[0]


# ---------------------------------------------------------------------------------------------
# S3Store against the S3 HTTP endpoint


@pytest.fixture
def s3_env(s3_client):
    s3_client.create_bucket(Bucket=BUCKET)
    return s3_client


def params(**extra):
    result = dict(bucket=BUCKET, prefix='site', endpoint_url=None, region='us-east-1', access_key='testing',
                  secret_key='testing', sse='AES256', sse_kms_key_id=None, validate_certs=True)
    result.update(extra)
    return result


def make_backup(root, backup_id, minutes=0, content=b'data'):
    staged = _catalog.start_backup(root, backup_id)
    os.makedirs(os.path.join(staged, 'data', 'base'))
    os.makedirs(os.path.join(staged, 'data', 'pg_wal', 'archive_status'))  # empty, like in a data directory
    with open(os.path.join(staged, 'data', 'base', '1'), 'wb') as handle:
        handle.write(content * 1000)
    with open(os.path.join(staged, 'backup_manifest'), 'w') as handle:
        handle.write('{}')
    stop = datetime.datetime(2025, 1, 1, tzinfo=UTC) + datetime.timedelta(minutes=minutes)
    entry = _catalog.make_entry(backup_id, 'full', stop - datetime.timedelta(seconds=5), stop, _catalog.hash_tree(staged))
    _catalog.publish(root, entry, staged)
    return entry


def keys(client, prefix=''):
    return sorted(o['Key'] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get('Contents', []))


def test_upload_verify_list_download_remove(s3_env, tmp_path):
    root = str(tmp_path / 'local')
    os.makedirs(root)
    entry = make_backup(root, '20250101T000000Z-full')
    store = S3Store(params(), 'postgres', client=s3_env)
    store.check_bucket()
    summary = store.upload(root, entry)
    assert summary['objects'] == 3 and summary['bytes'] == entry['bytes'] and summary['sse'] == 'AES256'
    assert summary['url'] == 's3://%s/site/postgres/20250101T000000Z-full/' % BUCKET
    assert keys(s3_env) == ['site/postgres/20250101T000000Z-full/backup_manifest',
                            'site/postgres/20250101T000000Z-full/catalog.json',
                            'site/postgres/20250101T000000Z-full/data/base/1']
    head = s3_env.head_object(Bucket=BUCKET, Key='site/postgres/20250101T000000Z-full/data/base/1')
    assert head['ServerSideEncryption'] == 'AES256'
    assert head['Metadata']['sha256'] == entry['files']['data/base/1']['sha256']

    assert [e['id'] for e in store.list_entries()] == [entry['id']]
    # Another kind in the same bucket and prefix is another catalog.
    assert S3Store(params(), 'redis', client=s3_env).list_entries() == []

    local = str(tmp_path / 'restored')
    os.makedirs(local)
    got = store.download(local, entry['id'])
    assert got['id'] == entry['id'] and 'downloaded_at' in got['s3']
    assert _catalog.check_hashes(os.path.join(local, entry['id']), got) == []
    assert os.path.isdir(os.path.join(local, entry['id'], 'data', 'pg_wal', 'archive_status'))
    assert 's3_dirs' not in _catalog.read_entry(os.path.join(local, entry['id']))
    remote = json.loads(s3_env.get_object(Bucket=BUCKET, Key='site/postgres/%s/catalog.json' % entry['id'])['Body'].read())
    assert remote['s3_dirs'] == ['data', 'data/base', 'data/pg_wal', 'data/pg_wal/archive_status']
    assert [e['id'] for e in _catalog.list_backups(local)['backups']] == [entry['id']]
    with pytest.raises(S3Error, match='already exists'):
        store.download(local, entry['id'])

    assert store.remove(entry['id']) == 3
    assert keys(s3_env) == [] and store.list_entries() == []
    assert store.remove(entry['id']) == 0


def test_verify_and_download_catch_a_damaged_object(s3_env, tmp_path):
    root = str(tmp_path)
    entry = make_backup(root, '20250101T000000Z-full')
    store = S3Store(params(prefix=''), 'postgres', client=s3_env)
    store.upload(root, entry)
    key = 'postgres/20250101T000000Z-full/data/base/1'
    # Same size, one byte different: only the SHA-256 can tell.
    body = bytearray(s3_env.get_object(Bucket=BUCKET, Key=key)['Body'].read())
    body[10] ^= 0xFF
    s3_env.put_object(Bucket=BUCKET, Key=key, Body=bytes(body))
    with pytest.raises(S3Error) as caught:
        store.verify(entry)
    assert caught.value.kind == 'checksum' and 'data/base/1: SHA-256' in caught.value.msg
    assert caught.value.result['checks'] == ['s3 sizes', 's3 sha256']
    target = str(tmp_path / 'dl')
    os.makedirs(target)
    with pytest.raises(S3Error, match='differs from its catalog'):
        store.download(target, entry['id'])
    assert os.listdir(target) == []  # nothing staged is left behind

    s3_env.delete_object(Bucket=BUCKET, Key=key)
    with pytest.raises(S3Error, match='data/base/1: missing in S3'):
        store.verify(entry)


def test_incomplete_upload_is_not_listed(s3_env, tmp_path):
    root = str(tmp_path)
    first = make_backup(root, '20250101T000000Z-full', minutes=0)
    second = make_backup(root, '20250101T010000Z-full', minutes=60)
    store = S3Store(params(), 'postgres', client=s3_env)
    store.upload(root, second)
    store.upload(root, first)
    # Order by the recorded stop time.
    assert [e['id'] for e in store.list_entries()] == [first['id'], second['id']]
    s3_env.delete_object(Bucket=BUCKET, Key='site/postgres/%s/catalog.json' % second['id'])
    s3_env.put_object(Bucket=BUCKET, Key='site/postgres/wal/000000010000000000000001', Body=b'x')
    listing = store.listing()
    assert [e['id'] for e in listing['entries']] == [first['id']]
    assert listing['incomplete'] == [second['id']]
    with pytest.raises(S3Error) as caught:
        store.download(root + '/x', second['id'])
    assert caught.value.kind == 'missing'


def test_reupload_replaces_and_drops_stale_objects(s3_env, tmp_path):
    root = str(tmp_path)
    entry = make_backup(root, '20250101T000000Z-full')
    store = S3Store(params(), 'postgres', client=s3_env)
    s3_env.put_object(Bucket=BUCKET, Key='site/postgres/%s/stale' % entry['id'], Body=b'old')
    store.upload(root, entry)
    assert 'site/postgres/%s/stale' % entry['id'] not in keys(s3_env)
    assert store.verify(entry)['ok'] is True


def test_areas_never_overwrite_different_content(s3_env, tmp_path):
    store = S3Store(params(), 'postgres', client=s3_env)
    archive = tmp_path / 'wal'
    archive.mkdir()
    names = ['000000010000000000000001', '000000010000000000000002']
    for i, name in enumerate(names):
        (archive / name).write_bytes(bytes([i]) * 4096)
    assert store.put_area('wal', str(archive), names) == dict(uploaded=names, present=[])
    assert store.put_area('wal', str(archive), names) == dict(uploaded=[], present=names)
    head = s3_env.head_object(Bucket=BUCKET, Key='site/postgres/wal/' + names[0])
    assert head['ServerSideEncryption'] == 'AES256'
    assert store.list_area('wal') == dict((n, 4096) for n in names)
    (archive / names[1]).write_bytes(b'\x07' * 4096)
    with pytest.raises(S3Error, match='not overwritten'):
        store.put_area('wal', str(archive), names)

    dest = tmp_path / 'fetched'
    dest.mkdir()
    assert store.get_area('wal', names[:1], str(dest)) == names[:1]
    assert (dest / names[0]).read_bytes() == bytes([0]) * 4096
    s3_env.put_object(Bucket=BUCKET, Key='site/postgres/wal/' + names[1], Body=b'bad',
                      Metadata={'sha256': '0' * 64})
    with pytest.raises(S3Error, match='remote copy is damaged'):
        store.get_area('wal', names[1:], str(dest))
    assert sorted(os.listdir(str(dest))) == names[:1]
    with pytest.raises(S3Error) as caught:
        store.get_area('wal', ['000000010000000000000009'], str(dest))
    assert caught.value.kind == 'missing'
    assert store.remove_area('wal', names) == 2 and store.list_area('wal') == {}
    with pytest.raises(S3Error, match='Unknown S3 area'):
        store.area_key('other', 'x')
    with pytest.raises(S3Error, match='shared area'):
        store.key('wal')


def test_missing_bucket_and_bad_params(s3_env):
    store = S3Store(params(bucket='nope'), 'postgres', client=s3_env)
    with pytest.raises(S3Error) as caught:
        store.list_entries()
    assert caught.value.kind == 'bucket' and 'nope does not exist' in caught.value.msg
    with pytest.raises(S3Error, match='Invalid s3 option'):
        S3Store(params(sse=None, sse_kms_key_id='k'), 'postgres', client=s3_env)


def test_catalog_json_is_uploaded_last(s3_env, tmp_path, monkeypatch):
    root = str(tmp_path)
    entry = make_backup(root, '20250101T000000Z-full')
    store = S3Store(params(), 'postgres', client=s3_env)
    order = []
    real_file, real_bytes = store._put_file, store._put_bytes
    monkeypatch.setattr(store, '_put_file', lambda path, key, sha: order.append(key) or real_file(path, key, sha))
    monkeypatch.setattr(store, '_put_bytes', lambda data, key: order.append(key) or real_bytes(data, key))
    store.upload(root, entry)
    assert order[-1].endswith('/catalog.json') and len(order) == 3
    remote = json.loads(s3_env.get_object(Bucket=BUCKET, Key=order[-1])['Body'].read())
    assert remote['id'] == entry['id']


def test_add_remote_check_folds_into_the_local_outcome(s3_env, tmp_path):
    root = str(tmp_path)
    entry = make_backup(root, '20250101T000000Z-full')
    store = S3Store(params(), 'postgres', client=s3_env)
    store.upload(root, entry)
    outcome = dict(id=entry['id'], ok=True, checks=['sha256'], problems=[])
    assert store.add_remote_check(outcome, entry)['ok'] is True
    assert outcome['ok'] is True and outcome['checks'] == ['sha256', 's3 sizes', 's3 sha256'] and outcome['s3']['ok']
    s3_env.delete_object(Bucket=BUCKET, Key='site/postgres/%s/backup_manifest' % entry['id'])
    outcome = dict(id=entry['id'], ok=True, checks=['sha256'], problems=[])
    assert store.add_remote_check(outcome, entry)['ok'] is False
    assert outcome['ok'] is False and outcome['problems'] == ['S3 backup_manifest: missing in S3']
    assert _catalog.record_verify(root, entry, outcome) is True
    assert _catalog.read_entry(os.path.join(root, entry['id']))['verify_error'] == 'S3 backup_manifest: missing in S3'
    assert _catalog.record_verify(root, entry, outcome) is False


def two_verified_fulls_in_s3(client, root):
    """(store, older, newer): two verified full backups in root, both uploaded."""
    old = make_backup(root, '20250101T000000Z-full', minutes=0)
    new = make_backup(root, '20250101T010000Z-full', minutes=60)
    for item in (old, new):
        item['verified'] = True
        _catalog.write_entry(os.path.join(root, item['id']), item)
    store = S3Store(params(), 'postgres', client=client)
    store.upload(root, old)
    store.upload(root, new)
    return store, old, new


def test_prune_applies_the_local_plan_remotely(s3_env, tmp_path):
    store, old, new = two_verified_fulls_in_s3(s3_env, str(tmp_path))
    dry = store.prune(keep_days=0, keep_count=1, dry_run=True)
    assert dry['removed'] == [old['id']] and dry['kept'] == [new['id']]
    assert [e['id'] for e in store.list_entries()] == [old['id'], new['id']]
    done = store.prune(keep_days=0, keep_count=1)
    assert done['removed'] == [old['id']] and 'newest verified full backup' in done['reasons'][new['id']]
    assert [e['id'] for e in store.list_entries()] == [new['id']]
    assert keys(s3_env, 'site/postgres/%s/' % old['id']) == []
    # An interrupted upload (no catalog.json) is reported, never planned.
    s3_env.put_object(Bucket=BUCKET, Key='site/postgres/20250101T020000Z-full/backup_manifest', Body=b'{}')
    assert store.prune(keep_days=0, keep_count=1, dry_run=True)['incomplete'] == ['20250101T020000Z-full']


def test_an_unreadable_remote_entry_is_reported_and_kept(s3_env, tmp_path):
    store, old, new = two_verified_fulls_in_s3(s3_env, str(tmp_path))
    broken = dict(old)
    del broken['stopped_at']
    s3_env.put_object(Bucket=BUCKET, Key='site/postgres/%s/catalog.json' % old['id'], Body=json.dumps(broken).encode())
    listing = store.listing()
    assert [e['id'] for e in listing['entries']] == [new['id']]
    assert [u['id'] for u in listing['unreadable']] == [old['id']]
    assert 'stopped_at' in listing['unreadable'][0]['error'] and 'upload it again' in listing['unreadable'][0]['error']
    plan = store.prune(keep_days=0, keep_count=1)
    assert plan['removed'] == [] and any(old['id'] in w for w in plan['warnings'])
    assert keys(s3_env, 'site/postgres/%s/' % old['id']) != []


def test_add_listing_marks_both_sides(s3_env, tmp_path):
    root = str(tmp_path)
    only_local = make_backup(root, '20250101T000000Z-full', minutes=0)
    both = make_backup(root, '20250101T010000Z-full', minutes=60)
    store = S3Store(params(), 'postgres', client=s3_env)
    store.upload(root, both)
    result = store.add_listing(_catalog.listing(root))
    assert [(b['id'], b['in_s3']) for b in result['backups']] == [(only_local['id'], False), (both['id'], True)]
    assert [(b['id'], b['local'], b['restorable']) for b in result['s3_backups']] == [(both['id'], True, True)]
    assert 'files' not in result['s3_backups'][0] and result['s3_backups'][0]['file_count'] == 2
    assert result['s3_latest'] == both['id'] and result['s3_incomplete'] == [] and result['s3_unreadable'] == []
    _catalog.remove_backup(root, both['id'])
    result = store.add_listing(_catalog.listing(root))
    assert [b['in_s3'] for b in result['backups']] == [False] and result['s3_backups'][0]['local'] is False


def test_upload_verified_refuses_a_failed_backup(s3_env, tmp_path):
    root = str(tmp_path)
    entry = make_backup(root, '20250101T000000Z-full')
    store = S3Store(params(), 'postgres', client=s3_env)
    steps = []
    with pytest.raises(_catalog.BackupError, match='^B 20250101T000000Z-full: bad$'):
        store.upload_verified(root, entry, dict(ok=False, problems=['bad']), 'B %(id)s: %(problems)s',
                              before_upload=lambda: steps.append('wal'))
    assert steps == [] and keys(s3_env) == []
    assert _catalog.read_entry(os.path.join(root, entry['id']))['verified'] is False

    summary = store.upload_verified(root, entry, dict(ok=True, problems=[]), 'B %(id)s: %(problems)s',
                                    before_upload=lambda: dict(wal=dict(uploaded=steps.append('wal') or 0)))
    assert steps == ['wal'] and summary['wal'] == dict(uploaded=0) and summary['verified_at']
    stored = _catalog.read_entry(os.path.join(root, entry['id']))
    assert stored['verified'] is True and stored['s3']['url'] == summary['url'] and stored['s3']['wal'] == dict(uploaded=0)


def test_an_unsealed_backup_is_copied_only_once_its_verify_sealed_it(s3_env, tmp_path):
    """pg_backup publishes a plain backup unsealed (no SHA-256 of its data files): S3 never gets it before the verify
    that seals it, and a check-mode verify seals nothing."""
    root = str(tmp_path)
    entry = make_backup(root, '20250101T000000Z-full')
    path = os.path.join(root, entry['id'])
    sealed_files = entry['files']
    entry.update(files=dict((rel, dict(size=item['size'])) for rel, item in sealed_files.items()), sealed=False)
    _catalog.write_entry(path, entry)
    store = S3Store(params(), 'postgres', client=s3_env)
    with pytest.raises(_s3.S3Error, match='is not sealed'):
        store.upload(root, entry)
    assert keys(s3_env) == []

    results, changed = _s3.verify_backups(root, [entry], set([entry['id']]),
                                          lambda e: dict(id=e['id'], ok=True, checks=[], problems=[],
                                                         **{_catalog.SEAL_KEY: sealed_files}), record=False)
    assert results[0]['ok'] and _catalog.SEAL_KEY not in results[0] and changed is False
    assert _catalog.read_entry(path)['sealed'] is False

    outcome = dict(ok=True, problems=[], **{_catalog.SEAL_KEY: sealed_files})
    summary = store.upload_verified(root, entry, outcome, 'B %(id)s: %(problems)s')
    assert summary['objects'] == len(sealed_files) + 1 and _catalog.SEAL_KEY not in outcome
    stored = _catalog.read_entry(path)
    assert stored['sealed'] is True and stored['files'] == sealed_files and stored['verified'] is True
    assert store.get_entry(entry['id'])['files'] == sealed_files


@pytest.mark.parametrize('remote_marks_local', [False, True])
def test_verify_backups_local_remote_and_s3_only(s3_env, tmp_path, remote_marks_local):
    root = str(tmp_path)
    good = make_backup(root, '20250101T000000Z-full', minutes=0)
    damaged_copy = make_backup(root, '20250101T010000Z-full', minutes=60)
    store = S3Store(params(), 'postgres', client=s3_env)
    for item in (good, damaged_copy):
        store.upload(root, item)
    s3_env.delete_object(Bucket=BUCKET, Key='site/postgres/%s/backup_manifest' % damaged_copy['id'])
    elsewhere = str(tmp_path / 'elsewhere')
    os.makedirs(elsewhere)
    s3_only = make_backup(elsewhere, '20250101T020000Z-full', minutes=120)
    store.upload(elsewhere, s3_only)
    checked = []

    def verify_local(entry):
        checked.append(entry['id'])
        return dict(id=entry['id'], ok=True, checks=['sha256'], problems=[])
    entries = _catalog.list_backups(root)['backups']
    results, changed = _s3.verify_backups(root, entries + [s3_only], set(e['id'] for e in entries), verify_local, store,
                                          set(e['id'] for e in store.list_entries()),
                                          remote_marks_local=remote_marks_local)
    assert checked == [good['id'], damaged_copy['id']] and changed is True
    assert [r['ok'] for r in results] == [True, False, True]
    assert results[1]['problems'] == ['S3 backup_manifest: missing in S3'] and results[1]['s3']['ok'] is False
    assert results[2]['local'] is False and results[2]['checks'] == ['s3 sizes', 's3 sha256']
    stored = _catalog.read_entry(os.path.join(root, damaged_copy['id']))
    if remote_marks_local:
        # redis_snapshot: the failed copy fails the snapshot; nothing is written under s3.
        assert stored['verified'] is False and stored['verify_error'] == 'S3 backup_manifest: missing in S3'
        assert 'verified' not in (stored.get('s3') or {})
    else:
        # pg_backup: the local copy is fine; the S3 result is recorded apart.
        assert stored['verified'] is True and stored['s3']['verified'] is False
        assert stored['s3']['verify_error'] == 'backup_manifest: missing in S3'
    assert not os.path.exists(os.path.join(root, s3_only['id']))

    results, changed = _s3.verify_backups(root, entries[:1], set([good['id']]), verify_local, record=False)
    assert results[0]['ok'] is True and 's3' not in results[0] and changed is False
