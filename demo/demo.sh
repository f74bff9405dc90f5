#!/usr/bin/env bash
# The end-to-end demo behind `make demo`: Nuitka's automatic-updates demo,
# with our tools, and signed updates. Packs version 1.0 and 1.1 of a small app, serves them on
# loopback, runs 1.0, publishes 1.1, runs again (it updates itself), and
# runs once more (now 1.1). Traces are on, so every step shows.
set -euo pipefail

bin=${BIN_DIR:-target/release}
work=${DEMO_DIR:-demo-work}
case $work in /*) ;; *) work=$PWD/$work ;; esac
tools="$bin/payload-tools"

# Bold step titles on a terminal only: a pipe or a log gets plain text.
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  bold=$'\033[1m' plain=$'\033[0m'
else
  bold='' plain=''
fi

rm -rf "$work"
mkdir -p "$work/app" "$work/auto-update-test"
export ONEFILE_CACHE_DIR="$work/cache"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$work/auto-update-test" "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT

# A signing key: builds install only updates signed with it. keygen writes
# secret keys only into a folder nobody else can write.
mkdir -m 700 "$work/keys"
"$tools" keygen -o "$work/keys/release"

for version in 1.0 1.1; do
  printf '#!/bin/sh\nsleep 0.5\necho "This is version %s"\n' "$version" >"$work/app/run.sh"
  chmod +x "$work/app/run.sh"
  "$tools" pack "$work/app" --entry run.sh --name AutoUpdatingTest --version "$version" \
    --update-url-spec "http://127.0.0.1:$port/{VERSION}/update.toml" \
    --auto-update-toml-file "$work/auto-update-test/$version/update.toml" \
    --public-key "$work/keys/release.pub" --key "$work/keys/release.key" \
    -o "$work/auto-update-test/$version/AutoUpdatingTest.bin"
done

# Wait until the server answers.
for _ in $(seq 50); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/1.0/update.toml')" 2>/dev/null && break
  sleep 0.1
done

cp "$work/auto-update-test/1.0/AutoUpdatingTest.bin" "$work/"
step() { printf '\n%s$ %s%s\n' "$bold" "$*" "$plain"; }

step "./AutoUpdatingTest.bin    # 1.0 is what update.toml announces: nothing to do"
AUTO_UPDATE_DEBUG=1 "$work/AutoUpdatingTest.bin"

step "cp auto-update-test/1.1/update.toml auto-update-test/1.0/update.toml    # publish 1.1"
cp "$work/auto-update-test/1.1/update.toml" "$work/auto-update-test/1.0/update.toml"

step "./AutoUpdatingTest.bin    # still 1.0; downloads 1.1 and installs it when the app exits"
AUTO_UPDATE_DEBUG=1 "$work/AutoUpdatingTest.bin"

step "./AutoUpdatingTest.bin    # now 1.1"
AUTO_UPDATE_DEBUG=1 "$work/AutoUpdatingTest.bin"

step "payload-tools verify AutoUpdatingTest.bin"
"$tools" verify "$work/AutoUpdatingTest.bin"
