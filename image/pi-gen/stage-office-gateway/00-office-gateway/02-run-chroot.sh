#!/bin/bash -e
# pi-gen, inside the image (qemu-user): the user, the venv, directories; then drop build leftovers.
VERSION=$(cat /var/cache/office-gateway/VERSION)
systemd-sysusers /usr/lib/sysusers.d/office-gateway.conf
/usr/local/lib/office-gateway/install-venv.sh /var/cache/office-gateway/office_gateway-*.whl "${VERSION}"
systemd-tmpfiles --create /usr/lib/tmpfiles.d/office-gateway.conf || true
# The daemon drives the modem itself (AT over /dev/gateway-modem); the udev rule already hides it
# from ModemManager, and the image does not ship ModemManager at all.
apt-get purge -y modemmanager 2>/dev/null || true
apt-get purge -y build-essential || true
apt-get autoremove -y
apt-get clean
rm -rf /var/cache/office-gateway
