"""Crash safety in the lab: SIGKILL at random moments during an outage (see tests/faults/crash.py).

A few trials here; tests/bench/bench_crash.py runs a hundred or more and records the figures.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.faults.conftest import Office
from tests.faults.crash import Plant, run_trial, start_outage

SEED = int(os.environ.get("CRASH_SEED", "1303"))


@pytest.fixture(scope="module")
def plant(office: Office) -> Plant:
    p = Plant(office)
    start_outage(office, p)
    return p


@pytest.mark.parametrize("n", range(3))
def test_sigkill_during_an_outage_loses_nothing_and_restart_matches_the_journal(
        office: Office, plant: Plant, n: int) -> None:
    rng = random.Random(SEED * 10 + n)
    t = run_trial(office, plant, rng)
    assert t.integrity == "ok"
    assert t.lost == [], f"committed rows missing after the kill ({t.flip}, {t.round_trips} round trips)"
    assert t.rows_before_kill > 0
    assert t.converge_s is not None, t.error
    assert office.alive()
