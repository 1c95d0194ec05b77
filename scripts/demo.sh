#!/usr/bin/env bash
# The local demo, from a fresh Debian/Ubuntu machine:
#   bash scripts/demo.sh
# Installs what is missing, builds narun and the hello example, then runs
# `narun dev`: NATS, a node agent running apps as systemd units (a private
# systemd where systemd is not PID 1), the gateway on 127.0.0.1:8080 (gRPC
# on :50051) and the hello, grpc-hello and plain-http (proxy mode) apps deployed and routed. It prints the curl line that works; Ctrl-C
# stops everything and leaves nothing behind (a second Ctrl-C stops it at once).
#   --smoke   exit once the demo answered (used by CI)
# Needs root (apps run as system units): sudo bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/prereqs.sh)"
cargo build --locked -q --bin narun --bin narun-exec --example hello --example grpc-hello --example plain-http
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug"
exec "$target/narun" dev --demo-binary "$target/examples/hello" \
  --demo-grpc-binary "$target/examples/grpc-hello" "$@"
