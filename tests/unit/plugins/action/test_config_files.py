# -*- coding: utf-8 -*-
from __future__ import annotations

import base64

from ansible_collections.psscript.infra.plugins.action.config_files import ActionModule


def test_action_plugin_turns_the_old_content_into_before_and_after():
    entry = {'before_header': '/x', 'after_header': '/x', 'before_b64': base64.b64encode(b'old\n').decode()}
    assert ActionModule._content_diff(entry, {'/x': 'new\n'}) == {
        'before_header': '/x', 'after_header': '/x', 'before': 'old\n', 'after': 'new\n'}
    other = {'prepared': '/y: secret content changed (not shown)'}
    assert ActionModule._content_diff(other, {}) is other
