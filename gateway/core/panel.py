"""The front panel, as pure decisions: what the LEDs and the buzzer show, and what the button means.

Inputs are the other areas' facts (:class:`PowerStatus`, :class:`UplinkStatus`, :class:`ActiveUplinkChanged`,
:class:`IncidentStatus`, :class:`AlertAcknowledged`), the button's edges (:class:`ButtonEdge`, stamped with the
time the pin changed), whether quiet hours are in force (:class:`QuietHours`) and :class:`Tick`.  The machine
answers with effects (acknowledge the alert, request a manual failover, journal lines), and
:func:`outputs` turns a state into the desired panel: one pattern per LED and one for the buzzer.
:func:`led_value` and :func:`buzzer_on` say what a pattern shows at a given moment, so the runtime renders
the panel by evaluating them; nothing here sleeps or keeps time.

Alert severity (``none < info < warning < high < critical``) is the worst of the conditions in force: the UPS
(on battery: warning, low battery: high, shutting down: critical, not answering: warning), the uplinks (on
LTE: info, none works: critical) and an open outage incident (low: warning, high: high, critical: critical).

The buzzer sounds patterns that escalate with severity.  An acknowledgement (the button, the page, the API)
silences the alert in force only: it stays silent while the alert is no worse than the one acknowledged, a
worse alert or a new incident sounds again, and once everything is well the next alert sounds from the
start.  In quiet hours only alerts at or above ``quiet_min_severity`` sound.

The button is judged on release, so a hold never also counts as a press: shorter than ``debounce_s`` is
contact bounce (ignored), shorter than ``hold_s`` acknowledges, ``hold_s`` or longer toggles the manual
failover between LTE and automatic, and a button held down for ``stuck_s`` is stuck: journaled once and
ignored until it is released.  A chirp confirms each decision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from gateway.core.base import Effect, Event, JournalEvent, Tick
from gateway.core.signals import (
    ActiveUplinkChanged,
    AlertAcknowledged,
    IncidentStatus,
    OverrideChanged,
    PowerStatus,
    UplinkStatus,
)

SEVERITIES = ("none", "info", "warning", "high", "critical")
RANK = {s: i for i, s in enumerate(SEVERITIES)}
INCIDENT_SEVERITY = {"low": "warning", "high": "high", "critical": "critical"}
POWER_SEVERITY = {"on_battery": "warning", "comm_lost": "warning", "low_battery": "high",
                  "shutting_down": "critical"}

# LED patterns: (on_s, off_s), repeating.  Blinking LEDs share one phase (time zero), so they blink together.
LED_PATTERNS: dict[str, tuple[float, float]] = {
    "off": (0.0, 1.0),
    "on": (1.0, 0.0),
    "slow_blink": (1.0, 1.0),
    "fast_blink": (0.2, 0.2),
    "wink": (0.1, 1.9),  # alive, but something is unknown
}

# Buzzer patterns: steps of (on_s, off_s) and whether they repeat.  Alarms start with their first beep when
# they begin; chirps play once.
BUZZER_PATTERNS: dict[str, tuple[tuple[tuple[float, float], ...], bool]] = {
    "off": ((), False),
    "warning": (((0.1, 29.9),), True),  # one short beep every 30 s
    "high": (((0.15, 0.15), (0.15, 9.55)), True),  # two beeps every 10 s
    "critical": (((0.25, 0.1), (0.25, 0.1), (0.25, 1.05)), True),  # three beeps every 2 s
    "chirp": (((0.06, 0.0),), False),  # button: acknowledged
    "chirp_lte": (((0.06, 0.08), (0.06, 0.0)), False),  # button: manual failover to LTE
    "chirp_auto": (((0.3, 0.0),), False),  # button: back to automatic
    "chirp_error": (((0.06, 0.06), (0.06, 0.06), (0.06, 0.0)), False),  # the request was refused
}
CHIRPS = tuple(n for n in BUZZER_PATTERNS if n.startswith("chirp"))

COLORS = ("green", "amber", "red", "blue")


# ------------------------------------------------------------------------------------------ events

@dataclass(frozen=True)
class ButtonEdge(Event):
    """The button's pin changed; ``at`` is when (monotonic), taken where the edge was seen."""

    pressed: bool
    at: float


