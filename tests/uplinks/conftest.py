"""Fixtures of the uplink tests: a lab network of real namespaces (unique per run), and the service in it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import config
from gateway.lab.net import Topology
from gateway.runtime.service import Context
from gateway.runtime.uplinks import UplinkService
from gateway.store import Journal
from tests.conftest import until  # noqa: F401  (the uplink tests import it from here)

_seq = [0]


def lab_config(topo: Topology, state: Path, hold_s: float = 1.0, extra: str = "") -> config.Config:
    text = (f'[site]\nname = "Lab"\nstate_dir = "{state}"\n\n[ups]\n\n{topo.uplinks_toml()}\n'
            f"[failover]\nprobe_interval_ms = 200\nstandby_probe_interval_ms = 400\nfailback_hold_s = {hold_s}\n"
            f"{extra}\n[modem]\nenabled = false\n")
    return config.parse(text, "lab-test.toml")


@pytest.fixture
def topo() -> Iterator[Topology]:
    _seq[0] += 1
    t = Topology(f"u{os.getpid() % 10000}{_seq[0]}")
    t.create()
    try:
        yield t
    finally:
        t.destroy()


def make_service(topo: Topology, tmp: Path, hold_s: float = 1.0, **kw: Any) -> tuple[UplinkService, Context]:
    cfg = lab_config(topo, tmp, hold_s)
    ctx = Context(config=cfg, journal=Journal(tmp / "journal.db"), netns=topo.ns["gw"])
    return UplinkService(ctx, **kw), ctx



def uplink(svc: UplinkService, name: str) -> dict[str, Any]:
    return next(u for u in svc.snapshot()["uplinks"] if u["name"] == name)
