"""The LTE modem, as pure decisions: its state, the recovery ladder, the data budget, the LTE traffic policy.

The runtime polls the modem (through the AT driver) and feeds a :class:`Reading` every poll; facts from the
uplink area arrive as :class:`DataPath` (is traffic flowing through LTE?) and :class:`WantData` (cold
standby: LTE became the active uplink).  The machine answers with effects: dial, hang up, reset the radio,
power-cycle the modem, and one :class:`JournalEvent` per transition and per recovery rung.

States: ``absent → sim_missing | pin_needed → searching → registered → connected``; ``unresponsive`` when
the device is there but does not answer; ``failed`` once the ladder gave up.

Recovery ladder (when data stops, the modem hangs or registration is lost for too long):
``redial → radio_reset (AT+CFUN=0/1 or the profile's reset) → power_cycle (USB power through the board's
GPIO) → gave_up`` (critical alert), with a doubling backoff between rungs.  After giving up the ladder is
tried again after ``giveup_retry_s``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.core.base import Effect, Event, JournalEvent

RUNGS = ("redial", "radio_reset", "power_cycle", "gave_up")
REGISTERED = ("home", "roaming")


# ------------------------------------------------------------------------------------------ events

@dataclass(frozen=True)
class Reading(Event):
    """One poll of the modem through the driver."""

    present: bool  # the device node could be opened
    responsive: bool = True  # it answered AT commands
    sim: str | None = None  # ready | missing | pin_needed | puk_needed | locked | None (unknown)
    registration: str | None = None  # home | roaming | searching | denied | not_registered | unknown
    operator: str | None = None
    technology: str | None = None  # LTE | UMTS | HSPA | GSM | 5G | ...
    rssi_dbm: float | None = None
    rsrp_dbm: float | None = None
    rsrq_db: float | None = None
    sinr_db: float | None = None
    data_connected: bool | None = None  # the data call is up (None: unknown)
    iccid: str | None = None
    error: str = ""  # why a reading is incomplete (for the journal line)


@dataclass(frozen=True)
class DataPath(Event):
    """The uplink probes' verdict on traffic through LTE (from UplinkStatus of the backup uplink)."""

    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class WantData(Event):
    """Whether the LTE data call is needed now (cold standby: LTE became, or stopped being, active)."""

    want: bool
    reason: str = ""


# ----------------------------------------------------------------------------------------- effects

@dataclass(frozen=True)
class Dial(Effect):
    """Start the data call (define the PDP context with the APN, then the profile's data_start)."""


@dataclass(frozen=True)
class HangUp(Effect):
    """Stop the data call."""


@dataclass(frozen=True)
class ResetRadio(Effect):
    """AT+CFUN=0 then AT+CFUN=1, or the profile's reset command."""


@dataclass(frozen=True)
class PowerCycle(Effect):
    """Cut and restore the modem's USB power (the runtime publishes ModemPowerCycle for the panel)."""

    reason: str


# ------------------------------------------------------------------------------------------- state

@dataclass(frozen=True)
class Policy:
    standby: str = "warm"  # warm: registered and dialled always; cold: dialled only while LTE is active
    recovery_after_s: float = 30.0  # trouble must last this long before the first rung
    backoff_s: float = 60.0  # wait after a rung before the next one; doubles every rung
    registration_timeout_s: float = 180.0  # not registered this long counts as trouble
    dial_retry_s: float = 15.0  # how often a failed data call is retried (not a rung)
    giveup_retry_s: float = 3600.0  # after giving up, start the ladder again after this long
    clear_after_s: float = 15.0  # trouble is over only after this long without it (a flapping modem
    # that answers one poll in three must not restart the ladder from its first rung every time)


@dataclass(frozen=True)
class ModemState:
    policy: Policy = field(default_factory=Policy)
    phase: str = "absent"
    reading: Reading | None = None
    want_data: bool = True
    data_path_ok: bool | None = None
    searching_since: float | None = None
    trouble: str | None = None
    trouble_since: float | None = None
    rung: int = 0  # 0: no recovery under way; n: RUNGS[n - 1] was the last rung taken
    rung_at: float | None = None
    clear_since: float | None = None  # first trouble-free moment while trouble or a rung is pending
    last_dial_at: float | None = None

    @property
    def recovery_rung(self) -> str | None:
        return RUNGS[self.rung - 1] if self.rung else None

    @property
    def state(self) -> str:
        """The state shown to people: the phase, or ``failed`` once the ladder gave up."""
        return "failed" if self.recovery_rung == "gave_up" else self.phase


