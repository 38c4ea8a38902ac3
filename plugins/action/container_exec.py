# -*- coding: utf-8 -*-
# Copyright: psscript.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of psscript.infra.container_exec: community.docker.docker_container_exec,
asked again when the engine itself failed to start the command (its "OCI runtime exec failed",
seen under load: the command never ran, so running it again is safe). Every other result, a
command that ran and failed included, is returned as it came."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible.plugins.action import ActionBase

from ansible_collections.psscript.infra.plugins.module_utils._execretry import run_until_started

MODULE = 'community.docker.docker_container_exec'


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect

        args = dict(self._task.args)
        retries = int(args.pop('engine_retries', 3))
        delay = float(args.pop('engine_retry_delay', 1))
        answer, attempts = run_until_started(
            lambda: self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars),
            retries, delay, time.sleep,
            note=lambda n: self._display.vvv('container_exec: the engine did not start the command (attempt %d), '
                                             'asking again' % n))
        result.update(answer)
        result['engine_attempts'] = attempts
        return result
