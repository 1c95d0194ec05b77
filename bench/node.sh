#!/usr/bin/env bash
# narun node agent benchmark against a private systemd. See bench/README.md
# ("Node agent").
#
#   sudo bash bench/node.sh [--reps 12] [--apps 50] [--cold-apps 200]
#   NARUN_BIN=/path/to/narun bash bench/node.sh   # that binary, no build
#   sudo bash bench/node.sh --memory [--apps 50]  # section 1 only (under a minute)
#   sudo bash bench/node.sh --rollout [--reps 5]  # rollouts under load instead
#   sudo bash bench/node.sh --logs [--lines 100000] [--width 100] [--journald-default]
#
# In one run (about 3 minutes plus a build if narun is not built):
#   1. agent RSS (VmRSS, VmHWM) idle with 0 apps and with 50 apps;
#   2. KV spec write -> unit active (replica scale-up 1->2, binary cached)
#      against a bare `systemd-run -p DynamicUser=yes` and a `systemd-run`
#      with narun's unit properties, each repeated, median and p90;
#   3. kill -9 of an app's main process -> active again with a new MainPID;
#   4. cold start of 200 apps, empty data dir and warm data dir.
# Apps are copies of /bin/sleep. Needs root (it boots systemd as PID 1 of a
# private PID + mount namespace, src/private-systemd.sh). Prints
# one table with the targets; exits 0 whatever the numbers, non-zero if
# something failed to run. Everything it started is removed on exit.
# --rollout: bench/rollout_bench.py instead (about 2 minutes): deploy ->
# new version ready and request latency during zero-downtime replacements
# under a steady load through narun gateway, against a scale-up and the
# steady state of the same run (also builds the release examples/hello).
# --logs: bench/logs_bench.py instead (under a minute): lines per second one
# replica pushes through journald -> agent -> NATS (stream narun-logs),
# journald's own rate, CPU per 1,000 lines, every line exactly once.
set -euo pipefail

