#!/usr/bin/env bash
# Print why an Ansible/molecule log failed, so that the end of a long run (what CI shows) says what failed,
# not only that something did: each failed task (its name and what it printed; not the failures a task
# ignores), the tasks an idempotence run changed, and molecule's own errors. When none of these is in the
# log, its last lines.
#   scripts/failed-tasks.sh LOG
set -euo pipefail
sed 's/\x1b\[[0-9;]*m//g' "$1" | awk '
  function flush() { if (block != "") { printf "%s", block; shown++ } block = ""; collecting = 0 }
  { tail[NR % 40] = $0 }
  /^\.\.\.ignoring$/ { block = ""; collecting = 0; next }
  /^(TASK|PLAY|RUNNING HANDLER) \[/ { flush(); task = $0; next }
  /^(fatal|failed): \[/ { if (!collecting) block = "---- " task "\n"; collecting = 60 }
  /Idempotence test failed/ { flush(); printing = 40; print "---- idempotence"; shown++; print; printing--; next }
  /^(CRITICAL|ERROR) / || /ERROR.*(Ansible return code|Failed to|Error)/ { flush(); print "---- molecule: " substr($0, 1, 2000); shown++; next }
  collecting > 0 { block = block substr($0, 1, 2000) "\n"; collecting-- }
  printing > 0 { print substr($0, 1, 2000); printing--; if ($0 == "") printing = 0 }
  END {
    flush()
    if (!shown) {
      print "(no failed task in the log; its last lines:)"
      for (i = NR - 39; i <= NR; i++) if (i > 0) print tail[i % 40]
    }
  }'
