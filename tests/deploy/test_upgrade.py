"""image/upgrade.sh: install beside, switch, health check, roll back — against fake venvs in a temp dir.

Stand-ins: OG_INSTALL_CMD makes a fake venv whose `gateway check-config` passes or fails;
OG_SYSTEMCTL records restarts; OG_HEALTH_CMD is healthy when `current` points at a version whose
venv holds a HEALTHY marker. Nothing of this machine's /opt or systemd is touched.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.deploy._helpers import IMAGE

INSTALL = """#!/bin/sh
# fake install-venv.sh: WHEEL VERSION PREFIX; the wheel's content says how the version behaves
set -e
d="$3/$2"; mkdir -p "$d/bin"
cp "$1" "$d/behaviour"
cat > "$d/bin/gateway" <<'SH'
#!/bin/sh
here=$(dirname "$0")/..
[ "$1" = check-config ] && ! grep -q rejects-config "$here/behaviour" && exit 0
[ "$1" = check-config ] && { echo "$2:1: web: unknown key" >&2; exit 2; }
exit 0
SH
chmod +x "$d/bin/gateway"
grep -q unhealthy "$d/behaviour" || touch "$d/HEALTHY"
touch "$d/.installed"
"""


@pytest.fixture
def box(tmp_path: Path) -> dict[str, object]:
    prefix = tmp_path / "opt"
    prefix.mkdir()
    (tmp_path / "install").write_text(INSTALL)
    (tmp_path / "install").chmod(0o755)
    (tmp_path / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/systemctl.log\nexit 0\n')
    (tmp_path / "systemctl").chmod(0o755)
    config = tmp_path / "gateway.toml"
    config.write_text("[site]\nname = 'x'\n")
    env = {**os.environ, "OG_PREFIX": str(prefix), "OG_CONFIG": str(config),
           "OG_INSTALL_CMD": str(tmp_path / "install"), "OG_SYSTEMCTL": str(tmp_path / "systemctl"),
           "OG_HEALTH_CMD": f'test -e "{prefix}/current/HEALTHY"', "OG_DEADLINE_S": "0", "OG_POLL_S": "0.05"}
    return {"tmp": tmp_path, "prefix": prefix, "env": env}


def _wheel(box: dict[str, object], version: str, behaviour: str = "good") -> Path:
    p = Path(str(box["tmp"])) / f"office_gateway-{version}-py3-none-any.whl"
    p.write_text(behaviour + "\n")
    return p


def _upgrade(box: dict[str, object], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(IMAGE / "upgrade.sh"), *args], env=box["env"],  # type: ignore[arg-type]
                          capture_output=True, text=True, timeout=30)


def _current(box: dict[str, object]) -> str:
    return os.readlink(Path(str(box["prefix"])) / "current")


def _restarts(box: dict[str, object]) -> int:
    log = Path(str(box["tmp"])) / "systemctl.log"
    return log.read_text().count("restart") if log.exists() else 0


def test_good_upgrade_switches_and_keeps_the_previous(box: dict[str, object]) -> None:
    assert _upgrade(box, str(_wheel(box, "1.0.0"))).returncode == 0
    res = _upgrade(box, str(_wheel(box, "1.1.0")))
    assert res.returncode == 0, res.stderr
    assert _current(box) == "1.1.0"
    assert os.readlink(Path(str(box["prefix"])) / "previous") == "1.0.0"
    assert _restarts(box) == 2


def test_unhealthy_upgrade_rolls_back(box: dict[str, object]) -> None:
    _upgrade(box, str(_wheel(box, "1.0.0")))
    res = _upgrade(box, str(_wheel(box, "2.0.0", "unhealthy")))
    assert res.returncode == 1
    assert "rolled back: 1.0.0 is running and healthy" in res.stderr
    assert _current(box) == "1.0.0"
    prefix = Path(str(box["prefix"]))
    assert (prefix / "2.0.0/.installed").exists(), "the failed version is kept for a deliberate retry"
    assert os.readlink(prefix / "previous") == "2.0.0"
    assert _restarts(box) == 3  # first install, the new version, the rollback


def test_config_rejected_by_new_version_switches_nothing(box: dict[str, object]) -> None:
    _upgrade(box, str(_wheel(box, "1.0.0")))
    res = _upgrade(box, str(_wheel(box, "3.0.0", "rejects-config")))
    assert res.returncode == 2 and "rejects" in res.stderr
    assert _current(box) == "1.0.0" and _restarts(box) == 1


def test_manual_rollback_and_pruning(box: dict[str, object]) -> None:
    for v in ("1.0.0", "1.1.0", "1.2.0"):
        assert _upgrade(box, str(_wheel(box, v))).returncode == 0
    prefix = Path(str(box["prefix"]))
    assert sorted(p.name for p in prefix.iterdir() if not p.is_symlink()) == ["1.1.0", "1.2.0"]
    res = _upgrade(box, "--rollback")
    assert res.returncode == 0, res.stderr
    assert _current(box) == "1.1.0" and os.readlink(prefix / "previous") == "1.2.0"


def test_health_is_polled_until_the_deadline(box: dict[str, object]) -> None:
    """A daemon that becomes ready a little after the restart is not rolled back."""
    _upgrade(box, str(_wheel(box, "1.0.0")))
    flag = Path(str(box["tmp"])) / "polls"
    env = dict(box["env"])  # type: ignore[call-overload]
    # healthy on the third poll
    env["OG_HEALTH_CMD"] = f'echo x >> {flag}; [ $(wc -l < {flag}) -ge 3 ]'
    env["OG_DEADLINE_S"] = "20"
    res = subprocess.run(["bash", str(IMAGE / "upgrade.sh"), str(_wheel(box, "1.1.0"))], env=env,
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert _current(box) == "1.1.0" and len(flag.read_text().split()) == 3
