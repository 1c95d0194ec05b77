#!/usr/bin/env bash
# Long runs of the property/fuzz tests in tests/props (docs/testing.md):
#
#   bash scripts/fuzz-long.sh [--minutes N] [--release] [TARGET...]
#
# TARGET is one of wire_bhttp, wire_grpc, spec, gateway_config, routes
# (default: all five, one after the other). Each target runs for N minutes
# (default 10), shared evenly between its properties, one property at a
# time, each in batches of generated cases with a fresh seed per batch
# (NARUN_PROPS_SECS). PROPTEST_CASES, if set, is the batch size.
#
# A failing property prints its minimized input and the seed that replays
# it; the script goes on with the others and exits 1 at the end. The whole
# output is kept in $CARGO_TARGET_DIR/fuzz-long.log. The debug build is the
# default: slower, but overflow checks and debug assertions stay on.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=10
profile=()
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) minutes="$2"; shift 2 ;;
        --minutes=*) minutes="${1#*=}"; shift ;;
        --release) profile=(--release); shift ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=(wire_bhttp wire_grpc spec gateway_config routes)

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/narun-ci/target}"
export RUST_BACKTRACE=0
log="$CARGO_TARGET_DIR/fuzz-long.log"
mkdir -p "$CARGO_TARGET_DIR"
: > "$log"

# Build once, and run a copy of the test binary: the sources may change
# (and be rebuilt) during a long run.
built=$(cargo test "${profile[@]}" --locked --test props --no-run 2>&1) || {
    printf '%s\n' "$built" >&2
    exit 1
}
exe=$(printf '%s\n' "$built" | sed -n 's/.*Executable tests\/props\/main.rs (\(.*\))$/\1/p' | tail -n 1)
[ -n "$exe" ] || { echo "cannot find the props test binary" >&2; exit 1; }
props_bin="$CARGO_TARGET_DIR/fuzz-long-props"
cp "$exe" "$props_bin"
all=$("$props_bin" --list --format terse | sed -n 's/: test$//p')

failed=()
summary=()
for target in "${targets[@]}"; do
    props=$(printf '%s\n' "$all" | grep "^${target}::" || true)
    if [ -z "$props" ]; then
        echo "no properties for target '$target'" >&2
        exit 2
    fi
    count=$(printf '%s\n' "$props" | wc -l)
    each=$(( minutes * 60 / count ))
    [ "$each" -ge 1 ] || each=1
    echo "== $target: $count properties, ${each}s each"
    cases=0
    start=$(date +%s)
    for prop in $props; do
        if NARUN_PROPS_SECS="$each" "$props_bin" --exact "$prop" --nocapture --quiet \
            --test-threads=1 >>"$log" 2>&1; then
            line=$(grep -o "props: ${prop}: .*" "$log" | tail -n 1 || true)
            echo "   ${line:-$prop: no summary line}"
            n=$(printf '%s\n' "$line" | sed -n 's/.*: \([0-9]*\) cases.*/\1/p')
            cases=$(( cases + ${n:-0} ))
        else
            echo "   FAILED: $prop (see $log)"
            grep -A 12 "property ${prop} failed" "$log" | sed 's/^/     /' || true
            failed+=("$prop")
        fi
    done
    summary+=("$target: $cases cases in $(( $(date +%s) - start ))s")
done

echo "== totals"
printf '   %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "== failed: ${failed[*]}"
    exit 1
fi
