#!/bin/bash
# Start redis-server or redis-sentinel from the configuration the redis_sentinel
# role rendered (/etc/psscript/<kind>.base.conf, owned by Ansible) merged with
# the state Redis and Sentinel wrote into their own file (replication, learned
# replicas and sentinels, epochs), which lives in the writable directory
# /etc/psscript/state. Ansible never overwrites what Sentinel learned.
set -euo pipefail
kind="${1:-server}"
conf_dir=/etc/psscript
state_dir="$conf_dir/state"
case "$kind" in
  server)   base="$conf_dir/redis.base.conf";    state="$state_dir/redis.conf";    bin=redis-server ;;
  sentinel) base="$conf_dir/sentinel.base.conf"; state="$state_dir/sentinel.conf"; bin=redis-sentinel ;;
  *) echo "psscript-redis: unknown kind '$kind' (server|sentinel)" >&2; exit 2 ;;
esac
psscript-redis-conf "$kind" "$base" "$state"
exec "$bin" "$state"
