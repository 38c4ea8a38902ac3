# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for take_backup of module_utils._pgbackup with a fake pg_basebackup: a plain backup is published
unsealed (no pass over its data) and sealed by its first verify, compression happens in the stream, and what the
catalog records still catches a file changed after the backup."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from ansible_collections.psscript.infra.plugins.module_utils import _catalog, _pgbackup
from ansible_collections.psscript.infra.plugins.module_utils._pgbackup import BackupError

UTC = datetime.timezone.utc
SEG = 16 * 1024 * 1024
WAL = '000000010000000000000002'
LABEL = ('START WAL LOCATION: 0/2000028 (file %s)\nCHECKPOINT LOCATION: 0/2000080\nBACKUP METHOD: streamed\n'
         'BACKUP FROM: primary\nSTART TIME: 2025-01-01 00:00:00 UTC\nLABEL: x\nSTART TIMELINE: 1\n' % WAL)
# What the fake server sends: backup_label first, as PostgreSQL does.
CONTENT = {'backup_label': LABEL.encode(), 'PG_VERSION': b'17\n', 'global/pg_control': b'\x01' * 8192,
           'base/5/16384': os.urandom(3 * 8192) + b'\x00' * 40000}
FACTS = dict(wal_segment_size=SEG, version='17.2', version_num=170002, system_identifier='7')
PARAMS = dict(login_host='127.0.0.1', login_port=5432, login_user='b', login_password='pw', connect_timeout=5)


def manifest_of(content, algorithm='CRC32C'):
    # The checksums' values are not what the catalog records (it hashes the files itself): a constant here.
    files = [dict(Path=rel, Size=len(data), **{'Last-Modified': '2025-01-01 00:00:00 GMT', 'Checksum-Algorithm': algorithm,
                                               'Checksum': '0' * (64 if algorithm == 'SHA256' else 8)})
             for rel, data in content.items()]
    return json.dumps({'PostgreSQL-Backup-Manifest-Version': 2, 'System-Identifier': 7, 'Files': files,
                       'WAL-Ranges': [dict(Timeline=1, **{'Start-LSN': '0/2000028', 'End-LSN': '0/2000100'})],
                       'Manifest-Checksum': '0' * 64})


class FakeBasebackup(object):
    """``run`` for take_backup: pg_basebackup writes CONTENT (plain, or tar + zstd with the manifest beside it, as
    ``-Ft --compress=client-zstd`` does); every other command (tar) really runs."""

    def __init__(self, tmp_path, extra=None, listed=None, algorithm=None):
        self.source = str(tmp_path / 'source')
        self.content = dict(CONTENT)
        self.extra = extra or {}  # written, not in the manifest
        self.listed = listed or self.content  # what the manifest lists
        self.algorithm = algorithm  # None: what the command asks for
        self.commands = []

    def __call__(self, cmd, environ_update=None):
        self.commands.append(cmd)
        if not cmd[0].endswith('pg_basebackup'):
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            return proc.returncode, proc.stdout, proc.stderr
        target = cmd[cmd.index('--pgdata') + 1]
        tar = cmd[cmd.index('--format') + 1] == 'tar'
        tree = self.source if tar else target
        for rel, data in list(self.content.items()) + list(self.extra.items()):
            os.makedirs(os.path.dirname(os.path.join(tree, rel)), exist_ok=True)
            with open(os.path.join(tree, rel), 'wb') as handle:
                handle.write(data)
        if tar:
            os.makedirs(target)
            subprocess.run(['tar', '--use-compress-program', 'zstd -q', '-C', tree, '-cf',
                            os.path.join(target, 'base.tar.zst')] + list(self.content), check=True)
        with open(os.path.join(target, 'backup_manifest'), 'w') as handle:
            handle.write(manifest_of(self.listed, self.algorithm or cmd[cmd.index('--manifest-checksums') + 1]))
        return 0, '', ''


@pytest.fixture
def layout(tmp_path):
    root, archive = tmp_path / 'backups', tmp_path / 'wal'
    root.mkdir()
    archive.mkdir()
    (archive / WAL).write_bytes(b'w' * 4096)
    return str(root), str(archive)


def take(run, layout, compress):
    root, archive = layout
    now = datetime.datetime(2025, 1, 1, tzinfo=UTC)
    return _pgbackup.take_backup(run, dict(pg_basebackup='/usr/bin/pg_basebackup'), PARAMS, root, 'full', None, archive,
                                 FACTS, compress, lambda: now, lambda missing: None, wal_wait_timeout=0)


def counting_hash_file(monkeypatch):
    """Record which files take_backup reads to hash them."""
    hashed = []
    real = _catalog.hash_file

    def hash_file(path):
        hashed.append(os.path.basename(path))
        return real(path)
    monkeypatch.setattr(_catalog, 'hash_file', hash_file)
    return hashed


