"""The OpenAPI 3.0 document for /api/v1, written to match web/api.py (tests/web/test_openapi.py checks it)."""

from __future__ import annotations

from typing import Any

NUM = {"type": "number", "nullable": True}
STR = {"type": "string", "nullable": True}
INT = {"type": "integer", "nullable": True}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {"default": _json(_ref("Error"), "An error: code and message (4xx for the caller's mistakes)")}
ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
SECURED: list[dict[str, list[str]]] = [{"bearer": []}, {"session": []}]


def _get(summary: str, schema: dict[str, Any], params: list[dict[str, Any]] | None = None,
         extra: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": _json(schema), **(extra or {}), **ERRORS}}
    if params:
        op["parameters"] = params
    return op


def _action(summary: str, body: dict[str, Any] | None, params: list[dict[str, Any]] | None = None,
            required_body: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "security": SECURED,
                          "responses": {"200": _json(_ref("ActionResult")), **ERRORS}}
    if body is not None:
        op["requestBody"] = {"required": required_body, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


def _q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def document() -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
        "ActionResult": {"type": "object", "description": "What the daemon did; usually has a message",
                         "properties": {"message": {"type": "string"}}},
        "Status": {
            "type": "object", "required": ["power"],
            "properties": {
                "updated_at": {"type": "string"},
                "power": {"type": "object", "required": ["state"], "properties": {
                    "state": {"type": "string",
                              "enum": ["online", "on_battery", "low_battery", "comm_lost", "shutting_down"]},
                    "ups": {"type": "object", "properties": {
                        "status": {"type": "array", "items": {"type": "string"}}, "charge_pct": NUM,
                        "runtime_s": NUM, "load_pct": NUM, "input_voltage": NUM}}}},
                "loads": {"type": "array", "items": {"type": "object", "required": ["name", "state"], "properties": {
                    "name": {"type": "string"}, "switch": STR, "port": INT, "tier": INT,
                    "state": {"type": "string", "enum": ["on", "off"]}, "reason": STR}}},
                "uplinks": {"type": "array", "items": {"type": "object", "required": ["name", "state", "active"],
                                                       "properties": {
                    "name": {"type": "string"},
                    "state": {"type": "string", "enum": ["up", "degraded", "down", "standby"]},
                    "active": {"type": "boolean"}, "rtt_ms": NUM, "loss_pct": NUM}}},
                "modem": {"type": "object", "properties": {
                    "present": {"type": "boolean"}, "sim": STR, "registration": STR, "operator": STR,
                    "rssi_dbm": NUM, "technology": STR, "data_used_bytes": NUM}},
                "incident": {"type": "object", "nullable": True},
                "override": {"type": "string", "nullable": True, "enum": ["lte", "wired", None]},
            }},
        "Event": {"type": "object", "required": ["id", "ts", "kind", "message"], "properties": {
            "id": {"type": "integer"}, "ts": {"type": "number"}, "time": STR, "kind": {"type": "string"},
            "message": {"type": "string"}, "severity": {"type": "string"}, "incident_id": INT,
            "data": {"type": "object"}}},
        "Incident": {"type": "object", "required": ["id", "open"], "properties": {
            "id": {"type": "integer"}, "kind": STR, "severity": STR, "title": STR, "open": {"type": "boolean"},
            "opened_at": NUM, "closed_at": NUM, "acked_at": NUM, "acked_by": STR,
            "causes": {"type": "array"}, "checklist": {"type": "array"}, "data": {"type": "object"}}},
        "Drill": {"type": "object", "required": ["id"], "properties": {
            "id": {"type": "integer"}, "kind": STR, "status": STR, "started_at": NUM, "ended_at": NUM,
            "incident_id": INT}},
        "Maintenance": {"type": "object", "required": ["name", "kind", "next_start"], "properties": {
            "id": INT, "name": {"type": "string"}, "kind": {"type": "string"}, "start": STR, "end": STR,
            "recurrence": STR, "services": {"type": "array", "items": {"type": "string"}},
            "switch_to_lte": {"type": "boolean"}, "description": {"type": "string"}, "next_start": STR,
            "next_end": STR, "source": {"type": "string"}}},
        "Order": {"type": "object", "required": ["id", "number", "initials"], "properties": {
            "id": {"type": "integer"}, "number": {"type": "string"}, "initials": {"type": "string"},
            "created_at": NUM, "note": STR, "reconciled_at": NUM, "reconciled_by": STR}},
    }
    incident = _ref("Incident")
    paths: dict[str, Any] = {
        "/api/v1/status": {"get": _get("The daemon's snapshot (weak ETag; If-None-Match gives 304)", _ref("Status"),
                                       [{"name": "If-None-Match", "in": "header", "required": False,
                                         "schema": {"type": "string"}}],
                                       {"304": {"description": "Not modified since the ETag given"}})},
        "/api/v1/events": {"get": _get("Journal events after an id, or since an ISO-8601 time",
                                       {"type": "array", "items": _ref("Event")}, [
            _q("since", {"type": "string"}, "event id (exclusive) or ISO-8601 time"),
            _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "at most this many (200)"),
            _q("kind", {"type": "string"}, "only kinds starting with this"),
            _q("incident", {"type": "integer", "minimum": 0}, "only this incident's events")])},
        "/api/v1/incidents": {"get": _get("Incidents, newest first", {"type": "array", "items": incident}, [
            _q("open", {"type": "string", "enum": ["0", "1"]}, "1: only the open incident"),
            _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "at most this many (100)")])},
        "/api/v1/incidents/{id}": {"get": _get("One incident with its timeline", {"allOf": [incident, {
            "type": "object", "properties": {"timeline": {"type": "array", "items": _ref("Event")}}}]}, [ID_PARAM])},
        "/api/v1/incidents/{id}/report": {"get": {
            "summary": "The post-incident report: Markdown, or ?format=json|html",
            "parameters": [ID_PARAM, _q("format", {"type": "string", "enum": ["md", "json", "html"]}, "md (default)")],
            "responses": {"200": {"description": "The report", "content": {
                "text/markdown": {"schema": {"type": "string"}}, "text/html": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}}}}, **ERRORS}}},
        "/api/v1/drills": {
            "get": _get("Drills, newest first", {"type": "array", "items": _ref("Drill")},
                        [_q("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "at most this many (50)")]),
            "post": _action("Start a drill (action drill)", {"type": "object", "required": ["kind"], "properties": {
                "kind": {"type": "string", "enum": ["power", "wan"]},
                "minutes": {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": 240},
                "mains_cut": {"type": "boolean"}, "only_if_due": {"type": "boolean"}}})},
        "/api/v1/drills/{id}": {"get": _get("One drill with its results", _ref("Drill"), [ID_PARAM])},
        "/api/v1/maintenance": {
            "get": _get("Maintenance windows (config and added) with their next start",
                        {"type": "array", "items": _ref("Maintenance")}),
            "post": _action("Add a maintenance window (action maintenance.add)", {
                "type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 100},
                    "kind": {"type": "string", "enum": ["window", "freeze"]},
                    "start": {"type": "string"}, "end": {"type": "string"}, "recurrence": {"type": "string"},
                    "services": {"type": "array", "items": {"type": "string"}},
                    "switch_to_lte": {"type": "boolean"}, "description": {"type": "string"},
                    "emergency": {"type": "boolean"}}})},
        "/api/v1/maintenance/{id}": {"delete": _action("Cancel a maintenance window (action maintenance.cancel)",
                                                       None, [ID_PARAM])},
        "/api/v1/failover": {"post": _action("Manual failover (action failover)", {
            "type": "object", "required": ["target"],
            "properties": {"target": {"type": "string", "enum": ["lte", "wired", "auto"]}}})},
        "/api/v1/loads/{name}": {"post": _action("Switch a PoE load on, off, or back to automatic (action load)", {
            "type": "object", "required": ["state"],
            "properties": {"state": {"type": "string", "enum": ["on", "off", "auto"]}}},
            [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}])},
        "/api/v1/alerts/ack": {"post": _action("Acknowledge alerts: stops escalation (action ack)", {
            "type": "object", "properties": {"incident_id": {"type": "integer", "minimum": 1}}},
            required_body=False)},
        "/api/v1/orders": {
            "get": _get("Temporary order numbers", {"type": "array", "items": _ref("Order")},
                        [_q("open", {"type": "string", "enum": ["0", "1"]}, "1: only those not reconciled")]),
            "post": {**_action("A temporary order number for staff initials (action order_number)", {
                "type": "object", "required": ["initials"], "properties": {
                    "initials": {"type": "string", "pattern": "^[A-Za-z]{1,4}$"},
                    "note": {"type": "string", "maxLength": 500}}}),
                # staff on the LAN need no login (read_only = "lan"), only their page's CSRF token
                "security": [{}, *SECURED]}},
        "/api/v1/orders/{number}/reconcile": {"post": _action(
            "Mark a temporary order as entered in the CRM (action order.reconcile)", None,
            [{"name": "number", "in": "path", "required": True, "schema": {"type": "string"}}])},
        "/healthz": {"get": {"summary": "200 when the daemon is ready, 503 otherwise", "responses": {
            "200": _json({"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}}),
            "503": _json({"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}},
                         "Not ready"), **ERRORS}}},
        "/metrics": {"get": {"summary": "Prometheus text format", "responses": {
            "200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
            **ERRORS}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "Office Gateway API", "version": "1",
                 "description": "Status, journal and admin actions of the office gateway. Actions need a "
                                "bearer token or the admin session cookie with its X-CSRF-Token header."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "session"}}},
    }