@dataclass(frozen=True)
class QuietHours(Event):
    active: bool


@dataclass(frozen=True)
class FailoverResult(Event):
    """How the failover request of a hold ended: the override now in force (lte | wired | None) or an error."""

    ok: bool
    override: str | None = None
    message: str = ""


# ----------------------------------------------------------------------------------------- effects

@dataclass(frozen=True)
class Acknowledge(Effect):
    """Acknowledge the alert for everyone (the continuity area's ``ack`` action, or AlertAcknowledged)."""


@dataclass(frozen=True)
class RequestFailover(Effect):
    target: str  # lte | auto


# ------------------------------------------------------------------------------------------- state

@dataclass(frozen=True)
class Policy:
    hold_s: float = 3.0
    debounce_s: float = 0.03  # a press shorter than this is contact bounce
    stuck_s: float = 30.0  # held this long, the button is stuck (or something leans on it)
    quiet_min_severity: str = "critical"
    roles: tuple[tuple[str, str], ...] = ()  # uplink name -> primary | backup, from the config


@dataclass(frozen=True)
class Link:
    role: str
    state: str  # up | degraded | down | standby
    active: bool


@dataclass(frozen=True)
class Incident:
    incident_id: int
    severity: str  # low | high | critical
    kind: str = "outage"
    acked: bool = False


@dataclass(frozen=True)
class PanelState:
    policy: Policy = field(default_factory=Policy)
    power: str | None = None  # the power area's state; None until it has said something
    links: tuple[tuple[str, Link], ...] = ()
    override: str | None = None  # lte | wired | None (automatic)
    incident: Incident | None = None
    quiet: bool = False
    acked_rank: int = 0  # alerts of this rank or lower stay silent (0: nothing acknowledged)
    acked_incident: int | None = None
    alert_since: float = 0.0  # when the sounding pattern last changed (alarms start with a beep)
    sounding: str = "off"
    pressed_at: float | None = None
    stuck: bool = False
    chirp: str | None = None
    chirp_at: float = 0.0
    last_button: str | None = None  # ack | failover_lte | failover_auto | bounce | stuck (for the snapshot)

    def link(self, name: str) -> Link | None:
        return next((lk for n, lk in self.links if n == name), None)

    def role_of(self, name: str) -> str | None:
        lk = self.link(name)
        if lk is not None:
            return lk.role
        return next((r for n, r in self.policy.roles if n == name), None)


def initial(policy: Policy | None = None) -> PanelState:
    return PanelState(policy=policy or Policy())


# ------------------------------------------------------------------------------------ derivations

def offline(state: PanelState) -> bool:
    """No uplink works: every uplink we have heard of is down."""
    return bool(state.links) and all(lk.state == "down" for _, lk in state.links)


def active_role(state: PanelState) -> str | None:
    return next((lk.role for _, lk in state.links if lk.active), None)


def on_lte(state: PanelState) -> bool:
    return active_role(state) == "backup" and not offline(state)


def conditions(state: PanelState) -> list[tuple[str, str]]:
    """What is wrong now, as (severity, cause), worst first."""
    out: list[tuple[str, str]] = []
    if state.power in POWER_SEVERITY:
        out.append((POWER_SEVERITY[state.power], {
            "on_battery": "on battery", "comm_lost": "UPS not answering", "low_battery": "low battery",
            "shutting_down": "shutdown near"}[state.power]))
    if offline(state):
        out.append(("critical", "no uplink works"))
    elif on_lte(state):
        out.append(("info", "on LTE"))
    inc = state.incident
    if inc is not None and inc.kind == "outage":
        out.append((INCIDENT_SEVERITY.get(inc.severity, "warning"), f"incident #{inc.incident_id}"))
    out.sort(key=lambda c: -RANK[c[0]])
    return out


