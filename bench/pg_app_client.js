#!/usr/bin/env node
// The application's PostgreSQL client (node-postgres 8) through PgBouncer with TLS verify-full, configured
// from app.env (docs/MIGRATION.md shows this file). Prints one JSON line: whether the query ran, and the TLS
// of PgBouncer's own connection to PostgreSQL (pg_stat_ssl of the server connection it lent us).
//
//   set -a; . ~/.config/psscript/psscript/app.env; set +a; node bench/pg_app_client.js
"use strict";

const fs = require("fs");
const { Client } = require("pg");

async function main() {
  const client = new Client({
    host: process.env.DB_HOST,
    port: Number(process.env.DB_PORT),
    database: process.env.DB_NAME,
    user: process.env.DB_USER,
    password: process.env.DB_PASSWORD,
    // DB_SSLMODE=verify-full: PgBouncer's certificate must chain to the stack CA (DB_SSLROOTCERT) and name
    // DB_HOST (node's default checkServerIdentity); a plain-text connection is refused by PgBouncer anyway.
    ssl: process.env.DB_SSLMODE === "verify-full"
      ? { ca: fs.readFileSync(process.env.DB_SSLROOTCERT, "utf8"), rejectUnauthorized: true }
      : undefined,
    connectionTimeoutMillis: 5000,
  });
  await client.connect();
  try {
    const { rows } = await client.query("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    console.log(JSON.stringify({ ok: true, server_ssl: rows[0].ssl, server_tls_version: rows[0].version }));
  } finally {
    await client.end();
  }
}

main().catch((err) => {
  console.log(JSON.stringify({ ok: false, error: err.message }));
  process.exit(1);
});
