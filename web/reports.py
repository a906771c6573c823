"""Post-incident reports: rendered by gateway.core.report when it is there, else the stored report row."""

from __future__ import annotations

import html
import importlib
import logging
import re
from typing import Any

from flask import Response, jsonify

from web.util import ApiFault

log = logging.getLogger("gateway.web")


def _core_report() -> Any:
    try:
        return importlib.import_module("gateway.core.report")
    except ImportError:
        return None


def report_extra(be: Any, incident_id: int) -> dict[str, Any]:
    """The plan figures gateway.core.report.build_report takes besides the journal rows."""
    cfg = be.config
    primary, backup = cfg.uplink("primary"), cfg.uplink("backup")
    extra: dict[str, Any] = {
        "site": cfg.site.name, "tz": cfg.site.timezone,
        "response_targets_min": {"critical": cfg.notify.response_critical_min,
                                 "high": cfg.notify.response_high_min},
        "services": [{"name": s.name, "rto_s": s.rto_s, "department": s.department} for s in cfg.services],
        "runtime_needed_s": cfg.ups.shutdown_duration_s + cfg.ups.shutdown_reserve_s,
        "primary": primary.name if primary else None, "backup": backup.name if backup else None,
    }
    drills = be.reader.query("SELECT * FROM drills WHERE incident_id = ? ORDER BY id DESC LIMIT 1", [incident_id])
    if drills:
        extra["drill"] = drills[0]
    return extra


def markdown_to_html(md: str) -> str:
    """Enough Markdown for our reports: headings, lists, checkboxes, paragraphs, **bold**, `code`."""
    out: list[str] = []
    in_list = False

    def inline(s: str) -> str:
        s = html.escape(s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", s)

    for line in md.splitlines():
        m = re.match(r"(#{1,4})\s+(.*)", line)
        li = re.match(r"\s*[-*]\s+(.*)", line)
        if not li and in_list:
            out.append("</ul>")
            in_list = False
        if m:
            n = len(m[1])
            out.append(f"<h{n}>{inline(m[2])}</h{n}>")
        elif li:
            if not in_list:
                out.append("<ul>")
                in_list = True
            text = li[1]
            box = re.match(r"\[( |x|X)\]\s+(.*)", text)
            if box:
                mark = "☑" if box[1].lower() == "x" else "☐"
                out.append(f"<li>{mark} {inline(box[2])}</li>")
            else:
                out.append(f"<li>{inline(text)}</li>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    if in_list:
        out.append("</ul>")
    return "\n".join(out)


def _page(title: str, body: str) -> str:
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><link rel=\"stylesheet\" href=\"/static/app.css\"></head>"
            f"<body><main class=\"report\">{body}</main></body></html>")


def report_response(be: Any, incident_id: int, fmt: str) -> Any:
    inc = be.reader.incident(incident_id)
    if inc is None:
        raise ApiFault(404, "not_found", f"no incident #{incident_id}")
    row = be.reader.report(incident_id)
    mod = _core_report()
    data: Any = row.get("json") if row else None
    md: str | None = row.get("markdown") if row else None
    page: str | None = None
    if mod is not None:
        try:
            if not isinstance(data, dict):  # no stored report (yet): build one from the journal as it stands
                events = be.reader.events(incident_id=incident_id, limit=100_000)
                data = mod.build_report(inc, events, report_extra(be, incident_id))
            md = mod.render_markdown(data)
            page = mod.render_html(data)
        except Exception:
            log.exception("report #%s: gateway.core.report failed; using the stored report", incident_id)
            data, md, page = (row.get("json"), row.get("markdown"), None) if row else (None, None, None)
    if data is None and md is None:
        raise ApiFault(404, "no_report", f"incident #{incident_id} has no report yet")
    if fmt == "json":
        return jsonify(data if isinstance(data, (dict, list)) else {"markdown": md or ""})
    md = md if isinstance(md, str) else ""
    if fmt == "html":
        body = page if isinstance(page, str) else _page(f"Incident #{incident_id} report", markdown_to_html(md))
        resp = Response(body, mimetype="text/html")
        # the report page is self-contained and carries its own <style> (printable on its own)
        resp.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src data:"
        return resp
    return Response(md, mimetype="text/markdown")
