"""systemd units: `systemd-analyze verify` on every unit and drop-in, and the daemon's security score."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy._helpers import IMAGE, REPO, SYSTEMD, need

UNITS = sorted(p.name for p in SYSTEMD.iterdir() if p.suffix in (".service", ".timer", ".mount"))
SCORE_LIMIT = 3.0  # "OK" or better in systemd-analyze's scale


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temp root with the units where the image puts them and a stand-in ExecStart binary."""
    need("systemd-analyze")
    root = tmp_path_factory.mktemp("root")
    subprocess.run(["bash", str(IMAGE / "stage.sh"), str(root), "0.0.0-test"], check=True, capture_output=True)
    bin_dir = root / "opt/office-gateway/0.0.0-test/bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "gateway").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "gateway").chmod(0o755)
    return root


def test_every_unit_is_staged() -> None:
    assert {"office-gateway.service", "office-gateway-drill.service", "office-gateway-drill.timer",
            "office-gateway-firstboot.service"} <= set(UNITS)


def test_verify_passes_on_every_unit_and_drop_in(staged: Path) -> None:
    res = subprocess.run(["bash", str(IMAGE / "verify-units.sh"), str(staged)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    for unit in UNITS:
        assert unit in res.stdout, f"{unit} was not verified"
    if Path("/lib/systemd/system/nut-server.service").exists():  # the drop-ins are applied to these
        assert "nut-server.service" in res.stdout and "nut-monitor.service" in res.stdout


def test_verify_catches_a_broken_unit(staged: Path, tmp_path: Path) -> None:
    """The check is not vacuous: a misspelt key fails it."""
    broken = tmp_path / "root"
    subprocess.run(["cp", "-a", str(staged), str(broken)], check=True)
    unit = broken / "etc/systemd/system/office-gateway.service"
    unit.write_text(unit.read_text().replace("WatchdogSec=", "WatchdogSecs="))
    res = subprocess.run(["bash", str(IMAGE / "verify-units.sh"), str(broken)], capture_output=True, text=True)
    assert res.returncode != 0
    assert "WatchdogSecs" in res.stdout + res.stderr


def _security(unit: Path) -> tuple[float, str]:
    res = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
                         capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", res.stdout + res.stderr)
    assert m, res.stdout + res.stderr
    return float(m.group(1)), m.group(2)


def test_security_score_of_the_daemon(capsys: pytest.CaptureFixture[str]) -> None:
    need("systemd-analyze")
    score, label = _security(SYSTEMD / "office-gateway.service")
    with capsys.disabled():
        print(f"\nsystemd-analyze security office-gateway.service: {score} {label}")
    assert score <= SCORE_LIMIT, f"exposure {score} {label}; keep it <= {SCORE_LIMIT}"
    recorded = (SYSTEMD / "README.md").read_text()
    assert f"{score} {label}" in recorded, f"systemd/README.md should record the measured score {score} {label}"


def test_security_score_of_the_drill_trigger() -> None:
    need("systemd-analyze")
    score, _ = _security(SYSTEMD / "office-gateway-drill.service")
    assert score <= SCORE_LIMIT


def _directives(unit: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_daemon_unit_contract() -> None:
    """What the daemon and the image rely on (sd_notify, watchdog, paths, least privilege)."""
    d = _directives(SYSTEMD / "office-gateway.service")
    one = {k: v[-1] for k, v in d.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["WatchdogSec"] == "30s" and one["Restart"] == "always"
    assert one["ExecStart"] == "/opt/office-gateway/current/bin/gateway run --config /etc/office-gateway/gateway.toml"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["StateDirectory"] == "office-gateway" and one["ConfigurationDirectory"] == "office-gateway"
    assert one["User"] == "office-gateway"
    assert set(one["CapabilityBoundingSet"].split()) == {"CAP_NET_ADMIN", "CAP_NET_RAW"}
    assert set(one["AmbientCapabilities"].split()) == {"CAP_NET_ADMIN", "CAP_NET_RAW"}
    assert one["DevicePolicy"] == "closed"
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges", "MemoryDenyWriteExecute"):
        assert key in one
    # a crash loop is paced, never abandoned: StartLimitBurst starts cannot fit in the interval
    sec = lambda s: float(s.rstrip("s"))  # noqa: E731
    assert (int(one["StartLimitBurst"]) - 1) * sec(one["RestartSec"]) > sec(one["StartLimitIntervalSec"])
    # the web UI port needs no CAP_NET_BIND_SERVICE: the example config listens above 1024
    example = (REPO / "gateway/example.toml").read_text()
    port = int(re.search(r'^listen = ".*:(\d+)"', example, re.M).group(1))  # type: ignore[union-attr]
    assert port >= 1024


def test_drill_timer_runs_the_scheduled_drill() -> None:
    timer = _directives(SYSTEMD / "office-gateway-drill.timer")
    svc = _directives(SYSTEMD / "office-gateway-drill.service")
    assert timer["Persistent"] == ["false"]
    assert svc["ExecStart"][0].endswith("drill power --scheduled")
    # the CLI accepts exactly that command line
    from gateway.cli import build_parser

    args = build_parser().parse_args(svc["ExecStart"][0].split()[1:])
    assert args.cmd == "drill" and args.kind == "power" and args.scheduled


def test_next_drill_trigger_is_a_tuesday_morning() -> None:
    need("systemd-analyze")
    spec = _directives(SYSTEMD / "office-gateway-drill.timer")["OnCalendar"][0]
    res = subprocess.run(["systemd-analyze", "calendar", spec], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert re.search(r"Next elapse: Tue \S+ 10:00:00", res.stdout), res.stdout
