"""Shared test helpers: conditions with deadlines (never fixed sleeps), root detection."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


class Clock:
    """A monotonic clock the test moves by hand (``clock.t += 5``), for services and caches that take one."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def wait_until(pred: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = "") -> T:
    """Poll ``pred`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T = pred()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what or pred}")
        time.sleep(interval)  # a poll interval, not a wait for an outcome
        last = pred()
    return last


async def until(pred: Callable[[], T | Awaitable[T]], timeout: float = 10.0, what: str = "",
                interval: float = 0.02) -> T:
    """Await a condition with a deadline (the event loop keeps running the service meanwhile); ``pred`` may
    be a coroutine function (a driver read, say)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if inspect.isawaitable(v):
            v = await v
        if v:
            return v  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what or pred}")
        await asyncio.sleep(interval)  # a poll interval, not a wait for an outcome


@pytest.fixture(name="until")
def until_fixture() -> Callable[..., object]:
    return wait_until


IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (network namespaces, real peers)")
