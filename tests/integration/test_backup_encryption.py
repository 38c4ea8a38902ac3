# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Encrypted S3 copies (issue #10, item 4): pg_backup with ``s3.age_recipients`` against the real PostgreSQL 17
and the real ``age`` of the backup image. An encrypted full backup and the WAL after it restore to a point in
time with the private key, from S3 alone; without the key (or with another one) the restore is refused before
anything is written, and no stored object holds a byte of plaintext.

    .venv/bin/python -m pytest tests/integration/test_backup_encryption.py -q
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from conftest import BACKUP_IMAGE
from test_pg_backup import _archive_current_wal, entry, failed, ok

pytestmark = pytest.mark.integration

MARKER = 'AGE-PLAINTEXT-MARKER'
# How every age file begins (its format's version line).
AGE_HEADER = b'age-encryption'


def age_keygen(directory, name):
    """A key pair made by the image's age-keygen, as an operator makes one: ``(identity path, public key)``."""
    subprocess.run(['docker', 'run', '--rm', '-v', '%s:/keys' % directory, '--entrypoint', 'age-keygen', BACKUP_IMAGE,
                    '-o', '/keys/' + name], check=True, capture_output=True, text=True)
    path = os.path.join(directory, name)
    with open(path) as handle:
        public = [line.split(': ', 1)[1].strip() for line in handle if line.startswith('# public key: ')][0]
    return path, public


