# -*- coding: utf-8 -*-
from __future__ import annotations

import base64

from ansible_collections.psscript.infra.plugins.action.config_files import ActionModule, _controller_spec
from ansible_collections.psscript.infra.plugins.module_utils._configfiles import ARGUMENT_SPEC


def test_action_plugin_turns_the_old_content_into_before_and_after():
    entry = {'before_header': '/x', 'after_header': '/x', 'before_b64': base64.b64encode(b'old\n').decode(), 'file_index': 1}
    assert ActionModule._content_diff(entry, ['other\n', 'new\n']) == {
        'before_header': '/x', 'after_header': '/x', 'before': 'old\n', 'after': 'new\n'}
    other = {'prepared': '/y: secret content changed (not shown)'}
    assert ActionModule._content_diff(other, []) is other


def test_the_controller_keeps_paths_as_written():
    spec = _controller_spec(ARGUMENT_SPEC)
    assert spec['files']['options']['dest']['type'] == 'str'
    assert spec['directories']['options']['path']['type'] == 'str'
    assert ARGUMENT_SPEC['files']['options']['dest']['type'] == 'path'