def initial(policy: Policy) -> ModemState:
    return ModemState(policy=policy, want_data=policy.standby == "warm")


def phase_of(r: Reading) -> str:
    if not r.present:
        return "absent"
    if not r.responsive:
        return "unresponsive"
    if r.sim == "missing":
        return "sim_missing"
    if r.sim in ("pin_needed", "puk_needed", "locked"):
        return "pin_needed"
    if r.registration in REGISTERED:
        return "connected" if r.data_connected else "registered"
    return "searching"


def _describe(phase: str, r: Reading | None) -> str:
    if r is None:
        return phase
    facts: list[str] = []
    if phase in ("registered", "connected"):
        facts += [x for x in (r.operator, r.technology) if x]
        if r.registration == "roaming":
            facts.append("roaming")
    if r.rssi_dbm is not None and phase not in ("absent", "unresponsive"):
        facts.append(f"{r.rssi_dbm:.0f} dBm")
    if r.error and phase in ("absent", "unresponsive"):
        facts.append(r.error)
    return f"{phase} ({', '.join(facts)})" if facts else phase


_SEVERITY = {"absent": "warning", "unresponsive": "warning", "sim_missing": "warning", "pin_needed": "warning"}


def step(state: ModemState, event: Event, now: float) -> tuple[ModemState, tuple[Effect, ...]]:
    """Feed one event; return the next state and what to do about it."""
    effects: list[Effect] = []
    if isinstance(event, Reading):
        state = _on_reading(state, event, now, effects)
    elif isinstance(event, DataPath):
        if event.ok != state.data_path_ok:
            state = replace(state, data_path_ok=event.ok)
    elif isinstance(event, WantData):
        want = event.want or state.policy.standby == "warm"
        if want != state.want_data:
            state = replace(state, want_data=want)
            effects.append(JournalEvent("modem.standby", f"modem: data call {'wanted' if want else 'not needed'}"
                                        f"{' (' + event.reason + ')' if event.reason else ''}",
                                        data={"want": want, "standby": state.policy.standby}))
    state = _ladder(state, now, effects)
    state = _desired_data(state, now, effects)
    return state, tuple(effects)


def _on_reading(state: ModemState, r: Reading, now: float, effects: list[Effect]) -> ModemState:
    phase = phase_of(r)
    searching_since = state.searching_since
    if phase == "searching":
        searching_since = searching_since if searching_since is not None else now
    else:
        searching_since = None
    if phase != state.phase:
        before = state.phase
        effects.append(JournalEvent(
            "modem.state", f"modem: {before} → {_describe(phase, r)}", _SEVERITY.get(phase, "info"),
            data={"from": before, "to": phase, "operator": r.operator, "technology": r.technology,
                  "rssi_dbm": r.rssi_dbm, "registration": r.registration, "error": r.error}))
    # a new data call starts with an unknown data-path verdict: the probes have to look again
    data_path_ok = state.data_path_ok if phase == "connected" else None
    # newly registered (after a reset, a SIM back, a re-plug): dial now; dial_retry_s only paces retries of
    # a call that fails while the modem stays registered, else a reset right after a redial left the data
    # call down until the next rung
    last_dial_at = None if phase == "registered" and state.phase != "registered" else state.last_dial_at
    return replace(state, phase=phase, reading=r, searching_since=searching_since, data_path_ok=data_path_ok,
                   last_dial_at=last_dial_at)


def _desired_data(state: ModemState, now: float, effects: list[Effect]) -> ModemState:
    """Desired state of the data call: dialled when wanted and registered, hung up when not wanted."""
    if state.want_data and state.phase == "registered":
        if state.last_dial_at is None or now - state.last_dial_at >= state.policy.dial_retry_s:
            effects.append(Dial())
            return replace(state, last_dial_at=now)
    elif not state.want_data and state.phase == "connected":
        effects.append(HangUp())
        return replace(state, last_dial_at=None)
    return state


