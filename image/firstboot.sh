#!/bin/sh
# office-gateway-firstboot: render the config from the boot partition's office-gateway.toml.
# Run by office-gateway-firstboot.service (only when that file exists). On failure the reason is
# written to /boot/firmware/office-gateway.errors.txt and the unit fails; the daemon then does not
# start with a half-made config, and the admin fixes the file on a PC and reboots.
set -eu
ROOT=${OG_ROOT:-/}
GATEWAY=${OG_GATEWAY:-$ROOT/opt/office-gateway/current/bin/gateway}
PYTHON=${OG_PYTHON:-$ROOT/opt/office-gateway/current/bin/python}
exec "$PYTHON" "$ROOT/usr/local/lib/office-gateway/render.py" firstboot --root "$ROOT" --gateway "$GATEWAY"
