#!/usr/bin/env bash
# make wheel: the payload-tools command with its release stubs, as a Python
# wheel (payload-tools/pyproject.toml), in target/wheel/dist/.
#
# 1. maturin, pinned, from PyPI into a venv of its own under the build
#    folder (target/wheel/maturin-<version>), made once; nothing else is
#    installed, nothing outside target/.
# 2. The stubs make stub and make windows built (LINUX_STUB and
#    WINDOWS_STUB name others) are copied into target/wheel/stubs, the
#    folder build.rs embeds (ONEFILE_EMBED_STUBS; it checks each one).
# 3. maturin builds payload-tools in release into the workspace's target
#    folder (dependencies shared with make build: only payload-tools itself
#    is compiled again, the stubs never) and checks the manylinux tag it
#    gives against the symbols the binary needs (its auditwheel check).
# Ends with the wheel's name and size.
set -euo pipefail
cd "$(dirname "$0")/.."

maturin_version=1.16.0
work=target/wheel
linux_stub=${LINUX_STUB:-target/release/bootstrap}
windows_stub=${WINDOWS_STUB:-target/windows/x86_64-pc-windows-gnu/release/bootstrap.exe}

say() { echo "wheel: $*" >&2; }

venv=$work/maturin-$maturin_version
if [ ! -e "$venv/.complete" ]; then
  say "installing maturin $maturin_version from PyPI into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "maturin==$maturin_version"
  touch "$venv/.complete"
fi

for stub in "$linux_stub" "$windows_stub"; do
  [ -f "$stub" ] || {
    say "no stub at $stub: run make stub and make windows first (make wheel does)"
    exit 1
  }
done
rm -rf "$work/stubs" "$work/dist"
mkdir -p "$work/stubs"
cp "$linux_stub" "$work/stubs/bootstrap"
cp "$windows_stub" "$work/stubs/bootstrap.exe"

ONEFILE_EMBED_STUBS=$PWD/$work/stubs "$venv/bin/maturin" build --release --locked --auditwheel check \
  -m payload-tools/Cargo.toml --out "$work/dist"
wheel=$(ls "$work"/dist/*.whl)
echo "wheel: $wheel, $(stat -c %s "$wheel") bytes"
