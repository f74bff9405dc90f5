#!/usr/bin/env bash
# The Windows toolchain, installed once per user outside the checkout, from
# the distribution's packages only (Debian bookworm, amd64):
#
#   eval "$(bash scripts/windows-toolchain.sh)"
#   "$ONEFILE_WINDOWS_CARGO" build --target x86_64-pc-windows-gnu \
#       -Zbuild-std=std,panic_abort --target-dir target/windows ...
#
# What it installs, and where (docs/windows.md says why):
# - Rust: Debian's rust-web packages (rustc-web, cargo-web, libstd-rust-web,
#   libstd-rust-web-dev, rust-web-src, rust-web-clippy), all one version,
#   fetched together with `apt-get download` and unpacked with `dpkg -x`
#   into ${XDG_CACHE_HOME:-~/.cache}/onefile/windows-<version>/rust, with the
#   shared libraries they need that this system lacks (libLLVM, libgit2...).
#   Nothing of it is installed system-wide; the rustup toolchain is left
#   alone. No std for Windows is packaged: cargo builds it from
#   rust-web-src (-Zbuild-std), which must match the compiler exactly.
# - With apt-get install (root only; otherwise it says what to install):
#   gcc-mingw-w64-x86-64-win32, the linker and the C compiler for ring and
#   zstd (win32 threads: the .exe files need only system DLLs), and wine64
#   to run the .exe files. Recommended packages are not installed.
# - A 64-bit Wine prefix, windows-<version>/wine, holding a
#   bcryptprimitives.dll built from scripts/windows/processprng.c: Rust's
#   std imports ProcessPrng from it and Wine 8.0 has no such DLL.
#
# Prints the environment to use (`export` lines) on stdout and writes it to
# windows-<version>/env. Progress goes to stderr. Safe to run again and
# concurrently: a run with everything in place only checks, and prints.
#
# ONEFILE_RUST_WEB_VERSION picks a Debian version of the rust-web packages
# (default: the one apt would install); ONEFILE_WINDOWS_CACHE moves the
# cache folder.
#
# --rust-only: only the compiler (step 2), for the Linux release stub, whose
# std is built from source for size too (`make stub`): no mingw-w64, no
# Wine, no root; it prints ONEFILE_WINDOWS_TOOLCHAIN, ONEFILE_WINDOWS_CARGO
# and ONEFILE_STD_REMAP only, and writes no env file.
set -euo pipefail

rust_only=
case ${1:-} in
  --rust-only) rust_only=1 ;;
  '') ;;
  *)
    echo "usage: $0 [--rust-only]" >&2
    exit 2
    ;;
esac

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${ONEFILE_WINDOWS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/onefile}
triple=x86_64-pc-windows-gnu
mingw_cc=x86_64-w64-mingw32-gcc-win32
mingw_ar=x86_64-w64-mingw32-ar
# Debian's wine64 installs its loader outside PATH.
wine=/usr/lib/wine/wine64
wineserver=/usr/lib/wine/wineserver
multiarch=x86_64-linux-gnu
shim_src=$repo/scripts/windows/processprng.c
shim_def=$repo/scripts/windows/processprng.def

