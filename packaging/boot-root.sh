#!/bin/sh
# Boots the systemd of the Debian root $1 as PID 1 of the current (new) PID,
# mount and network namespaces: the root becomes / (pivot_root), with /proc,
# the host's /sys and /dev, and a private /run. Used by install-test.sh:
#   setsid unshare --pid --fork --kill-child --mount --net boot-root.sh ROOT
# Everything it runs stays in those namespaces, except what systemd writes
# to the host's cgroup tree (as in src/private-systemd.sh).
set -eu
R=$1
mount --make-rprivate /
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
mkdir -p "$R/run/systemd/system" "$R/run/systemd/system-generators" "$R/run/lock"
ip link set lo up
# Mask what would touch the host (kernel settings, devices, clock, disks,
# consoles, firmware) or is not needed: the root's own files (/tmp,
# /var/lib, /etc) are free to change.
for u in systemd-sysctl.service systemd-binfmt.service \
         proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount \
         systemd-modules-load.service kmod-static-nodes.service \
         systemd-remount-fs.service systemd-fsck-root.service \
         systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service \
         systemd-udevd-control.socket systemd-udevd-kernel.socket \
         systemd-random-seed.service systemd-timesyncd.service systemd-pstore.service \
         systemd-boot-system-token.service systemd-rfkill.service systemd-rfkill.socket \
         systemd-hwdb-update.service systemd-logind.service getty.target \
         systemd-firstboot.service systemd-machine-id-commit.service \
         dev-hugepages.mount dev-mqueue.mount sys-kernel-debug.mount \
         sys-kernel-tracing.mount sys-kernel-config.mount sys-fs-fuse-connections.mount \
         swap.target cryptsetup.target systemd-ask-password-wall.path \
         systemd-ask-password-console.path apt-daily.timer apt-daily-upgrade.timer \
         e2scrub_all.timer e2scrub_reap.service fstrim.timer; do
  ln -sf /dev/null "$R/run/systemd/system/$u"
done
for g in systemd-gpt-auto-generator systemd-getty-generator systemd-fstab-generator \
         systemd-cryptsetup-generator systemd-hibernate-resume-generator \
         systemd-bless-boot-generator systemd-debug-generator; do
  ln -sf /dev/null "$R/run/systemd/system-generators/$g"
done
cd "$R"
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot
exec /lib/systemd/systemd --system --unit=multi-user.target
