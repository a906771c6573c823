"""Power, as pure decisions: the UPS's state, which PoE loads are shed and why, when to shut down.

The runtime polls the UPS (NUT's upsd) and feeds an :class:`UpsReading` every poll, a :class:`PollFailed`
when a poll fails, :class:`~gateway.core.base.Tick` between them, and :class:`Override` when an admin sets a
load by hand.  The machine answers with effects: :class:`SetLoad` (desired state of one load; the runtime
commits it to the journal, then sets the switch port and re-applies it periodically),
:class:`RequestShutdown` (once, on entering ``shutting_down``) and one
:class:`~gateway.core.base.JournalEvent` per transition.

States: ``online → on_battery → low_battery → shutting_down``, with ``comm_lost`` beside them (no fresh
reading from upsd, or upsd says the driver's data is stale).  ``comm_lost`` never sheds and never restores:
the loads stay as they were until the UPS is heard again.

* Debounce: an ``OB`` must last ``debounce_s`` before it counts; a shorter blip sheds nothing (it is logged
  as a blip).  A real emergency is not delayed: ``OB`` with ``LB`` or with runtime already within the
  shutdown slack counts at once.
* Tiers: tier *n* is shed once any of its triggers holds while on battery: seconds since the outage began,
  runtime below N s, charge below N %.  Tier 0 is essential and never shed by the machine.  In
  ``low_battery`` and ``shutting_down`` every tier above 0 is shed.
* Shutdown: when runtime <= ``shutdown_duration_s + shutdown_reserve_s`` (or ``OB LB`` when the UPS reports
  no runtime) the machine enters ``shutting_down`` and asks once for the shutdown sequence.
* Restore: once mains has been back ``restore_hold_s``, tiers return one at a time, the most important shed
  tier first, ``restore_stagger_s`` apart; any ``OB`` reading stops the restore at once.
* Overrides: an admin's ``on``/``off`` holds until set back to ``auto``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.core.base import Effect, Event, JournalEvent, Tick

# Every flag NUT documents for ups.status (docs/new-drivers.txt), with what it means to a person.
FLAGS: dict[str, str] = {
    "OL": "on line (mains)", "OB": "on battery", "LB": "low battery", "HB": "high battery",
    "RB": "replace battery", "CHRG": "charging", "DISCHRG": "discharging", "BYPASS": "on bypass",
    "CAL": "calibrating", "OFF": "output off", "OVER": "overloaded", "TRIM": "trimming voltage",
    "BOOST": "boosting voltage", "FSD": "forced shutdown", "ALARM": "alarm",
}
STATES = ("online", "on_battery", "low_battery", "shutting_down", "comm_lost")
STATE_CODES = {s: i for i, s in enumerate(STATES)}  # for the gateway_power_state gauge

# Sentinels real UPSes report when they do not know (0xFFFF, 0xFFFF * 60): not a measurement.
_RUNTIME_SENTINELS = (65535.0, 3932100.0)


# ------------------------------------------------------------------------------------------ parsing

def parse_status(text: str | None) -> tuple[str, ...]:
    """``"OB DISCHRG LB"`` -> ``("OB", "DISCHRG", "LB")``: upper-cased tokens, duplicates dropped, order kept.

    Unknown tokens (some drivers add their own, e.g. ``HE``) are kept so they can be shown; they never
    change the power state.  A trailing ``#`` comment (as in dump files) is ignored.
    """
    if not text:
        return ()
    text = text.split("#", 1)[0]
    out: list[str] = []
    for tok in text.split():
        tok = tok.strip().upper()
        if tok and re.fullmatch(r"[A-Z0-9_\-]{1,16}", tok) and tok not in out:
            out.append(tok)
    return tuple(out)


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    text = text.split("#", 1)[0].strip()
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class UpsReading(Event):
    """One poll of upsd: the UPS's status flags and the figures that matter, sanitized."""

    status: tuple[str, ...] = ()
    charge_pct: float | None = None
    runtime_s: float | None = None
    load_pct: float | None = None
    input_voltage: float | None = None
    input_voltage_nominal: float | None = None
    input_transfer_low: float | None = None
    input_transfer_high: float | None = None
    output_voltage: float | None = None
    realpower_nominal_w: float | None = None
    model: str = ""


