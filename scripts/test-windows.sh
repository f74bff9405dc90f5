#!/usr/bin/env bash
# The end-to-end tests of the Windows executables, under Wine, closed by
# the same summary line as scripts/test.sh: "N passed, N failed, N skipped".
#
# 1. Installs the toolchain and the Wine prefix if needed
#    (scripts/windows-toolchain.sh).
# 2. Builds bootstrap.exe, payload-tools.exe, the Windows test binary
#    (tests/windows/, with the probe app) and the unit and integration tests
#    of bootstrap and payload-tools into target/windows, debug, as
#    `make test` does for Linux.
# 3. Packs the probe on Linux, with the Linux payload-tools and
#    --stub bootstrap.exe, for the test of cross-packing.
# 4. Runs all those test binaries under wine64 (cargo's runner for the
#    Windows target): the library's own tests (format, namespace, members,
#    text, manifest, updater state...) first, then the end-to-end ones.
#    Arguments go to every test harness (a test name filters).
set -uo pipefail
cd "$(dirname "$0")/.."

triple=x86_64-pc-windows-gnu
windows_env=$(bash scripts/windows-toolchain.sh) || exit 1
eval "$windows_env"
flags=(--locked --target "$triple" -Zbuild-std=std,panic_abort --target-dir target/windows)
wcargo() { "$ONEFILE_WINDOWS_CARGO" "$1" "${flags[@]}" "${@:2}"; }

set -e
# Every test of the workspace but the documentation examples: on Windows
# the Unix-only ones are compiled out (tests/it as a whole builds empty).
tests=(-p bootstrap -p payload-tools -p onefile-tests --lib --bins --tests)
wcargo build -p bootstrap -p payload-tools
wcargo test --no-run "${tests[@]}"
# The Linux payload-tools, with the rustup toolchain and its own target dir.
${CARGO:-cargo} build --locked -p payload-tools
set +e

bin=target/windows/$triple/debug
cross=target/windows/cross
rm -rf "$cross"
mkdir -p "$cross/app/bin"
cp "$bin/probe.exe" "$cross/app/bin/probe.exe"
echo 1.0 >"$cross/app/bin/version.txt"
target/debug/payload-tools pack "$cross/app" --entry bin/probe.exe --name probeapp --version 1.0 \
  --stub "$bin/bootstrap.exe" -o "$cross/probeapp.exe" >/dev/null || exit 1
export ONEFILE_CROSS_PACKED=$PWD/$cross/probeapp.exe

. scripts/counted.sh
counted "summary (Windows, under $("$WINE" --version))" wcargo test --no-fail-fast "${tests[@]}" -- "$@"
