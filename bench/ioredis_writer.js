#!/usr/bin/env node
// The application's Redis client (ioredis 5) writing through Sentinel during a failover or a
// switchover, logged like molecule/failover/files/sentinel_writer.py so bench/failover computes
// gaps and losses the same way (and `sentinel_writer.py check` reads the log back).
//
//   node bench/ioredis_writer.js --sentinels H:P,H:P,H:P --log FILE --stop-file FILE
//        [--options default|recommended] [--start N] [--run NAME] [--seconds 3600]
//        [--interval-ms 5] [--wait-ms 500] [--master-name mymaster]
//
// Writes k:<n> = <run>:<n> (n = start, start+1, ...): SET, then WAIT 1 <wait-ms> on the same
// connection. Every key whose WAIT answered >= 1 is appended to FILE as
// "<key> <unix time> <master host:port>". The loop does what an application does: on an error
// it counts it and writes the next key; reconnecting is ioredis's business. Stops when the stop
// file exists or after --seconds and prints a JSON summary (same keys as sentinel_writer.py).
//
// --options default:      only what is needed to connect (sentinels, name, the two passwords).
// --options recommended:  the settings docs/MIGRATION.md recommends (RECOMMENDED below).
//
// Passwords come from the environment: REDIS_SENTINEL_PASSWORD, and REDIS_USERNAME with REDIS_PASSWORD.
// With REDIS_TLS=true (app.env), the Sentinels and the data nodes are reached over TLS, their certificates
// checked against REDIS_TLS_CA (tlsOptions below, as docs/MIGRATION.md shows).
"use strict";

const fs = require("fs");
const Redis = require("ioredis");

// Keep in step with docs/MIGRATION.md ("Client settings for failovers and switchovers").
const RECOMMENDED = {
  // A killed master's address answers nothing: give up connecting after 0.5 s, not 10 s.
  connectTimeout: 500,
  // A demoted master answers READONLY: reconnect (through the Sentinels) and resend the command.
  reconnectOnError: (err) => (err.message.startsWith("READONLY") ? 2 : false),
  // A master cut off by a partition answers nothing and sends no RST: without this, a command in
  // flight waits forever (molecule/multihost, partition). Destroy the connection when a reply takes
  // longer than 5 s (above WAIT's 0.5 s and a switchover's CLIENT PAUSE), then reconnect through the
  // Sentinels.
  socketTimeout: 5000,
  // Not failoverDetector: true. With it, a +switch-master that arrives while ioredis is still
  // reconnecting ends the client for good ("Connection is closed." on every command): seen in 1
  // of 6 kills in bench/failover (ioredis 5.11.1).
};

function parseArgs(argv) {
  const args = {
    options: "default", start: 0, run: "w", seconds: 3600, intervalMs: 5, waitMs: 500, masterName: "mymaster",
  };
  const names = {
    "--sentinels": "sentinels", "--log": "log", "--stop-file": "stopFile", "--options": "options",
    "--start": "start", "--run": "run", "--seconds": "seconds", "--interval-ms": "intervalMs",
    "--wait-ms": "waitMs", "--master-name": "masterName",
  };
  for (let i = 2; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (!key || i + 1 >= argv.length) {
      throw new Error("unknown or incomplete argument " + argv[i]);
    }
    args[key] = typeof args[key] === "number" ? Number(argv[i + 1]) : argv[i + 1];
  }
  for (const key of ["sentinels", "log", "stopFile"]) {
    if (!args[key]) {
      throw new Error("missing --" + key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()));
    }
  }
  if (args.options !== "default" && args.options !== "recommended") {
    throw new Error("--options is default or recommended, not " + args.options);
  }
  return args;
}

