"""The lab's own figures: how long `gateway lab up`/`down`/`daemon start` take (the suite uses the lab freely, so
these must stay in seconds), and how soon a power cut shows through upsd (the 2 s promise of the contract).

Baselines are measured in the same run: five bare network namespaces added and deleted (the floor under any
lab), and dummy-ups' own poll interval (1 s) for the power cut.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _gw(env: dict[str, str], *args: str) -> float:
    t = time.monotonic()
    subprocess.run([sys.executable, "-m", "gateway", "lab", *args], env=env, cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    return time.monotonic() - t


def _bare_namespaces(prefix: str) -> float:
    names = [f"{prefix}b{i}" for i in range(5)]
    t = time.monotonic()
    for n in names:
        subprocess.run(["ip", "netns", "add", n], check=True)
    for n in names:
        subprocess.run(["ip", "netns", "delete", n], check=True)
    return time.monotonic() - t


def run() -> dict[str, dict[str, Any]]:
    if os.geteuid() != 0:
        raise RuntimeError("the lab needs root")
    from gateway.lab.ups import UpsPeer

    prefix = f"b{os.getpid() % 10000}"
    base = Path(tempfile.mkdtemp(prefix="og-bench-lab-"))
    env = {**os.environ, "GATEWAY_LAB_DIR": str(base), "GATEWAY_LAB_PREFIX": prefix, "PYTHONPATH": str(ROOT)}
    ups_s, downs, starts, cuts = [], [], [], []
    floor = statistics.median(_bare_namespaces(prefix) for _ in range(3))
    try:
        for _ in range(3):
            ups_s.append(_gw(env, "up"))
            starts.append(_gw(env, "daemon", "start"))
            peer = UpsPeer.attach(base / prefix / "ups")
            for action, want in (("cut", "OB"), ("restore", "OL")) * 2:
                t = time.monotonic()
                getattr(peer, action)()
                while not peer.status().startswith(want):
                    time.sleep(0.01)  # polling upsd, as a client would
                cuts.append(time.monotonic() - t)
            downs.append(_gw(env, "down"))
    finally:
        subprocess.run([sys.executable, "-m", "gateway", "lab", "down"], env=env, cwd=ROOT, capture_output=True,
                       timeout=300)
        if base.exists() and not any(base.iterdir()):
            base.rmdir()
    return {
        "lab_up_s": {"value": statistics.median(ups_s), "unit": "s", "baseline": floor,
                     "goal": "seconds, not minutes (baseline: 5 bare namespaces)"},
        "lab_down_s": {"value": statistics.median(downs), "unit": "s", "baseline": floor},
        "lab_daemon_start_s": {"value": statistics.median(starts), "unit": "s", "baseline": None,
                               "goal": "until /healthz answers"},
        "lab_ups_change_visible_s": {"value": statistics.median(cuts), "unit": "s", "baseline": 1.0,
                                     "goal": "< 2 s (baseline: dummy-ups poll interval)"},
    }


if __name__ == "__main__":
    for k, v in run().items():
        print(k, v)
