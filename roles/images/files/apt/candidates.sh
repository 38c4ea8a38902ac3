#!/bin/sh
# Run as root in a container of the base image, after suites.sh on the same standard input:
#   docker run -e PSSCRIPT_APT_PINS="SUITE CHECK_VALID_UNTIL [PACKAGE=SUITE ...]" ... sh -s SUITE PACKAGE...
# (PSSCRIPT_APT_PINS: pin_suites's arguments, the same the Dockerfiles get as APT_PINS).
# Checks that the apt sources include SUITE-security (every image gets the security updates), then
# prints PACKAGE=VERSION, the version apt would install, for each package: the images install exactly
# these versions and carry them as the label io.psscript.packages.
set -eu
suite="$1"
shift
if ! grep -rqsE "(^|[[:space:]])${suite}-security([[:space:]]|\$)" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "the base image's apt sources do not include ${suite}-security: its images would miss the security updates" >&2
  exit 3
fi
# shellcheck disable=SC2086 # one word per argument
pin_suites ${PSSCRIPT_APT_PINS}
apt-get update -qq >/dev/null
apt-cache policy "$@" | awk -v wanted="$#" '
  /^[^ ]/ { pkg = $1; sub(/:$/, "", pkg) }
  /^  Candidate:/ {
    if ($2 == "(none)") { print "no installable version of " pkg > "/dev/stderr"; bad = 1 }
    else { print pkg "=" $2; found++ }
  }
  END {
    if (found + bad < wanted) { print "apt knows only " found + 0 " of the " wanted " packages asked for" > "/dev/stderr"; bad = 1 }
    exit bad
  }'
