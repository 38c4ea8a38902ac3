#!/usr/bin/env bash
# Print the failed tasks of an Ansible/molecule log (the task's name and what it printed), so that
# the end of a long run (what CI shows) says what failed, not only that something did.
#   scripts/failed-tasks.sh LOG
set -euo pipefail
sed 's/\x1b\[[0-9;]*m//g' "$1" | awk '
  /^TASK \[/ { task = $0; next }
  /^(fatal|failed): \[/ { printing = 60; print "---- " task; shown++ }
  printing > 0 { print substr($0, 1, 2000); printing--; if ($0 == "") printing = 0 }
  END { if (!shown) print "(no failed task in the log)" }'
