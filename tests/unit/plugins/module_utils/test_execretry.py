# -*- coding: utf-8 -*-
from __future__ import annotations

import pytest

from ansible_collections.psscript.infra.plugins.module_utils._execretry import engine_failed, run_until_started

OCI = ('OCI runtime exec failed: exec failed: unable to start container process: read init-p: '
       'connection reset by peer: unknown')


@pytest.mark.parametrize('result, expected', [
    ({'rc': 0, 'stdout': 'PONG', 'stderr': ''}, False),
    # The command ran and failed: the task decides, nothing is asked again.
    ({'rc': 1, 'stdout': '(error) NOAUTH Authentication required.', 'stderr': ''}, False),
    ({'rc': 127, 'stdout': '', 'stderr': 'redis-cli: not found'}, False),
    # The engine's own failure, in the output stream or in a failed module's message.
    ({'rc': 126, 'stdout': OCI, 'stderr': ''}, True),
    ({'rc': 126, 'stdout': '', 'stderr': OCI}, True),
    ({'failed': True, 'msg': 'Error while starting exec: ' + OCI}, True),
    # A failed module for another reason (a missing container) is returned as it came.
    ({'failed': True, 'msg': 'Could not find container "x"'}, False),
    # rc 0 is a success even if the command printed the words itself.
    ({'rc': 0, 'stdout': OCI}, False),
    ({'skipped': True, 'msg': 'check mode'}, False),
    (None, False),
])
def test_engine_failed_only_when_the_command_never_ran(result, expected):
    assert engine_failed(result) is expected


def _calls(results):
    answers = iter(results)
    calls = []

    def execute():
        calls.append(1)
        return next(answers)
    return execute, calls


def test_asked_again_until_the_engine_runs_the_command():
    execute, calls = _calls([{'rc': 126, 'stdout': OCI}, {'rc': 126, 'stderr': OCI}, {'rc': 0, 'stdout': 'PONG'}])
    slept, noted = [], []
    result, attempts = run_until_started(execute, 3, 0.5, slept.append, note=noted.append)
    assert result == {'rc': 0, 'stdout': 'PONG'}
    assert attempts == 3 and len(calls) == 3
    assert slept == [0.5, 0.5] and noted == [1, 2]


def test_a_command_that_ran_and_failed_is_not_run_again():
    execute, calls = _calls([{'rc': 1, 'stdout': 'ERR'}, {'rc': 0}])
    result, attempts = run_until_started(execute, 3, 1, lambda s: None)
    assert result == {'rc': 1, 'stdout': 'ERR'} and attempts == 1 and len(calls) == 1


def test_the_last_engine_failure_is_returned_after_the_retries():
    execute, calls = _calls([{'rc': 126, 'stdout': OCI}] * 3)
    result, attempts = run_until_started(execute, 2, 0, lambda s: None)
    assert result['rc'] == 126 and attempts == 3 and len(calls) == 3
