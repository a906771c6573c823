"""Post-incident reports: rendered by gateway.core.report when it is there, else the stored report row."""

from __future__ import annotations

import html
import importlib
import inspect
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


def _call(fn: Any, **available: Any) -> Any:
    """Call fn with the arguments it names among those we have (the helper's signature may grow)."""
    params = inspect.signature(fn).parameters
    kwargs = {k: v for k, v in available.items() if k in params}
    return fn(**kwargs)


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
    mod = _core_report()
    data: Any = None
    md: str | None = None
    rendered_html: str | None = None
    if mod is not None and hasattr(mod, "build_report"):
        try:
            events = be.reader.events(incident_id=incident_id, limit=5000)
            data = _call(mod.build_report, incident=inc, events=events, config=be.config, cfg=be.config,
                         reader=be.reader, journal=be.reader)
            if hasattr(mod, "render_markdown"):
                md = _call(mod.render_markdown, report=data, rep=data, r=data, config=be.config)
            if hasattr(mod, "render_html"):
                rendered_html = _call(mod.render_html, report=data, rep=data, r=data, config=be.config)
        except Exception:
            log.exception("report #%s: gateway.core.report failed; using the stored report", incident_id)
            data = md = rendered_html = None
    if data is None:
        row = be.reader.report(incident_id)
        if row is None:
            raise ApiFault(404, "no_report", f"incident #{incident_id} has no report yet"
                           + (" (it is still open)" if inc.get("closed_at") is None else ""))
        data, md = row.get("json"), row.get("markdown")
    if fmt == "json":
        if hasattr(data, "__dataclass_fields__"):
            import dataclasses

            data = dataclasses.asdict(data)
        return jsonify(data if isinstance(data, (dict, list)) else {"report": data})
    md = md if isinstance(md, str) else ""
    if fmt == "html":
        body = rendered_html if isinstance(rendered_html, str) else _page(f"Incident #{incident_id} report",
                                                                          markdown_to_html(md))
        return Response(body, mimetype="text/html")
    return Response(md, mimetype="text/markdown")
