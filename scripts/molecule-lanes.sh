#!/usr/bin/env bash
# Run molecule scenarios in two lanes side by side: the first half of the list in one lane, the rest in the
# other, each lane's scenarios in turn. The scenarios share no container, network, subnet or host port (each
# has its own stack name), and they wait mostly on Sentinel's timers, the engine and the disk, not the cores.
# The first lane prints as it goes; the second lane's output, kept in .cache/logs/molecule-SCENARIO.log like
# every scenario's, is printed when both lanes have ended. A failed scenario's failed tasks come last, where
# a CI log's tail shows them. MOLECULE_LANES=1 runs every scenario in one lane.
#   scripts/molecule-lanes.sh MOLECULE SCENARIO...
set -uo pipefail
molecule=$1
shift
scenarios=("$@")
logs=.cache/logs
mkdir -p "$logs"

# One lane: its scenarios in turn, stopping at the first that fails. $1: "-" (print as it goes) or the file
# the lane's own lines go to.
lane() {
  local out=$1 s t rc
  shift
  say() { if [ "$out" = - ]; then echo "$*"; else echo "$*" >> "$out"; fi; }
  for s in "$@"; do
    t=$(date +%s)
    # Molecule reads (and writes) the state file of every scenario its glob finds, and of the "default"
    # scenario always: two lanes then race on one state.yml (a half-written one raised KeyError
    # 'molecule_yml_date_modified' in CI). A glob naming only this scenario keeps each run to its own.
    export MOLECULE_GLOB="molecule/$s/molecule.yml"
    say "=== molecule scenario $s (started at $(date -u +%H:%M:%S))"
    if [ "$out" = - ]; then
      "$molecule" test -s "$s" 2>&1 | tee "$logs/molecule-$s.log"
      rc=${PIPESTATUS[0]}
    else
      "$molecule" test -s "$s" > "$logs/molecule-$s.log" 2>&1
      rc=$?
    fi
    if [ "$rc" -ne 0 ]; then
      say "=== molecule scenario $s FAILED after $(( $(date +%s) - t ))s"
      echo "$s" >> "$logs/molecule-failed"
      return 1
    fi
    say "=== molecule scenario $s took $(( $(date +%s) - t ))s"
  done
}

rm -f "$logs/molecule-failed" "$logs/molecule-lane-b.out"
if [ "${MOLECULE_LANES:-2}" = 1 ] || [ "${#scenarios[@]}" -lt 2 ]; then
  lane - "${scenarios[@]}"
  rc=$?
else
  half=$(( (${#scenarios[@]} + 1) / 2 ))
  lane_a=("${scenarios[@]:0:half}")
  lane_b=("${scenarios[@]:half}")
  echo "=== molecule: lane A (${lane_a[*]}) beside lane B (${lane_b[*]})"
  lane "$logs/molecule-lane-b.out" "${lane_b[@]}" &
  b=$!
  lane - "${lane_a[@]}"
  rc_a=$?
  wait "$b"
  rc_b=$?
  echo "=== molecule lane B (${lane_b[*]}), run beside lane A above:"
  for s in "${lane_b[@]}"; do
    [ -f "$logs/molecule-$s.log" ] && cat "$logs/molecule-$s.log"
  done
  cat "$logs/molecule-lane-b.out"
  rc=$(( rc_a || rc_b ))
fi

if [ -f "$logs/molecule-failed" ]; then
  while read -r s; do
    echo "=== molecule scenario $s FAILED; its failed tasks:"
    scripts/failed-tasks.sh "$logs/molecule-$s.log"
  done < "$logs/molecule-failed"
fi
exit "$rc"
