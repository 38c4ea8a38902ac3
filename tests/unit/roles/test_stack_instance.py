# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The stack role's stack_instance_defaults are the service roles' defaults: the fact every playbook,
role and stackctl reads must say what the service roles deploy when the inventory sets nothing."""

from __future__ import annotations

import os

import yaml

ROLES = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'roles')


def load(role, kind='defaults'):
    with open(os.path.join(ROLES, role, kind, 'main.yml'), encoding='utf-8') as handle:
        return yaml.safe_load(handle)


STACK = load('stack')['stack_instance_defaults']


def test_ports_are_the_service_roles_defaults():
    assert STACK['ports']['postgres'] == load('postgres')['postgres_port']
    assert STACK['ports']['pgbouncer'] == load('pgbouncer')['pgbouncer_port']
    # The redis_sentinel role's port default is an expression of the instance's kind.
    assert load('redis_sentinel')['redis_sentinel_port'] == (
        "{{ %d if redis_sentinel_kind == 'sentinel' else %d }}" % (STACK['ports']['sentinel'], STACK['ports']['redis']))


def test_names_are_the_service_roles_defaults():
    postgres = load('postgres')
    assert STACK['app_database'] == postgres['postgres_app_database']
    assert STACK['app_user'] == postgres['postgres_app_user']
    assert STACK['backup_user'] == postgres['postgres_backup_user']
    assert STACK['stats_user'] == load('pgbouncer')['pgbouncer_stats_user']
    assert STACK['master_name'] == load('redis_sentinel')['redis_sentinel_master_name']


def test_the_backup_role_reads_its_paths_from_the_stack():
    backup = load('backup', 'vars')
    for key, var in (('postgres', 'backup_postgres_dir'), ('redis', 'backup_redis_dir'),
                     ('wal_archive', 'backup_wal_archive_dir'), ('tls_ca', 'backup_tls_ca_file')):
        assert 'stack_instance_defaults.backup_paths.%s' % key in backup[var]
        assert STACK['backup_paths'][key].startswith('/')


def test_the_images_use_the_stack_uids():
    uids = load('stack')['stack_uids']
    for image, user in (('postgres', 'postgres'), ('pgbouncer', 'postgres'), ('backup', 'postgres'), ('redis', 'redis')):
        with open(os.path.join(ROLES, 'images', 'files', image, 'Dockerfile'), encoding='utf-8') as handle:
            dockerfile = handle.read()
        wanted = 'groupadd -r -g {0} {1} && useradd -r -u {0} -g {0} '.format(uids[user], user)
        assert wanted in dockerfile, image


def test_the_wal_source_is_the_backup_roles_default():
    backup = load('backup')
    assert STACK['wal_source'] == backup['backup_wal_source']
    # The stack role resolves auto against the backup role's default PostgreSQL instance.
    stack_vars = load('stack', 'vars')
    assert stack_vars['stack_backup_postgres'] == (
        "{{ backup_postgres_instance | default(%s) }}" % backup['backup_postgres_instance'][3:-3])
    assert load('backup', 'vars')['backup_wal_archive_volume'] == '{{ stack_instance.wal_archive_volume }}'
