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
#    --stub bootstrap.exe, for the test of cross-packing; and builds the
#    Linux stub for the reverse (ONEFILE_LINUX_STUB).
# 4. Runs all those test binaries under wine64 (cargo's runner for the
#    Windows target): the library's own tests (format, namespace, members,
#    text, manifest, updater state...) first, then the end-to-end ones.
#    Arguments go to every test harness (a test name filters).
# 5. Runs on Linux the file that payload-tools.exe packed with the Linux
#    stub (cross::), for its exit code, which Wine does not report.
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
${CARGO:-cargo} build --locked -p payload-tools -p bootstrap
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
# A .cmd entry given the Windows way, with a backslash.
mkdir -p "$cross/cmdapp/bin"
printf '@echo off\r\necho cmd ran %%~1\r\nexit /b 7\r\n' >"$cross/cmdapp/bin/run.cmd"
target/debug/payload-tools pack "$cross/cmdapp" --entry 'bin\run.cmd' --name cmdapp \
  --stub "$bin/bootstrap.exe" -o "$cross/cmdapp.exe" >/dev/null || exit 1
export ONEFILE_CROSS_PACKED_CMD=$PWD/$cross/cmdapp.exe
export ONEFILE_LINUX_STUB=$PWD/target/debug/bootstrap ONEFILE_CROSS_DIR=$PWD/$cross

. scripts/counted.sh
counted "summary (Windows, under $("$WINE" --version))" wcargo test --no-fail-fast "${tests[@]}" -- "$@"
status=$?

# The Linux file packed by payload-tools.exe (if cross:: ran): its exit
# code and output, on Linux.
# Like any file that comes from Windows, it has no execute bit here.
if [ -e "$cross/from-windows" ]; then
  chmod +x "$cross/from-windows"
  got=$(ONEFILE_CACHE_DIR=$PWD/$cross/linux-cache "$cross/from-windows" "two words" x)
  code=$?
  if [ "$code" = 7 ] && [ "$got" = "crossapp|two words|x|" ]; then
    echo "cross: the file packed by payload-tools.exe with the Linux stub runs on Linux (exit 7)"
  else
    echo "cross: FAILED: the file packed by payload-tools.exe exited $code on Linux, printing '$got'"
    status=1
  fi
fi
exit "$status"