def severity(state: PanelState) -> str:
    cs = conditions(state)
    return cs[0][0] if cs else "none"


def alarm(state: PanelState) -> str:
    """The alarm pattern the buzzer should sound now ("off" when silent: acknowledged, quiet, all well)."""
    sev = severity(state)
    rank = RANK[sev]
    if rank < RANK["warning"] or rank <= state.acked_rank:
        return "off"
    if state.quiet and rank < RANK[state.policy.quiet_min_severity]:
        return "off"
    return sev


def armed(state: PanelState, now: float) -> bool:
    """The button has been held long enough: releasing it now toggles the manual failover."""
    return state.pressed_at is not None and not state.stuck and now - state.pressed_at >= state.policy.hold_s


# ----------------------------------------------------------------------------------------- machine

def step(state: PanelState, event: Event, now: float) -> tuple[PanelState, tuple[Effect, ...]]:
    effects: list[Effect] = []
    if isinstance(event, PowerStatus):
        state = replace(state, power=event.state)
    elif isinstance(event, UplinkStatus):
        links = dict(state.links)
        links[event.name] = Link(event.role, event.state, event.active)
        if event.active:
            links = {n: (lk if n == event.name else replace(lk, active=False)) for n, lk in links.items()}
        state = replace(state, links=tuple(sorted(links.items())))
    elif isinstance(event, ActiveUplinkChanged):
        links = {n: replace(lk, active=n == event.name) for n, lk in state.links}
        if event.name is not None and event.name not in links:
            role = state.role_of(event.name) or "primary"
            links[event.name] = Link(role, "up", True)
        state = replace(state, links=tuple(sorted(links.items())), override=_label(state, event.override))
    elif isinstance(event, OverrideChanged):  # set by anyone (CLI, page, button): the next hold toggles from it
        state = replace(state, override=_label(state, event.override))
    elif isinstance(event, IncidentStatus):
        state = _on_incident(state, event, now)
    elif isinstance(event, AlertAcknowledged):
        inc = state.incident
        if event.incident_id is None or inc is None or event.incident_id == inc.incident_id:
            state = _ack(state)
    elif isinstance(event, QuietHours):
        state = replace(state, quiet=event.active)
    elif isinstance(event, ButtonEdge):
        state = _on_button(state, event, effects)
    elif isinstance(event, FailoverResult):
        if event.ok:
            state = replace(state, override=event.override)
        else:
            state = replace(state, chirp="chirp_error", chirp_at=now)
            effects.append(JournalEvent("panel.button", f"panel: manual failover refused: {event.message}",
                                        "warning", {"message": event.message}))
    elif isinstance(event, Tick):
        held = None if state.pressed_at is None else now - state.pressed_at
        if held is not None and not state.stuck and held >= state.policy.stuck_s:
            state = replace(state, stuck=True, last_button="stuck")
            effects.append(JournalEvent(
                "panel.button", f"panel: button stuck pressed for {held:.0f} s; ignored until it is released",
                "warning", {"held_s": round(held, 1)}))
    else:
        return state, ()
    # the episode is over once nothing is wrong any more: the next alert sounds from the start
    if RANK[severity(state)] < RANK["warning"] and state.acked_rank:
        state = replace(state, acked_rank=0, acked_incident=None)
    sounding = alarm(state)
    if sounding != state.sounding:
        state = replace(state, sounding=sounding, alert_since=now)
    if state.chirp is not None and _done(state.chirp, now - state.chirp_at):
        state = replace(state, chirp=None)
    return state, tuple(effects)


def _label(state: PanelState, override: str | None) -> str | None:
    """An override as the uplinks area names it (an uplink name) → lte | wired | None."""
    if override is None or override in ("lte", "wired"):
        return override
    role = state.role_of(override)
    return {"backup": "lte", "primary": "wired"}.get(role or "", override)


def _ack(state: PanelState) -> PanelState:
    inc = state.incident
    return replace(state, acked_rank=max(state.acked_rank, RANK[severity(state)]),
                   acked_incident=inc.incident_id if inc else state.acked_incident)


