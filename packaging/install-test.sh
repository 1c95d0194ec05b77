#!/usr/bin/env bash
# Install test of the amd64 .deb in a clean Debian root, with its own systemd:
#   bash packaging/install-test.sh [DEB]      (or: make install-test; root only)
# DEB defaults to target/packages/narun_<version>_amd64.deb (make packages).
#
#  1. A clean bookworm root: debootstrap --variant=minbase with systemd-sysv,
#     dbus and libnss-systemd (a bare machine with its init; the root has no
#     DNS, so apt inside it can only install what is there), cached in
#     ~/.cache/narun/install-test/base and copied for each run.
#  2. Its systemd boots as PID 1 of private PID, mount and network namespaces
#     (packaging/boot-root.sh; as src/private-systemd.sh, but in
#     the new root and with its own loopback network, so ports 8080, 8081,
#     9090 and 4222 never clash with the host's). A nats-server >= 2.10 runs
#     in that network namespace on 127.0.0.1:4222, which is the default of
#     both shipped configurations: nothing is configured by hand.
#  3. Inside: apt-get install ./narun_<v>_amd64.deb, then the checks below,
#     then apt-get remove (configuration stays) and apt-get purge (nothing
#     stays).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
deb=$(realpath "${1:-target/packages/narun_${version}_amd64.deb}")
cache="${NARUN_INSTALL_TEST_CACHE:-$HOME/.cache/narun/install-test}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

die() { echo "install-test: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, namespaces, a private systemd)"
[ -f "$deb" ] || die "$deb not found: build it first (make packages, or bash packaging/build-all.sh amd64)"
for t in debootstrap unshare nsenter curl ip; do command -v $t >/dev/null || die "$t is missing (bash packaging/prereqs.sh; apt-get install curl iproute2)"; done
eval "$(bash scripts/prereqs.sh)"   # nats-server >= 2.10 on PATH
nats_server=$(command -v nats-server)

# The hello example app, deployed through NATS like any app.
hello="${NARUN_HELLO_BIN:-}"
if [ -z "$hello" ]; then
  for c in "${CARGO_TARGET_DIR:-target}/release/examples/hello" "${CARGO_TARGET_DIR:-target}/debug/examples/hello"; do
    [ -x "$c" ] && { hello=$c; break; }
  done
fi
if [ -z "$hello" ]; then
  echo "install-test: building the hello example (cargo build --example hello)"
  cargo build --locked --example hello
  hello="${CARGO_TARGET_DIR:-target}/debug/examples/hello"
fi
hello=$(realpath "$hello")

start=$SECONDS
step() { echo "== [$((SECONDS - start))s] $*"; }
fails=0
ok() { echo "  ok: $*"; }
fail() { echo "  FAIL: $*" >&2; fails=$((fails + 1)); }

# 1. The clean root.
base_pkgs=systemd-sysv,dbus,libnss-systemd
if [ ! -x "$cache/base/lib/systemd/systemd" ] || [ "$(cat "$cache/base.pkgs" 2>/dev/null)" != "$base_pkgs" ]; then
  step "debootstrap bookworm (minbase + $base_pkgs) into $cache/base (cached for later runs)"
  rm -rf "$cache/base.new" && mkdir -p "$cache"
  debootstrap --variant=minbase --include="$base_pkgs" bookworm "$cache/base.new" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -n 20 "$cache/debootstrap.log" >&2; die "debootstrap failed (log: $cache/debootstrap.log)"; }
  rm -rf "$cache/base" && mv "$cache/base.new" "$cache/base"
  echo "$base_pkgs" > "$cache/base.pkgs"
fi
root=$(mktemp -d /var/tmp/narun-install-test.XXXXXX)
chmod 0755 "$root"
step "copy the clean root to $root"
cp -a "$cache/base/." "$root/"
cp "$deb" "$root/root/"
# What an installed machine has and debootstrap does not write.
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
debname=$(basename "$deb")

