# -*- coding: utf-8 -*-
# Copyright: psscript.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether a docker_container_exec result is the engine's own failure to start the command."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# runc's words when it could not start the process in the container (under load: "read init-p:
# connection reset by peer", "error writing config to pipe", ...): the command itself never ran.
ENGINE_ERROR = re.compile(r'OCI runtime exec failed|unable to start container process')


def engine_failed(result):
    """True when the exec failed because the engine did not run the command: a non-zero rc (or a
    failed module) whose output or message carries the runtime's error. A command that ran and
    failed, or an exec that succeeded, is False."""
    if not isinstance(result, dict):
        return False
    rc = result.get('rc')
    if rc == 0 and not result.get('failed'):
        return False
    if rc is None and not result.get('failed'):
        return False
    text = '\n'.join(str(result.get(key) or '') for key in ('stdout', 'stderr', 'msg'))
    return ENGINE_ERROR.search(text) is not None


def run_until_started(execute, retries, delay, sleep, note=None):
    """Call execute() until its result is not the engine's failure to start the command, at most
    1 + retries times, sleeping delay seconds between calls. Returns (last result, attempts)."""
    attempts = 0
    while True:
        attempts += 1
        result = execute()
        if attempts > retries or not engine_failed(result):
            return result, attempts
        if note:
            note(attempts)
        sleep(delay)
