"""Uplinks, as pure decisions: is each uplink healthy, and which one carries the office's traffic.

Per uplink a health machine (``up``, ``degraded``, ``down``, ``standby``; a healthy uplink that does not
carry traffic is *shown* as standby too) fed by probe results per target, with k-of-n voting:

- a target is *lost* after ``down_after`` consecutive unanswered probes (the runtime probes a target that
  missed one faster, so the streak builds in well under a second on a dead line);
- an uplink is ``down`` when at least ``quorum`` targets are lost (capped at the number of targets, so one
  dead target never takes an uplink down when there are more), when at least ``quorum`` targets lose
  ``down_loss_pct`` of their last ``max(window, 20)`` probes (heavy random loss), or at once on carrier loss;
- it is ``up`` again when ``quorum`` targets have answered ``up_after`` probes in a row (and the carrier is
  there); ``degraded`` when up but the typical target loses ``degraded_loss_pct`` or answers slower than
  ``degraded_rtt_ms``.

A *dialled* uplink (the LTE modem: its link exists only while a data call is up) learns the call's state
from the runtime (:class:`DataCall`).  Without carrier it is ``standby``, not ``down``, while the call is not
wanted (cold standby) or is still being made for the first time since start (or since a standby): that is
no outage.  Carrier lost after the uplink worked or after its call was connected is ``down``; so is no
carrier while the modem cannot make the call at all (no SIM, gave up).  A standby uplink can still be chosen (a cold standby dials
because it was chosen); while its link is not up yet it is left again as soon as the primary works, since it
never carried traffic; once its link is up, failback waits for the hold as from any backup.

Policy: the primary carries traffic while it is up or degraded; otherwise the backup, unless it is down too
(then the last route stays, with a critical journal event, and probing goes on).  Failback to the primary
waits until it has been ``up`` without a break for ``failback_hold_s`` — doubled for every recent flap, up
to 8x — and never while maintenance holds failback.  A manual override wins until it is set back to auto;
maintenance's ``switch_to_lte`` moves traffic to the backup while it is usable.

Every switch asks the runtime to flush the connection-tracking entries of the uplink traffic left (only
those), and is one ``uplink.switch`` journal event with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from gateway.core.base import Effect, Event, JournalEvent, Tick
from gateway.core.signals import ActiveUplinkChanged, OverrideChanged, UplinkStatus

HEALTHY = ("up", "degraded")
CALL_STATES = ("connected", "dialling", "idle", "failed")
LOSS_DECISION_MIN = 20  # probes per target behind a loss-based "down" verdict (10 is too noisy)
DNS_FAIL_AFTER = 2  # DNS check rounds failed in a row before a working uplink is shown degraded


# ----------------------------------------------------------------------------------------- config

@dataclass(frozen=True)
class UplinkSpec:
    name: str
    role: str  # primary | backup
    targets: tuple[str, ...]
    dialled: bool = False  # its link is up only while a data call is (the LTE modem's data interface)


@dataclass(frozen=True)
class Policy:
    uplinks: tuple[UplinkSpec, ...]
    quorum: int = 2
    down_after: int = 6
    up_after: int = 5
    window: int = 10
    degraded_loss_pct: float = 20.0
    down_loss_pct: float = 50.0
    degraded_rtt_ms: float = 500.0
    failback_hold_s: float = 60.0
    link_grace_s: float = 15.0  # a dialled link may lag its connected data call this long before it counts as down

    def spec(self, name: str) -> UplinkSpec | None:
        return next((u for u in self.uplinks if u.name == name), None)

    def by_role(self, role: str) -> UplinkSpec | None:
        return next((u for u in self.uplinks if u.role == role), None)


# ----------------------------------------------------------------------------------------- events

@dataclass(frozen=True)
class ProbeResult(Event):
    """One probe's verdict.  ``ok`` False: unanswered within the runtime's (adaptive) deadline.  A reply
    that arrives after that deadline is fed as ``ok`` with ``late`` set: it ends a streak of losses but
    does not undo the loss in the window."""

    uplink: str
    target: str
    ok: bool
    rtt_ms: float | None = None
    sent_at: float | None = None  # monotonic, for "lost for 0.8 s"
    late: bool = False


@dataclass(frozen=True)
class Carrier(Event):
    """The uplink's link has (or has lost) carrier: a netlink link event or a poll."""

    uplink: str
    up: bool


