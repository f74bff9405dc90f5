# Sourced by scripts/test.sh and scripts/test-windows.sh.
#
#   counted LABEL COMMAND...
#
# Runs COMMAND (a `cargo test`), shows its output, and closes with one line:
# "LABEL: N passed, N failed, N skipped". A test that cannot run on this
# machine (no root for a mount or a second user, a missing tool) records
# itself through the tests' `skip` helper in $ONEFILE_SKIP_LOG and is counted
# as skipped, not passed; so are ignored tests (the soak: `make soak`).
# Returns COMMAND's status.
counted() {
  local label=$1 log skips status passed failed ignored skipped
  shift
  log=$(mktemp)
  skips=$(mktemp)
  export ONEFILE_SKIP_LOG=$skips
  "$@" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}

  sum() { grep -E '^test result:' "$log" | grep -oE "[0-9]+ $1" | awk '{n += $1} END {print n + 0}'; }
  passed=$(sum passed)
  failed=$(sum failed)
  ignored=$(sum ignored)
  skipped=$(sort -u "$skips" | grep -c . || true)

  echo
  if [ "$skipped" -gt 0 ]; then
    echo "Skipped here (they need what this machine does not have):"
    sort -u "$skips" | sed 's/^/  /'
  fi
  if [ "$ignored" -gt 0 ]; then
    echo "Ignored: $ignored (long runs: make soak)"
  fi
  if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1 # the build or a test binary failed before any test could report
  fi
  echo "$label: $((passed - skipped)) passed, $failed failed, $((skipped + ignored)) skipped"
  rm -f "$log" "$skips"
  return "$status"
}