def test_basebackup_command_asks_for_crc32c_checksums_and_compresses_in_the_stream():
    plain = _pgbackup.basebackup_command('/usr/bin/pg_basebackup', PARAMS, '/b/.tmp-x/data', 'x')
    # The server computes no SHA-256 inside the stream: the module hashes the files beside the copy.
    assert plain[plain.index('--manifest-checksums') + 1] == 'CRC32C'
    assert '--no-sync' in plain
    assert plain[plain.index('--format') + 1] == 'plain' and '--compress' not in plain
    packed = _pgbackup.basebackup_command('/usr/bin/pg_basebackup', PARAMS, '/b/.tmp-x/data', 'x', compress=True)
    assert packed[packed.index('--format') + 1] == 'tar'
    assert packed[packed.index('--compress') + 1] == 'client-zstd'
    # The catalog hashes the archive.
    assert packed[packed.index('--manifest-checksums') + 1] == 'CRC32C'


def damage(path, offset):
    """Overwrite a few bytes of ``path`` at ``offset`` (in CONTENT's zeros, or inside an archive)."""
    with open(path, 'r+b') as handle:
        handle.seek(offset)
        handle.write(b'damaged')


def test_a_plain_backup_is_published_unsealed_and_its_first_verify_seals_it(tmp_path, layout, monkeypatch):
    hashed = counting_hash_file(monkeypatch)
    run = FakeBasebackup(tmp_path)
    entry = take(run, layout, False)
    root = layout[0]
    path = os.path.join(root, entry['id'])
    # No pass over the data while the backup is taken: the catalog read the manifest's copy and the backup's WAL
    # segment, and recorded the sizes the manifest lists (checked against the files written).
    assert sorted(hashed) == sorted(['backup_manifest', WAL])
    assert entry['sealed'] is False and entry['verified'] is None
    assert entry['manifest_checksums'] == 'CRC32C' and entry['layout'] == 'plain' and entry['compression'] is None
    for rel, data in CONTENT.items():
        assert entry['files']['data/' + rel] == dict(size=len(data))
    with open(os.path.join(path, 'backup_manifest'), 'rb') as handle:
        manifest = dict(sha256=hashlib.sha256(handle.read()).hexdigest(), size=entry['files']['backup_manifest']['size'])
    assert entry['files']['backup_manifest'] == entry['files']['data/backup_manifest'] == manifest
    assert entry['start_lsn'] == '0/2000028' and entry['wal_start'] == WAL and entry['wal_files'] == [WAL]
    assert entry['data_bytes'] == sum(len(d) for d in CONTENT.values()) + manifest['size']
    assert [e['id'] for e in _catalog.list_backups(root)['backups']] == [entry['id']]  # a sound entry
    # Unsealed, a restore's check reads the manifest only, and still refuses a file of another size or a changed
    # manifest (pg_verifybackup checks the rest against it).
    del hashed[:]
    assert _pgbackup.check_chain_hashes(root, [entry]) == 1 and sorted(hashed) == ['backup_manifest', 'backup_manifest']
    with open(os.path.join(path, 'data', 'PG_VERSION'), 'ab') as handle:
        handle.write(b'x')
    with pytest.raises(BackupError) as caught:
        _pgbackup.check_chain_hashes(root, [entry])
    assert 'data/PG_VERSION: size 4, recorded 3' in caught.value.msg
    with open(os.path.join(path, 'data', 'PG_VERSION'), 'wb') as handle:
        handle.write(CONTENT['PG_VERSION'])

    # A verify that fails (pg_verifybackup) seals nothing.
    del hashed[:]
    failed = _pgbackup.verify_backup(run, dict(pg_verifybackup='/bin/false'), root, entry, [entry])
    assert failed['ok'] is False and _catalog.SEAL_KEY not in failed
    assert failed['checks'] == ['sha256 (to seal)', 'pg_verifybackup']
    assert _catalog.record_verify(root, entry, failed) is True
    assert _catalog.read_entry(path)['sealed'] is False and _catalog.read_entry(path)['verified'] is False
    # One that passes hashes every file once and seals the entry with what it hashed.
    del hashed[:]
    passed = _pgbackup.verify_backup(run, dict(pg_verifybackup='/bin/true'), root, entry, [entry])
    assert passed['ok'] is True and sorted(hashed) == sorted(os.path.basename(rel) for rel in entry['files'])
    assert _catalog.record_verify(root, entry, passed) is True and _catalog.SEAL_KEY not in passed
    monkeypatch.undo()
    recorded = _catalog.read_entry(path)
    assert recorded['sealed'] is True and recorded['verified'] is True and recorded['bytes'] == entry['bytes']
    assert recorded['files'] == _catalog.hash_tree(path)
    # Sealed, the next verify compares (and seals nothing), and a flipped byte is refused before a restore.
    again = _pgbackup.verify_backup(run, dict(pg_verifybackup='/bin/true'), root, recorded, [recorded])
    assert again['ok'] and again['checks'] == ['sha256', 'pg_verifybackup'] and _catalog.SEAL_KEY not in again
    damage(os.path.join(path, 'data', 'base', '5', '16384'), 3 * 8192 + 100)
    assert [p.split(':')[0] for p in _catalog.check_hashes(path, recorded)] == ['data/base/5/16384']
    with pytest.raises(BackupError) as caught:
        _pgbackup.check_chain_hashes(root, [recorded])
    assert caught.value.kind == 'checksum' and 'data/base/5/16384' in caught.value.msg


