"""The soak in small (tests/bench/soak.py has the 30-day one): a lab office with the soak's compressed time,
a few outages driven by conditions (no schedule, no sleeps), then the soak's checks: each outage is an incident
that closed with a report, and retention keeps the journal within its bound.  RSS growth needs days of
running to mean anything, so it is left to `make soak`.

It runs in `make test-full` only: its own lab's start and teardown alone take 40-90 s on the loaded
2-core machine, over the 60 s a soak test may add to `make test` (measured: 128 s in all, 28 s of it the test)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bench.soak import EXPECTED, Outage, Settings, SoakLab, match_incident, soak_config
from tests.faults.conftest import Office

pytestmark = pytest.mark.skipif(os.environ.get("GATEWAY_TEST_FULL") != "1",
                                reason="the short soak runs in make test-full (over the suite's 60 s soak budget)")

# one simulated day of 20 s: retention keeps 0.5 day (10 s), housekeeping every 2.5 s
SETTINGS = Settings(days=1, day_s=20.0, retention_sim_days=0.5, warmup_days=0)


@pytest.fixture(scope="module")
def soaked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Office, SoakLab]]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, real peers)")
    office = Office(tmp_path_factory.mktemp("soak"))
    try:
        office.lab("up")
        path = Path(office.status()["config"])
        path.write_text(soak_config(path.read_text(), SETTINGS))
        office.lab("daemon", "start")
        office.info = office.status()
        office.wait(office.snapshot, 30, "the daemon's API")
        lab = SoakLab(office.base, office.prefix)
        lab.info = office.info
        yield office, lab
    finally:
        office.gw("lab", "down")


def _open_causes(office: Office) -> set[str]:
    open_now = office.api("/api/v1/incidents?open=1")
    return set(open_now[0]["causes"]) if open_now else set()


def _oldest_event(office: Office) -> tuple[int, float] | None:
    con = sqlite3.connect(f"file:{office.journal_path}?mode=ro", uri=True, timeout=10)
    try:
        row = con.execute("SELECT id, ts FROM events ORDER BY id LIMIT 1").fetchone()
    finally:
        con.close()
    return (int(row[0]), float(row[1])) if row else None


def test_outages_become_incidents_with_reports_and_retention_keeps_its_bound(
        soaked: tuple[Office, SoakLab]) -> None:
    office, lab = soaked
    pid = office.pid
    office.wait(lambda: not office.api("/api/v1/incidents?open=1"), 60, "no incident open before the outages")
    first = _oldest_event(office)
    assert first is not None
    before = max((int(i["id"]) for i in office.api("/api/v1/incidents?limit=1000")), default=0)
    done: list[tuple[Outage, float, float]] = []
    # a power cut with the CRM unreachable at once (one incident, two causes), then a blackholed ISP
    for kinds in (("power", "crm"), ("isp_blackhole",)):
        outages = [Outage(len(done) + n, k, 0.0, 0.0) for n, k in enumerate(kinds, 1)]
        started = time.time()
        for o in outages:
            lab.inject(o)
        office.wait(lambda outages=outages: all(set(EXPECTED[o.kind]) & _open_causes(office) for o in outages), 30,
                    f"an open incident naming {' and '.join(kinds)}")
        for o in outages:
            lab.clear(o)
        ended = time.time()
        office.wait(lambda: not office.api("/api/v1/incidents?open=1"), 30, f"the {'+'.join(kinds)} incident closed")
        done += [(o, started, ended) for o in outages]

    incidents = [i for i in office.api("/api/v1/incidents?limit=1000") if int(i["id"]) > before]
    matched: dict[str, int | None] = {o.kind: match_incident(incidents, EXPECTED[o.kind], start, end)
                                      for o, start, end in done}
    assert None not in matched.values(), (matched, [(i["id"], i["causes"]) for i in incidents])
    assert matched["power"] == matched["crm"] != matched["isp_blackhole"]
    for iid in set(matched.values()):
        rep: dict[str, Any] = office.wait(lambda iid=iid: office.api(f"/api/v1/incidents/{iid}/report?format=json"),
                                          15, f"the report of incident #{iid}")
        assert rep["incident_id"] == iid and rep["open"] is False and rep["causes"]

    # retention runs every 2.5 s and keeps 10 s: the first rows go, and the oldest one left is within the bound
    office.wait(lambda: (_oldest_event(office) or (first[0] + 1, 0.0))[0] > first[0], 30, "retention to remove rows")
    oldest = _oldest_event(office)
    if oldest is not None:
        assert time.time() - oldest[1] <= SETTINGS.retention_s + SETTINGS.housekeeping_s + 5.0
    assert office.pid == pid and office.alive()
