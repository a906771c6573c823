"""PanelService on a real event loop: real gpiozero objects on mock pins, the control socket end to end,
acknowledgements and manual failover through the actions, the modem's power line, failures and quiet hours."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from gateway import config
from gateway.core.errors import ActionRejected, DeviceRefused, DeviceUnavailable
from gateway.core.signals import (
    ActiveUplinkChanged,
    AlertAcknowledged,
    IncidentStatus,
    ModemPowerCycle,
    OverrideRequest,
    PowerStatus,
    UplinkStatus,
)
from gateway.drivers.panel import PanelDriver, load_board
from gateway.drivers.panel_fake import FakePanelDriver
from gateway.lab import panel_client
from gateway.runtime.panel import PanelService
from gateway.runtime.service import Context
from gateway.store import Journal
from tests.conftest import Clock

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

[panel]
pin_factory = "mock"
hold_s = 0.5
{extra}
"""


@pytest.fixture
def state_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="pnl", dir="/tmp"))  # short: the socket path must fit sockaddr_un
    yield d
    shutil.rmtree(d, ignore_errors=True)


def make(state: Path, extra: str = "", driver: Any = None, clock: Callable[[], float] | None = None,
         wall: Callable[[], float] | None = None) -> tuple[PanelService, Context]:
    cfg = config.parse(CFG.format(state=state, extra=extra), "test.toml")
    ctx = Context(config=cfg, journal=Journal(state / "journal.db"))
    if clock is not None:
        ctx.monotonic = clock
    if wall is not None:
        ctx.wall = wall
    return PanelService(ctx, driver=driver), ctx


def mock_driver() -> tuple[PanelDriver, MockFactory]:
    f = MockFactory(pin_class=MockPWMPin)
    return PanelDriver(load_board("rpi-gateway-hat"), f, mock=True), f


