#!/usr/bin/env bash
# Upload throughput of `narun deploy` on loopback.
#
#   bash bench/deploy.sh [--size-mb 50] [--runs 3]
#
# Builds the release `narun`, starts a private nats-server (JetStream, file
# storage in a temp dir), makes a SIZE MB Linux/amd64 executable (an ELF
# header then random bytes), and deploys it RUNS times under new tags (so
# every run uploads). Prints, per run, the upload rate (the object store
# put, as `deploy -o json` reports it) and the whole command's rate
# (validation, hashing, connection, upload and spec write), then the best.
# Exits non-zero if a deploy fails. Target: >= 100 MB/s.
set -euo pipefail

SIZE_MB=50
RUNS=3
while [[ $# -gt 0 ]]; do
    case "$1" in
        --size-mb) SIZE_MB=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[[ $SIZE_MB =~ ^[0-9]+$ && $SIZE_MB -gt 0 ]] || { echo "invalid --size-mb" >&2; exit 2; }
[[ $RUNS =~ ^[0-9]+$ && $RUNS -gt 0 ]] || { echo "invalid --runs" >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
command -v nats-server >/dev/null || eval "$(bash scripts/prereqs.sh)"
command -v python3 >/dev/null || { echo "python3 is needed to read the JSON report" >&2; exit 1; }

echo "building narun (release)..." >&2
cargo build --release --bin narun >&2
NARUN=$ROOT/target/release/narun

WORK=$(mktemp -d)
NATS_PID=
cleanup() {
    [[ -n $NATS_PID ]] && kill "$NATS_PID" 2>/dev/null && wait "$NATS_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nats-server -a 127.0.0.1 -p "$PORT" -js -sd "$WORK/js" -l "$WORK/nats.log" &
NATS_PID=$!
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
    sleep 0.1
done
export NATS_URL=nats://127.0.0.1:$PORT

# A SIZE_MB executable: a 64-byte ELF64 x86-64 header, then random bytes.
BIN=$WORK/bench-linux-amd64
python3 - "$BIN" "$SIZE_MB" <<'EOF'
import os, struct, sys
path, mb = sys.argv[1], int(sys.argv[2])
h = bytearray(64)
h[0:4] = b"\x7fELF"; h[4] = 2; h[5] = 1; h[6] = 1
h[16:18] = struct.pack("<H", 2); h[18:20] = struct.pack("<H", 62)
with open(path, "wb") as f:
    f.write(h)
    f.write(os.urandom(mb * 1024 * 1024 - 64))
EOF

printf '%-5s %10s %12s %12s\n' run size upload_MB/s command_MB/s
best=0
for run in $(seq "$RUNS"); do
    start=$(date +%s.%N)
    report=$("$NARUN" deploy --name bench --tag "run$run" --node bench "$BIN" -o json 2>"$WORK/stderr") \
        || { cat "$WORK/stderr" >&2; echo "deploy failed" >&2; exit 1; }
    end=$(date +%s.%N)
    read -r up total < <(python3 -c '
import json, sys
r = json.loads(sys.argv[1]); b = r["binaries"][0]
assert b["uploaded"], "the binary was not uploaded"
mb, secs = b["size"] / 1e6, b["seconds"]
wall = float(sys.argv[3]) - float(sys.argv[2])
print("%.0f %.0f" % (mb / secs, mb / wall))
' "$report" "$start" "$end")
    printf '%-5s %8sMB %12s %12s\n' "$run" "$SIZE_MB" "$up" "$total"
    (( up > best )) && best=$up
done
echo "best upload: $best MB/s for a $SIZE_MB MiB binary on loopback (target >= 100 MB/s)"
