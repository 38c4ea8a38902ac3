#!/bin/sh
# Run as root in a container of one of the stack's images:  sh -s < upgradable.sh
# Prints "PACKAGE INSTALLED AVAILABLE" for each installed package that has a newer version in the
# image's apt sources (security updates included): the image is due for a rebuild when any is printed.
set -eu
apt-get update -qq >/dev/null
# Its own step, so that apt failing (broken dependencies) fails the check instead of reading as "none".
plan="$(apt-get -s -o Debug::NoLocking=1 upgrade)"
printf '%s\n' "$plan" | awk '/^Inst / { gsub(/[][]/, "", $3); gsub(/[()]/, "", $4); print $2, $3, $4 }'
