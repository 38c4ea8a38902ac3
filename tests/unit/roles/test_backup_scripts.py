# -*- coding: utf-8 -*-
"""The scripts the backup role installs in the backup container, run as the container runs them."""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys

import ansible_collections.psscript.infra as collection
from ansible_collections.psscript.infra.plugins.module_utils import _catalog

FILES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "backup", "files")
# The directory holding ansible_collections/, as ANSIBLE_COLLECTIONS_PATH names it in the container.
COLLECTIONS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(collection.__path__[0]))))
START = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def run_catalog_state(*args, key_file=None):
    """The script run as the container runs it (the collection found through ANSIBLE_COLLECTIONS_PATH, the
    catalog key through PSSCRIPT_CATALOG_KEY_FILE)."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS)
    env.pop(_catalog.KEY_FILE_ENV, None)
    if key_file:
        env[_catalog.KEY_FILE_ENV] = str(key_file)
    return subprocess.run([sys.executable, os.path.join(FILES, "catalog-state")] + [str(a) for a in args],
                          capture_output=True, text=True, check=False, env=env)


def catalog_state(postgres, redis, *flags, key_file=None):
    proc = run_catalog_state(*(flags + (postgres, redis)), key_file=key_file)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def publish(root, minutes, backup_type="full", parent=None, **extra):
    backup_id = _catalog.new_backup_id(backup_type, START + datetime.timedelta(minutes=minutes))
    staged = _catalog.start_backup(str(root), backup_id)
    with open(os.path.join(staged, "data"), "w") as handle:
        handle.write("x")
    entry = _catalog.make_entry(backup_id, backup_type, _catalog.format_time(START + datetime.timedelta(minutes=minutes)),
                                _catalog.format_time(START + datetime.timedelta(minutes=minutes + 1)),
                                _catalog.hash_tree(staged), parent=parent, **extra)
    _catalog.publish(str(root), entry, staged)
    return backup_id


def test_catalog_state_of_empty_catalogs_says_both_first_backups_are_needed(tmp_path):
    (tmp_path / "pg").mkdir()
    (tmp_path / "redis").mkdir()
    assert catalog_state(tmp_path / "pg", tmp_path / "redis") == dict(
        postgres=dict(last_verified_full=None), redis=dict(latest=None), signed=dict(postgres=[], redis=[]))


def test_catalog_state_names_the_newest_verified_full_and_the_newest_snapshot(tmp_path):
    pg, redis = tmp_path / "pg", tmp_path / "redis"
    pg.mkdir()
    redis.mkdir()
    verified = publish(pg, 0, verified=True)
    publish(pg, 10)  # a newer full not verified (yet): not what the decision counts
    snapshot = publish(redis, 5, service="redis")
    (pg / "unreadable-entry").mkdir()  # not a backup id: ignored as the modules ignore it
    assert catalog_state(pg, redis) == dict(postgres=dict(last_verified_full=verified), redis=dict(latest=snapshot),
                                            signed=dict(postgres=[], redis=[]))


def test_with_the_catalog_key_unsigned_entries_count_only_once_signed(tmp_path):
    pg, redis = tmp_path / "pg", tmp_path / "redis"
    pg.mkdir()
    redis.mkdir()
    verified = publish(pg, 0, verified=True)
    snapshot = publish(redis, 5, service="redis")
    key = tmp_path / "key"
    key.write_text("k" * 32 + "\n")
    unsigned = catalog_state(pg, redis, key_file=key)
    assert unsigned["postgres"]["last_verified_full"] is None and unsigned["redis"]["latest"] is None
    adopted = catalog_state(pg, redis, "--sign-unsigned", key_file=key)
    assert adopted == dict(postgres=dict(last_verified_full=verified), redis=dict(latest=snapshot),
                           signed=dict(postgres=[verified], redis=[snapshot]))
    assert catalog_state(pg, redis, key_file=key)["signed"] == dict(postgres=[], redis=[])
    proc = run_catalog_state(pg, redis, key_file=tmp_path / "missing")
    assert proc.returncode == 1 and "Cannot read the catalog key" in proc.stderr


def test_catalog_state_without_its_two_arguments_is_a_usage_error(tmp_path):
    proc = run_catalog_state(tmp_path)
    assert proc.returncode == 2 and "usage: catalog-state" in proc.stderr
