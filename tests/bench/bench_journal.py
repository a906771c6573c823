"""Journal figure: reading an incident and building its report on a 1 M-event journal."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from gateway.store import Journal


def run() -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as d:
        # (journal bytes per day at steady state are measured on the real daemon in bench_daemon)
        # Report time on a 1 M-event journal: the incident's events are found through the index.
        j = Journal(Path(d) / "big.db")
        batch = 50_000
        with j.transaction() as c:
            for b in range(1_000_000 // batch):
                c.executemany("INSERT INTO events (ts, kind, message, severity, data, incident_id) "
                              "VALUES (?, ?, ?, 'info', '{}', ?)",
                              [(float(b * batch + i), "uplink.state", "wired: up", (b * batch + i) // 2000 or None)
                               for i in range(batch)])
        from gateway.core import report as report_mod  # built by the continuity area

        t0 = time.perf_counter()
        events = j.events(incident_id=250, limit=100_000)
        inc = {"id": 250, "kind": "outage", "opened_at": events[0]["ts"], "closed_at": events[-1]["ts"],
               "severity": "high", "causes": ["wired"], "title": "bench", "checklist": [], "data": {}}
        built = report_mod.build_report(inc, events, {})
        json.dumps(built, default=str)
        elapsed = time.perf_counter() - t0
        # baseline: a full scan of the events table, what a journal without the incident index would do
        t1 = time.perf_counter()
        j.query("SELECT count(*) AS n FROM events WHERE message LIKE '%x%'")
        scan = time.perf_counter() - t1
        out["report_time_1m_events_s"] = {"value": round(elapsed, 4), "unit": "s", "baseline": round(scan, 4),
                                          "goal": "<= 1 s"}
        j.close()
    return out
