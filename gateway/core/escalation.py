"""Who hears about an incident, when, and until someone takes it.

Per incident: level 0 (the duty person) at once; each further level after its ``after_min`` if the
incident is still unacknowledged and critical; a level with office hours waits until they begin.
High-severity incidents reach level 0 only; low ones are journaled, not sent. An acknowledgement stops
the chain. Recovery messages go to everyone who was told, with how long it lasted, after a coalescing
delay so a flapping line yields one "back again" note instead of a storm.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field, replace

from gateway.core.base import Effect, Event

SEVERITY_RANK = {"low": 0, "high": 1, "critical": 2}


@dataclass(frozen=True)
class Level:
    name: str
    targets: tuple[str, ...]
    after_s: float
    hours: tuple[int, int] | None = None  # minutes of the day [start, end); may wrap midnight


def in_hours(hours: tuple[int, int] | None, minute_of_day: int) -> bool:
    if hours is None:
        return True
    start, end = hours
    return start <= minute_of_day < end if start < end else minute_of_day >= start or minute_of_day < end


def parse_hours(text: str | None) -> tuple[int, int] | None:
    """"08:00-18:00" -> (480, 1080); None -> always."""
    if not text:
        return None
    a, _, b = text.partition("-")
    h1, m1 = a.strip().split(":")
    h2, m2 = b.strip().split(":")
    return int(h1) * 60 + int(m1), int(h2) * 60 + int(m2)


@dataclass(frozen=True)
class Chain:
    incident_id: int
    opened_at: float  # monotonic
    severity: str
    title: str
    acked: bool = False
    closed_at: float | None = None
    told: tuple[str, ...] = ()  # level names already sent
    told_targets: tuple[str, ...] = ()
    recovery_sent: bool = False


@dataclass(frozen=True)
class State:
    levels: tuple[Level, ...]
    coalesce_s: float = 120.0
    chains: dict[int, Chain] = field(default_factory=dict)


# events
@dataclass(frozen=True)
class Opened(Event):
    incident_id: int
    severity: str
    title: str


@dataclass(frozen=True)
class SeverityChanged(Event):
    incident_id: int
    severity: str
    title: str


@dataclass(frozen=True)
class Acked(Event):
    incident_id: int
    who: str


@dataclass(frozen=True)
class Closed(Event):
    incident_id: int


@dataclass(frozen=True)
class Clock(Event):
    minute_of_day: int  # local time, for office hours


# effects
@dataclass(frozen=True)
class Send(Effect):
    incident_id: int
    stage: str  # "level:<name>" | "update" | "recovery" | "flapping"
    targets: tuple[str, ...]
    severity: str
    title: str


def _sendable(chain: Chain, level_index: int) -> bool:
    if chain.acked or chain.closed_at is not None:
        return False
    rank = SEVERITY_RANK.get(chain.severity, 0)
    if rank == 0:
        return False
    return level_index == 0 or rank >= 2


def step(state: State, event: Event, now: float) -> tuple[State, tuple[Effect, ...]]:
    chains = dict(state.chains)
    effects: list[Effect] = []
    if isinstance(event, Opened):
        new = Chain(event.incident_id, now, event.severity, event.title)
        # a new incident right after one closed (within coalesce_s) is a flap: one "back again" note to
        # those already told replaces both the recovery and the new alert's first level
        for cid, ch in list(chains.items()):
            if ch.closed_at is not None and not ch.recovery_sent and now - ch.closed_at < state.coalesce_s:
                chains[cid] = replace(ch, recovery_sent=True)
                if ch.told_targets:
                    effects.append(Send(event.incident_id, "flapping", ch.told_targets, event.severity, event.title))
                    new = replace(new, told=ch.told, told_targets=ch.told_targets)
        chains[event.incident_id] = new
    elif isinstance(event, SeverityChanged) and event.incident_id in chains:
        ch = chains[event.incident_id]
        if SEVERITY_RANK.get(event.severity, 0) > SEVERITY_RANK.get(ch.severity, 0):
            ch = replace(ch, severity=event.severity, title=event.title)
            chains[event.incident_id] = ch
            if ch.told_targets and not ch.acked:
                effects.append(Send(ch.incident_id, "update", ch.told_targets, ch.severity, ch.title))
    elif isinstance(event, Acked) and event.incident_id in chains:
        chains[event.incident_id] = replace(chains[event.incident_id], acked=True)
    elif isinstance(event, Closed) and event.incident_id in chains:
        chains[event.incident_id] = replace(chains[event.incident_id], closed_at=now)
    minute = event.minute_of_day if isinstance(event, Clock) else None
    for cid, ch in list(chains.items()):
        for i, lvl in enumerate(state.levels):
            if lvl.name in ch.told or not _sendable(ch, i):
                continue
            if now - ch.opened_at < lvl.after_s:
                break  # later levels come after this one
            if minute is not None and not in_hours(lvl.hours, minute) or minute is None and lvl.hours:
                continue
            ch = replace(ch, told=ch.told + (lvl.name,),
                         told_targets=tuple(dict.fromkeys(ch.told_targets + lvl.targets)))
            effects.append(Send(cid, f"level:{lvl.name}", lvl.targets, ch.severity, ch.title))
        if ch.closed_at is not None and not ch.recovery_sent and now - ch.closed_at >= state.coalesce_s:
            ch = replace(ch, recovery_sent=True)
            if ch.told_targets:
                effects.append(Send(cid, "recovery", ch.told_targets, ch.severity, ch.title))
        chains[cid] = ch
        if ch.recovery_sent and ch.closed_at is not None:
            del chains[cid]
    return replace(state, chains=chains), tuple(effects)


def ack_signature(secret: str, incident_id: int) -> str:
    """The signature of a message's acknowledge link; the web app checks it with the same secret."""
    return hmac.new(secret.encode(), f"ack:{incident_id}".encode(), hashlib.sha256).hexdigest()[:24]
