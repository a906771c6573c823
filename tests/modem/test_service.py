"""ModemService in-process: the recovery ladder against the pty emulator, budget across restarts, snapshot."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway import config
from gateway.core.signals import ActiveUplinkChanged, ModemPowerCycle, ModemStatus, UplinkStatus
from gateway.drivers.modem import SysfsCounters
from gateway.drivers.modem_fake import HEALTHY, FakeModemDriver
from gateway.runtime.modem import BUDGET_KEY, ModemService
from gateway.runtime.service import Context
from gateway.store import Journal
from tests.conftest import Clock, until, wait_until
from tests.modem.conftest import Emu

CFG = """
[site]
name = "Test Office"
state_dir = "{state}"

[ups]

[[uplinks]]
name = "wired"
interface = "eth1"
role = "primary"

[[uplinks]]
name = "lte"
interface = "wwan0"
role = "backup"
table = 102
probe_targets = ["192.0.2.53", "192.0.2.54"]

[[services]]
name = "CRM"
url = "http://198.51.100.10:8080/"

[failover.lte]
data_budget_mb = 0.01
warn_pct = [50.0, 80.0]
at_cap = "{at_cap}"

[modem]
device = "{device}"
standby = "{standby}"
poll_interval_s = 1.0
command_timeout_s = 0.3
recovery_after_s = 5.0
recovery_backoff_s = 10.0
registration_timeout_s = 60.0
giveup_retry_s = 100000.0
"""


class FakeNft:
    """Records the nft scripts; the real thing is exercised in test_policy.py."""

    def __init__(self) -> None:
        self.scripts: list[str] = []

    async def apply(self, script: str, timeout_s: float = 10.0) -> None:
        self.scripts.append(script)


def make(tmp: Path, device: str = "/dev/null-modem", standby: str = "warm", at_cap: str = "alert",
         **kw: Any) -> tuple[ModemService, Context, Clock]:
    cfg = config.parse(CFG.format(state=tmp, device=device, standby=standby, at_cap=at_cap), "test.toml")
    clock = Clock()
    ctx = Context(config=cfg, journal=Journal(tmp / "journal.db"), monotonic=clock)
    kw.setdefault("nft", FakeNft())
    kw.setdefault("counters", lambda: (None, None))
    return ModemService(ctx, **kw), ctx, clock


def kinds(ctx: Context, prefix: str = "modem.") -> list[str]:
    return [e["kind"] for e in ctx.journal.events(kind_prefix=prefix)]


def rungs(ctx: Context) -> list[str]:
    return [e["data"]["rung"] for e in ctx.journal.events(kind_prefix="modem.") if
            e["kind"] in ("modem.recovery", "modem.gave_up")]


async def poll_until(svc: ModemService, clock: Clock, pred: Any, step_s: float = 6.0, polls: int = 40) -> None:
    for _ in range(polls):
        clock.t += step_s
        await svc.poll()
        if pred():
            return
    raise AssertionError("condition not reached within the polls")


def registered(emu: Emu) -> None:
    """The emulator registers in real time while the polls move a fake clock: on a loaded machine forty quick
    polls could see "not registered" for minutes of fake time and start the recovery ladder."""
    wait_until(lambda: emu.status()["registered"], 10, what="the emulator registered")


def test_ladder_on_a_hung_modem_gives_up_with_a_critical_event(tmp_path: Path, emu: Emu) -> None:
    svc, ctx, clock = make(tmp_path, device=emu.path)
    cycles: list[ModemPowerCycle] = []
    statuses: list[ModemStatus] = []
    ctx.bus.subscribe(ModemPowerCycle, cycles.append)
    ctx.bus.subscribe(ModemStatus, statuses.append)

    async def main() -> None:
        registered(emu)
        await poll_until(svc, clock, lambda: svc.core.phase == "connected")  # warm standby dialled
        emu.control("hang")
        await poll_until(svc, clock, lambda: svc.core.state == "failed")
        await svc.stop()

    asyncio.run(main())
    assert rungs(ctx) == ["redial", "radio_reset", "power_cycle", "gave_up"], \
        [e["message"] for e in ctx.journal.events(kind_prefix="modem.")]
    gave_up = ctx.journal.events(kind_prefix="modem.gave_up")[0]
    assert gave_up["severity"] == "critical" and "does not answer" in gave_up["message"]
    assert len(cycles) == 1 and cycles[0].off_s == 5.0
    assert statuses[-1].state == "failed" and statuses[-1].recovery_rung == "gave_up"
    snap = svc.snapshot()["modem"]
    assert snap["state"] == "failed" and snap["recovery_rung"] == "gave_up" and snap["present"] is True
    states = [e["message"] for e in ctx.journal.events(kind_prefix="modem.state")]
    assert sum("→ unresponsive" in m for m in states) == 1  # logged once, not every poll


def test_power_cycle_brings_a_hung_modem_back(tmp_path: Path, emu: Emu) -> None:
    svc, ctx, clock = make(tmp_path, device=emu.path)
    # what the panel service does on the box: cut the modem's USB power (here: the emulator's)
    ctx.bus.subscribe(ModemPowerCycle, lambda fact: emu.control("power-cycle"))

    async def main() -> None:
        registered(emu)
        await poll_until(svc, clock, lambda: svc.core.phase == "connected")
        emu.control("hang")
        await poll_until(svc, clock, lambda: svc.core.recovery_rung == "power_cycle")
        # the emulator's clock is real time: let the "USB device" come back before the next round
        wait_until(lambda: emu.status()["registered"], 10, what="the modem back after the power cycle")
        await poll_until(svc, clock, lambda: "modem.recovered" in kinds(ctx), step_s=1.0)
        await poll_until(svc, clock, lambda: svc.core.phase == "connected", step_s=1.0)
        await svc.stop()

    asyncio.run(main())
    assert rungs(ctx) == ["redial", "radio_reset", "power_cycle"], \
        [e["message"] for e in ctx.journal.events(kind_prefix="modem.")]
    assert emu.status()["power_cycles"] == 1
    assert svc.snapshot()["modem"]["recovery_rung"] is None


def test_data_path_failure_from_the_uplink_probes_redials(tmp_path: Path) -> None:
    fake = FakeModemDriver()
    svc, ctx, clock = make(tmp_path, driver=fake)

    async def main() -> None:
        await poll_until(svc, clock, lambda: svc.core.phase == "connected")
        ctx.bus.publish(UplinkStatus("lte", "backup", "down", False, "3/3 targets lost", health="down"))
        await poll_until(svc, clock, lambda: svc.core.recovery_rung == "redial")
        # as the uplinks publish a healthy LTE behind a working wired line: shown standby, probes say up
        ctx.bus.publish(UplinkStatus("lte", "backup", "standby", False, "3/3 targets answering", health="up"))
        await poll_until(svc, clock, lambda: svc.core.rung == 0)

    asyncio.run(main())
    assert "hangup" in fake.calls and fake.calls.count("dial internet") == 2
    assert "modem.recovered" in kinds(ctx)


def test_lte_answering_again_before_the_ladder_starts_takes_no_rung(tmp_path: Path) -> None:
    """LTE lost for a moment (both lines cut, say) and healthy again behind wired: the down verdict is taken
    back by the standby fact with its probes' verdict, and no re-dial bounces the link afterwards."""
    fake = FakeModemDriver()
    svc, ctx, clock = make(tmp_path, driver=fake)

    async def main() -> None:
        # connected, and the dialling's own trouble over (else the ladder's clock keeps running from it)
        await poll_until(svc, clock, lambda: svc.core.phase == "connected" and svc.core.trouble is None)
        ctx.bus.publish(UplinkStatus("lte", "backup", "down", False, "2/3 targets lost", health="down"))
        assert svc.core.data_path_ok is False
        ctx.bus.publish(UplinkStatus("lte", "backup", "standby", False, "3/3 targets answering", health="up"))
        assert svc.core.data_path_ok is True
        for _ in range(20):
            clock.t += 6.0
            await svc.poll()
        # a standby without a verdict (not dialled yet, waiting for its carrier) changes nothing
        ctx.bus.publish(UplinkStatus("lte", "backup", "standby", False, "not dialled yet", health="standby"))
        assert svc.core.data_path_ok is True
        await svc.stop()

    asyncio.run(main())
    assert "modem.recovery" not in kinds(ctx) and fake.calls.count("dial internet") == 1, \
        [e["message"] for e in ctx.journal.events(kind_prefix="modem.")]


