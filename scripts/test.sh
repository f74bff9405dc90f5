#!/usr/bin/env bash
# The whole test suite, closed by one summary line: "N passed, N failed,
# N skipped". A test that cannot run on this machine (no root for a mount
# or a second user, a missing tool) records itself through
# tests/it/support.rs `skip` in $ONEFILE_SKIP_LOG and is counted as
# skipped, not passed; so are ignored tests (the soak: `make soak`).
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
skips=$(mktemp)
trap 'rm -f "$log" "$skips"' EXIT
export ONEFILE_SKIP_LOG=$skips

${CARGO:-cargo} test --locked --workspace "$@" 2>&1 | tee "$log"
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
echo "summary: $((passed - skipped)) passed, $failed failed, $((skipped + ignored)) skipped"
exit "$status"
