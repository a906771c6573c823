"""PowerService: watches the UPS, sheds PoE loads in tiers, starts the shutdown, restores in steps.

Every ``ups.poll_interval_s`` it reads upsd (``gateway.drivers.ups``), feeds the pure machine
(``gateway.core.power``) and carries out its effects.  Load state is desired state: each change is
committed to the journal's ``loads`` table before the SNMP set, the set is read back, and every
``power.reapply_interval_s`` each port is read and set again if it drifted (a lost SET, a switch that
was reset by hand, a daemon restart in the middle of an outage all heal).  A switch that times out or
refuses is one journal event when it starts failing and one when it works again, with retries between.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import replace
from typing import Any

from gateway.config import Config
from gateway.core import power as core
from gateway.core.base import Effect, Event, JournalEvent, Tick
from gateway.core.errors import ActionRejected, GatewayError
from gateway.core.signals import LoadChanged, PowerStatus, ShutdownRequested
from gateway.drivers.poe import PoeSwitch
from gateway.drivers.ups import UpsDriver, UpsStale
from gateway.runtime.service import Context, Service

log = logging.getLogger("gateway.power")

OUTAGE_KEY = "power.outage"  # kv: {"on_battery_since": wall | None, "shed": {tier: reason}}
STATUS_REFRESH_S = 30.0
RETRY_S = 3.0  # a failed port set is retried this often (and on every change of desired state)
SAMPLE_SERIES = (("ups.charge_pct", "charge_pct"), ("ups.runtime_s", "runtime_s"), ("ups.load_pct", "load_pct"),
                 ("ups.input_voltage", "input_voltage"))


def policy_of(cfg: Config) -> core.Policy:
    p, u = cfg.power, cfg.ups
    return core.Policy(
        loads=tuple(core.LoadSpec(ld.name, ld.tier, ld.watts) for ld in cfg.loads),
        tiers=tuple(core.TierRule(t.tier, t.after_on_battery_s, t.runtime_below_s, t.charge_below_pct)
                    for t in p.tiers),
        debounce_s=p.debounce_s, low_battery_charge_pct=p.low_battery_charge_pct,
        low_battery_runtime_s=p.low_battery_runtime_s, restore_hold_s=p.restore_hold_s,
        restore_stagger_s=p.restore_stagger_s, stale_after_s=u.stale_after_s,
        shutdown_slack_s=u.shutdown_duration_s + u.shutdown_reserve_s, ups_name=u.name)


class _Port:
    """What the service knows about one load's port."""

    def __init__(self) -> None:
        self.actual: bool | None = None  # confirmed by a read-back
        self.power_w: float | None = None
        self.error: str | None = None
        self.checked_at = -math.inf  # monotonic time of the last read or set
        self.attempted_at = -math.inf
        self.wanted: bool | None = None  # the state last tried