def test_cold_standby_dials_on_failover_and_policy_follows(tmp_path: Path) -> None:
    fake = FakeModemDriver()
    nft = FakeNft()
    svc, ctx, clock = make(tmp_path, standby="cold", driver=fake, nft=nft)

    async def main() -> None:
        await poll_until(svc, clock, lambda: svc.core.phase == "registered")
        assert "dial internet" not in fake.calls and svc.policy_mode == "none"
        ctx.bus.publish(ActiveUplinkChanged("lte", "wired", "wired down"))
        await poll_until(svc, clock, lambda: svc.core.phase == "connected")
        assert svc.policy_mode == "limit"
        assert "198.51.100.10" in nft.scripts[-1] and "192.0.2.53" in nft.scripts[-1]  # CRM and the probes
        ctx.bus.publish(ActiveUplinkChanged("wired", "lte", "failback"))
        await poll_until(svc, clock, lambda: svc.core.phase == "registered")
        assert svc.policy_mode == "none" and "chain" not in nft.scripts[-1]

    asyncio.run(main())
    assert fake.calls.count("hangup") == 1
    assert [e["data"]["mode"] for e in ctx.journal.events(kind_prefix="modem.lte_policy")] == ["limit", "none"]


def write_counters(root: Path, rx: int, tx: int, ifindex: int = 5) -> None:
    stats = root / "wwan0" / "statistics"
    stats.mkdir(parents=True, exist_ok=True)
    (stats / "rx_bytes").write_text(f"{rx}\n")
    (stats / "tx_bytes").write_text(f"{tx}\n")
    (root / "wwan0" / "ifindex").write_text(f"{ifindex}\n")


