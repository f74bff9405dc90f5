#!/usr/bin/env bash
# The end-to-end demo behind `make demo`: Nuitka's automatic-updates demo,
# with our tools, and signed updates. Packs version 1.0 of a small app,
# publishes it into a site folder served on loopback, runs it; packs and
# publishes 1.1, runs again (it updates itself), and runs once more (now
# 1.1); publishes a 1.2 that crashes at start, which installs and is
# rolled back to 1.1 after three failed starts. Traces are on, so every
# step shows.
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
mkdir -p "$work/app" "$work/dist" "$work/site"
export ONEFILE_CACHE_DIR="$work/cache"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The static host: it serves the site folder that `payload-tools publish`
# keeps, as any web server, bucket or CDN would.
python3 -m http.server --bind 127.0.0.1 --directory "$work/site" "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT

# A signing key: builds install only updates and update.toml files signed
# with it. keygen writes secret keys only into a folder nobody else can write.
mkdir -m 700 "$work/keys"
"$tools" keygen -o "$work/keys/release"

step() { printf '\n%s$ %s%s\n' "$bold" "$*" "$plain"; }

# Packs version $1 of the app into dist/$1/, with $2... passed on to pack.
pack() {
  local version=$1
  shift
  printf '#!/bin/sh\n%s\nsleep 0.5\necho "This is version %s"\n' "${CRASH:-}" "$version" >"$work/app/run.sh"
  chmod +x "$work/app/run.sh"
  mkdir -p "$work/dist/$version"
  "$tools" pack "$work/app" --entry run.sh --name AutoUpdatingTest --version "$version" \
    --update-url-spec "http://127.0.0.1:$port/{VERSION}/update.toml" \
    --public-key "$work/keys/release.pub" "$@" \
    -o "$work/dist/$version/AutoUpdatingTest.bin"
}

step "payload-tools pack ... --version 1.0 && payload-tools publish dist/1.0/AutoUpdatingTest.bin --site site --key release.key"
pack 1.0
"$tools" publish "$work/dist/1.0/AutoUpdatingTest.bin" --site "$work/site" --key "$work/keys/release.key"

# Wait until the server answers.
for _ in $(seq 50); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/1.0/update.toml')" 2>/dev/null && break
  sleep 0.1
done

cp "$work/site/1.0/AutoUpdatingTest.bin" "$work/"

step "./AutoUpdatingTest.bin    # 1.0 is what update.toml announces: nothing to do"
AUTO_UPDATE_DEBUG=1 "$work/AutoUpdatingTest.bin"

step "payload-tools pack ... --version 1.1 --previous dist/1.0/AutoUpdatingTest.bin && payload-tools publish dist/1.1/AutoUpdatingTest.bin --site site --key release.key"
pack 1.1 --previous "$work/dist/1.0/AutoUpdatingTest.bin"
"$tools" publish "$work/dist/1.1/AutoUpdatingTest.bin" --site "$work/site" --key "$work/keys/release.key"

step "./AutoUpdatingTest.bin    # still 1.0; downloads 1.1 and installs it when the app exits"
AUTO_UPDATE_DEBUG=1 "$work/AutoUpdatingTest.bin"

step "./AutoUpdatingTest.bin    # now 1.1"
AUTO_UPDATE_DEBUG=1 "$work/AutoUpdatingTest.bin"

step "payload-tools pack ... --version 1.2 && payload-tools publish ...    # a bad release: its app crashes at start"
CRASH='kill -SEGV $$' pack 1.2
"$tools" publish "$work/dist/1.2/AutoUpdatingTest.bin" --site "$work/site" --key "$work/keys/release.key"

step "./AutoUpdatingTest.bin    # 1.1 installs 1.2 at its exit, keeping 1.1 as .AutoUpdatingTest.bin.previous"
AUTO_UPDATE_DEBUG=1 "$work/AutoUpdatingTest.bin" 2>&1 | grep -v '^ONEFILE: '

step "./AutoUpdatingTest.bin (three times)    # 1.2 is on probation: the third failed start restores 1.1"
for _ in 1 2 3; do
  (AUTO_UPDATE_DEBUG=1 "$work/AutoUpdatingTest.bin" 2>&1 || true) |
    grep -E 'Failed start|Rolled back|restored|This is version' || true
done

step "./AutoUpdatingTest.bin    # 1.1 runs again: 1.2, still announced, is not installed again"
AUTO_UPDATE_DEBUG=1 "$work/AutoUpdatingTest.bin" 2>&1 | grep -v '^ONEFILE: '

step "payload-tools verify AutoUpdatingTest.bin"
"$tools" verify "$work/AutoUpdatingTest.bin"