def trouble_of(state: ModemState, now: float) -> str | None:
    """Why the modem needs recovery right now, or None.  A missing SIM or PIN needs a person, not a ladder."""
    p = state.policy
    r = state.reading
    if state.phase == "absent":
        return "modem absent" if r is not None else None
    if state.phase == "unresponsive":
        return "modem does not answer"
    if state.phase in ("sim_missing", "pin_needed"):
        return None
    if state.phase == "searching":
        if state.searching_since is not None and now - state.searching_since >= p.registration_timeout_s:
            return f"not registered for {now - state.searching_since:.0f} s"
        return None
    if not state.want_data:
        return None
    if state.phase == "registered":
        return "data call does not come up"
    if state.phase == "connected" and state.data_path_ok is False:
        return "no traffic through LTE"
    return None


def _ladder(state: ModemState, now: float, effects: list[Effect]) -> ModemState:
    p = state.policy
    trouble = trouble_of(state, now)
    if trouble is None:
        if not state.rung and state.trouble is None:
            return state
        if state.phase in ("sim_missing", "pin_needed"):
            # not recovered: the trouble is now one only a person can fix (its own modem.state event says so)
            if state.rung:
                effects.append(JournalEvent(
                    "modem.recovery", f"modem: recovery stopped after {state.recovery_rung}: "
                    f"{_describe(state.phase, state.reading)} needs a person", "warning",
                    data={"rung": "stopped", "after": state.recovery_rung, "phase": state.phase}))
            return replace(state, trouble=None, trouble_since=None, rung=0, rung_at=None, clear_since=None)
        clear_since = state.clear_since if state.clear_since is not None else now
        if now - clear_since < p.clear_after_s:
            return replace(state, clear_since=clear_since) if clear_since != state.clear_since else state
        if state.rung:
            effects.append(JournalEvent(
                "modem.recovered", f"modem: recovered after {state.recovery_rung} ({_describe(state.phase, state.reading)})",
                data={"rung": state.recovery_rung, "phase": state.phase}))
        return replace(state, trouble=None, trouble_since=None, rung=0, rung_at=None, clear_since=None)
    if state.clear_since is not None:
        state = replace(state, clear_since=None)  # trouble again before it was over: the same trouble
    if state.trouble is None:
        state = replace(state, trouble=trouble, trouble_since=now)
    elif trouble != state.trouble:
        state = replace(state, trouble=trouble)  # still in trouble: the clock keeps running
    assert state.trouble_since is not None
    if state.rung == 0:
        if now - state.trouble_since < p.recovery_after_s:
            return state
        return _take_rung(state, 1, now, effects)
    assert state.rung_at is not None
    if state.recovery_rung == "gave_up":
        if now - state.rung_at >= p.giveup_retry_s:
            effects.append(JournalEvent("modem.recovery", f"modem: trying the recovery ladder again ({trouble})",
                                        "warning", data={"rung": "retry", "trouble": trouble}))
            return _take_rung(state, 1, now, effects)
        return state
    wait = p.backoff_s * 2 ** (state.rung - 1)
    if now - state.rung_at < wait:
        return state
    return _take_rung(state, state.rung + 1, now, effects)


def _take_rung(state: ModemState, rung: int, now: float, effects: list[Effect]) -> ModemState:
    trouble = state.trouble or "trouble"
    # redial and a radio reset need a modem that is there; an absent one can only be power-cycled
    if state.phase == "absent" and rung < 3:
        rung = 3
    name = RUNGS[rung - 1]
    data: dict[str, Any] = {"rung": name, "trouble": trouble, "phase": state.phase,
                            "trouble_for_s": round(now - (state.trouble_since if state.trouble_since is not None else now), 1)}
    if name == "redial":
        effects += [HangUp(), Dial(),
                    JournalEvent("modem.recovery", f"modem: recovery 1/3: re-dial ({trouble})", "warning", data)]
        state = replace(state, last_dial_at=now)
    elif name == "radio_reset":
        effects += [ResetRadio(),
                    JournalEvent("modem.recovery", f"modem: recovery 2/3: radio reset ({trouble})", "warning", data)]
    elif name == "power_cycle":
        effects += [PowerCycle(trouble),
                    JournalEvent("modem.recovery", f"modem: recovery 3/3: USB power cycle ({trouble})", "warning",
                                 data)]
    else:
        effects.append(JournalEvent(
            "modem.gave_up", f"modem: recovery failed ({trouble}); LTE backup unavailable, check the modem",
            "critical", data))
    return replace(state, rung=rung, rung_at=now)


