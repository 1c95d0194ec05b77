#!/usr/bin/env bash
# Man pages and shell completions generated from narun's clap definition:
#   man/narun.1, man/narun-<command>[-<subcommand>].1    (`narun man --out-dir`)
#   packaging/completions/narun.bash, _narun, narun.fish (`narun completions`)
# They are committed, so packages (cross builds included) never run the
# binary. The hand-written pages (man/*.5) are not touched.
#
#   bash packaging/gen-docs.sh [BINARY]          regenerate (make docs)
#   bash packaging/gen-docs.sh --check [BINARY]  fail if stale (make check-docs, CI)
#
# BINARY: any native build of narun (debug is fine; default target/release/narun).
set -euo pipefail
cd "$(dirname "$0")/.."

check=""
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
bin="${1:-${CARGO_TARGET_DIR:-target}/release/narun}"
[ -x "$bin" ] || { echo "gen-docs: $bin not found; build narun first (make build)" >&2; exit 1; }

# A clean environment: clap may show [env: VAR=value] for variables that are set.
run() { env -i PATH=/usr/bin:/bin HOME=/nonexistent LANG=C.UTF-8 "$bin" "$@"; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/man" "$out/completions"
run man --out-dir "$out/man"
run completions bash > "$out/completions/narun.bash"
run completions zsh > "$out/completions/_narun"
run completions fish > "$out/completions/narun.fish"

if [ -n "$check" ]; then
  stale=0
  # The same set of generated pages, with the same contents.
  if ! diff -u <(cd man && ls -1 ./*.1 2>/dev/null) <(cd "$out/man" && ls -1 ./*.1); then
    echo "gen-docs: the set of generated man pages changed (- committed, + generated)" >&2
    stale=1
  fi
  for f in "$out"/man/*.1; do
    n=$(basename "$f")
    if [ -f "man/$n" ] && ! cmp -s "$f" "man/$n"; then
      diff -u "man/$n" "$f" | head -n 20 >&2 || true
      stale=1
    fi
  done
  for f in "$out"/completions/*; do
    n=$(basename "$f")
    if ! cmp -s "$f" "packaging/completions/$n"; then
      echo "gen-docs: packaging/completions/$n differs" >&2
      stale=1
    fi
  done
  if [ "$stale" -ne 0 ]; then
    echo "gen-docs: man pages or completions are stale: run 'make docs' (or bash packaging/gen-docs.sh) and commit" >&2
    exit 1
  fi
  echo "gen-docs: man pages and completions are up to date ($(ls "$out"/man/*.1 | wc -l) pages)"
  exit 0
fi

rm -f man/*.1
cp "$out"/man/*.1 man/
cp "$out"/completions/* packaging/completions/
echo "gen-docs: wrote $(ls man/*.1 | wc -l) man pages to man/ and 3 completion scripts to packaging/completions/"