def reading_from_vars(values: Mapping[str, str]) -> UpsReading:
    """Map upsd's variables (``LIST VAR`` / a dump file) to a reading.  Never raises.

    Values real units are known to report that cannot be measurements become ``None``: a charge above
    100 %, a runtime of 65535 s or 0xFFFF minutes, a runtime of 0 s at a high charge (units without a
    runtime estimate), a load above 1000 %, negative voltages.
    """
    def num(*keys: str) -> float | None:
        for k in keys:
            v = _number(values.get(k))
            if v is not None:
                return v
        return None

    charge = num("battery.charge")
    if charge is not None and not 0 <= charge <= 100:
        charge = None
    runtime = num("battery.runtime")
    if runtime is not None and (runtime < 0 or runtime in _RUNTIME_SENTINELS
                                or (runtime == 0 and (charge is None or charge >= 50))):
        runtime = None
    load = num("ups.load")
    if load is not None and not 0 <= load <= 1000:
        load = None

    def volts(*keys: str) -> float | None:
        v = num(*keys)
        return v if v is not None and 0 <= v < 1000 else None

    realpower = num("ups.realpower.nominal")
    if realpower is None:
        va = num("ups.power.nominal")
        realpower = va * 0.6 if va is not None else None  # a typical power factor when only VA is given
    model = " ".join(filter(None, ((values.get("device.mfr") or values.get("ups.mfr") or "").strip(),
                                   (values.get("device.model") or values.get("ups.model") or "").strip())))
    return UpsReading(
        status=parse_status(values.get("ups.status")), charge_pct=charge, runtime_s=runtime, load_pct=load,
        input_voltage=volts("input.voltage"), input_voltage_nominal=volts("input.voltage.nominal"),
        input_transfer_low=volts("input.transfer.low"), input_transfer_high=volts("input.transfer.high"),
        output_voltage=volts("output.voltage"),
        realpower_nominal_w=realpower if realpower is not None and realpower > 0 else None, model=model)


def parse_dump(text: str) -> dict[str, str]:
    """A NUT ``.dev`` dump (what ``upsc`` prints, with ``#`` comments) as ``{variable: value}``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.\-]+", key):
            continue
        value = re.split(r"\s#", value, maxsplit=1)[0] if "#" in value else value
        out[key] = value.strip()
    return out


def supply_of(status: tuple[str, ...]) -> str:
    """``battery`` | ``mains`` | ``unknown`` from the flags.

    ``OB`` without ``OL`` is battery.  ``OL`` (alone or with a bogus ``OB``, which some units report while
    on line), ``BYPASS``, ``TRIM`` and ``BOOST`` are mains.  No flag that says either (``OFF``, ``ALARM``,
    empty) is unknown: the machine keeps what it knew.
    """
    flags = set(status)
    if "OB" in flags and "OL" not in flags:
        return "battery"
    if flags & {"OL", "BYPASS", "TRIM", "BOOST"}:
        return "mains"
    return "unknown"


# ------------------------------------------------------------------------------------------ events

@dataclass(frozen=True)
class PollFailed(Event):
    """A poll of upsd failed; ``stale`` when upsd itself says the driver's data is stale or gone."""

    reason: str
    stale: bool = False


@dataclass(frozen=True)
class Override(Event):
    """An admin sets a load: ``on``/``off`` hold until ``auto``."""

    name: str
    state: str  # on | off | auto
    who: str = "admin"


# ----------------------------------------------------------------------------------------- effects

@dataclass(frozen=True)
class SetLoad(Effect):
    """The desired state of one load changed: commit it, then set the switch port."""

    name: str
    state: str  # on | off
    reason: str
    tier: int
    override: str = "auto"  # on | off | auto: whether the admin holds it


@dataclass(frozen=True)
class RequestShutdown(Effect):
    """Start the shutdown sequence (set FSD through upsd, or notify the configured servers)."""

    reason: str


# ------------------------------------------------------------------------------------------- state

@dataclass(frozen=True)
class TierRule:
    tier: int
    after_on_battery_s: float | None = None
    runtime_below_s: float | None = None
    charge_below_pct: float | None = None


@dataclass(frozen=True)
class LoadSpec:
    name: str
    tier: int
    watts: float | None = None


