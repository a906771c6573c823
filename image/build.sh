#!/usr/bin/env bash
# make image: the full appliance image, built with pi-gen (the tool that builds Raspberry Pi OS itself)
# from stage0-2 (= Raspberry Pi OS Lite) plus image/pi-gen/stage-office-gateway.
#
# Needs: Docker, git, network, ~30 GB free, about an hour. Not part of `make test`; `make image-check`
# verifies the same staging on any Debian machine in a second.
#
#   image/build.sh            env: PIGEN_REF (pinned pi-gen commit/tag), OG_WORK (build dir),
#                                  OG_HOSTNAME, OG_TIMEZONE, OG_LOCALE, OG_FIRST_USER, OG_SSH_KEY_FILE
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PIGEN_URL=${PIGEN_URL:-https://github.com/RPi-Distro/pi-gen.git}
# A release tag of the arm64 branch (bookworm); bump deliberately, then re-run image-check and a
# test flash. Tags: https://github.com/RPi-Distro/pi-gen/tags
PIGEN_REF=${PIGEN_REF:-2024-11-19-raspios-bookworm-arm64}
WORK=${OG_WORK:-$REPO/image/build}
OUT=$WORK/deploy

for tool in git docker python3; do
  command -v "$tool" >/dev/null || { echo "build.sh: needs $tool" >&2; exit 2; }
done
VERSION=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$REPO/pyproject.toml")

echo "==> checks first: the staging must pass image-check before an hour of building"
bash "$REPO/image/check.sh"

echo "==> wheel $VERSION"
rm -rf "$WORK/dist" && mkdir -p "$WORK/dist"
python3 -m pip wheel --no-deps --wheel-dir "$WORK/dist" "$REPO"

echo "==> pi-gen $PIGEN_REF"
if [ ! -d "$WORK/pi-gen/.git" ]; then
  git clone --filter=blob:none "$PIGEN_URL" "$WORK/pi-gen"
fi
git -C "$WORK/pi-gen" fetch --tags --quiet origin
git -C "$WORK/pi-gen" checkout --quiet --force "$PIGEN_REF"
git -C "$WORK/pi-gen" clean -fdxq -e work -e deploy

STAGE=$WORK/pi-gen/stage-office-gateway
rm -rf "$STAGE" && cp -a "$REPO/image/pi-gen/stage-office-gateway" "$STAGE"
FILES=$STAGE/00-office-gateway/files
mkdir -p "$FILES/repo"
cp "$WORK"/dist/office_gateway-*.whl "$FILES/"
echo "$VERSION" >"$FILES/VERSION"
# only what stage.sh reads, not the whole checkout
tar -C "$REPO" -cf - image systemd hw/udev hw/nut README.md gateway/example.toml pyproject.toml | tar -C "$FILES/repo" -xf -
# Lite only: no desktop stages, and no intermediate stage2 image
touch "$WORK/pi-gen/stage2/SKIP_IMAGES"

cat >"$WORK/pi-gen/config" <<CFG
IMG_NAME=office-gateway
RELEASE=bookworm
TARGET_HOSTNAME=${OG_HOSTNAME:-office-gateway}
TIMEZONE_DEFAULT=${OG_TIMEZONE:-Europe/Berlin}
LOCALE_DEFAULT=${OG_LOCALE:-en_GB.UTF-8}
KEYBOARD_KEYMAP=us
FIRST_USER_NAME=${OG_FIRST_USER:-admin}
DISABLE_FIRST_BOOT_USER_RENAME=1
ENABLE_SSH=1
PUBKEY_ONLY_SSH=1
PUBKEY_SSH_FIRST_USER="$( [ -n "${OG_SSH_KEY_FILE:-}" ] && cat "$OG_SSH_KEY_FILE" )"
STAGE_LIST="stage0 stage1 stage2 stage-office-gateway"
DEPLOY_COMPRESSION=xz
CFG

echo "==> building (docker)"
( cd "$WORK/pi-gen" && ./build-docker.sh )
mkdir -p "$OUT"
cp "$WORK"/pi-gen/deploy/*office-gateway* "$OUT/"
echo "==> image in $OUT:"
ls -l "$OUT"
