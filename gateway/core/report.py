"""The post-incident report, as pure code: from the incident row, its journal rows and a few plan figures.

``build_report(incident, events, extra)`` returns a JSON-able dict (the ``reports.json`` column and the API's
``?format=json``); :func:`render_markdown` and :func:`render_html` turn it into text (HTML escapes every
value that came from the journal).  Linear in the number of events: a report over thousands of rows is
built in milliseconds.

``extra`` (every key optional): ``site`` (name), ``tz`` (IANA zone for display), ``response_targets_min``
({severity: minutes}, default 15 critical / 30 high), ``services`` ([{name, rto_s, department}]),
``runtime_needed_s`` (shutdown duration + reserve), ``runtime_margin_pct`` (default 20), ``primary`` and
``backup`` (uplink names), ``failover_target_s`` (default 10), ``drill`` (the drills row, results parsed).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

DEFAULT_TARGETS_MIN = {"critical": 15.0, "high": 30.0}
TIMELINE_MAX = 400  # beyond this, info rows in the middle are summarised (warnings are always kept)


def _tz(name: Any) -> tzinfo:
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ValueError, KeyError, OSError):
            pass
    return UTC


def _iso(ts: float | None, tz: tzinfo) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h} h {m:02d} min"
    if m:
        return f"{m} min {sec:02d} s"
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f} s"
    return f"{sec} s"


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _phrase(key: str, label: str) -> str:
    parts = key.split(":")
    if key.startswith("power:"):
        return {"on_battery": "mains power failed (the UPS carried the office)",
                "low_battery": "the UPS battery ran low",
                "shutting_down": "the office was shut down before the battery ran out"}.get(parts[1], label)
    if key == "ups:comm_lost":
        return "the gateway lost contact with the UPS"
    if key.startswith("uplink:") and len(parts) >= 3:
        return f"the {parts[1]} line went down" if parts[2] == "down" else f"the {parts[1]} line was degraded"
    if key == "offline":
        return "no uplink worked (the office was offline)"
    if key.startswith("service:"):
        return f"{key[8:]} was unreachable"
    if key == "modem:failed":
        return "the LTE modem failed"
    return label


def _spans(data: Mapping[str, Any]) -> list[tuple[str, float, float | None]]:
    out = []
    for key, spans in (data.get("spans") or {}).items():
        for s in spans or []:
            if isinstance(s, (list, tuple)) and len(s) == 2 and _num(s[0]) is not None:
                out.append((str(key), float(s[0]), _num(s[1])))
    out.sort(key=lambda t: t[1])
    return out


def build_report(incident: Mapping[str, Any], events: Sequence[Mapping[str, Any]],
                 extra: Mapping[str, Any]) -> dict[str, Any]:
    tz = _tz(extra.get("tz"))
    data: Mapping[str, Any] = incident.get("data") if isinstance(incident.get("data"), dict) else {}  # type: ignore[assignment]
    opened = float(incident.get("opened_at") or (events[0]["ts"] if events else 0.0))
    closed = _num(incident.get("closed_at"))
    end = closed if closed is not None else (float(events[-1]["ts"]) if events else opened)
    severity = str(incident.get("severity") or "low")
    kind = str(incident.get("kind") or "outage")
    causes = [str(c) for c in incident.get("causes") or []]
    labels = {str(k): str(v) for k, v in (data.get("labels") or {}).items()}
    marks = {str(k): float(v) for k, v in (data.get("marks") or {}).items() if _num(v) is not None}
    figures = {str(k): float(v) for k, v in (data.get("figures") or {}).items() if _num(v) is not None}
    spans = _spans(data)
    primary, backup = extra.get("primary"), extra.get("backup")

    # ---- one pass over the journal rows: timeline and what the areas did
    timeline: list[dict[str, Any]] = []
    modem_rungs: list[str] = []
    first_down: float | None = None
    first_switch_away: float | None = None
    shed_events = 0
    kinds: dict[str, int] = {}
    for e in events:
        ts = float(e["ts"])
        k = str(e["kind"])
        kinds[k] = kinds.get(k, 0) + 1
        d = e.get("data")
        d = d if isinstance(d, dict) else {}
        if k == "modem.recovery":
            modem_rungs.append(str(d.get("rung", "?")))
        elif k == "uplink.state" and d.get("to") == "down" and first_down is None and (
                primary is None or d.get("uplink") == primary):
            first_down = ts
        elif k == "uplink.switch" and first_switch_away is None and (
                (backup is not None and d.get("to") == backup) or (backup is None and e.get("severity") == "warning")):
            first_switch_away = ts
        elif k == "power.shed":
            shed_events += 1
        timeline.append({"ts": ts, "offset_s": round(ts - opened, 3), "kind": k,
                         "severity": str(e.get("severity") or "info"), "message": str(e.get("message", ""))})
    omitted = 0
    if len(timeline) > TIMELINE_MAX:
        head, tail = timeline[:TIMELINE_MAX // 4], timeline[-TIMELINE_MAX // 4:]
        middle = [t for t in timeline[TIMELINE_MAX // 4:-TIMELINE_MAX // 4] if t["severity"] != "info"]
        middle = middle[:TIMELINE_MAX // 2]
        omitted = len(timeline) - len(head) - len(tail) - len(middle)
        timeline = head + middle + tail
    for t in timeline:
        t["time"] = _iso(t["ts"], tz)

    # ---- causes as far as the box can tell
    detail = []
    for key, start, stop in spans:
        detail.append({"key": key, "cause": labels.get(key, key), "start": start, "end": stop,
                       "start_iso": _iso(start, tz), "duration_s": None if stop is None else round(stop - start, 3)})
    first_seen: dict[str, float] = {}
    for key, start, _ in spans:
        first_seen.setdefault(key, start)
    if first_seen:
        ordered = sorted(first_seen.items(), key=lambda kv: kv[1])
        base = ordered[0][1]
        bits = [_phrase(ordered[0][0], labels.get(ordered[0][0], ordered[0][0]))]
        for key, seen in ordered[1:]:
            gap = seen - base
            when = "at the same time" if gap < 5 else f"{duration_text(gap)} later"
            bits.append(f"{_phrase(key, labels.get(key, key))} ({when})")
        cause = bits[0] + ("; then " + "; ".join(bits[1:]) if len(bits) > 1 else "")
        cause = cause[0].upper() + cause[1:] + "."
    elif causes:
        cause = "Causes recorded: " + ", ".join(causes) + "."
    else:
        cause = "No cause recorded."
    flaps = int(_num(data.get("flaps")) or 0)

    # ---- figures
    primary_down = next((s for k, s, _ in spans if k.startswith("uplink:") and k.endswith(":down")
                         and (primary is None or k.split(":")[1] == primary)), first_down)
    backup_at = marks.get("backup_active", first_switch_away)
    time_to_backup = None
    if primary_down is not None and backup_at is not None and backup_at >= primary_down - 1:
        time_to_backup = round(max(0.0, backup_at - primary_down), 3)
    rto_targets = {str(s.get("name")): _num(s.get("rto_s")) for s in extra.get("services") or []
                   if isinstance(s, dict)}
    depts = {str(s.get("name")): str(s.get("department") or "") for s in extra.get("services") or []
             if isinstance(s, dict)}
    svc: dict[str, dict[str, Any]] = {}
    for key, start, stop in spans:
        if not key.startswith("service:"):
            continue
        name = key[8:]
        row = svc.setdefault(name, {"name": name, "department": depts.get(name, ""), "down_s": 0.0,
                                    "first_down": start, "reachable_again": None, "rto_s": rto_targets.get(name)})
        row["down_s"] = round(row["down_s"] + ((stop if stop is not None else end) - start), 3)
        row["reachable_again"] = stop
    for row in svc.values():
        # measured RTO: from the start of the incident until the app answered again
        again = row.pop("reachable_again")
        row["measured_rto_s"] = None if again is None else round(again - opened, 3)
        target = row["rto_s"]
        row["met"] = None if target is None or row["measured_rto_s"] is None else row["measured_rto_s"] <= target
        row.pop("first_down")
    apps_rto = max((r["measured_rto_s"] for r in svc.values() if r["measured_rto_s"] is not None), default=None)

    targets = dict(DEFAULT_TARGETS_MIN)
    for k, v in (extra.get("response_targets_min") or {}).items():
        if _num(v) is not None:
            targets[str(k)] = float(v)
    acked_at = _num(incident.get("acked_at"))
    ack_s = None if acked_at is None else round(acked_at - opened, 3)
    target_min = targets.get(severity)
    response = {"severity": severity, "target_min": target_min, "acked_at": acked_at,
                "acked_at_iso": _iso(acked_at, tz), "acked_by": incident.get("acked_by"), "ack_s": ack_s,
                "met": None if target_min is None or kind == "drill" else (
                    ack_s is not None and ack_s <= target_min * 60)}

    fig = {
        "time_to_backup_s": time_to_backup,
        "apps_rto_s": apps_rto,
        "shed_watts": figures.get("shed_watts_max"),
        "minutes_gained": figures.get("minutes_gained_max"),
        "runtime_min_s": figures.get("runtime_min_s"),
        "charge_min_pct": figures.get("charge_min_pct"),
        "shed_tiers": int(figures["shed_tiers_max"]) if "shed_tiers_max" in figures else None,
        "modem_recovery_steps": len(modem_rungs),
        "flaps": flaps,
        "events": len(events),
    }

    # ---- drill
    drill: dict[str, Any] | None = None
    results: dict[str, Any] = {}
    if kind == "drill":
        raw = extra.get("drill")
        drow: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if isinstance(drow.get("results"), dict):
            results = drow["results"]
        drill = {
            "id": data.get("drill_id") or drow.get("id"),
            "kind": data.get("drill_kind") or drow.get("kind"),
            "passed": data.get("drill_passed") if data.get("drill_passed") is not None else
            (drow.get("status") == "passed" if drow else None),
            "time_to_failover_s": figures.get("drill_failover", _since(marks.get("drill_failover"), opened)),
            "time_to_apps_s": figures.get("drill_apps_reachable",
                                          _since(marks.get("drill_apps_reachable"), opened)),
            "results": results,
            "steps": list(results.get("steps") or []),
        }

    # ---- what worked, what to fix
    worked: list[str] = []
    to_fix: list[str] = []
    suggestions: list[str] = []
    fo_target = _num(extra.get("failover_target_s")) or 10.0
    if time_to_backup is not None:
        line = f"Traffic moved to the backup line {duration_text(time_to_backup)} after the primary failed"
        (worked if time_to_backup <= fo_target else to_fix).append(
            line + ("." if time_to_backup <= fo_target else f", slower than the {duration_text(fo_target)} goal."))
        if time_to_backup > fo_target:
            suggestions.append("Check the probe targets and [failover] down_after / probe_interval_ms.")
    elif primary_down is not None and kind == "outage":
        to_fix.append("The backup line never became active while the primary was down.")
        suggestions.append("Check the LTE modem, its SIM and signal; run `gateway drill wan`.")
    if fig["shed_watts"] or fig["shed_tiers"]:
        w = f"{fig['shed_watts']:.0f} W" if fig["shed_watts"] else f"tiers up to {fig['shed_tiers']}"
        gained = f", gaining about {fig['minutes_gained']:.0f} min of runtime" if fig["minutes_gained"] else ""
        worked.append(f"Nonessential loads were shed ({w}){gained}.")
    for row in svc.values():
        tgt = row["rto_s"]
        if row["measured_rto_s"] is None:
            to_fix.append(f"{row['name']} was still unreachable when the incident closed.")
        elif tgt is not None and not row["met"]:
            to_fix.append(f"{row['name']} answered again after {duration_text(row['measured_rto_s'])}, over its "
                          f"RTO of {duration_text(tgt)}.")
            suggestions.append(f"Review how {row['name']} is reached over the backup line (LTE priority hosts).")
        else:
            worked.append(f"{row['name']} answered again after {duration_text(row['measured_rto_s'])}"
                          + (f" (RTO {duration_text(tgt)}: met)." if tgt is not None else "."))
    needed = _num(extra.get("runtime_needed_s"))
    margin = _num(extra.get("runtime_margin_pct"))
    margin = 20.0 if margin is None else margin
    rt = fig["runtime_min_s"]
    if needed and rt is not None:
        if rt < needed * (1 + margin / 100):
            to_fix.append(f"UPS runtime fell to {duration_text(rt)}, inside the plan's {margin:.0f} % margin over "
                          f"the {duration_text(needed)} the shutdown needs.")
            suggestions.append("Test the battery (`gateway drill power`), shed more loads earlier, or plan a "
                               "battery replacement.")
        else:
            worked.append(f"UPS runtime stayed above the plan's margin (lowest {duration_text(rt)}).")
    if modem_rungs:
        n = len(modem_rungs)
        to_fix.append(f"LTE recovery needed {n} step{'s' if n > 1 else ''} ({', '.join(modem_rungs)}).")
        suggestions.append("Check the LTE antenna and signal; consider the modem's power-cycle wiring.")
    if flaps:
        to_fix.append(f"A failure came back {flaps} time{'s' if flaps > 1 else ''} within the hold time (flapping).")
        suggestions.append("Ask the ISP about line stability; the failback hold time keeps traffic on LTE meanwhile.")
    if any(k == "ups:comm_lost" for k, _, _ in spans):
        to_fix.append("The gateway lost contact with the UPS.")
        suggestions.append("Check the UPS USB cable and the NUT driver (upsc).")
    if kind == "outage" and target_min is not None:
        if ack_s is None:
            to_fix.append(f"Nobody acknowledged the alert (target {target_min:.0f} min for {severity}).")
            suggestions.append("Check the escalation chain and the duty person's notification channel.")
        elif response["met"]:
            worked.append(f"Acknowledged after {duration_text(ack_s)} by {incident.get('acked_by') or 'someone'} "
                          f"(target {target_min:.0f} min).")
        else:
            to_fix.append(f"Acknowledged after {duration_text(ack_s)}, over the {target_min:.0f} min target.")
    if drill is not None:
        apps_s = _num(drill["time_to_apps_s"])
        if apps_s is not None:
            worked.append(f"Business apps answered through the backup line {duration_text(apps_s)} "
                          "after the drill started.")
        if drill["passed"] is False:
            to_fix.append("The drill did not pass: " + str(results.get("verdict") or "see the steps."))
    runbook = [dict(i) for i in incident.get("checklist") or [] if isinstance(i, dict)]
    undone = [str(i.get("text") or i.get("item")) for i in runbook if not i.get("done")]
    if undone and kind == "outage":
        suggestions.append("Runbook items left open: " + "; ".join(undone) + ".")

    return {
        "incident_id": incident.get("id"), "kind": kind, "site": extra.get("site"),
        "title": incident.get("title") or ", ".join(causes) or kind, "severity": severity, "causes": causes,
        "cause": cause, "causes_detail": detail, "open": closed is None,
        "opened_at": opened, "closed_at": closed, "opened_at_iso": _iso(opened, tz), "closed_at_iso": _iso(closed, tz),
        "duration_s": round(end - opened, 3), "figures": fig, "services": list(svc.values()),
        "response": response, "drill": drill, "runbook": runbook, "worked": worked, "to_fix": to_fix,
        "suggestions": suggestions, "timeline": timeline, "timeline_omitted": omitted, "event_kinds": kinds,
    }


def _since(t: float | None, base: float) -> float | None:
    return None if t is None else round(t - base, 3)


# ------------------------------------------------------------------------------------------ render

_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|#"})


def _md(v: Any) -> str:
    return str(v).replace("\n", " ").translate(_MD_SPECIAL)


def _fig_lines(r: Mapping[str, Any]) -> list[tuple[str, str]]:
    f = r.get("figures") or {}
    rows = [("Duration", duration_text(r.get("duration_s")))]
    if f.get("time_to_backup_s") is not None:
        rows.append(("Time to backup line", duration_text(f["time_to_backup_s"])))
    if f.get("apps_rto_s") is not None:
        rows.append(("Business apps reachable again after", duration_text(f["apps_rto_s"])))
    if f.get("shed_watts"):
        rows.append(("Watts shed", f"{f['shed_watts']:.0f} W"))
    if f.get("minutes_gained"):
        rows.append(("Runtime gained", f"{f['minutes_gained']:.0f} min"))
    if f.get("runtime_min_s") is not None:
        rows.append(("Lowest UPS runtime", duration_text(f["runtime_min_s"])))
    if f.get("charge_min_pct") is not None:
        rows.append(("Lowest charge", f"{f['charge_min_pct']:.0f} %"))
    if f.get("modem_recovery_steps"):
        rows.append(("LTE recovery steps", str(f["modem_recovery_steps"])))
    resp = r.get("response") or {}
    if resp.get("target_min") is not None and r.get("kind") != "drill":
        got = duration_text(resp["ack_s"]) if resp.get("ack_s") is not None else "not acknowledged"
        rows.append(("Acknowledged", f"{got} (target {resp['target_min']:.0f} min)"))
    d = r.get("drill")
    if d:
        if d.get("time_to_failover_s") is not None:
            rows.append(("Drill: time to failover", duration_text(d["time_to_failover_s"])))
        if d.get("time_to_apps_s") is not None:
            rows.append(("Drill: time until business apps answered", duration_text(d["time_to_apps_s"])))
        if d.get("passed") is not None:
            rows.append(("Drill result", "passed" if d["passed"] else "failed"))
    return rows


def render_markdown(r: Mapping[str, Any]) -> str:
    head = f"# Incident #{r.get('incident_id')}: {_md(r.get('title'))}"
    if r.get("kind") == "drill":
        head = f"# Drill report (incident #{r.get('incident_id')}): {_md(r.get('title'))}"
    out = [head, ""]
    if r.get("site"):
        out.append(f"Site: {_md(r['site'])}  ")
    out += [f"Severity: **{_md(r.get('severity'))}**  ",
            f"Started: {_md(r.get('opened_at_iso'))}  ",
            f"Ended: {_md(r.get('closed_at_iso') or 'still open')}  ", "",
            "## Cause", "", _md(r.get("cause")), "", "## Figures", ""]
    out += [f"- {_md(k)}: {_md(v)}" for k, v in _fig_lines(r)]
    for s in r.get("services") or []:
        met = "" if s.get("met") is None else (" (met)" if s["met"] else " (missed)")
        out.append(f"- {_md(s['name'])}: unreachable {duration_text(s.get('down_s'))}, measured RTO "
                   f"{duration_text(s.get('measured_rto_s'))} against {duration_text(s.get('rto_s'))}{met}")
    for title, key in (("What worked", "worked"), ("What to fix", "to_fix"), ("Suggestions", "suggestions")):
        items = r.get(key) or []
        out += ["", f"## {title}", ""] + ([f"- {_md(i)}" for i in items] or ["- nothing noted"])
    d = r.get("drill")
    if d and d.get("steps"):
        out += ["", "## Drill steps", ""] + [f"1. {_md(s)}" for s in d["steps"]]
    if r.get("runbook"):
        out += ["", "## Runbook", ""]
        for i in r["runbook"]:
            who = f" ({_md(i.get('by'))})" if i.get("by") else ""
            out.append(f"- [{'x' if i.get('done') else ' '}] {_md(i.get('text') or i.get('item'))}{who}")
    out += ["", "## Timeline", ""]
    for t in r.get("timeline") or []:
        out.append(f"- {_md(t.get('time'))} (+{duration_text(t.get('offset_s'))}) {_md(t.get('message'))}")
    if r.get("timeline_omitted"):
        out.append(f"- … {r['timeline_omitted']} routine entries omitted")
    return "\n".join(out) + "\n"


def _h(v: Any) -> str:
    return html.escape(str(v), quote=True)


def render_html(r: Mapping[str, Any]) -> str:
    """A printable page with no external resources; every value is escaped."""
    title = f"Incident #{_h(r.get('incident_id'))}: {_h(r.get('title'))}"
    p = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>",
         "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">",
         "<style>body{font:14px/1.45 system-ui,sans-serif;max-width:52em;margin:1em auto;padding:0 1em;color:#111}"
         "h1{font-size:1.4em}h2{font-size:1.1em;border-bottom:1px solid #ccc;margin-top:1.4em}"
         "table{border-collapse:collapse}td,th{padding:.15em .6em;text-align:left;vertical-align:top}"
         ".sev-critical{color:#a00}.sev-high{color:#a50}.warning td{color:#a50}.critical td{color:#a00}"
         ".muted{color:#666}@media print{body{margin:0}}</style></head><body>",
         f"<h1>{title}</h1>"]
    if r.get("site"):
        p.append(f"<p class=\"muted\">{_h(r['site'])}</p>")
    sev = str(r.get("severity"))
    p.append("<table>"
             f"<tr><th>Severity</th><td class=\"sev-{_h(sev)}\">{_h(sev)}</td></tr>"
             f"<tr><th>Started</th><td>{_h(r.get('opened_at_iso'))}</td></tr>"
             f"<tr><th>Ended</th><td>{_h(r.get('closed_at_iso') or 'still open')}</td></tr></table>")
    p.append(f"<h2>Cause</h2><p>{_h(r.get('cause'))}</p><h2>Figures</h2><table>")
    p += [f"<tr><th>{_h(k)}</th><td>{_h(v)}</td></tr>" for k, v in _fig_lines(r)]
    p.append("</table>")
    if r.get("services"):
        p.append("<h2>Business apps</h2><table><tr><th>App</th><th>Unreachable</th><th>Measured RTO</th>"
                 "<th>Target</th><th></th></tr>")
        for s in r["services"]:
            met = "" if s.get("met") is None else ("met" if s["met"] else "missed")
            p.append(f"<tr><td>{_h(s['name'])}</td><td>{_h(duration_text(s.get('down_s')))}</td>"
                     f"<td>{_h(duration_text(s.get('measured_rto_s')))}</td>"
                     f"<td>{_h(duration_text(s.get('rto_s')))}</td><td>{_h(met)}</td></tr>")
        p.append("</table>")
    for heading, key in (("What worked", "worked"), ("What to fix", "to_fix"), ("Suggestions", "suggestions")):
        items = r.get(key) or []
        p.append(f"<h2>{heading}</h2><ul>" + ("".join(f"<li>{_h(i)}</li>" for i in items) or
                                              "<li class=\"muted\">nothing noted</li>") + "</ul>")
    d = r.get("drill")
    if d and d.get("steps"):
        p.append("<h2>Drill steps</h2><ol>" + "".join(f"<li>{_h(s)}</li>" for s in d["steps"]) + "</ol>")
    if r.get("runbook"):
        p.append("<h2>Runbook</h2><ul>")
        for i in r["runbook"]:
            box = "&#9745;" if i.get("done") else "&#9744;"
            who = f" <span class=\"muted\">({_h(i.get('by'))})</span>" if i.get("by") else ""
            p.append(f"<li>{box} {_h(i.get('text') or i.get('item'))}{who}</li>")
        p.append("</ul>")
    p.append("<h2>Timeline</h2><table>")
    for t in r.get("timeline") or []:
        p.append(f"<tr class=\"{_h(t.get('severity'))}\"><td>{_h(t.get('time'))}</td>"
                 f"<td class=\"muted\">+{_h(duration_text(t.get('offset_s')))}</td><td>{_h(t.get('message'))}</td></tr>")
    if r.get("timeline_omitted"):
        p.append(f"<tr><td></td><td></td><td class=\"muted\">… {_h(r['timeline_omitted'])} routine entries "
                 "omitted</td></tr>")
    p.append("</table></body></html>")
    return "\n".join(p)
