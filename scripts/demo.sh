#!/usr/bin/env bash
# The local demo, from a fresh Debian/Ubuntu machine:
#   bash scripts/demo.sh
# Starts NATS (JetStream), the hello consumer and the narun gateway on
# 127.0.0.1:8080, sends one request, prints the curl line, and runs until
# Ctrl-C, which stops everything it started.
#   --smoke   send the request and exit (used by CI)
set -euo pipefail
cd "$(dirname "$0")/.."
smoke=""
[ "${1:-}" = "--smoke" ] && smoke=1

eval "$(bash scripts/prereqs.sh)"
command -v curl >/dev/null 2>&1 || { echo "demo: curl is needed (apt-get install curl)" >&2; exit 1; }
cargo build --locked -q --bin narun --example hello
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() { local p=$1; while ! port_free "$p"; do p=$((p + 1)); done; echo "$p"; }
http_port=$(pick_port "${NARUN_DEMO_PORT:-8080}")
nats_port=$(pick_port 4222)
metrics_port=$(pick_port 9090)

work=$(mktemp -d -t narun-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

wait_port() {
  for _ in $(seq 1 200); do port_free "$1" || return 0; sleep 0.05; done
  echo "demo: nothing listens on port $1; logs in $work" >&2; exit 1
}

nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$work/js" -l "$work/nats.log" & pids+=($!)
wait_port "$nats_port"
nats_url="nats://127.0.0.1:$nats_port"

"$target/examples/hello" --nats-url "$nats_url" --service hello 2>"$work/hello.log" & pids+=($!)

cat >"$work/gateway.yaml" <<YAML
nats_url: "$nats_url"
server_addr: "127.0.0.1:$http_port"
metrics_addr: "127.0.0.1:$metrics_port"
request_timeout_seconds: 15
routes:
  - path: "/hello/"
    methods: ["POST", "PUT"]
    service: "hello"
YAML
"$target/narun" gateway --config "$work/gateway.yaml" 2>"$work/gateway.log" & pids+=($!)
wait_port "$http_port"

curl_line="curl -sS -X POST -d '{\"name\":\"NATS User\"}' http://127.0.0.1:$http_port/hello/"
# The consumer registers asynchronously: retry while the gateway says 503.
for _ in $(seq 1 100); do
  code=$(curl -s -o "$work/out" -w '%{http_code}' -X POST -d '{"name":"NATS User"}' "http://127.0.0.1:$http_port/hello/" || true)
  [ "$code" = 200 ] && break
  sleep 0.1
done
echo "\$ $curl_line"
cat "$work/out"
[ "$code" = 200 ] || { echo "demo: expected 200, got $code; logs in $work" >&2; cat "$work"/*.log >&2; exit 1; }

if [ -n "$smoke" ]; then
  echo "demo: ok"
  exit 0
fi
cat <<TXT

narun demo is running:
  gateway   http://127.0.0.1:$http_port   (route /hello/ -> NATS service "hello")
  metrics   http://127.0.0.1:$metrics_port/metrics
  NATS      $nats_url
Try:
  $curl_line
  curl -sS -X PUT -d '{"name":"you"}' http://127.0.0.1:$http_port/hello/anything
  curl -sS http://127.0.0.1:$metrics_port/metrics | grep gateway_
Ctrl-C stops everything.
TXT
wait