PASS_ARGS=()
ROLLOUT=
LOGS=
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rollout) ROLLOUT=1; shift ;;
        --logs) LOGS=1; shift ;;
        --journald-default|--memory) PASS_ARGS+=("$1"); shift ;;
        --reps|--apps|--cold-apps|--crashes|--lines|--width)
            [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || { echo "$1 needs a number" >&2; exit 2; }
            PASS_ARGS+=("$1" "$2"); shift 2 ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ -n $ROLLOUT && -n $LOGS ]] && { echo "--rollout and --logs are separate runs" >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
T0=$SECONDS
log() { printf '[node.sh %3ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------ prerequisites
if [[ $(id -u) -ne 0 ]]; then
    echo "bench/node.sh must run as root: it boots a private systemd (PID 1 of a new PID + mount" >&2
    echo "namespace) and starts units with DynamicUser=yes. Run: sudo bash bench/node.sh" >&2
    exit 1
fi
[[ -x /lib/systemd/systemd ]] || die "systemd is not installed (/lib/systemd/systemd): apt-get install systemd"
for tool in unshare nsenter setsid systemd-run busctl python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required (util-linux / systemd / python3)"
done
[[ -x /bin/sleep ]] || die "/bin/sleep is needed (the benchmark's app)"
if [[ -n $LOGS ]]; then
    for tool in seq journalctl; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is required (coreutils / systemd)"
    done
fi
if ! command -v nats-server >/dev/null 2>&1; then
    log "installing nats-server (scripts/prereqs.sh)"
    eval "$(bash scripts/prereqs.sh)"
fi
command -v nats-server >/dev/null 2>&1 || die "nats-server still not on PATH"

VENV=$HOME/.cache/narun/venv-bench
if ! "$VENV/bin/python" -c 'import nats.js' >/dev/null 2>&1; then
    log "creating $VENV with nats-py"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install -q nats-py || die "pip install nats-py failed"
fi

if [[ -n ${NARUN_BIN:-} ]]; then
    NARUN=$NARUN_BIN        # a given binary: no build
else
    log "cargo build --release --bin narun; cargo build --profile lean --bin narun-node"
    cargo build --release --quiet --bin narun || die "cargo build failed"
    cargo build --profile lean --quiet --bin narun-node || die "cargo build failed"
    NARUN=${CARGO_TARGET_DIR:-$ROOT/target}/release/narun
fi
[[ -x $NARUN ]] || die "missing $NARUN"
# The agent as the packaged unit runs it: narun-node of the lean profile
# (Makefile), else narun-node beside narun, if there.
AGENT=$(dirname "$(dirname "$NARUN")")/lean/narun-node
[[ -x $AGENT ]] || AGENT=$(dirname "$NARUN")/narun-node
[[ -x $AGENT ]] || AGENT=
# ... with the unit's own environment (its Environment= lines).
AGENT_ENV=()
while IFS= read -r line; do
    AGENT_ENV+=(--agent-env "${line#Environment=}")
done < <(grep '^Environment=' units/narun-node.service || true)
if [[ -n $ROLLOUT ]]; then
    log "cargo build --release --example hello"
    cargo build --release --quiet --example hello || die "cargo build failed"
    HELLO=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/hello
    [[ -x $HELLO ]] || die "missing $HELLO"
fi

# ------------------------------------------------------------------ cleanup
# Data dirs live under /var/lib: apps get a private /tmp and could not
# execute binaries cached there.
BASE=$(mktemp -d /var/lib/narun-bench-XXXXXX)
chmod 755 "$BASE"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # Processes the helper recorded ("pid comm"): agents, nats-server,
    # unshare and the private systemd (its death ends every app).
    local pids=() f pid name
    for f in "$BASE"/pids/*; do
        [[ -f $f ]] || continue
        read -r pid name <"$f" || continue
        if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]; then
            kill -KILL "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 100); do [[ -e /proc/$pid ]] || break; sleep 0.05; done
    done
    # Empty cgroups left by the private systemd, depth first (only where the
    # host's PID 1 is not systemd, as in tests/common/systemd.rs).
    if [[ $(cat /proc/1/comm 2>/dev/null) != systemd ]]; then
        local c n
        for c in /sys/fs/cgroup /sys/fs/cgroup/*; do
            for n in narun.slice system.slice init.scope; do
                [[ -d $c/$n ]] && find "$c/$n" -depth -type d -exec rmdir {} + 2>/dev/null || true
            done
        done
    fi
    rm -rf "$BASE"
    # StateDirectory= of the bench apps (and of the systemd-run comparison).
    rm -rf /var/lib/private/narun-app/nbench-* /var/lib/private/narun-app/rbench
    rm -f /var/lib/narun-app/nbench-* /var/lib/narun-app/rbench
    log "cleaned up (exit $rc, $((SECONDS - T0)) s)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if pgrep -x rustc >/dev/null 2>&1 || pgrep -x cargo >/dev/null 2>&1; then
    log "WARNING: cargo/rustc is running on this machine: the timings will be disturbed"
fi

if [[ -n $ROLLOUT ]]; then
    "$VENV/bin/python" -u bench/rollout_bench.py \
        --narun "$NARUN" --hello "$HELLO" --base "$BASE" --script "$ROOT/src/private-systemd.sh" \
        --version "$("$NARUN" --version 2>/dev/null | head -n1)" "${PASS_ARGS[@]}"
    exit
fi
if [[ -n $LOGS ]]; then
    "$VENV/bin/python" -u bench/logs_bench.py \
        --narun "$NARUN" --base "$BASE" --script "$ROOT/src/private-systemd.sh" \
        --version "$("$NARUN" --version 2>/dev/null | head -n1)" "${PASS_ARGS[@]}"
    exit
fi
"$VENV/bin/python" -u bench/node_bench.py \
    --narun "$NARUN" --agent "$AGENT" "${AGENT_ENV[@]}" --base "$BASE" --script "$ROOT/src/private-systemd.sh" \
    --version "$("$NARUN" --version 2>/dev/null | head -n1)" "${PASS_ARGS[@]}"
