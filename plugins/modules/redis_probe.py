#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: redis_probe
short_description: Ask a Redis node or a Sentinel whether it answers, read INFO or its key counts
version_added: 0.3.0
description:
  - What the operator playbooks (health, drill) ask one Redis node or Sentinel, through redis-py on the host
    that runs the task.
  - The password is a module argument (never logged), so no C(redis-cli) is needed and no password appears
    on any command line or in any process environment.
  - O(action=ping) sends C(PING). O(action=info) returns one C(INFO) section as a dictionary.
    O(action=keyspace) returns the number of keys per database, and fails with a clear message while the
    node is still loading its dataset (retry with C(until)).
author:
  - psscript.infra developers (!UNKNOWN)
extends_documentation_fragment:
  - psscript.infra.sentinel.redis_node
  - psscript.infra.sentinel.tls
  - psscript.infra.attributes
attributes:
  check_mode:
    support: full
    details:
      - Every action only reads.
  diff_mode:
    support: none
options:
  action:
    description:
      - What to ask; see the description.
    type: str
    choices: [ping, info, keyspace]
    default: ping
  section:
    description:
      - The C(INFO) section for O(action=info), for example V(replication) or V(persistence).
    type: str
    default: default
'''

EXAMPLES = r'''
- name: Does the Sentinel answer?
  psscript.infra.redis_probe:
    login_host: 172.25.0.41
    login_port: 26379
    login_password: "{{ sentinel_password }}"

- name: Key counts of a restored scratch server, once it has loaded its snapshot
  psscript.infra.redis_probe:
    action: keyspace
    login_host: 172.25.0.241
  register: keys
  until: keys is succeeded
  retries: 60
  delay: 2
'''

RETURN = r'''
reply:
  description: The node's answer to C(PING).
  returned: action is ping
  type: str
  sample: PONG
info:
  description:
    - The C(INFO) section O(section), as redis-py parses it.
    - Keys are the field names the node reports in that section (for example C(role) and C(connected_slaves) in
      C(replication)), so they depend on the section and on the Redis version.
    - Values are integers or floats when the field is a number, otherwise text; a field made of C(name=value)
      pairs is itself a mapping, for example C(slave0) of C(replication) (C(ip), C(port), C(state), C(offset),
      C(lag)) or C(db0) of C(keyspace) (C(keys), C(expires), C(avg_ttl)).
  returned: action is info
  type: dict
  sample:
    role: master
    connected_slaves: 1
    slave0: {ip: 172.25.0.42, port: 6379, state: online, offset: 2381, lag: 0}
    master_repl_offset: 2381
keys:
  description:
    - Number of keys per database.
    - Keys are the database numbers as strings (V("0") for C(db0)); values are the C(keys) count of that database
      in C(INFO keyspace), an integer. Databases without keys are absent, so an empty node gives an empty mapping.
  returned: action is keyspace
  type: dict
  sample: {"0": 1000, "3": 50}
elapsed_ms:
  description: Milliseconds from connecting to the answer.
  returned: success
  type: int
  sample: 1
reason:
  description: Why it failed, one of C(address), C(unreachable), C(timeout), C(auth), C(loading), C(denied), C(response).
  returned: failure
  type: str
  sample: loading
'''

import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.psscript.infra.plugins.module_utils import _redis

ACTIONS = {
    'ping': lambda node, p: dict(reply=_redis.ping(node)),
    'info': lambda node, p: dict(info=_redis.info(node, p['section'])),
    'keyspace': lambda node, p: dict(keys=_redis.keyspace(node)),
}


def main():
    argument_spec = _redis.redis_connection_spec()
    argument_spec.update(
        action=dict(type='str', choices=sorted(ACTIONS), default='ping'),
        section=dict(type='str', default='default'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not _redis.HAS_REDIS:
        module.fail_json(msg=missing_required_lib('redis'), exception=_redis.REDIS_IMPORT_ERROR)
    p = module.params
    node = _redis.open_node(p['login_host'], p['login_port'], p['login_password'], p['socket_timeout'], p['login_user'],
                            tls=_redis.tls_from_params(p))
    started = time.monotonic()
    try:
        result = ACTIONS[p['action']](node, p)
    except _redis.RedisOpError as err:
        module.fail_json(msg=err.msg, reason=err.reason)
    finally:
        node.close()
    module.exit_json(changed=False, elapsed_ms=int((time.monotonic() - started) * 1000), **result)


if __name__ == '__main__':
    main()