@dataclass(frozen=True)
class DataCall(Event):
    """The data call of a dialled uplink, from the modem: ``connected``; ``dialling`` (wanted, being made:
    the modem starts, registers or dials); ``idle`` (not wanted: cold standby); ``failed`` (it cannot be
    made: no SIM, PIN needed, the modem gone or given up on)."""

    uplink: str
    state: str
    reason: str = ""


@dataclass(frozen=True)
class Override(Event):
    """Manual failover: ``target`` an uplink name, or None for auto."""

    target: str | None
    who: str = ""


@dataclass(frozen=True)
class Maintenance(Event):
    switch_to_backup: bool = False
    hold_failback: bool = False


@dataclass(frozen=True)
class DnsCheck(Event):
    """One round of asking the uplink's resolvers (through the uplink) for a name: ``ok`` when one answered.
    ``DNS_FAIL_AFTER`` failed rounds in a row show a working uplink as ``degraded`` (people cannot resolve
    names through it), never ``down``: ICMP/TCP targets decide whether it carries packets, and traffic
    stays where it is."""

    uplink: str
    ok: bool
    error: str = ""


# ---------------------------------------------------------------------------------------- effects

@dataclass(frozen=True)
class SetActive(Effect):
    """Route the office's traffic through ``name`` (desired state; re-applied by the runtime)."""

    name: str
    previous: str | None
    reason: str


@dataclass(frozen=True)
class FlushConntrack(Effect):
    """Forget the tracked connections that went out through ``uplink`` (and only those)."""

    uplink: str


@dataclass(frozen=True)
class Publish(Effect):
    """Put a fact on the bus."""

    fact: UplinkStatus | ActiveUplinkChanged | OverrideChanged


# ------------------------------------------------------------------------------------------ state

@dataclass(frozen=True)
class Target:
    results: tuple[bool, ...] = ()  # newest last, at most max(window, LOSS_DECISION_MIN)
    rtts: tuple[float, ...] = ()  # newest last, at most window
    lost_streak: int = 0
    ok_streak: int = 0
    lost_since: float | None = None


@dataclass(frozen=True)
class Uplink:
    name: str
    role: str
    health: str = "unknown"  # unknown | up | degraded | down | standby
    carrier: bool = True
    dialled: bool = False  # see UplinkSpec.dialled
    call: str = "connected"  # a dialled uplink's data call (CALL_STATES); always connected for the others
    call_reason: str = ""
    call_since: float = 0.0  # when the call state last changed
    call_made: bool = False  # the call has been connected since it was last not wanted (or since start)
    targets: tuple[tuple[str, Target], ...] = ()
    since: float = 0.0  # when health last changed
    up_since: float | None = None  # uninterrupted "up" since (failback hold)
    reason: str = ""
    downs: tuple[float, ...] = ()  # times of recent up→down transitions (flap memory)
    dns_failed: int = 0  # DNS check rounds failed in a row
    dns_error: str = ""

    def target(self, name: str) -> Target:
        return next((t for n, t in self.targets if n == name), Target())


@dataclass(frozen=True)
class UplinksState:
    policy: Policy
    uplinks: tuple[Uplink, ...]
    active: str | None
    override: str | None = None
    switch_to_backup: bool = False
    hold_failback: bool = False
    both_down: bool = False
    active_since: float = 0.0
    last_reason: str = ""
    published: tuple[tuple[str, str, bool], ...] = field(default=())  # (name, shown state, active) last sent

    def uplink(self, name: str) -> Uplink | None:
        return next((u for u in self.uplinks if u.name == name), None)


