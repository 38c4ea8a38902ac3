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

exec postgres -D "$PGDATA" \
  -c config_file="$conf_dir/postgresql.conf" \
  -c hba_file="$conf_dir/pg_hba.conf" \
  -c ident_file="$PGDATA/pg_ident.conf"
