"""Real UPS data: dumps of ../shared/nut-ddl replayed by real dummy-ups behind one real upsd, each read
through the daemon's UPS driver and fed to the power machine without error.

The normal suite replays a small deterministic sample chosen to cover the odd ones (every NUT status flag,
no ups.status, no battery.runtime, no ups.load, a value NUT reads across a line end); ``make test-full``
(GATEWAY_TEST_FULL=1) replays all 718.  ``make bench`` has the figures (tests/bench/bench_nutddl.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.lab.ups import NUT_BIN
from tests.faults.nutddl import DDL, Tally, all_dumps, replay, sample

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (dummy-ups and upsd run as root here)"),
    pytest.mark.skipif(not (NUT_BIN / "dummy-ups").exists(), reason="NUT (dummy-ups, upsd) is not installed"),
    pytest.mark.skipif(not DDL.is_dir(), reason=f"{DDL} is not there"),
]
FULL = os.environ.get("GATEWAY_TEST_FULL") == "1"


def _report(tally: Tally) -> str:
    return "\n".join(f"{o.kind}: {o.dump.name}: {o.detail}" for o in tally.outcomes if o.kind != "ok")


def test_the_sample_is_small_diverse_and_stable() -> None:
    picked = sample()
    assert 6 <= len(picked) <= 14, [p.name for p in picked]
    assert picked == sample(), "the sample must not change from run to run"
    texts = [p.read_text(errors="replace") for p in picked]
    assert any("ups.status:" not in t for t in texts)
    assert any("battery.runtime:" not in t for t in texts)
    assert any("ups.load:" not in t for t in texts)


def test_a_sample_replays_through_upsd_and_the_driver(tmp_path: Path) -> None:
    picked = sample()
    tally = replay(tmp_path / "farm", picked)
    assert len(tally.outcomes) == len(picked)
    assert not tally.of("failed"), _report(tally)
    # NUT serves every dump of the sample; a dump NUT cannot serve would be a documented skip, not silence
    assert not tally.of("nut"), _report(tally)
    states = {o.state for o in tally.of("ok")}
    assert "online" in states and states & {"on_battery", "low_battery", "shutting_down"}, states
    assert any("OB" in o.status for o in tally.of("ok"))
    assert not list(tmp_path.iterdir()), "the farm left something behind"


@pytest.mark.skipif(not FULL, reason="all 718 dumps: make test-full (GATEWAY_TEST_FULL=1)")
def test_every_dump_replays_through_upsd_and_the_driver(tmp_path: Path) -> None:
    dumps = all_dumps()
    assert len(dumps) >= 700
    tally = replay(tmp_path / "farm", dumps)
    assert len(tally.outcomes) == len(dumps)
    assert not tally.of("failed"), _report(tally)
    # what NUT itself cannot serve is counted and named, and stays rare
    assert len(tally.of("nut")) <= 5, _report(tally)
