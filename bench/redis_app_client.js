#!/usr/bin/env node
// The application's Redis client (ioredis 5) through the Sentinels with TLS, configured from app.env
// (docs/MIGRATION.md shows this file). Writes a key on the master the Sentinels name, reads it back, and prints
// one JSON line: the master, and the TLS of the connection to it.
//
//   set -a; . ~/.config/psscript/psscript/app.env; set +a; node bench/redis_app_client.js
"use strict";

const fs = require("fs");
const Redis = require("ioredis");

function sentinels(text) {
  return text.split(",").map((item) => {
    const at = item.lastIndexOf(":");
    return { host: item.slice(0, at), port: Number(item.slice(at + 1)) };
  });
}

async function main() {
  const env = process.env;
  // REDIS_TLS=true: the Sentinels and the data nodes serve TLS only. Each certificate must chain to the stack CA
  // (REDIS_TLS_CA) and name the address connected to: the Sentinel's in REDIS_SENTINEL_NODES, and the master's
  // address the Sentinels answer with (node's default checkServerIdentity does the name check).
  const tls = env.REDIS_TLS === "true" ? { ca: fs.readFileSync(env.REDIS_TLS_CA, "utf8") } : undefined;
  const redis = new Redis({
    sentinels: sentinels(env.REDIS_SENTINEL_NODES),
    name: env.REDIS_SENTINEL_MASTER,
    sentinelPassword: env.REDIS_SENTINEL_PASSWORD,
    username: env.REDIS_USERNAME,
    password: env.REDIS_PASSWORD,
    // TLS for both: the Sentinels (sentinelTLS) and the master they name (tls).
    enableTLSForSentinelMode: tls !== undefined,
    sentinelTLS: tls,
    tls,
    connectTimeout: 5000,
    maxRetriesPerRequest: 1,
  });
  try {
    const key = "app-client:" + process.pid;
    await redis.set(key, "written-over-tls", "EX", 60);
    const value = await redis.get(key);
    const stream = redis.stream;
    console.log(JSON.stringify({
      ok: value === "written-over-tls",
      master: stream.remoteAddress + ":" + stream.remotePort,
      encrypted: Boolean(stream.encrypted),
      tls_version: stream.getProtocol ? stream.getProtocol() : null,
      authorized: Boolean(stream.authorized),
    }));
  } finally {
    redis.disconnect();
  }
}

main().catch((err) => {
  console.log(JSON.stringify({ ok: false, error: err.message }));
  process.exit(1);
});
