#!/usr/bin/env bash
# make image-check: stage what the image recipe installs into a temp root and verify it, on an
# ordinary Debian machine (no Raspberry Pi, no network, nothing outside the temp root is changed).
#
# Checks: every file and its mode; the daemon's user and groups; units enabled (the .wants symlinks);
# first boot renders a config that `gateway check-config` accepts, 0640 root:office-gateway, with the
# password hashed and scrubbed from the boot partition; NUT files rendered 0640 root:nut; udev rules
# parse; nftables ruleset parses; `systemd-analyze verify` passes on the staged units and drop-ins.
#
# The venv is a stand-in (a wrapper around this checkout's .venv): building the real one needs the
# network and is the image build's job (image/build.sh).
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${OG_DEV_VENV:-$REPO/.venv}
VERSION=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$REPO/pyproject.toml")
D=$(mktemp -d /tmp/office-gateway-image-check.XXXXXX)
trap 'rm -rf "$D"' EXIT
fails=0
ok() { echo "  ok    $*"; }
bad() { echo "  FAIL  $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@" >"$D.log" 2>&1; then ok "$what"; else bad "$what"; sed 's/^/        /' "$D.log"; fi; rm -f "$D.log"; }

echo "image-check: staging into $D"
# the base image's accounts (Raspberry Pi OS has these; copied from this machine for the check)
install -d "$D/etc"
for f in passwd group shadow gshadow; do [ -e "/etc/$f" ] && cp -p "/etc/$f" "$D/etc/$f"; done
grep -q '^nut:' "$D/etc/group" || echo 'nut:x:105:' >>"$D/etc/group"
bash "$REPO/image/stage.sh" "$D" "$VERSION" >/dev/null || { echo "image-check: stage.sh failed"; exit 1; }
systemd-sysusers --root="$D" "$D/usr/lib/sysusers.d/office-gateway.conf" >/dev/null 2>&1 \
  || bad "systemd-sysusers created the daemon's user"
# stand-in venv: the same commands, backed by this checkout
install -d "$D/opt/office-gateway/$VERSION/bin"
for cmd in gateway python; do
  printf '#!/bin/sh\nexec %q "$@"\n' "$VENV/bin/$cmd" >"$D/opt/office-gateway/$VERSION/bin/$cmd"
  chmod 0755 "$D/opt/office-gateway/$VERSION/bin/$cmd"
done
touch "$D/opt/office-gateway/$VERSION/.installed"

echo "files:"
while read -r mode path; do
  [ -z "$mode" ] && continue
  if [ ! -e "$D$path" ]; then bad "$path missing"; continue; fi
  actual=$(stat -c %a "$D$path")
  [ "$actual" = "$mode" ] && ok "$path $mode" || bad "$path mode $actual, want $mode"
done <<'LIST'
644 /etc/systemd/system/office-gateway.service
644 /etc/systemd/system/office-gateway-drill.service
644 /etc/systemd/system/office-gateway-drill.timer
644 /etc/systemd/system/office-gateway-firstboot.service
644 /etc/systemd/system/var-log.mount
644 /etc/systemd/system/tmp.mount
644 /etc/systemd/system/nut-server.service.d/office-gateway.conf
644 /etc/systemd/system/nut-monitor.service.d/office-gateway.conf
644 /etc/systemd/journald.conf.d/office-gateway.conf
644 /usr/lib/sysusers.d/office-gateway.conf
644 /usr/lib/tmpfiles.d/office-gateway.conf
644 /etc/udev/rules.d/70-office-gateway.rules
644 /usr/local/share/office-gateway/nut/ups.conf
644 /usr/local/share/office-gateway/nut/upsd.conf
644 /usr/local/share/office-gateway/nut/upsd.users
644 /usr/local/share/office-gateway/nut/upsmon.conf
644 /usr/local/share/office-gateway/nut/nut.conf
755 /usr/local/lib/office-gateway/render.py
755 /usr/local/lib/office-gateway/install-venv.sh
755 /usr/local/sbin/office-gateway-firstboot
755 /usr/local/sbin/office-gateway-upgrade
644 /etc/nftables.conf
644 /etc/sysctl.d/60-office-gateway.conf
644 /boot/firmware/office-gateway.toml.example
755 /etc/office-gateway
LIST
[ "$(readlink "$D/opt/office-gateway/current")" = "$VERSION" ] && ok "/opt/office-gateway/current -> $VERSION" \
  || bad "/opt/office-gateway/current does not point at $VERSION"
[ "$(readlink "$D/etc/systemd/system/dphys-swapfile.service")" = /dev/null ] && ok "swap on the SD card masked" \
  || bad "dphys-swapfile not masked"

