# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Copies of catalog backups in S3 (AWS, MinIO, Ceph RGW...) through boto3: upload, verify, list,
download, remove. Shared by pg_backup and redis_snapshot; documented by the ``psscript.infra.s3``
doc fragment.

Layout in the bucket (``<base>`` is ``<prefix>/<kind>``, kind ``postgres`` or ``redis``)::

    <base>/<backup_id>/<file>            every file of the published backup, as in the catalog
    <base>/<backup_id>/catalog.json      the catalog entry, uploaded LAST: the remote "published" marker
    <base>/<area>/<name>                 shared objects of a kind, e.g. <prefix>/postgres/wal/<segment>

Like the local catalog, a remote backup is listed only when its ``catalog.json`` exists and
parses; removal deletes the marker first. Every object carries its SHA-256 in the metadata
(``x-amz-meta-sha256``), and every put passes the configured server-side encryption.

Verification is end to end: every object of the backup is listed (size) and read back through
SHA-256, compared with the hashes the catalog recorded when the backup was taken. It costs one
download of the backup, but it works the same on every S3 implementation (checksum headers and
multipart ETags differ between them) and it proves what a restore will read.

With ``age_recipients`` every object is encrypted with ``age`` in the stream (``_age``): the remote
catalog.json then says so (``encryption``) and records, per file, the SHA-256 and size of what is
stored beside the plaintext's (``plain_sha256``, ``plain_size``); an encrypted object's metadata holds the
plaintext's SHA-256 (``sha256``) and ``age`` = ``1``, which is how a WAL object says it is encrypted.
Verification needs no key; a download needs ``age_identity_file``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import importlib
import json
import os
import re
import shutil
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.psscript.infra.plugins.module_utils import _age
from ansible_collections.psscript.infra.plugins.module_utils import _catalog
from ansible_collections.psscript.infra.plugins.module_utils._files import fsync_path

try:
    from importlib.util import find_spec
except ImportError:  # Python 2: no lazy check, the import itself tells
    find_spec = None


def _installed(name):
    """Whether the top-level package ``name`` can be imported, without importing it."""
    if find_spec is None:
        try:
            importlib.import_module(name)
        except ImportError:
            return False
        return True
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# boto3 is imported only when an S3 store is used (_boto()): importing it costs more than the rest
# of a module's start-up (0.15 s of CPU on an idle core, 2-3 s on this loaded 2-core machine), and
# every backup and list task without s3 paid for it. HAS_BOTO3 says only that it is installed; a
# broken install still fails cleanly, as an S3Error from make_client().
HAS_BOTO3 = _installed('boto3') and _installed('botocore')
BOTO3_IMPORT_ERROR = None if HAS_BOTO3 else 'ImportError: No module named boto3 (or botocore)'
_BOTO = {}

# What the module tells the operator to install when boto3 is missing.
BOTO3_REQUIREMENT = 'boto3 (pip install boto3, or python3-boto3 on Debian; the psscript/backup image has it)'

KINDS = ('postgres', 'redis')
# Shared areas beside the backups of a kind (never backup ids): the WAL segments PostgreSQL backups need.
AREAS = ('wal',)
SSE_CHOICES = ('AES256', 'aws:kms')
SHA256_META = 'sha256'
# Metadata of an object stored encrypted with age (its value: '1').
AGE_META = 'age'
# Area objects stored in clear even with age recipients: timeline history files hold only timeline ids, LSNs and
# the recovery target, no data, and a restore's plan reads them in the backup container, which has no private key.
PLAIN_AREA_NAMES = re.compile(r'^[0-9A-F]{8}\.history$')
# Key of the remote catalog.json listing the backup's directories (empty ones included).
DIRS_KEY = 's3_dirs'
_CHUNK = 1024 * 1024
# Objects transferred at once: a backup in plain layout is ~1000 files, mostly small, so the time
# goes into request latency, not bandwidth. boto3 clients are thread-safe.
WORKERS = 8
_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]*$')


class S3Error(Exception):
    """An S3 problem with an operator-readable message (cause and fix).

    ``kind``: ``checksum`` (remote copy differs from the catalog), ``missing`` (no such remote
    backup or object), ``access`` (credentials/permissions), ``bucket``, ``connect``, ``error``.
    ``result``: the verify result dict when verification failed.
    """

    def __init__(self, msg, kind='error', result=None):
        super(S3Error, self).__init__(msg)
        self.msg = msg
        self.kind = kind
        self.result = result


# ---------------------------------------------------------------------------------------------
# Argument spec (documented once in plugins/doc_fragments/s3.py)

# The S3 client's patience: seconds without a byte before a request fails, and attempts per request
# (botocore's standard retry mode, back-off up to 20 s between them).
READ_TIMEOUT = 120
MAX_ATTEMPTS = 5


def s3_argument_spec():
    """The ``s3`` option shared by the backup modules."""
    return dict(
        s3=dict(
            type='dict',
            default=None,
            options=dict(
                bucket=dict(type='str', required=True),
                prefix=dict(type='str', default=''),
                endpoint_url=dict(type='str'),
                region=dict(type='str'),
                access_key=dict(type='str', no_log=False),
                secret_key=dict(type='str', no_log=True),
                sse=dict(type='str', choices=list(SSE_CHOICES)),
                sse_kms_key_id=dict(type='str', no_log=False),
                validate_certs=dict(type='bool', default=True),
                read_timeout=dict(type='int', default=READ_TIMEOUT),
                max_attempts=dict(type='int', default=MAX_ATTEMPTS),
                age_recipients=dict(type='list', elements='str', default=[]),
                age_identity_file=dict(type='path'),
            ),
        ),
    )


