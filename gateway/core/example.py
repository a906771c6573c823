"""A worked example of the core pattern: a debounced boolean with hysteresis.

It is small on purpose and is used for real (probes of business apps, comm-lost debounce):
a signal must hold its new value for ``hold_s`` before the state flips, and the flip is reported
once, as one :class:`JournalEvent`.  Every core area follows the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gateway.core.base import Effect, Event, JournalEvent


@dataclass(frozen=True)
class Debounced:
    name: str
    value: bool
    hold_s: float = 2.0
    pending_since: float | None = None  # when a reading first disagreed with ``value``
    changed_at: float = 0.0


@dataclass(frozen=True)
class Reading(Event):
    value: bool


@dataclass(frozen=True)
class Flipped(Effect):
    name: str
    value: bool


def step(state: Debounced, event: Event, now: float) -> tuple[Debounced, tuple[Effect, ...]]:
    """Feed one event; return the next state and the effects of any transition."""
    if not isinstance(event, Reading):
        return _check_timer(state, now)
    if event.value == state.value:
        return (replace(state, pending_since=None) if state.pending_since is not None else state), ()
    if state.pending_since is None:
        state = replace(state, pending_since=now)
    return _check_timer(state, now)


def _check_timer(state: Debounced, now: float) -> tuple[Debounced, tuple[Effect, ...]]:
    if state.pending_since is None or now - state.pending_since < state.hold_s:
        return state, ()
    new = replace(state, value=not state.value, pending_since=None, changed_at=now)
    word = "up" if new.value else "down"
    held = now - state.pending_since
    return new, (
        Flipped(state.name, new.value),
        JournalEvent(f"{state.name}.state", f"{state.name}: {word} (held {held:.1f} s)", data={"value": new.value}),
    )
