"""Shared types of the pure core: events, effects, and the journal-event effect every area uses."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

S = TypeVar("S")
E = TypeVar("E")


@dataclass(frozen=True)
class Event:
    """Base of every event fed to a core state machine."""


@dataclass(frozen=True)
class Effect:
    """Base of every effect a core state machine asks the runtime to carry out."""


@dataclass(frozen=True)
class Tick(Event):
    """Time passed; lets machines act on timers (hold times, debounce, stagger)."""


@dataclass(frozen=True)
class JournalEvent(Effect):
    """Record one transition in the journal (and log it once, as one plain line).

    ``kind`` is dotted, area first (``power.state``, ``uplink.switch``); ``message`` is the line a person
    reads (``wired: down (3/3 targets lost 1.0 s)``); ``data`` holds the facts as plain values.
    """

    kind: str
    message: str
    severity: str = "info"  # info | warning | critical
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Transition(Generic[S]):
    """A machine's answer: the next state and what to do about it."""

    state: S
    effects: tuple[Effect, ...] = ()


StepFn = Callable[[S, E, float], tuple[S, tuple[Effect, ...]]]