# -------------------------------------------------------------------------------------- data budget

@dataclass(frozen=True)
class Budget:
    """Bytes used on LTE in the current billing period, from the interface's byte counters."""

    budget_bytes: int = 0  # 0: no budget
    warn_pct: tuple[float, ...] = (50.0, 80.0, 95.0)
    at_cap: str = "alert"  # alert | restrict
    period: str = ""  # start date of the billing period, YYYY-MM-DD
    used_bytes: int = 0
    last_counter: int | None = None  # rx+tx of the interface at the last reading
    last_ifindex: int | None = None
    warned: tuple[float, ...] = ()
    capped: bool = False

    @property
    def restrict(self) -> bool:
        return self.capped and self.at_cap == "restrict"

    def to_json(self) -> dict[str, Any]:
        return {"period": self.period, "used_bytes": self.used_bytes, "last_counter": self.last_counter,
                "last_ifindex": self.last_ifindex, "warned": list(self.warned), "capped": self.capped}


def budget_from_json(raw: Any, budget_bytes: int, warn_pct: tuple[float, ...], at_cap: str) -> Budget:
    """Restore a persisted budget (anything malformed starts afresh rather than failing)."""
    b = Budget(budget_bytes=budget_bytes, warn_pct=warn_pct, at_cap=at_cap)
    if not isinstance(raw, dict):
        return b

    def _int(v: Any) -> int | None:
        return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None

    warned = raw.get("warned")
    period = raw.get("period")
    return replace(b, period=period if isinstance(period, str) else "",
                   used_bytes=_int(raw.get("used_bytes")) or 0, last_counter=_int(raw.get("last_counter")),
                   last_ifindex=_int(raw.get("last_ifindex")),
                   warned=tuple(float(w) for w in warned if isinstance(w, (int, float)))
                   if isinstance(warned, list) else (),
                   capped=raw.get("capped") is True)


@dataclass(frozen=True)
class Counters(Event):
    """The LTE interface's rx+tx byte counters (None: the interface does not exist now)."""

    total_bytes: int | None
    period: str  # billing period the reading falls into (see billing_period)
    ifindex: int | None = None


def billing_period(year: int, month: int, day: int, billing_day: int) -> str:
    """Start date (YYYY-MM-DD) of the billing period that contains the given date."""
    if day < billing_day:
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return f"{year:04d}-{month:02d}-{billing_day:02d}"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def budget_step(b: Budget, ev: Counters) -> tuple[Budget, tuple[Effect, ...]]:
    effects: list[Effect] = []
    if ev.period != b.period:
        if b.period:
            effects.append(JournalEvent("modem.budget_period", f"LTE data: new billing period from {ev.period} "
                                        f"({_mb(b.used_bytes)} used in the last one)",
                                        data={"period": ev.period, "previous_used_bytes": b.used_bytes}))
            if b.restrict:
                effects.append(JournalEvent("modem.budget_cap", "LTE data: new period, traffic no longer restricted",
                                            data={"capped": False}))
        b = replace(b, period=ev.period, used_bytes=0, warned=(), capped=False)
    if ev.total_bytes is None:
        return b, tuple(effects)
    total = ev.total_bytes
    if b.last_counter is None:
        delta = 0  # first reading ever: only count from here on
    elif total < b.last_counter or (ev.ifindex is not None and b.last_ifindex is not None
                                    and ev.ifindex != b.last_ifindex):
        delta = total  # the interface was re-created: its counters started again from zero
    else:
        delta = total - b.last_counter
    b = replace(b, used_bytes=b.used_bytes + delta, last_counter=total,
                last_ifindex=ev.ifindex if ev.ifindex is not None else b.last_ifindex)
    if b.budget_bytes <= 0:
        return b, tuple(effects)
    pct = 100.0 * b.used_bytes / b.budget_bytes
    for w in sorted(b.warn_pct):
        if pct >= w and w not in b.warned and w < 100.0:
            b = replace(b, warned=(*b.warned, w))
            effects.append(JournalEvent("modem.budget_warning",
                                        f"LTE data: {pct:.0f} % of the budget used ({_mb(b.used_bytes)} of "
                                        f"{_mb(b.budget_bytes)})", "warning",
                                        data={"pct": w, "used_bytes": b.used_bytes, "budget_bytes": b.budget_bytes}))
    if pct >= 100.0 and not b.capped:
        b = replace(b, capped=True)
        what = "non-critical traffic blocked" if b.at_cap == "restrict" else "alert only"
        effects.append(JournalEvent("modem.budget_cap",
                                    f"LTE data: budget used up ({_mb(b.used_bytes)} of {_mb(b.budget_bytes)}); {what}",
                                    "critical", data={"used_bytes": b.used_bytes, "budget_bytes": b.budget_bytes,
                                                      "capped": True, "policy": b.at_cap}))
    return b, tuple(effects)


