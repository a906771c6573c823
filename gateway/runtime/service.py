"""What every capability plugs into the daemon: a Service with a shared Context.

A service owns one area (power, uplinks, modem, panel, continuity).  Its monitors turn driver readings
into core events, feed its pure state machine, and carry out the effects through its drivers.  Services
talk to each other only through the :class:`Bus` (typed facts, see ``gateway.core.signals``) and
through :meth:`Context.action` (admin actions, whoever owns them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.config import Config
from gateway.core.base import JournalEvent
from gateway.core.errors import ActionRejected
from gateway.store import Journal

log = logging.getLogger("gateway")
STOP_RECANCEL_S = 1.0  # a task still running this long after its cancel is cancelled again

ActionHandler = Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]]


class Bus:
    """In-process publish/subscribe of typed facts; handlers run in the loop, in order, synchronously."""

    def __init__(self) -> None:
        self._subs: list[tuple[type, Callable[[Any], None]]] = []

    def subscribe(self, kind: type, handler: Callable[[Any], None]) -> None:
        self._subs.append((kind, handler))

    def publish(self, fact: Any) -> None:
        for kind, handler in list(self._subs):
            if isinstance(fact, kind):
                try:
                    handler(fact)
                except Exception:  # one bad subscriber must not stop the others
                    log.exception("bus: handler %r failed on %r", handler, fact)


@dataclass
class Context:
    """Shared by all services of one daemon."""

    config: Config
    journal: Journal
    bus: Bus = field(default_factory=Bus)
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    actions: dict[str, ActionHandler] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    netns: str | None = None  # only for tests that drive a namespace from outside; the daemon runs inside

    def record(self, effect: JournalEvent, incident_id: int | None = None) -> dict[str, Any]:
        """Commit a transition to the journal (durably) and log it once, as one plain line."""
        level = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}.get(
            effect.severity, logging.INFO)
        row = self.journal.add_event(effect.kind, effect.message, effect.severity, dict(effect.data),
                                     incident_id=incident_id)
        log.log(level, "%s", effect.message)
        return row

    def register_action(self, name: str, handler: ActionHandler) -> None:
        self.actions[name] = handler

    async def action(self, name: str, params: dict[str, Any], who: str) -> dict[str, Any]:
        """Run an admin action; every action is journaled with who asked for it."""
        handler = self.actions.get(name)
        if handler is None:
            raise ActionRejected("unknown_action", f"no such action: {name}")
        result = await handler(params, who)
        self.record(JournalEvent("action." + name, f"{who}: {name} {_fmt(params)}".strip(),
                                 data={"who": who, "params": params, "result": result}))
        return result


def _fmt(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


class Service:
    """Base class of a capability inside the daemon."""

    name = "service"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        """Start monitors (use :meth:`spawn`); return quickly."""

    async def stop(self) -> None:
        """Cancel this service's tasks and wait until they end.  A task that swallowed its cancel (a library
        that catches it, or 3.11's ``wait_for`` racing a completion) is cancelled again each second rather
        than waited for forever: a stop that hangs would hang the daemon's shutdown with it."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            while not t.done():
                await asyncio.wait({t}, timeout=STOP_RECANCEL_S)
                if not t.done():
                    log.error("%s: task %s did not end when cancelled; cancelling it again", self.name, t.get_name())
                    t.cancel()
            if not t.cancelled():
                t.exception()  # retrieved (logged already by _task_done), so asyncio does not warn again
        self._tasks.clear()

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        # The task runs ``coro`` itself, not a wrapper coroutine awaiting it: a task cancelled before its
        # first step (a stop right after start) then closes ``coro``; a wrapper would be closed instead and
        # leave ``coro`` never awaited ("coroutine ... was never awaited").  Crashes are logged on completion.
        task = asyncio.ensure_future(coro)
        task.set_name(f"{self.name}.{name}")
        task.add_done_callback(lambda t: self._task_done(t, name))
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(task)
        return task

    def _task_done(self, task: asyncio.Task[Any], name: str) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("%s: task %s crashed", self.name, name, exc_info=exc)

    def snapshot(self) -> dict[str, Any]:
        """This service's keys of /api/v1/status (merged at top level)."""
        return {}

    def metrics(self) -> list[tuple[str, str, dict[str, str], float]]:
        """Prometheus samples: (name, help, labels, value)."""
        return []

    def reload(self, config: Config) -> None:
        """A new, valid config was loaded (SIGHUP)."""
        self.ctx.config = config


async def every(interval_s: float | Callable[[], float], fn: Callable[[], Awaitable[None]]) -> None:
    """Run ``fn`` forever, about every ``interval_s``; an exception is logged once per kind, then retried."""
    last_error: str | None = None
    while True:
        started = time.monotonic()
        try:
            await fn()
            last_error = None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            msg = f"{type(exc).__name__}: {exc}"
            if msg != last_error:
                log.warning("periodic %s failed: %s", getattr(fn, "__qualname__", fn), msg)
                last_error = msg
        period = interval_s() if callable(interval_s) else interval_s
        await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))