sd=""; upid=""; nats_pid=""
cleanup() {
  set +e
  [ -n "$nats_pid" ] && kill "$nats_pid" 2>/dev/null && wait "$nats_pid" 2>/dev/null
  # SIGKILL of PID 1 ends every process of the namespaces, and with them
  # their mounts (nothing was mounted in the host's namespace).
  [ -n "$sd" ] && kill -KILL "$sd" 2>/dev/null
  [ -n "$upid" ] && wait "$upid" 2>/dev/null
  if [ -n "${root:-}" ] && ! grep -q " $root" /proc/self/mountinfo; then
    [ -n "${NARUN_KEEP_ROOT:-}" ] && echo "install-test: root kept in $root" || rm -rf "$root"
    rm -rf "$root.nats" "$root".*.log "$root.hello.yaml"
  fi
}
trap cleanup EXIT

# 2. Boot it.
step "boot the root's systemd (private PID, mount and network namespaces)"
setsid unshare --pid --fork --kill-child --mount --net packaging/boot-root.sh "$root" </dev/null >"$root.boot.log" 2>&1 &
upid=$!
for _ in $(seq 300); do
  for c in $(cat /proc/$upid/task/$upid/children 2>/dev/null); do
    [ "$(cat /proc/$c/comm 2>/dev/null)" = systemd ] && sd=$c
  done
  [ -n "$sd" ] && [ -S /proc/$sd/root/run/systemd/private ] && break
  sleep 0.1
done
[ -n "$sd" ] || { cat "$root.boot.log" >&2; die "systemd did not start"; }
rm -f "$root.boot.log"
in_root() { nsenter -t "$sd" -m -p -n -r -w "$@"; }
in_net() { nsenter --net=/proc/$sd/ns/net "$@"; }
sctl() { in_root systemctl "$@"; }
state=$(timeout 120 nsenter -t "$sd" -m -p -r -w systemctl is-system-running --wait 2>/dev/null || true)
case "$state" in
  running) ok "systemd $(sctl --version | head -n1 | cut -d' ' -f2) booted: running" ;;
  degraded) ok "systemd booted: degraded ($(sctl --failed --no-legend --plain | awk '{print $1}' | tr '\n' ' '))" ;;
  *) die "the root's systemd is $state" ;;
esac

step "nats-server on 127.0.0.1:4222 in the root's network namespace"
mkdir -p "$root.nats"
# nsenter itself (not a function: $! must be the server's pid) execs it.
nsenter --net=/proc/$sd/ns/net "$nats_server" -a 127.0.0.1 -p 4222 -js -sd "$root.nats" >"$root.nats.log" 2>&1 &
nats_pid=$!
for _ in $(seq 100); do in_net bash -c 'echo > /dev/tcp/127.0.0.1/4222' 2>/dev/null && break; sleep 0.1; done
ok "$("$nats_server" --version)"

# 3. Install.
step "apt-get install ./$debname (inside the booted root)"
t=$SECONDS
if in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "/root/$debname" >"$root.apt.log" 2>&1; then
  ok "installed in $((SECONDS - t))s"
else
  cat "$root.apt.log" >&2; die "apt-get install failed"
fi
grep -E "^(Setting up|Recommended packages|  nats-server)" "$root.apt.log" | sed 's/^/    apt: /'

step "units, user, directories"
for u in narun-gateway.socket narun-gateway-grpc.socket narun-node.service; do
  [ "$(sctl is-enabled $u 2>&1)" = enabled ] && ok "$u enabled" || fail "$u is $(sctl is-enabled $u 2>&1)"
done
for u in narun-gateway.socket narun-gateway-grpc.socket; do
  [ "$(sctl is-active $u)" = active ] && ok "$u active" || fail "$u is $(sctl is-active $u)"
done
[ "$(sctl is-active narun-gateway.service)" = inactive ] && ok "narun-gateway.service not started yet (socket-activated)" \
  || fail "narun-gateway.service is $(sctl is-active narun-gateway.service) before any connection"
