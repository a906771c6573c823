"""PanelService: the LEDs, the buzzer and the button in the rack, and the modem's USB power line.

It feeds the pure panel machine (``gateway.core.panel``) with the other areas' facts and the button's edges,
renders the desired patterns onto the board through the gpiozero driver (often while something blinks or
beeps, rarely when the panel is steady), and carries out what the button asks for: a short press
acknowledges the alert (the ``ack`` action, else an :class:`AlertAcknowledged` fact), a hold toggles the
manual failover between LTE and automatic (an :class:`OverrideRequest` and the ``failover`` action).  It
owns the modem's power line and cuts it for :class:`ModemPowerCycle` (journaled before acting).

On mock pins (the lab, tests) it serves ``{state_dir}/panel.sock``: one JSON object per line,
``{"op": "press"}``, ``{"op": "hold", "s": N}`` or ``{"op": "state"}``, each answered with one JSON line;
presses move the real gpiozero button's mock pin, so they go the same way as a finger's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import replace
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.config import Config
from gateway.core import panel as core
from gateway.core.base import Event, JournalEvent, Tick
from gateway.core.errors import ActionRejected, GatewayError
from gateway.core.signals import (
    ActiveUplinkChanged,
    AlertAcknowledged,
    IncidentStatus,
    ModemPowerCycle,
    OverrideChanged,
    OverrideRequest,
    PowerStatus,
    UplinkStatus,
)
from gateway.drivers.panel import Level, PanelDriver, load_board, make_factory
from gateway.runtime.service import Context, Service

log = logging.getLogger("gateway.panel")

# The render loop sleeps until the next edge of a pattern (the shortest beep is 60 ms), at most IDLE_S: ticks for
# the stuck button, quiet hours and the modem line.
IDLE_S = 1.0
EDGE_SLACK_S = 0.001  # wake a hair after an edge, so the pattern is evaluated past it
MIN_SLEEP_S = 0.002
QUIET_CHECK_S = 30.0
MODEM_REAPPLY_S = 5.0
PRESS_S = 0.15  # how long a lab "press" holds the button down
SOCKET = "panel.sock"


def policy_of(cfg: Config) -> core.Policy:
    p = cfg.panel
    return core.Policy(hold_s=p.hold_s, quiet_min_severity=p.quiet_min_severity,
                       stuck_s=max(30.0, p.hold_s * 4), roles=tuple((u.name, u.role) for u in cfg.uplinks))


def _tz(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


class PanelService(Service):
    name = "panel"

    def __init__(self, ctx: Context, driver: Any = None) -> None:
        super().__init__(ctx)
        cfg = ctx.config
        self.error: str | None = None
        self.driver: Any = driver
        self._own_driver = driver is None
        if driver is None:
            self.driver = self._make_driver(cfg)
        self.core = core.initial(policy_of(cfg))
        self._quiet_span = self._parse_quiet(cfg)
        self._quiet_at = float("-inf")
        self._out: core.PanelOutput = core.outputs(self.core, ctx.monotonic())
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._edges_done = 0
        self._edge_seen = asyncio.Event()
        self._pending: set[asyncio.Task[Any]] = set()
        self._op_lock = asyncio.Lock()
        self._server: asyncio.AbstractServer | None = None
        self._socket_path: Path | None = None
        self._modem_wanted = True
        self._modem_at = float("-inf")
        self._cycle: asyncio.Task[None] | None = None
        self._gpio_error: str | None = None
        self.counts = {"press": 0, "hold": 0, "modem_power_cycles": 0}
        if self.driver is not None:
            self.driver.on_button(self._edge_from_pin)
        bus = ctx.bus
        for kind in (PowerStatus, UplinkStatus, ActiveUplinkChanged, IncidentStatus, AlertAcknowledged, OverrideChanged):
            bus.subscribe(kind, self._on_fact)
        bus.subscribe(ModemPowerCycle, self._on_modem_cycle)

    def _make_driver(self, cfg: Config) -> PanelDriver | None:
        try:
            factory, mock = make_factory(cfg.panel.pin_factory, cfg.state_dir if cfg.state_dir.is_dir() else None)
            return PanelDriver(load_board(cfg.panel.board), factory, mock)
        except GatewayError as exc:
            self.error = str(exc)
            log.error("panel: %s", exc)
            return None

    def _parse_quiet(self, cfg: Config) -> tuple[int, int] | None:
        if not cfg.panel.quiet_hours:
            return None
        try:
            return core.parse_quiet_hours(cfg.panel.quiet_hours)
        except ValueError as exc:
            log.error("panel.quiet_hours: %s; no quiet hours", exc)
            return None

    # ------------------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.error:
            self.ctx.record(JournalEvent("panel.unavailable", f"panel: {self.error}", "warning",
                                        {"error": self.error}))
        self._check_quiet(force=True)
        self._render()
        if self.driver is not None and self.driver.mock:
            await self._serve()
        self.spawn(self._render_loop(), "render")
        await asyncio.sleep(0)  # let it begin, so a stop right after start finds it running

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        if self._socket_path is not None:
            with contextlib.suppress(OSError):
                self._socket_path.unlink()
            self._socket_path = None
        for t in list(self._pending):
            t.cancel()
        if self._cycle is not None and not self._cycle.done():
            self._cycle.cancel()  # its finally switches the modem back on
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._cycle
        await super().stop()
        if self.driver is not None:
            with contextlib.suppress(GatewayError):
                self.driver.apply({n: ((0.0, 0.0, 0.0) if isinstance(v, tuple) else 0.0)
                                   for n, v in self._levels(self._out, 0.0).items()}, None)
            if self._own_driver:
                self.driver.close()

    def reload(self, config: Config) -> None:
        old = self.ctx.config
        super().reload(config)
        self.core = replace(self.core, policy=policy_of(config))
        self._quiet_span = self._parse_quiet(config)
        self._check_quiet(force=True)
        if self._own_driver and (old.panel.board, old.panel.pin_factory) != (config.panel.board,
                                                                              config.panel.pin_factory):
            previous = self.driver
            self.error = None
            self.driver = self._make_driver(config)
            if previous is not None:
                previous.close()
            if self.driver is not None:
                self.driver.on_button(self._edge_from_pin)
            self._gpio_error = None
        self._wake.set()

    # ------------------------------------------------------------------------------------ the core
    def _feed(self, event: Event) -> None:
        self.core, effects = core.step(self.core, event, self.ctx.monotonic())
        for eff in effects:
            if isinstance(eff, JournalEvent):
                self.ctx.record(eff)
            elif isinstance(eff, core.Acknowledge):
                self.counts["press"] += 1
                self._task(self._acknowledge())
            elif isinstance(eff, core.RequestFailover):
                self.counts["hold"] += 1
                self._task(self._failover(eff.target))
        self._render()
        self._wake.set()

    def _task(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _on_fact(self, fact: Event) -> None:
        self._feed(fact)

    def _edge_from_pin(self, pressed: bool) -> None:
        """Runs in whatever thread saw the edge (lgpio's, or the caller of a mock pin): stamp it now."""
        at = self.ctx.monotonic()
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._on_edge, pressed, at)
        except RuntimeError:  # the loop is shutting down
            pass

    def _on_edge(self, pressed: bool, at: float) -> None:
        self._feed(core.ButtonEdge(pressed, at))
        self._edges_done += 1
        self._edge_seen.set()

    # ------------------------------------------------------------------------------------- button
    async def _acknowledge(self) -> None:
        if "ack" in self.ctx.actions:
            try:
                await self.ctx.action("ack", {"source": "button"}, "button")
            except ActionRejected as exc:
                log.info("panel: button acknowledged the panel only: %s", exc.message)
            except Exception as exc:
                log.warning("panel: ack action failed: %s: %s", type(exc).__name__, exc)
        else:
            self.ctx.bus.publish(AlertAcknowledged(who="button", source="button"))

    async def _failover(self, target: str) -> None:
        self.ctx.bus.publish(OverrideRequest(target=target, who="button"))
        if "failover" not in self.ctx.actions:
            return
        try:
            result = await self.ctx.action("failover", {"target": target}, "button")
        except ActionRejected as exc:
            self._feed(core.FailoverResult(False, message=exc.message))
            return
        except Exception as exc:
            self._feed(core.FailoverResult(False, message=f"{type(exc).__name__}: {exc}"))
            return
        override = result.get("override") if isinstance(result, dict) else None
        self._feed(core.FailoverResult(True, override if override in ("lte", "wired") else None))

    # --------------------------------------------------------------------------------- modem power
    def _on_modem_cycle(self, fact: ModemPowerCycle) -> None:
        if self._cycle is not None and not self._cycle.done():
            log.info("panel: modem power cycle already under way; %s ignored", fact.reason)
            return
        self._cycle = asyncio.ensure_future(self._power_cycle(fact))

    async def _power_cycle(self, fact: ModemPowerCycle) -> None:
        off_s = max(0.0, float(fact.off_s))
        if self.driver is None or self.driver.modem_power is None:
            self.ctx.record(JournalEvent("panel.modem_power", f"modem: cannot power-cycle ({fact.reason}): "
                                         f"{self.error or 'the board has no modem power line'}", "warning",
                                         {"reason": fact.reason}))
            return
        self.counts["modem_power_cycles"] += 1
        self.ctx.record(JournalEvent("panel.modem_power", f"modem: USB power off for {off_s:g} s ({fact.reason})",
                                     "warning", {"reason": fact.reason, "off_s": off_s, "power": False}))
        self._modem_wanted = False
        try:
            self._set_modem(False)
            await asyncio.sleep(off_s)
        finally:
            self._modem_wanted = True
            ok = self._set_modem(True)
            self.ctx.record(JournalEvent("panel.modem_power", "modem: USB power on again" if ok else
                                         "modem: USB power could not be switched on; retrying",
                                         "info" if ok else "warning", {"power": True}))

    def _set_modem(self, on: bool) -> bool:
        if self.driver is None:
            return False
        try:
            self.driver.set_modem_power(on)
            return True
        except GatewayError as exc:
            self._gpio_failed(str(exc))
            return False

    # ------------------------------------------------------------------------------------ rendering
    async def _render_loop(self) -> None:
        while True:
            now = self.ctx.monotonic()
            self._check_quiet()
            self._feed(Tick())  # the stuck button, the end of a chirp
            if self._modem_at + MODEM_REAPPLY_S <= now:
                self._modem_at = now
                self._reapply_modem()
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races the wake-up,
            # and stop() would wait for this loop forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._sleep_s(now)):
                    await self._wake.wait()

    def _sleep_s(self, now: float) -> float:
        """Until the next edge of a pattern (a hair past it), the button becoming armed, or a quiet tick."""
        wait = core.next_change(self._out, now)
        delay = IDLE_S if wait is None else min(IDLE_S, wait + EDGE_SLACK_S)
        pressed = self.core.pressed_at
        if pressed is not None and not self.core.stuck:
            to_armed = pressed + self.core.policy.hold_s - now
            if to_armed > 0:
                delay = min(delay, to_armed + EDGE_SLACK_S)
        return max(MIN_SLEEP_S, delay)

    def _reapply_modem(self) -> None:
        """Desired state, re-applied: the modem is powered unless a power cycle is under way."""
        if self.driver is not None and self.driver.modem_power is not None \
                and self.driver.modem_power != self._modem_wanted:
            log.info("panel: modem power line was %s; setting it back", "on" if self.driver.modem_power else "off")
            self._set_modem(self._modem_wanted)

    def _levels(self, out: core.PanelOutput, now: float) -> dict[str, Level]:
        levels: dict[str, Level] = {}
        if self.driver is None:
            return levels
        for spec in self.driver.board.leds:
            lo = dict(out.leds).get(spec.name)
            if lo is None:
                continue
            v = core.led_value(lo.pattern, now)
            if spec.kind == "rgbled":
                rgb = spec.colors.get(lo.color or "green", (0.0, 1.0, 0.0))
                levels[spec.name] = (rgb[0] * v, rgb[1] * v, rgb[2] * v)
            else:
                levels[spec.name] = v
        return levels

    def _render(self) -> None:
        now = self.ctx.monotonic()
        self._out = out = core.outputs(self.core, now)
        if self.driver is None:
            return
        on = core.buzzer_on(out.buzzer, now - out.buzzer_since)
        board = self.driver.board
        hz = (board.chirp_hz if out.buzzer in core.CHIRPS else board.frequency_hz) if on else None
        try:
            self.driver.apply(self._levels(out, now), hz)
        except GatewayError as exc:
            self._gpio_failed(str(exc))
            return
        if self._gpio_error is not None:
            self._gpio_error = None
            self.ctx.record(JournalEvent("panel.gpio", "panel: GPIO works again"))

    def _gpio_failed(self, message: str) -> None:
        if self._gpio_error != message:
            self._gpio_error = message
            self.ctx.record(JournalEvent("panel.gpio", f"panel: {message}", "warning", {"error": message}))

    def _check_quiet(self, force: bool = False) -> None:
        now = self.ctx.monotonic()
        if not force and now - self._quiet_at < QUIET_CHECK_S:
            return
        self._quiet_at = now
        quiet = False
        if self._quiet_span is not None:
            d = datetime.fromtimestamp(self.ctx.wall(), _tz(self.ctx.config.site.timezone))
            quiet = core.in_quiet_hours(self._quiet_span, d.hour * 60 + d.minute)
        if quiet != self.core.quiet:
            self._feed(core.QuietHours(quiet))

    # --------------------------------------------------------------------------- the mock-pin socket
    async def _serve(self) -> None:
        path = self.ctx.config.state_dir / SOCKET
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            self._server = await asyncio.start_unix_server(self._client, path=str(path))
            os.chmod(path, 0o660)
            self._socket_path = path
        except OSError as exc:
            log.warning("panel: control socket %s not served: %s", path, exc)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict):
                        raise ValueError("a request is a JSON object")
                    reply = await self._op(req)
                except (ValueError, GatewayError) as exc:
                    reply = {"ok": False, "error": str(exc)}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _op(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "state":
            return {"ok": True, **self.panel_state()}
        if op not in ("press", "hold"):
            raise ValueError(f"unknown op {op!r}: press, hold or state")
        s: Any = PRESS_S
        if op == "hold":
            s = req.get("s")
            if s is None:
                s = self.core.policy.hold_s + 0.5
            if isinstance(s, bool) or not isinstance(s, int | float) or not 0 < s <= 300:
                raise ValueError("s must be a number of seconds, 0 < s <= 300")
        async with self._op_lock:
            await self._button(True)
            await asyncio.sleep(float(s))
            await self._button(False)
            if self._pending:
                await asyncio.wait(list(self._pending), timeout=30)
        return {"ok": True, "op": op, "held_s": s, "decided": self.core.last_button,
                "override": self.core.override, **self.panel_state()}

    async def _button(self, pressed: bool) -> None:
        if self.driver is None:
            raise GatewayError(f"panel: no GPIO ({self.error})")
        if self.driver.button_pressed == pressed:
            return
        target = self._edges_done + 1
        self.driver.drive_button(pressed)
        while self._edges_done < target:
            self._edge_seen.clear()
            async with asyncio.timeout(5):
                await self._edge_seen.wait()

    # ------------------------------------------------------------------------------------ reporting
    def panel_state(self) -> dict[str, Any]:
        """``{"leds": {NAME: {"value", "pattern", ...}}, "buzzer": {...}, ...}`` from the pins themselves."""
        out = self._out
        pins: dict[str, Any] = {}
        if self.driver is not None:
            with contextlib.suppress(Exception):
                pins = self.driver.read()
        leds: dict[str, Any] = {}
        for name, lo in out.leds:
            raw = pins.get("leds", {}).get(name)
            value = max(raw) if isinstance(raw, list) else raw
            entry: dict[str, Any] = {"value": None if value is None else round(float(value), 3),
                                     "pattern": lo.pattern}
            if lo.color is not None:
                entry["color"] = lo.color
                entry["rgb"] = raw
            leds[name] = entry
        bz = pins.get("buzzer", {})
        sev = out.severity
        buzzer = {"pattern": out.buzzer, "on": bool(bz.get("on", False)), "frequency_hz": bz.get("frequency_hz"),
                  "severity": sev,
                  "acknowledged": core.RANK[sev] >= core.RANK["warning"] and core.RANK[sev] <= self.core.acked_rank,
                  "quiet": self.core.quiet}
        return {"leds": leds, "buzzer": buzzer,
                "button": {"pressed": bool(pins.get("button", {}).get("pressed", False)),
                           "last": self.core.last_button, "armed": core.armed(self.core, self.ctx.monotonic())},
                "modem_power": pins.get("modem_power"), "override": self.core.override,
                "severity": sev, "causes": list(out.causes)}

    def snapshot(self) -> dict[str, Any]:
        board = self.driver.board.name if self.driver is not None else self.ctx.config.panel.board
        pins = None if self.driver is None else ("mock" if self.driver.mock else "gpio")
        return {"panel": {"board": board, "pins": pins, "error": self.error or self._gpio_error,
                          **self.panel_state()}}

    def metrics(self) -> list[tuple[str, str, dict[str, str], float]]:
        out = self._out
        return [
            ("gateway_panel_alert_severity", "Panel alert severity (0 none .. 4 critical)", {},
             float(core.RANK[out.severity])),
            ("gateway_panel_buzzer_sounding", "1 while the buzzer sounds an alarm pattern", {},
             1.0 if out.buzzer not in ("off",) + core.CHIRPS else 0.0),
            ("gateway_panel_button_total", "Button decisions since start", {"kind": "press"},
             float(self.counts["press"])),
            ("gateway_panel_button_total", "Button decisions since start", {"kind": "hold"},
             float(self.counts["hold"])),
            ("gateway_panel_modem_power_cycles_total", "Modem USB power cycles since start", {},
             float(self.counts["modem_power_cycles"])),
        ]
