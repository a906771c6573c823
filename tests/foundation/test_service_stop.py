"""Service.stop() ends every task it started, even one that swallows its cancel (Python 3.11's wait_for loses a
cancel that races the awaited result; the CI run this guards against hung 300 s in an uplink service's stop)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from gateway.runtime import service as service_mod
from gateway.runtime.service import Context, Service


class Stubborn(Service):
    name = "stubborn"

    def __init__(self) -> None:
        super().__init__(Context(config=None, journal=None))  # type: ignore[arg-type]
        self.swallowed = 0
        self.finished = asyncio.Event()

    async def start(self) -> None:
        self.spawn(self._loop(), "loop")
        self.spawn(self._fails(), "fails")

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if self.swallowed == 0:  # the first cancel is lost, as a racing wait_for loses it
                    self.swallowed += 1
                    continue
                self.finished.set()
                raise

    async def _fails(self) -> None:
        raise RuntimeError("a task that crashed before the stop")


def test_stop_cancels_again_a_task_that_swallowed_its_cancel(monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(service_mod, "STOP_RECANCEL_S", 0.05)

    async def main() -> Any:
        svc = Stubborn()
        await svc.start()
        await asyncio.sleep(0)  # let both tasks run to their first await
        async with asyncio.timeout(30):  # a deadline for the test, not a timing assertion
            await svc.stop()
        return svc

    with caplog.at_level(logging.ERROR, logger="gateway"):
        svc = asyncio.run(main())
    assert svc.swallowed == 1 and svc.finished.is_set() and svc._tasks == []
    assert any("stubborn.loop did not end when cancelled" in r.getMessage() for r in caplog.records)
    assert any("task fails crashed" in r.getMessage() for r in caplog.records)