in_root getent passwd narun >/dev/null && ok "system user narun: $(in_root getent passwd narun)" || fail "no narun user"
[ "$(in_root stat -c '%a %U' /var/lib/narun)" = "755 root" ] && ok "/var/lib/narun 0755 root" || fail "/var/lib/narun: $(in_root stat -c '%a %U' /var/lib/narun)"
[ "$(in_root stat -c '%a' /etc/narun/node.env)" = 600 ] && ok "/etc/narun/node.env 0600" || fail "/etc/narun/node.env mode"
listening=$(in_net ss -Hltnp 2>/dev/null | awk '{print $4, $6}')
echo "$listening" | grep -q ':8080 .*systemd' && ok "port 8080 held by systemd (socket)" || fail "port 8080 not listening: $listening"
echo "$listening" | grep -q ':8081 .*systemd' && ok "port 8081 held by systemd (socket)" || fail "port 8081 not listening"
in_root test -f /usr/share/man/man1/narun.1.gz && in_root test -f /usr/share/man/man5/narun-gateway.yaml.5.gz \
  && ok "man pages installed ($(in_root sh -c 'ls /usr/share/man/man1/narun*.1.gz /usr/share/man/man5/narun*.5.gz | wc -l'))" || fail "man pages missing"
in_root test -f /usr/share/bash-completion/completions/narun && in_root test -f /usr/share/zsh/vendor-completions/_narun \
  && in_root test -f /usr/share/fish/vendor_completions.d/narun.fish && ok "bash, zsh, fish completions installed" || fail "completions missing"

step "node agent reaches READY (Type=notify) against nats-server"
for _ in $(seq 300); do [ "$(sctl show -p ActiveState --value narun-node.service)" = active ] && break; sleep 0.1; done
if [ "$(sctl show -p ActiveState --value narun-node.service)" = active ]; then
  ok "narun-node.service active (READY): $(sctl show -p StatusText --value narun-node.service)"
else
  fail "narun-node.service is $(sctl show -p ActiveState,SubState,StatusText --value narun-node.service | tr '\n' ' ')"
  in_root journalctl -u narun-node --no-pager -n 30 >&2
fi
[ "$(sctl show -p User --value narun-node.service)" = "" ] && ok "narun-node runs as root (hardened: $(in_root grep -c '^Protect\|^Private\|^Restrict\|^NoNewPriv\|^Capability' /lib/systemd/system/narun-node.service) sandboxing lines)"

step "socket activation: the first HTTP request starts the gateway"
code=$(in_net curl -s -o /dev/null -w '%{http_code}' --max-time 20 -X POST -d '{"name":"x"}' http://127.0.0.1:8080/hello/ || true)
[ "$code" = 503 ] && ok "POST /hello/ without a hello app: 503" || fail "POST /hello/: $code (want 503)"
code=$(in_net curl -s -o /dev/null -w '%{http_code}' --max-time 20 http://127.0.0.1:8080/nothing || true)
[ "$code" = 404 ] && ok "GET /nothing: 404" || fail "GET /nothing: $code (want 404)"
for _ in $(seq 100); do [ "$(sctl show -p ActiveState --value narun-gateway.service)" = active ] && break; sleep 0.1; done
[ "$(sctl show -p ActiveState --value narun-gateway.service)" = active ] \
  && ok "narun-gateway.service started by its socket, READY: $(sctl show -p StatusText --value narun-gateway.service)" \
  || fail "narun-gateway.service is $(sctl show -p ActiveState,SubState --value narun-gateway.service | tr '\n' ' ')"
gwpid=$(sctl show -p MainPID --value narun-gateway.service)
gwuid=$(awk '/^Uid:/ {print $2}' "/proc/$sd/root/proc/$gwpid/status" 2>/dev/null || true)
[ -n "$gwuid" ] && [ "$gwuid" = "$(in_root id -u narun)" ] && ok "gateway runs as user narun (pid $gwpid, uid $gwuid)" || fail "gateway uid: '$gwuid' (pid $gwpid)"
in_root journalctl -u narun-gateway --no-pager -o cat | grep -q 'using socket passed by systemd' && ok "gateway used the sockets passed by systemd" || fail "no 'using socket passed by systemd' in the gateway's log"
code=$(in_net curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1:9090/metrics || true)
[ "$code" = 200 ] && ok "metrics on 127.0.0.1:9090: 200" || fail "metrics: $code"

step "deploy the hello app through NATS; it answers through the gateway"
node_id=$(cat /proc/sys/kernel/hostname)
cat > "$root.hello.yaml" <<SPEC
name: hello
tag: install-test
nodes:
  - name: $node_id
    replicas: 1
SPEC
if in_net "$root/usr/bin/narun" deploy --nats-url nats://127.0.0.1:4222 -f "$root.hello.yaml" "$hello" --wait=90s >"$root.deploy.log" 2>&1; then
  ok "narun deploy --wait: $(tail -n 1 "$root.deploy.log")"
else
  cat "$root.deploy.log" >&2; fail "narun deploy failed"
  in_root journalctl -u narun-node --no-pager -n 40 >&2
fi
body=""
for _ in $(seq 50); do
  body=$(in_net curl -s --max-time 5 -X POST -H 'content-type: application/json' -d '{"name":"install-test"}' http://127.0.0.1:8080/hello/ || true)
  case "$body" in *install-test*) break ;; esac
  sleep 0.2
done
case "$body" in *install-test*) ok "POST /hello/ through the gateway: $body" ;; *) fail "hello did not answer through the gateway: $body" ;; esac
status=$(sctl status --no-pager narun-app@hello 2>&1 || true)
echo "$status" | sed -n '1,4p' | sed 's/^/    /'
echo "$status" | grep -q 'Active: active (running)' && ok "systemctl status narun-app@hello: active (running)" || fail "narun-app@hello is not running"
[ "$(sctl show -p Slice --value narun-app@hello.service)" = narun.slice ] && ok "narun-app@hello in narun.slice (MemoryMax=$(sctl show -p MemoryMax --value narun.slice), TasksMax=$(sctl show -p TasksMax --value narun.slice))" || fail "narun-app@hello not in narun.slice"

