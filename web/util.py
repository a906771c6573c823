"""Small helpers shared by the page and the API: JSON errors, ETags, time formatting, body parsing."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from typing import Any

from flask import Response, jsonify, request

# Keys whose value changes on every snapshot without the office's state changing: left out of ETags.
VOLATILE = frozenset({"updated_at", "uptime_s", "last_reading_at", "checked_at", "duration_s"})
MAX_ID = 2**62  # larger ids cannot be in SQLite; answer 404 instead of overflowing


class ApiFault(Exception):
    """Raised by a view to answer with a JSON error (always 4xx for the caller's own mistakes)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    resp = jsonify({"error": {"code": code, "message": message}})
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def digest(*parts: Any) -> str:
    """A short hash of the office's state, ignoring timestamps that tick on every read."""
    raw = json.dumps([_stable(p) for p in parts], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()


def not_modified(etag: str) -> bool:
    """True when the client's If-None-Match already names this (weak) ETag."""
    inm = request.if_none_match
    return inm.contains_weak(etag) or inm.star_tag


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(float(ts), UTC).isoformat(timespec="seconds")
    except (ValueError, OverflowError, OSError, TypeError):
        return None


def parse_ts(value: Any) -> float | None:
    """A timestamp from a number (epoch seconds) or an ISO-8601 string; None when not one."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            d = datetime.fromisoformat(value)
        except ValueError:
            return None
        return (d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp()
    return None


def ago(ts: float | None, now: float | None = None) -> str:
    """'42 s', '5 min', '3 h 10 min', '2 d' — how long ago, for people."""
    if ts is None:
        return "—"
    return duration(max(0.0, (now or time.time()) - float(ts)))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(max(0, seconds))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m:02d} min" if m else f"{h} h"
    return f"{h // 24} d"


def json_body(allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The request's JSON object (an empty body counts as {}); 400/415 JSON errors otherwise."""
    if request.content_length and request.content_length > 65536:
        raise ApiFault(413, "too_large", "the request body is larger than 64 KiB")
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    ctype = request.mimetype or ""
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            return {k: v for k, v in request.form.items()}
        raise ApiFault(415, "unsupported_media_type", "send the body as application/json")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiFault(400, "bad_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiFault(400, "bad_json", "the body must be a JSON object")
    return body