class PowerService(Service):
    name = "power"

    def __init__(self, ctx: Context, ups: Any = None, switches: dict[str, Any] | None = None) -> None:
        super().__init__(ctx)
        cfg = ctx.config
        self.ups: Any = ups if ups is not None else self._make_ups(cfg)
        self._own_switches = switches is None
        self.switches: dict[str, Any] = switches if switches is not None else {}
        self.switch_errors: dict[str, str] = {}
        self.ports: dict[str, _Port] = {ld.name: _Port() for ld in cfg.loads}
        self.core = self._restore(cfg)
        self._effects: list[Effect] = []
        self._kick = asyncio.Event()
        self._apply_lock = asyncio.Lock()
        self._fsd_pending: str | None = None
        self._fsd_done = False
        self._published: tuple[Any, ...] | None = None
        self._published_at = -math.inf
        self._minute: int | None = None
        self._acc: dict[str, list[float]] = {}
        self._on_battery_since_wall: float | None = None
        self._saved_outage: Any = None
        self.polls = 0
        self.poll_failures = 0
        self.load_failures: dict[str, int] = {}  # failed reads/sets per load, for /metrics
        self._failing: dict[str, str] = {}  # what fails now, per load (and "fsd"): journaled once
        self.last_poll_ok_at: float | None = None
        ctx.register_action("load", self._action_load)
        ctx.register_action("loads.shed", self._action_shed)

    # ------------------------------------------------------------------------------------ set-up
    @staticmethod
    def _make_ups(cfg: Config) -> UpsDriver:
        u = cfg.ups
        return UpsDriver(u.name, u.host, u.port, u.username, u.password, u.timeout_s)

    def _make_switches(self, cfg: Config) -> None:
        self.switches, self.switch_errors = {}, {}
        for sw in cfg.switches:
            try:
                self.switches[sw.name] = PoeSwitch.from_config(sw)
            except GatewayError as exc:
                self.switch_errors[sw.name] = str(exc)
                self.ctx.record(JournalEvent("power.switch_error", f"switch {sw.name}: {exc}", "warning",
                                             {"switch": sw.name}))

    def _restore(self, cfg: Config) -> core.PowerState:
        """Re-read what was shed and held from the journal, so a restart mid-outage carries on."""
        now = self.ctx.monotonic()
        names = {ld.name for ld in cfg.loads}
        overrides = {name: row["override"] for name, row in self.ctx.journal.loads().items()
                     if name in names and row.get("override") in ("on", "off")}
        saved = self.ctx.journal.get(OUTAGE_KEY) or {}
        shed: dict[int, str] = {}
        for tier, reason in (saved.get("shed") or {}).items() if isinstance(saved, dict) else ():
            try:
                if int(tier) > 0:
                    shed[int(tier)] = str(reason)
            except (TypeError, ValueError):
                continue
        since = saved.get("on_battery_since") if isinstance(saved, dict) else None
        for_s = max(0.0, self.ctx.wall() - float(since)) if isinstance(since, (int, float)) and shed else None
        if shed or overrides:
            log.info("power: resuming with tiers %s shed and %d load(s) held by the admin",
                     sorted(shed) or "none", len(overrides))
        self._saved_outage = saved
        return core.initial(policy_of(cfg), now, shed, overrides, for_s)

    # ---------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self._own_switches:
            self._make_switches(self.ctx.config)
        self._kick.set()  # apply the desired state at once (after a restart: re-apply what was shed)
        self.spawn(self._poll_loop(), "poll")
        self.spawn(self._apply_loop(), "apply")

    async def stop(self) -> None:
        await super().stop()
        self._flush_samples(force=True)
        for closer in [self.ups, *self.switches.values()]:
            try:
                await closer.close()
            except Exception as exc:  # closing must not stop the daemon from stopping
                log.debug("power: close failed: %s", exc)

    def reload(self, config: Config) -> None:
        old = self.ctx.config
        super().reload(config)
        self.core = replace(self.core, policy=policy_of(config))
        for ld in config.loads:
            self.ports.setdefault(ld.name, _Port())
        if old.ups != config.ups and isinstance(self.ups, UpsDriver):
            previous, self.ups = self.ups, self._make_ups(config)
            self.spawn(previous.close(), "close-old-ups")
        if self._own_switches and old.switches != config.switches:
            previous_sw = list(self.switches.values())
            self._make_switches(config)
            for sw in previous_sw:
                self.spawn(sw.close(), "close-old-switch")
        self._kick.set()

    # --------------------------------------------------------------------------------------- poll
    async def _poll_loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one bad round end the loop
                log.exception("power: poll round failed")
            period = self.ctx.config.ups.poll_interval_s
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))

    async def poll(self) -> None:
        """One round: read the UPS, decide, act (loads are applied by the apply loop, kicked here)."""
        self.polls += 1
        try:
            reading = await self.ups.read()
        except UpsStale as exc:
            self.poll_failures += 1
            self._feed(core.PollFailed(str(exc), stale=True))
        except GatewayError as exc:
            self.poll_failures += 1
            self._feed(core.PollFailed(str(exc)))
        else:
            self.last_poll_ok_at = self.ctx.wall()
            self._feed(reading)
            self._sample(reading)
        self._feed(Tick())
        await self._run_effects()
        self._publish()

    def _feed(self, event: Event) -> None:
        before = (self.core.on_battery, dict(self.core.shed))
        self.core, effects = core.step(self.core, event, self.ctx.monotonic())
        for eff in effects:
            if isinstance(eff, JournalEvent):
                self.ctx.record(eff)
            elif isinstance(eff, core.SetLoad):
                # committed before the switch is touched: a crash now re-applies it on start
                self.ctx.journal.set_load(eff.name, eff.state, eff.reason, eff.override)
                self._kick.set()
            else:
                self._effects.append(eff)
        if (self.core.on_battery, dict(self.core.shed)) != before:
            self._save_outage()

    def _save_outage(self) -> None:
        if self.core.on_battery and self._on_battery_since_wall is None:
            ob = self.core.ob_first_at
            self._on_battery_since_wall = self.ctx.wall() - (self.ctx.monotonic() - ob if ob is not None else 0.0)
        if not self.core.on_battery and not self.core.shed:
            self._on_battery_since_wall = None
        value = {"on_battery_since": self._on_battery_since_wall,
                 "shed": {str(k): v for k, v in self.core.shed.items()}}
        if value != self._saved_outage:
            self.ctx.journal.put(OUTAGE_KEY, value)
            self._saved_outage = value

    async def _run_effects(self) -> None:
        while self._effects:
            eff = self._effects.pop(0)
            if isinstance(eff, core.RequestShutdown):
                self.ctx.bus.publish(ShutdownRequested(eff.reason))
                mode = self.ctx.config.ups.shutdown_mode
                if mode == "fsd":
                    self._fsd_pending, self._fsd_done = eff.reason, False
                elif mode == "notify":
                    hosts = ", ".join(self.ctx.config.ups.notify_hosts) or "no hosts configured"
                    log.warning("power: shutdown requested (%s); servers to notify: %s", eff.reason, hosts)
        if self._fsd_pending and not self._fsd_done and self.core.state == "shutting_down":
            try:
                await self.ups.set_fsd()
            except GatewayError as exc:
                self._port_failed_once("fsd", f"setting FSD on {self.ups.address} failed: {exc}; retrying")
            else:
                self._fsd_done = True
                self._port_ok_once("fsd", f"FSD set on {self.ups.address}: every upsmon on this UPS shuts "
                                          "its host down now")
                self.ctx.record(JournalEvent("power.fsd", f"FSD set on UPS {self.ups.address} ({self._fsd_pending})",
                                             "critical", {"reason": self._fsd_pending}))

    def _port_failed_once(self, key: str, message: str) -> None:
        self.load_failures[key] = self.load_failures.get(key, 0) + 1
        failing = self._failing
        if failing.get(key) != message:
            first = key not in failing
            failing[key] = message
            if first:
                self.ctx.record(JournalEvent("power.load_failed" if key != "fsd" else "power.fsd_failed",
                                             message, "warning", {"key": key}))
            else:
                log.debug("power: %s", message)

    def _port_ok_once(self, key: str, message: str) -> None:
        failing = self._failing
        if failing.pop(key, None) is not None and key != "fsd":
            self.ctx.record(JournalEvent("power.load_ok", message, data={"key": key}))

    # -------------------------------------------------------------------------------------- apply
    async def _apply_loop(self) -> None:
        while True:
            try:
                await self.apply()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("power: applying load state failed")
            wait = min(self.ctx.config.power.reapply_interval_s, RETRY_S)
            try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races the kick
                async with asyncio.timeout(wait):
                    await self._kick.wait()
            except TimeoutError:
                pass

    async def apply(self, verify_all: bool = False) -> None:
        """Bring every port to its desired state: set what differs or failed, re-read the rest when due."""
        self._kick.clear()
        async with self._apply_lock:
            want = core.desired(self.core)
            now = self.ctx.monotonic()
            reapply = self.ctx.config.power.reapply_interval_s
            jobs = []
            for ld in self.ctx.config.loads:
                port = self.ports.setdefault(ld.name, _Port())
                state = want.get(ld.name, ("on", "", "auto"))[0] == "on"
                if port.actual is None and not port.error:
                    jobs.append(self._verify(ld, port, state))  # read first: set only what differs
                elif port.actual != state or port.error:
                    if port.error and now - port.attempted_at < RETRY_S and port.wanted == state:
                        continue  # failed a moment ago for this same state: retry after RETRY_S
                    jobs.append(self._set(ld, port, state))
                elif verify_all or now - port.checked_at >= reapply:
                    jobs.append(self._verify(ld, port, state))
            if jobs:
                await asyncio.gather(*jobs)

    async def _set(self, ld: Any, port: _Port, on: bool) -> None:
        sw = self.switches.get(ld.switch)
        port.attempted_at, port.wanted = self.ctx.monotonic(), on
        if sw is None:
            port.error = self.switch_errors.get(ld.switch, f"no switch {ld.switch!r}")
            self._port_failed_once(ld.name, f"load {ld.name}: {port.error}")
            return
        try:
            got = await sw.set_port(ld.port, on)
        except GatewayError as exc:
            port.error = str(exc)
            self._port_failed_once(ld.name, f"load {ld.name}: could not switch {'on' if on else 'off'}: {exc}")
            return
        self._confirmed(ld, port, got.on, got.power_w)

    async def _verify(self, ld: Any, port: _Port, on: bool) -> None:
        sw = self.switches.get(ld.switch)
        if sw is None:
            return
        port.attempted_at, port.wanted = self.ctx.monotonic(), on
        try:
            got = await sw.get_port(ld.port)
        except GatewayError as exc:
            port.error = str(exc)
            self._port_failed_once(ld.name, f"load {ld.name}: cannot read port {ld.port}: {exc}")
            return
        if got.on != on:
            log.warning("power: load %s found %s on %s port %s, want %s: setting it again", ld.name,
                        "on" if got.on else "off", ld.switch, ld.port, "on" if on else "off")
            port.actual = got.on
            await self._set(ld, port, on)
            return
        self._confirmed(ld, port, got.on, got.power_w)

    def _confirmed(self, ld: Any, port: _Port, on: bool, power_w: float | None) -> None:
        changed = port.actual != on
        port.actual, port.error, port.checked_at = on, None, self.ctx.monotonic()
        if power_w is not None and on:
            port.power_w = power_w  # what it draws when on: the watts shedding it saves
        self._port_ok_once(ld.name, f"load {ld.name}: switch {ld.switch} answers again (port {ld.port} "
                                    f"{'on' if on else 'off'})")
        if changed:
            reason = core.desired(self.core).get(ld.name, ("", "", ""))[1]
            self.ctx.bus.publish(LoadChanged(ld.name, "on" if on else "off", reason, ld.tier))

    # ------------------------------------------------------------------------------------ actions
    async def _action_load(self, params: dict[str, Any], who: str) -> dict[str, Any]:
        name, state = params.get("name"), params.get("state")
        names = [ld.name for ld in self.ctx.config.loads]
        if not isinstance(name, str) or name not in names:
            raise ActionRejected("unknown_load", f"no load named {name!r} (have: {', '.join(names) or 'none'})")
        if state not in ("on", "off", "auto"):
            raise ActionRejected("bad_state", f"state must be on, off or auto, not {state!r}")
        self._feed(core.Override(name, state, who))
        self._publish(force=True)
        want = core.desired(self.core)[name]
        held = " (held until set back to auto)" if want[2] != "auto" else " (automatic)"
        return {"name": name, "state": want[0], "override": want[2], "reason": want[1],
                "message": f"{name}: {want[0]}{held}"}

    async def _action_shed(self, params: dict[str, Any], who: str) -> dict[str, Any]:
        tier = params.get("tier")
        tiers = sorted({ld.tier for ld in self.ctx.config.loads if ld.tier > 0})
        if not isinstance(tier, int) or isinstance(tier, bool) or tier not in tiers:
            raise ActionRejected("bad_tier", f"tier must be one of {tiers or 'none (no sheddable loads)'}; "
                                             "tier 0 is essential and never shed")
        names = [ld.name for ld in self.ctx.config.loads if ld.tier == tier]
        for name in names:
            self._feed(core.Override(name, "off", who))
        self._publish(force=True)
        return {"tier": tier, "loads": names, "message": f"tier {tier} held off until set back to auto"}

    async def battery_test(self) -> dict[str, Any]:
        """Start the UPS's own battery self-test (the power drill's "UPS battery test"), through upsd's instant
        command for it; DeviceRefused when the UPS offers none or upsd refuses, ActionRejected unless online."""
        if self.core.state != "online":
            raise ActionRejected("not_online", f"the UPS is {self.core.state.replace('_', ' ')}: a battery test "
                                               "runs only on mains with upsd answering")
        try:
            res = dict(await self.ups.battery_test())
        except GatewayError as exc:
            self.ctx.record(JournalEvent("power.battery_test_failed", f"UPS battery test not started: {exc}",
                                         "warning", {"error": str(exc)}))
            raise
        self.ctx.record(JournalEvent("power.battery_test", f"UPS battery test started on {self.ups.address} "
                                                           f"({res.get('command')})", data=res))
        await self.poll()  # the snapshot shows the test (TEST, the charge falling) from now on, not a poll later
        return res

    # ------------------------------------------------------------------------- samples and facts
    def _sample(self, r: core.UpsReading) -> None:
        minute = int(self.ctx.wall() // 60)
        if self._minute is not None and minute != self._minute:
            self._flush_samples()
        self._minute = minute
        for series, attr in SAMPLE_SERIES:
            v = getattr(r, attr)
            if v is not None:
                self._acc.setdefault(series, []).append(float(v))

    def _flush_samples(self, force: bool = False) -> None:
        if self._minute is None or not self._acc:
            return
        ts = self._minute * 60.0
        rows = [(ts, series, round(sum(vs) / len(vs), 2)) for series, vs in self._acc.items() if vs]
        self._acc = {}
        if rows:
            try:
                self.ctx.journal.add_samples(rows)
            except GatewayError as exc:
                log.warning("power: samples not written: %s", exc)

    def _measured_watts(self) -> dict[str, float]:
        return {name: p.power_w for name, p in self.ports.items() if p.power_w is not None}

    def _publish(self, force: bool = False) -> None:
        s = self.core
        r = s.reading
        key = (s.state, s.shed_tiers, tuple(sorted(s.overrides.items())))
        now = self.ctx.monotonic()
        if not force and key == self._published and now - self._published_at < STATUS_REFRESH_S:
            return
        self._published, self._published_at = key, now
        self.ctx.bus.publish(PowerStatus(
            state=s.state, charge_pct=r.charge_pct if r else None, runtime_s=r.runtime_s if r else None,
            load_pct=r.load_pct if r else None, on_battery_since=self._on_battery_since_wall if s.on_battery else None,
            shed_tiers=s.shed_tiers, shed_watts=core.shed_watts(s, self._measured_watts()),
            minutes_gained=core.minutes_gained(s.load_before_pct, r.load_pct if r else None,
                                               r.runtime_s if r else None)))

    # ---------------------------------------------------------------------------- snapshot/metrics
    def snapshot(self) -> dict[str, Any]:
        s = self.core
        r = s.reading
        want = core.desired(s)
        loads = []
        for ld in self.ctx.config.loads:
            port = self.ports.get(ld.name) or _Port()
            d_state, reason, override = want.get(ld.name, ("on", "", "auto"))
            actual = port.actual
            loads.append({"name": ld.name, "switch": ld.switch, "port": ld.port, "tier": ld.tier,
                          "state": ("on" if actual else "off") if actual is not None else d_state,
                          "reason": reason, "desired": d_state, "override": override,
                          "confirmed": actual is not None and (actual == (d_state == "on")) and not port.error,
                          "power_w": port.power_w, "error": port.error, "description": ld.description})
        ups = {"status": list(r.status) if r else [], "charge_pct": r.charge_pct if r else None,
               "runtime_s": r.runtime_s if r else None, "load_pct": r.load_pct if r else None,
               "input_voltage": r.input_voltage if r else None, "name": getattr(self.ups, "address", ""),
               "model": r.model if r else "", "flags": {f: core.FLAGS.get(f, f) for f in (r.status if r else ())}}
        return {"power": {
            "state": s.state, "ups": ups,
            "on_battery_since": self._on_battery_since_wall if s.on_battery else None,
            "shed_tiers": list(s.shed_tiers), "restoring": s.restoring,
            "shed_watts": core.shed_watts(s, self._measured_watts()),
            "minutes_gained": core.minutes_gained(s.load_before_pct, r.load_pct if r else None,
                                                  r.runtime_s if r else None),
            "comm_lost_reason": s.comm_lost_reason if s.state == "comm_lost" else None,
            "shutdown_requested": s.shutdown_requested, "fsd_set": self._fsd_done,
            "last_reading_at": self.last_poll_ok_at,
        }, "loads": loads}

    def metrics(self) -> list[tuple[str, str, dict[str, str], float]]:
        s = self.core
        r = s.reading
        out: list[tuple[str, str, dict[str, str], float]] = [
            ("gateway_power_state", "Power state: 0 online, 1 on_battery, 2 low_battery, 3 shutting_down, "
             "4 comm_lost", {}, float(core.STATE_CODES[s.state])),
            ("gateway_ups_on_battery", "1 while the office runs on battery (debounced)", {}, float(s.on_battery)),
            ("gateway_ups_comm_ok", "1 while upsd answers with fresh data", {}, float(s.comm_ok)),
            ("gateway_loads_shed_watts", "Watts of PoE loads switched off", {},
             core.shed_watts(s, self._measured_watts())),
            ("gateway_ups_polls_total", "Polls of upsd since start", {}, float(self.polls)),
            ("gateway_ups_poll_failures_total", "Polls of upsd that failed (no answer, stale, refused)", {},
             float(self.poll_failures)),
        ]
        if r is not None and s.comm_ok:
            for metric, help_, value in (
                    ("gateway_ups_charge_percent", "UPS battery charge", r.charge_pct),
                    ("gateway_ups_runtime_seconds", "UPS estimated runtime", r.runtime_s),
                    ("gateway_ups_load_percent", "UPS load", r.load_pct),
                    ("gateway_ups_input_volts", "UPS input voltage", r.input_voltage)):
                if value is not None:
                    out.append((metric, help_, {}, float(value)))
        for ld in self.ctx.config.loads:
            out.append(("gateway_load_failures_total", "Failed reads or sets of a load's port (each retry counts)",
                        {"load": ld.name}, float(self.load_failures.get(ld.name, 0))))
            port = self.ports.get(ld.name)
            if port is not None and port.actual is not None:
                out.append(("gateway_load_on", "1 if the PoE load's port is on", {"load": ld.name,
                                                                                   "tier": str(ld.tier)},
                            float(port.actual)))
        return out