@dataclass(frozen=True)
class Policy:
    loads: tuple[LoadSpec, ...] = ()
    tiers: tuple[TierRule, ...] = ()
    debounce_s: float = 2.0
    low_battery_charge_pct: float = 30.0
    low_battery_runtime_s: float = 300.0
    restore_hold_s: float = 60.0
    restore_stagger_s: float = 10.0
    stale_after_s: float = 5.0
    shutdown_slack_s: float = 210.0  # shutdown_duration_s + shutdown_reserve_s
    ups_name: str = "ups"


@dataclass(frozen=True)
class PowerState:
    policy: Policy = field(default_factory=Policy)
    state: str = "comm_lost"
    reading: UpsReading | None = None
    ever_heard: bool = False
    lost_announced: bool = False  # the comm_lost event was journaled (also when never heard since start)
    comm_ok: bool = False
    last_ok_at: float | None = None
    started_at: float | None = None
    comm_lost_reason: str = ""
    ob_first_at: float | None = None  # first OB reading of this outage (pending or confirmed)
    on_battery: bool = False  # the outage is real (debounced)
    mains_since: float | None = None
    shed: Mapping[int, str] = field(default_factory=dict)  # tier -> why it was shed
    restore_next_at: float | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)  # load -> on | off
    shutdown_requested: bool = False
    load_before_pct: float | None = None  # the UPS's load just before the first tier was shed
    quality: Mapping[str, float] = field(default_factory=dict)  # power-quality condition -> since

    @property
    def shed_tiers(self) -> tuple[int, ...]:
        return tuple(sorted(self.shed))

    @property
    def restoring(self) -> bool:
        return bool(self.shed) and not self.on_battery and self.mains_since is not None and self.comm_ok


def initial(policy: Policy, now: float, shed: Mapping[int, str] | None = None,
            overrides: Mapping[str, str] | None = None, on_battery_for_s: float | None = None) -> PowerState:
    """The machine at start; ``shed``/``overrides`` come back from the journal after a restart, and
    ``on_battery_for_s`` (how long the outage has run, if one was under way) keeps tier timers honest."""
    ob_first_at = now - on_battery_for_s if on_battery_for_s is not None else None
    return PowerState(policy=policy, started_at=now, shed=dict(shed or {}), overrides=dict(overrides or {}),
                      ob_first_at=ob_first_at, on_battery=ob_first_at is not None and bool(shed))


def desired(s: PowerState) -> dict[str, tuple[str, str, str]]:
    """Each load's desired ``(state, reason, override)``."""
    out: dict[str, tuple[str, str, str]] = {}
    for load in s.policy.loads:
        ov = s.overrides.get(load.name)
        if ov in ("on", "off"):
            out[load.name] = (ov, f"held {ov} by admin", ov)
        elif load.tier > 0 and load.tier in s.shed:
            out[load.name] = ("off", s.shed[load.tier], "auto")
        else:
            out[load.name] = ("on", "", "auto")
    return out


def minutes_gained(load_before_pct: float | None, load_now_pct: float | None,
                   runtime_now_s: float | None) -> float | None:
    """Runtime won by shedding, from the UPS's own figures: with battery energy E, runtime is E / load, so
    the gain is ``runtime_now * (1 - load_now / load_before)``."""
    if load_before_pct is None or load_now_pct is None or runtime_now_s is None or load_before_pct <= 0:
        return None
    if load_now_pct >= load_before_pct:
        return 0.0
    return round(runtime_now_s * (1 - load_now_pct / load_before_pct) / 60.0, 1)


def shed_watts(s: PowerState, measured: Mapping[str, float] | None = None) -> float:
    """Watts of the loads that are off: measured per port where the switch tells, else configured."""
    total = 0.0
    want = desired(s)
    for load in s.policy.loads:
        if want[load.name][0] == "off":
            w = (measured or {}).get(load.name, load.watts)
            total += w or 0.0
    return round(total, 1)


# -------------------------------------------------------------------------------------------- step

