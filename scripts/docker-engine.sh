#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine.
# Idempotent and quiet when the engine already runs: installs the distribution's
# engine package when it is missing and starts dockerd in the background when
# systemd is not PID 1 (containers, CI runners).
set -euo pipefail

log() { printf 'docker-engine: %s\n' "$*" >&2; }

if docker info >/dev/null 2>&1; then
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  log "no Docker engine installed; installing the distribution package docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
fi

if [ "$(ps -o comm= -p 1 2>/dev/null)" = "systemd" ]; then
  log "starting docker.service through systemd"
  systemctl start docker
else
  if ! pgrep -x dockerd >/dev/null 2>&1; then
    log "systemd is not PID 1; starting dockerd in the background (log: /var/log/dockerd.log)"
    # A stale pid file from an engine that died with the machine blocks a new start.
    rm -f /var/run/docker.pid
    nohup dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
  fi
fi

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "engine answers"
    exit 0
  fi
  sleep 1
done
log "the Docker engine did not answer within 60 s; see /var/log/dockerd.log"
exit 1
