"""The uplink service with fake drivers: facts, journal, snapshot, override requests, maintenance, failures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway import config
from gateway.core.signals import (
    ActiveUplinkChanged,
    MaintenanceStatus,
    OverrideChanged,
    OverrideRequest,
    UplinkStatus,
)
from gateway.drivers.net_fake import FakeNet
from gateway.drivers.probe_fake import FakeProber, FakeWorld
from gateway.runtime.service import Context
from gateway.runtime.uplinks import UplinkService
from gateway.store import Journal
from tests.uplinks.conftest import until, uplink

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
dns = ["192.0.2.53"]

[[uplinks]]
name = "lte"
interface = "wwan0"
role = "backup"
table = 102
probe_targets = ["t1", "t2", "t3"]
dns = ["198.51.100.53"]

[failover]
probe_interval_ms = 50
standby_probe_interval_ms = 100
probe_timeout_ms = 200
failback_hold_s = 0.3
"""


def make(tmp: Path) -> tuple[UplinkService, Context, FakeNet, FakeWorld, list[Any]]:
    cfg = config.parse(CFG.format(state=tmp), "test.toml")
    ctx = Context(config=cfg, journal=Journal(tmp / "journal.db"))
    net = FakeNet(links={"eth1": True, "wwan0": True}, addrs={"eth1": "192.0.2.2", "wwan0": "198.51.100.2"},
                  default=("eth1", "192.0.2.1", 100))
    world = FakeWorld(rtt_ms=1.0)
    facts: list[Any] = []
    ctx.bus.subscribe(UplinkStatus, facts.append)
    ctx.bus.subscribe(ActiveUplinkChanged, facts.append)

    def factory(kind: str, source: str | None, iface: str | None, on_reply: Any) -> FakeProber:
        return FakeProber(world, kind, source, iface, on_reply)

    svc = UplinkService(ctx, net=net, prober_factory=factory, watch_links=False)
    return svc, ctx, net, world, facts


def test_failover_facts_journal_dns_and_snapshot(tmp_path: Path) -> None:
    async def main() -> None:
        svc, ctx, net, world, facts = make(tmp_path)
        await svc.start()
        try:
            await until(lambda: uplink(svc, "wired")["state"] == "up" and uplink(svc, "lte")["state"] == "standby")
            assert net.tables[101] == ("eth1", "192.0.2.1", "192.0.2.2")
            world.down.add("eth1")
            await until(lambda: net.default is not None and net.default[0] == "wwan0", what="failover")
            # the flush runs in a worker thread after the route moved: wait for it, it is not synchronous
            await until(lambda: "192.0.2.2" in net.flushed, what="conntrack of wired flushed")
            assert any(isinstance(f, ActiveUplinkChanged) and f.name == "lte" for f in facts)
            assert any(isinstance(f, UplinkStatus) and f.name == "wired" and f.state == "down" for f in facts)
            assert (tmp_path / "dns-upstream.conf").read_text() == "server=198.51.100.53@wwan0\n"
            snap = svc.snapshot()
            assert snap["override"] is None
            w = uplink(svc, "wired")
            assert set(w) >= {"name", "state", "active", "rtt_ms", "loss_pct", "since"}
            assert w["state"] == "down" and not w["active"] and uplink(svc, "lte")["active"]
            world.down.clear()
            await until(lambda: net.default is not None and net.default[0] == "eth1", what="failback")
            kinds = [e["kind"] for e in ctx.journal.events(kind_prefix="uplink.")]
            assert kinds.count("uplink.switch") == 2
            names = {m[0] for m in svc.metrics()}
            assert {"gateway_uplink_up", "gateway_uplink_active", "gateway_uplink_switches_total"} <= names
        finally:
            await svc.stop()

    asyncio.run(main())


