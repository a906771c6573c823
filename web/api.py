"""The JSON API under /api/v1 (see DESIGN.md "HTTP" and web/openapi.py, which documents exactly this)."""

from __future__ import annotations

import importlib
import logging
import re
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from gateway.core.errors import ActionRejected, GatewayError
from web import auth
from web.model import maintenance_rows
from web.reports import report_response
from web.util import MAX_ID, ApiFault, digest, iso, json_body, not_modified, parse_ts

log = logging.getLogger("gateway.web")
bp = Blueprint("api", __name__, url_prefix="/api/v1")

INITIALS = re.compile(r"[A-Za-z]{1,4}")
# ActionRejected codes that mean "your input is wrong" (400); anything else conflicts with the state (409).
_BAD_INPUT = ("bad_", "invalid", "missing", "unknown_service", "unknown_load", "unknown_window", "unknown_order",
              "unknown_target", "unknown_kind", "too_")


def be() -> Any:
    return current_app.config["BACKEND"]


def cached(key: Any, build: Any) -> Any:
    """One render of ``key`` shared by the clients asking within STATUS_CACHE_S (web/cache.py)."""
    return current_app.config["RENDER_CACHE"].get(key, build, current_app.config["STATUS_CACHE_S"])


def submit(action: str, params: dict[str, Any], who: str) -> Response:
    """Run an action on the daemon; every refusal is a JSON 4xx and nothing is half-applied by us."""
    current_app.config["RENDER_CACHE"].clear()  # the next status or page shows what the action did
    try:
        result = be().submit(action, params, who)
    except ActionRejected as exc:
        code = exc.code or "rejected"
        if code == "timeout":
            raise ApiFault(503, code, exc.message) from None
        status = 400 if code.startswith(_BAD_INPUT) else 409
        raise ApiFault(status, code, exc.message) from None
    except GatewayError as exc:
        raise ApiFault(503, "unavailable", f"{action}: {exc}") from None
    if not isinstance(result, dict):
        result = {"result": result}
    return jsonify(result)