def test_budget_survives_a_restart_and_interface_recreation(tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    write_counters(sysfs, 1000, 500)

    def service() -> tuple[ModemService, Context, Clock]:
        return make(tmp_path, driver=FakeModemDriver(), counters=SysfsCounters("wwan0", sysfs))

    async def first() -> None:
        svc, ctx, clock = service()
        await poll_until(svc, clock, lambda: True)
        write_counters(sysfs, 4000, 2500)  # +5000 bytes: 50 % of 10 kB
        await poll_until(svc, clock, lambda: True)
        assert svc.snapshot()["modem"]["data_used_bytes"] == 5000
        await svc.stop()
        ctx.journal.close()

    async def second() -> None:
        svc, ctx, clock = service()
        assert svc.budget.used_bytes == 5000  # restored from the journal's kv
        write_counters(sysfs, 5000, 2500)  # +1000 while it was down, counted
        await poll_until(svc, clock, lambda: True)
        assert svc.budget.used_bytes == 6000
        write_counters(sysfs, 1500, 700, ifindex=9)  # interface re-created: counters restarted
        await poll_until(svc, clock, lambda: True)
        assert svc.budget.used_bytes == 8200
        await svc.stop()
        snap = svc.snapshot()["modem"]
        assert snap["data_budget_bytes"] == 10000 and snap["data_used_bytes"] == 8200
        warnings = [e["data"]["pct"] for e in ctx.journal.events(kind_prefix="modem.budget_warning")]
        assert warnings == [50.0, 80.0]  # each once, across the restart
        assert ctx.journal.get(BUDGET_KEY)["used_bytes"] == 8200
        ctx.journal.close()

    asyncio.run(first())
    asyncio.run(second())


def test_budget_cap_with_restrict_blocks_non_critical(tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    write_counters(sysfs, 0, 0)
    nft = FakeNft()
    svc, ctx, clock = make(tmp_path, at_cap="restrict", driver=FakeModemDriver(), nft=nft,
                           counters=SysfsCounters("wwan0", sysfs))

    async def main() -> None:
        await poll_until(svc, clock, lambda: True)
        write_counters(sysfs, 9000, 2000)
        await poll_until(svc, clock, lambda: svc.policy_mode == "block")

    asyncio.run(main())
    cap = ctx.journal.events(kind_prefix="modem.budget_cap")
    assert len(cap) == 1 and cap[0]["severity"] == "critical"
    assert "drop" in nft.scripts[-1] and "limit rate" not in nft.scripts[-1]


def test_service_loop_and_snapshot_against_the_emulator(tmp_path: Path, emu: Emu) -> None:
    cfg = config.parse(CFG.format(state=tmp_path, device=emu.path, standby="warm", at_cap="alert"), "t.toml")
    ctx = Context(config=cfg, journal=Journal(tmp_path / "journal.db"))
    svc = ModemService(ctx, nft=FakeNft(), counters=lambda: (None, None))  # type: ignore[arg-type]

    async def main() -> dict[str, Any]:
        await svc.start()
        await until(lambda: svc.snapshot()["modem"]["state"] == "connected", 10, "the modem connected")
        snap = svc.snapshot()["modem"]
        metrics = {m[0]: m[3] for m in svc.metrics()}
        assert metrics["gateway_modem_signal_dbm"] == -85.0 and metrics["gateway_modem_present"] == 1.0
        await svc.stop()
        return snap

    snap = asyncio.run(main())
    for key in ("present", "sim", "registration", "operator", "rssi_dbm", "technology", "data_used_bytes",
                "data_budget_bytes", "state", "rsrp_dbm", "rsrq_db", "sinr_db", "recovery_rung"):
        assert key in snap
    assert (snap["present"], snap["sim"], snap["registration"], snap["operator"], snap["technology"]) == (
        True, "ready", "home", "Lab Telecom", "LTE")
    assert emu.status()["data_active"] is True


def test_modem_faults_never_crash_the_service(tmp_path: Path) -> None:
    fake = FakeModemDriver(reading=HEALTHY)
    calls = 0

    async def explode() -> Any:
        nonlocal calls
        calls += 1
        raise RuntimeError("driver bug")

    svc, ctx, clock = make(tmp_path, driver=fake)
    fake.read = explode  # type: ignore[method-assign]

    async def main() -> None:
        await svc.start()
        def polled_again() -> bool:  # the loop survives the failure and polls again (woken, not waited for)
            svc._wake.set()
            return calls >= 3
        await until(polled_again, 10, "three polls")
        assert not svc._tasks[0].done()
        await svc.stop()

    asyncio.run(main())
    assert svc.snapshot()["modem"]["present"] is False


@pytest.mark.parametrize("profile", ["no-such-modem"])
def test_unknown_profile_is_reported_not_raised(tmp_path: Path, profile: str) -> None:
    text = CFG.format(state=tmp_path, device="/dev/x", standby="warm", at_cap="alert") + f'profile = "{profile}"\n'
    ctx = Context(config=config.parse(text, "t.toml"), journal=Journal(tmp_path / "journal.db"))
    svc = ModemService(ctx, nft=FakeNft(), counters=lambda: (None, None))  # type: ignore[arg-type]
    assert svc.driver is None and "no modem profile" in svc.snapshot()["modem"]["error"]


def test_stop_returns_when_a_wake_up_races_the_cancel(tmp_path: Path) -> None:
    """The loop waits on its wake event between polls; a wake-up (a reload, a bus fact) that lands in the same
    loop turn as stop()'s cancel must not eat the cancel (asyncio.wait_for does on 3.11, and stop() hangs)."""
    fake = FakeModemDriver(reading=HEALTHY)
    svc, ctx, _ = make(tmp_path, driver=fake)

    async def main() -> None:
        await svc.start()
        await until(lambda: svc._wake._waiters, 10,  # type: ignore[attr-defined]  # parked on the event
                    "the poll loop waiting for its wake event")
        assert "read" in fake.calls
        svc._wake.set()  # the wake-up and the cancel arrive together
        # a deadline, not a timing: stop() swallows the deadline's own cancel, so ask the context manager
        async with asyncio.timeout(10) as deadline_cm:
            await svc.stop()
        assert not deadline_cm.expired(), "stop() hung: the poll loop swallowed its cancellation"
        assert svc._tasks == []

    asyncio.run(main())
    ctx.journal.close()
