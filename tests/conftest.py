"""Shared test helpers: conditions with deadlines (never fixed sleeps), root detection."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


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


async def until(pred: Callable[[], T], timeout: float = 10.0, what: str = "") -> T:
    """Await a condition with a deadline (the event loop keeps running the service meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what or pred}")
        await asyncio.sleep(0.02)  # a poll interval, not a wait for an outcome


@pytest.fixture(name="until")
def until_fixture() -> Callable[..., object]:
    return wait_until


IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (network namespaces, real peers)")