def test_encrypted_copy_restores_to_a_point_in_time_only_with_its_key(stack, s3, tmp_path):
    db = stack
    backups = db.new_backup_dir('age-backups')
    restores = db.new_backup_dir('age-restores')
    os.chmod(restores, 0o755)
    keys = str(tmp_path / 'keys')
    os.makedirs(keys)
    identity, public = age_keygen(keys, 'identity.txt')
    other, dummy = age_keygen(keys, 'other.txt')
    assert oct(os.stat(identity).st_mode & 0o777) == '0o600'
    prefix = 'it/age'
    params = s3.params(prefix, age_recipients=[public])
    db.sql('CREATE TABLE agerows (id int PRIMARY KEY, note text)')
    db.sql("INSERT INTO agerows SELECT g, '%s-' || g FROM generate_series(1, 50) g" % MARKER)
    db.sql('CHECKPOINT')  # the rows are in the data files the backup copies, not only in WAL

    # 1. An encrypted full backup (plain format: the local files hold the marker in clear).
    started = time.time()
    full = ok(db.module(backups=backups, **db.backup_args(type='full', s3=params)))
    full_id = full['backup_id']
    assert full['s3']['encryption'] == {'method': 'age', 'recipients': [public]}, full['s3']
    assert full['backup']['verified'] is True and full['s3']['verified_at']
    local = subprocess.run(['grep', '-rl', MARKER, os.path.join(backups, full_id)], capture_output=True, text=True)
    assert local.stdout.strip(), 'the plain local copy should hold the marker (else the S3 check below proves nothing)'
    print('encrypted full backup: %.1f s, upload %.2f s for %d bytes'
          % (time.time() - started, full['s3']['upload_seconds'], full['s3']['bytes']))

    # 2. More committed rows, a target time between them, and the WAL archived and shipped to S3 (encrypted).
    db.sql("INSERT INTO agerows SELECT g, '%s-' || g FROM generate_series(51, 80) g" % MARKER)
    time.sleep(1)
    target = db.sql('SELECT clock_timestamp()')[0][0].isoformat()
    time.sleep(1)
    db.sql("INSERT INTO agerows SELECT g, '%s-' || g FROM generate_series(81, 100) g" % MARKER)
    _archive_current_wal(db)
    shipped = ok(db.module(backups=backups, action='ship_wal', wal_archive_dir='/wal-archive', s3=params))
    assert shipped['wal_uploaded'] and shipped['wal_shipping']['pending'] == 0, shipped

    # 3. What S3 holds: ciphertext only (age header, no marker), the catalog says so and hashes what is stored.
    stored = s3.keys(prefix + '/')
    readable = [k for k in stored if k.endswith('/catalog.json') or k.endswith('.history')]
    for key in stored:
        body = s3.client.get_object(Bucket=s3.bucket, Key=key)['Body'].read()
        assert MARKER.encode() not in body, key
        if key not in readable:
            assert body.startswith(AGE_HEADER), key
    wal_keys = [k for k in stored if '/wal/' in k and k not in readable]
    assert wal_keys and all(s3.client.head_object(Bucket=s3.bucket, Key=k)['Metadata'].get('age') == '1' for k in wal_keys)
    remote = s3.client.get_object(Bucket=s3.bucket, Key='%s/postgres/%s/catalog.json' % (prefix, full_id))['Body'].read()
    assert b'"encryption"' in remote and b'plain_sha256' in remote
    # A verify needs no key: it reads S3 and compares the stored bytes' hashes.
    verified = ok(db.module(backups=backups, action='verify', backup_id=full_id, wal_archive_dir='/wal-archive',
                            s3=s3.params(prefix)))
    assert verified['results'][0]['s3']['ok'] and 's3 age' in verified['results'][0]['checks']

    # 4. The backup volume and the WAL archive are lost: only S3 is left.
    shutil.rmtree(backups)
    os.makedirs(backups)
    lost_archive = str(tmp_path / 'lost-archive')
    os.makedirs(lost_archive)
    os.chmod(lost_archive, 0o755)
    mounts = ['%s:/restore' % restores, '%s:/keys:ro' % keys]

    def restore(check_mode=False, **s3_extra):
        return db.module(check_mode=check_mode, backups=backups, wal=lost_archive, volumes=mounts, action='restore',
                         restore_dir='/restore/at-target', wal_archive_dir='/wal-archive', target_time=target,
                         s3=dict(params, **s3_extra), check_query='SELECT count(*), max(id) FROM agerows')

    plan = ok(restore(check_mode=True))
    assert plan['age_identity_needed'] is True and plan['downloaded_from_s3'] == [full_id]
    # Without the key, and with another key: refused, nothing downloaded or built.
    without = failed(restore())
    assert 'encrypted with age' in without['msg'] and 'no private key was given' in without['msg'], without['msg']
    wrong = failed(restore(age_identity_file='/keys/other.txt'))
    assert 'not one of the recipients' in wrong['msg'], wrong['msg']
    assert os.listdir(restores) == [] and not [n for n in os.listdir(backups) if not n.startswith('.')]
    assert other  # the key that was refused

    # 5. With the key: exactly the rows committed before the target.
    started = time.time()
    restored = ok(restore(age_identity_file='/keys/identity.txt'))
    assert restored['downloaded_from_s3'] == [full_id] and restored['wal_from_s3'] >= 1
    assert restored['target_reached'] is True
    assert restored['recovery_stop'].startswith('recovery stopping before commit of transaction')
    assert restored['check_result'] == '80|80'
    print('restore from encrypted S3 copies: %.1f s' % (time.time() - started))
    # The downloaded copy is an ordinary local backup again: plaintext hashes, its encryption noted.
    downloaded = entry(backups, full_id)
    assert downloaded['s3']['encryption']['method'] == 'age' and 'encryption' not in downloaded
    assert not [n for n in os.listdir(restores) if n.startswith('.wal-from-s3')]


def test_encryption_costs_little_upload_time(stack, s3):
    """The same full backup uploaded plain and encrypted: prints the ratio of upload times (throughput)."""
    db = stack
    dummy, public = age_keygen(str(db.new_backup_dir('age-bench-keys')), 'identity.txt')
    seconds = {}
    for name, extra in (('plain', {}), ('age', dict(age_recipients=[public]))):
        backups = db.new_backup_dir('age-bench-' + name)
        result = ok(db.module(backups=backups, **db.backup_args(type='full', s3=s3.params('it/bench-' + name, **extra))))
        seconds[name] = (result['s3']['upload_seconds'], result['backup']['bytes'])
    print('S3 upload of a %d-byte full backup: plain %.2f s, age %.2f s (ratio %.2f)'
          % (seconds['plain'][1], seconds['plain'][0], seconds['age'][0], seconds['age'][0] / max(seconds['plain'][0], 0.01)))
    assert seconds['age'][0] < 5 * max(seconds['plain'][0], 1.0)