def test_override_request_maintenance_and_both_down(tmp_path: Path) -> None:
    async def main() -> None:
        svc, ctx, net, world, facts = make(tmp_path)
        await svc.start()
        try:
            await until(lambda: uplink(svc, "wired")["state"] == "up")
            ctx.bus.publish(OverrideRequest("lte", "button"))
            assert net.default is not None and net.default[0] == "wwan0"
            assert svc.snapshot()["override"] == "lte"
            ctx.bus.publish(OverrideRequest("auto", "button"))
            await until(lambda: net.default is not None and net.default[0] == "eth1")
            ctx.bus.publish(MaintenanceStatus(active=("isp works",), switch_to_lte=True))
            assert net.default is not None and net.default[0] == "wwan0"
            ctx.bus.publish(MaintenanceStatus())
            await until(lambda: net.default is not None and net.default[0] == "eth1")
            world.down.update({"eth1", "wwan0"})
            await until(lambda: any(e["severity"] == "critical" for e in ctx.journal.events(kind_prefix="uplink.")),
                        what="critical event")
            assert net.default is not None  # the last route is kept
        finally:
            await svc.stop()

    asyncio.run(main())


def test_carrier_loss_and_netlink_failure_are_logged_transitions(tmp_path: Path) -> None:
    async def main() -> None:
        svc, ctx, net, world, facts = make(tmp_path)
        await svc.start()
        try:
            await until(lambda: uplink(svc, "wired")["state"] == "up")
            net.links["eth1"] = False
            world.unreachable.add("eth1")
            await until(lambda: net.default is not None and net.default[0] == "wwan0", what="carrier failover")
            assert uplink(svc, "wired")["reason"] == "carrier lost"
            net.fail = True
            await until(lambda: any(e["kind"] == "uplink.driver" for e in ctx.journal.events(kind_prefix="uplink.")),
                        timeout=15, what="driver failure recorded")
            n = len(ctx.journal.events(kind_prefix="uplink.driver"))
            net.fail = False
            await until(lambda: len(ctx.journal.events(kind_prefix="uplink.driver")) > n, timeout=15,
                        what="recovery recorded")
        finally:
            await svc.stop()

    asyncio.run(main())


def test_stop_right_after_start_leaves_no_coroutine_unawaited(tmp_path: Path) -> None:
    """Tasks cancelled before their first step close their own coroutines (no 'never awaited' warning)."""
    import gc
    import warnings

    async def main() -> None:
        svc, ctx, net, world, facts = make(tmp_path)
        await svc.start()
        await svc.stop()  # no await in between: no spawned task has run a single step
        assert svc._tasks == []

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        asyncio.run(main())
        gc.collect()
    never = [str(w.message) for w in seen if "never awaited" in str(w.message)]
    assert never == []


def test_override_and_active_uplink_survive_a_restart(tmp_path: Path) -> None:
    """A manual override wins until set back to auto, also across a restart of the daemon; with no route in
    place after the restart (a reboot), traffic resumes on the uplink the journal says it was on."""
    async def main() -> None:
        svc, ctx, net, world, facts = make(tmp_path)
        await svc.start()
        try:
            await until(lambda: uplink(svc, "wired")["state"] == "up")
            ctx.bus.publish(OverrideRequest("lte", "button"))
            assert net.default is not None and net.default[0] == "wwan0"
        finally:
            await svc.stop()
        overrides = len(ctx.journal.events(kind_prefix="uplink.override"))
        ctx.journal.close()
        # the restarted daemon: the same journal, the kernel's route gone
        svc2, ctx2, net2, _, _ = make(tmp_path)
        net2.default = None
        seen: list[OverrideChanged] = []
        ctx2.bus.subscribe(OverrideChanged, seen.append)
        await svc2.start()
        try:
            assert svc2.snapshot()["override"] == "lte"
            assert net2.default is not None and net2.default[0] == "wwan0"
            assert [(f.override, f.who) for f in seen] == [("lte", "restart")]
            await until(lambda: uplink(svc2, "wired")["state"] in ("up", "standby"))
            assert net2.default[0] == "wwan0"  # wired healthy, but the override holds
            assert len(ctx2.journal.events(kind_prefix="uplink.override")) == overrides  # not a new change
            ctx2.bus.publish(OverrideRequest("auto", "admin"))
            await until(lambda: net2.default is not None and net2.default[0] == "eth1", what="back on wired")
        finally:
            await svc2.stop()
        # auto is remembered too: a third start has no override
        svc3, _, net3, _, _ = make(tmp_path)
        await svc3.start()
        try:
            assert svc3.snapshot()["override"] is None and net3.default is not None and net3.default[0] == "eth1"
        finally:
            await svc3.stop()

    asyncio.run(main())