def int_arg(name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ApiFault(400, "bad_query", f"{name} must be a whole number") from None
    if not lo <= v <= hi:
        raise ApiFault(400, "bad_query", f"{name} must be between {lo} and {hi}")
    return v


def flag_arg(name: str) -> bool:
    raw = (request.args.get(name) or "").lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ApiFault(400, "bad_query", f"{name} must be 1 or 0")


def check_id(value: int) -> int:
    if value > MAX_ID:
        raise ApiFault(404, "not_found", "no such id")
    return value


def _event(e: dict[str, Any]) -> dict[str, Any]:
    return {"id": e["id"], "ts": e["ts"], "time": iso(e["ts"]), "kind": e["kind"], "message": e["message"],
            "severity": e.get("severity") or "info", "incident_id": e.get("incident_id"),
            "data": e.get("data") if isinstance(e.get("data"), dict) else {}}


def incident_json(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for k in ("opened_at", "closed_at", "acked_at"):
        out[k + "_iso"] = iso(row.get(k))
    out["open"] = row.get("closed_at") is None
    for k, empty in (("causes", []), ("checklist", []), ("data", {})):
        if not isinstance(out.get(k), type(empty)):
            out[k] = empty
    return out


def drill_json(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["started_at_iso"] = iso(row.get("started_at"))
    out["ended_at_iso"] = iso(row.get("ended_at"))
    if not isinstance(out.get("results"), (dict, list)):
        out["results"] = {}
    return out


# ------------------------------------------------------------------------------------------- reading
def _status_render() -> tuple[str, bytes]:
    snap = be().snapshot()
    return digest(snap), jsonify(snap).get_data()


@bp.get("/status")
def status() -> Any:
    tag, body = cached("status", _status_render)
    if not_modified(tag):
        resp = Response(status=304)
    else:
        resp = Response(body, mimetype="application/json")
    resp.set_etag(tag, weak=True)
    resp.headers["Cache-Control"] = "no-cache"
    return resp


@bp.get("/events")
def events() -> Any:
    raw = request.args.get("since")
    since_id, since_ts = 0, None
    if raw:
        if re.fullmatch(r"\d{1,18}", raw):
            since_id = int(raw)
        else:
            since_ts = parse_ts(raw)
            if since_ts is None:
                raise ApiFault(400, "bad_query", "since must be an event id or an ISO-8601 time")
    limit = int_arg("limit", 200, 1, 1000) or 200
    incident = int_arg("incident", None, 0, MAX_ID)
    kind = request.args.get("kind") or None
    rows = be().reader.events(since_id=since_id, limit=limit, kind_prefix=kind, incident_id=incident,
                              since_ts=since_ts)
    return jsonify([_event(e) for e in rows])


@bp.get("/incidents")
def incidents() -> Any:
    limit = int_arg("limit", 100, 1, 1000) or 100
    rows = be().reader.incidents(open_only=flag_arg("open"), limit=limit)
    return jsonify([incident_json(r) for r in rows])


@bp.get("/incidents/<int:incident_id>")
def incident(incident_id: int) -> Any:
    row = be().reader.incident(check_id(incident_id))
    if row is None:
        raise ApiFault(404, "not_found", f"no incident #{incident_id}")
    out = incident_json(row)
    out["timeline"] = [_event(e) for e in be().reader.events(incident_id=incident_id, limit=1000)]
    return jsonify(out)


@bp.get("/incidents/<int:incident_id>/report")
def report(incident_id: int) -> Any:
    fmt = request.args.get("format", "md")
    if fmt not in ("md", "markdown", "json", "html"):
        raise ApiFault(400, "bad_query", "format must be md, json or html")
    return report_response(be(), check_id(incident_id), fmt)


@bp.get("/drills")
def drills() -> Any:
    limit = int_arg("limit", 50, 1, 500) or 50
    return jsonify([drill_json(r) for r in be().reader.drills(limit=limit)])


@bp.get("/drills/<int:drill_id>")
def drill(drill_id: int) -> Any:
    rows = be().reader.query("SELECT * FROM drills WHERE id = ?", [check_id(drill_id)])
    if not rows:
        raise ApiFault(404, "not_found", f"no drill #{drill_id}")
    return jsonify(drill_json(rows[0]))


@bp.get("/maintenance")
def maintenance() -> Any:
    return jsonify(maintenance_rows(be()))


@bp.get("/orders")
def orders() -> Any:
    rows = be().reader.orders(open_only=flag_arg("open"))
    for r in rows:
        r["created_at_iso"] = iso(r.get("created_at"))
        r["reconciled_at_iso"] = iso(r.get("reconciled_at"))
    return jsonify(rows)


@bp.get("/openapi.json")
def openapi() -> Any:
    from web.openapi import document

    return jsonify(document())


# ------------------------------------------------------------------------------------------- actions
def _str(body: dict[str, Any], key: str, required: bool = False, max_len: int = 200) -> str | None:
    v = body.get(key)
    if v is None:
        if required:
            raise ApiFault(400, "missing_" + key, f"{key} is required")
        return None
    if not isinstance(v, str) or len(v) > max_len:
        raise ApiFault(400, "bad_" + key, f"{key} must be text of at most {max_len} characters")
    return v


def _bool(body: dict[str, Any], key: str) -> bool | None:
    v = body.get(key)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise ApiFault(400, "bad_" + key, f"{key} must be true or false")
    return v


def _choice(body: dict[str, Any], key: str, choices: tuple[str, ...]) -> str:
    v = body.get(key)
    if v not in choices:
        raise ApiFault(400, "bad_" + key, f"{key} must be one of: {', '.join(choices)}")
    return str(v)


@bp.post("/failover")
def failover() -> Any:
    who = auth.require_admin().who
    target = _choice(json_body(), "target", ("lte", "wired", "auto"))
    return submit("failover", {"target": target}, who)


@bp.post("/loads/<path:name>")
def load(name: str) -> Any:
    who = auth.require_admin().who
    if name not in {ld.name for ld in be().config.loads}:
        raise ApiFault(404, "unknown_load", f"no load named {name!r}")
    state = _choice(json_body(), "state", ("on", "off", "auto"))
    return submit("load", {"name": name, "state": state}, who)


@bp.post("/alerts/ack")
def ack() -> Any:
    who = auth.require_admin().who
    body = json_body()
    params: dict[str, Any] = {}
    iid = body.get("incident_id")
    if iid is not None:
        if not isinstance(iid, int) or isinstance(iid, bool) or not 0 < iid <= MAX_ID:
            raise ApiFault(400, "bad_incident_id", "incident_id must be a positive whole number")
        params["incident_id"] = iid
    return submit("ack", params, who)


@bp.post("/drills")
def start_drill() -> Any:
    who = auth.require_admin().who
    body = json_body()
    params: dict[str, Any] = {"kind": _choice(body, "kind", ("power", "wan"))}
    minutes = body.get("minutes")
    if minutes is not None:
        if not isinstance(minutes, (int, float)) or isinstance(minutes, bool) or not 0 < minutes <= 240:
            raise ApiFault(400, "bad_minutes", "minutes must be a number above 0 and at most 240")
        params["minutes"] = float(minutes)
    for key in ("mains_cut", "only_if_due"):
        v = _bool(body, key)
        if v is not None:
            params[key] = v
    return submit("drill", params, who)


@bp.post("/maintenance")
def add_window() -> Any:
    who = auth.require_admin().who
    body = json_body()
    params: dict[str, Any] = {"name": _str(body, "name", required=True, max_len=100)}
    kind = body.get("kind", "window")
    if kind not in ("window", "freeze"):
        raise ApiFault(400, "bad_kind", "kind must be window or freeze")
    params["kind"] = kind
    for key in ("start", "end", "recurrence"):
        v = _str(body, key, max_len=100)
        if v:
            params[key] = v
    params["description"] = _str(body, "description", max_len=2000) or ""
    services = body.get("services", [])
    if not isinstance(services, list) or not all(isinstance(s, str) for s in services) or len(services) > 50:
        raise ApiFault(400, "bad_services", "services must be a list of service names")
    params["services"] = services
    for key in ("switch_to_lte", "emergency"):
        flag = _bool(body, key)
        if flag is not None:
            params[key] = flag
    return submit("maintenance.add", params, who)


@bp.delete("/maintenance/<int:window_id>")
def cancel_window(window_id: int) -> Any:
    who = auth.require_admin().who
    return submit("maintenance.cancel", {"id": check_id(window_id)}, who)


@bp.post("/orders")
def order_number() -> Any:
    who = auth.require_reader_post()
    body = json_body()
    initials = body.get("initials")
    if not isinstance(initials, str) or not INITIALS.fullmatch(initials):
        raise ApiFault(400, "bad_initials", "initials must be 1-4 letters")
    note = _str(body, "note", max_len=500) or ""
    return submit("order_number", {"initials": initials, "note": note}, who)


@bp.post("/orders/<number>/reconcile")
def reconcile(number: str) -> Any:
    who = auth.require_admin().who
    if len(number) > 64:
        raise ApiFault(404, "unknown_order", "no such order")
    return submit("order.reconcile", {"number": number}, who)


def module_available(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True