def _on_incident(state: PanelState, ev: IncidentStatus, now: float) -> PanelState:
    old = state.incident
    if not ev.open:
        if old is not None and old.incident_id == ev.incident_id:
            state = replace(state, incident=None)
        return state
    new = Incident(ev.incident_id, ev.severity, ev.kind, ev.acked)
    fresh = old is None or old.incident_id != ev.incident_id
    if fresh and state.acked_incident is not None and state.acked_incident != ev.incident_id:
        state = replace(state, acked_rank=0, acked_incident=None)  # a new incident is a new alert
    state = replace(state, incident=new)
    if ev.acked and (fresh or not old or not old.acked):
        state = _ack(state)  # acknowledged elsewhere (the page, a notification link) or before a restart
    return state


def _on_button(state: PanelState, ev: ButtonEdge, effects: list[Effect]) -> PanelState:
    p = state.policy
    if ev.pressed:
        if state.pressed_at is None:
            state = replace(state, pressed_at=ev.at)
        return state
    if state.pressed_at is None:
        return state  # a release without a press (started while held, or a duplicate edge)
    held = max(0.0, ev.at - state.pressed_at)
    was_stuck = state.stuck
    state = replace(state, pressed_at=None, stuck=False)
    if was_stuck or held >= p.stuck_s:
        effects.append(JournalEvent("panel.button", f"panel: button released after {held:.0f} s stuck; "
                                    "nothing done", data={"held_s": round(held, 1)}))
        return replace(state, last_button="stuck")
    if held < p.debounce_s:
        return replace(state, last_button="bounce")
    if held >= p.hold_s:
        target = "auto" if state.override == "lte" else "lte"
        effects.append(JournalEvent(
            "panel.button", f"panel: button held {held:.1f} s: manual failover "
            f"{'to LTE' if target == 'lte' else 'off (back to automatic)'}",
            "warning" if target == "lte" else "info", {"held_s": round(held, 1), "target": target}))
        effects.append(RequestFailover(target))
        return replace(state, override="lte" if target == "lte" else None, chirp=f"chirp_{target}",
                       chirp_at=ev.at, last_button=f"failover_{target}")
    sev = severity(state)
    what = f"{sev} alert acknowledged" if RANK[sev] >= RANK["warning"] else "nothing to acknowledge"
    effects.append(JournalEvent("panel.button", f"panel: button pressed: {what}",
                                data={"held_s": round(held, 2), "severity": sev}))
    effects.append(Acknowledge())
    return replace(_ack(state), chirp="chirp", chirp_at=ev.at, last_button="ack")


# ----------------------------------------------------------------------------------------- outputs

@dataclass(frozen=True)
class LedOut:
    pattern: str  # a key of LED_PATTERNS
    color: str | None = None  # RGB LEDs only: one of COLORS


@dataclass(frozen=True)
class PanelOutput:
    leds: tuple[tuple[str, LedOut], ...]
    buzzer: str  # a key of BUZZER_PATTERNS
    buzzer_since: float  # the pattern's time zero
    severity: str
    causes: tuple[str, ...] = ()

    def led(self, name: str) -> LedOut:
        return dict(self.leds)[name]


def outputs(state: PanelState, now: float) -> PanelOutput:
    """The panel as it should look now (see hw/PANEL.md for the table)."""
    power_pattern = {None: "off", "online": "on", "on_battery": "slow_blink", "low_battery": "fast_blink",
                     "shutting_down": "fast_blink", "comm_lost": "wink"}.get(state.power, "wink")
    if offline(state):
        net = "fast_blink"
    else:
        net = {"primary": "on", "backup": "slow_blink"}.get(active_role(state) or "", "off")
    sev = severity(state)
    if armed(state, now):
        alert = LedOut("on", "blue")  # release now to toggle the manual failover
    else:
        if sev == "critical":
            color = "red"
        elif on_lte(state) or RANK[sev] >= RANK["high"]:
            color = "amber"
        else:
            color = "green"
        blink = power_pattern if power_pattern in ("slow_blink", "fast_blink") else "on"
        alert = LedOut(blink, color)
    if state.chirp is not None and not _done(state.chirp, now - state.chirp_at):
        buzzer, since = state.chirp, state.chirp_at
    else:
        buzzer, since = state.sounding, state.alert_since
    return PanelOutput((("power", LedOut(power_pattern)), ("network", LedOut(net)), ("alert", alert)),
                       buzzer, since, sev, tuple(c for _, c in conditions(state)))


