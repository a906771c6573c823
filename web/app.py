"""The status page and the JSON API: a Flask app factory. It never talks to hardware."""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import datetime
from typing import Any

from flask import Flask, Response, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from gateway.core.errors import GatewayError
from web import auth
from web.backend import Backend
from web.cache import RenderCache
from web.metrics import WebMetrics
from web.model import signal_bars, site_tz
from web.util import ApiFault, ago, duration, error, iso

log = logging.getLogger("gateway.web")

OFFLINE_KIT_MAX_BYTES = 25 * 1024 * 1024
# How long concurrent clients share one rendered status (JSON and the page's model); see web/cache.py.
STATUS_CACHE_S = 0.25


def _wants_html() -> bool:
    if request.path.startswith("/api/") or request.path in ("/metrics", "/healthz"):
        return False
    accept = request.accept_mimetypes
    if not accept:
        return True  # no Accept header on a page's address: a person's tool, answer as a page
    return accept["text/html"] > 0 and accept["text/html"] >= accept["application/json"]


def create_app(backend: Backend) -> Flask:
    app = Flask(__name__)
    app.config["BACKEND"] = backend
    # Sessions survive daemon restarts: the key comes from the daemon's token (kept in the state dir).
    app.secret_key = hashlib.sha256(b"office-gateway session:" + str(backend.token).encode()).digest()
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_NAME="session",
        PERMANENT_SESSION_LIFETIME=backend.config.web.session_minutes * 60,
        MAX_CONTENT_LENGTH=OFFLINE_KIT_MAX_BYTES, POLL_MS=5000, JSON_SORT_KEYS=False,
        LOGIN_LIMITER=auth.LoginLimiter(), METRICS=WebMetrics(backend),
        STATUS_CACHE_S=STATUS_CACHE_S, RENDER_CACHE=RenderCache(),
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    metrics: WebMetrics = app.config["METRICS"]

    from web import api, pages
    from web.fastpath import StatusFastPath

    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
    app.wsgi_app = StatusFastPath(app)  # type: ignore[method-assign]

    # ---------------------------------------------------------------------------------- filters
    def local(ts: Any, fmt: str = "%H:%M") -> str:
        try:
            return datetime.fromtimestamp(float(ts), site_tz(backend.config)).strftime(fmt)
        except (TypeError, ValueError, OverflowError, OSError):
            return "—"

    def num(v: Any, digits: int = 0, unit: str = "") -> str:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return "—"
        return f"{v:.{digits}f}{unit}"

    def size(n: Any) -> str:
        n = float(n or 0)
        for unit in ("B", "KB", "MB", "GB"):
            if n < 1000 or unit == "GB":
                return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
            n /= 1000
        return f"{n:.1f} GB"

    app.jinja_env.filters.update(local=local, ago=ago, duration=duration, num=num, size=size, iso=iso,
                                 bars=signal_bars)
    app.jinja_env.globals.update(csrf_token=auth.csrf_token, site=lambda: backend.config.site.name)
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True

    # ------------------------------------------------------------------------------ access rules
    OPEN = {"pages.login", "pages.ack_link", "healthz", "static"}

    @app.before_request
    def _access() -> Any:
        g.started = time.perf_counter()
        if request.endpoint in OPEN:
            return None
        if not auth.can_read():
            if _wants_html():
                from flask import redirect

                return redirect(f"/login?next={request.full_path.rstrip('?')}")
            raise ApiFault(401, "login_required", "log in (or send a bearer token) to read this page",
                           {"WWW-Authenticate": 'Bearer realm="office-gateway"'})
        return None

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        if resp.mimetype == "text/html":
            # Everything is served by the box itself: the browser may not fetch anything from elsewhere.
            resp.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                    "script-src 'self'; frame-ancestors 'none'; form-action 'self'")
            resp.headers.setdefault("X-Frame-Options", "DENY")
        started = g.get("started")
        if started is not None:
            metrics.observe(request.method, request.endpoint or "none", resp.status_code,
                            time.perf_counter() - started)
        return resp

    # ---------------------------------------------------------------------------------- errors
    def _error_page(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Any:
        if _wants_html():
            title = {401: "Login needed", 403: "Not allowed", 404: "Not found", 413: "Too large",
                     429: "Too many attempts"}.get(status, "Could not do that")
            return render_template("message.html", title=title, text=message, code=code), status, headers or {}
        return error(status, code, message, headers)

    @app.errorhandler(ApiFault)
    def _fault(exc: ApiFault) -> Any:
        return _error_page(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge) -> Any:
        limit = app.config["MAX_CONTENT_LENGTH"]
        return _error_page(413, "too_large", f"the upload is larger than {limit / 1e6:.1f} MB")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        code = (exc.name or "error").lower().replace(" ", "_")
        status = exc.code or 400
        headers = {"Allow": ", ".join(exc.valid_methods)} if getattr(exc, "valid_methods", None) else None  # type: ignore[attr-defined]
        return _error_page(status, code, exc.description or exc.name, headers)

    @app.errorhandler(GatewayError)
    def _gateway(exc: GatewayError) -> Any:
        log.warning("web: %s %s: %s", request.method, request.path, exc)
        return _error_page(503, "unavailable", str(exc))

    @app.errorhandler(Exception)
    def _bug(exc: Exception) -> Any:
        log.exception("web: %s %s failed", request.method, request.path)
        return error(500, "internal", "internal error (logged)")

    # ---------------------------------------------------------------------------------- plain routes
    @app.get("/healthz")
    def healthz() -> Any:
        ready = bool(getattr(backend, "ready", True))
        snap_daemon: dict[str, Any] = {}
        if ready:
            try:
                snap_daemon = (backend.snapshot() or {}).get("daemon") or {}
            except Exception:
                ready = False
        body = {"ok": ready, "services": snap_daemon.get("services", []),
                "not_built": snap_daemon.get("not_built", []), "uptime_s": snap_daemon.get("uptime_s")}
        resp = jsonify(body)
        resp.status_code = 200 if ready else 503
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.get("/metrics")
    def prometheus() -> Any:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return app
