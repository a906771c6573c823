"""Driving the lab from benchmarks and fault tests, only through its public contract (the `gateway lab` CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def gateway(*args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run the `gateway` command of this checkout; raise with its output when it fails and check is set."""
    proc = subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    if check and proc.returncode != 0:
        raise RuntimeError(f"gateway {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def status() -> dict[str, Any]:
    return json.loads(gateway("lab", "status", "--json").stdout)


def snapshot(web: str, timeout: float = 5.0) -> dict[str, Any]:
    with urllib.request.urlopen(web.rstrip("/") + "/api/v1/status", timeout=timeout) as r:
        data: dict[str, Any] = json.loads(r.read())
        return data


def wait_for(pred: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = pred()
        except Exception:  # the daemon restarting, a peer not up yet: ask again until the deadline
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def proc_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class Lab:
    """`with Lab() as lab:` brings the lab up with the daemon running and tears it all down after."""

    def __enter__(self) -> Lab:
        gateway("lab", "up", timeout=300)
        try:
            gateway("lab", "daemon", "start", timeout=120)
            self.status = status()
        except Exception:
            gateway("lab", "down", check=False, timeout=120)
            raise
        return self

    @property
    def web(self) -> str:
        return str(self.status["web"])

    @property
    def pid(self) -> int:
        return int(status()["daemon"]["pid"])

    def __exit__(self, *exc: object) -> None:
        gateway("lab", "down", check=False, timeout=120)
