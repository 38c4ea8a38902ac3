# -*- coding: utf-8 -*-
# Copyright: (c) 2025, psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):

    # Connection to a Redis Sentinel set (psscript.infra.sentinel);
    # spec: module_utils/_redis.py sentinel_connection_spec().
    DOCUMENTATION = r'''
options:
  sentinels:
    description:
      - Every Sentinel that monitors the master, as C(host:port) (IPv6 as C([::1]:26379)).
      - List all of them, not just one; majorities and agreement are computed over this list, so
        a Sentinel left out cannot be reported as unreachable or outvoted.
    type: list
    elements: str
    required: true
  master_name:
    description:
      - Name under which the Sentinels monitor the master (C(sentinel monitor <name> ...)).
    type: str
    default: mymaster
  sentinel_password:
    description:
      - Password of the Sentinels themselves (their C(requirepass)), the same on every Sentinel.
      - If not set, the environment variable E(REDIS_SENTINEL_PASSWORD) is used.
      - Leave unset when the Sentinels have no password.
    type: str
  redis_user:
    description:
      - ACL user the module logs in to the Redis data nodes as (C(AUTH <user> <password>)).
      - The module needs the commands its documentation lists for the action it runs, and nothing else;
        a command the user lacks fails with the command's name (C(NOPERM)).
      - If not set, the environment variable E(REDIS_USERNAME) is used; unset, the C(default) user
        (the nodes' C(requirepass)).
    type: str
  redis_password:
    description:
      - Password of O(redis_user) on the Redis data nodes (without O(redis_user), their C(requirepass)).
        Used to read C(INFO replication) from the master and the replicas and to pause writes.
      - If not set, the environment variable E(REDIS_PASSWORD) is used.
    type: str
  socket_timeout:
    description:
      - Seconds to wait for a connection and for each reply from any Sentinel or Redis node.
      - There are no retries, so a dead node costs at most this long per attempt.
    type: float
    default: 2.0
requirements:
  - redis (the Python library, redis-py) >= 4.0 on the host that runs the module
notes:
  - One TLS setting covers the Sentinels and the data nodes they name; Sentinel's C(tls-replication) reaches
    both over TLS, so a set serves TLS everywhere or nowhere.
'''

    # Connection to one Redis node (psscript.infra.sentinel.redis_node);
    # spec: module_utils/_redis.py redis_connection_spec().
    REDIS_NODE = r'''
options:
  login_host:
    description:
      - Host name or IP address of the Redis node.
    type: str
    default: 127.0.0.1
  login_port:
    description:
      - TCP port of the Redis node.
    type: int
    default: 6379
  login_user:
    description:
      - ACL user to log in as (C(AUTH <user> <password>)); unset, the C(default) user.
      - Every action needs C(INFO) or C(PING) only.
    type: str
  login_password:
    description:
      - Password of O(login_user) (without O(login_user), the node's C(requirepass)).
      - If not set, the environment variable E(REDISCLI_AUTH) is used, as by C(redis-cli).
    type: str
  socket_timeout:
    description:
      - Seconds to wait for the connection and for each reply; there are no retries.
    type: float
    default: 2.0
requirements:
  - redis (the Python library, redis-py) >= 4.0 on the host that runs the module
'''

    # TLS towards the Sentinels and the data nodes (psscript.infra.sentinel.tls), for both connections above;
    # spec: module_utils/_redis.py tls_spec().
    TLS = r'''
options:
  tls:
    description:
      - Connect over TLS (the Sentinels and the data nodes serve C(tls-port) with C(port 0)).
      - Without O(ca_cert) the connection is encrypted but the certificate is not checked (like libpq's
        C(require)); with it, the certificate's chain and its names are (C(verify-full)).
    type: bool
    default: false
  ca_cert:
    description:
      - The CA certificate (PEM) that signed the Sentinels' and the data nodes' certificates. Setting it implies
        O(tls=true); the certificate must name the address connected to (an IP address or a host name).
    type: path
'''
