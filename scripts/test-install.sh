#!/usr/bin/env bash
# make test-install: payload-tools installed the ways its users install it,
# then used as they use it, with nothing of this checkout on PATH.
#
# 1. The wheel make wheel built: it holds the payload-tools command only,
#    with a manylinux tag; pip installs it into a fresh venv.
# 2. With only that venv's bin on PATH: payload-tools --version;
#    payload-tools stubs lists both embedded stubs; a small app packed
#    without --stub runs; the same app packed for Windows with --target
#    runs under Wine (skipped, and counted so, without the Windows
#    toolchain: scripts/windows-toolchain.sh).
# 3. cargo install --path payload-tools --root <temp>, the command a newcomer
#    types (no setting: build.rs builds the host's stub), with the workspace's
#    target folder so that payload-tools' dependencies are not compiled
#    again; then with only <temp>/bin on PATH: stubs, pack and run. Not
#    tested: a fresh machine's CARGO_HOME, where the stub's nested build
#    downloads crates (bootstrap's TLS stack) during the install; here
#    they are in CI's cache already.
#
# Each check is counted; the last line is the summary, in the style of
# scripts/counted.sh: "summary (install): N passed, N failed, N skipped".
# Everything it makes is in a temporary folder, removed at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

work=$(mktemp -d "${TMPDIR:-/tmp}/onefile-install-XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
skipped=0
check() { # check NAME COMMAND...: counted; the output shown if it fails
  local name=$1 start=$SECONDS
  shift
  if "$@" >"$work/log" 2>&1; then
    passed=$((passed + 1))
    echo "ok: $name ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1))
    echo "FAILED: $name"
    sed 's/^/    /' "$work/log"
  fi
}
skip() { # skip NAME WHY
  skipped=$((skipped + 1))
  echo "skipped: $1 ($2)"
}
# Runs COMMAND with PATH holding only BIN (and nothing else of the caller's
# environment but a home and a cache folder of the test's own).
only_on_path() { # only_on_path BIN COMMAND...
  local bin=$1
  shift
  env -i PATH="$bin" HOME="$work/home" ONEFILE_CACHE_DIR="$work/cache" "$@"
}
# stdout of COMMAND must contain TEXT.
says() { # says TEXT COMMAND...
  local text=$1 out
  shift
  out=$("$@") || return 1
  echo "$out"
  grep -qF -- "$text" <<<"$out"
}

# The apps: a script for Linux, a .cmd for Windows.
mkdir -p "$work/home" "$work/app" "$work/winapp"
printf '#!/bin/sh\necho "hello from the packed app: $*"\n' >"$work/app/hello"
chmod 755 "$work/app/hello"
printf '@echo off\r\necho hello from the packed app on Windows\r\n' >"$work/winapp/hello.cmd"

# pack_and_run BIN LABEL: packs the app without --stub with the
# payload-tools in BIN, runs it.
pack_and_run() {
  local bin=$1 out=$work/$2.bin
  only_on_path "$bin" payload-tools pack "$work/app" --entry hello --name hello -o "$out" &&
    says "hello from the packed app: $2" only_on_path "$bin" "$out" "$2"
}

# 1. The wheel.
wheels=(target/wheel/dist/*.whl)
if [ ! -f "${wheels[0]}" ] || [ ${#wheels[@]} != 1 ]; then
  echo "no single wheel in target/wheel/dist: run make wheel" >&2
  exit 1
fi
wheel=${wheels[0]}
echo "wheel: $wheel, $(stat -c %s "$wheel") bytes"
only_payload_tools() {
  local names
  names=$(python3 -m zipfile -l "$wheel" | awk 'NR > 1 {print $1}')
  echo "$names"
  # The command, and the metadata pip needs: nothing else.
  ! grep -vE '^[^/]+\.dist-info/|^[^/]+\.data/scripts/payload-tools$' <<<"$names" &&
    grep -qE '\.data/scripts/payload-tools$' <<<"$names"
}
check "the wheel holds the payload-tools command and its metadata only" only_payload_tools
manylinux() {
  local tag
  tag=$(python3 -m zipfile -e "$wheel" "$work/unzipped" && cat "$work"/unzipped/*.dist-info/WHEEL | sed -n 's/^Tag: //p')
  echo "tag: $tag"
  [[ $tag =~ ^py3-none-manylinux_2_[0-9]+_x86_64$ ]] && [[ $wheel == *"-$tag.whl" ]]
}
check "its tag is py3-none-manylinux_2_N_x86_64 (maturin checked the binary's symbols against it)" manylinux

check "pip installs it into a fresh venv" sh -c \
  'python3 -m venv "$1/venv" && "$1/venv/bin/python" -m pip install -q --no-index --disable-pip-version-check "$2"' \
  _ "$work" "$wheel"
venv_bin=$work/venv/bin
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

# 2. Used from the venv alone.
check "payload-tools --version (from the venv alone)" \
  says "payload-tools $version" only_on_path "$venv_bin" payload-tools --version
stubs_of_wheel() {
  local out
  out=$(only_on_path "$venv_bin" payload-tools stubs) || return 1
  echo "$out"
  grep -qE '^x86_64-unknown-linux-gnu .* embedded ' <<<"$out" &&
    grep -qE '^x86_64-pc-windows-gnu .* embedded ' <<<"$out" &&
    ! grep -q 'development stub' <<<"$out"
}
check "payload-tools stubs lists the Linux and Windows stubs" stubs_of_wheel
check "pack without --stub, and the packed app runs" pack_and_run "$venv_bin" wheel
# Another tool's `bootstrap` in the same bin folder is ignored, not packed.
other_bootstrap() {
  printf '#!/bin/sh\necho other tool\n' >"$venv_bin/bootstrap" && chmod 755 "$venv_bin/bootstrap" &&
    says "ignored, not a stub for it" only_on_path "$venv_bin" payload-tools stubs &&
    pack_and_run "$venv_bin" beside-another-bootstrap
  local status=$?
  rm -f "$venv_bin/bootstrap"
  return $status
}
check "a bootstrap of another tool next to it is ignored: the embedded stub packs" other_bootstrap

if windows_env=$(bash scripts/windows-toolchain.sh 2>/dev/null); then
  eval "$windows_env"
  pack_for_windows() {
    local out=$work/hello.exe wcache
    only_on_path "$venv_bin" payload-tools pack "$work/winapp" --entry hello.cmd --name hello \
      --target x86_64-pc-windows-gnu -o "$out" || return 1
    wcache="Z:$(tr / '\\' <<<"$work/wcache")"
    says "hello from the packed app on Windows" env ONEFILE_CACHE_DIR="$wcache" "$WINE" "$out"
  }
  check "pack --target x86_64-pc-windows-gnu, and the packed app runs under Wine" pack_for_windows
else
  skip "pack for Windows and run under Wine" "no Windows toolchain: scripts/windows-toolchain.sh"
fi

# 3. cargo install, as a newcomer types it.
cargo_install() {
  env -u ONEFILE_EMBED_STUBS CARGO_TARGET_DIR="$repo/target" \
    "${CARGO:-cargo}" install --locked --path payload-tools --root "$work/cargo"
}
check "cargo install --path payload-tools" cargo_install
cargo_bin=$work/cargo/bin
stubs_of_cargo_install() {
  local out
  out=$(only_on_path "$cargo_bin" payload-tools stubs) || return 1
  echo "$out"
  grep -qE '^x86_64-unknown-linux-gnu .* embedded ' <<<"$out"
}
check "payload-tools stubs of the cargo install lists the host's stub" stubs_of_cargo_install
check "pack without --stub with the cargo install, and the packed app runs" pack_and_run "$cargo_bin" cargo

echo
echo "summary (install: wheel, cargo install): $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