// A short, stable name for an error: the class and the server's error code (as sentinel_writer.py).
function errorKind(err) {
  const words = String(err.message || "").split(/\s+/);
  const code = words[0] && /^[A-Z]+$/.test(words[0]) ? words[0] : "";
  return ((err.name || "Error") + " " + code).trim();
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ioredis's TLS options from app.env (REDIS_TLS, REDIS_TLS_CA): the same CA for the Sentinels (sentinelTLS) and
// the master they name (tls); Node checks each certificate's chain and that it names the address connected to.
function tlsOptions(env) {
  if ((env.REDIS_TLS || "false").toLowerCase() !== "true") {
    return {};
  }
  const tls = { ca: fs.readFileSync(env.REDIS_TLS_CA) };
  return { tls, sentinelTLS: tls, enableTLSForSentinelMode: true };
}

async function main() {
  const args = parseArgs(process.argv);
  const sentinels = args.sentinels.split(",").map((item) => {
    const at = item.lastIndexOf(":");
    return { host: item.slice(0, at), port: Number(item.slice(at + 1)) };
  });
  const client = new Redis(Object.assign({
    sentinels,
    name: args.masterName,
    sentinelPassword: process.env.REDIS_SENTINEL_PASSWORD || undefined,
    username: process.env.REDIS_USERNAME || undefined,
    password: process.env.REDIS_PASSWORD || undefined,
  }, tlsOptions(process.env), args.options === "recommended" ? RECOMMENDED : {}));
  // ioredis emits connection errors as events; without a listener it prints each one.
  const events = {};
  client.on("error", (err) => { events[errorKind(err)] = (events[errorKind(err)] || 0) + 1; });

  const log = fs.openSync(args.log, "a");
  const deadline = Date.now() + args.seconds * 1000;
  const counts = { attempts: 0, acknowledged: 0, not_acknowledged: 0, wait_on_another_connection: 0 };
  const errors = {};
  const samples = {};
  const masters = new Map();
  let stoppedBy = "deadline";
  let n = args.start;
  let finished = false;
  const finish = (how) => {
    if (finished) {
      return;
    }
    finished = true;
    fs.closeSync(log);
    client.disconnect();
    const summary = Object.assign({
      run: args.run, first_key: args.start, next_key: n, stopped_by: how, options: args.options,
      errors, error_samples: samples, connection_events: events, masters: Array.from(masters.values()),
    }, counts);
    process.stdout.write(JSON.stringify(summary) + "\n");
    process.exit(0);
  };
  // Without a command timeout (the default), a command sent to a dead master can wait for a long
  // time: stop anyway 10 s after the stop file appeared.
  let stopSeen = null;
  setInterval(() => {
    if (stopSeen === null && fs.existsSync(args.stopFile)) {
      stopSeen = Date.now();
    } else if (stopSeen !== null && Date.now() - stopSeen > 10000) {
      finish("stop-file (a command was still waiting)");
    }
  }, 500).unref();
  while (Date.now() < deadline) {
    if (fs.existsSync(args.stopFile)) {
      stoppedBy = "stop-file";
      break;
    }
    const key = "k:" + n;
    const value = args.run + ":" + n;
    n += 1;
    counts.attempts += 1;
    try {
      await client.set(key, value);
      // ioredis resends unanswered commands after a reconnect: a WAIT answered on another
      // connection (another master) than the SET says nothing about the SET.
      const stream = client.stream;
      const replicas = await client.wait(1, args.waitMs);
      if (client.stream !== stream) {
        counts.wait_on_another_connection += 1;
      } else if (Number(replicas) < 1) {
        counts.not_acknowledged += 1;
      } else {
        const now = Date.now() / 1000;
        const where = stream.remoteAddress + ":" + stream.remotePort;
        fs.writeSync(log, key + " " + now.toFixed(6) + " " + where + "\n");
        counts.acknowledged += 1;
        const seen = masters.get(where) || { address: where, acknowledged: 0, first: now };
        seen.acknowledged += 1;
        seen.last = now;
        masters.set(where, seen);
      }
    } catch (err) {
      const kind = errorKind(err);
      errors[kind] = (errors[kind] || 0) + 1;
      if (!(kind in samples)) {
        samples[kind] = String(err.message).split(/\s+/).join(" ").slice(0, 160);
      }
    }
    await sleep(args.intervalMs);
  }
  finish(stoppedBy);
}

main().catch((err) => {
  process.stderr.write("ioredis_writer: " + err.message + "\n");
  process.exit(2);
});