def step(s: PowerState, event: Event, now: float) -> tuple[PowerState, tuple[Effect, ...]]:
    """Feed one event; return the next state and the effects to carry out."""
    before = desired(s)
    out: list[Effect] = []
    if s.started_at is None:
        s = replace(s, started_at=now)
    if isinstance(event, UpsReading):
        s = _on_reading(s, event, now, out)
    elif isinstance(event, PollFailed):
        s = _on_failure(s, event, now, out)
    elif isinstance(event, Override):
        s = _on_override(s, event, out)
    elif isinstance(event, Tick):
        s = _on_tick(s, now, out)
    s = _evaluate(s, now, out)
    after = desired(s)
    tiers = {load.name: load.tier for load in s.policy.loads}
    for name, (state, reason, override) in after.items():
        if before.get(name) != (state, reason, override):
            if before.get(name, ("", "", ""))[0] == state and before.get(name, ("", "", ""))[2] == override:
                continue  # only the wording of the reason changed
            out.append(SetLoad(name, state, reason, tiers[name], override))
    return s, tuple(out)


def _describe(r: UpsReading | None) -> str:
    if r is None:
        return "no reading"
    parts = [" ".join(r.status) or "no status"]
    if r.charge_pct is not None:
        parts.append(f"{r.charge_pct:g} %")
    if r.runtime_s is not None:
        parts.append(f"{r.runtime_s:g} s left")
    if r.load_pct is not None:
        parts.append(f"load {r.load_pct:g} %")
    return ", ".join(parts)


def _on_reading(s: PowerState, r: UpsReading, now: float, out: list[Effect]) -> PowerState:
    s = replace(s, reading=r, comm_ok=True, ever_heard=True, last_ok_at=now, comm_lost_reason="")
    supply = supply_of(r.status)
    if supply == "battery":
        if s.ob_first_at is None:
            s = replace(s, ob_first_at=now)
        if s.mains_since is not None or s.restore_next_at is not None:
            if s.restoring:
                out.append(JournalEvent("power.restore_stopped",
                                        f"UPS {s.policy.ups_name}: on battery again, restore stopped "
                                        f"(tiers {', '.join(map(str, s.shed_tiers))} stay off)", "warning"))
            s = replace(s, mains_since=None, restore_next_at=None)
    elif supply == "mains":
        if s.ob_first_at is not None:
            duration = now - s.ob_first_at
            if s.on_battery:
                out.append(JournalEvent("power.transfer", f"UPS {s.policy.ups_name}: mains back after "
                                        f"{duration:.1f} s on battery",
                                        data={"duration_s": round(duration, 1), "kind": "outage"}))
            else:
                out.append(JournalEvent("power.blip", f"UPS {s.policy.ups_name}: {duration:.1f} s on battery, "
                                        f"shorter than the {s.policy.debounce_s:g} s debounce: nothing shed",
                                        data={"duration_s": round(duration, 1), "kind": "blip"}))
        s = replace(s, ob_first_at=None, on_battery=False)
        if s.mains_since is None:
            s = replace(s, mains_since=now)
    s = _quality(s, r, now, out)
    return s


def _overdue(s: PowerState, now: float) -> bool:
    ref = s.last_ok_at if s.last_ok_at is not None else s.started_at
    return ref is not None and now - ref >= s.policy.stale_after_s


def _lose(s: PowerState, reason: str) -> PowerState:
    return replace(s, comm_ok=False, comm_lost_reason=reason, mains_since=None, restore_next_at=None)


def _on_failure(s: PowerState, e: PollFailed, now: float, out: list[Effect]) -> PowerState:
    if e.stale or _overdue(s, now):
        return _lose(s, e.reason or "no answer")
    return replace(s, comm_lost_reason=e.reason or "no answer")


def _on_tick(s: PowerState, now: float, out: list[Effect]) -> PowerState:
    if s.comm_ok and _overdue(s, now):
        ref = s.last_ok_at if s.last_ok_at is not None else now
        return _lose(s, s.comm_lost_reason or f"no reading for {now - ref:.0f} s")
    return s


def _on_override(s: PowerState, e: Override, out: list[Effect]) -> PowerState:
    if e.name not in {load.name for load in s.policy.loads} or e.state not in ("on", "off", "auto"):
        return s  # the runtime validates first; nothing changes on bad input
    ov = dict(s.overrides)
    if e.state == "auto":
        if ov.pop(e.name, None) is None:
            return s
    else:
        if ov.get(e.name) == e.state:
            return s
        ov[e.name] = e.state
    out.append(JournalEvent("power.override", f"load {e.name}: {e.state} by {e.who}"
                            + (" (holds until set back to auto)" if e.state != "auto" else " (automatic again)"),
                            data={"load": e.name, "state": e.state, "who": e.who}))
    return replace(s, overrides=ov)


