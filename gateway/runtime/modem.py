"""ModemService: keeps the LTE modem healthy, counts its data, and shapes the backup channel.

Every ``modem.poll_interval_s`` it reads the modem through the AT driver, feeds the pure machine
(``gateway.core.modem``), carries out its effects (dial, hang up, radio reset, a USB power cycle asked of
the panel through :class:`~gateway.core.signals.ModemPowerCycle`), reads the LTE interface's byte counters
for the data budget (persisted in the journal's kv), and keeps the nftables LTE policy in its desired
state: business apps and SIP first and the rest rate-limited while LTE carries the office, removed on
failback; everything but them blocked when the budget is used up under ``at_cap = "restrict"``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.config import Config
from gateway.core import modem as core
from gateway.core.base import Effect, Event, JournalEvent
from gateway.core.errors import GatewayError
from gateway.core.signals import ActiveUplinkChanged, ModemPowerCycle, ModemStatus, UplinkStatus
from gateway.drivers.modem import ModemDriver, Nft, SysfsCounters, load_profile
from gateway.runtime.service import Context, Service

log = logging.getLogger("gateway.modem")

BUDGET_KEY = "modem.budget"
PRIORITY_KEY = "modem.priority_addresses"
PERSIST_EVERY_BYTES = 1_000_000
PERSIST_EVERY_S = 300.0
POLICY_REAPPLY_S = 60.0
RESOLVE_EVERY_S = 600.0

CounterSource = Callable[[], tuple[int | None, int | None]]


def policy_of(cfg: Config) -> core.Policy:
    m = cfg.modem
    return core.Policy(standby=m.standby, recovery_after_s=m.recovery_after_s, backoff_s=m.recovery_backoff_s,
                       registration_timeout_s=m.registration_timeout_s, dial_retry_s=m.dial_retry_s,
                       giveup_retry_s=m.giveup_retry_s, clear_after_s=m.recovery_clear_s)


def priority_hosts(cfg: Config) -> list[str]:
    """Hosts whose traffic goes first on LTE: the business apps, extra configured hosts, and what the
    backup uplink itself needs (its probe targets and DNS servers, so it can still be judged and used)."""
    hosts: list[str] = []
    for s in cfg.services:
        if s.url:
            h = urlsplit(s.url).hostname
            if h:
                hosts.append(h)
        elif s.address:
            hosts.append(s.address.rpartition(":")[0].strip("[]"))
    hosts += cfg.failover.lte.priority_hosts
    backup = cfg.uplink("backup")
    if backup is not None:
        hosts += backup.probe_targets + backup.dns
    return list(dict.fromkeys(h for h in hosts if h))


def _tz(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


class ModemService(Service):
    name = "modem"

    def __init__(self, ctx: Context, driver: Any = None, counters: CounterSource | None = None,
                 nft: Nft | None = None) -> None:
        super().__init__(ctx)
        cfg = ctx.config
        self.error: str | None = None
        self.driver: Any = driver
        self._own_driver = driver is None  # an injected (test) driver is kept across reloads
        if driver is None and cfg.modem.enabled:
            self.driver = self._make_driver(cfg)
        self.counters: CounterSource = counters or SysfsCounters(cfg.modem.interface)
        self.nft = nft or Nft(ctx.netns)
        self.core = core.initial(policy_of(cfg))
        self.budget = self._restore_budget(cfg)
        self.lte_active = False
        self.status: ModemStatus | None = None
        self.priority_v4: tuple[str, ...] = ()
        self.priority_v6: tuple[str, ...] = ()
        self._load_priority()
        self._resolved_at: float | None = None
        self.policy_mode: str | None = None  # what nftables holds now (None: not applied yet)
        self._policy_script: str | None = None
        self._policy_at = 0.0
        self._persisted_used = self.budget.used_bytes
        self._persisted_at = ctx.monotonic()
        self._effects: list[Effect] = []
        self._wake = asyncio.Event()
        self._failures: dict[str, str] = {}  # what failed last, per activity: log once per new message
        self.power_cycles = 0
        self._last_error = ""
        ctx.bus.subscribe(UplinkStatus, self._on_uplink)
        ctx.bus.subscribe(ActiveUplinkChanged, self._on_active)

    def _make_driver(self, cfg: Config) -> ModemDriver | None:
        try:
            profile = load_profile(cfg.modem.profile)
        except GatewayError as exc:
            self.error = str(exc)
            log.error("modem: %s", exc)
            return None
        return ModemDriver(cfg.modem.device, profile, cfg.modem.baudrate, cfg.modem.command_timeout_s,
                           cfg.modem.pin)

    def _restore_budget(self, cfg: Config) -> core.Budget:
        lte = cfg.failover.lte
        return core.budget_from_json(self.ctx.journal.get(BUDGET_KEY), int(lte.data_budget_mb * 1_000_000),
                                     tuple(lte.warn_pct), lte.at_cap)

    def _load_priority(self) -> None:
        saved = self.ctx.journal.get(PRIORITY_KEY) or {}
        if isinstance(saved, dict):
            self.priority_v4 = tuple(x for x in saved.get("v4", []) if isinstance(x, str))
            self.priority_v6 = tuple(x for x in saved.get("v6", []) if isinstance(x, str))

    # ------------------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.spawn(self._loop(), "poll")

    async def stop(self) -> None:
        await super().stop()
        self._persist_budget(force=True)
        if self.driver is not None:
            try:
                await self.driver.close()
            except Exception as exc:  # a broken port must not stop the daemon from stopping
                log.debug("modem: close failed: %s", exc)

    def reload(self, config: Config) -> None:
        old = self.ctx.config
        super().reload(config)
        self.core = replace(self.core, policy=policy_of(config))
        if config.modem.standby == "warm" and not self.core.want_data:
            self.core = replace(self.core, want_data=True)
        lte = config.failover.lte
        self.budget = replace(self.budget, budget_bytes=int(lte.data_budget_mb * 1_000_000),
                              warn_pct=tuple(lte.warn_pct), at_cap=lte.at_cap)
        def port(c: Config) -> tuple[Any, ...]:
            return c.modem.device, c.modem.profile, c.modem.baudrate, c.modem.enabled, c.modem.pin

        if self._own_driver and port(old) != port(config):
            previous = self.driver
            self.error = None
            self.driver = self._make_driver(config) if config.modem.enabled else None
            if previous is not None:
                self.spawn(previous.close(), "close-old-driver")
        if old.modem.interface != config.modem.interface and isinstance(self.counters, SysfsCounters):
            self.counters = SysfsCounters(config.modem.interface)
        self._resolved_at = None
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let a modem fault end the loop
                self._failed("poll", f"{type(exc).__name__}: {exc}")
            try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races the wake-up
                async with asyncio.timeout(self.ctx.config.modem.poll_interval_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()

    # --------------------------------------------------------------------------------------- poll
    async def poll(self) -> None:
        """One round: read the modem, decide, act, count data, keep the LTE policy in place."""
        if self.driver is not None and self.ctx.config.modem.enabled:
            await self._run_effects()  # what bus facts asked for since the last round goes first
            reading = await self.driver.read()
            if reading.error != self._last_error:
                self._last_error = reading.error
                if reading.error:
                    log.debug("modem: reading incomplete: %s", reading.error)
            self._feed(reading)
            self._publish()  # at once: the uplinks judge the LTE link by the call's state
            await self._run_effects()
        self._count()
        await self._refresh_priority()
        await self._reconcile_policy()
        self._publish()

    def _feed(self, event: Event) -> None:
        self.core, effects = core.step(self.core, event, self.ctx.monotonic())
        for eff in effects:
            if isinstance(eff, JournalEvent):
                self.ctx.record(eff)
            else:
                self._effects.append(eff)

    async def _run_effects(self) -> None:
        while self._effects:
            eff = self._effects.pop(0)
            if self.driver is None:
                continue
            try:
                if isinstance(eff, core.Dial):
                    await self.driver.dial(self.ctx.config.modem.apn)
                    self._ok("dial", "modem: data call started")
                elif isinstance(eff, core.HangUp):
                    await self.driver.hangup()
                elif isinstance(eff, core.ResetRadio):
                    await self.driver.reset_radio()
                elif isinstance(eff, core.PowerCycle):
                    self.power_cycles += 1
                    log.warning("modem: asking the board to power-cycle the modem (%s)", eff.reason)
                    self.ctx.bus.publish(ModemPowerCycle(eff.reason, self.ctx.config.modem.power_off_s))
            except GatewayError as exc:
                self._failed(type(eff).__name__.lower(), str(exc))

    def _failed(self, what: str, message: str) -> None:
        if self._failures.get(what) != message:
            self._failures[what] = message
            log.warning("modem: %s failed: %s", what, message)

    def _ok(self, what: str, message: str) -> None:
        if self._failures.pop(what, None) is not None:
            log.info("%s", message)

    # ---------------------------------------------------------------------------------- bus facts
    def _on_uplink(self, fact: UplinkStatus) -> None:
        backup = self.ctx.config.uplink("backup")
        # the probes' verdict, not the shown state: a healthy LTE behind a working wired line is shown as
        # standby, and taking that for "no verdict" left a down verdict standing, so the ladder re-dialled a
        # modem whose probes answered again
        health = fact.health or fact.state
        if backup is None or fact.name != backup.name or health in ("standby", "unknown"):
            return
        ok = health in ("up", "degraded")
        if ok != self.core.data_path_ok:
            self._feed(core.DataPath(ok, fact.reason))
            self._wake.set()

    def _on_active(self, fact: ActiveUplinkChanged) -> None:
        backup = self.ctx.config.uplink("backup")
        active = backup is not None and fact.name == backup.name
        if active != self.lte_active:
            self.lte_active = active
            self._feed(core.WantData(active, fact.reason or ("LTE active" if active else "LTE not active")))
            # tell the uplinks now, before the hang-up of a cold standby drops the carrier: that drop is
            # then standby, not "lte: down"
            self._publish()
            self._wake.set()

    # -------------------------------------------------------------------------------- data budget
    def _period(self) -> str:
        d = datetime.fromtimestamp(self.ctx.wall(), _tz(self.ctx.config.site.timezone))
        return core.billing_period(d.year, d.month, d.day, self.ctx.config.failover.lte.billing_day)

    def _count(self) -> None:
        try:
            ifindex, total = self.counters()
        except Exception as exc:  # an injected source may fail; the budget just does not move
            self._failed("counters", str(exc))
            ifindex, total = None, None
        before = self.budget
        self.budget, effects = core.budget_step(self.budget, core.Counters(total, self._period(), ifindex))
        for eff in effects:
            if isinstance(eff, JournalEvent):
                self.ctx.record(eff)
        changed = (before.period, before.warned, before.capped, before.last_ifindex) != (
            self.budget.period, self.budget.warned, self.budget.capped, self.budget.last_ifindex) or (
            before.last_counter is None and self.budget.last_counter is not None)
        self._persist_budget(force=changed)

    def _persist_budget(self, force: bool = False) -> None:
        now = self.ctx.monotonic()
        moved = self.budget.used_bytes - self._persisted_used
        if not force and moved < PERSIST_EVERY_BYTES and not (moved and now - self._persisted_at >= PERSIST_EVERY_S):
            return
        try:
            self.ctx.journal.put(BUDGET_KEY, self.budget.to_json())
        except GatewayError as exc:
            self._failed("budget", str(exc))
            return
        self._persisted_used = self.budget.used_bytes
        self._persisted_at = now

    # ---------------------------------------------------------------------------------- LTE policy
    async def _refresh_priority(self) -> None:
        now = self.ctx.monotonic()
        if self._resolved_at is not None and now - self._resolved_at < RESOLVE_EVERY_S:
            return
        self._resolved_at = now
        v4: set[str] = set()
        v6: set[str] = set()
        unresolved: list[str] = []
        loop = asyncio.get_running_loop()
        for host in priority_hosts(self.ctx.config):
            try:
                net = ipaddress.ip_network(host, strict=False)
                (v4 if net.version == 4 else v6).add(str(net))
                continue
            except ValueError:
                pass
            try:
                async with asyncio.timeout(3.0):
                    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except (OSError, TimeoutError):
                unresolved.append(host)
                continue
            for info in infos:
                addr = str(info[4][0]).split("%")[0]
                (v4 if ":" not in addr else v6).add(addr)
        if unresolved:
            # keep what we knew: during an outage DNS may be the thing that is down
            v4 |= set(self.priority_v4)
            v6 |= set(self.priority_v6)
            self._failed("resolve", f"cannot resolve {', '.join(unresolved)}; keeping the last known addresses")
        new4, new6 = tuple(sorted(v4)), tuple(sorted(v6))
        if (new4, new6) != (self.priority_v4, self.priority_v6):
            self.priority_v4, self.priority_v6 = new4, new6
            self.ctx.journal.put(PRIORITY_KEY, {"v4": list(new4), "v6": list(new6)})

    def policy_script(self, mode: str) -> str:
        cfg = self.ctx.config
        return core.render_lte_policy(mode, cfg.modem.interface, self.priority_v4, self.priority_v6,
                                      tuple(cfg.failover.lte.priority_ports), cfg.failover.lte.restrict_rate_kbit)

    async def _reconcile_policy(self) -> None:
        mode = core.lte_policy_mode(self.lte_active, self.budget)
        try:
            script = self.policy_script(mode)
        except ValueError as exc:
            self._failed("policy", str(exc))
            return
        now = self.ctx.monotonic()
        due = mode != "none" and now - self._policy_at >= POLICY_REAPPLY_S
        if script == self._policy_script and not due:
            return
        try:
            await self.nft.apply(script)
        except GatewayError as exc:
            self._failed("policy", str(exc))
            return
        self._ok("policy", "modem: LTE policy applied again")
        if mode != self.policy_mode:
            words = {"none": "removed", "limit": "business apps and SIP first, the rest rate-limited to "
                     f"{self.ctx.config.failover.lte.restrict_rate_kbit} kbit/s",
                     "block": "only business apps and SIP (data budget used up)"}
            if self.policy_mode is not None or mode != "none":
                self.ctx.record(JournalEvent("modem.lte_policy", f"LTE traffic policy: {words[mode]}",
                                             data={"mode": mode, "priority_v4": list(self.priority_v4),
                                                   "priority_v6": list(self.priority_v6)}))
        self.policy_mode = mode
        self._policy_script = script
        self._policy_at = now

    # ----------------------------------------------------------------------------------- outputs
    def _publish(self) -> None:
        r = self.core.reading
        st = ModemStatus(state=self.core.state, registration=r.registration if r else None,
                         operator=r.operator if r else None, technology=r.technology if r else None,
                         rssi_dbm=r.rssi_dbm if r else None, recovery_rung=self.core.recovery_rung,
                         data_wanted=self.core.want_data)
        if st != self.status:
            self.status = st
            self.ctx.bus.publish(st)

    def snapshot(self) -> dict[str, Any]:
        r = self.core.reading
        cfg = self.ctx.config
        present = bool(r and r.present)
        return {"modem": {
            "present": present,
            "sim": r.sim if r else None,
            "registration": r.registration if r else None,
            "operator": r.operator if r else None,
            "rssi_dbm": r.rssi_dbm if r else None,
            "technology": r.technology if r else None,
            "data_used_bytes": self.budget.used_bytes,
            "data_budget_bytes": self.budget.budget_bytes or None,
            "data_period_start": self.budget.period or None,
            "data_capped": self.budget.capped,
            "state": self.core.state if cfg.modem.enabled else "disabled",
            "rsrp_dbm": r.rsrp_dbm if r else None,
            "rsrq_db": r.rsrq_db if r else None,
            "sinr_db": r.sinr_db if r else None,
            "data_connected": bool(r and r.data_connected),
            "iccid": r.iccid if r else None,
            "recovery_rung": self.core.recovery_rung,
            "trouble": self.core.trouble,
            "standby": cfg.modem.standby,
            "profile": cfg.modem.profile,
            "device": cfg.modem.device,
            "lte_policy": self.policy_mode,
            "error": self.error or (r.error if r and r.error else None),
            "updated_at": time.time() if r else None,
        }}

    def metrics(self) -> list[tuple[str, str, dict[str, str], float]]:
        r = self.core.reading
        out: list[tuple[str, str, dict[str, str], float]] = [
            ("gateway_modem_present", "1 when the modem answers", {}, 1.0 if r and r.responsive else 0.0),
            ("gateway_modem_data_used_bytes", "bytes used on LTE in this billing period", {},
             float(self.budget.used_bytes)),
            ("gateway_modem_data_budget_bytes", "LTE data budget per billing period (0: none)", {},
             float(self.budget.budget_bytes)),
            ("gateway_modem_recovery_rung", "recovery ladder rung taken (0: none)", {}, float(self.core.rung)),
        ]
        if r is not None:
            for name, help_, value in (("gateway_modem_signal_dbm", "LTE RSSI in dBm", r.rssi_dbm),
                                       ("gateway_modem_rsrp_dbm", "LTE RSRP in dBm", r.rsrp_dbm),
                                       ("gateway_modem_rsrq_db", "LTE RSRQ in dB", r.rsrq_db),
                                       ("gateway_modem_sinr_db", "LTE SINR in dB", r.sinr_db)):
                if value is not None:
                    out.append((name, help_, {}, float(value)))
        return out