say() { echo "windows-toolchain: $*" >&2; }
die() {
  say "$*"
  exit 1
}
is_root() { [ "$(id -u)" = 0 ]; }
candidate() { apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" {print $2}'; }
installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

[ "$(dpkg --print-architecture 2>/dev/null)" = amd64 ] ||
  die "needs a Debian-based amd64 system (dpkg, apt-get)"

mkdir -p "$cache"
exec 9>"$cache/windows.lock"
flock 9

# Root refreshes missing package lists once; others are told what to do.
lists_refreshed=
refresh_lists() {
  [ -z "$lists_refreshed" ] && is_root || return 1
  say "apt-get update (no candidate for $1)"
  apt-get update -qq >&2
  lists_refreshed=1
}

# 1. The system packages.
need=()
if [ -z "$rust_only" ]; then
  command -v "$mingw_cc" >/dev/null || need+=(gcc-mingw-w64-x86-64-win32)
  [ -x "$wine" ] || need+=(wine64)
fi
if ((${#need[@]})); then
  say "installing ${need[*]} (--no-install-recommends):"
  say "  gcc-mingw-w64-x86-64-win32: linker and C compiler for x86_64-pc-windows-gnu"
  say "  wine64: runs the Windows executables for make test-windows"
  is_root || die "run as root, or install them first: apt-get install --no-install-recommends ${need[*]}"
  [ -n "$(candidate "${need[0]}")" ] || refresh_lists "${need[0]}" || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

# 2. The compiler, in a folder of its own per version. Asking apt costs
# half a second, so the answer is kept until the package lists change.
lists_key=$(stat -c %Y /var/lib/apt/lists 2>/dev/null || echo none)
version=${ONEFILE_RUST_WEB_VERSION:-}
if [ -z "$version" ]; then
  read -r key remembered 2>/dev/null <"$cache/windows-version" || true
  if [ "${key:-}" = "$lists_key" ] && [ -n "${remembered:-}" ]; then
    version=$remembered
  else
    version=$(candidate rustc-web)
    if [ -z "$version" ] && refresh_lists rustc-web; then
      version=$(candidate rustc-web)
      lists_key=$(stat -c %Y /var/lib/apt/lists)
    fi
    [ -z "$version" ] || echo "$lists_key $version" >"$cache/windows-version"
  fi
fi
[ -n "$version" ] || die "apt knows no rustc-web package: bookworm-security must be in the apt sources"
upstream=${version#*:}
upstream=${upstream%%[+~-]*}
minimum=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$repo/Cargo.toml")
dpkg --compare-versions "$upstream" ge "$minimum" ||
  die "rustc-web $upstream is older than the workspace's rust-version $minimum"
dir=$cache/windows-$(printf %s "$version" | tr -c 'A-Za-z0-9.+-' _)
rust=$dir/rust

# The wrappers run Debian's tools with the libraries unpacked beside them;
# they find those relative to themselves, so the folder can be built under
# a temporary name and renamed into place whole.
write_wrappers() {
  local bin=$1 tool
  mkdir -p "$bin"
  for tool in rustc rustdoc cargo cargo-clippy clippy-driver; do
    cat >"$bin/$tool" <<EOF
#!/bin/sh
# Debian's rust-web $tool ($version) with its private libraries and std
# sources; written by scripts/windows-toolchain.sh.
here=\${0%/*}
root=\$here/..
LD_LIBRARY_PATH=\$root/usr/lib/$multiarch\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
RUSTC=\$here/rustc
RUSTDOC=\$here/rustdoc
# std for Windows is built from source (-Zbuild-std), an unstable flag.
RUSTC_BOOTSTRAP=1
export LD_LIBRARY_PATH RUSTC RUSTDOC RUSTC_BOOTSTRAP
EOF
    if [ "$tool" = cargo ]; then
      # cargo would look for cargo-clippy in ~/.cargo/bin first (rustup's).
      cat >>"$bin/$tool" <<'EOF'
if [ "${1:-}" = clippy ]; then
  CARGO=$here/cargo
  export CARGO
  exec "$root/usr/bin/cargo-clippy" "$@"
fi
EOF
    fi
    echo "exec \"\$root/usr/bin/$tool\" \"\$@\"" >>"$bin/$tool"
    chmod 755 "$bin/$tool"
  done
}

install_rust() {
  local minor pkgs deb dep round more seen
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/.rust-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  minor=${upstream%.*}
  pkgs=(rustc-web cargo-web "libstd-rust-web-$minor" libstd-rust-web-dev rust-web-src rust-web-clippy)
  say "downloading ${pkgs[*]} $version"
  mkdir "$tmp/debs"
  # As root, apt would hand the download to its own user, which cannot
  # write into our private folder.
  local apt_opts=()
  is_root && apt_opts=(-o APT::Sandbox::User=root)
  (cd "$tmp/debs" && apt-get download -q "${apt_opts[@]}" "${pkgs[@]/%/=$version}" >&2)
  # The shared libraries those need and this system lacks, and theirs in
  # turn. Tools they call (gcc, binutils) and -dev packages are not
  # fetched: the system has them, or the check below says what is missing.
  seen=" ${pkgs[*]} "
  for round in 1 2 3 4 5; do
    more=()
    for deb in "$tmp"/debs/*.deb; do
      for dep in $(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/:any//'); do
        case $dep in lib*-dev | lib*-dev:*) continue ;; lib*) ;; *) continue ;; esac
        [[ $seen == *" $dep "* ]] && continue
        seen+="$dep "
        installed "$dep" || more+=("$dep")
      done
    done
    ((${#more[@]})) || break
    say "downloading shared libraries: ${more[*]}"
    (cd "$tmp/debs" && apt-get download -q "${apt_opts[@]}" "${more[@]}" >&2)
  done
  say "unpacking into $rust"
  mkdir "$tmp/root"
  for deb in "$tmp"/debs/*.deb; do
    dpkg -x "$deb" "$tmp/root"
  done
  rm -rf "$tmp/debs" "$tmp/root/usr/share/doc" "$tmp/root/usr/share/man"
  write_wrappers "$tmp/root/bin"
  local missing
  missing=$(cd "$tmp/root" && LD_LIBRARY_PATH=usr/lib/$multiarch ldd usr/bin/rustc usr/bin/cargo \
    usr/bin/rustdoc usr/bin/clippy-driver usr/lib/$multiarch/librustc_driver-*.so |
    awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')
  [ -z "$missing" ] || die "the compiler needs libraries no package gave: $missing"
  local about
  about=$("$tmp/root/bin/rustc" -vV) || die "rustc-web does not run"
  [[ $about == *$'\n'"release: $upstream"$'\n'* ]] || die "rustc-web is not version $upstream: $about"
  [ -d "$tmp/root/usr/lib/rustlib/src/rust/library/std" ] || die "rust-web-src has no library/std"
  mv -T "$tmp/root" "$rust"
  rm -rf "$tmp"
  trap - EXIT
}
tmp=
[ -x "$rust/bin/cargo" ] || install_rust

# The compiler's commit, for the path remap in the environment below.
[ -s "$rust/.commit-hash" ] ||
  "$rust/bin/rustc" -vV | sed -n 's/^commit-hash: //p' >"$rust/.commit-hash"
commit=$(cat "$rust/.commit-hash")
# std's source paths end up in panic messages: name them as rustup's std
# does (/rustc/<commit>), not by this user's cache folder. (Cargo splits
# these flags at spaces.)
remap=
[[ $rust == *[[:space:]]* ]] || remap="--remap-path-prefix=$rust/usr/lib/rustlib/src/rust=/rustc/$commit"

if [ -n "$rust_only" ]; then
  echo "export ONEFILE_WINDOWS_TOOLCHAIN='$dir'
export ONEFILE_WINDOWS_CARGO='$rust/bin/cargo'
export ONEFILE_STD_REMAP='$remap'"
  exit 0
fi

# 3. The Wine prefix and its ProcessPrng DLL. The stamp names what it was
# made with; anything else (a new shim, another Wine) redoes the DLL.
prefix=$dir/wine
export WINEPREFIX=$prefix WINEARCH=win64 WINEDEBUG=-all
# No prompts to install Mono and Gecko: console programs need neither.
export WINEDLLOVERRIDES='mscoree,mshtml='
stamp="$("$wine" --version) shim $(cat "$shim_src" "$shim_def" | sha256sum | cut -c1-16)"
if [ "$(cat "$prefix/.onefile-stamp" 2>/dev/null)" != "$stamp" ]; then
  if [ ! -e "$prefix/.onefile-stamp" ]; then
    # A prefix half made by an interrupted run is made again.
    say "creating a 64-bit Wine prefix in $prefix"
    rm -rf "$prefix"
    "$wine" wineboot --init >/dev/null 2>&1 || die "wineboot --init failed in $prefix"
    "$wineserver" -w
  fi
  say "building bcryptprimitives.dll (ProcessPrng) into the prefix"
  "$mingw_cc" -shared -O2 -s -o "$prefix/bcryptprimitives.dll" "$shim_src" "$shim_def" -ladvapi32
  mv "$prefix/bcryptprimitives.dll" "$prefix/drive_c/windows/system32/bcryptprimitives.dll"
  echo "$stamp" >"$prefix/.onefile-stamp"
fi

# 4. The environment.
var=$(echo "${triple//-/_}" | tr a-z A-Z)
env_text="export ONEFILE_WINDOWS_TOOLCHAIN='$dir'
export ONEFILE_WINDOWS_CARGO='$rust/bin/cargo'
export CC_${triple//-/_}=$mingw_cc
export AR_${triple//-/_}=$mingw_ar
export CARGO_TARGET_${var}_LINKER=$mingw_cc
export CARGO_TARGET_${var}_RUNNER='$wine'
export WINE='$wine'
export WINEPREFIX='$prefix'
export WINEARCH=win64
export WINEDEBUG=-all
export WINEDLLOVERRIDES='mscoree,mshtml='"
[ -z "$remap" ] ||
  env_text+="
export CARGO_TARGET_${var}_RUSTFLAGS='$remap'"
[ "$(cat "$dir/env" 2>/dev/null)" = "$env_text" ] || echo "$env_text" >"$dir/env"
echo "$env_text"