def check_params(params_s3):
    """Problems in an ``s3`` option that the argument spec cannot express; [] when fine."""
    problems = []
    if not params_s3:
        return problems
    if params_s3.get('sse_kms_key_id') and params_s3.get('sse') != 'aws:kms':
        problems.append('s3.sse_kms_key_id needs s3.sse=aws:kms')
    for key in ('read_timeout', 'max_attempts'):
        if params_s3.get(key) is not None and params_s3[key] < 1:
            problems.append('s3.%s must be 1 or more, not %s' % (key, params_s3[key]))
    if bool(params_s3.get('access_key')) != bool(params_s3.get('secret_key')):
        problems.append('give both s3.access_key and s3.secret_key, or neither (then boto3 reads AWS_ACCESS_KEY_ID / '
                        'AWS_SECRET_ACCESS_KEY, a profile or an instance role)')
    if '..' in (params_s3.get('prefix') or '').split('/'):
        problems.append("s3.prefix must not contain '..'")
    problems.extend('s3.age_recipients: ' + p for p in _age.recipient_problems(params_s3.get('age_recipients') or []))
    return problems


# ---------------------------------------------------------------------------------------------
# Pure helpers (unit-tested)


def base_key(prefix, kind):
    """``<prefix>/<kind>`` without leading, trailing or doubled slashes."""
    if kind not in KINDS:
        raise S3Error('Unknown S3 object kind %r: use one of %s' % (kind, ', '.join(KINDS)))
    parts = [p for p in (prefix or '').split('/') if p] + [kind]
    return '/'.join(parts)


def check_name(name, what='backup id'):
    """Ids, areas and file names become key parts: refuse anything that could leave its place."""
    if not name or not _NAME_RE.match(name):
        raise S3Error('Invalid %s %r for an S3 key' % (what, name))
    return name


def check_relpath(rel):
    parts = rel.split('/')
    if not rel or rel.startswith('/') or any(p in ('', '.', '..') for p in parts):
        raise S3Error('Refusing the file path %r: not a plain relative path' % (rel,))
    return rel


def put_args(params_s3, sha256=None, encrypted=False):
    """ExtraArgs of every put: server-side encryption (and KMS key) plus the SHA-256 metadata (of the
    plaintext, and the age mark, when ``encrypted``)."""
    args = {}
    if params_s3.get('sse'):
        args['ServerSideEncryption'] = params_s3['sse']
        if params_s3['sse'] == 'aws:kms' and params_s3.get('sse_kms_key_id'):
            args['SSEKMSKeyId'] = params_s3['sse_kms_key_id']
    if sha256:
        args['Metadata'] = {SHA256_META: sha256}
    if encrypted:
        args.setdefault('Metadata', {})[AGE_META] = '1'
    return args


def stored_files(remote_entry, local_entry=None):
    """The files of a remote copy as stored: ``{rel: {size, sha256}}`` over the stored bytes. An encrypted
    copy's ``plain_*`` hashes must match ``local_entry``'s (when given): the copy is of that backup.
    Raises S3Error (kind ``checksum``) otherwise."""
    files = remote_entry.get('files') or {}
    if local_entry is not None and remote_entry.get(_age.ENCRYPTION_KEY):
        local = local_entry.get('files') or {}
        differ = sorted(rel for rel in set(local) | set(files)
                        if rel not in local or rel not in files
                        or (files[rel].get('plain_sha256'), files[rel].get('plain_size')) != (local[rel]['sha256'], local[rel]['size']))
        if differ:
            raise S3Error('The encrypted S3 copy of %s is not a copy of the local backup: %s differ. Upload it again'
                          % (local_entry.get('id'), ', '.join(differ[:5])), kind='checksum')
    return files


def plain_entry(remote_entry):
    """The local catalog entry of a downloaded copy: an encrypted one's files with their plaintext hashes."""
    entry = dict(remote_entry)
    encryption = entry.pop(_age.ENCRYPTION_KEY, None)
    if encryption:
        files = {}
        for rel, item in remote_entry['files'].items():
            files[rel] = dict((k, v) for k, v in item.items() if not k.startswith('plain_'))
            files[rel].update(size=item['plain_size'], sha256=item['plain_sha256'])
        entry['files'] = files
        entry['s3'] = dict(entry.get('s3') or {}, encryption=encryption)
    return entry


def endpoint_name(params_s3):
    return params_s3.get('endpoint_url') or ('AWS S3 (%s)' % (params_s3.get('region') or 'default region'))


def _boto():
    """``(boto3, botocore.config, botocore.exceptions)``, imported on first use; S3Error when missing."""
    if not _BOTO:
        if not HAS_BOTO3:
            raise S3Error('The s3 option needs the Python library %s' % BOTO3_REQUIREMENT, kind='error')
        try:
            import boto3
            import botocore.config
            import botocore.exceptions
        except ImportError:
            raise S3Error('The s3 option needs the Python library %s; importing it failed: %s'
                          % (BOTO3_REQUIREMENT, traceback.format_exc().strip().splitlines()[-1]), kind='error')
        _BOTO['modules'] = (boto3, botocore.config, botocore.exceptions)
    return _BOTO['modules']


