#!/usr/bin/env bash
# The packaged arm64 and riscv64 binaries, run under qemu-user on amd64:
#   bash packaging/qemu-test.sh [ARCH...]    (default: arm64 riscv64)
# For each: the binary from target/packages/narun_<v>_<arch>.deb runs
# `narun --version`, `narun gateway --check` on the shipped gateway.yaml,
# and serves a request round trip: curl -> `narun gateway` (under qemu) ->
# nats-server -> the native hello consumer -> back. Then `narun apps list`
# (under qemu) reads JetStream KV through the same server.
set -euo pipefail
cd "$(dirname "$0")/.."
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(arm64 riscv64)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
declare -A qemu=([arm64]=qemu-aarch64-static [riscv64]=qemu-riscv64-static [amd64]=)
# The libraries the binaries load under qemu. arm64: Debian's own
# libc6:arm64 (multiarch, installed with libstd-rust-web-dev:arm64), since
# with the cross toolchain's libc6-arm64-cross (2.36-8cross1) qemu-user 7.2
# hangs in every pthread_create, even a C program's; riscv64: the cross
# toolchain's (bookworm has no riscv64 architecture).
declare -A sysroot=([arm64]=/usr/aarch64-linux-gnu [riscv64]=/usr/riscv64-linux-gnu)
[ -e /lib/ld-linux-aarch64.so.1 ] && sysroot[arm64]=/
die() { echo "qemu-test: $*" >&2; exit 1; }
eval "$(bash scripts/prereqs.sh)"
command -v curl >/dev/null || die "curl is missing"

hello="${NARUN_HELLO_BIN:-}"
if [ -z "$hello" ]; then
  for c in "${CARGO_TARGET_DIR:-target}/release/examples/hello" "${CARGO_TARGET_DIR:-target}/debug/examples/hello"; do
    [ -x "$c" ] && { hello=$c; break; }
  done
fi
if [ -z "$hello" ]; then
  cargo build --locked --example hello
  hello="${CARGO_TARGET_DIR:-target}/debug/examples/hello"
fi

tmp=$(mktemp -d)
pids=()
cleanup() {
  set +e
  # Last started first: the consumer drains through NATS before the server
  # goes; anything still there after 5s is killed.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[$i]}" 2>/dev/null; done
  for _ in $(seq 50); do
    alive=""
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 600); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

nats_port=$(free_port)
nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$tmp/js" >"$tmp/nats.log" 2>&1 &
pids+=($!)
wait_port "$nats_port" || die "nats-server did not start"
NATS_URL=nats://127.0.0.1:$nats_port "$hello" --service qemu-hello >"$tmp/hello.log" 2>&1 &
pids+=($!)

fails=0
for arch in "${archs[@]}"; do
  deb="target/packages/narun_${version}_${arch}.deb"
  echo "== $arch: $deb"
  [ -f "$deb" ] || die "$deb not found (make packages)"
  mkdir -p "$tmp/$arch" && dpkg-deb -x "$deb" "$tmp/$arch"
  q=${qemu[$arch]}
  runner=()
  [ -n "$q" ] && runner=("$q" -L "${sysroot[$arch]}")
  run() { "${runner[@]}" "$tmp/$arch/usr/bin/narun" "$@"; }
  echo "  $(file -b "$tmp/$arch/usr/bin/narun" | cut -d, -f1-2)"
  v=$(run --version) && [ "$v" = "narun $version" ] && echo "  ok: narun --version: $v" || { echo "  FAIL: --version: $v" >&2; fails=$((fails + 1)); }
  if run gateway --check --config "$tmp/$arch/etc/narun/gateway.yaml" >/dev/null; then
    echo "  ok: the shipped gateway.yaml is valid"
  else
    echo "  FAIL: gateway --check on the shipped gateway.yaml" >&2; fails=$((fails + 1))
  fi
  http_port=$(free_port)
  cat > "$tmp/$arch/gw.yaml" <<YAML
nats_url: "nats://127.0.0.1:$nats_port"
server_addr: "127.0.0.1:$http_port"
metrics_addr: ""
routes:
  - path: "/hello/"
    methods: ["POST"]
    service: "qemu-hello"
YAML
  t=$SECONDS
  # Not through run(): $! must be qemu's pid, not a subshell's.
  "${runner[@]}" "$tmp/$arch/usr/bin/narun" gateway --config "$tmp/$arch/gw.yaml" >"$tmp/$arch/gw.log" 2>&1 &
  gw=$!
  pids+=($gw)
  if wait_port "$http_port"; then
    body=""
    for _ in $(seq 100); do
      body=$(curl -s --max-time 10 -X POST -H 'content-type: application/json' -d "{\"name\":\"$arch\"}" "http://127.0.0.1:$http_port/hello/" || true)
      case "$body" in *"$arch"*) break ;; esac
      sleep 0.2
    done
    case "$body" in
      *"$arch"*) echo "  ok: HTTP -> gateway ($arch, qemu) -> NATS -> hello: $body ($((SECONDS - t))s incl. start)" ;;
      *) echo "  FAIL: no round trip through the $arch gateway: $body" >&2; sed 's/^/    /' "$tmp/$arch/gw.log" >&2; fails=$((fails + 1)) ;;
    esac
  else
    echo "  FAIL: the $arch gateway did not listen" >&2; sed 's/^/    /' "$tmp/$arch/gw.log" >&2; fails=$((fails + 1))
  fi
  kill "$gw" 2>/dev/null; wait "$gw" 2>/dev/null || true
  if out=$(timeout 60 "${runner[@]}" "$tmp/$arch/usr/bin/narun" apps list --nats-url "nats://127.0.0.1:$nats_port" 2>&1); then
    echo "  ok: narun apps list (JetStream KV through NATS): $(echo "$out" | head -n1)"
  else
    echo "  FAIL: narun apps list: $out" >&2; fails=$((fails + 1))
  fi
done
[ "$fails" -eq 0 ] && echo "qemu-test: passed (${archs[*]})" || { echo "qemu-test: $fails check(s) failed" >&2; exit 1; }