def animated(out: PanelOutput) -> bool:
    """Whether the panel changes over time (the runtime renders it often) or is steady."""
    return out.buzzer != "off" or any(lo.pattern not in ("on", "off") for _, lo in out.leds)


def next_change(out: PanelOutput, now: float) -> float | None:
    """Seconds until some LED or the buzzer changes next (None: the panel is steady), so the runtime can
    sleep exactly that long instead of polling."""
    waits = [_led_wait(lo.pattern, now) for _, lo in out.leds] + [_buzz_wait(out.buzzer, now - out.buzzer_since)]
    found = [w for w in waits if w is not None]
    return min(found) if found else None


def _led_wait(pattern: str, t: float) -> float | None:
    on_s, off_s = LED_PATTERNS[pattern]
    if on_s <= 0 or off_s <= 0:
        return None
    phase = t % (on_s + off_s)
    return on_s - phase if phase < on_s else on_s + off_s - phase


def _buzz_wait(pattern: str, t: float) -> float | None:
    steps, repeat = BUZZER_PATTERNS[pattern]
    period = pattern_length(pattern)
    if not steps or period <= 0 or (not repeat and t >= period):
        return None
    if t < 0:
        return -t
    t = t % period if repeat else t
    edge = 0.0
    for on_s, off_s in steps:
        for d in (on_s, off_s):
            edge += d
            if edge > t:
                return edge - t
    return period - t


def led_value(pattern: str, t: float) -> float:
    """Brightness 0..1 of an LED pattern ``t`` seconds after its time zero."""
    on_s, off_s = LED_PATTERNS[pattern]
    if off_s <= 0:
        return 1.0
    if on_s <= 0:
        return 0.0
    return 1.0 if t % (on_s + off_s) < on_s else 0.0


def pattern_length(pattern: str) -> float:
    steps, _ = BUZZER_PATTERNS[pattern]
    return sum(a + b for a, b in steps)


def _done(pattern: str, t: float) -> bool:
    _, repeat = BUZZER_PATTERNS[pattern]
    return not repeat and t >= pattern_length(pattern)


def buzzer_on(pattern: str, t: float) -> bool:
    """Whether the buzzer sounds ``t`` seconds into a pattern."""
    steps, repeat = BUZZER_PATTERNS[pattern]
    period = pattern_length(pattern)
    if not steps or t < 0 or period <= 0 or (not repeat and t >= period):
        return False
    t %= period
    for on_s, off_s in steps:
        if t < on_s:
            return True
        t -= on_s + off_s
        if t < 0:
            return False
    return False


# ------------------------------------------------------------------------------------- quiet hours

_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_quiet_hours(spec: str) -> tuple[int, int]:
    """``"22:00-07:00"`` → (start, end) in minutes after midnight; ValueError if it is not HH:MM-HH:MM."""
    m = _HOURS.match(spec)
    if not m:
        raise ValueError(f"{spec!r} is not HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(x) for x in m.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
        raise ValueError(f"{spec!r} is not HH:MM-HH:MM")
    return h1 * 60 + m1, h2 * 60 + m2


def in_quiet_hours(span: tuple[int, int], minute_of_day: int) -> bool:
    """Whether a minute of the day lies in [start, end); a span may cross midnight; start == end is empty."""
    start, end = span
    if start == end:
        return False
    if start < end:
        return start <= minute_of_day < end
    return minute_of_day >= start or minute_of_day < end
