"""Panel: how true the rendered beeps are to their patterns, how often the renderer wakes, what a tick costs.

The runtime renders the panel by evaluating the pure patterns, sleeping until the next edge of a pattern.
The baseline, measured in the same run, is the same service polling every 25 ms (a tick-quantised renderer,
whose beeps come out up to a tick long or short).  The service runs on a real loop with a recording driver
during a critical alarm (250 ms beeps) for a few cycles: the figures are the mean error of the beep lengths
and the render wake-ups per second.  The tick cost is one render tick (core step, outputs, a write to
gpiozero's mock PWM pins) in microseconds, against the pure core step alone.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPWMPin

from gateway import config
from gateway.core import panel as core
from gateway.core.base import Tick
from gateway.core.signals import PowerStatus
from gateway.drivers.panel import PanelDriver, load_board
from gateway.drivers.panel_fake import FakePanelDriver
from gateway.runtime import panel as runtime
from gateway.runtime.service import Context
from gateway.store import Journal
from tests.panel.test_service import CFG

SECONDS = 4 * core.pattern_length("critical")


class Recording(FakePanelDriver):
    def __init__(self) -> None:
        super().__init__(load_board("rpi-gateway-hat"))
        self.edges: list[tuple[float, bool]] = []

    def apply(self, levels: dict[str, Any], buzzer_hz: float | None) -> None:
        was = self.buzzer_hz is not None
        super().apply(levels, buzzer_hz)
        if (buzzer_hz is not None) != was:
            self.edges.append((time.monotonic(), buzzer_hz is not None))


POLL_S = 0.025


class Polling(runtime.PanelService):
    def _sleep_s(self, now: float) -> float:
        return POLL_S


def _beep_error_ms(d: Path, cls: type[runtime.PanelService]) -> tuple[float, float]:
    cfg = config.parse(CFG.format(state=d, extra=""), "bench.toml")
    ctx = Context(config=cfg, journal=Journal(d / "journal.db"))
    drv = Recording()
    svc = cls(ctx, driver=drv)
    wakeups = 0
    sleep_s = svc._sleep_s

    def counting(now: float) -> float:
        nonlocal wakeups
        wakeups += 1
        return sleep_s(now)

    svc._sleep_s = counting  # type: ignore[method-assign]

    async def main() -> None:
        await svc.start()
        ctx.bus.publish(PowerStatus("shutting_down"))
        await asyncio.sleep(SECONDS)  # a benchmark measures time on purpose
        await svc.stop()

    asyncio.run(main())
    lengths = [(t2 - t1) * 1000 for (t1, on1), (t2, on2) in zip(drv.edges, drv.edges[1:], strict=False)
               if on1 and not on2]
    want = core.BUZZER_PATTERNS["critical"][0][0][0] * 1000
    return statistics.mean(abs(x - want) for x in lengths), wakeups / SECONDS


def _tick_us() -> tuple[float, float]:
    f = MockFactory(pin_class=MockPWMPin)
    drv = PanelDriver(load_board("rpi-gateway-hat"), f, mock=True)
    s, _ = core.step(core.initial(), PowerStatus("shutting_down"), 0.0)
    n = 5000
    try:
        t0 = time.perf_counter()
        for i in range(n):
            s, _ = core.step(s, Tick(), i * 0.025)
        pure = (time.perf_counter() - t0) / n * 1e6
        t0 = time.perf_counter()
        for i in range(n):
            now = i * 0.025
            s, _ = core.step(s, Tick(), now)
            out = core.outputs(s, now)
            v = core.led_value(out.led("power").pattern, now)
            on = core.buzzer_on(out.buzzer, now - out.buzzer_since)
            drv.apply({"power": v, "network": 1.0, "alert": (v, 0.0, 0.0)}, 2700.0 if on else None)
        full = (time.perf_counter() - t0) / n * 1e6
    finally:
        drv.close()
    return full, pure


def run() -> dict[str, dict[str, object]]:
    figures = {}
    for cls in (runtime.PanelService, Polling):
        d = Path(tempfile.mkdtemp(prefix="pnb", dir="/tmp"))
        try:
            figures[cls] = _beep_error_ms(d, cls)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    (err, wake), (err0, wake0) = figures[runtime.PanelService], figures[Polling]
    full, pure = _tick_us()
    return {
        "panel.beep_length_error_ms": {"value": round(err, 2), "unit": "ms", "baseline": round(err0, 2),
                                       "goal": "a few ms, well below a 25 ms polling tick"},
        "panel.render_wakeups_per_s": {"value": round(wake, 1), "unit": "1/s", "baseline": round(wake0, 1),
                                       "goal": "only at pattern edges"},
        "panel.render_tick_us": {"value": round(full, 1), "unit": "us", "baseline": round(pure, 1),
                                 "goal": "microseconds per wake-up"},
    }


if __name__ == "__main__":
    for k, v in run().items():
        print(k, v)
