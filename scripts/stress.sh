#!/usr/bin/env bash
# The whole test suite, several times, while a CPU hog keeps every core
# busy: a test that fails only under load is racy or found a bug.
#   bash scripts/stress.sh [RUNS]      (default 3; extra args go to cargo test)
# Installs stress-ng (Debian package) if missing; falls back to busy shell
# loops if it cannot. Prints one line per run and a summary; exits 1 if any
# run failed (the failing run's log is kept and named).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
shift || true
eval "$(bash scripts/prereqs.sh)"

cores=$(nproc)
if ! command -v stress-ng >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq stress-ng >&2 || true
fi

hog_pids=()
start_hog() {
  if command -v stress-ng >/dev/null 2>&1; then
    stress-ng --cpu "$cores" --quiet &
    hog_pids+=($!)
  else
    for _ in $(seq "$cores"); do
      (while :; do :; done) &
      hog_pids+=($!)
    done
  fi
}
stop_hog() {
  for p in "${hog_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  hog_pids=()
}
trap stop_hog EXIT

# Build first, without the hog: only the tests run under load.
cargo test --locked --no-run "$@" >/dev/null

logdir=$(mktemp -d /tmp/narun-stress.XXXXXX)
failed=0
start_hog
echo "stress: $runs runs of the test suite with $cores CPU hogs ($(command -v stress-ng >/dev/null && echo stress-ng || echo shell loops))"
for i in $(seq "$runs"); do
  log="$logdir/run-$i.log"
  t0=$(date +%s)
  if cargo test --locked "$@" >"$log" 2>&1; then
    echo "run $i: passed in $(( $(date +%s) - t0 ))s"
    rm -f "$log"
  else
    failed=$((failed + 1))
    echo "run $i: FAILED in $(( $(date +%s) - t0 ))s: $log"
    grep -E '^(test .* FAILED|---- )' "$log" | head -20 || true
  fi
done
stop_hog
echo "stress: $((runs - failed))/$runs runs passed under load"
[ "$failed" -eq 0 ]
