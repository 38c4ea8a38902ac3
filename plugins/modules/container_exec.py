#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: psscript.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: container_exec
short_description: Run a command in a container, asked again when the engine did not start it
version_added: 0.1.0
author:
  - psscript.infra developers (!UNKNOWN)
extends_documentation_fragment:
  - psscript.infra.attributes
description:
  - Runs M(community.docker.docker_container_exec) with the task's options, all passed on unchanged.
  - >-
    Under load, the Docker engine sometimes fails to start the command at all. runc answers
    C(OCI runtime exec failed) (for example C(read init-p: connection reset by peer)) and the command never ran.
    This action then runs the exec again, up to O(engine_retries) more times. Running it again is safe: the
    command has not run.
  - Every other result is returned as it came, including a command that ran and exited non-zero. Whether that is a
    failure stays the task's decision (C(failed_when), C(until)).
  - This is an action plugin; it runs M(community.docker.docker_container_exec) on the task's target, so the target
    needs what that module needs (the Docker SDK for Python is not needed; the Docker API is reached directly).
options:
  container:
    description: The name of the container to execute the command in.
    type: str
    required: true
  argv:
    description: The command to execute, as a list of arguments. One of O(argv) and O(command) is required.
    type: list
    elements: str
  command:
    description: The command to execute, as a string split with shell rules. One of O(argv) and O(command) is required.
    type: str
  stdin:
    description: Text sent to the command's standard input.
    type: str
  user:
    description: The user to run the command as.
    type: str
  env:
    description: Environment variables of the command. Do not put secrets here; send them on O(stdin).
    type: dict
  engine_retries:
    description: How many more times the exec is asked when the engine did not start the command.
    type: int
    default: 3
  engine_retry_delay:
    description: Seconds between those attempts.
    type: float
    default: 1
notes:
  - Every other option of M(community.docker.docker_container_exec) (C(chdir), C(detach), C(tty),
    C(strip_empty_ends), C(stdin_add_newline), C(docker_host) and the other connection options) is passed on as given.
attributes:
  check_mode:
    support: none
    details: M(community.docker.docker_container_exec) runs nothing in check mode and says so.
  diff_mode:
    support: none
seealso:
  - module: community.docker.docker_container_exec
"""

EXAMPLES = r"""
- name: Ask Redis for its role
  psscript.infra.container_exec:
    container: psscript-redis-1
    argv: [redis-cli, -p, "6379", --user, monitor, --askpass, ROLE]
    stdin: "{{ monitor_password }}"
  register: redis_role
  changed_when: false
  no_log: true
"""

RETURN = r"""
stdout:
  description: The command's standard output.
  returned: success, when not detached
  type: str
stderr:
  description: The command's standard error.
  returned: success, when neither detached nor on a TTY
  type: str
rc:
  description: The command's exit code.
  returned: success, when not detached
  type: int
exec_id:
  description: The exec's ID.
  returned: success, when detached
  type: str
engine_attempts:
  description: How many execs were asked; more than 1 when the engine did not start the command at first.
  returned: always
  type: int
  sample: 1
"""
