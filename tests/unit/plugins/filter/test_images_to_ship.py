from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.psscript.infra.plugins.filter.images import images_to_ship

REFS = ['psscript/postgres:17', 'psscript/redis:8']
CONTROLLER = [
    {'Id': 'sha256:aaa', 'RepoTags': ['psscript/postgres:17']},
    {'Id': 'sha256:bbb', 'RepoTags': ['psscript/redis:8', 'psscript/redis:latest']},
]


def test_nothing_to_ship_when_the_ids_match():
    assert images_to_ship(CONTROLLER, list(reversed(CONTROLLER)), REFS) == []


def test_a_missing_image_is_shipped():
    assert images_to_ship(CONTROLLER, [CONTROLLER[1]], REFS) == ['psscript/postgres:17']


def test_another_id_under_the_same_tag_is_shipped():
    host = [CONTROLLER[0], {'Id': 'sha256:old', 'RepoTags': ['psscript/redis:8']}]
    assert images_to_ship(CONTROLLER, host, REFS) == ['psscript/redis:8']


def test_the_order_of_refs_is_kept():
    assert images_to_ship(CONTROLLER, [], list(reversed(REFS))) == list(reversed(REFS))


def test_an_untagged_host_image_counts_as_missing():
    host = [{'Id': 'sha256:aaa', 'RepoTags': []}, CONTROLLER[1]]
    assert images_to_ship(CONTROLLER, host, REFS) == ['psscript/postgres:17']


def test_the_controller_lacking_an_image_fails_naming_it():
    with pytest.raises(AnsibleFilterError, match='psscript/redis:8'):
        images_to_ship(CONTROLLER[:1], [], REFS)


def test_malformed_input_fails_clearly():
    with pytest.raises(AnsibleFilterError, match='must be a list'):
        images_to_ship({'Id': 'x'}, [], REFS)
    with pytest.raises(AnsibleFilterError, match='no Id'):
        images_to_ship([{'RepoTags': ['psscript/postgres:17']}], [], REFS)
