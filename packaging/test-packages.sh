#!/usr/bin/env bash
# Checks of the built packages (target/packages/), per architecture:
#   - dpkg-deb -c / rpm -qlvp list exactly the expected files, with the
#     expected modes and owners;
#   - control data: architecture, dependencies, conffiles / %config, the
#     maintainer scripts enable the sockets and the node agent;
#   - the packaged binary is an ELF for that architecture, stripped;
#   - lintian reports no error (.deb), rpmlint no error (.rpm).
#   bash packaging/test-packages.sh [ARCH...]    (default: amd64 arm64 riscv64)
set -euo pipefail
cd "$(dirname "$0")/.."
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(amd64 arm64 riscv64)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
out=target/packages
declare -A rpm_arch=([amd64]=x86_64 [arm64]=aarch64 [riscv64]=riscv64)
declare -A elf_arch=([amd64]=x86-64 [arm64]=aarch64 [riscv64]=RISC-V)
fails=0
ok() { echo "  ok: $*"; }
fail() { echo "  FAIL: $*" >&2; fails=$((fails + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# "mode path" lines every package must hold (directories aside), for a unit
# directory $1 and a zsh completion directory $2; man pages as installed
# (gzip-compressed by both dh_compress and rpm's brp-compress).
expected() {
  local unitdir=$1 zshdir=$2
  cat <<LIST
-rwxr-xr-x /usr/bin/narun
-rwxr-xr-x /usr/libexec/narun/narun-exec
-rwxr-xr-x /usr/libexec/narun/narun-gateway
-rwxr-xr-x /usr/libexec/narun/narun-node
-rw-r--r-- $unitdir/narun-gateway.service
-rw-r--r-- $unitdir/narun-gateway.socket
-rw-r--r-- $unitdir/narun-gateway-grpc.socket
-rw-r--r-- $unitdir/narun-node.service
-rw-r--r-- $unitdir/narun.slice
-rw-r--r-- /usr/lib/systemd/system-preset/80-narun.preset
-rw-r--r-- /usr/lib/sysusers.d/narun.conf
-rw-r--r-- /usr/lib/tmpfiles.d/narun.conf
-rw-r--r-- /etc/narun/gateway.yaml
-rw------- /etc/narun/node.env
-rw-r--r-- /usr/share/bash-completion/completions/narun
-rw-r--r-- $zshdir/_narun
-rw-r--r-- /usr/share/fish/vendor_completions.d/narun.fish
LIST
  for f in man/*.1; do echo "-rw-r--r-- /usr/share/man/man1/$(basename "$f").gz"; done
  for f in man/*.5; do echo "-rw-r--r-- /usr/share/man/man5/$(basename "$f").gz"; done
}

check_binary() {  # file arch
  local desc
  desc=$(file -b "$1")
  case "$desc" in
    *ELF*"${elf_arch[$2]}"*", stripped"*) ok "binary: ${desc%%,*}, ${elf_arch[$2]}, stripped" ;;
    *) fail "binary is not a stripped ${elf_arch[$2]} ELF: $desc" ;;
  esac
}

for arch in "${archs[@]}"; do
  deb="$out/narun_${version}_${arch}.deb"
  echo "== $deb"
  if [ ! -f "$deb" ]; then fail "missing $deb"; else
    # Contents: regular files with their modes, all owned by root.
    dpkg-deb -c "$deb" > "$tmp/list"
    if awk '$2 != "root/root" {bad=1} END {exit bad}' "$tmp/list"; then ok "every entry owned by root/root"; else fail "entries not owned by root/root"; fi
    awk '$1 ~ /^-/ {sub(/^\./, "", $6); print $1, $6}' "$tmp/list" | grep -v ' /usr/share/doc/' | sort > "$tmp/have"
    { expected /lib/systemd/system /usr/share/zsh/vendor-completions
      echo "-rw-r--r-- /usr/share/lintian/overrides/narun"; } | sort > "$tmp/want"
    if diff -u "$tmp/want" "$tmp/have" >&2; then ok "$(wc -l < "$tmp/want") files with the expected modes"; else fail "file list or modes differ (- expected, + packaged)"; fi
    grep -q ' ./usr/share/doc/narun/copyright$' "$tmp/list" && ok "copyright" || fail "no /usr/share/doc/narun/copyright"
    # Control data.
    [ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] && ok "Architecture: $arch" || fail "Architecture is $(dpkg-deb -f "$deb" Architecture)"
    deps=$(dpkg-deb -f "$deb" Depends)
    case "$deps" in *"libc6 (>= 2.3"*) ok "Depends: $deps" ;; *) fail "Depends lacks libc6: $deps" ;; esac
    [ "$(dpkg-deb -f "$deb" Recommends)" = "nats-server (>= 2.10)" ] && ok "Recommends: nats-server (>= 2.10)" || fail "Recommends: $(dpkg-deb -f "$deb" Recommends)"
    rm -rf "$tmp/ctrl" && dpkg-deb -e "$deb" "$tmp/ctrl"
    if diff <(printf '/etc/narun/gateway.yaml\n/etc/narun/node.env\n') <(sort "$tmp/ctrl/conffiles") >&2; then ok "conffiles: gateway.yaml, node.env"; else fail "conffiles differ"; fi
    for u in narun-gateway.socket narun-gateway-grpc.socket narun-node.service; do
      grep -q "deb-systemd-helper enable '$u'" "$tmp/ctrl/postinst" && ok "postinst enables $u" || fail "postinst does not enable $u"
    done
    grep -q "deb-systemd-invoke start 'narun-gateway-grpc.socket' 'narun-gateway.socket'" "$tmp/ctrl/postinst" && ok "postinst starts the sockets" || fail "postinst does not start the sockets"
    grep -q "systemctl --no-block" "$tmp/ctrl/postinst" && ok "postinst starts the node agent with --no-block" || fail "postinst does not start the node agent"
    grep -q "stop narun-gateway.service narun-node.service" "$tmp/ctrl/prerm" && grep -q "stop narun.slice" "$tmp/ctrl/prerm" && ok "prerm stops the daemons and the apps on remove" || fail "prerm does not stop the daemons and apps"
    grep -q "systemd-sysusers" "$tmp/ctrl/postinst" && ok "postinst runs systemd-sysusers" || fail "postinst lacks systemd-sysusers"
    grep -q "rm -rf /var/lib/narun /var/lib/narun-app /var/lib/private/narun-app /run/narun /etc/narun" "$tmp/ctrl/postrm" && ok "postrm purge removes config and data" || fail "postrm purge"
    # The binary itself.
    rm -rf "$tmp/x" && dpkg-deb -x "$deb" "$tmp/x"
    check_binary "$tmp/x/usr/bin/narun" "$arch"
    check_binary "$tmp/x/usr/libexec/narun/narun-exec" "$arch"
    check_binary "$tmp/x/usr/libexec/narun/narun-gateway" "$arch"
    check_binary "$tmp/x/usr/libexec/narun/narun-node" "$arch"
    # lintian: errors fail, warnings are shown.
    if lintian --fail-on error "$deb" > "$tmp/lintian" 2>&1; then
      ok "lintian: no errors ($(grep -c '^W:' "$tmp/lintian" || true) warnings, $(grep -c '^I:' "$tmp/lintian" || true) info)"
    else
      fail "lintian reports errors"
    fi
    sed 's/^/    /' "$tmp/lintian"
  fi

  r=${rpm_arch[$arch]}
  rpmf="$out/narun-${version}-1.$r.rpm"
  echo "== $rpmf"
  if [ ! -f "$rpmf" ]; then fail "missing $rpmf"; else
    rpm -qlvp "$rpmf" 2>/dev/null > "$tmp/list"
    if awk '$3 != "root" || $4 != "root" {bad=1} END {exit bad}' "$tmp/list"; then ok "every entry owned by root:root"; else fail "entries not owned by root:root"; fi
    awk '$1 ~ /^-/ {print $1, $9}' "$tmp/list" | grep -v ' /usr/share/doc/' | sort > "$tmp/have"
    expected /usr/lib/systemd/system /usr/share/zsh/site-functions | sort > "$tmp/want"
    if diff -u "$tmp/want" "$tmp/have" >&2; then ok "$(wc -l < "$tmp/want") files with the expected modes"; else fail "file list or modes differ (- expected, + packaged)"; fi
    [ "$(rpm -qp --qf '%{ARCH}' "$rpmf" 2>/dev/null)" = "$r" ] && ok "arch $r" || fail "arch $(rpm -qp --qf '%{ARCH}' "$rpmf")"
    if diff <(printf '/etc/narun/gateway.yaml\n/etc/narun/node.env\n') <(rpm -qcp "$rpmf" 2>/dev/null | sort) >&2; then ok "%config: gateway.yaml, node.env"; else fail "%config files differ"; fi
    rpm -qp --requires "$rpmf" 2>/dev/null | grep -q '^libc.so.6(GLIBC_2' && ok "requires libc.so.6 (automatic)" || fail "no automatic libc requirement"
    rpm -qp --recommends "$rpmf" 2>/dev/null | grep -qx 'nats-server >= 2.10' && ok "Recommends: nats-server >= 2.10" || fail "no Recommends: nats-server"
    rpm -qp --scripts "$rpmf" 2>/dev/null > "$tmp/scripts"
    grep -q "preset narun-gateway.socket narun-gateway-grpc.socket narun-node.service" "$tmp/scripts" && ok "%post presets (enables) the sockets and the agent" || fail "%post lacks systemctl preset"
    grep -q "useradd -r -g narun" "$tmp/scripts" && ok "%pre creates the narun user" || fail "%pre lacks the narun user"
    rm -rf "$tmp/x" && mkdir -p "$tmp/x" && (cd "$tmp/x" && rpm2cpio "$OLDPWD/$rpmf" | cpio -idm --quiet ./usr/bin/narun ./usr/libexec/narun/narun-exec ./usr/libexec/narun/narun-gateway ./usr/libexec/narun/narun-node)
    check_binary "$tmp/x/usr/bin/narun" "$arch"
    check_binary "$tmp/x/usr/libexec/narun/narun-exec" "$arch"
    check_binary "$tmp/x/usr/libexec/narun/narun-gateway" "$arch"
    check_binary "$tmp/x/usr/libexec/narun/narun-node" "$arch"
    if command -v rpmlint >/dev/null 2>&1; then
      if rpmlint -r packaging/rpmlintrc "$rpmf" > "$tmp/rpmlint" 2>&1; then
        ok "rpmlint: $(tail -n 1 "$tmp/rpmlint")"
      else
        fail "rpmlint reports errors"
      fi
      grep -v '^$' "$tmp/rpmlint" | sed 's/^/    /'
    else
      echo "  (rpmlint not installed: skipped)"
    fi
  fi
done

if [ "$fails" -ne 0 ]; then
  echo "test-packages: $fails check(s) failed" >&2
  exit 1
fi
echo "test-packages: all checks passed (${archs[*]})"
