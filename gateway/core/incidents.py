"""Incidents, as pure decisions: when one opens, what it gathers, how severe it is, when it closes.

The runtime feeds the facts other areas publish (``gateway.core.signals``), one :class:`Observed` per
journal row, drill events, runbook ticks and :class:`~gateway.core.base.Tick`; the machine answers with
:class:`Opened` / :class:`Updated` / :class:`Closed` (write the incidents row), :class:`Link` (attach
journal rows to the incident) and :class:`~gateway.core.base.JournalEvent`.

Rules:

- A *condition* is one failure in force, keyed by what failed and how (``power:on_battery``,
  ``uplink:wired:down``, ``service:CRM``, ``ups:comm_lost``, ``offline``).  The first condition opens an
  incident; every condition that appears while it is open adds a cause to the same incident (overlapping
  failures are one incident with several causes).  At most one incident is open at a time.
- Severity by business impact, the highest reached: ``critical`` when a business app is unreachable, no
  uplink works or the office is shutting down; ``high`` on battery, on the backup line (primary down) or
  when the line carrying the traffic is down (e.g. LTE held by a manual override); ``low`` for a degraded
  probe, a lost idle backup line, a failed modem or lost UPS contact.  A backup shown ``standby`` (LTE not
  dialled yet, or not wanted in cold standby) is no failure.
- The incident closes once no condition has been in force for ``close_hold_s``; a condition that comes
  back within the hold keeps the incident open and counts as a flap.
- While an incident is open, every journal row observed belongs to it; on opening, the rows of the last
  ``lookback_s`` (the transitions that led to it) are gathered too.  Each row is linked exactly once.
- The first-10-minutes runbook is ticked automatically where the box knows (time and type recorded, UPS
  powering the network, loads shed, backup line active, business apps reachable) and by hand otherwise.
- A drill is an incident of kind ``drill``, opened and closed by the runtime; failures it causes on
  purpose (the primary line, business apps while switching) stay in it, any other failure ends it early
  (:class:`AbortDrill`) and opens a real incident.

``now`` is wall-clock seconds (the incident's times are shown and stored as such); the hold time is short
against clock steps, and the runtime feeds :class:`~gateway.core.base.Tick` about once a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.core.base import Effect, Event, JournalEvent, Tick
from gateway.core.signals import (
    ActiveUplinkChanged,
    AlertAcknowledged,
    ModemStatus,
    PowerStatus,
    ServiceReachability,
    UplinkStatus,
)

SEVERITIES = ("low", "high", "critical")
RANK = {s: i for i, s in enumerate(SEVERITIES)}


def worse(a: str, b: str) -> str:
    return a if RANK.get(a, 0) >= RANK.get(b, 0) else b


# ------------------------------------------------------------------------------------------ policy

@dataclass(frozen=True)
class Policy:
    close_hold_s: float = 180.0
    lookback_s: float = 15.0
    services: tuple[str, ...] = ()  # the business apps watched (names), for the runbook
    uplinks: tuple[str, ...] = ()  # every configured uplink: "offline" needs all of them down


# ------------------------------------------------------------------------------------------ events

@dataclass(frozen=True)
class Observed(Event):
    """A journal row was written (by any area)."""

    event_id: int
    ts: float
    kind: str


@dataclass(frozen=True)
class DrillStarted(Event):
    drill_id: int
    kind: str  # power | wan
    detail: str = ""


@dataclass(frozen=True)
class DrillMark(Event):
    """A measured moment of a drill (``failover``, ``apps_reachable``, ...), at ``now``."""

    mark: str
    value: float | None = None  # a figure that goes with it (e.g. seconds), if any


@dataclass(frozen=True)
class DrillEnded(Event):
    passed: bool
    summary: str = ""


@dataclass(frozen=True)
class RunbookTick(Event):
    item: str
    done: bool
    who: str


# ----------------------------------------------------------------------------------------- effects

@dataclass(frozen=True)
class Opened(Effect):
    incident: Incident


@dataclass(frozen=True)
class Updated(Effect):
    incident: Incident
    significant: bool = True  # causes, severity, runbook or ack changed (else only figures)


@dataclass(frozen=True)
class Closed(Effect):
    incident: Incident


@dataclass(frozen=True)
class Link(Effect):
    incident_id: int
    event_ids: tuple[int, ...]


@dataclass(frozen=True)
class AbortDrill(Effect):
    reason: str


# ------------------------------------------------------------------------------------------- state

@dataclass(frozen=True)
class Condition:
    key: str
    cause: str  # what a person reads: "wired: down"
    severity: str
    since: float


@dataclass(frozen=True)
class RunbookItem:
    item: str
    text: str
    auto: bool
    done: bool = False
    done_at: float | None = None
    by: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"item": self.item, "text": self.text, "auto": self.auto, "done": self.done,
                "done_at": self.done_at, "by": self.by}


RUNBOOK_BASE = (
    ("recorded", "Time and type of the failure recorded", True),
    ("owner", "Incident owner named (acknowledge the alert)", False),
    ("staff", "Staff told what works and what does not", False),
)
RUNBOOK_POWER = (("ups", "UPS is powering the network", True),
                 ("shed", "Nonessential loads shed", True))
RUNBOOK_LINE = (("backup", "Backup line active", True),)
RUNBOOK_OFFLINE = ("offline", "Offline procedure started (offline kit, temporary order numbers)", False)


@dataclass(frozen=True)
class Incident:
    id: int
    kind: str  # outage | drill
    opened_at: float
    severity: str
    causes: tuple[str, ...] = ()
    runbook: tuple[RunbookItem, ...] = ()
    acked_at: float | None = None
    acked_by: str = ""
    closed_at: float | None = None
    clear_since: float | None = None  # all normal since (the hold timer)
    flaps: int = 0
    # per condition key: its cause text and the spans it was in force [(start, end | None), ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    spans: Mapping[str, tuple[tuple[float, float | None], ...]] = field(default_factory=dict)
    marks: Mapping[str, float] = field(default_factory=dict)  # first time of milestones
    figures: Mapping[str, float] = field(default_factory=dict)  # extremes: shed_watts, runtime_min_s, ...
    drill_id: int | None = None
    drill_kind: str | None = None
    drill_passed: bool | None = None

    @property
    def title(self) -> str:
        if self.kind == "drill":
            return f"{self.drill_kind or ''} drill".strip()
        return ", ".join(self.causes) or "outage"

    def item(self, key: str) -> RunbookItem | None:
        return next((i for i in self.runbook if i.item == key), None)

    def to_row(self) -> dict[str, Any]:
        """The incidents table row (JSON-able values; the journal serialises lists and dicts)."""
        return {
            "id": self.id, "kind": self.kind, "opened_at": self.opened_at, "closed_at": self.closed_at,
            "severity": self.severity, "causes": list(self.causes), "title": self.title,
            "acked_at": self.acked_at, "acked_by": self.acked_by or None,
            "checklist": [i.as_dict() for i in self.runbook],
            "data": {"clear_since": self.clear_since, "flaps": self.flaps, "labels": dict(self.labels),
                     "spans": {k: [list(s) for s in v] for k, v in self.spans.items()},
                     "marks": dict(self.marks), "figures": dict(self.figures), "drill_id": self.drill_id,
                     "drill_kind": self.drill_kind, "drill_passed": self.drill_passed},
        }


def incident_from_row(row: Mapping[str, Any]) -> Incident:
    """Rebuild an incident from its journal row (crash safety: the daemon reopens what was open)."""
    data = row.get("data") or {}
    if not isinstance(data, dict):
        data = {}
    items = []
    for d in row.get("checklist") or []:
        if isinstance(d, dict) and "item" in d:
            items.append(RunbookItem(str(d["item"]), str(d.get("text", d["item"])), bool(d.get("auto")),
                                     bool(d.get("done")), d.get("done_at"), str(d.get("by") or "")))
    spans = {str(k): tuple((float(s[0]), None if s[1] is None else float(s[1])) for s in v)
             for k, v in (data.get("spans") or {}).items()}
    return Incident(
        id=int(row["id"]), kind=str(row.get("kind") or "outage"), opened_at=float(row["opened_at"]),
        severity=str(row.get("severity") or "low"), causes=tuple(row.get("causes") or ()), runbook=tuple(items),
        acked_at=row.get("acked_at"), acked_by=str(row.get("acked_by") or ""), closed_at=row.get("closed_at"),
        clear_since=data.get("clear_since"), flaps=int(data.get("flaps") or 0),
        labels={str(k): str(v) for k, v in (data.get("labels") or {}).items()}, spans=spans,
        marks={str(k): float(v) for k, v in (data.get("marks") or {}).items()},
        figures={str(k): float(v) for k, v in (data.get("figures") or {}).items()},
        drill_id=data.get("drill_id"), drill_kind=data.get("drill_kind"), drill_passed=data.get("drill_passed"))


@dataclass(frozen=True)
class State:
    policy: Policy = field(default_factory=Policy)
    next_id: int = 1
    incident: Incident | None = None
    conditions: Mapping[str, Condition] = field(default_factory=dict)
    recent: tuple[tuple[int, float], ...] = ()  # unlinked journal rows of the last lookback_s
    uplinks: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # name -> (role, state)
    backup_active: bool = False
    services: Mapping[str, bool] = field(default_factory=dict)  # last known reachability
    power_state: str = "online"
    shed_tiers: tuple[int, ...] = ()


def initial(policy: Policy, next_id: int = 1, open_incident: Incident | None = None, now: float = 0.0) -> State:
    """A fresh machine; ``open_incident`` is one the journal still holds open (after a crash or restart):
    it is kept, and closes after the hold time unless its failures are reported again."""
    inc = open_incident
    if inc is not None and inc.clear_since is None:
        inc = replace(inc, clear_since=now)
    return State(policy=policy, next_id=max(next_id, (inc.id + 1) if inc else 1), incident=inc)


# --------------------------------------------------------------------------------------- conditions

def _set_cond(conds: dict[str, Condition], prefix: str, key: str | None, cause: str, severity: str,
              now: float) -> None:
    """Make ``key`` the one condition in force under ``prefix`` (or none when key is None)."""
    for k in [k for k in conds if k == prefix or k.startswith(prefix + ":")]:
        if k != key:
            del conds[k]
    if key is not None and key not in conds:
        conds[key] = Condition(key, cause, severity, now)
    elif key is not None and RANK.get(severity, 0) > RANK.get(conds[key].severity, 0):
        conds[key] = replace(conds[key], severity=severity)  # the same failure, now hurting more


def _conditions(state: State, event: Event, now: float) -> State:
    conds = dict(state.conditions)
    if isinstance(event, PowerStatus):
        st = event.state
        if st == "comm_lost":
            _set_cond(conds, "ups", "ups:comm_lost", "ups: contact lost", "low", now)
            # nothing is known about mains while contact is lost: keep the power condition as it was
        else:
            _set_cond(conds, "ups", None, "", "low", now)
            if st == "online":
                _set_cond(conds, "power", None, "", "low", now)
            else:
                sev = "critical" if st == "shutting_down" else "high"
                text = {"on_battery": "on battery", "low_battery": "battery low",
                        "shutting_down": "shutting down"}.get(st, st)
                _set_cond(conds, "power", f"power:{st}", f"power: {text}", sev, now)
        return replace(state, conditions=conds, power_state=st,
                       shed_tiers=tuple(event.shed_tiers) if st != "comm_lost" else state.shed_tiers)
    if isinstance(event, UplinkStatus):
        uplinks = dict(state.uplinks)
        uplinks[event.name] = (event.role, event.state)
        prefix = f"uplink:{event.name}"
        if event.state == "down":
            # the line that carries the office's traffic being down is an outage, whichever line it is
            sev = "high" if event.role == "primary" or event.active else "low"
            _set_cond(conds, prefix, f"{prefix}:down", f"{event.name}: down", sev, now)
        elif event.state == "degraded":
            _set_cond(conds, prefix, f"{prefix}:degraded", f"{event.name}: degraded", "low", now)
        else:
            _set_cond(conds, prefix, None, "", "low", now)
        names = state.policy.uplinks or tuple(uplinks)
        if names and all(uplinks.get(n, ("", ""))[1] == "down" for n in names):
            _set_cond(conds, "offline", "offline", "no uplink works", "critical", now)
        else:
            _set_cond(conds, "offline", None, "", "low", now)
        backup_active = state.backup_active
        if event.active:
            backup_active = event.role == "backup"
        elif event.role == "backup" and backup_active:
            backup_active = False
        return replace(state, conditions=conds, uplinks=uplinks, backup_active=backup_active)
    if isinstance(event, ActiveUplinkChanged):
        roles = {n: r for n, (r, _) in state.uplinks.items()}
        active = event.name is not None and (roles.get(event.name) == "backup" or
                                             (event.name not in roles and event.override == "lte"))
        return replace(state, backup_active=active)
    if isinstance(event, ServiceReachability):
        services = dict(state.services)
        services[event.name] = event.reachable
        key = f"service:{event.name}"
        if event.reachable:
            _set_cond(conds, key, None, "", "low", now)
        else:
            _set_cond(conds, key, key, f"{event.name}: unreachable", "critical", now)
        return replace(state, conditions=conds, services=services)
    if isinstance(event, ModemStatus):
        if event.state == "failed":
            _set_cond(conds, "modem", "modem:failed", "lte modem: failed", "low", now)
        else:
            _set_cond(conds, "modem", None, "", "low", now)
        return replace(state, conditions=conds)
    return state


# -------------------------------------------------------------------------------------- incident

def _runbook_for(inc: Incident, state: State) -> tuple[RunbookItem, ...]:
    """The items that apply given the causes so far (items are only ever added, in a stable order)."""
    have = {i.item: i for i in inc.runbook}
    want: list[tuple[str, str, bool]] = list(RUNBOOK_BASE)
    keys = set(inc.labels)
    if any(k.startswith("power:") for k in keys):
        want += RUNBOOK_POWER
    primaries = {n for n, (r, _) in state.uplinks.items() if r == "primary"}
    if any(k.startswith("uplink:") and k.split(":")[1] in primaries and k.endswith(":down") for k in keys) \
            or "offline" in keys:
        want += RUNBOOK_LINE
    if state.policy.services:
        want.append(("apps", f"{'/'.join(state.policy.services)} reachable", True))
        want.append(RUNBOOK_OFFLINE)
    if inc.kind == "drill":
        want = [w for w in want if w[0] in ("recorded", "apps", "backup", "ups")]
        if inc.drill_kind == "wan" and "backup" not in [w[0] for w in want]:
            want.insert(1, RUNBOOK_LINE[0])
    out = [have.get(k) or RunbookItem(k, text, auto) for k, text, auto in want]
    out += [i for i in inc.runbook if i.item not in {w[0] for w in want}]
    return tuple(out)


def _tick_item(items: tuple[RunbookItem, ...], key: str, done: bool, now: float, by: str = "") -> tuple[
        RunbookItem, ...]:
    return tuple(replace(i, done=done, done_at=now if done else None, by=by) if i.item == key and i.done != done
                 else i for i in items)


def _auto_runbook(inc: Incident, state: State, now: float) -> Incident:
    items = _runbook_for(inc, state)
    if not any(i.item == "recorded" and i.done for i in items):
        items = _tick_item(items, "recorded", True, inc.opened_at, "gateway")
    if state.power_state in ("on_battery", "low_battery"):
        items = _tick_item(items, "ups", True, now, "gateway")
    if state.shed_tiers:
        items = _tick_item(items, "shed", True, now, "gateway")
    if state.backup_active:
        items = _tick_item(items, "backup", True, now, "gateway")
    if state.policy.services:
        known = [state.services.get(s) for s in state.policy.services]
        all_ok = all(k is True for k in known)
        items = _tick_item(items, "apps", all_ok, now, "gateway" if all_ok else "")
    return replace(inc, runbook=items)


def _track(inc: Incident, state: State, now: float) -> Incident:
    """Spans, labels, severity, causes and milestones from the conditions now in force."""
    labels = dict(inc.labels)
    spans = {k: tuple(v) for k, v in inc.spans.items()}
    causes = list(inc.causes)
    severity = inc.severity
    flaps = inc.flaps
    for key, cond in state.conditions.items():
        if key not in labels:
            labels[key] = cond.cause
        if cond.cause not in causes:
            causes.append(cond.cause)
        cur = spans.get(key, ())
        if not cur or cur[-1][1] is not None:
            if cur:
                flaps += 1
            spans[key] = cur + ((now, None),)
        if inc.kind != "drill":
            severity = worse(severity, cond.severity)
    for key, cur in spans.items():
        if key not in state.conditions and cur and cur[-1][1] is None:
            spans[key] = cur[:-1] + ((cur[-1][0], now),)
    marks = dict(inc.marks)
    if state.backup_active and "backup_active" not in marks:
        marks["backup_active"] = now
    if state.shed_tiers and "loads_shed" not in marks:
        marks["loads_shed"] = now
    svc_keys = [k for k in spans if k.startswith("service:")]
    if svc_keys and not any(k in state.conditions for k in svc_keys):
        marks["apps_reachable"] = max(s[-1][1] or now for k in svc_keys for s in (spans[k],))
    elif any(k in state.conditions for k in svc_keys):
        marks.pop("apps_reachable", None)
    clear_since = inc.clear_since
    if state.conditions:
        clear_since = None
    elif clear_since is None:
        clear_since = now
    return replace(inc, labels=labels, spans=spans, causes=tuple(causes), severity=severity, flaps=flaps,
                   marks=marks, clear_since=clear_since)


def _figures(inc: Incident, event: Event) -> Incident:
    if not isinstance(event, PowerStatus) or event.state in ("online", "comm_lost"):
        return inc
    fig = dict(inc.figures)

    def keep(name: str, value: float | None, fn: Any) -> None:
        if value is not None:
            fig[name] = float(fn(fig[name], value)) if name in fig else float(value)

    keep("shed_watts_max", event.shed_watts or None, max)
    keep("minutes_gained_max", event.minutes_gained, max)
    keep("runtime_min_s", event.runtime_s, min)
    keep("charge_min_pct", event.charge_pct, min)
    keep("load_max_pct", event.load_pct, max)
    if event.shed_tiers:
        keep("shed_tiers_max", float(max(event.shed_tiers)), max)
    return replace(inc, figures=fig)


def _open(state: State, now: float, kind: str = "outage", drill: DrillStarted | None = None) -> tuple[
        State, list[Effect]]:
    inc = Incident(id=state.next_id, kind=kind, opened_at=now,
                   severity="low", drill_id=drill.drill_id if drill else None,
                   drill_kind=drill.kind if drill else None)
    inc = _auto_runbook(_track(inc, state, now), state, now)
    lookback = tuple(i for i, ts in state.recent if ts >= now - state.policy.lookback_s)
    what = inc.title if kind == "outage" else f"{inc.title} started" + (f" ({drill.detail})" if drill and
                                                                         drill.detail else "")
    effects: list[Effect] = [
        Opened(inc),
        JournalEvent("incident.open", f"incident #{inc.id} opened: {what} ({inc.severity})",
                     "critical" if inc.severity == "critical" else "warning" if kind == "outage" else "info",
                     {"incident_id": inc.id, "kind": kind, "severity": inc.severity, "causes": list(inc.causes)})]
    if lookback:
        effects.append(Link(inc.id, lookback))
    return replace(state, incident=inc, next_id=state.next_id + 1, recent=()), effects


def _close(state: State, now: float, why: str) -> tuple[State, list[Effect]]:
    inc = state.incident
    assert inc is not None
    spans = {k: (v[:-1] + ((v[-1][0], now),) if v and v[-1][1] is None else v) for k, v in inc.spans.items()}
    inc = replace(inc, closed_at=now, spans=spans)
    lasted = now - inc.opened_at
    effects: list[Effect] = [
        Closed(inc),
        JournalEvent("incident.close", f"incident #{inc.id} closed after {_dur(lasted)}: {why}", "info",
                     {"incident_id": inc.id, "duration_s": round(lasted, 3), "causes": list(inc.causes),
                      "severity": inc.severity})]
    return replace(state, incident=None), effects


def _dur(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {sec:02d} s" if m else f"{sec} s"


def _drill_tolerates(key: str, state: State) -> bool:
    """Failures a drill causes on purpose: the primary line (cut by policy) and business apps while switching."""
    if key.startswith("service:"):
        return True
    inc = state.incident
    if key.startswith("uplink:"):
        role = state.uplinks.get(key.split(":")[1], ("", ""))[0]
        return role == "primary" and inc is not None and inc.drill_kind == "wan"
    if key.startswith("power:") and inc is not None and inc.drill_kind == "power":
        return key in ("power:on_battery",)
    return False


def _shape(inc: Incident) -> tuple[Any, ...]:
    """What makes a change worth writing at once (figures alone are written with the next such change)."""
    return (inc.causes, inc.severity, inc.runbook, inc.acked_at, inc.flaps, inc.clear_since is None,
            tuple((k, len(v), v[-1][1] is None) for k, v in inc.spans.items()), tuple(inc.marks))


# ------------------------------------------------------------------------------------------- step

def step(state: State, event: Event, now: float) -> tuple[State, tuple[Effect, ...]]:
    effects: list[Effect] = []
    if isinstance(event, Observed):
        if state.incident is not None:
            return state, (Link(state.incident.id, (event.event_id,)),)
        recent = tuple(r for r in state.recent if r[1] >= now - state.policy.lookback_s)
        return replace(state, recent=recent + ((event.event_id, event.ts),)), ()

    if isinstance(event, AlertAcknowledged):
        inc = state.incident
        if inc is None or (event.incident_id is not None and event.incident_id != inc.id) or inc.acked_at:
            return state, ()
        items = _tick_item(inc.runbook, "owner", True, now, event.who)
        inc = replace(inc, acked_at=now, acked_by=event.who, runbook=items)
        effects.append(Updated(inc))
        effects.append(JournalEvent("incident.ack", f"incident #{inc.id} acknowledged by {event.who} after "
                                    f"{_dur(now - inc.opened_at)}", data={"incident_id": inc.id, "who": event.who,
                                                                          "source": event.source}))
        return replace(state, incident=inc), tuple(effects)

    if isinstance(event, RunbookTick):
        inc = state.incident
        if inc is None or inc.item(event.item) is None:
            return state, ()
        inc = replace(inc, runbook=_tick_item(inc.runbook, event.item, event.done, now, event.who))
        return replace(state, incident=inc), (Updated(inc),)

    if isinstance(event, DrillStarted):
        if state.incident is not None:
            return state, ()  # the runtime refuses a drill while an incident is open
        state, eff = _open(state, now, "drill", event)
        return state, tuple(eff)

    if isinstance(event, DrillMark):
        inc = state.incident
        if inc is None or inc.kind != "drill":
            return state, ()
        marks = dict(inc.marks)
        marks.setdefault("drill_" + event.mark, now)
        figures = dict(inc.figures)
        if event.value is not None:
            figures["drill_" + event.mark] = float(event.value)
        inc = replace(inc, marks=marks, figures=figures)
        return replace(state, incident=inc), (Updated(inc),)

    if isinstance(event, DrillEnded):
        inc = state.incident
        if inc is None or inc.kind != "drill":
            return state, ()
        state = replace(state, incident=replace(inc, drill_passed=event.passed))
        state, eff = _close(state, now, ("passed" if event.passed else "failed") +
                            (f" ({event.summary})" if event.summary else ""))
        effects += eff
        if state.conditions:  # failures still in force after the drill are a real incident
            state, eff = _open(state, now)
            effects += eff
        return state, tuple(effects)

    before = state.incident
    state = _conditions(state, event, now)
    inc = state.incident

    if inc is not None and inc.kind == "drill":
        real = [k for k in state.conditions if not _drill_tolerates(k, state)]
        if real:
            reason = ", ".join(state.conditions[k].cause for k in real)
            state = replace(state, incident=replace(inc, drill_passed=False))
            state, eff = _close(state, now, f"ended early: {reason}")
            effects += [AbortDrill(reason)] + eff
            state, eff = _open(state, now)
            return state, tuple(effects + eff)

    if inc is None:
        if state.conditions:
            state, eff = _open(state, now)
            return state, tuple(eff)
        return state, ()

    inc = _figures(_track(inc, state, now), event)
    inc = _auto_runbook(inc, state, now)
    if inc.kind != "drill" and inc.clear_since is not None and now - inc.clear_since >= state.policy.close_hold_s:
        state, eff = _close(replace(state, incident=inc), now,
                            f"all normal for {_dur(now - inc.clear_since)}")
        return state, tuple(eff)
    state = replace(state, incident=inc)
    if inc != before:
        assert before is not None
        significant = _shape(inc) != _shape(before)
        effects.append(Updated(inc, significant))
        if inc.severity != before.severity:
            effects.append(JournalEvent("incident.severity", f"incident #{inc.id}: severity {before.severity} → "
                                        f"{inc.severity}", "critical" if inc.severity == "critical" else "warning",
                                        {"incident_id": inc.id, "from": before.severity, "to": inc.severity}))
        new = [c for c in inc.causes if c not in before.causes]
        if new:
            effects.append(JournalEvent("incident.cause", f"incident #{inc.id}: also {', '.join(new)}", "warning",
                                        {"incident_id": inc.id, "causes": new}))
    return state, tuple(effects)


def tick(state: State, now: float) -> tuple[State, tuple[Effect, ...]]:
    return step(state, Tick(), now)


def open_incident(state: State) -> Incident | None:
    return state.incident


__all__ = ["Policy", "State", "Incident", "RunbookItem", "Condition", "Observed", "DrillStarted", "DrillMark",
           "DrillEnded", "RunbookTick", "Opened", "Updated", "Closed", "Link", "AbortDrill", "step", "tick",
           "initial", "incident_from_row", "worse", "SEVERITIES"]
