#!/usr/bin/env bash
# Print why an Ansible/molecule log failed, so that the end of a long run (what CI shows) says what failed,
# not only that something did: each failed task (its name and what it printed), the tasks an idempotence
# run changed, and molecule's own errors. When none of these is in the log, its last lines.
#   scripts/failed-tasks.sh LOG
set -euo pipefail
sed 's/\x1b\[[0-9;]*m//g' "$1" | awk '
  { tail[NR % 40] = $0 }
  /^TASK \[/ { task = $0; next }
  /^(fatal|failed): \[/ { printing = 60; print "---- " task; shown++ }
  /Idempotence test failed/ { printing = 40; print "---- idempotence"; shown++; print; printing--; next }
  /^(CRITICAL|ERROR) / || /ERROR.*(Ansible return code|Failed to|Error)/ { print "---- molecule: " substr($0, 1, 2000); shown++ }
  printing > 0 { print substr($0, 1, 2000); printing--; if ($0 == "") printing = 0 }
  END {
    if (!shown) {
      print "(no failed task in the log; its last lines:)"
      for (i = NR - 39; i <= NR; i++) if (i > 0) print tail[i % 40]
    }
  }'
