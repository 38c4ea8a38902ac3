#!/bin/bash
# Initialise the cluster on first start (data checksums, SCRAM), then run postgres
# with the configuration the postgres role rendered into /etc/psscript.
set -euo pipefail
conf_dir=/etc/psscript
pwfile="$conf_dir/secrets/postgres_password"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ ! -r "$pwfile" ]; then
    echo "psscript-postgres: $pwfile is missing; the postgres role provides it" >&2
    exit 1
  fi
  mkdir -p "$PGDATA"
  chmod 0700 "$PGDATA"
  initdb --pgdata="$PGDATA" --username=postgres --pwfile="$pwfile" \
         --data-checksums --encoding=UTF8 --locale=C.UTF-8 \
         --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  echo "psscript-postgres: initialised $PGDATA with data checksums"
fi

server_args=(-D "$PGDATA"
  -c config_file="$conf_dir/postgresql.conf"
  -c hba_file="$conf_dir/pg_hba.conf"
  -c ident_file="$PGDATA/pg_ident.conf")

# archive_timeout from the first minute of every start (Ansible's, or the engine's restart policy):
# PostgreSQL's checkpointer starts while the startup process still runs, computes its first sleep
# then (RecoveryInProgress() is true, so archive_timeout is left out) and sleeps a whole
# checkpoint_timeout. Nothing wakes it when a clean start leaves recovery, so until then a
# committed write waits checkpoint_timeout (5 min), not archive_timeout, to be archived. A reload
# wakes it (SIGHUP sets its latch) and it recomputes the sleep. This helper sends that one SIGHUP
# as soon as the server accepts connections and is out of recovery; a hot standby needs none.
# After the exec below it is the postmaster's child: it always exits 0, because the postmaster
# treats any other exit status of a child as a crash.
port="$(postgres "${server_args[@]}" -C port 2>/dev/null || echo 5432)"
postmaster=$$
(
  set +e
  trap 'exit 0' TERM INT HUP
  while kill -0 "$postmaster" 2>/dev/null; do
    if pg_isready -q -h /var/run/postgresql -p "$port"; then
      state="$(pg_controldata "$PGDATA" 2>/dev/null | sed -n 's/^Database cluster state: *//p')"
      if [ "$state" = "in production" ]; then
        kill -HUP "$postmaster" && echo "psscript-postgres: out of recovery, reloaded once so archive_timeout applies now" >&2
        break
      elif [ "$state" = "in archive recovery" ]; then
        break
      fi
    fi
    sleep 0.5
  done
  exit 0
) </dev/null &

exec postgres "${server_args[@]}"