def _rule_fires(rule: TierRule, s: PowerState, now: float) -> str | None:
    r = s.reading
    if rule.after_on_battery_s is not None and s.ob_first_at is not None \
            and now - s.ob_first_at >= rule.after_on_battery_s:
        return f"on battery {now - s.ob_first_at:.0f} s"
    if r is not None and rule.runtime_below_s is not None and r.runtime_s is not None \
            and r.runtime_s < rule.runtime_below_s:
        return f"runtime {r.runtime_s:.0f} s < {rule.runtime_below_s:g} s"
    if r is not None and rule.charge_below_pct is not None and r.charge_pct is not None \
            and r.charge_pct < rule.charge_below_pct:
        return f"charge {r.charge_pct:g} % < {rule.charge_below_pct:g} %"
    return None


def _shed(s: PowerState, tier: int, reason: str, now: float, out: list[Effect]) -> PowerState:
    names = [load.name for load in s.policy.loads if load.tier == tier]
    load_before = s.load_before_pct
    if not s.shed and s.reading is not None:
        load_before = s.reading.load_pct
    out.append(JournalEvent("power.shed", f"shedding tier {tier} ({', '.join(names) or 'no loads'}): {reason}",
                            "warning", data={"tier": tier, "loads": names, "reason": reason}))
    return replace(s, shed={**s.shed, tier: f"shed: tier {tier} ({reason})"}, load_before_pct=load_before,
                   restore_next_at=None)


def _low(s: PowerState) -> str | None:
    r = s.reading
    if r is None:
        return None
    if "LB" in r.status:
        return "UPS says low battery (LB)"
    if r.charge_pct is not None and r.charge_pct <= s.policy.low_battery_charge_pct:
        return f"charge {r.charge_pct:g} % <= {s.policy.low_battery_charge_pct:g} %"
    if r.runtime_s is not None and r.runtime_s <= s.policy.low_battery_runtime_s:
        return f"runtime {r.runtime_s:.0f} s <= {s.policy.low_battery_runtime_s:g} s"
    return None


def _critical(s: PowerState) -> str | None:
    """Why the shutdown sequence must start now (on battery), or None."""
    r = s.reading
    if r is None:
        return None
    if r.runtime_s is not None and r.runtime_s <= s.policy.shutdown_slack_s:
        return f"runtime {r.runtime_s:.0f} s <= shutdown {s.policy.shutdown_slack_s:g} s (duration + reserve)"
    if "LB" in r.status:
        return "UPS on battery with low battery (LB)"
    return None


def _evaluate(s: PowerState, now: float, out: list[Effect]) -> PowerState:
    """Debounce, tiers, shutdown, restore, and the state a person sees; one journal event per change."""
    p = s.policy
    if s.comm_ok:
        if s.ob_first_at is not None and not s.on_battery:
            if now - s.ob_first_at >= p.debounce_s or _critical(s) is not None:
                s = replace(s, on_battery=True, mains_since=None, restore_next_at=None)
        if s.on_battery:
            low = _low(s)
            for rule in sorted(p.tiers, key=lambda t: t.tier):
                if rule.tier > 0 and rule.tier not in s.shed:
                    why = _rule_fires(rule, s, now)
                    if why:
                        s = _shed(s, rule.tier, why, now, out)
            critical = _critical(s)
            if low or critical or s.shutdown_requested:
                for tier in sorted({load.tier for load in p.loads if load.tier > 0} - set(s.shed)):
                    s = _shed(s, tier, low or critical or "shutting down", now, out)
            if critical and not s.shutdown_requested:
                s = replace(s, shutdown_requested=True)
                out.append(RequestShutdown(critical))
                out.append(JournalEvent("power.shutdown", f"UPS {p.ups_name}: starting the shutdown sequence: "
                                        f"{critical}", "critical", data={"reason": critical}))
        elif s.shed and s.mains_since is not None and s.ob_first_at is None \
                and now - s.mains_since >= p.restore_hold_s \
                and (s.restore_next_at is None or now >= s.restore_next_at):
            tier = max(s.shed)
            names = [load.name for load in p.loads if load.tier == tier]
            shed = {k: v for k, v in s.shed.items() if k != tier}
            out.append(JournalEvent("power.restore", f"restoring tier {tier} ({', '.join(names) or 'no loads'}): "
                                    f"mains back {now - s.mains_since:.0f} s",
                                    data={"tier": tier, "loads": names}))
            s = replace(s, shed=shed, restore_next_at=now + p.restore_stagger_s if shed else None,
                        load_before_pct=s.load_before_pct if shed else None)
        if not s.on_battery:
            s = replace(s, shutdown_requested=False)
    new = _state_of(s)
    if new != s.state:
        out.append(_transition(s, new))
        s = replace(s, state=new, lost_announced=new == "comm_lost")
    elif new == "comm_lost" and not s.lost_announced and _overdue(s, now):
        # never heard since start: say so once, when a reading is overdue
        out.append(_transition(replace(s, state="starting"), new))
        s = replace(s, lost_announced=True)
    return s


