#!/usr/bin/env bash
# The packaging step of CI (.ci/run), kept cheap:
#   1. man pages and completions match the clap definition (gen-docs --check,
#      with the debug binary the test suite already built);
#   2. the units pass `systemd-analyze verify` (in a scratch root);
#   3. unless NARUN_CI_PACKAGES=0: the amd64 .deb and .rpm (release build,
#      cached in CI's target dir) and their content, lintian and rpmlint
#      checks (packaging/build-all.sh amd64);
#   4. unless NARUN_CI_PACKAGES=0 or NARUN_CI_INSTALL_TEST=0: the install
#      test of that .deb in a clean Debian root with its own systemd
#      (packaging/install-test.sh; the debootstrap is cached in
#      ~/.cache/narun/install-test, about 10 s warm).
# The three-architecture build (make packages) and the qemu runs are
# separate commands (cross builds take 10-40 minutes on two cores); see
# README.md, "Packaging".
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
target="${CARGO_TARGET_DIR:-target}"

echo "-- man pages and completions"
bin="$target/debug/narun"
[ -x "$bin" ] || cargo build --locked --bin narun
bash packaging/gen-docs.sh --check "$bin"

echo "-- systemd-analyze verify"
if command -v systemd-analyze >/dev/null 2>&1; then
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  # A scratch root with the units, stand-ins for the binaries, and the
  # host's own units for the targets they refer to.
  mkdir -p "$root/usr/bin" "$root/usr/libexec/narun" "$root/usr/lib/systemd"
  printf '#!/bin/sh\n' > "$root/usr/bin/narun" && chmod 0755 "$root/usr/bin/narun"
  cp "$root/usr/bin/narun" "$root/usr/libexec/narun/narun-exec"
  cp "$root/usr/bin/narun" "$root/usr/libexec/narun/narun-gateway"
  cp "$root/usr/bin/narun" "$root/usr/libexec/narun/narun-node"
  ln -s /lib/systemd/system "$root/usr/lib/systemd/system"
  mkdir -p "$root/etc/systemd/system"
  cp units/*.service units/*.socket units/*.slice "$root/etc/systemd/system/"
  (cd "$root/etc/systemd/system" && systemd-analyze verify --man=no --root="$root" \
    narun-gateway.socket narun-gateway-grpc.socket narun-gateway.service narun-node.service narun.slice)
  for u in narun-gateway.service narun-node.service; do
    echo "   $(systemd-analyze security --offline=yes --root="$root" "$u" 2>/dev/null | tail -n 1)"
  done
  echo "   units verified"
else
  echo "   systemd-analyze not found: skipped"
fi

if [ "${NARUN_CI_PACKAGES:-1}" != 0 ]; then
  echo "-- amd64 .deb and .rpm, content checks, lintian, rpmlint"
  bash packaging/build-all.sh amd64
  if [ "${NARUN_CI_INSTALL_TEST:-1}" != 0 ]; then
    echo "-- install test (amd64 .deb, clean Debian root, private systemd)"
    bash packaging/install-test.sh
  fi
fi
echo "-- packaging checks done in $((SECONDS - t0))s"
