"""Crash safety, benchmark-style: CRASH_TRIALS (default 100) SIGKILLs at random moments during an outage.

Each trial is tests/faults/crash.py's run_trial: integrity_check, no committed row lost, and after a restart
the default route and the PoE ports match the journal's desired state (the contract: within 10 s).
Run alone: `.venv/bin/python -m tests.bench.bench_crash` (or `python -m tests.bench.run crash`).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.faults.conftest import Office
from tests.faults.crash import CONVERGE_S, Plant, Trial, run_trial, start_outage


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def run() -> dict[str, dict[str, object]]:
    if os.geteuid() != 0:
        raise RuntimeError("needs root (network namespaces, real peers)")
    n = int(os.environ.get("CRASH_TRIALS", "100"))
    seed = int(os.environ.get("CRASH_SEED", str(int(time.time()))))
    rng = random.Random(seed)
    trials: list[Trial] = []
    with tempfile.TemporaryDirectory(prefix="bench-crash-") as tmp:
        office = Office(Path(tmp))
        try:
            office.lab("up")
            office.lab("daemon", "start")
            office.info = office.status()
            plant = Plant(office)
            start_outage(office, plant)
            for i in range(n):
                t = run_trial(office, plant, rng)
                trials.append(t)
                print(f"   trial {i + 1}/{n}: {t.flip:<5} {t.round_trips:>2} round trips, {t.rows_before_kill} rows,"
                      f" integrity {t.integrity}, lost {len(t.lost)}, "
                      + (f"started in {t.start_s:.1f} s, desired state {t.converge_s:.2f} s after" if t.converge_s is not None else f"FAILED {t.error}"),
                      flush=True)
                if t.converge_s is None:  # leave the next trial a running, converged daemon
                    office.lab("daemon", "start")
                    office.wait(lambda: office.snapshot(), 30, "the daemon's API")
        finally:
            office.gw("lab", "down")
    failures = [t for t in trials if not t.ok]
    times = [t.converge_s for t in trials if t.converge_s is not None]
    starts = [t.start_s for t in trials if t.start_s]
    print(f"   seed {seed}: {len(trials)} trials, {len(failures)} failures"
          + "".join(f"\n   failure: {t.flip} lost={t.lost[:5]} integrity={t.integrity} {t.error}" for t in failures))
    out: dict[str, dict[str, object]] = {
        "crash_trials": {"value": len(trials), "unit": "trials", "baseline": None, "goal": ">= 100"},
        "crash_failures": {"value": len(failures), "unit": "trials", "baseline": None, "goal": "0"},
        "crash_rows_lost": {"value": sum(len(t.lost) for t in trials), "unit": "rows", "baseline": None,
                            "goal": "0"},
    }
    if times:
        out.update({
            "crash_restart_to_desired_median_s": {"value": round(statistics.median(times), 3), "unit": "s",
                                                  "baseline": CONVERGE_S, "goal": f"<= {CONVERGE_S:g} s"},
            "crash_restart_to_desired_p95_s": {"value": round(_pct(times, 0.95), 3), "unit": "s",
                                               "baseline": CONVERGE_S, "goal": f"<= {CONVERGE_S:g} s"},
            "crash_restart_to_desired_max_s": {"value": round(max(times), 3), "unit": "s",
                                               "baseline": CONVERGE_S, "goal": f"<= {CONVERGE_S:g} s"},
        })
    if starts:
        out["crash_daemon_start_median_s"] = {"value": round(statistics.median(starts), 3), "unit": "s",
                                              "baseline": None, "goal": "(until it serves; machine load)"}
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
    sys.exit(0)