def initial(policy: Policy, now: float = 0.0, active: str | None = None) -> UplinksState:
    """Start with traffic on ``active`` (the route found in place) or the primary."""
    ups = tuple(Uplink(s.name, s.role, targets=tuple((t, Target()) for t in s.targets), since=now,
                       dialled=s.dialled, call="dialling" if s.dialled else "connected", call_since=now)
                for s in policy.uplinks)
    primary = policy.by_role("primary")
    first = active if active is not None and policy.spec(active) else (primary.name if primary else None)
    if first is None and policy.uplinks:
        first = policy.uplinks[0].name
    return UplinksState(policy, ups, first, active_since=now)


def reconfigure(state: UplinksState, policy: Policy, now: float) -> UplinksState:
    """A new policy (config reload): an uplink whose spec is unchanged keeps its health and history, so a
    reload re-journals nothing; a new or changed one starts unknown.  Traffic stays where it is."""
    fresh = initial(policy, now, state.active)
    kept: list[Uplink] = []
    for u in fresh.uplinks:
        old = state.uplink(u.name)
        kept.append(old if old is not None and state.policy.spec(u.name) == policy.spec(u.name) else u)
    names = {u.name for u in kept}
    override = state.override if state.override in names else None
    published = tuple(p for p in state.published if p[0] in names)
    same_active = fresh.active == state.active
    return replace(state, policy=policy, uplinks=tuple(kept), active=fresh.active, override=override,
                   published=published, active_since=state.active_since if same_active else now)


# ------------------------------------------------------------------------------------- statistics

def loss_pct(t: Target, window: int) -> float | None:
    return _loss_pct(t.results, window)


def _loss_pct(results: tuple[bool, ...], window: int) -> float | None:
    res = results[-window:]
    if not res:
        return None
    return 100.0 * (len(res) - sum(res)) / len(res)


