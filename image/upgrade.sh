#!/usr/bin/env bash
# office-gateway-upgrade: install a new version beside the running one, switch, and roll back if the
# new daemon does not become healthy in time.
#
#   office-gateway-upgrade WHEEL [VERSION]    install WHEEL as VERSION (default: from the file name)
#   office-gateway-upgrade --rollback         switch back to the previous version
#
# Steps: install into PREFIX/VERSION (its own venv; the running one is untouched) -> the new version
# validates the current config (a config it rejects stops the upgrade before anything changes) ->
# `current` is re-pointed atomically and `previous` remembers the old target -> restart -> healthy
# means `systemctl is-active` and GET /healthz answering 200, within OG_DEADLINE_S -> otherwise
# `current` goes back to the previous venv, the daemon is restarted on it, and the exit status is 1.
# Two versions are kept (current and previous); older ones are removed after a good upgrade.
#
# Environment (defaults for the appliance; tests point them at a temp dir and stand-ins):
#   OG_PREFIX=/opt/office-gateway   OG_CONFIG=/etc/office-gateway/gateway.toml
#   OG_SERVICE=office-gateway.service   OG_SYSTEMCTL=systemctl
#   OG_HEALTH_URL=http://127.0.0.1:8080/healthz   OG_DEADLINE_S=90   OG_POLL_S=1
#   OG_HEALTH_CMD  a command that exits 0 when healthy (default: is-active + GET OG_HEALTH_URL)
#   OG_INSTALL_CMD the installer, called as CMD WHEEL VERSION PREFIX (default: install-venv.sh)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PREFIX=${OG_PREFIX:-/opt/office-gateway}
CONFIG=${OG_CONFIG:-/etc/office-gateway/gateway.toml}
SERVICE=${OG_SERVICE:-office-gateway.service}
SYSTEMCTL=${OG_SYSTEMCTL:-systemctl}
HEALTH_URL=${OG_HEALTH_URL:-http://127.0.0.1:8080/healthz}
DEADLINE_S=${OG_DEADLINE_S:-90}
POLL_S=${OG_POLL_S:-1}
if [ -x "$HERE/install-venv.sh" ]; then INSTALL=${OG_INSTALL_CMD:-$HERE/install-venv.sh}
else INSTALL=${OG_INSTALL_CMD:-/usr/local/lib/office-gateway/install-venv.sh}; fi

say() { echo "office-gateway-upgrade: $*" >&2; }

default_health() {
  $SYSTEMCTL is-active --quiet "$SERVICE" || return 1
  "$PREFIX/current/bin/python" - "$HEALTH_URL" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
}

healthy() {
  if [ -n "${OG_HEALTH_CMD:-}" ]; then bash -c "$OG_HEALTH_CMD"; else default_health; fi
}

wait_healthy() {  # poll the health check until it passes or the deadline is reached
  local deadline=$(( $(date +%s%N) + ${DEADLINE_S%.*} * 1000000000 ))
  while :; do
    healthy && return 0
    [ "$(date +%s%N)" -lt "$deadline" ] || return 1
    sleep "$POLL_S"   # poll interval, bounded by the deadline above
  done
}

point() {  # LINK TARGET: re-point a symlink atomically (rename over the old one)
  ln -sfn "$2" "$PREFIX/.$1.tmp"
  mv -T "$PREFIX/.$1.tmp" "$PREFIX/$1"
}

switch_and_check() {  # VERSION: make it current, restart, wait for health
  point current "$1"
  $SYSTEMCTL restart "$SERVICE" || true
  wait_healthy
}

prune() {  # keep current and previous, remove other installed versions
  local cur prev d
  cur=$(readlink "$PREFIX/current" || true)
  prev=$(readlink "$PREFIX/previous" || true)
  for d in "$PREFIX"/*/; do
    d=$(basename "$d")
    [ -L "$PREFIX/$d" ] && continue   # current, previous
    [ "$d" = "$cur" ] || [ "$d" = "$prev" ] || [ ! -e "$PREFIX/$d/.installed" ] || rm -rf "${PREFIX:?}/$d"
  done
}

rollback_to() {  # VERSION
  say "rolling back to $1"
  if switch_and_check "$1"; then
    say "rolled back: $1 is running and healthy"
  else
    say "rolled back to $1, but it is not healthy either: check journalctl -u $SERVICE"
  fi
}

if [ "${1:-}" = "--rollback" ]; then
  prev=$(readlink "$PREFIX/previous" 2>/dev/null) || { say "no previous version to roll back to"; exit 2; }
  cur=$(readlink "$PREFIX/current")
  point previous "$cur"
  rollback_to "$prev"
  exit 0
fi

WHEEL=${1:?usage: office-gateway-upgrade WHEEL [VERSION] | --rollback}
VERSION=${2:-$(basename "$WHEEL" | sed -n 's/^office_gateway-\([^-]*\)-.*\.whl$/\1/p')}
[ -n "$VERSION" ] || { say "cannot tell the version from $WHEEL; give it as the second argument"; exit 2; }
CUR=$(readlink "$PREFIX/current" 2>/dev/null || true)
[ "$VERSION" != "$CUR" ] || { say "$VERSION is already current"; exit 0; }

"$INSTALL" "$WHEEL" "$VERSION" "$PREFIX"
if [ -f "$CONFIG" ] && ! "$PREFIX/$VERSION/bin/gateway" check-config "$CONFIG"; then
  say "$VERSION rejects $CONFIG; nothing was switched (fix the config, or stay on $CUR)"
  exit 2
fi

[ -n "$CUR" ] && point previous "$CUR"
say "switching ${CUR:-nothing} -> $VERSION"
if switch_and_check "$VERSION"; then
  say "$VERSION is running and healthy"
  prune
  exit 0
fi
say "$VERSION did not become healthy within ${DEADLINE_S} s"
if [ -z "$CUR" ]; then say "no previous version to roll back to"; exit 1; fi
point previous "$VERSION"   # so `--rollback` can retry the new one deliberately
rollback_to "$CUR"
exit 1
