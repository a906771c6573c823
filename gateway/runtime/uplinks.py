"""The uplinks service: probes every uplink through itself, feeds the core, moves the default route.

- A scheduler per uplink sends probes to each target (``probe_interval_ms`` on the active uplink and the
  primary, ``standby_probe_interval_ms`` on an idle backup, to save LTE data); a target that missed a probe
  is probed 4x faster until it answers, so ``down_after`` losses in a row take well under a second.  A probe
  is judged lost at an adaptive deadline (3 x smoothed RTT + 4 x its deviation, at least one probe interval,
  at most ``probe_timeout_ms``); a reply after it still ends a streak of losses (``late``).
- Carrier comes from a netlink socket in the event loop (and a cheap flag poll as a safety net).
- Effects are desired state: the default route through the active uplink, the per-uplink tables and rules
  are re-applied every few seconds and at once when netlink says a link or route changed.
- The LTE uplink is *dialled*: the modem's facts (:class:`ModemStatus`) tell the core whether its data call is
  connected, being made, not wanted (cold standby) or impossible, so an LTE link without carrier before its
  first call is standby rather than an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.config import Config
from gateway.core import uplink as core
from gateway.core.base import Effect, Event, JournalEvent, Tick
from gateway.core.errors import ActionRejected, DeviceUnavailable
from gateway.core.signals import MaintenanceStatus, ModemStatus, OverrideChanged, OverrideRequest
from gateway.drivers.net import LinkWatcher, NetDriver
from gateway.drivers.probe import OnReply, Prober, dns_check, make_prober
from gateway.runtime.service import Context, Service, every

log = logging.getLogger("gateway.uplinks")

RECONCILE_S = 5.0
SAMPLE_S = 60.0
DNS_CHECK_S = 5.0  # the uplink's resolvers asked this often (the primary and the active uplink)
DNS_STANDBY_CHECK_S = 30.0  # on an idle backup: LTE data is dear
DNS_TIMEOUT_S = 2.0
DNS_CHECK_NAME = "example.com"  # any name the resolvers answer (the lab's DNS answers every A query)
# what must survive a restart of the daemon (the watchdog's, a crash, a reboot): a manual override wins until
# someone sets it back to auto, and traffic stays on the uplink it was on until the policy moves it
OVERRIDE_KEY = "uplinks.override"
ACTIVE_KEY = "uplinks.active"
CARRIER_POLL_S = 1.0  # a safety net only: netlink link events are what act at once
BURST_FACTOR = 4


@dataclass
class _Pending:
    target: str
    sent_at: float
    deadline: float
    judged: bool = False


@dataclass
class _TargetSched:
    next_at: float = 0.0
    srtt: float | None = None  # seconds
    rttvar: float = 0.0
    missed: bool = False  # last verdict was a loss: probe faster


@dataclass
class _UplinkRun:
    name: str
    role: str
    iface: str
    gateway: str | None
    table: int
    metric: int
    kind: str
    port: int
    targets: tuple[str, ...]
    source: str | None = None
    prober: Prober | None = None
    sched: dict[str, _TargetSched] = field(default_factory=dict)
    pending: dict[int, _Pending] = field(default_factory=dict)
    sent: int = 0
    send_error: str | None = None
    rtt_sum: float = 0.0
    rtt_n: int = 0
    lost_n: int = 0
    ok_n: int = 0


def policy_of(cfg: Config) -> core.Policy:
    f = cfg.failover
    modem_if = cfg.modem.interface if cfg.modem.enabled else None
    specs = tuple(core.UplinkSpec(u.name, u.role, tuple(u.probe_targets), dialled=u.interface == modem_if)
                  for u in cfg.uplinks)
    return core.Policy(specs, quorum=f.quorum, down_after=f.down_after, up_after=f.up_after, window=f.window,
                       degraded_loss_pct=f.degraded_loss_pct, down_loss_pct=f.down_loss_pct,
                       degraded_rtt_ms=f.degraded_rtt_ms, failback_hold_s=f.failback_hold_s)


# modem states in which no data call can be made until a person (or the recovery ladder) acts
_NO_CALL = ("sim_missing", "pin_needed", "failed")


def data_call_of(fact: ModemStatus) -> tuple[str, str]:
    """The modem's facts as the state of the LTE uplink's data call (core.DataCall): (state, reason)."""
    st = fact.state
    if st in _NO_CALL or (st in ("absent", "unresponsive") and fact.recovery_rung is not None):
        # absent or silent only counts once the modem area calls it trouble: a modem still enumerating
        # after boot is absent for a few seconds
        return "failed", f"modem {st.replace('_', ' ')}"
    if not fact.data_wanted:
        return "idle", "cold standby"
    if st == "connected":
        return "connected", ""
    return "dialling", f"modem {st.replace('_', ' ')}"


class UplinkService(Service):
    name = "uplinks"

    def __init__(self, ctx: Context, net: Any = None, prober_factory: Any = None, watch_links: bool = True,
                 icmp_mode: str = "auto") -> None:
        super().__init__(ctx)
        self.net = net if net is not None else NetDriver(ctx.netns)
        self.prober_factory = prober_factory
        self.watch_links = watch_links
        self.icmp_mode = icmp_mode
        self.watcher: LinkWatcher | None = None
        self.runs: dict[str, _UplinkRun] = {}
        self.state: core.UplinksState | None = None
        self.switches = 0
        self.flushed = 0
        self._wake = asyncio.Event()
        self._failures: dict[str, str] = {}
        self._reconcile_now = False
        self.last_switch_at: float | None = None  # monotonic (benchmarks read it)
        self._dns_next: dict[str, float] = {}  # uplink -> when its resolvers are asked next
        self._queue: deque[Event] = deque()
        self._feeding = False
        self._call: core.DataCall | None = None  # the last data-call fact (re-fed after a reload)
        self._since_wall: dict[str, tuple[float, int]] = {}  # name -> (core since, wall second shown)

    # ------------------------------------------------------------------------------- life cycle
    async def start(self) -> None:
        cfg = self.ctx.config
        now = self.ctx.monotonic()
        self._build_runs(cfg)
        active = None
        try:
            cur = self.net.default_route()
            if cur is not None:
                active = next((r.name for r in self.runs.values() if r.iface == cur[0]), None)
        except DeviceUnavailable as exc:
            self._failed("route", f"uplinks: cannot read the default route: {exc}")
        if active is None:  # no route in place (a reboot, or it was removed while we were down): the journal's
            saved = self.ctx.journal.get(ACTIVE_KEY)
            active = saved if isinstance(saved, str) and saved in self.runs else None
        self.state = core.initial(policy_of(cfg), now, active)
        override = self.ctx.journal.get(OVERRIDE_KEY)
        if isinstance(override, str) and self.state.uplink(override) is not None:
            self.state = replace(self.state, override=override)  # not a change: journaled when it was made
            label = self._override_label()
            log.info("uplinks: manual override %s kept from before the restart", label)
            self.ctx.bus.publish(OverrideChanged(label, override, None, "restart"))
        for r in self.runs.values():
            self._ensure_table(r)
            c = self._carrier(r)
            if c is False:
                self._feed(core.Carrier(r.name, False))
        self._apply_route()
        self.ctx.register_action("failover", self._action_failover)
        self.ctx.bus.subscribe(OverrideRequest, self._on_override)
        self.ctx.bus.subscribe(MaintenanceStatus, self._on_maintenance)
        self.ctx.bus.subscribe(ModemStatus, self._on_modem)
        if self.watch_links:
            try:
                self.watcher = LinkWatcher(self.ctx.netns)
                asyncio.get_running_loop().add_reader(self.watcher.fileno(), self._on_netlink)
            except (OSError, DeviceUnavailable) as exc:
                self._failed("watch", f"uplinks: no netlink link events ({exc}); polling carrier")
        self.spawn(self._probe_loop(), "probes")
        self.spawn(every(RECONCILE_S, self._reconcile), "reconcile")
        self.spawn(every(CARRIER_POLL_S, self._poll_carrier), "carrier")
        self.spawn(every(SAMPLE_S, self._samples), "samples")
        self.spawn(every(1.0, self._dns_checks), "dns")

    async def stop(self) -> None:
        await super().stop()
        if self.watcher is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.watcher.fileno())
            self.watcher.close()
            self.watcher = None
        for r in self.runs.values():
            if r.prober is not None:
                r.prober.close()
                r.prober = None
        self.net.close()

    def reload(self, config: Config) -> None:
        super().reload(config)
        if self.state is None:
            return
        old = self.state
        for r in self.runs.values():
            if r.prober is not None:
                r.prober.close()
        self._build_runs(config)
        # unchanged uplinks keep their health, so a reload journals no spurious "wired: up"
        self.state = core.reconfigure(old, policy_of(config), self.ctx.monotonic())
        for r in self.runs.values():
            self._ensure_table(r)
        if self._call is not None:  # an uplink whose spec changed starts over: tell it the call again
            self._feed(self._call)

    def _build_runs(self, cfg: Config) -> None:
        self.runs = {u.name: _UplinkRun(u.name, u.role, u.interface, u.gateway, u.table, u.metric, u.probe_kind,
                                        u.probe_port, tuple(u.probe_targets), u.source,
                                        sched={t: _TargetSched() for t in u.probe_targets})
                     for u in cfg.uplinks}

    # ------------------------------------------------------------------------------- core glue
    def _feed(self, event: Event) -> None:
        """Step the core; an event raised while carrying out effects (a bus fact answered at once, e.g. the
        modem's answer to a switch) is queued and fed after them, so facts go out in the order of the steps."""
        self._queue.append(event)
        if self._feeding:
            return
        self._feeding = True
        try:
            while self._queue:
                assert self.state is not None
                self.state, effects = core.step(self.state, self._queue.popleft(), self.ctx.monotonic())
                for eff in effects:
                    self._do(eff)
        finally:
            self._feeding = False

    def _do(self, eff: Effect) -> None:
        if isinstance(eff, JournalEvent):
            self.ctx.record(eff)
        elif isinstance(eff, core.SetActive):
            self.ctx.journal.put(ACTIVE_KEY, eff.name)
            self.switches += 1
            self.last_switch_at = self.ctx.monotonic()
            self._apply_route()
            self._write_dns()
        elif isinstance(eff, core.FlushConntrack):
            r = self.runs.get(eff.uplink)
            if r is not None and r.source:
                self.spawn(self._flush(r.name, r.source), "conntrack")
        elif isinstance(eff, core.Publish):
            if isinstance(eff.fact, OverrideChanged):
                self.ctx.journal.put(OVERRIDE_KEY, eff.fact.uplink)
            self.ctx.bus.publish(eff.fact)

    async def _flush(self, name: str, source: str) -> None:
        try:
            n = await asyncio.to_thread(self.net.flush_conntrack, source)
            self.flushed += n
            log.info("uplinks: forgot %d tracked connections through %s", n, name)
            self._ok("conntrack", "uplinks: conntrack flush works again")
        except DeviceUnavailable as exc:
            self._failed("conntrack", f"uplinks: conntrack flush for {name} failed: {exc}")

    # ------------------------------------------------------------------------------ routes
    def _ensure_table(self, r: _UplinkRun) -> None:
        try:
            src = self.net.ensure_uplink(r.iface, r.gateway, r.source, r.table)
            self._ok(f"table {r.name}", f"uplinks: {r.name} routing table in place")
        except DeviceUnavailable as exc:
            self._failed(f"table {r.name}", f"uplinks: {r.name} routing table: {exc}")
            return
        if src is not None and src != r.source:
            r.source = src
        if src is not None and r.prober is None:
            self._open_prober(r)

    def _open_prober(self, r: _UplinkRun) -> None:
        on_reply: OnReply = lambda target, token, rtt, name=r.name: self._on_reply(name, target, token, rtt)  # noqa: E731
        timeout_s = self.ctx.config.failover.probe_timeout_ms / 1000.0
        try:
            if self.prober_factory is not None:
                r.prober = self.prober_factory(r.kind, r.source, r.iface, on_reply)
            else:
                r.prober = make_prober(r.kind, r.source, r.iface, on_reply, timeout_s, self.ctx.netns, r.port,
                                       self.icmp_mode)
            self._ok(f"prober {r.name}", f"uplinks: probing {r.name} again")
        except (DeviceUnavailable, OSError) as exc:
            self._failed(f"prober {r.name}", f"uplinks: cannot probe {r.name}: {exc}")

    def _apply_route(self) -> None:
        """Desired state: the main default route goes through the active uplink (one replace)."""
        if self.state is None or self.state.active is None:
            return
        r = self.runs.get(self.state.active)
        if r is None:
            return
        primary = next((x for x in self.runs.values() if x.role == "primary"), r)
        u = self.state.uplink(r.name)
        try:
            if self.net.carrier(r.iface) is False and (self.state.both_down or (u is not None and u.health == "standby")):
                return  # keep the last route; the kernel dropped it with the link (or it is not dialled yet)
            self.net.set_default(r.iface, r.gateway, primary.metric, tuple(x.iface for x in self.runs.values()))
            self._ok("route", f"uplinks: default route through {r.name} in place")
        except DeviceUnavailable as exc:
            self._failed("route", f"uplinks: cannot route through {r.name}: {exc}")

    def _write_dns(self) -> None:
        """The resolvers of the active uplink, for the box's forwarder (dnsmasq ``servers-file`` format)."""
        if self.state is None or self.state.active is None:
            return
        u = next((x for x in self.ctx.config.uplinks if x.name == self.state.active), None)
        if u is None or not u.dns:
            return
        path = self.ctx.config.state_dir / "dns-upstream.conf"
        try:
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(f"server={s}@{u.interface}\n" for s in u.dns))
            tmp.replace(path)
        except OSError as exc:
            self._failed("dns", f"uplinks: cannot write {path}: {exc}")

    async def _reconcile(self) -> None:
        for r in self.runs.values():
            self._ensure_table(r)
        self._apply_route()

    # ------------------------------------------------------------------------------ carrier
    def _carrier(self, r: _UplinkRun) -> bool | None:
        try:
            return self.net.carrier(r.iface)  # type: ignore[no-any-return]
        except DeviceUnavailable:
            return None

    async def _poll_carrier(self) -> None:
        for r in self.runs.values():
            try:
                up = self.net.carrier(r.iface)  # None: the interface is gone (modem unplugged): no carrier
            except DeviceUnavailable:
                continue  # netlink trouble says nothing about the link
            self._carrier_seen(r, up)
        if self._reconcile_now:
            self._reconcile_now = False
            await self._reconcile()

    def _carrier_seen(self, r: _UplinkRun, up: bool | None) -> None:
        if self.state is None:
            return
        up = bool(up)
        u = self.state.uplink(r.name)
        if u is not None and u.carrier != up:
            self._feed(core.Carrier(r.name, up))
            if up:
                self._ensure_table(r)  # the kernel deleted its routes with the link
                self._apply_route()

    def _on_netlink(self) -> None:
        assert self.watcher is not None
        try:
            events = self.watcher.read()
        except DeviceUnavailable as exc:
            self._failed("watch", f"uplinks: netlink events: {exc}")
            return
        by_if = {r.iface: r for r in self.runs.values()}
        for ev in events:
            if ev.kind == "link" and ev.ifname in by_if:
                self._carrier_seen(by_if[ev.ifname], ev.carrier)
            elif ev.kind in ("route", "addr"):
                self._reconcile_now = True  # a route vanished or appeared: re-apply soon (not in a storm)

    # ------------------------------------------------------------------------------ probing
    def _interval(self, r: _UplinkRun) -> float:
        f = self.ctx.config.failover
        assert self.state is not None
        if r.role == "primary" or r.name == self.state.active:
            return float(f.probe_interval_ms) / 1000.0
        return float(f.standby_probe_interval_ms) / 1000.0

    def _deadline(self, r: _UplinkRun, ts: _TargetSched) -> float:
        f = self.ctx.config.failover
        lo = max(0.15, float(f.probe_interval_ms) / 1000.0)
        hi = max(lo, float(f.probe_timeout_ms) / 1000.0)
        if ts.srtt is None:
            return hi
        return min(hi, max(lo, 3 * ts.srtt + 4 * ts.rttvar))

    def _on_reply(self, name: str, target: str, token: int, rtt_ms: float) -> None:
        r = self.runs.get(name)
        if r is None:
            return
        p = r.pending.pop(token, None)
        if p is None or p.target != target:
            return
        ts = r.sched[target]
        rtt_s = rtt_ms / 1000.0
        if ts.srtt is None:
            ts.srtt, ts.rttvar = rtt_s, rtt_s / 2
        else:
            ts.rttvar = 0.75 * ts.rttvar + 0.25 * abs(ts.srtt - rtt_s)
            ts.srtt = 0.875 * ts.srtt + 0.125 * rtt_s
        ts.missed = False
        r.rtt_sum += rtt_ms
        r.rtt_n += 1
        r.ok_n += 1
        self._feed(core.ProbeResult(name, target, True, rtt_ms, p.sent_at, late=p.judged))

    async def _probe_loop(self) -> None:
        while True:
            now = self.ctx.monotonic()
            next_at = now + 0.5
            for r in self.runs.values():
                # verdicts
                for token, p in list(r.pending.items()):
                    hard = p.sent_at + self.ctx.config.failover.probe_timeout_ms / 1000.0
                    if not p.judged and now >= p.deadline:
                        p.judged = True
                        r.sched[p.target].missed = True
                        r.lost_n += 1
                        self._feed(core.ProbeResult(r.name, p.target, False, None, p.sent_at))
                    if p.judged and now >= hard:
                        del r.pending[token]
                    else:
                        next_at = min(next_at, p.deadline if not p.judged else hard)
                # sends (none through a link without carrier: they cannot leave, and carrier says it all)
                u = self.state.uplink(r.name) if self.state is not None else None
                if r.prober is None or (u is not None and not u.carrier):
                    continue
                base = self._interval(r)
                for target, ts in r.sched.items():
                    if now >= ts.next_at:
                        self._send(r, target, ts, now)
                        ts.next_at = now + (base / BURST_FACTOR if ts.missed else base)
                    next_at = min(next_at, ts.next_at)
            self._feed(Tick())
            delay = max(0.0, next_at - self.ctx.monotonic())
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races the wake-up
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    def _send(self, r: _UplinkRun, target: str, ts: _TargetSched, now: float) -> None:
        assert r.prober is not None
        try:
            token = r.prober.send(target)
        except DeviceUnavailable as exc:
            # the packet cannot even leave (no route, link down): lost now, no need to wait
            if r.send_error is None:
                log.info("uplinks: %s: probes cannot leave: %s", r.name, exc)
            r.send_error = str(exc)
            ts.missed = True
            r.lost_n += 1
            self._feed(core.ProbeResult(r.name, target, False, None, now))
            return
        r.send_error = None
        r.sent += 1
        r.pending[token] = _Pending(target, now, now + self._deadline(r, ts))

    # ------------------------------------------------------------------------------ overrides
    def _resolve(self, target: str) -> str | None:
        """lte|wired|auto (or an uplink name) → uplink name, None for auto."""
        if target == "auto":
            return None
        if target in self.runs:
            return target
        role = {"wired": "primary", "lte": "backup"}.get(target)
        found = next((r.name for r in self.runs.values() if r.role == role), None)
        if found is None:
            raise ActionRejected("bad_target", f"no uplink {target!r}: lte, wired or auto")
        return found

    async def _action_failover(self, params: dict[str, Any], who: str) -> dict[str, Any]:
        target = params.get("target")
        if not isinstance(target, str) or not target:
            raise ActionRejected("bad_target", "target must be lte, wired or auto")
        name = self._resolve(target)
        self._feed(core.Override(name, who))
        self._wake.set()
        assert self.state is not None
        return {"override": self._override_label(), "active": self.state.active}

    def _on_override(self, fact: OverrideRequest) -> None:
        try:
            name = self._resolve(fact.target)
        except ActionRejected as exc:
            log.warning("uplinks: ignoring override request %r from %s: %s", fact.target, fact.who, exc.message)
            return
        self._feed(core.Override(name, fact.who))

    def _on_modem(self, fact: ModemStatus) -> None:
        if self.state is None:
            return
        u = next((x for x in self.state.policy.uplinks if x.dialled), None)
        if u is None:
            return
        state, reason = data_call_of(fact)
        self._call = core.DataCall(u.name, state, reason)
        self._feed(self._call)

    def _on_maintenance(self, fact: MaintenanceStatus) -> None:
        self._feed(core.Maintenance(switch_to_backup=fact.switch_to_lte, hold_failback=fact.hold_failback))

    def _override_label(self) -> str | None:
        if self.state is None or self.state.override is None:
            return None
        r = self.runs.get(self.state.override)
        if r is None:
            return None
        return {"primary": "wired", "backup": "lte"}.get(r.role, r.name)

    # ------------------------------------------------------------------------------ reporting
    def snapshot(self) -> dict[str, Any]:
        if self.state is None:
            return {"uplinks": [], "override": None}
        s = self.state
        now, wall = self.ctx.monotonic(), self.ctx.wall()
        out = []
        fb = core.failback_in_s(s, now)
        for u in s.uplinks:
            r = self.runs.get(u.name)
            loss = core.uplink_loss_pct(u, s.policy.window)
            rtt = core.uplink_rtt_ms(u)
            out.append({
                "name": u.name, "role": u.role, "state": core.shown_state(s, u), "active": u.name == s.active,
                "rtt_ms": None if rtt is None else round(rtt, 2), "loss_pct": None if loss is None else round(loss, 1),
                "since": self._since(u, now, wall), "reason": u.reason, "carrier": u.carrier,
                "interface": r.iface if r else None, "source": r.source if r else None,
                "probe": r.kind if r else None,
                "failback_in_s": round(fb, 1) if fb is not None and u.role == "primary" else None,
                "targets": [{"target": n, "rtt_ms": core.rtt_ms(t), "loss_pct": core.loss_pct(t, s.policy.window),
                             "lost": t.lost_streak >= s.policy.down_after} for n, t in u.targets],
            })
        return {"uplinks": out, "override": self._override_label()}

    def _since(self, u: core.Uplink, now: float, wall: float) -> int:
        """When ``u``'s state last changed, in whole wall-clock seconds, worked out once per change: derived
        anew on every read it jitters with the two clocks and changes the page's ETag on every poll."""
        known = self._since_wall.get(u.name)
        if known is None or known[0] != u.since:
            known = (u.since, int(round(wall - (now - u.since))))
            self._since_wall[u.name] = known
        return known[1]

    def metrics(self) -> list[tuple[str, str, dict[str, str], float]]:
        if self.state is None:
            return []
        s = self.state
        m: list[tuple[str, str, dict[str, str], float]] = []
        for u in s.uplinks:
            lab = {"uplink": u.name}
            r = self.runs.get(u.name)
            m.append(("gateway_uplink_up", "1 when the uplink is up or degraded", lab,
                      1.0 if u.health in core.HEALTHY else 0.0))
            m.append(("gateway_uplink_active", "1 for the uplink carrying traffic", lab,
                      1.0 if u.name == s.active else 0.0))
            rtt, loss = core.uplink_rtt_ms(u), core.uplink_loss_pct(u, s.policy.window)
            if rtt is not None:
                m.append(("gateway_uplink_rtt_ms", "median probe round trip", lab, rtt))
            if loss is not None:
                m.append(("gateway_uplink_loss_pct", "median probe loss over the window", lab, loss))
            if r is not None:
                m.append(("gateway_uplink_probes_sent_total", "probes sent", lab, float(r.sent)))
        m.append(("gateway_uplink_switches_total", "default route switches", {}, float(self.switches)))
        m.append(("gateway_uplink_conntrack_flushed_total", "tracked connections flushed", {}, float(self.flushed)))
        return m

    async def _dns_checks(self) -> None:
        """Ask each working uplink's resolvers (``dns`` in its config) through that uplink; a failed round is
        a DnsCheck the core turns into ``degraded`` after a few, never ``down`` (packets still flow)."""
        if self.state is None:
            return
        now = self.ctx.monotonic()
        servers_of = {u.name: list(u.dns) for u in self.ctx.config.uplinks}
        for r in list(self.runs.values()):
            u = self.state.uplink(r.name)
            servers = servers_of.get(r.name) or []
            if not servers or r.source is None or u is None or not u.carrier or u.health not in core.HEALTHY:
                continue  # a dead or idle link's resolvers tell nothing
            if now < self._dns_next.get(r.name, 0.0):
                continue
            busy = r.role == "primary" or r.name == self.state.active
            self._dns_next[r.name] = now + (DNS_CHECK_S if busy else DNS_STANDBY_CHECK_S)
            errors: list[str] = []
            for server in servers:
                try:
                    await dns_check(server, DNS_CHECK_NAME, r.source, r.iface, DNS_TIMEOUT_S, self.ctx.netns)
                    break
                except DeviceUnavailable as exc:
                    errors.append(str(exc).removeprefix("dns "))
            if self.state.uplink(r.name) is not None:
                self._feed(core.DnsCheck(r.name, len(errors) < len(servers), "; ".join(errors)))

    async def _samples(self) -> None:
        """Once a minute: mean RTT and loss per uplink (aggregated in memory, never every probe)."""
        ts = self.ctx.wall()
        rows: list[tuple[float, str, float]] = []
        for r in self.runs.values():
            total = r.ok_n + r.lost_n
            if r.rtt_n:
                rows.append((ts, f"uplink.{r.name}.rtt_ms", round(r.rtt_sum / r.rtt_n, 3)))
            if total:
                rows.append((ts, f"uplink.{r.name}.loss_pct", round(100.0 * r.lost_n / total, 2)))
            r.rtt_sum, r.rtt_n, r.ok_n, r.lost_n = 0.0, 0, 0, 0
        if rows:
            self.ctx.journal.add_samples(rows)

    # ------------------------------------------------------------------------------ failures
    def _failed(self, what: str, message: str) -> None:
        if self._failures.get(what) != message:
            first = what not in self._failures
            self._failures[what] = message
            if first:
                self.ctx.record(JournalEvent("uplink.driver", message, "warning", data={"what": what}))
            else:
                log.warning("%s", message)

    def _ok(self, what: str, message: str) -> None:
        if self._failures.pop(what, None) is not None:
            self.ctx.record(JournalEvent("uplink.driver", message, "info", data={"what": what}))
