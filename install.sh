#!/bin/sh
# Install scoutfs for Bun: one self-contained executable.
#
#   From a release (checks the binary against the release's SHA256SUMS):
#     curl -fsSL https://RELEASE_BASE/install.sh | sh -s -- --url https://RELEASE_BASE
#   From a checkout of the repository (builds dist/scoutfs first):
#     ./install.sh
#
# Options:
#   --url BASE      release base URL holding scoutfs-linux-<arch> and SHA256SUMS
#                   (default: $SCOUTFS_RELEASE_URL; without either, build from the checkout)
#   --prefix DIR    install under DIR/bin (default /usr/local)
#   --sbin DIR      where the mount.scoutfs helper for `mount -t scoutfs` goes
#                   (default /sbin with the default prefix, else PREFIX/sbin)
#   --help          this text
set -eu

prefix=/usr/local
sbin=
url=${SCOUTFS_RELEASE_URL:-}

say() { printf '%s\n' "install.sh: $*"; }
die() { printf '%s\n' "install.sh: error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --url) [ $# -ge 2 ] || die "--url needs a value"; url=$2; shift 2 ;;
    --url=*) url=${1#--url=}; shift ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a value"; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    --sbin) [ $# -ge 2 ] || die "--sbin needs a value"; sbin=$2; shift 2 ;;
    --sbin=*) sbin=${1#--sbin=}; shift ;;
    -h|--help) sed -n '2,16p' "$0" 2>/dev/null | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done

case "$(uname -s)" in Linux) ;; *) die "scoutfs runs on Linux only (this is $(uname -s))" ;; esac
case "$(uname -m)" in
  x86_64|amd64) arch=x64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) die "unsupported machine architecture $(uname -m)" ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

fetch() { # fetch URL FILE
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 2 -o "$2" "$1" || die "download of $1 failed"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1" || die "download of $1 failed"
  else
    die "need curl or wget to download $1"
  fi
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1" | cut -d' ' -f1
  else die "need sha256sum or shasum to verify the download"; fi
}

if [ -n "$url" ]; then
  url=${url%/}
  name="scoutfs-linux-$arch"
  say "downloading $url/$name"
  fetch "$url/SHA256SUMS" "$tmp/SHA256SUMS"
  fetch "$url/$name" "$tmp/scoutfs"
  want=$(awk -v n="$name" '$2 == n || $2 == "*"n {print $1}' "$tmp/SHA256SUMS")
  [ -n "$want" ] || die "SHA256SUMS at $url has no entry for $name"
  got=$(sha256_of "$tmp/scoutfs")
  [ "$got" = "$want" ] || die "checksum mismatch for $name: expected $want, got $got; not installing"
  bin="$tmp/scoutfs"
else
  here=$(cd "$(dirname "$0")" 2>/dev/null && pwd || true)
  [ -n "$here" ] && [ -f "$here/package.json" ] && [ -f "$here/scripts/build.ts" ] ||
    die "no --url given and not run from a checkout; pass --url BASE or run ./install.sh in the repository"
  cd "$here"
  if [ ! -x node_modules/.bin/bun ]; then
    command -v npm >/dev/null 2>&1 || die "building from the checkout needs Node.js and npm"
    say "installing build dependencies (npm ci)"
    npm ci --no-audit --no-fund >/dev/null
  fi
  say "building dist/scoutfs"
  node_modules/.bin/bun scripts/build.ts >/dev/null
  bin="$here/dist/scoutfs"
fi

chmod 0755 "$bin"
"$bin" --version >/dev/null 2>&1 || die "the scoutfs binary does not run on this machine"
mkdir -p "$prefix/bin"
install -m 0755 "$bin" "$prefix/bin/scoutfs.new"
mv -f "$prefix/bin/scoutfs.new" "$prefix/bin/scoutfs"
say "installed $("$prefix/bin/scoutfs" --version) to $prefix/bin/scoutfs"
# mount(8) runs /sbin/mount.<type> for `mount -t scoutfs`: the same binary under that name
if [ -z "$sbin" ]; then
  if [ "$prefix" = /usr/local ]; then sbin=/sbin; else sbin="$prefix/sbin"; fi
fi
mkdir -p "$sbin"
ln -sf "$prefix/bin/scoutfs" "$sbin/mount.scoutfs"
say "installed the mount helper $sbin/mount.scoutfs"