app_state=$(in_root sh -c 'ls -d /var/lib/narun-app/hello /var/lib/private/narun-app/hello 2>/dev/null' | tr '\n' ' ')
[ -n "$app_state" ] && ok "the app's state directory: $app_state" || echo "  (no app state directory)"

step "apt-get remove: configuration and data stay, apps stop"
in_root env DEBIAN_FRONTEND=noninteractive apt-get remove -y narun >"$root.apt.log" 2>&1 || { cat "$root.apt.log" >&2; fail "apt-get remove failed"; }
in_root test -f /etc/narun/gateway.yaml && in_root test -f /etc/narun/node.env && ok "/etc/narun/gateway.yaml and node.env kept" || fail "configuration removed by remove"
in_root test -d /var/lib/narun/binaries && ok "/var/lib/narun kept" || fail "/var/lib/narun removed by remove"
in_root test -e /usr/bin/narun && fail "/usr/bin/narun still there" || ok "/usr/bin/narun removed"
[ "$(sctl is-active narun-app@hello.service)" != active ] && ok "narun-app@hello stopped" || fail "narun-app@hello still running after remove"
in_net ss -Hltn | grep -q ':8080 ' && fail "port 8080 still listening after remove" || ok "ports closed"

step "apt-get purge: nothing stays"
in_root env DEBIAN_FRONTEND=noninteractive apt-get purge -y narun >"$root.apt.log" 2>&1 || { cat "$root.apt.log" >&2; fail "apt-get purge failed"; }
for p in /etc/narun /var/lib/narun /var/lib/narun-app /var/lib/private/narun-app /run/narun; do
  in_root test -e $p && fail "$p still there after purge" || ok "$p removed"
done
left=$(in_root sh -c 'ls -d /lib/systemd/system/narun* /etc/systemd/system/*/narun* /var/lib/systemd/deb-systemd-helper-enabled/*narun* /usr/share/man/man*/narun* /usr/share/doc/narun 2>/dev/null' || true)
[ -z "$left" ] && ok "no narun files or enablement links left" || fail "left after purge: $left"
[ -z "$(sctl list-units --all --no-legend --plain 'narun*' | grep -v 'not-found' || true)" ] && ok "no narun units loaded" || fail "units left: $(sctl list-units --all --no-legend --plain 'narun*')"
[ "$(in_root dpkg-query -W -f='${db:Status-Abbrev}' narun 2>/dev/null || echo 'un')" != "ii " ] && ok "dpkg: narun not installed" || fail "dpkg still lists narun"

echo "install-test: $([ $fails -eq 0 ] && echo passed || echo "$fails check(s) FAILED") in $((SECONDS - start))s"
[ "$fails" -eq 0 ]
