"""Real UPS data: every dump of ../shared/nut-ddl replayed through real upsd + dummy-ups and read through the
daemon's UPS driver and power machine (tests/faults/nutddl.py): how many are read, how many NUT itself cannot
serve (a documented skip), how many fail (each a bug), and the time per dump.

Baseline for the time: one upsd + dummy-ups per dump, the way the lab runs its single UPS
(gateway.lab.ups.UpsPeer: start, one read through the driver, stop), measured on the test sample in the same run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from gateway.drivers.ups import UpsDriver
from gateway.lab.ups import NUT_BIN, UpsPeer
from tests.faults.nutddl import DDL, all_dumps, replay, sample


def _one_upsd_per_dump(work: Path, dumps: list[Path]) -> float:
    """Seconds per dump with a whole UpsPeer (upsd, dummy-ups, battery model) per dump."""
    times = []
    for i, dump in enumerate(dumps):
        started = time.monotonic()
        peer = UpsPeer(work / f"peer{i}", dump).start()
        try:
            drv = UpsDriver(peer.name, peer.host, peer.port)
            asyncio.run(drv.read())
            asyncio.run(drv.close())
        finally:
            peer.stop()
        times.append(time.monotonic() - started)
    return statistics.median(times)


def run() -> dict[str, dict[str, object]]:
    if os.geteuid() != 0 or not (NUT_BIN / "dummy-ups").exists() or not DDL.is_dir():
        raise RuntimeError("needs root, NUT (dummy-ups, upsd) and ../shared/nut-ddl")
    work = Path(tempfile.mkdtemp(prefix="og-bench-nutddl-"))
    try:
        dumps = all_dumps()
        started = time.monotonic()
        tally = replay(work / "farm", dumps)
        total_s = time.monotonic() - started
        per_dump_s = total_s / len(dumps)
        baseline_s = _one_upsd_per_dump(work, sample()[:6])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ok, nut, failed = tally.of("ok"), tally.of("nut"), tally.of("failed")
    states: dict[str, int] = {}
    for o in ok:
        states[o.state] = states.get(o.state, 0) + 1
    print(f"   {len(dumps)} dumps in {total_s:.1f} s ({per_dump_s * 1000:.0f} ms each; one upsd per dump: "
          f"{baseline_s * 1000:.0f} ms each): {len(ok)} read, {len(nut)} NUT cannot serve, {len(failed)} failed")
    print(f"   power states: {', '.join(f'{k} {v}' for k, v in sorted(states.items()))}")
    for o in nut + failed:
        print(f"   {o.kind}: {o.dump.name}: {o.detail}")
    return {
        "nutddl_dumps_read": {"value": len(ok), "unit": "dumps", "baseline": len(dumps),
                              "goal": f"all {len(dumps)} (less the ones NUT cannot serve)"},
        "nutddl_dumps_nut_cannot_serve": {"value": len(nut), "unit": "dumps", "baseline": None,
                                          "goal": "documented skips"},
        "nutddl_dumps_failed": {"value": len(failed), "unit": "dumps", "baseline": None, "goal": "0"},
        "nutddl_time_per_dump_ms": {"value": round(per_dump_s * 1000, 1), "unit": "ms",
                                    "baseline": round(baseline_s * 1000, 1),
                                    "goal": "full run in minutes (baseline: one upsd per dump)"},
    }


if __name__ == "__main__":
    for k, v in run().items():
        print(k, v)
