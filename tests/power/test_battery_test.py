"""The UPS battery self-test: the NUT instant command through the driver, PowerService.battery_test(), and the
continuity service's power drill that calls it.

The lab's dummy-ups lists one instant command (``load.off``), so against the real upsd the test is the clear
refusal; the success path (the test running, the charge falling, the drill measuring it) uses the fake UPS.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway import config
from gateway.core.errors import ActionRejected, DeviceRefused
from gateway.drivers.poe_fake import FakePoeSwitch
from gateway.drivers.ups import UpsDriver
from gateway.drivers.ups_fake import FakeUpsDriver
from gateway.runtime.continuity import ContinuityService
from gateway.runtime.power import PowerService
from gateway.runtime.service import Context
from gateway.store import Journal
from tests.conftest import needs_root, until
from tests.power.peers import NutPeer

CFG = """
[site]
name = "Test Office"
state_dir = "{state}"

[ups]
name = "ups"
host = "{host}"
port = {port}
username = "gateway"
password = "{password}"
poll_interval_s = 0.1
timeout_s = 1.0
stale_after_s = 5.0
shutdown_mode = "none"

[[switches]]
name = "core"
host = "127.0.0.1"

[[loads]]
name = "camera"
switch = "core"
port = 3
tier = 1

[[uplinks]]
name = "wired"
interface = "eth1"
role = "primary"
"""


def _setup(tmp: Path, ups: Any, host: str = "127.0.0.1", port: int = 3493, password: str = "x",
           clock: Any = None) -> tuple[Context, PowerService, ContinuityService]:
    cfg = config.parse(CFG.format(state=tmp, host=host, port=port, password=password), "t.toml")
    ctx = Context(config=cfg, journal=Journal(tmp / "journal.db"))
    if clock is not None:
        ctx.monotonic = clock
    power = PowerService(ctx, ups=ups, switches={"core": FakePoeSwitch("core", {3: True})})
    cont = ContinuityService(ctx)
    ctx.services.update(power=power, continuity=cont)
    cont.power_sample_s = 0.02
    return ctx, power, cont


async def _drill(ctx: Context) -> dict[str, Any]:
    res = await ctx.action("drill", {"kind": "power", "minutes": 1}, "admin")
    row: dict[str, Any] = await until(lambda: next((d for d in ctx.journal.drills() if d["id"] == res["id"]
                                                    and d["status"] != "running"), None), 20, "the drill to end")
    return row


def test_battery_test_runs_through_the_service_and_the_drill_measures_it(tmp_path: Path) -> None:
    """The success path on the fake UPS: the command is sent, TEST shows, the drill samples the discharge."""
    ups = FakeUpsDriver()
    ctx, power, cont = _setup(tmp_path, ups)

    async def main() -> dict[str, Any]:
        await power.start()
        await cont.start()
        try:
            await until(lambda: power.core.state == "online", 10, "online")
            return await _drill(ctx)
        finally:
            await cont.stop()
            await power.stop()

    row = asyncio.run(main())
    r = row["results"]
    assert ups.commands_run == ["test.battery.start"]
    assert r["battery_test"] == {"command": "test.battery.start",
                                 "message": "test.battery.start accepted by ups@fake"}
    assert any("UPS battery test started: test.battery.start accepted" in s for s in r["steps"])
    # the fake's charge falls half a percent a read: far below the UPS's claim of 30 min
    assert r["charge_start_pct"] == 100.0 and r["runtime_measured_s"] > 0
    assert row["status"] == "failed" and "against the UPS's claim of 30 min" in r["verdict"]
    assert [e["kind"] for e in ctx.journal.events(kind_prefix="power.battery")] == ["power.battery_test"]
    ctx.journal.close()


def test_battery_test_refused_when_not_online_or_not_offered(tmp_path: Path) -> None:
    ups = FakeUpsDriver()
    now = [1000.0]
    ctx, power, _ = _setup(tmp_path, ups, clock=lambda: now[0])

    async def polls() -> None:
        for _ in range(3):
            now[0] += 5.0  # past the debounce, driven by hand
            await power.poll()

    async def main() -> None:
        ups.cut()
        await polls()
        assert power.core.state != "online"
        with pytest.raises(ActionRejected) as exc:
            await power.battery_test()
        assert exc.value.code == "not_online" and ups.commands_run == []
        ups.restore()
        ups.instcmds = {"load.off": "Turn off the load immediately"}
        await polls()
        assert power.core.state == "online"
        with pytest.raises(DeviceRefused, match="offers no battery test .* its instant commands: load.off"):
            await power.battery_test()
        assert ups.commands_run == []
        ups.instcmds["test.battery.start.quick"] = "Start a quick battery test"
        assert (await power.battery_test())["command"] == "test.battery.start.quick"

    asyncio.run(main())
    kinds = [e["kind"] for e in ctx.journal.events(kind_prefix="power.battery")]
    assert kinds == ["power.battery_test_failed", "power.battery_test"]
    ctx.journal.close()


@pytest.mark.lab
@needs_root
def test_real_upsd_without_a_battery_test_is_a_clear_refusal_and_the_drill_says_so(tmp_path: Path,
                                                                                   nut: NutPeer) -> None:
    async def main() -> None:
        driver = UpsDriver(nut.name, nut.host, nut.port, nut.user, nut.password, timeout_s=1.0)
        commands = await driver.commands()
        assert "load.off" in commands and "test.battery.start" not in commands  # what dummy-ups lists
        with pytest.raises(DeviceRefused, match=r"offers no battery test .* its instant commands: load\.off"):
            await driver.battery_test()
        with pytest.raises(DeviceRefused, match="CMD-NOT-SUPPORTED"):  # upsd itself refuses the command
            await driver.run_command("test.battery.start")
        await driver.close()
        bad = UpsDriver(nut.name, nut.host, nut.port, nut.user, "wrong", timeout_s=1.0)
        with pytest.raises(DeviceRefused):
            await bad.run_command("load.off")
        await bad.close()

        ctx, power, cont = _setup(tmp_path, None, nut.host, nut.port, nut.password)
        await power.start()
        await cont.start()
        try:
            await until(lambda: power.core.state == "online", 15, "online through upsd")
            row = await _drill(ctx)
            assert row["status"] == "failed"
            assert row["results"]["verdict"].startswith("battery test refused: UPS ups@127.0.0.1")
            assert "offers no battery test" in row["results"]["verdict"]
            assert [e["kind"] for e in ctx.journal.events(kind_prefix="power.battery")] == \
                ["power.battery_test_failed"]
            assert power.core.state == "online"  # nothing else changed
        finally:
            await cont.stop()
            await power.stop()
            ctx.journal.close()

    asyncio.run(main())
