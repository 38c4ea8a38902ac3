#!/usr/bin/env bash
# Keep the kernel from handing out the tests' fixed host ports as ephemeral ports.
# The integration tests, molecule scenarios and benches publish services on fixed
# 127.0.0.1 ports between 44000 and 49999, inside Linux's default ephemeral range
# (32768-60999): an outgoing connection that happened to get one of them as its
# local port made a later `docker run -p 127.0.0.1:PORT:...` fail with "address
# already in use" (seen in CI on 49390). Reserved ports are never chosen
# automatically; explicit binds, such as Docker's, still get them.
# Idempotent, keeps what else is reserved; a warning, not a failure, where
# /proc/sys cannot be written (not root, read-only).
set -euo pipefail

RANGE="${PSSCRIPT_TEST_PORTS:-44000-49999}"
FILE=/proc/sys/net/ipv4/ip_local_reserved_ports

current="$(cat "$FILE" 2>/dev/null || true)"
case ",$current," in
  *",$RANGE,"*) exit 0 ;;
esac
wanted="${current:+$current,}$RANGE"
if ! { echo "$wanted" > "$FILE"; } 2>/dev/null; then
  printf 'reserve-test-ports: cannot reserve %s in %s (not root?): a test may find its port taken\n' "$RANGE" "$FILE" >&2
fi
