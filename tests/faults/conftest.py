"""Fault injection in the lab: one whole office (real peers + the daemon) per test module.

Each module gets its own lab (own prefix, own lab directory), brought up with the daemon running and torn
down after, so fault modules can run beside other lab tests. Everything goes through the public contracts:
the `gateway lab` CLI, the daemon's HTTP API and its journal (read-only).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import config
from gateway.store.journal import JournalReader
from tests.conftest import needs_root, wait_until

ROOT = Path(__file__).resolve().parents[2]
_seq = itertools.count()


class Office:
    """A lab office with the daemon in it, driven only through the lab CLI, the API and the journal."""

    def __init__(self, base: Path) -> None:
        self.prefix = f"f{os.getpid() % 1000:03d}{next(_seq) % 10}"
        self.base = base
        self.env = {**os.environ, "GATEWAY_LAB_DIR": str(base), "GATEWAY_LAB_PREFIX": self.prefix,
                    "PYTHONPATH": str(ROOT)}
        self.info: dict[str, Any] = {}

    # -- the lab CLI ------------------------------------------------------------------------------------
    def gw(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True,
                              env=self.env, cwd=str(ROOT), timeout=timeout)

    def lab(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = self.gw("lab", *args)
        if check:
            assert r.returncode == 0, f"gateway lab {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.lab("status", "--json").stdout)
        return out

    def ns(self, role: str, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a command in one of the lab's namespaces (gw, isp, lte, inet, lan)."""
        return subprocess.run(["ip", "netns", "exec", f"{self.prefix}{role}", *argv], capture_output=True,
                              text=True, timeout=timeout)

    # -- the daemon -------------------------------------------------------------------------------------
    @property
    def web(self) -> str:
        return str(self.info["web"]).rstrip("/")

    @property
    def pid(self) -> int:
        return int(self.status()["daemon"]["pid"])

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except (OSError, KeyError, TypeError, ValueError):
            return False
        return True

    def api(self, path: str, timeout: float = 5.0) -> Any:
        with urllib.request.urlopen(self.web + path, timeout=timeout) as r:
            return json.loads(r.read())

    def snapshot(self) -> dict[str, Any] | None:
        try:
            out: dict[str, Any] = self.api("/api/v1/status")
            return out
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def wait(self, pred: Any, timeout: float = 20.0, what: str = "") -> Any:
        def safe() -> Any:
            try:
                return pred()
            except (OSError, KeyError, TypeError, ValueError, urllib.error.URLError):
                return None
        return wait_until(safe, timeout, interval=0.1, what=what)

    # -- the journal ------------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return Path(self.info["config"])

    @property
    def journal_path(self) -> Path:
        return Path(config.load(self.config_path).site.state_dir) / "journal.db"

    def events(self, kind_prefix: str | None = None, since_id: int = 0) -> list[dict[str, Any]]:
        return JournalReader(self.journal_path).events(since_id=since_id, limit=100000, kind_prefix=kind_prefix)

    def last_event_id(self) -> int:
        evs = self.events()
        return int(evs[-1]["id"]) if evs else 0


def transition_chain(evs: list[dict[str, Any]]) -> list[str]:
    """The states a run of state events walks through (the first one's ``from``, then each ``to``), checked
    to be one event per transition: each starts where the one before ended and changes something."""
    chain: list[str] = []
    for e in evs:
        d = e["data"]
        assert d["from"] != d["to"], f"a state event that is no transition: {e['message']}"
        if chain:
            assert d["from"] == chain[-1], f"journaled twice or skipped: {[x['message'] for x in evs]}"
        else:
            chain.append(d["from"])
        chain.append(d["to"])
    return chain


def still_the_same_daemon(office: Office, pid: int) -> None:
    os.kill(pid, 0)  # raises if it died
    assert office.pid == pid, "the daemon restarted"


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Office]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, real peers)")
    run = Office(tmp_path_factory.mktemp("office"))
    try:
        run.lab("up")
        run.lab("daemon", "start")
        run.info = run.status()
        run.wait(run.snapshot, 30, "the daemon's API")
        yield run
    finally:
        run.gw("lab", "down")


__all__ = ["Office", "office", "needs_root", "still_the_same_daemon", "transition_chain"]
