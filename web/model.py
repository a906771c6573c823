"""What the page shows, computed from the snapshot and the journal (shared by the page and its fragment)."""

from __future__ import annotations

import time
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.core import maintenance as maint
from web import charts
from web.util import digest, parse_ts

CHART_HOURS = 6
# Which daemon service provides each section of the page (snapshot["daemon"]["not_built"] names modules).
SECTION_SOURCE = {"power": "power", "loads": "power", "uplinks": "uplinks", "modem": "modem",
                  "services": "continuity", "incident": "continuity", "drills": "continuity",
                  "notice": "notify", "maintenance": "notify", "orders": "notify"}


def site_tz(cfg: Any) -> tzinfo:
    try:
        return ZoneInfo(cfg.site.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def signal_bars(rssi_dbm: float | None) -> int:
    """0-4 bars from LTE RSSI, the way phones draw them."""
    if rssi_dbm is None:
        return 0
    for bars, floor in ((4, -70), (3, -85), (2, -95), (1, -105)):
        if rssi_dbm >= floor:
            return bars
    return 0


def _window(row: dict[str, Any], tz: tzinfo) -> maint.Window | None:
    def when(s: Any) -> datetime | None:
        if not s:
            return None
        d = datetime.fromisoformat(str(s))
        return d if d.tzinfo else d.replace(tzinfo=tz)

    try:
        rec = maint.parse_recurrence(row["recurrence"]) if row.get("recurrence") else None
        return maint.Window(str(row.get("id")), str(row.get("name", "")), str(row.get("kind") or "window"),
                            when(row.get("start")), when(row.get("end")), rec, tuple(row.get("services") or ()),
                            bool(row.get("switch_to_lte")), str(row.get("description") or ""))
    except (ValueError, TypeError):
        return None


def maintenance_rows(be: Any) -> list[dict[str, Any]]:
    """Windows from the config and the journal, each with its next start (None when none is ahead)."""
    tz = site_tz(be.config)
    now = datetime.now(tz)
    rows: list[dict[str, Any]] = []
    for m in be.config.maintenance:
        rows.append({"id": None, "name": m.name, "kind": m.kind, "start": m.start, "end": m.end,
                     "recurrence": m.recurrence, "services": list(m.services), "switch_to_lte": bool(m.switch_to_lte),
                     "description": m.description, "source": "config", "created_at": None})
    for r in be.reader.maintenance():
        services = r.get("services")
        rows.append({"id": r["id"], "name": r["name"], "kind": r["kind"] or "window", "start": r["start"],
                     "end": r["end"], "recurrence": r["recurrence"],
                     "services": services if isinstance(services, list) else [],
                     "switch_to_lte": bool(r["switch_to_lte"]), "description": r["description"] or "",
                     "source": r["source"] or "", "created_at": r["created_at"]})
    for row in rows:
        w = _window(row, tz)
        nxt = maint.next_start(w, now, tz) if w is not None else None
        row["next_start"] = nxt[0].isoformat() if nxt else None
        row["next_end"] = nxt[1].isoformat() if nxt else None
        row["active"] = bool(nxt and nxt[0] <= now < nxt[1])
    return rows


def _headline(snap: dict[str, Any], avail: dict[str, bool]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    p = snap.get("power") or {}
    ups = p.get("ups") or {}
    if avail["power"]:
        st = p.get("state")
        if st in ("on_battery", "low_battery", "shutting_down"):
            left = ups.get("runtime_s")
            extra = f" · about {int(left // 60)} min left" if isinstance(left, (int, float)) else ""
            word = {"on_battery": "On battery", "low_battery": "Battery low",
                    "shutting_down": "Shutting down"}[st]
            out.append(("bad", f"{word}{extra}"))
        elif st == "comm_lost":
            out.append(("warn", "UPS not answering"))
    ups_list = snap.get("uplinks") or []
    if avail["uplinks"] and ups_list:
        active = next((u for u in ups_list if u.get("active")), None)
        if not any(u.get("state") in ("up", "degraded") for u in ups_list):
            out.append(("bad", "Internet down on every uplink"))
        elif active is not None and active.get("role") == "backup":
            out.append(("warn", f"Running on backup internet ({active.get('name')})"))
        elif active is not None and active.get("state") == "degraded":
            out.append(("warn", f"Internet degraded ({active.get('name')})"))
    down = [s.get("name", "?") for s in (snap.get("services") or []) if isinstance(s, dict)
            and s.get("reachable") is False]
    if down:
        out.append(("bad", f"{', '.join(down)} unreachable"))
    if not out:
        out.append(("ok", "All normal"))
    return out


def _series(be: Any, name: str, since: float) -> list[tuple[float, float]]:
    try:
        return list(be.reader.samples(name, since))
    except Exception:
        return []


def page_model(be: Any, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    snap = be.snapshot() or {}
    cfg = be.config
    tz = site_tz(cfg)
    not_built = set((snap.get("daemon") or {}).get("not_built") or [])
    avail = {sec: src not in not_built and (sec in snap or sec in ("drills", "orders"))
             for sec, src in SECTION_SOURCE.items()}
    inc = snap.get("incident") if isinstance(snap.get("incident"), dict) else None
    timeline: list[dict[str, Any]] = []
    if inc and isinstance(inc.get("id"), int):
        timeline = inc.get("timeline") if isinstance(inc.get("timeline"), list) else \
            be.reader.events(incident_id=inc["id"], limit=1000)[-60:]
        timeline = sorted((e for e in timeline if isinstance(e, dict)),
                          key=lambda e: (float(e.get("ts") or 0), int(e.get("id") or 0)))
    since = now - CHART_HOURS * 3600
    uplink_names = [u.name for u in cfg.uplinks]
    chart_list = [
        charts.line_chart("Battery charge", [("charge", _series(be, "ups.charge_pct", since))], since, now, "%", tz,
                          y_max=100),
        charts.line_chart("UPS load", [("load", _series(be, "ups.load_pct", since))], since, now, "%", tz, y_max=100),
        charts.line_chart("Round-trip time per uplink",
                          [(n, _series(be, f"uplink.{n}.rtt_ms", since)) for n in uplink_names], since, now, "ms", tz),
        charts.line_chart("Packet loss per uplink",
                          [(n, _series(be, f"uplink.{n}.loss_pct", since)) for n in uplink_names], since, now, "%",
                          tz, y_max=100),
    ]
    try:
        drills = be.reader.drills(limit=5)
    except Exception:
        drills = []
    try:
        windows = maintenance_rows(be)
    except Exception:
        windows = []
    try:
        orders = be.reader.orders(open_only=True)
    except Exception:
        orders = []
    updated = parse_ts(snap.get("updated_at")) or now
    p = snap.get("power") or {}
    return {
        "snap": snap, "avail": avail, "not_built": sorted(not_built), "tz": tz, "now": now, "updated": updated,
        "power": p, "ups": p.get("ups") or {}, "loads": snap.get("loads") or [], "uplinks": snap.get("uplinks") or [],
        "override": snap.get("override"), "modem": snap.get("modem") or {},
        "bars": signal_bars((snap.get("modem") or {}).get("rssi_dbm")),
        "services": [s for s in (snap.get("services") or []) if isinstance(s, dict)],
        "incident": inc, "timeline": timeline, "notice": snap.get("notice") if isinstance(snap.get("notice"),
                                                                                          dict) else None,
        "maint": snap.get("maintenance") if isinstance(snap.get("maintenance"), dict) else {},
        "windows": windows, "drills": drills, "orders": orders, "charts": chart_list,
        "headline": _headline(snap, avail), "uplink_names": uplink_names, "chart_hours": CHART_HOURS,
        # charts and "N min ago" texts move with the clock: a new fragment at most once a minute for them
        "etag_parts": (snap, [e.get("id") for e in timeline[-1:]], int(now // 60), windows, drills, len(orders)),
    }


def model_etag(m: dict[str, Any], *extra: Any) -> str:
    base = m.get("etag_base")
    if base is None:  # hashed once per model: a cached model serves many clients (web/cache.py)
        base = m["etag_base"] = digest(*m["etag_parts"])
    return digest(base, *extra)