# ------------------------------------------------------------------------------- LTE traffic policy

TABLE = "office_gateway_lte"


def lte_policy_mode(lte_active: bool, budget: Budget) -> str:
    """``block`` when the budget is used up under the restrict policy, ``limit`` while LTE carries the
    office, else ``none`` (no table)."""
    if budget.restrict:
        return "block"
    return "limit" if lte_active else "none"


def _nft_str(s: str) -> str:
    if not s or any(c in s for c in '"\\\n\r\t ;{}'):
        raise ValueError(f"unsafe name for nftables: {s!r}")
    return s


def _collapse(addrs: tuple[str, ...], version: int) -> tuple[str, ...]:
    out: list[str] = []
    if version == 4:
        v4 = [ipaddress.IPv4Network(a, strict=False) for a in addrs]
        out = [str(n.network_address) if n.num_addresses == 1 else str(n) for n in ipaddress.collapse_addresses(v4)]
    else:
        v6 = [ipaddress.IPv6Network(a, strict=False) for a in addrs]
        out = [str(n.network_address) if n.num_addresses == 1 else str(n) for n in ipaddress.collapse_addresses(v6)]
    return tuple(out)


def render_lte_policy(mode: str, interface: str, priority_v4: tuple[str, ...], priority_v6: tuple[str, ...],
                      priority_ports: tuple[int, ...], rate_kbit: int) -> str:
    """The whole ``nft -f -`` script for the LTE policy: idempotent (the table is replaced atomically).

    Traffic on the LTE interface to or from the business apps' addresses and on the SIP ports passes first;
    everything else is rate-limited (``limit``) or dropped (``block``).  ``none`` removes the table.
    """
    iface = _nft_str(interface)
    # an interval set refuses overlapping elements: collapse (192.0.2.53 inside 192.0.2.0/24 is one element)
    priority_v4 = _collapse(priority_v4, 4)
    priority_v6 = _collapse(priority_v6, 6)
    lines = [f"table inet {TABLE} {{}}", f"delete table inet {TABLE}"]
    if mode == "none":
        return "\n".join(lines) + "\n"
    if mode not in ("limit", "block"):
        raise ValueError(f"unknown LTE policy mode {mode!r}")
    kbytes = max(1, rate_kbit // 8)
    rest = f"limit rate over {kbytes} kbytes/second burst {max(kbytes, 16)} kbytes drop" if mode == "limit" \
        else "drop"
    ports = ", ".join(str(p) for p in sorted(set(priority_ports)))
    body = [f"table inet {TABLE} {{"]
    body.append("  set prio4 { type ipv4_addr; flags interval; "
                + (f"elements = {{ {', '.join(priority_v4)} }}; " if priority_v4 else "") + "}")
    body.append("  set prio6 { type ipv6_addr; flags interval; "
                + (f"elements = {{ {', '.join(priority_v6)} }}; " if priority_v6 else "") + "}")
    for chain, hook, dirn, peer, port in (("egress", "postrouting", "oifname", "daddr", "dport"),
                                          ("ingress", "prerouting", "iifname", "saddr", "sport")):
        body.append(f"  chain {chain} {{")
        body.append(f"    type filter hook {hook} priority -150; policy accept;")
        body.append(f'    {dirn} != "{iface}" accept')
        body.append(f"    ip {peer} @prio4 accept")
        body.append(f"    ip6 {peer} @prio6 accept")
        if ports:
            body.append(f"    meta l4proto {{ tcp, udp }} th {port} {{ {ports} }} accept")
            other = "sport" if port == "dport" else "dport"
            body.append(f"    meta l4proto {{ tcp, udp }} th {other} {{ {ports} }} accept")
        body.append(f"    {rest}")
        body.append("  }")
    body.append("}")
    return "\n".join(lines + body) + "\n"
