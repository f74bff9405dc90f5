#!/usr/bin/env bash
# What each make command needs from the system, checked, and installed only
# when asked.
#
#   scripts/install-deps.sh demo test ...            check: list what is missing
#                                                   for these commands, exit 1 if
#                                                   anything required is
#   scripts/install-deps.sh --install demo test ...   also install what is missing
#                                                   (required and optional), from
#                                                   the distribution's packages,
#                                                   saying what and why (root)
#
# `make demo`, `make test`, `make lint` and `make bench` check; only
# `make deps` (FOR=... to choose) and CI (.ci/run) install. Nothing is ever
# installed without being named first. Commands: build demo test lint bench
# fleet wheel install.
set -euo pipefail

install=0
if [ "${1:-}" = --install ]; then
  install=1
  shift
fi
[ $# -gt 0 ] || set -- build demo test lint bench

has_nginx() { command -v nginx || [ -x /usr/sbin/nginx ]; } # often not on a user's PATH

# name | how to tell it is there | Debian package (or "rustup") | commands | required/optional | why
prerequisites=(
  "cargo|command -v cargo|rustup|build demo test lint bench|required|builds everything (Rust, from https://rustup.rs)"
  "cc|command -v cc|gcc|build demo test lint bench|required|compiles the C parts of zstd and ring"
  "make|command -v make|make|build demo test lint bench|required|runs these commands"
  "python3|command -v python3|python3|demo|required|serves the demo's updates on loopback"
  "python3|command -v python3|python3|bench|required|runs the benchmarks"
  "python3|command -v python3|python3|fleet|required|runs the fleet simulation"
  "nginx|has_nginx|nginx-light|fleet|required|the static host the fleet's installs check and update from"
  "zstd|command -v zstd|zstd|test|required|lists a packed file's payload, a plain .tar.zst"
  "zstd|command -v zstd|zstd|bench|required|the baseline the benchmarks compare with (tar | zstd)"
  "tar|command -v tar|tar|test bench|required|reads a payload's tar stream; the benchmarks' baseline"
  "gzip|command -v gzip|gzip|test|required|makes the gzip-encoded download the updater must refuse"
  "curl|command -v curl|curl|test|required|asks nginx for a build's ETag in the resume test"
  "GNU time|[ -x /usr/bin/time ]|time|bench|required|measures peak memory"
  "python3|command -v python3|python3|test|optional|the --argv0 test copies its interpreter; the demo test runs the demo"
  "nginx|has_nginx|nginx-light|test|optional|a real static server for the update tests, over HTTP and TLS (nginx-light has the ssl module)"
  "openssl|command -v openssl|openssl|test|optional|makes the CA and certificates of the HTTPS tests"
  "strace|command -v strace|strace|test|optional|counts the launcher's system calls"
  "minisign|command -v minisign|minisign|test|optional|proves our keys and signatures work with stock minisign"
  "python3|command -v python3|python3|wheel install|required|runs maturin (from PyPI, in a venv under target/) and installs the wheel"
  "python3-venv|python3 -c 'import ensurepip, venv'|python3-venv|wheel install|required|the venvs maturin and the installed wheel live in"
  "rustfmt, clippy|cargo fmt --version && cargo clippy --version|rustup|lint|required|make lint runs them (rustup component add rustfmt clippy)"
)

wanted() { # does "$1" (a list of commands) name one of the commands asked for?
  local cmd
  for cmd in "${requested[@]}"; do
    case " $1 " in *" $cmd "*) return 0 ;; esac
  done
  return 1
}

requested=("$@")
missing_required=()
missing_optional=()
required_packages=()
optional_packages=()
seen=" "
for line in "${prerequisites[@]}"; do
  IFS='|' read -r name check package commands need why <<<"$line"
  wanted "$commands" || continue
  case $seen in *" $name "*) continue ;; esac # required lines come first
  if (eval "$check") >/dev/null 2>&1; then
    continue
  fi
  seen+="$name "
  entry=$(printf '  %-15s %-16s %s' "$name" "($package)" "$why")
  if [ "$need" = required ]; then
    missing_required+=("$entry")
    [ "$package" = rustup ] || required_packages+=("$package")
  else
    missing_optional+=("$entry")
    [ "$package" = rustup ] || optional_packages+=("$package")
  fi
done
packages=("${required_packages[@]}" "${optional_packages[@]}")

for_what="make ${requested[*]}"
if [ "$install" = 1 ] && { ((${#missing_required[@]})) || ((${#missing_optional[@]})); }; then
  echo "$for_what: installing what is missing:"
  printf '%s\n' "${missing_required[@]}" "${missing_optional[@]}"
  if ((${#packages[@]})); then
    if [ "$EUID" != 0 ]; then
      echo "installing packages needs root: sudo apt-get install ${packages[*]}" >&2
      exit 1
    fi
    if ! command -v apt-get >/dev/null; then
      echo "no apt-get here: install these with your package manager: ${packages[*]}" >&2
      exit 1
    fi
    echo "+ apt-get install ${packages[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
  fi
  if wanted lint && command -v rustup >/dev/null && ! { cargo fmt --version && cargo clippy --version; } >/dev/null 2>&1; then
    echo "+ rustup component add rustfmt clippy"
    rustup component add rustfmt clippy
  fi
  exec "$BASH" "$0" "${requested[@]}" # check again: say what is still missing
fi

if ((${#missing_optional[@]})); then
  echo "$for_what: optional, missing (the tests that need them are skipped):"
  printf '%s\n' "${missing_optional[@]}"
fi
if ((${#missing_required[@]})); then
  {
    echo "$for_what needs these, which are missing:"
    printf '%s\n' "${missing_required[@]}"
    if ((${#required_packages[@]})); then
      echo "install them: sudo apt-get install ${required_packages[*]}  (or: sudo make deps FOR=\"${requested[*]}\")"
    fi
  } >&2
  exit 1
fi