def rtt_ms(t: Target) -> float | None:
    if not t.rtts:
        return None
    s = sorted(t.rtts)
    return s[len(s) // 2]


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[len(s) // 2]


def uplink_loss_pct(u: Uplink, window: int) -> float | None:
    """The typical target's loss (median over targets), so one dead target does not colour the uplink."""
    return _median([x for _, t in u.targets if (x := loss_pct(t, window)) is not None])


def uplink_rtt_ms(u: Uplink) -> float | None:
    return _median([x for _, t in u.targets if (x := rtt_ms(t)) is not None])


def shown_state(state: UplinksState, u: Uplink) -> str:
    """What the status page says: up | degraded | down | standby (healthy or not yet judged, idle; or a
    dialled link not dialled yet)."""
    if u.health in ("down", "standby"):
        return u.health
    if u.name != state.active:
        return "standby"
    return "up" if u.health == "unknown" else u.health


# ------------------------------------------------------------------------------------------- step

def step(state: UplinksState, event: Event, now: float) -> tuple[UplinksState, tuple[Effect, ...]]:
    """Feed one event; return the next state and what to do about it."""
    effects: list[Effect] = []
    if isinstance(event, ProbeResult):
        u = state.uplink(event.uplink)
        if u is None or event.target not in {n for n, _ in u.targets}:
            return state, ()
        u = _on_probe(u, event, state.policy)
        state = _put(state, _judge(u, state.policy, now, effects))
    elif isinstance(event, Carrier):
        u = state.uplink(event.uplink)
        if u is None or u.carrier == event.up:
            return state, ()
        u = replace(u, carrier=event.up)
        if not event.up:  # once the carrier is back, the targets have to prove the line works again
            u = replace(u, targets=tuple((n, replace(t, ok_streak=0)) for n, t in u.targets))
        else:  # and losses while there was no link say nothing about the link that is back
            u = replace(u, targets=tuple((n, replace(t, lost_streak=0, lost_since=None)) for n, t in u.targets))
        state = _put(state, _judge(u, state.policy, now, effects))
    elif isinstance(event, DataCall):
        u = state.uplink(event.uplink)
        if u is None or not u.dialled or event.state not in CALL_STATES or \
                (u.call, u.call_reason) == (event.state, event.reason):
            return state, ()
        made = event.state == "connected" or (u.call_made and event.state != "idle")
        u = replace(u, call=event.state, call_reason=event.reason, call_made=made,
                    call_since=now if event.state != u.call else u.call_since)
        state = _put(state, _judge(u, state.policy, now, effects))
    elif isinstance(event, Override):
        target = event.target
        if target is not None and state.uplink(target) is None:
            return state, ()
        if target != state.override:
            who = f" by {event.who}" if event.who else ""
            effects.append(JournalEvent(
                "uplink.override", f"uplinks: manual override {target or 'off (auto)'}{who}",
                "warning" if target else "info", data={"override": target, "who": event.who}))
            effects.append(Publish(OverrideChanged(_label(state, target), target, _label(state, state.override),
                                                   event.who)))
            state = replace(state, override=target)
    elif isinstance(event, DnsCheck):
        u = state.uplink(event.uplink)
        if u is None:
            return state, ()
        u = replace(u, dns_failed=0 if event.ok else u.dns_failed + 1, dns_error="" if event.ok else event.error)
        state = _put(state, _judge(u, state.policy, now, effects))
    elif isinstance(event, Maintenance):
        if (event.switch_to_backup, event.hold_failback) != (state.switch_to_backup, state.hold_failback):
            state = replace(state, switch_to_backup=event.switch_to_backup, hold_failback=event.hold_failback)
    elif isinstance(event, Tick):
        for u in state.uplinks:  # a standby link waiting for its carrier is judged by the clock too
            if u.health == "standby" and not u.carrier:
                state = _put(state, _judge(u, state.policy, now, effects))
    else:
        return state, ()
    state = _decide(state, now, effects)
    state = _publish(state, effects)
    return state, tuple(effects)


def _label(state: UplinksState, name: str | None) -> str | None:
    """An uplink as the override is spoken of: wired (the primary), lte (the backup), else its name."""
    if name is None:
        return None
    spec = state.policy.spec(name)
    return {"primary": "wired", "backup": "lte"}.get(spec.role if spec else "", name)


def _put(state: UplinksState, u: Uplink) -> UplinksState:
    return replace(state, uplinks=tuple(u if x.name == u.name else x for x in state.uplinks))


def _on_probe(u: Uplink, ev: ProbeResult, p: Policy) -> Uplink:
    t = u.target(ev.target)
    keep = max(p.window, LOSS_DECISION_MIN)
    if ev.ok:
        rtts = t.rtts if ev.rtt_ms is None else (t.rtts + (ev.rtt_ms,))[-p.window:]
        results = t.results if ev.late else (t.results + (True,))[-keep:]
        t = Target(results, rtts, 0, t.ok_streak + 1, None)
    else:
        since = t.lost_since if t.lost_streak else (ev.sent_at if ev.sent_at is not None else None)
        t = Target((t.results + (False,))[-keep:], t.rtts, t.lost_streak + 1, 0, since)
    return replace(u, targets=tuple((n, t if n == ev.target else x) for n, x in u.targets))


def _verdict(u: Uplink, p: Policy, now: float) -> tuple[str, str]:
    """(health, reason) from the targets and the carrier."""
    n = len(u.targets)
    if not u.carrier and u.dialled:
        why = f" ({u.call_reason})" if u.call_reason else ""
        if u.call == "idle":
            return "standby", f"data call not needed{why}"
        if u.call == "dialling" and u.health in ("unknown", "standby") and not u.call_made:
            return "standby", f"not dialled yet{why}"
        if u.call == "connected" and u.health in ("unknown", "standby"):
            if now - u.call_since < p.link_grace_s:
                return "standby", "data call up, waiting for the link"
            return "down", f"no carrier {now - u.call_since:.0f} s after the data call came up"
        if u.call == "failed":
            return "down", f"no data call{why}"
    if not u.carrier:
        return "down", "carrier lost"
    if n == 0:
        return "up", "no probe targets"
    q = max(1, min(p.quorum, n))
    lost = [(name, t) for name, t in u.targets if t.lost_streak >= p.down_after]
    if len(lost) >= q:
        starts = [t.lost_since for _, t in lost if t.lost_since is not None]
        dur = f" for {now - min(starts):.1f} s" if starts else ""
        return "down", f"{len(lost)}/{n} targets lost{dur}"
    keep = max(p.window, LOSS_DECISION_MIN)
    lossy = [x for _, t in u.targets if len(t.results) >= keep
             and (x := loss_pct(t, keep)) is not None and x >= p.down_loss_pct]
    if len(lossy) >= q:
        return "down", f"{len(lossy)}/{n} targets losing ≥{p.down_loss_pct:g} % of probes"
    answering = sum(1 for _, t in u.targets if t.ok_streak >= p.up_after)
    if u.health in ("down", "unknown", "standby") and answering < q:
        # not (yet) proven to work: wait until enough targets answered ``up_after`` probes in a row
        if u.health == "standby":
            return "standby", "link up, probing"
        return u.health, u.reason
    # quality, without the losses of a streak still running (the "down" rule judges those), with
    # hysteresis: degraded from the threshold, up again below half of it
    loss = _median([x for _, t in u.targets
                    if (x := _loss_pct(t.results[:len(t.results) - t.lost_streak], p.window)) is not None])
    rtt = uplink_rtt_ms(u)
    was = u.health == "degraded"
    if loss is not None and loss >= (p.degraded_loss_pct / 2 if was else p.degraded_loss_pct) > 0:
        return "degraded", f"loss {loss:.0f} %"
    if rtt is not None and rtt >= (p.degraded_rtt_ms * 0.8 if was else p.degraded_rtt_ms):
        return "degraded", f"rtt {rtt:.0f} ms"
    if u.dns_failed >= DNS_FAIL_AFTER:
        return "degraded", f"DNS not answering ({u.dns_error})" if u.dns_error else "DNS not answering"
    return "up", f"{n - len(lost)}/{n} targets answering"


def _judge(u: Uplink, p: Policy, now: float, effects: list[Effect]) -> Uplink:
    health, reason = _verdict(u, p, now)
    if health == u.health:
        return replace(u, reason=reason) if health != "down" and reason != u.reason else u
    before = u.health
    if before == "down" and health in HEALTHY:  # the outage's losses are history, not this line's quality
        u = replace(u, targets=tuple((n, replace(t, results=t.results[-t.ok_streak:] if t.ok_streak else ()))
                                     for n, t in u.targets))
        health, reason = _verdict(replace(u, health="unknown"), p, now)
    downs = u.downs
    if health == "down" and before in HEALTHY:
        horizon = now - 10 * max(p.failback_hold_s, 1.0)
        downs = tuple(x for x in downs if x >= horizon) + (now,)
    up_since = u.up_since if health == "up" and u.up_since is not None else (now if health == "up" else None)
    if health == "degraded":
        up_since = None
    sev = "warning" if health == "down" else "info"
    if health != "unknown" and (before, health) != ("unknown", "standby"):  # not dialled yet at start: no news
        effects.append(JournalEvent("uplink.state", f"{u.name}: {health} ({reason})" if reason else
                                    f"{u.name}: {health}", sev,
                                    data={"uplink": u.name, "from": before, "to": health, "reason": reason}))
    # a dead uplink's DNS failures say nothing about its resolvers once it is back
    return replace(u, health=health, reason=reason, since=now, up_since=up_since, downs=downs,
                   dns_failed=0 if health == "down" else u.dns_failed)


def failback_hold_s(state: UplinksState, u: Uplink, now: float) -> float:
    """The hold for ``u``: ``failback_hold_s``, doubled for every flap (down) beyond the first in the
    recent past (10 holds), at most 8x."""
    p = state.policy
    horizon = now - 10 * max(p.failback_hold_s, 1.0)
    flaps = sum(1 for x in u.downs if x >= horizon)
    return float(p.failback_hold_s * min(8, 2 ** max(0, flaps - 1)))


def failback_in_s(state: UplinksState, now: float) -> float | None:
    """Seconds until traffic returns to the primary (None: not pending)."""
    primary = state.policy.by_role("primary")
    if primary is None or state.active == primary.name:
        return None
    u = state.uplink(primary.name)
    if u is None or u.up_since is None:
        return None
    return max(0.0, failback_hold_s(state, u, now) - (now - u.up_since))


def _desired(state: UplinksState, now: float) -> tuple[str | None, str]:
    """(the uplink that should carry traffic, why)."""
    p = state.policy
    prim_spec, back_spec = p.by_role("primary"), p.by_role("backup")
    prim = state.uplink(prim_spec.name) if prim_spec else None
    back = state.uplink(back_spec.name) if back_spec else None
    cur = state.uplink(state.active) if state.active else None
    if state.override is not None:
        return state.override, "manual override"
    usable = [u for u in state.uplinks if u.health != "down"]
    if not usable:
        return state.active, "no uplink works"
    if state.switch_to_backup and back is not None and back.health != "down":
        return back.name, "maintenance"
    if prim is None or back is None:
        return (cur.name if cur and cur.health != "down" else usable[0].name), "only usable uplink"
    if cur is prim or cur is None:
        if prim.health != "down":
            return prim.name, ""
        return back.name, f"{prim.name}: down, {prim.reason}"
    # on the backup (or another): return to the primary only after the hold, unless the backup died or
    # never came up (a standby link with no link yet carried nothing: no failback hold to honour).  A backup
    # whose link is up but not yet proven by its probes does carry the traffic: the hold applies, or a
    # flapping primary would pull traffic back on every bounce
    if (cur.health == "down" or (cur.health == "standby" and not cur.carrier)) and prim.health != "down":
        return prim.name, f"{cur.name}: {cur.health}, {cur.reason}"
    if state.hold_failback:
        return cur.name, ""
    if prim.health == "up" and prim.up_since is not None:
        hold = failback_hold_s(state, prim, now)
        if now - prim.up_since >= hold:
            return prim.name, f"{prim.name}: healthy for {now - prim.up_since:.0f} s (hold {hold:g} s)"
    return cur.name, ""


def _decide(state: UplinksState, now: float, effects: list[Effect]) -> UplinksState:
    want, why = _desired(state, now)
    all_down = all(u.health == "down" for u in state.uplinks) and bool(state.uplinks)
    if all_down != state.both_down:
        if all_down:
            effects.append(JournalEvent(
                "uplink.all_down", f"uplinks: every uplink is down, keeping the last route "
                f"({state.active or 'none'}) and probing on", "critical",
                data={"active": state.active, "reasons": {u.name: u.reason for u in state.uplinks}}))
        else:
            effects.append(JournalEvent("uplink.all_down", "uplinks: an uplink works again", "info",
                                        data={"active": state.active}))
        state = replace(state, both_down=all_down)
    if want is None or want == state.active:
        return state
    previous = state.active
    reason = why or "policy"
    primary = state.policy.by_role("primary")
    effects.append(JournalEvent("uplink.switch", f"uplinks: traffic {previous} → {want} ({reason})",
                                "info" if primary is not None and want == primary.name else "warning",
                                data={"from": previous, "to": want, "reason": reason, "override": state.override}))
    effects.append(SetActive(want, previous, reason))
    if previous is not None:
        effects.append(FlushConntrack(previous))
    effects.append(Publish(ActiveUplinkChanged(want, previous, reason, state.override)))
    return replace(state, active=want, active_since=now, last_reason=reason)


def _publish(state: UplinksState, effects: list[Effect]) -> UplinksState:
    """One UplinkStatus per change of an uplink's shown state or activeness."""
    now_pub: list[tuple[str, str, bool]] = []
    old = {n: (s, a) for n, s, a in state.published}
    p = state.policy
    for u in state.uplinks:
        shown = shown_state(state, u)
        active = u.name == state.active
        now_pub.append((u.name, shown, active))
        if u.health == "unknown" and u.name not in old and not active:
            continue
        if old.get(u.name) != (shown, active):
            loss = uplink_loss_pct(u, p.window)
            effects.append(Publish(UplinkStatus(u.name, u.role, shown, active, u.reason, uplink_rtt_ms(u), loss,
                                                u.health)))
    return replace(state, published=tuple(now_pub)) if tuple(now_pub) != state.published else state
