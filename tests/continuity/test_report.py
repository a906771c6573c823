"""Post-incident reports from a realistic journal: a power cut and an ISP blackhole that overlap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.core import incidents as I
from gateway.core import report
from gateway.core.base import JournalEvent, Tick
from gateway.core.signals import (
    ActiveUplinkChanged,
    AlertAcknowledged,
    PowerStatus,
    ServiceReachability,
    UplinkStatus,
)
from gateway.store import Journal

T0 = 1_790_000_000.0
POLICY = I.Policy(close_hold_s=120.0, services=("CRM",), uplinks=("wired", "lte"))
EXTRA = {"site": "Test <Office>", "tz": "Europe/Berlin", "services": [{"name": "CRM", "rto_s": 300.0,
                                                                       "department": "Sales"}],
         "runtime_needed_s": 210.0, "runtime_margin_pct": 20.0, "primary": "wired", "backup": "lte",
         "response_targets_min": {"critical": 15, "high": 30}}


def replay(j: Journal) -> int:
    """What the areas and the continuity service would write during the outage, at their times."""
    s = I.initial(POLICY)
    iid = 0

    def do(t: float, fact: Any = None, event: tuple[str, str, str, dict[str, Any]] | None = None) -> None:
        nonlocal s, iid
        ts = T0 + t
        if event is not None:
            row = j.add_event(event[0], event[1], event[2], event[3], ts=ts)
            s, eff = I.step(s, I.Observed(row["id"], ts, event[0]), ts)
            apply(eff, ts)
        if fact is not None:
            s, eff = I.step(s, fact, ts)
            apply(eff, ts)

    def apply(effects: tuple[Any, ...], ts: float) -> None:
        nonlocal iid
        for e in effects:
            if isinstance(e, I.Opened):
                iid = e.incident.id
                j.insert("incidents", e.incident.to_row())
            elif isinstance(e, (I.Updated, I.Closed)):
                row = e.incident.to_row()
                j.update("incidents", "id", e.incident.id, {k: v for k, v in row.items() if k != "id"})
            elif isinstance(e, I.Link):
                j.set_event_incident(list(e.event_ids), e.incident_id)
            elif isinstance(e, JournalEvent):
                j.add_event(e.kind, e.message, e.severity, dict(e.data), incident_id=e.data.get("incident_id"), ts=ts)

    do(0, UplinkStatus("wired", "primary", "up", True))
    do(0, UplinkStatus("lte", "backup", "standby", False))
    do(0, ServiceReachability("CRM", True))
    do(100, None, ("uplink.state", "wired: down (3/3 targets lost 0.9 s)", "warning",
                   {"uplink": "wired", "from": "up", "to": "down"}))
    do(100, UplinkStatus("wired", "primary", "down", False))
    do(101.2, None, ("uplink.switch", "uplinks: traffic wired → lte (wired down)", "warning",
                     {"from": "wired", "to": "lte"}))
    do(101.2, ActiveUplinkChanged("lte", "wired", "wired down"))
    do(101.5, UplinkStatus("lte", "backup", "up", True))
    do(103, None, ("service.unreachable", "CRM: unreachable via lte (timeout)", "warning", {"service": "CRM"}))
    do(103, ServiceReachability("CRM", False))
    do(110, None, ("power.state", "power: on battery (mains lost)", "warning", {}))
    do(110, PowerStatus("on_battery", charge_pct=98, runtime_s=1800, load_pct=40))
    do(111, None, ("power.shed", "power: shed tier 1 (cameras, signage) <b>now</b>", "warning", {"tier": 1}))
    do(111, PowerStatus("on_battery", charge_pct=97, runtime_s=1900, load_pct=30, shed_tiers=(1,),
                        shed_watts=38.5, minutes_gained=7.0))
    do(130, None, ("modem.recovery", "modem: recovery 1/3: re-dial", "warning", {"rung": "redial"}))
    do(160, None, ("modem.recovery", "modem: recovery 2/3: radio reset", "warning", {"rung": "radio_reset"}))
    do(200, None, ("service.reachable", "CRM: reachable via lte, 80 ms", "info", {"service": "CRM"}))
    do(200, ServiceReachability("CRM", True))
    do(400, AlertAcknowledged("alice", None, "page"))
    do(600, PowerStatus("on_battery", charge_pct=60, runtime_s=240, load_pct=30, shed_tiers=(1,),
                        shed_watts=38.5, minutes_gained=7.0))
    do(700, None, ("power.state", "power: online (mains back)", "info", {}))
    do(700, PowerStatus("online"))
    do(900, UplinkStatus("wired", "primary", "up", False))
    do(960, ActiveUplinkChanged("wired", "lte", "failback"))
    do(960 + 120, Tick())
    assert s.incident is None
    return iid


def test_report_names_both_causes_and_the_figures(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    iid = replay(j)
    inc = j.incident(iid)
    assert inc is not None
    events = j.events(incident_id=iid, limit=10_000)
    rep = report.build_report(inc, events, EXTRA)
    assert rep["incident_id"] == iid and not rep["open"] and rep["severity"] == "critical"
    assert rep["causes"][:2] == ["wired: down", "CRM: unreachable"] and "power: on battery" in rep["causes"]
    assert rep["cause"].startswith("The wired line went down") and "mains power failed" in rep["cause"]
    assert rep["duration_s"] == 980.0
    f = rep["figures"]
    assert f["time_to_backup_s"] == 1.2 and f["shed_watts"] == 38.5 and f["minutes_gained"] == 7.0
    assert f["runtime_min_s"] == 240 and f["modem_recovery_steps"] == 2
    (crm,) = rep["services"]
    assert crm["measured_rto_s"] == 100.0 and crm["down_s"] == 97.0 and crm["met"] is True
    assert rep["response"]["ack_s"] == 300.0 and rep["response"]["met"] is True
    text = " ".join(rep["worked"])
    assert "backup line 1.2 s after" in text and "38 W" in text and "CRM answered again" in text
    fix = " ".join(rep["to_fix"])
    assert "runtime fell to 4 min 00 s" in fix and "LTE recovery needed 2 steps (redial, radio_reset)" in fix
    assert [t["kind"] for t in rep["timeline"]][:2] == ["uplink.state", "incident.open"]
    assert rep["opened_at_iso"].endswith("+02:00") or rep["opened_at_iso"].endswith("+01:00")

    md = report.render_markdown(rep)
    assert f"# Incident #{iid}" in md and "## What to fix" in md and "Time to backup line: 1.2 s" in md
    assert "\\<b\\>now\\</b\\>" in md  # journal text cannot inject markup
    html = report.render_html(rep)
    assert "<b>now</b>" not in html and "&lt;b&gt;now&lt;/b&gt;" in html and "Test &lt;Office&gt;" in html
    assert "http" not in html.split("<body>")[0].replace("http-equiv", "")  # nothing external
    j.close()


def test_open_incident_and_empty_data_still_report() -> None:
    rep = report.build_report({"id": 3, "opened_at": T0, "severity": "high", "causes": ["wired"]}, [], {})
    assert rep["open"] and rep["cause"] == "Causes recorded: wired." and rep["response"]["met"] is False
    assert "Nobody acknowledged" in " ".join(rep["to_fix"])
    assert report.render_markdown(rep) and report.render_html(rep)


def test_long_timelines_keep_warnings_and_are_summarised() -> None:
    events = [{"id": i, "ts": T0 + i, "kind": "uplink.state", "severity": "warning" if i % 500 == 0 else "info",
               "message": f"row {i}", "data": {}} for i in range(5000)]
    rep = report.build_report({"id": 1, "opened_at": T0, "closed_at": T0 + 5000, "severity": "low"}, events, {})
    assert len(rep["timeline"]) <= report.TIMELINE_MAX and rep["timeline_omitted"] > 0
    kept = {t["message"] for t in rep["timeline"]}
    assert all(f"row {i}" in kept for i in range(0, 5000, 500))
    assert "routine entries omitted" in report.render_markdown(rep)
