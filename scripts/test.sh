#!/usr/bin/env bash
# The whole test suite, closed by one summary line: "N passed, N failed,
# N skipped" (see scripts/counted.sh for what counts as skipped).
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/counted.sh
counted summary ${CARGO:-cargo} test --locked --workspace "$@"