def test_compressed_backup_is_compressed_by_pg_basebackup_and_unpacks_with_its_manifest(tmp_path, layout, monkeypatch):
    hashed = counting_hash_file(monkeypatch)
    run = FakeBasebackup(tmp_path)
    entry = take(run, layout, True)
    pg_basebackup = run.commands[0]
    assert pg_basebackup[pg_basebackup.index('--compress') + 1] == 'client-zstd'
    # No separate compression pass: the only other command reads backup_label out of the archive.
    assert [c[0] for c in run.commands[1:]] == ['tar'] and '--occurrence=1' in run.commands[1]
    assert sorted(hashed) == sorted(['data.tar.zst', 'backup_manifest', WAL])
    monkeypatch.undo()
    path = os.path.join(layout[0], entry['id'])
    assert sorted(os.listdir(path)) == ['backup_manifest', 'catalog.json', 'data.tar.zst']
    assert entry['layout'] == 'tar.zst' and entry['compression'] == 'client-zstd' and entry['manifest_checksums'] == 'CRC32C'
    assert entry['sealed'] is True
    assert sorted(entry['files']) == ['backup_manifest', 'data.tar.zst'] and _catalog.check_hashes(path, entry) == []
    assert entry['start_lsn'] == '0/2000028' and entry['timeline'] == 1
    assert entry['data_bytes'] == sum(len(d) for d in CONTENT.values()) + entry['files']['backup_manifest']['size']
    # Unpacked for pg_verifybackup / pg_combinebackup: the files and the manifest that lies beside the archive.
    unpacked = _pgbackup.extract_data(run, path, str(tmp_path / 'unpacked'))
    assert sorted(_catalog.hash_tree(unpacked)) == sorted(list(CONTENT) + ['backup_manifest'])
    with open(os.path.join(unpacked, 'base', '5', '16384'), 'rb') as handle:
        assert handle.read() == CONTENT['base/5/16384']
    damage(os.path.join(path, 'data.tar.zst'), 20)
    with pytest.raises(BackupError) as caught:
        _pgbackup.check_chain_hashes(layout[0], [entry])
    assert 'data.tar.zst: SHA-256' in caught.value.msg


@pytest.mark.parametrize('extra, listed, words', [
    ({'base/5/16385': b'x'}, None, 'base/5/16385: written, not listed in backup_manifest'),
    (None, dict(CONTENT, PG_VERSION=b'170\n'), 'PG_VERSION: 3 bytes, backup_manifest says 4'),
    (None, dict(CONTENT, **{'base/5/16386': b'y'}), 'base/5/16386: listed in backup_manifest, not written'),
])
def test_a_plain_backup_that_differs_from_its_manifest_is_refused(tmp_path, layout, extra, listed, words):
    with pytest.raises(BackupError) as caught:
        take(FakeBasebackup(tmp_path, extra=extra, listed=listed), layout, False)
    assert words in caught.value.msg and 'run the backup again' in caught.value.msg
    assert os.listdir(layout[0]) == []  # the partial backup was removed


@pytest.mark.parametrize('compress', [False, True])
def test_a_manifest_must_have_the_checksums_asked_for(tmp_path, layout, compress):
    with pytest.raises(BackupError) as caught:
        take(FakeBasebackup(tmp_path, algorithm='SHA256'), layout, compress)
    assert 'without a CRC32C checksum' in caught.value.msg and '--manifest-checksums=CRC32C' in caught.value.msg
    assert os.listdir(layout[0]) == []


def test_old_archives_that_hold_their_manifest_still_unpack(tmp_path):
    """Compressed backups of earlier versions packed ``data/`` with its backup_manifest inside the archive."""
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'PG_VERSION').write_bytes(b'17\n')
    (data / 'backup_manifest').write_text('inside')
    backup = tmp_path / 'b'
    backup.mkdir()
    (backup / 'backup_manifest').write_text('beside')
    subprocess.run(['tar', '--use-compress-program', 'zstd -q', '-C', str(data), '-cf', str(backup / 'data.tar.zst'), '.'],
                   check=True)
    shutil.rmtree(str(data))
    unpacked = _pgbackup.extract_data(FakeBasebackup(tmp_path), str(backup), str(tmp_path / 'out'))
    with open(os.path.join(unpacked, 'backup_manifest')) as handle:
        assert handle.read() == 'inside'