def _state_of(s: PowerState) -> str:
    if not s.comm_ok:
        return "comm_lost"
    r = s.reading
    if s.shutdown_requested or (s.on_battery and r is not None and "FSD" in r.status):
        return "shutting_down"  # FSD while on mains is shown as a flag only (some units always set it)
    if s.on_battery:
        return "low_battery" if _low(s) else "on_battery"
    return "online"


def _transition(s: PowerState, new: str) -> JournalEvent:
    ups = s.policy.ups_name
    data: dict[str, Any] = {"from": s.state, "to": new}
    if new == "comm_lost":
        return JournalEvent("power.comm_lost", f"UPS {ups}: lost contact ({s.comm_lost_reason or 'no answer'}); "
                            "loads stay as they are", "warning", data={**data, "reason": s.comm_lost_reason})
    severity = {"online": "info", "on_battery": "warning", "low_battery": "critical",
                "shutting_down": "critical"}[new]
    if s.reading is not None:
        data["status"] = list(s.reading.status)
    return JournalEvent("power.state", f"UPS {ups}: {new.replace('_', ' ')} ({_describe(s.reading)})", severity, data)


# ------------------------------------------------------------------------------------ power quality

def _quality(s: PowerState, r: UpsReading, now: float, out: list[Effect]) -> PowerState:
    """TRIM/BOOST/BYPASS/OVER and input voltage out of range: one event when each starts and one with its
    duration when it ends."""
    flags = set(r.status)
    active: dict[str, str] = {}
    for flag, label in (("TRIM", "trimming high input voltage"), ("BOOST", "boosting low input voltage"),
                        ("BYPASS", "on bypass"), ("OVER", "overloaded"), ("RB", "battery needs replacing")):
        if flag in flags:
            active[flag.lower()] = label
    v = r.input_voltage
    if v is not None and "OB" not in flags and v > 0:
        lo, hi = r.input_transfer_low, r.input_transfer_high
        if (lo is None or hi is None) and r.input_voltage_nominal:
            lo, hi = r.input_voltage_nominal * 0.9, r.input_voltage_nominal * 1.1
        if lo is not None and v < lo:
            active["voltage_low"] = f"input voltage {v:g} V below {lo:g} V"
        elif hi is not None and v > hi:
            active["voltage_high"] = f"input voltage {v:g} V above {hi:g} V"
    quality = dict(s.quality)
    for key, label in active.items():
        if key not in quality:
            quality[key] = now
            out.append(JournalEvent("power.quality", f"UPS {s.policy.ups_name}: {label}",
                                    "warning" if key in ("over", "rb") else "info",
                                    data={"condition": key, "started": True, "voltage": v}))
    for key in [k for k in quality if k not in active]:
        duration = now - quality.pop(key)
        out.append(JournalEvent("power.quality", f"UPS {s.policy.ups_name}: {key.replace('_', ' ')} ended "
                                f"after {duration:.0f} s", data={"condition": key, "started": False,
                                                                 "duration_s": round(duration, 1)}))
    return replace(s, quality=quality)
