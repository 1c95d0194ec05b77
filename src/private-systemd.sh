#!/bin/bash
# Boots systemd as PID 1 of the current (new) PID + mount namespace, for tests
# and `narun dev` on machines where systemd is not PID 1. Run as:
#   setsid unshare --pid --fork --kill-child --mount --mount-proc private-systemd.sh
# Its D-Bus system bus is then reachable from outside at
#   /proc/<systemd pid>/root/run/dbus/system_bus_socket
#
# NARUN_CGROUP=<name>: the cgroup subtree this systemd owns, /<name> in every
# hierarchy under /sys/fs/cgroup (the caller removes it after the kill).
# systemd as PID 1 takes the cgroup it starts in as its root, so two private
# systemds never share a unit's cgroup: with one tree, a unit of the same
# name in both shares /narun.slice/<unit>, and a stopped unit is never
# collected while the other's processes live there.
set -eu
if [ -n "${NARUN_CGROUP:-}" ]; then
  case "$NARUN_CGROUP" in
    */*|.*|"") echo "private-systemd: bad NARUN_CGROUP" >&2; exit 2 ;;
  esac
  # cgroup v2 alone: one tree at /sys/fs/cgroup; else one per hierarchy.
  roots=/sys/fs/cgroup/*
  [ -e /sys/fs/cgroup/cgroup.procs ] && roots=/sys/fs/cgroup
  for h in $roots; do
    [ -d "$h" ] && [ ! -L "$h" ] && [ -e "$h/cgroup.procs" ] || continue
    mkdir -p "$h/$NARUN_CGROUP"
    # A new cpuset cgroup (v1) has no CPUs or memory nodes until given some.
    if [ -e "$h/cpuset.cpus" ]; then
      cat "$h/cpuset.cpus" > "$h/$NARUN_CGROUP/cpuset.cpus"
      cat "$h/cpuset.mems" > "$h/$NARUN_CGROUP/cpuset.mems"
    fi
    echo $$ > "$h/$NARUN_CGROUP/cgroup.procs"
  done
fi
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/systemd/system /run/lock
# Mask everything that would touch machine-wide state or start host services.
for u in systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service \
         systemd-tmpfiles-setup-dev-early.service systemd-tmpfiles-clean.timer \
         systemd-tmpfiles-clean.service systemd-sysctl.service systemd-binfmt.service \
         proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount \
         systemd-modules-load.service systemd-remount-fs.service systemd-udevd.service \
         systemd-udev-trigger.service systemd-udev-settle.service systemd-random-seed.service \
         systemd-timesyncd.service getty.target systemd-logind.service \
         systemd-journal-flush.service systemd-update-utmp.service \
         systemd-firstboot.service systemd-machine-id-commit.service \
         cron.service ssh.service sshd.service rsyslog.service \
         nats-server.service nginx.service postgresql.service redis-server.service \
         memcached.service docker.service containerd.service \
         narun-gateway.service narun-gateway.socket narun-node.service; do
  ln -sf /dev/null "/run/systemd/system/$u"
done
# Keep this systemd's journal in its private /run: several private systemds
# (and the host) must not write to one /var/log/journal.
mkdir -p /run/systemd/journald.conf.d
printf '[Journal]\nStorage=volatile\n' > /run/systemd/journald.conf.d/narun-private.conf
cat > /run/systemd/system/sandbox.target <<'UNIT'
[Unit]
Description=narun private systemd
Requires=dbus.socket
After=dbus.socket
AllowIsolate=yes
UNIT
exec /lib/systemd/systemd --system --unit=sandbox.target
