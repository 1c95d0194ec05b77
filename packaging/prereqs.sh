#!/usr/bin/env bash
# What packaging needs on a Debian bookworm amd64 machine, installed if
# missing (idempotent; root or sudo):
#   - Rust: the native build uses the `cargo` on PATH (rustup, or Debian's
#     cargo-web); cross builds use Debian's rustc-web 1.96 with the arm64
#     std (libstd-rust-web-dev:arm64, multiarch) and, for riscv64, its
#     sources (rust-web-src, for -Zbuild-std);
#   - cross C compilers and libc (ring compiles C);
#   - debhelper, dpkg-dev, lintian; rpm (rpmbuild), rpmlint;
#   - qemu-user-static (packaging/qemu-test.sh), debootstrap
#     (packaging/install-test.sh).
#   bash packaging/prereqs.sh            everything (make packages)
#   bash packaging/prereqs.sh --native   amd64 packages and the install test
#                                        only (CI): no cross toolchains, no qemu
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
log() { echo "packaging/prereqs: $*" >&2; }

pkgs=(make build-essential debhelper dpkg-dev fakeroot lintian rpm rpmlint
      debootstrap curl iproute2 file)
cross=(rustc-web cargo-web rust-web-src libstd-rust-web-dev:arm64
       gcc-aarch64-linux-gnu libc6-dev-arm64-cross
       gcc-riscv64-linux-gnu libc6-dev-riscv64-cross
       qemu-user-static)
native=""
[ "${1:-}" = "--native" ] && native=1
[ -n "$native" ] || pkgs+=("${cross[@]}")

if [ -z "$native" ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  log "dpkg --add-architecture arm64"
  $SUDO dpkg --add-architecture arm64
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
command -v cargo >/dev/null 2>&1 || { log "no cargo on PATH (install rustup, or use /usr/bin/cargo from cargo-web)"; exit 1; }
exit 0