def explain_client_error(err, params_s3, action, key=None):
    """A botocore exception as an S3Error naming the cause and the fix."""
    bucket = params_s3.get('bucket')
    where = 's3://%s/%s' % (bucket, key or '')
    # A botocore exception means botocore is loaded: take its classes from there, import nothing.
    exceptions = sys.modules.get('botocore.exceptions')
    if exceptions is not None and isinstance(err, exceptions.NoCredentialsError):
        return S3Error('No S3 credentials for %s: set s3.access_key and s3.secret_key (or AWS_ACCESS_KEY_ID / '
                       'AWS_SECRET_ACCESS_KEY)' % endpoint_name(params_s3), kind='access')
    if exceptions is not None and isinstance(err, (exceptions.EndpointConnectionError,
                                                   exceptions.ConnectTimeoutError,
                                                   exceptions.ReadTimeoutError)):
        return S3Error('Cannot reach the S3 endpoint %s (%s): check s3.endpoint_url and the network'
                       % (endpoint_name(params_s3), err), kind='connect')
    if exceptions is not None and isinstance(err, exceptions.SSLError):
        return S3Error('TLS to %s failed (%s): fix the certificate, or set s3.validate_certs=false for a test '
                       'endpoint' % (endpoint_name(params_s3), err), kind='connect')
    response = getattr(err, 'response', None) or {}
    error = response.get('Error') or {}
    code = str(error.get('Code') or '')
    message = error.get('Message') or str(err)
    status = (response.get('ResponseMetadata') or {}).get('HTTPStatusCode')
    if code == 'NoSuchBucket':
        return S3Error('The bucket %s does not exist at %s: create it, or fix s3.bucket / s3.endpoint_url'
                       % (bucket, endpoint_name(params_s3)), kind='bucket')
    if code in ('AccessDenied', 'AllAccessDisabled', 'AccountProblem') or status == 403 and code not in (
            'InvalidAccessKeyId', 'SignatureDoesNotMatch'):
        return S3Error('Access denied to %s while trying to %s: give the credentials s3:PutObject, s3:GetObject, '
                       's3:ListBucket and s3:DeleteObject on the bucket (and kms:GenerateDataKey/kms:Decrypt with '
                       'aws:kms) [%s %s]' % (where, action, code or status, message), kind='access')
    if code in ('InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'InvalidToken'):
        return S3Error('%s refused the credentials (%s): check s3.access_key and s3.secret_key [%s]'
                       % (endpoint_name(params_s3), code, message), kind='access')
    if code in ('NoSuchKey', '404', 'NotFound') or status == 404:
        return S3Error('%s does not exist (while trying to %s)' % (where, action), kind='missing')
    if code in ('KMS.NotFoundException', 'KMSInvalidKeyUsageException', 'InvalidArgument') and params_s3.get('sse'):
        return S3Error('The bucket refused the server-side encryption settings (s3.sse=%s, s3.sse_kms_key_id=%s) '
                       'while trying to %s: %s' % (params_s3.get('sse'), params_s3.get('sse_kms_key_id'), action, message),
                       kind='error')
    return S3Error('S3 failed to %s %s: %s %s' % (action, where, code or status or type(err).__name__, message))


def compare_remote(entry, remote_sizes, catalog_key):
    """Problems of a remote listing (``{relative path: size}``) against the entry's files (sizes only)."""
    problems = []
    recorded = entry.get('files') or {}
    if not recorded:
        return ['the catalog entry records no files: it cannot be checked']
    for rel in sorted(recorded):
        if rel not in remote_sizes:
            problems.append('%s: missing in S3' % rel)
        elif remote_sizes[rel] != recorded[rel]['size']:
            problems.append('%s: size %d in S3, recorded %d' % (rel, remote_sizes[rel], recorded[rel]['size']))
    for rel in sorted(set(remote_sizes) - set(recorded) - set([catalog_key])):
        problems.append('%s: in S3 but not recorded in the catalog' % rel)
    if catalog_key not in remote_sizes:
        problems.append('%s: missing in S3 (the upload did not finish)' % catalog_key)
    return problems


def directories(top):
    """Relative paths (with '/') of every directory under top, sorted (parents first)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames:
            found.append(os.path.relpath(os.path.join(dirpath, name), top).replace(os.sep, '/'))
    return sorted(found)


def _client_config(params_s3):
    # The same defaults when the settings come from a file (the WAL shipper's s3.json), not the argument spec.
    kwargs = dict(signature_version='s3v4', connect_timeout=10,
                  read_timeout=params_s3.get('read_timeout') or READ_TIMEOUT,
                  retries={'max_attempts': params_s3.get('max_attempts') or MAX_ATTEMPTS, 'mode': 'standard'},
                  # Self-hosted S3 (MinIO, Ceph) is usually reached by path, not by bucket host name.
                  s3={'addressing_style': 'path' if params_s3.get('endpoint_url') else 'auto'})
    # botocore >= 1.36 adds CRC checksums to every request by default, which some S3
    # implementations reject; our own SHA-256 covers integrity, so only send them when required.
    extra = dict(request_checksum_calculation='when_required', response_checksum_validation='when_required')
    config = _boto()[1]
    try:
        return config.Config(**dict(kwargs, **extra))
    except TypeError:
        return config.Config(**kwargs)


def make_client(params_s3):
    boto3 = _boto()[0]
    kwargs = dict(config=_client_config(params_s3), verify=params_s3.get('validate_certs', True))
    if params_s3.get('endpoint_url'):
        kwargs['endpoint_url'] = params_s3['endpoint_url']
    if params_s3.get('region'):
        kwargs['region_name'] = params_s3['region']
    if params_s3.get('access_key'):
        kwargs['aws_access_key_id'] = params_s3['access_key']
        kwargs['aws_secret_access_key'] = params_s3.get('secret_key')
    return boto3.session.Session().client('s3', **kwargs)


def _client_errors():
    # Only a client made by boto3 raises these; an injected client (tests) without botocore loaded raises none.
    exceptions = sys.modules.get('botocore.exceptions')
    if exceptions is None:
        return ()
    return (exceptions.BotoCoreError, exceptions.ClientError)


# ---------------------------------------------------------------------------------------------
# The store


class S3Store(object):
    """The S3 copies of one kind of backup (``postgres`` or ``redis``).

    ``params_s3``: the module's ``s3`` option. ``client``: a boto3 S3 client (built from the
    parameters when not given). ``age``: the ``_age.Age`` that encrypts and decrypts (tests pass a fake).
    """

    def __init__(self, params_s3, kind, client=None, age=None):
        problems = check_params(params_s3)
        if problems:
            raise S3Error('Invalid s3 option: %s' % '; '.join(problems))
        self.params = dict(params_s3)
        self.bucket = self.params['bucket']
        self.kind = kind
        self.base = base_key(self.params.get('prefix'), kind)
        self.client = client if client is not None else make_client(self.params)
        # Encrypt what is uploaded to these public keys (none: plain); decrypt downloads with this private key.
        self.recipients = list(self.params.get('age_recipients') or [])
        self.identity_file = self.params.get('age_identity_file')
        self.age = age if age is not None else _age.Age()

    # -- keys ------------------------------------------------------------------------------------
    def key(self, backup_id, rel=None):
        check_name(backup_id)
        if backup_id in AREAS:
            raise S3Error('%r names a shared area, not a backup' % (backup_id,))
        return '%s/%s/%s' % (self.base, backup_id, check_relpath(rel)) if rel else '%s/%s/' % (self.base, backup_id)

    def area_key(self, area, name=None):
        if area not in AREAS:
            raise S3Error('Unknown S3 area %r: use one of %s' % (area, ', '.join(AREAS)))
        return '%s/%s/%s' % (self.base, area, check_name(name, 'object name')) if name else '%s/%s/' % (self.base, area)

    def url(self, key=''):
        return 's3://%s/%s' % (self.bucket, key)

    # -- low level, errors translated ------------------------------------------------------------
    def _call(self, action, key, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except _client_errors() as err:
            raise explain_client_error(err, self.params, action, key)

    def _list(self, prefix, delimiter=None):
        """``(objects {key: size}, common prefixes [...])`` under prefix, every page."""
        objects, prefixes = {}, []
        kwargs = dict(Bucket=self.bucket, Prefix=prefix)
        if delimiter:
            kwargs['Delimiter'] = delimiter
        paginator = self.client.get_paginator('list_objects_v2')

        def collect():
            for page in paginator.paginate(**kwargs):
                for item in page.get('Contents') or []:
                    objects[item['Key']] = int(item['Size'])
                for item in page.get('CommonPrefixes') or []:
                    prefixes.append(item['Prefix'])
        self._call('list', prefix, collect)
        return objects, prefixes

    def _put_file(self, path, key, sha256):
        self._call('upload', key, self.client.upload_file, path, self.bucket, key,
                   ExtraArgs=put_args(self.params, sha256))

    def _put_encrypted(self, path, key, plain_sha256):
        """Upload the age encryption of ``path`` made while it is sent; ``(sha256, size)`` of what is stored."""
        try:
            reader = self.age.open_encrypted(path, self.recipients)
        except _age.AgeError as err:
            raise S3Error(err.msg)
        try:
            self._call('upload', key, self.client.upload_fileobj, reader, self.bucket, key,
                       ExtraArgs=put_args(self.params, plain_sha256, encrypted=True))
            reader.close()
        except _age.AgeError as err:
            raise S3Error(err.msg)
        except BaseException:
            reader.abort()
            raise
        return reader.sha256, reader.size

    def _get_decrypted(self, key, target):
        """Download ``key`` through age into ``target``: ``((stored sha256, size), (plain sha256, size))``."""
        stored = {}

        def chunks():
            answer = self._call('download', key, self.client.get_object, Bucket=self.bucket, Key=key)
            body, remaining = answer['Body'], int(answer.get('ContentLength') or 0)
            digest, size = hashlib.sha256(), 0
            try:
                while remaining > 0:
                    chunk = self._call('download', key, body.read, min(_CHUNK, remaining))
                    if not chunk:
                        break
                    remaining -= len(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    yield chunk
            finally:
                body.close()
                stored['hash'] = (digest.hexdigest(), size)
        try:
            plain = self.age.decrypt_to(chunks(), self.identity_file, target, 'Decrypting %s' % self.url(key))
        except _age.AgeError as err:
            raise S3Error(err.msg, kind='key')
        return stored['hash'], plain

    def _put_bytes(self, data, key):
        self._call('upload', key, self.client.put_object, Bucket=self.bucket, Key=key, Body=data,
                   **put_args(self.params, hashlib.sha256(data).hexdigest()))

    def _stream(self, key, sink=None):
        """Read an object through SHA-256 (writing it to ``sink`` when given); ``(hex, size)``."""
        def read():
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
            body, remaining = answer['Body'], int(answer.get('ContentLength') or 0)
            digest, size = hashlib.sha256(), 0
            try:
                # Read exactly ContentLength: one more read() that would return b'' costs a wait per object.
                while remaining > 0:
                    chunk = body.read(min(_CHUNK, remaining))
                    if not chunk:
                        break
                    remaining -= len(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    if sink is not None:
                        sink.write(chunk)
            finally:
                body.close()
            return digest.hexdigest(), size
        return self._call('download', key, read)

    @staticmethod
    def _each(func, items):
        """``[func(item) ...]`` in order, WORKERS at a time; the first exception is raised."""
        items = list(items)
        if len(items) < 2:
            return [func(item) for item in items]
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            return list(pool.map(func, items))

    def _get_json(self, key):
        def read():
            body = self.client.get_object(Bucket=self.bucket, Key=key)['Body']
            try:
                return body.read()
            finally:
                body.close()
        data = self._call('download', key, read)
        try:
            return json.loads(data.decode('utf-8'))
        except ValueError as err:
            raise S3Error('%s is not valid JSON (%s): the remote copy is damaged' % (self.url(key), err), kind='checksum')

    def _delete_keys(self, keys):
        keys = list(keys)
        for start in range(0, len(keys), 1000):
            batch = [dict(Key=k) for k in keys[start:start + 1000]]
            answer = self._call('delete', batch[0]['Key'], self.client.delete_objects, Bucket=self.bucket,
                                Delete=dict(Objects=batch, Quiet=True))
            errors = answer.get('Errors') or []
            if errors:
                raise S3Error('S3 refused to delete %d object(s), first %s: %s %s'
                              % (len(errors), errors[0].get('Key'), errors[0].get('Code'), errors[0].get('Message')),
                              kind='access' if errors[0].get('Code') == 'AccessDenied' else 'error')

    def check_bucket(self):
        """Fail early, with the reason, when the bucket cannot be used."""
        self._call('open the bucket', '', self.client.head_bucket, Bucket=self.bucket)

    # -- backups ---------------------------------------------------------------------------------
    def upload(self, root, entry):
        """Upload every file of the published backup ``<root>/<id>``, ``catalog.json`` last, then
        verify the remote copy against the catalog (raises S3Error on any difference).

        Returns ``dict(id, url, objects, bytes, seconds, sse, verified_at, ...)``."""
        backup_id = entry['id']
        path = os.path.join(root, backup_id)
        began = time.time()
        marker = self.key(backup_id, _catalog.CATALOG_FILE)
        # Re-uploading over an older copy: unpublish it first, so nothing lists a copy in flux.
        existing, dummy = self._list(self.key(backup_id))
        if marker in existing:
            self._delete_keys([marker])
        files = entry.get('files') or {}
        if not files:
            raise S3Error('Backup %s records no files: nothing to upload' % backup_id)
        if not _catalog.is_sealed(entry):
            raise S3Error('Backup %s is not sealed (its files have no SHA-256 yet): verify it first, which seals it'
                          % backup_id)
        names = sorted(files)
        if self.recipients:
            stored = self._each(lambda rel: self._put_encrypted(os.path.join(path, rel), self.key(backup_id, rel),
                                                                files[rel]['sha256']), names)
        else:
            self._each(lambda rel: self._put_file(os.path.join(path, rel), self.key(backup_id, rel), files[rel]['sha256']),
                       names)
        stale = [k for k in existing if k != marker and k[len(self.key(backup_id)):] not in files]
        if stale:
            self._delete_keys(stale)
        # The remote marker is the catalog entry plus the directory list: the catalog records files
        # only, and a data directory needs its empty directories (pg_wal, pg_tblspc...) back.
        with open(os.path.join(path, _catalog.CATALOG_FILE)) as handle:
            remote_entry = json.load(handle)
        remote_entry[DIRS_KEY] = directories(path)
        if self.recipients:
            # Hashes over what is stored (the ciphertext), the plaintext's beside them (see stored_files).
            remote_entry['files'] = dict(
                (rel, dict(remote_entry['files'][rel], sha256=digest, size=size, plain_sha256=files[rel]['sha256'],
                           plain_size=files[rel]['size']))
                for rel, (digest, size) in zip(names, stored))
            remote_entry[_age.ENCRYPTION_KEY] = _age.encryption_record(self.recipients)
        self._put_entry(_catalog.sign_entry(remote_entry), marker)
        uploaded = time.time()
        checked = self.verify(entry)
        return dict(id=backup_id, url=self.url(self.key(backup_id)), objects=len(files) + 1,
                    bytes=sum(item['size'] for item in remote_entry['files'].values()), sse=self.params.get('sse'),
                    encryption=remote_entry.get(_age.ENCRYPTION_KEY),
                    upload_seconds=round(uploaded - began, 3), verify_seconds=round(time.time() - uploaded, 3),
                    uploaded_at=_catalog.format_time(_catalog.utc_now()), verified_at=checked['verified_at'])

    def _put_entry(self, entry, key):
        self._put_bytes((json.dumps(entry, indent=2, sort_keys=True) + '\n').encode('utf-8'), key)

    def sign_unsigned(self, check_mode=False):
        """``_catalog.sign_unsigned`` for the remote copies: sign every remote entry that is sound but has no
        ``hmac``. Returns ``dict(signed=[ids], refused=[unreadable_item dicts])``."""
        result = dict(signed=[], refused=[])
        for item in self.listing()['unreadable']:
            try:
                entry = self.get_entry(item['id'])
            except S3Error:
                entry = None
            if _catalog.unsigned(entry, item['id']):
                if not check_mode:
                    self._put_entry(_catalog.sign_entry(entry), self.key(item['id'], _catalog.CATALOG_FILE))
                result['signed'].append(item['id'])
            else:
                result['refused'].append(item)
        return result

    def upload_verified(self, root, entry, outcome, refusal, before_upload=None):
        """Record the local verify ``outcome`` of a backup just taken (``_catalog.record_verify``);
        when it passed, copy the backup to S3 and record the upload summary as the entry's ``s3``.

        ``refusal``: the BackupError message when it failed, with ``%(id)s`` and ``%(problems)s``.
        ``before_upload()``: runs after the verify, before the upload; the dict it returns is added
        to the summary (pg_backup copies the WAL there). Returns the summary."""
        _catalog.record_verify(root, entry, outcome)
        if not outcome['ok']:
            raise _catalog.BackupError(refusal % dict(id=entry['id'], problems='; '.join(outcome['problems'][:5])))
        extra = before_upload() if before_upload is not None else {}
        summary = self.upload(root, entry)
        summary.update(extra)
        entry['s3'] = summary
        _catalog.write_entry(os.path.join(root, entry['id']), entry)
        return summary

    def verify(self, entry):
        """Check the remote copy of ``entry``: every object present with the recorded size, then read
        back through SHA-256. Returns ``dict(id, ok=True, checks, problems=[], verified_at)``; raises
        S3Error (kind ``checksum``, ``.result`` holding the problems) when the copy differs."""
        backup_id = entry['id']
        prefix = self.key(backup_id)
        result = dict(id=backup_id, ok=False, url=self.url(prefix), checks=['s3 sizes'], problems=[], verified_at=None)
        objects, dummy = self._list(prefix)
        sizes = dict((k[len(prefix):], v) for k, v in objects.items())
        files = entry['files']
        remote_entry = entry if _age.ENCRYPTION_KEY in entry else (
            self.get_entry(backup_id) if prefix + _catalog.CATALOG_FILE in objects else {})
        if remote_entry.get(_age.ENCRYPTION_KEY):
            # Stored encrypted: its own (signed) entry records the stored bytes' hashes.
            problem = _catalog.mac_problem(remote_entry)
            if problem:
                result['problems'].append('%s %s' % (_catalog.CATALOG_FILE, problem))
            else:
                files = stored_files(remote_entry, None if remote_entry is entry else entry)
                result['checks'].append('s3 age')
        result['problems'] = result['problems'] or compare_remote(dict(entry, files=files), sizes, _catalog.CATALOG_FILE)
        if not result['problems']:
            result['checks'].append('s3 sha256')
            names = sorted(files)
            for rel, (digest, size) in zip(names, self._each(lambda rel: self._stream(prefix + rel), names)):
                if digest != files[rel]['sha256']:
                    result['problems'].append('%s: SHA-256 %s in S3, recorded %s' % (rel, digest, files[rel]['sha256']))
        if result['problems']:
            raise S3Error('The S3 copy %s differs from the catalog: %s. Upload the backup again (or take a new one)'
                          % (result['url'], '; '.join(result['problems'][:5])), kind='checksum', result=result)
        result.update(ok=True, verified_at=_catalog.format_time(_catalog.utc_now()))
        return result

    def add_remote_check(self, outcome, entry):
        """Verify the remote copy of ``entry`` and fold the result into a local verify ``outcome``
        (``dict(ok, checks, problems)``, changed in place: ``outcome['s3']`` holds the remote part).
        Returns the remote result."""
        try:
            remote = self.verify(entry)
        except S3Error as err:
            if err.result is None:
                raise
            remote = err.result
        outcome['s3'] = dict((k, remote[k]) for k in ('ok', 'url', 'checks', 'problems'))
        outcome['checks'] = list(outcome.get('checks') or []) + remote['checks']
        outcome['problems'] = list(outcome.get('problems') or []) + ['S3 ' + p for p in remote['problems']]
        outcome['ok'] = bool(outcome.get('ok')) and remote['ok']
        return remote

    def prune(self, keep_days=None, keep_count=None, dry_run=False, now=None):
        """Apply the local retention rules (``_catalog.plan_retention``) to the remote copies and remove
        what they do not keep (nothing with ``dry_run``). Returns the plan (removed, kept, reasons,
        oldest_wal_needed, warnings, incomplete)."""
        remote = self.listing()
        plan = _catalog.plan_retention(remote['entries'], keep_days=keep_days, keep_count=keep_count, now=now,
                                       unreadable=remote['unreadable'])
        if not dry_run:
            for backup_id in plan['remove']:
                self.remove(backup_id)
        return dict(removed=plan['remove'], kept=plan['keep'], reasons=plan['reasons'],
                    oldest_wal_needed=plan['oldest_wal_needed'], warnings=plan['warnings'],
                    incomplete=remote['incomplete'])

    def add_listing(self, result):
        """Add the remote catalog to a ``_catalog.listing`` result (changed in place and returned):
        ``in_s3`` on each local backup, and ``s3_backups`` (each with ``local``), ``s3_latest``,
        ``s3_incomplete``, ``s3_unreadable``."""
        remote = self.listing()
        remote_ids = set(e['id'] for e in remote['entries'])
        local_ids = set(item['id'] for item in result['backups'])
        for item in result['backups']:
            item['in_s3'] = item['id'] in remote_ids
        s3_backups, s3_latest = _catalog.summarize(remote['entries'])
        for item in s3_backups:
            item['local'] = item['id'] in local_ids
        result.update(s3_backups=s3_backups, s3_latest=s3_latest, s3_incomplete=remote['incomplete'],
                      s3_unreadable=remote['unreadable'])
        return result

    def listing(self):
        """``dict(entries=[remote catalog entries, oldest first by stop time], incomplete=[ids without
        marker], unreadable=[_catalog.unreadable_item dicts])``: an entry that fails ``_catalog.check_entry``
        is reported there and never listed, chained or pruned."""
        dummy, prefixes = self._list(self.base + '/', delimiter='/')
        result = dict(entries=[], incomplete=[], unreadable=[])
        for item in sorted(prefixes):
            name = item[len(self.base) + 1:].rstrip('/')
            if name in AREAS or not _NAME_RE.match(name):
                continue
            try:
                entry = self._get_json(self.key(name, _catalog.CATALOG_FILE))
            except S3Error as err:
                if err.kind == 'missing':
                    result['incomplete'].append(name)
                else:
                    result['unreadable'].append(_catalog.unreadable_item(self.url(self.key(name)), name, err.msg))
                continue
            problem = _catalog.check_entry(entry, self.url(self.key(name)), name, fix='upload it again')
            if problem:
                result['unreadable'].append(_catalog.unreadable_item(self.url(self.key(name)), name, problem, entry))
                continue
            result['entries'].append(entry)
        result['entries'] = _catalog.sort_by_stop(result['entries'])
        return result

    def list_entries(self):
        """The remote catalog entries (only backups whose catalog.json was uploaded), oldest first."""
        return self.listing()['entries']

    def get_entry(self, backup_id):
        return self._get_json(self.key(backup_id, _catalog.CATALOG_FILE))

    def download(self, root, backup_id):
        """Download a remote backup into ``<root>/.tmp-<id>``, check every file against the catalog's
        size and SHA-256 while writing, then publish it as ``<root>/<id>`` (fsync, rename, marker
        last) like a local backup. Returns the entry (with ``s3.downloaded_at``)."""
        final = os.path.join(root, check_name(backup_id))
        if os.path.exists(final):
            raise S3Error('Cannot download %s: %s already exists' % (backup_id, final))
        try:
            entry = self.get_entry(backup_id)
        except S3Error as err:
            if err.kind == 'missing':
                raise S3Error('Backup %s has no complete copy in %s' % (backup_id, self.url(self.base + '/')), kind='missing')
            raise
        if entry.get('id') != backup_id or not entry.get('files'):
            raise S3Error('%s does not describe backup %s' % (self.url(self.key(backup_id, _catalog.CATALOG_FILE)),
                                                              backup_id), kind='checksum')
        problem = _catalog.mac_problem(entry)
        if problem:
            raise S3Error('%s %s. It was not used' % (self.url(self.key(backup_id, _catalog.CATALOG_FILE)), problem),
                          kind='checksum')
        encrypted = bool(entry.get(_age.ENCRYPTION_KEY))
        if encrypted:
            self.check_identity(backup_id)
        staged = os.path.join(root, _catalog.TMP_PREFIX + backup_id)
        if os.path.exists(staged):
            shutil.rmtree(staged)
        os.mkdir(staged, 0o700)
        try:
            names = sorted(entry['files'])
            for rel in sorted(entry.pop(DIRS_KEY, None) or []):
                os.makedirs(os.path.join(staged, check_relpath(rel)), 0o700)
            for rel in names:
                parent = os.path.dirname(os.path.join(staged, check_relpath(rel)))
                if not os.path.isdir(parent):
                    os.makedirs(parent, 0o700)

            def fetch(rel):
                if encrypted:
                    return self._get_decrypted(self.key(backup_id, rel), os.path.join(staged, rel))
                with open(os.path.join(staged, rel), 'wb') as handle:
                    return self._stream(self.key(backup_id, rel), handle), None
            problems = []
            for rel, ((digest, size), plain) in zip(names, self._each(fetch, names)):
                want = entry['files'][rel]
                if size != want['size'] or digest != want['sha256']:
                    problems.append('%s: %d bytes SHA-256 %s in S3, recorded %d bytes %s'
                                    % (rel, size, digest, want['size'], want['sha256']))
                elif plain is not None and plain != (want['plain_sha256'], want['plain_size']):
                    problems.append('%s: decrypted to %d bytes SHA-256 %s, recorded %d bytes %s'
                                    % (rel, plain[1], plain[0], want['plain_size'], want['plain_sha256']))
            if problems:
                raise S3Error('The S3 copy of %s differs from its catalog: %s. It was not used'
                              % (backup_id, '; '.join(problems[:5])), kind='checksum')
            entry = plain_entry(entry)
            entry['s3'] = dict(entry.get('s3') or {}, downloaded_at=_catalog.format_time(_catalog.utc_now()))
            _catalog.publish(root, entry, staged)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        return entry

    def check_identity(self, what):
        """Fail (kind ``key``) unless a private key to decrypt ``what`` was given and can be read."""
        try:
            _age.check_identity_file(self.identity_file)
        except _age.AgeError as err:
            raise S3Error('%s: %s' % (what, err.msg), kind='key')

    def encrypted_ids(self, backup_ids):
        """The ids among ``backup_ids`` whose remote copy is encrypted (reads their catalog.json)."""
        return [i for i in backup_ids if self.get_entry(i).get(_age.ENCRYPTION_KEY)]

    def area_encrypted(self, area, names):
        """The names among ``names`` whose object in ``area`` is stored encrypted (one HEAD each)."""
        encrypted = []
        for name in names:
            key = self.area_key(area, name)
            head = self._call('read', key, self.client.head_object, Bucket=self.bucket, Key=key)
            if (head.get('Metadata') or {}).get(AGE_META) == '1':
                encrypted.append(name)
        return encrypted

    def remove(self, backup_id):
        """Remove a remote copy: the marker first (unpublished), then every other object.
        Returns the number of objects removed (0 when there was no copy)."""
        prefix = self.key(backup_id)
        objects, dummy = self._list(prefix)
        marker = self.key(backup_id, _catalog.CATALOG_FILE)
        if marker in objects:
            self._delete_keys([marker])
        self._delete_keys(sorted(k for k in objects if k != marker))
        return len(objects)

    # -- shared areas (for example the WAL segments backups need) --------------------------------
    def list_area(self, area, name_prefix=''):
        """``{name: size}`` of the objects in ``<base>/<area>/`` (only names starting with ``name_prefix``:
        the WAL shipper asks for the few names it is about to upload, not for the whole area)."""
        prefix = self.area_key(area)
        objects, dummy = self._list(prefix + (check_name(name_prefix, 'object name prefix') if name_prefix else ''))
        return dict((k[len(prefix):], v) for k, v in objects.items() if '/' not in k[len(prefix):])

    def put_area(self, area, directory, names, present=None):
        """Upload the files ``names`` of ``directory`` into ``<base>/<area>/``, skipping those already
        there with the same size and SHA-256. A different object of the same name is never
        overwritten (like archive_command): that raises. Returns ``dict(uploaded=[], present=[])``."""
        remote = self.list_area(area) if present is None else present
        result = dict(uploaded=[], present=[])
        for name in names:
            path = os.path.join(directory, check_name(name, 'object name'))
            digest, size = _catalog.hash_file(path)
            key = self.area_key(area, name)
            if name in remote:
                head = self._call('read', key, self.client.head_object, Bucket=self.bucket, Key=key)
                meta = head.get('Metadata') or {}
                theirs = meta.get(SHA256_META)
                # An encrypted object's size is not the plaintext's; its metadata holds the plaintext's SHA-256.
                if theirs == digest and (meta.get(AGE_META) == '1' or int(head.get('ContentLength', -1)) == size):
                    result['present'].append(name)
                    continue
                raise S3Error('%s exists with different content (%s bytes, SHA-256 %s; local %d bytes, %s): not '
                              'overwritten. Two clusters share this prefix? Use another s3.prefix'
                              % (self.url(key), head.get('ContentLength'), theirs, size, digest), kind='checksum')
            if self.recipients and not PLAIN_AREA_NAMES.match(name):
                self._put_encrypted(path, key, digest)
            else:
                self._put_file(path, key, digest)
            result['uploaded'].append(name)
        return result

    def get_area(self, area, names, directory):
        """Download ``names`` from ``<base>/<area>/`` into ``directory`` (temporary name, SHA-256
        checked against the object's metadata, rename). Returns the names fetched; raises when
        one is missing or damaged."""
        fetched = []
        for name in names:
            key = self.area_key(area, name)
            target = os.path.join(directory, check_name(name, 'object name'))
            head = self._call('read', key, self.client.head_object, Bucket=self.bucket, Key=key)
            want = (head.get('Metadata') or {}).get(SHA256_META)
            encrypted = (head.get('Metadata') or {}).get(AGE_META) == '1'
            if encrypted:
                self.check_identity('WAL %s in S3 is encrypted with age' % name)
            tmp = target + '.s3-partial'
            try:
                if encrypted:
                    dummy, (digest, size) = self._get_decrypted(key, tmp)
                else:
                    with open(tmp, 'wb') as handle:
                        digest, size = self._stream(key, handle)
                        handle.flush()
                        os.fsync(handle.fileno())
                if want and digest != want:
                    raise S3Error('%s: SHA-256 %s, its metadata says %s: the remote copy is damaged'
                                  % (self.url(key), digest, want), kind='checksum')
                os.rename(tmp, target)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            fetched.append(name)
        if fetched:
            fsync_path(directory, directory=True)
        return fetched

    def remove_area(self, area, names):
        self._delete_keys(self.area_key(area, n) for n in names)
        return len(list(names))


# ---------------------------------------------------------------------------------------------
# The verify action of the backup modules


def verify_backups(root, chosen, local_ids, verify_local, store=None, remote_ids=(), record=True,
                   remote_marks_local=False):
    """Verify ``chosen`` catalog entries; return ``(results, changed)``.

    A backup in ``local_ids`` is checked by ``verify_local(entry) -> dict(id, ok, checks, problems)``;
    one only in S3 gets an empty local outcome (``local: false``). One in ``remote_ids`` also has its
    S3 copy checked (``store.add_remote_check``). With ``record`` (not in check mode) the outcome is
    written to the local catalog.json: the local result as ``verified`` and the remote one as
    ``s3.verified`` (pg_backup), or with ``remote_marks_local`` the combined result as ``verified``
    (redis_snapshot: a snapshot whose S3 copy fails counts as failed).
    """
    results, changed = [], False
    for entry in chosen:
        local = entry['id'] in local_ids
        outcome = verify_local(entry) if local else dict(id=entry['id'], ok=True, problems=[], checks=[], local=False)
        record_here = local and record
        if not record_here:
            outcome.pop(_catalog.SEAL_KEY, None)  # a check-mode verify seals nothing
        if record_here and not remote_marks_local:
            changed = _catalog.record_verify(root, entry, outcome) or changed
        if entry['id'] in remote_ids:
            remote = store.add_remote_check(outcome, entry)
            if record_here and not remote_marks_local:
                entry['s3'] = dict(entry.get('s3') or {}, verified=remote['ok'],
                                   verified_at=_catalog.format_time(_catalog.utc_now()),
                                   verify_error='; '.join(remote['problems'])[:2000] or None)
                _catalog.write_entry(os.path.join(root, entry['id']), entry)
        if record_here and remote_marks_local:
            changed = _catalog.record_verify(root, entry, outcome) or changed
        results.append(outcome)
    return results, changed
