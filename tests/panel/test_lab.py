"""The issue's end to end, in the lab: `gateway lab button hold` moves the gateway's default route to LTE and
/api/v1/status shows override "lte"; a second hold returns to automatic (and wired).  A lab of its own
(unique prefix and lab dir), removed afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import needs_root, wait_until

pytestmark = [pytest.mark.lab, needs_root]
ROOT = Path(__file__).resolve().parents[2]


class Lab:
    def __init__(self, base: Path) -> None:
        self.prefix = f"t{os.getpid() % 10000}p"
        self.env = {**os.environ, "GATEWAY_LAB_DIR": str(base), "GATEWAY_LAB_PREFIX": self.prefix,
                    "PYTHONPATH": str(ROOT)}

    def lab(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway", "lab", *args], capture_output=True, text=True,
                              env=self.env, cwd=str(ROOT), timeout=timeout)

    def status(self) -> dict[str, Any]:
        r = self.lab("status", "--json")
        assert r.returncode == 0, r.stderr
        out: dict[str, Any] = json.loads(r.stdout)
        return out

    def default_route(self) -> str:
        r = subprocess.run(["ip", "netns", "exec", self.status()["netns"]["gw"], "ip", "-j", "route", "show",
                            "default"], capture_output=True, text=True, timeout=30)
        routes = json.loads(r.stdout or "[]")
        return str(routes[0].get("dev", "")) if routes else ""

    def api(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.status()["web"] + "/api/v1/status", timeout=5) as r:
            out: dict[str, Any] = json.loads(r.read())
            return out


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    base = Path(tempfile.mkdtemp(prefix="pnl", dir="/tmp"))
    run = Lab(base)
    try:
        r = run.lab("up")
        assert r.returncode == 0, r.stderr
        r = run.lab("daemon", "start")
        assert r.returncode == 0, r.stderr
        yield run
    finally:
        run.lab("down")
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_button_hold_fails_over_to_lte_and_back(lab: Lab) -> None:
    wait_until(lambda: any(u["active"] for u in lab.api()["uplinks"]), 30, 0.2, what="an active uplink")
    wired = next(u for u in lab.api()["uplinks"] if u["role"] == "primary")
    lte = next(u for u in lab.api()["uplinks"] if u["role"] == "backup")
    wait_until(lambda: lab.default_route() == wired["interface"], 30, 0.2, what="default route on wired")

    r = lab.lab("button", "hold")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["decided"] == "failover_lte"
    assert lab.api()["override"] == "lte"
    wait_until(lambda: lab.default_route() == lte["interface"], 15, 0.1, what="default route on LTE")
    panel = json.loads(lab.lab("panel", "--json").stdout)
    assert set(panel) == {"leds", "buzzer"} and panel["leds"]["network"]["pattern"] == "slow_blink"

    r = lab.lab("button", "hold")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["decided"] == "failover_auto"
    assert lab.api()["override"] is None
    wait_until(lambda: lab.default_route() == wired["interface"], 60, 0.2, what="back on wired")
