"""The button and the real UplinkService in one daemon context: a hold on the mock pin moves the default route
to LTE and the status shows ``override: "lte"``; a second hold returns to automatic (fake net and probes)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import config
from gateway.drivers.net_fake import FakeNet
from gateway.drivers.probe_fake import FakeProber, FakeWorld
from gateway.lab import panel_client
from gateway.runtime.panel import PanelService
from gateway.runtime.service import Context
from gateway.runtime.uplinks import UplinkService
from gateway.store import Journal
from tests.panel.test_service import until

CFG = """
[site]
name = "Test"
state_dir = "{state}"

[ups]

[[uplinks]]
name = "wired"
interface = "eth1"
role = "primary"
gateway = "192.0.2.1"
table = 101
probe_targets = ["t1", "t2", "t3"]

[[uplinks]]
name = "lte"
interface = "wwan0"
role = "backup"
table = 102
probe_targets = ["t1", "t2", "t3"]

[failover]
probe_interval_ms = 50
standby_probe_interval_ms = 100
probe_timeout_ms = 200
failback_hold_s = 0.3

[panel]
pin_factory = "mock"
hold_s = 0.5
"""


@pytest.fixture
def state_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="pnu", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_button_hold_moves_the_default_route_and_back(state_dir: Path) -> None:
    cfg = config.parse(CFG.format(state=state_dir), "test.toml")
    ctx = Context(config=cfg, journal=Journal(state_dir / "journal.db"))
    net = FakeNet(links={"eth1": True, "wwan0": True}, addrs={"eth1": "192.0.2.2", "wwan0": "198.51.100.2"},
                  default=("eth1", "192.0.2.1", 100))
    world = FakeWorld(rtt_ms=1.0)

    def prober(kind: str, source: str | None, iface: str | None, on_reply: Any) -> FakeProber:
        return FakeProber(world, kind, source, iface, on_reply)

    uplinks = UplinkService(ctx, net=net, prober_factory=prober, watch_links=False)
    panel = PanelService(ctx)

    def default_iface() -> str | None:
        return net.default[0] if net.default else None

    async def main() -> None:
        await uplinks.start()
        await panel.start()
        try:
            await until(lambda: panel.snapshot()["panel"]["leds"]["network"]["pattern"] == "on", what="wired up")
            r = await asyncio.to_thread(panel_client.hold, state_dir)
            assert r["decided"] == "failover_lte" and r["override"] == "lte"
            assert default_iface() == "wwan0" and uplinks.snapshot()["override"] == "lte"
            await until(lambda: panel.snapshot()["panel"]["leds"]["network"]["pattern"] == "slow_blink")
            st = await asyncio.to_thread(panel_client.state, state_dir)
            assert st["leds"]["alert"]["color"] == "amber"
            r = await asyncio.to_thread(panel_client.hold, state_dir)
            assert r["decided"] == "failover_auto" and r["override"] is None
            assert uplinks.snapshot()["override"] is None
            await until(lambda: default_iface() == "eth1", what="back to wired")
        finally:
            await panel.stop()
            await uplinks.stop()

    asyncio.run(main())
    msgs = [e["message"] for e in ctx.journal.events()]
    assert "button: failover target=lte" in msgs and "button: failover target=auto" in msgs
