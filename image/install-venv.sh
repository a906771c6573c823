#!/usr/bin/env bash
# Install one version of Office Gateway into its own venv: PREFIX/VERSION (default PREFIX
# /opt/office-gateway). Used by the image build (in the chroot) and by upgrade.sh. The venv is made
# under its final path (a venv's scripts carry absolute paths) and only counts as installed once
# the marker .installed exists, so an interrupted install is redone, never used.
#
#   install-venv.sh WHEEL VERSION [PREFIX]     env: OG_PIP_ARGS (e.g. "--no-index --find-links DIR")
set -euo pipefail
WHEEL=${1:?usage: install-venv.sh WHEEL VERSION [PREFIX]}
VERSION=${2:?usage: install-venv.sh WHEEL VERSION [PREFIX]}
PREFIX=${3:-/opt/office-gateway}
DEST=$PREFIX/$VERSION
case $VERSION in ''|*/*|.*|current|previous) echo "install-venv: bad version '$VERSION'" >&2; exit 2 ;; esac
[ -e "$DEST/.installed" ] && { echo "install-venv: $DEST already installed"; exit 0; }
rm -rf "$DEST"
# System site packages: the GPIO library (python3-lgpio) comes from Raspberry Pi OS, built for its
# kernel; everything else is pinned in the venv, which takes precedence.
python3 -m venv --system-site-packages "$DEST"
# shellcheck disable=SC2086
"$DEST/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir ${OG_PIP_ARGS:-} "$WHEEL"
"$DEST/bin/gateway" --help >/dev/null
touch "$DEST/.installed"
echo "install-venv: office-gateway $VERSION in $DEST"
