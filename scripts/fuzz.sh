#!/usr/bin/env bash
# `make fuzz`: builds the fuzz targets (cargo-fuzz, installed from crates.io
# if missing) and runs each for FUZZ_SECONDS (default 600), all at once.
# Seeds: a small packed file, its update.toml and a tar stream, made here.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-600}
if ! command -v cargo-fuzz >/dev/null; then
  echo "make fuzz: installing cargo-fuzz from crates.io (cargo install cargo-fuzz), which runs the fuzz targets"
  cargo install cargo-fuzz --locked
fi
# cargo-fuzz needs the sanitizer flags of a nightly compiler; the stable one
# accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
cargo build --locked -p payload-tools
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
mkdir -p "$seeds/app/bin" fuzz/corpus/packed_file fuzz/corpus/update_toml fuzz/corpus/extract
# A stub is anything that carries the stub marker (docs/format.md).
printf 'stub ONEFILE-STUB\0\1\0' >"$seeds/stub"
printf '#!/bin/sh\n' >"$seeds/app/bin/a"
ln -s a "$seeds/app/bin/l"
echo hi >"$seeds/app/t.txt"
target/debug/payload-tools pack "$seeds/app" --entry bin/a --name f --stub "$seeds/stub" \
  --update-url-spec 'http://127.0.0.1:1/{VERSION}/u.toml' \
  --auto-update-toml-file fuzz/corpus/update_toml/seed -o fuzz/corpus/packed_file/seed 2>/dev/null
tar -C "$seeds/app" -cf fuzz/corpus/extract/seed .
cd fuzz
cargo fuzz build -O
pids=()
for target in packed_file update_toml extract; do
  cargo fuzz run -O "$target" "corpus/$target" -- -max_total_time="$seconds" -print_final_stats=1 \
    >"target/fuzz-$target.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for target in packed_file update_toml extract; do
  echo "== $target: $(grep -E 'stat::number_of_executed_units' "target/fuzz-$target.log" | awk '{print $2}') executions"
  grep -E '^(==[0-9]+==ERROR|SUMMARY|thread .* panicked)' "target/fuzz-$target.log" || true
done
exit $status
