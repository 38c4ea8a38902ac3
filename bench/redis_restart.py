#!/usr/bin/env python3
"""A restarted old Redis master, as a client sees it (issue 9 item 4).

On the stack `make up` deployed (inventories/local: stack psscript, ports published on 127.0.0.1):
stop the master's container, wait until the Sentinels name another master, start the old one again
and read INFO replication from it every 20-50 ms from the moment `docker start` returns, until it is
a replica. Prints each role it answered with and when. Asserts nothing about timing.

    .venv/bin/python bench/redis_restart.py
"""
import os
import subprocess
import time

import redis
import yaml

SECRETS = os.path.expanduser('~/.config/psscript/psscript/secrets.yml')
# Address the Sentinels report -> (container, port published on 127.0.0.1), as inventories/local deploys them.
NODES = {'172.25.0.31:6379': ('psscript-redis-1', 6379), '172.25.0.32:6380': ('psscript-redis-2', 6380),
         '172.25.0.33:6381': ('psscript-redis-3', 6381)}


def main():
    with open(SECRETS, encoding='utf-8') as handle:
        secrets = yaml.safe_load(handle)
    sentinel = redis.Redis(port=26380, password=secrets['redis_sentinel_password'], decode_responses=True)

    def master():
        return '%s:%s' % tuple(sentinel.execute_command('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'mymaster'))

    old = master()
    container, port = NODES[old]
    subprocess.run(['docker', 'stop', container], check=True, capture_output=True)
    stopped = time.time()
    while master() == old:
        time.sleep(0.5)
    print('master %s stopped; the Sentinels named %s after %.1f s' % (old, master(), time.time() - stopped))
    time.sleep(3)
    client = redis.Redis(port=port, username='app', password=secrets['redis_user_app_password'], decode_responses=True,
                         socket_connect_timeout=0.2, socket_timeout=0.5)
    subprocess.run(['docker', 'start', container], check=True, capture_output=True)
    started, seen = time.time(), []
    while time.time() - started < 30:
        try:
            info = client.info('replication')
        except redis.RedisError:
            time.sleep(0.02)
            continue
        state = (info['role'], '%s:%s' % (info.get('master_host'), info.get('master_port')) if info['role'] == 'slave' else '')
        if not seen or seen[-1][1] != state:
            seen.append((round(time.time() - started, 2), state))
        if info['role'] == 'slave':
            break
        time.sleep(0.05)
    print('after docker start (s, (role, master)): %s' % seen)


if __name__ == '__main__':
    main()