echo "user:"
if grep -q '^office-gateway:' "$D/etc/passwd"; then ok "user office-gateway"; else bad "user office-gateway missing"; fi
for g in dialout gpio nut; do
  grep -Eq "^$g:[^:]*:[0-9]+:(.*,)?office-gateway(,|$)" "$D/etc/group" && ok "office-gateway in group $g" \
    || bad "office-gateway not in group $g"
done

echo "enabled units:"
for w in multi-user.target.wants/office-gateway.service multi-user.target.wants/office-gateway-firstboot.service \
         timers.target.wants/office-gateway-drill.timer local-fs.target.wants/var-log.mount \
         local-fs.target.wants/tmp.mount sysinit.target.wants/nftables.service \
         multi-user.target.wants/nut.target nut.target.wants/nut-server.service nut.target.wants/nut-monitor.service \
         nut.target.wants/nut-driver-enumerator.service; do
  l="$D/etc/systemd/system/$w"
  if [ -L "$l" ]; then
    t=$(readlink "$l")
    case $t in /etc/*) [ -e "$D$t" ] && ok "$w" || bad "$w -> $t (missing)" ;; *) ok "$w -> $t" ;; esac
  else bad "$w not enabled"; fi
done

echo "first boot:"
cp "$D/boot/firmware/office-gateway.toml.example" "$D/boot/firmware/office-gateway.toml"
check "office-gateway-firstboot renders the config" \
  env OG_ROOT="$D" OG_PYTHON="$VENV/bin/python" "$D/usr/local/sbin/office-gateway-firstboot"
CFG=$D/etc/office-gateway/gateway.toml
check "gateway check-config accepts it" "$D/opt/office-gateway/current/bin/gateway" check-config "$CFG"
[ "$(stat -c %a "$CFG" 2>/dev/null)" = 640 ] && ok "gateway.toml 0640" || bad "gateway.toml is not 0640"
if [ "$(id -u)" = 0 ]; then
  og_gid=$(awk -F: '$1=="office-gateway"{print $3}' "$D/etc/group")
  [ "$(stat -c %u:%g "$CFG" 2>/dev/null)" = "0:$og_gid" ] && ok "gateway.toml root:office-gateway" \
    || bad "gateway.toml owner $(stat -c %U:%G "$CFG" 2>/dev/null), want root:office-gateway"
fi
grep -q '^admin_password_hash = ".\+"' "$CFG" 2>/dev/null && ok "admin password hashed" || bad "no admin_password_hash"
grep -q 'change-me-please' "$CFG" 2>/dev/null && bad "clear admin password in gateway.toml" || ok "no clear password in gateway.toml"
if [ -e "$D/boot/firmware/office-gateway.toml" ]; then bad "seed still on the boot partition"
elif grep -q 'change-me-please' "$D/boot/firmware/office-gateway.toml.applied" 2>/dev/null; then
  bad "clear password left on the boot partition"
else ok "seed applied and scrubbed"; fi
[ "$(cat "$D/etc/hostname" 2>/dev/null)" = office-gateway ] && ok "hostname" || bad "hostname not set"
nut_gid=$(awk -F: '$1=="nut"{print $3}' "$D/etc/group")
for f in nut.conf ups.conf upsd.conf upsd.users upsmon.conf; do
  p=$D/etc/nut/$f
  if [ ! -e "$p" ]; then bad "/etc/nut/$f missing"; continue; fi
  m=$(stat -c %a "$p")
  [ "$m" = 640 ] && ok "/etc/nut/$f 0640" || bad "/etc/nut/$f mode $m, want 0640"
  if [ "$(id -u)" = 0 ] && [ "$(stat -c %g "$p")" != "$nut_gid" ]; then bad "/etc/nut/$f group is not nut"; fi
  grep -q '{[a-z_]*}' "$p" && bad "/etc/nut/$f has unrendered placeholders"
done
ups_pw=$(awk -F' = ' '/^\[ups\]/{s=1;next} /^\[/{s=0} s&&$1=="password"{gsub(/"/,"",$2);print $2}' "$CFG")
grep -q "password = $ups_pw\$" "$D/etc/nut/upsd.users" 2>/dev/null && [ -n "$ups_pw" ] \
  && ok "daemon's upsd account matches upsd.users" || bad "[ups] password does not match upsd.users"

echo "udev, nftables, systemd:"
check "udev rules parse" python3 "$REPO/image/udevrules.py" "$D/etc/udev/rules.d/70-office-gateway.rules"
if command -v nft >/dev/null; then
  if [ "$(id -u)" = 0 ]; then check "nftables.conf parses" nft -c -f "$D/etc/nftables.conf"
  else check "nftables.conf parses" unshare -rn nft -c -f "$D/etc/nftables.conf"; fi
else bad "nft not installed (apt-get install nftables)"; fi
check "systemd-analyze verify (units and drop-ins)" bash "$REPO/image/verify-units.sh" "$D"

if [ "$fails" -ne 0 ]; then echo "image-check: $fails problem(s)"; exit 1; fi
echo "image-check: ok"
