#!/usr/bin/env bash
# systemd-analyze verify the units staged under ROOT as the image would have them: in a private mount
# namespace, ROOT's /opt, /usr/local and unit directories are mounted over this machine's, so
# ExecStart= binaries resolve and drop-ins apply, and nothing of this machine is changed.
#   image/verify-units.sh ROOT
set -euo pipefail
ROOT=$(cd "${1:?usage: verify-units.sh ROOT}" && pwd)
if [ "${_OG_IN_NS:-}" != 1 ]; then
  if [ "$(id -u)" = 0 ]; then ns=(unshare -m --propagation private); else ns=(unshare -rm --propagation private); fi
  exec env _OG_IN_NS=1 "${ns[@]}" bash "${BASH_SOURCE[0]}" "$ROOT"
fi
for d in /opt /usr/local /etc/systemd/system /etc/systemd/journald.conf.d; do
  [ -d "$ROOT$d" ] || continue
  mkdir -p "$d" 2>/dev/null || mount -t tmpfs tmpfs "$(dirname "$d")"
  mount --bind "$ROOT$d" "$d"
done
units=()
for u in /etc/systemd/system/*.service /etc/systemd/system/*.timer /etc/systemd/system/*.mount; do
  [ -L "$u" ] || units+=("$u")
done
# the packaged units our drop-ins extend, when installed here
for u in nut-server.service nut-monitor.service; do
  [ -e "/lib/systemd/system/$u" ] && units+=("$u")
done
out=$(systemd-analyze verify --man=no "${units[@]}" 2>&1) || { echo "$out"; exit 1; }
# verify exits 0 on some warnings (unknown keys); treat those as failures too
if grep -Eiq "unknown (key|section)|ignoring|invalid|failed" <<<"$out"; then echo "$out"; exit 1; fi
echo "verified: ${units[*]}"
