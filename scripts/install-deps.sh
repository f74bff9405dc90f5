#!/usr/bin/env bash
# Installs what building and testing need, from the distribution's packages
# and crates.io only. Safe to run again: it installs only what is missing.
set -euo pipefail

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
command -v zstd >/dev/null || need_apt+=(zstd)
command -v cc >/dev/null || need_apt+=(gcc)
command -v make >/dev/null || need_apt+=(make)
command -v curl >/dev/null || need_apt+=(curl)
[ -x /usr/bin/time ] || need_apt+=(time)
command -v gzip >/dev/null || need_apt+=(gzip)
command -v strace >/dev/null || need_apt+=(strace)
# Stock minisign, to prove our keys and signatures interoperate.
command -v minisign >/dev/null || need_apt+=(minisign)
# A real static server for the update tests (Range, ETag as users deploy);
# nginx-light has the ssl module the HTTPS tests (tests/it/tls.rs) need.
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
# The HTTPS tests make their own CA and certificates with it.
command -v openssl >/dev/null || need_apt+=(openssl)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "install these packages first: ${need_apt[*]}" >&2
    exit 1
  fi
fi

if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy 2>/dev/null || true
