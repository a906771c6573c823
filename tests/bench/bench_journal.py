"""Journal figures: steady-state bytes written per day, and reading an incident on a 1 M-event journal."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from gateway.store import Journal


def run() -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as d:
        # A steady day: transitions are rare; per minute one sample per series (UPS 3, 2 uplinks x 2);
        # a handful of transition events per hour.  Simulated for one hour and scaled.
        j = Journal(Path(d) / "day.db", clock=lambda: 0.0)
        start = j.size_bytes() + (Path(d) / "day.db-wal").stat().st_size
        series = ["ups.charge_pct", "ups.load_pct", "ups.runtime_s", "uplink.wired.rtt_ms",
                  "uplink.wired.loss_pct", "uplink.lte.rtt_ms", "uplink.lte.loss_pct"]
        for minute in range(60):
            j.add_samples([(minute * 60.0, s, 42.0) for s in series])
            if minute % 10 == 0:
                j.add_event("uplink.probe_summary", "wired: 0.0 % loss, 12 ms", data={"rtt": 12.0})
        j.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        used = j.size_bytes() - start
        out["journal_bytes_per_day"] = {"value": round(used * 24 / 1e6, 3), "unit": "MB/day", "baseline": None,
                                        "goal": "<= 5 MB/day"}
        j.close()

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