async def until(pred: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while not (v := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.01)  # a poll interval, not a wait for an outcome
    return v


def panel_events(ctx: Context, prefix: str = "panel.") -> list[str]:
    return [e["message"] for e in ctx.journal.events(kind_prefix=prefix)]


def running(svc: PanelService, body: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        await svc.start()
        try:
            await body()
        finally:
            await svc.stop()
    asyncio.run(main())


WELL = [PowerStatus("online"), UplinkStatus("wired", "primary", "up", True),
        UplinkStatus("lte", "backup", "standby", False)]
BOTH_DOWN = [UplinkStatus("wired", "primary", "down", False), UplinkStatus("lte", "backup", "down", False),
             ActiveUplinkChanged(None, "wired", "nothing works")]


# ------------------------------------------------------------------------------------ facts → pins

def test_facts_drive_the_real_gpiozero_leds_and_buzzer(state_dir: Path) -> None:
    drv, f = mock_driver()
    clock = Clock()
    svc, ctx = make(state_dir, driver=drv, clock=clock)

    async def body() -> None:
        for fact in WELL:
            ctx.bus.publish(fact)
        assert (f.pin(17).state, f.pin(27).state) == (1, 1)
        assert (f.pin(22).state, f.pin(23).state, f.pin(24).state) == (0, 0.6, 0)  # steady green
        assert f.pin(18).frequency is None
        for fact in BOTH_DOWN:
            ctx.bus.publish(fact)
        assert (f.pin(22).state, f.pin(23).state) == (1.0, 0)  # red
        assert f.pin(18).frequency == pytest.approx(2700.0)  # the first critical beep, at once
        snap = svc.snapshot()["panel"]
        assert snap["leds"]["alert"] == {"value": 1.0, "pattern": "on", "color": "red", "rgb": [1.0, 0.0, 0.0]}
        assert snap["leds"]["network"]["pattern"] == "fast_blink"
        assert snap["buzzer"]["pattern"] == "critical" and snap["buzzer"]["on"] is True
        assert snap["severity"] == "critical" and "no uplink works" in snap["causes"]
        clock.t += 0.3  # between the first and the second beep
        svc._wake.set()
        await until(lambda: f.pin(18).frequency is None, what="buzzer off between beeps")
        ctx.bus.publish(PowerStatus("on_battery"))
        assert svc.snapshot()["panel"]["leds"]["power"]["pattern"] == "slow_blink"

    running(svc, body)


def test_snapshot_has_the_stable_shape(state_dir: Path) -> None:
    drv, _ = mock_driver()
    svc, ctx = make(state_dir, driver=drv)

    async def body() -> None:
        snap = svc.snapshot()
        assert set(snap) == {"panel"}
        p = snap["panel"]
        assert set(p["leds"]) == {"power", "network", "alert"} and p["pins"] == "mock"
        for led in p["leds"].values():
            assert 0 <= led["value"] <= 1 and led["pattern"] in ("on", "off", "slow_blink", "fast_blink", "wink")
        assert {"pattern", "on", "severity", "acknowledged", "quiet"} <= set(p["buzzer"])

    running(svc, body)


# ------------------------------------------------------------------------------------ the button

def hand_press(svc: PanelService, drv: PanelDriver, clock: Clock, held_s: float) -> Awaitable[Any]:
    done = svc._edges_done + 2
    drv.drive_button(True)
    clock.t += held_s
    drv.drive_button(False)
    return until(lambda: svc._edges_done >= done and not svc._pending, what="button handled")


def test_press_acknowledges_through_the_ack_action(state_dir: Path) -> None:
    drv, f = mock_driver()
    clock = Clock()
    svc, ctx = make(state_dir, driver=drv, clock=clock)
    calls: list[tuple[dict[str, Any], str]] = []

    async def ack(params: dict[str, Any], who: str) -> dict[str, Any]:
        calls.append((params, who))
        ctx.bus.publish(AlertAcknowledged(who=who, incident_id=4, source="button"))
        return {"incident_id": 4, "message": "ok"}

    ctx.register_action("ack", ack)

    async def body() -> None:
        for fact in WELL + BOTH_DOWN + [IncidentStatus(4, True, "critical")]:
            ctx.bus.publish(fact)
        assert svc.snapshot()["panel"]["buzzer"]["pattern"] == "critical"
        await hand_press(svc, drv, clock, 0.2)
        assert calls == [({"source": "button"}, "button")]
        p = svc.snapshot()["panel"]
        assert p["buzzer"]["acknowledged"] is True and p["button"]["last"] == "ack"
        assert p["buzzer"]["pattern"] == "chirp" and f.pin(18).frequency == pytest.approx(3300.0)
        clock.t += 1.0
        svc._wake.set()
        await until(lambda: f.pin(18).frequency is None, what="silence after the chirp")
        assert svc.snapshot()["panel"]["buzzer"]["pattern"] == "off"
        assert svc.snapshot()["panel"]["leds"]["alert"]["color"] == "red"  # still red: only silenced
        ctx.bus.publish(PowerStatus("shutting_down"))  # not worse than critical: stays silent
        assert svc.snapshot()["panel"]["buzzer"]["pattern"] == "off"

    running(svc, body)
    assert any("button pressed: critical alert acknowledged" in m for m in panel_events(ctx))


def test_press_without_an_ack_action_publishes_the_fact(state_dir: Path) -> None:
    drv, _ = mock_driver()
    clock = Clock()
    svc, ctx = make(state_dir, driver=drv, clock=clock)
    acks: list[AlertAcknowledged] = []
    ctx.bus.subscribe(AlertAcknowledged, acks.append)

    async def body() -> None:
        ctx.bus.publish(PowerStatus("on_battery"))
        await hand_press(svc, drv, clock, 0.1)

    running(svc, body)
    assert [(a.who, a.source) for a in acks] == [("button", "button")]


def test_hold_toggles_manual_failover_through_the_action(state_dir: Path) -> None:
    drv, _ = mock_driver()
    clock = Clock()
    svc, ctx = make(state_dir, driver=drv, clock=clock)
    calls: list[str] = []
    requests: list[OverrideRequest] = []
    ctx.bus.subscribe(OverrideRequest, requests.append)

    async def failover(params: dict[str, Any], who: str) -> dict[str, Any]:
        calls.append(f"{who}:{params['target']}")
        return {"override": None if params["target"] == "auto" else params["target"], "active": "lte"}

    ctx.register_action("failover", failover)

    async def body() -> None:
        for fact in WELL:
            ctx.bus.publish(fact)
        drv.drive_button(True)
        clock.t += 0.6
        svc._wake.set()
        await until(lambda: svc.snapshot()["panel"]["leds"]["alert"]["color"] == "blue", what="armed: blue")
        clock.t += 0.1
        drv.drive_button(False)
        await until(lambda: calls == ["button:lte"] and not svc._pending)
        assert svc.snapshot()["panel"]["override"] == "lte"
        await hand_press(svc, drv, clock, 4.0)
        assert calls == ["button:lte", "button:auto"]
        assert svc.snapshot()["panel"]["override"] is None
        await hand_press(svc, drv, clock, 0.01)  # bounce: nothing
        assert calls == ["button:lte", "button:auto"]

    running(svc, body)
    assert [(r.target, r.who) for r in requests] == [("lte", "button"), ("auto", "button")]
    msgs = panel_events(ctx)
    assert any("manual failover to LTE" in m for m in msgs) and any("back to automatic" in m for m in msgs)
    assert [e["message"] for e in ctx.journal.events(kind_prefix="action.failover")] == \
        ["button: failover target=lte", "button: failover target=auto"]


def test_refused_failover_chirps_an_error(state_dir: Path) -> None:
    drv, _ = mock_driver()
    clock = Clock()
    svc, ctx = make(state_dir, driver=drv, clock=clock)

    async def failover(params: dict[str, Any], who: str) -> dict[str, Any]:
        raise ActionRejected("bad_target", "no uplink 'lte'")

    ctx.register_action("failover", failover)

    async def body() -> None:
        await hand_press(svc, drv, clock, 1.0)
        assert svc.snapshot()["panel"]["buzzer"]["pattern"] == "chirp_error"

    running(svc, body)
    assert any("manual failover refused: no uplink 'lte'" in m for m in panel_events(ctx))


def test_stuck_button_is_reported_once_and_harmless(state_dir: Path) -> None:
    drv, _ = mock_driver()
    clock = Clock()
    svc, ctx = make(state_dir, driver=drv, clock=clock)
    calls: list[str] = []

    async def failover(params: dict[str, Any], who: str) -> dict[str, Any]:
        calls.append(params["target"])
        return {"override": "lte"}

    ctx.register_action("failover", failover)

    async def body() -> None:
        drv.drive_button(True)
        for _ in range(5):
            clock.t += 20
            svc._wake.set()
            await until(lambda: True)
        await until(lambda: any("stuck" in m for m in panel_events(ctx)), what="stuck reported")
        drv.drive_button(False)
        await until(lambda: svc._edges_done >= 2)

    running(svc, body)
    assert calls == []
    assert sum("stuck pressed" in m for m in panel_events(ctx)) == 1


# --------------------------------------------------------------------------------- modem power

def test_modem_power_cycle_toggles_the_pin_and_is_journaled(state_dir: Path) -> None:
    drv, f = mock_driver()
    svc, ctx = make(state_dir, driver=drv)
    pin = f.pin(6)

    async def body() -> None:
        assert pin.state == 1
        pin.clear_states()
        ctx.bus.publish(ModemPowerCycle("modem hung", off_s=0.2))
        ctx.bus.publish(ModemPowerCycle("again", off_s=0.2))  # one at a time
        await until(lambda: pin.state == 0, what="modem power off")
        await until(lambda: pin.state == 1, what="modem power back on")
        await until(lambda: len(panel_events(ctx, "panel.modem_power")) == 2)

    running(svc, body)
    assert [s.state for s in pin.states] == [1, 0, 1]
    assert panel_events(ctx, "panel.modem_power") == ["modem: USB power off for 0.2 s (modem hung)",
                                                      "modem: USB power on again"]
    assert svc.counts["modem_power_cycles"] == 1


def test_stopping_mid_cycle_leaves_the_modem_powered(state_dir: Path) -> None:
    drv, f = mock_driver()
    svc, ctx = make(state_dir, driver=drv)

    async def body() -> None:
        ctx.bus.publish(ModemPowerCycle("hung", off_s=60))
        await until(lambda: f.pin(6).state == 0)

    running(svc, body)
    assert f.pin(6).state == 1


def test_modem_power_line_is_healed_if_something_else_drops_it(state_dir: Path) -> None:
    drv, f = mock_driver()
    clock = Clock()
    svc, ctx = make(state_dir, driver=drv, clock=clock)

    async def body() -> None:
        drv.modem.off()  # e.g. another process or a glitch
        clock.t += 10
        svc._wake.set()
        await until(lambda: f.pin(6).state == 1, what="modem power re-applied")

    running(svc, body)


# ------------------------------------------------------------------------------ failures, quiet

def test_gpio_failure_is_one_journal_line_each_way(state_dir: Path) -> None:
    drv = FakePanelDriver(load_board("rpi-gateway-hat"))
    svc, ctx = make(state_dir, driver=drv)

    async def body() -> None:
        drv.fail = True
        for state in ("on_battery", "online", "on_battery"):
            ctx.bus.publish(PowerStatus(state))
        drv.fail = False
        ctx.bus.publish(PowerStatus("online"))

    running(svc, body)
    assert panel_events(ctx, "panel.gpio") == ["panel: panel GPIO: fake failure", "panel: GPIO works again"]


def test_no_gpio_at_all_keeps_the_service_alive(state_dir: Path) -> None:
    svc, ctx = make(state_dir, extra='board = "no-such-board"')

    async def body() -> None:
        ctx.bus.publish(PowerStatus("on_battery"))
        ctx.bus.publish(ModemPowerCycle("hung", off_s=0.1))
        await until(lambda: panel_events(ctx, "panel.modem_power"))

    running(svc, body)
    snap = svc.snapshot()["panel"]
    assert snap["pins"] is None and "no board 'no-such-board'" in snap["error"]
    assert "cannot power-cycle" in panel_events(ctx, "panel.modem_power")[0]
    assert panel_events(ctx, "panel.unavailable")


def test_quiet_hours_keep_warnings_silent_but_not_critical_alarms(state_dir: Path) -> None:
    drv, f = mock_driver()
    svc, ctx = make(state_dir, extra='quiet_hours = "00:00-24:00"\nquiet_min_severity = "critical"', driver=drv)

    async def body() -> None:
        ctx.bus.publish(PowerStatus("low_battery"))
        p = svc.snapshot()["panel"]
        assert p["buzzer"]["quiet"] is True and p["buzzer"]["pattern"] == "off" and f.pin(18).frequency is None
        ctx.bus.publish(PowerStatus("shutting_down"))
        assert svc.snapshot()["panel"]["buzzer"]["pattern"] == "critical"

    running(svc, body)


# ------------------------------------------------------------------- the control socket, end to end

def test_control_socket_press_hold_and_state(state_dir: Path) -> None:
    svc, ctx = make(state_dir)  # the service builds its own driver on mock pins from the config
    calls: list[str] = []

    async def failover(params: dict[str, Any], who: str) -> dict[str, Any]:
        calls.append(params["target"])
        return {"override": None if params["target"] == "auto" else params["target"]}

    ctx.register_action("failover", failover)

    async def body() -> None:
        for fact in WELL + BOTH_DOWN:
            ctx.bus.publish(fact)
        st = await asyncio.to_thread(panel_client.state, state_dir)
        assert set(st) == {"leds", "buzzer"}
        assert st["leds"]["alert"]["pattern"] == "on" and st["leds"]["alert"]["value"] == 1.0
        assert st["buzzer"]["pattern"] == "critical"
        r = await asyncio.to_thread(panel_client.press, state_dir)
        assert r["decided"] == "ack" and r["buzzer"]["acknowledged"] is True
        r = await asyncio.to_thread(panel_client.hold, state_dir, 0.7)
        assert r["decided"] == "failover_lte" and r["override"] == "lte" and calls == ["lte"]
        r = await asyncio.to_thread(panel_client.hold, state_dir)  # default: hold_s + 0.5
        assert r["decided"] == "failover_auto" and r["override"] is None and calls == ["lte", "auto"]
        with pytest.raises(DeviceRefused, match="unknown op"):
            await asyncio.to_thread(panel_client.request, state_dir, {"op": "dance"})
        with pytest.raises(DeviceRefused, match="s must be"):
            await asyncio.to_thread(panel_client.request, state_dir, {"op": "hold", "s": -1})
        assert calls == ["lte", "auto"]  # bad requests changed nothing
        full = await asyncio.to_thread(panel_client.full_state, state_dir)
        assert full["modem_power"] is True and full["button"]["pressed"] is False

    running(svc, body)
    assert not (state_dir / "panel.sock").exists()  # removed on stop
    with pytest.raises(DeviceUnavailable, match="is the daemon running"):
        panel_client.state(state_dir)
