#!/usr/bin/env bash
# The whole test suite, from a fresh Debian/Ubuntu machine:
#   bash scripts/test.sh
# Installs what is missing (C toolchain, Rust, nats-server >= 2.10), then
# runs every test against real nats-server processes.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/prereqs.sh)"
echo "using $(nats-server --version), $(cargo --version)"
exec cargo test --locked "$@"
