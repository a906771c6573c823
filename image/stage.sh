#!/usr/bin/env bash
# Put everything the appliance needs, except the Debian packages and the venv, under DESTDIR.
# Used by the image build (pi-gen stage, DESTDIR = the image's root) and by check.sh (a temp dir).
#
#   image/stage.sh DESTDIR [VERSION]
#
# The venv is installed separately by install-venv.sh (inside the image's chroot, because a venv's
# paths are absolute); this script points /opt/office-gateway/current at VERSION.
# Unit enablement is done with plain symlinks, exactly what `systemctl enable` would create, so
# staging works on a build host that has none of the packages installed.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
D=${1:?usage: stage.sh DESTDIR [VERSION]}
VERSION=${2:-$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$REPO/pyproject.toml")}
D=$(cd "$D" && pwd)
[ "$D" != / ] || { echo "stage.sh: refusing to stage into / (use the image build)" >&2; exit 2; }

inst() { install -D -m "$1" "$2" "$D$3"; }   # MODE SRC DEST

# systemd: units, NUT drop-ins, journald limits, the daemon's user, tmpfiles for a RAM /var/log
for u in office-gateway.service office-gateway-drill.service office-gateway-drill.timer \
         office-gateway-firstboot.service var-log.mount tmp.mount; do
  inst 0644 "$REPO/systemd/$u" "/etc/systemd/system/$u"
done
inst 0644 "$REPO/systemd/nut-server.service.d/office-gateway.conf" /etc/systemd/system/nut-server.service.d/office-gateway.conf
inst 0644 "$REPO/systemd/nut-monitor.service.d/office-gateway.conf" /etc/systemd/system/nut-monitor.service.d/office-gateway.conf
inst 0644 "$REPO/systemd/journald.conf.d/office-gateway.conf" /etc/systemd/journald.conf.d/office-gateway.conf
inst 0644 "$REPO/systemd/office-gateway.sysusers" /usr/lib/sysusers.d/office-gateway.conf
inst 0644 "$REPO/systemd/office-gateway.tmpfiles" /usr/lib/tmpfiles.d/office-gateway.conf

# hardware: udev rules; NUT templates rendered at first boot
inst 0644 "$REPO/hw/udev/70-office-gateway.rules" /etc/udev/rules.d/70-office-gateway.rules
for f in nut.conf ups.conf upsd.conf upsd.users upsmon.conf; do
  inst 0644 "$REPO/hw/nut/$f" "/usr/local/share/office-gateway/nut/$f"
done

# first boot, upgrades
inst 0755 "$REPO/image/render.py" /usr/local/lib/office-gateway/render.py
inst 0755 "$REPO/image/install-venv.sh" /usr/local/lib/office-gateway/install-venv.sh
inst 0755 "$REPO/image/firstboot.sh" /usr/local/sbin/office-gateway-firstboot
inst 0755 "$REPO/image/upgrade.sh" /usr/local/sbin/office-gateway-upgrade
inst 0644 "$REPO/image/office-gateway.toml.example" /boot/firmware/office-gateway.toml.example
inst 0644 "$REPO/README.md" /usr/local/share/doc/office-gateway/README.md
inst 0644 "$REPO/image/README.md" /usr/local/share/doc/office-gateway/image.md
inst 0644 "$REPO/gateway/example.toml" /usr/local/share/doc/office-gateway/example.toml

# network: firewall and the sysctls the sandboxed daemon may not set itself
inst 0644 "$REPO/image/rootfs/etc/nftables.conf" /etc/nftables.conf
inst 0644 "$REPO/image/rootfs/etc/sysctl.d/60-office-gateway.conf" /etc/sysctl.d/60-office-gateway.conf

# the config directory (root-owned; the config file inside is 0640 root:office-gateway)
install -d -m 0755 "$D/etc/office-gateway" "$D/opt/office-gateway"
ln -sfn "$VERSION" "$D/opt/office-gateway/current"

# enablement: what `systemctl enable` makes
want() {  # TARGET UNIT [PATH-OF-UNIT]
  install -d "$D/etc/systemd/system/$1.wants"
  ln -sfn "${3:-/etc/systemd/system/$2}" "$D/etc/systemd/system/$1.wants/$2"
}
want multi-user.target office-gateway.service
want multi-user.target office-gateway-firstboot.service
want timers.target office-gateway-drill.timer
want local-fs.target var-log.mount
want local-fs.target tmp.mount
want sysinit.target nftables.service /lib/systemd/system/nftables.service
want multi-user.target nut.target /lib/systemd/system/nut.target
for u in nut-server.service nut-monitor.service nut-driver-enumerator.service nut-driver-enumerator.path; do
  want nut.target "$u" "/lib/systemd/system/$u"
done
# Swap on an SD card wears it out; the box has enough RAM for what it runs.
ln -sfn /dev/null "$D/etc/systemd/system/dphys-swapfile.service"

echo "staged office-gateway $VERSION into $D"
