"""The HTML side: status page and its live fragment, login, admin forms, acknowledge links, offline kit, orders."""

from __future__ import annotations

import hmac
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from werkzeug.utils import secure_filename

from gateway.core.escalation import ack_signature
from web import api, auth
from web.model import maintenance_rows, model_etag, page_model
from web.util import MAX_ID, ApiFault, not_modified

bp = Blueprint("pages", __name__)


def be() -> Any:
    return current_app.config["BACKEND"]


def wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes["application/json"] > \
        request.accept_mimetypes["text/html"]


def back(default: str = "/") -> str:
    """Where a form sends the browser afterwards: only a local path (no open redirect)."""
    target = request.form.get("next") or request.args.get("next") or default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


# ---------------------------------------------------------------------------------------- status page
def _render_live(m: dict[str, Any], tag: str) -> str:
    return render_template("_live.html", m=m, admin=auth.session_admin(), etag=tag)


def _model() -> dict[str, Any]:
    """The page's model (snapshot, journal reads, charts), shared by the clients asking within STATUS_CACHE_S."""
    m: dict[str, Any] = api.cached("page_model", lambda: page_model(be()))
    return m


@bp.get("/")
def index() -> Any:
    m = _model()
    admin = auth.session_admin()
    tag = model_etag(m, admin)
    return render_template("index.html", m=m, admin=admin, etag=tag, live=_render_live(m, tag),
                           poll_ms=current_app.config["POLL_MS"])


@bp.get("/fragment/status")
def fragment() -> Any:
    """The live part of the page; JS fetches it with If-None-Match and swaps it in when it changed."""
    m = _model()
    tag = model_etag(m, auth.session_admin())
    if not_modified(tag):
        resp = Response(status=304)
    else:
        resp = Response(_render_live(m, tag), mimetype="text/html")
    resp.set_etag(tag, weak=True)
    resp.headers["Cache-Control"] = "no-cache"
    return resp


# ---------------------------------------------------------------------------------------------- login
@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    cfg = be().config
    if request.method == "GET":
        return render_template("login.html", next=back(), configured=bool(cfg.web.admin_password_hash))
    addr = auth.client_addr()
    limiter: auth.LoginLimiter = current_app.config["LOGIN_LIMITER"]
    wait = limiter.retry_after(addr, cfg.web.login_attempts_per_minute)
    if wait:
        current_app.config["METRICS"].logins.labels("limited").inc()
        return render_template("login.html", next=back(), configured=True,
                               error=f"Too many attempts. Try again in {wait} s."), 429, {"Retry-After": str(wait)}
    auth.check_csrf()
    if not auth.check_password(request.form.get("password", "")):
        limiter.failed(addr)
        current_app.config["METRICS"].logins.labels("failed").inc()
        return render_template("login.html", next=back(), configured=bool(cfg.web.admin_password_hash),
                               error="Wrong password."), 401
    limiter.succeeded(addr)
    current_app.config["METRICS"].logins.labels("ok").inc()
    auth.login()
    return redirect(back())


@bp.post("/logout")
def logout() -> Any:
    auth.check_csrf()
    auth.logout()
    return redirect("/")


# ------------------------------------------------------------------------------ admin forms (JS off too)
def _form_action(action: str, params: dict[str, Any], who: str) -> Any:
    """Run an action for a page form: JSON for fetch(), a redirect with a flash message for plain forms."""
    try:
        resp = api.submit(action, params, who)
    except ApiFault as exc:
        if wants_json():
            raise
        flash(exc.message, "error")
        return redirect(back())
    if wants_json():
        return resp
    result = resp.get_json(silent=True) or {}
    if action == "order_number" and result.get("number"):
        flash(f"Your temporary order number: {result['number']} (write it on the order)", "ok")
    else:
        flash(str(result.get("message") or f"{action}: done"), "ok")
    return redirect(back())


@bp.post("/ui/failover")
def ui_failover() -> Any:
    who = auth.require_admin().who
    target = request.form.get("target", "")
    if target not in ("lte", "wired", "auto"):
        raise ApiFault(400, "bad_target", "target must be lte, wired or auto")
    return _form_action("failover", {"target": target}, who)


@bp.post("/ui/loads/<path:name>")
def ui_load(name: str) -> Any:
    who = auth.require_admin().who
    if name not in {ld.name for ld in be().config.loads}:
        raise ApiFault(404, "unknown_load", f"no load named {name!r}")
    state = request.form.get("state", "")
    if state not in ("on", "off", "auto"):
        raise ApiFault(400, "bad_state", "state must be on, off or auto")
    return _form_action("load", {"name": name, "state": state}, who)


@bp.post("/ui/ack")
def ui_ack() -> Any:
    who = auth.require_admin().who
    params: dict[str, Any] = {}
    raw = request.form.get("incident_id", "")
    if raw:
        if not raw.isdigit() or int(raw) > MAX_ID:
            raise ApiFault(400, "bad_incident_id", "incident_id must be a number")
        params["incident_id"] = int(raw)
    return _form_action("ack", params, who)


@bp.post("/ui/drill")
def ui_drill() -> Any:
    who = auth.require_admin().who
    kind = request.form.get("kind", "")
    if kind not in ("power", "wan"):
        raise ApiFault(400, "bad_kind", "kind must be power or wan")
    return _form_action("drill", {"kind": kind}, who)


def _maintenance_page(form: dict[str, Any] | None = None, error: str | None = None, status: int = 200) -> Any:
    rows = sorted(maintenance_rows(be()), key=lambda w: (w["next_start"] is None, w["next_start"] or "", w["name"]))
    return render_template("maintenance.html", rows=rows, services=[s.name for s in be().config.services],
                           form=form or {}, error=error, admin=auth.session_admin(),
                           tz=be().config.site.timezone), status


@bp.get("/maintenance")
def maintenance() -> Any:
    """Every window (config and journal) with its next start; for the admin, the form to plan and cancel."""
    return _maintenance_page()


@bp.post("/ui/maintenance")
def ui_add_window() -> Any:
    """The plan-maintenance form (plain HTML, JS off too): same checks and action as POST /api/v1/maintenance.
    A refusal shows the form again with what was typed and the reason; nothing is added."""
    who = auth.require_admin().who
    f = request.form
    form: dict[str, Any] = {k: f.get(k, "").strip() for k in ("name", "kind", "schedule", "start", "end",
                                                              "recurrence", "description")}
    form.update(services=f.getlist("services"), switch_to_lte=bool(f.get("switch_to_lte")),
                emergency=bool(f.get("emergency")))
    known = [s.name for s in be().config.services]
    problem = None
    if not form["name"] or len(form["name"]) > 100:
        problem = "Give the window a name (at most 100 characters)."
    elif form["kind"] not in ("window", "freeze"):
        problem = "Choose a maintenance window or a freeze period."
    elif form["schedule"] not in ("once", "recurring"):
        problem = "Choose once or repeating."
    elif form["schedule"] == "once" and not (form["start"] and form["end"]):
        problem = "A one-off window needs a start and an end."
    elif form["schedule"] == "recurring" and not form["recurrence"]:
        problem = "A repeating window needs a schedule, e.g. weekly tue,thu 19:30-21:00."
    elif any(len(form[k]) > 100 for k in ("start", "end", "recurrence")) or len(form["description"]) > 2000:
        problem = "A field is too long."
    elif any(s not in known for s in form["services"]) or len(form["services"]) > 50:
        problem = f"Affected services must be among: {', '.join(known) or 'none configured'}."
    if problem:
        if wants_json():
            raise ApiFault(400, "bad_form", problem)
        return _maintenance_page(form, problem, 400)
    params: dict[str, Any] = {"name": form["name"], "kind": form["kind"], "services": form["services"],
                              "description": form["description"], "switch_to_lte": form["switch_to_lte"],
                              "emergency": form["emergency"]}
    if form["schedule"] == "once":
        params.update(start=form["start"], end=form["end"])
    else:
        params["recurrence"] = form["recurrence"]
    try:
        resp = api.submit("maintenance.add", params, who)
    except ApiFault as exc:
        if wants_json():
            raise
        return _maintenance_page(form, exc.message, exc.status)
    if wants_json():
        return resp
    result = resp.get_json(silent=True) or {}
    flash(str(result.get("message") or "maintenance window added"), "ok")
    return redirect("/maintenance")


@bp.post("/ui/maintenance/<int:window_id>/cancel")
def ui_cancel_window(window_id: int) -> Any:
    who = auth.require_admin().who
    return _form_action("maintenance.cancel", {"id": api.check_id(window_id)}, who)


# ---------------------------------------------------------------------------------- acknowledge links
def _sig_ok(incident_id: int, sig: str) -> bool:
    want = ack_signature(str(be().token or ""), incident_id)
    return bool(be().token) and hmac.compare_digest(sig.encode(), want.encode())


@bp.route("/ack/<int:incident_id>/<sig>", methods=["GET", "POST"])
def ack_link(incident_id: int, sig: str) -> Any:
    """The link in alert messages.  GET only asks (mail scanners prefetch links); POST acknowledges."""
    if incident_id > MAX_ID or len(sig) > 64 or not _sig_ok(incident_id, sig):
        return render_template("message.html", title="Link not valid",
                               text="This acknowledge link is not valid (or the gateway's key changed)."), 403
    inc = be().reader.incident(incident_id)
    if request.method == "GET":
        return render_template("ack.html", inc=inc, incident_id=incident_id)
    try:
        resp = api.submit("ack", {"incident_id": incident_id}, "link")
    except ApiFault as exc:
        return render_template("message.html", title="Not acknowledged", text=exc.message), exc.status
    result = resp.get_json(silent=True) or {}
    return render_template("message.html", title="Acknowledged",
                           text=str(result.get("message") or f"Incident #{incident_id} acknowledged; "
                                    "escalation stopped."))


# ------------------------------------------------------------------------------------------ offline kit
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,119}")


def kit_dir() -> Path:
    d = Path(be().config.state_dir) / "offline-kit"
    d.mkdir(parents=True, exist_ok=True)
    return d


def safe_name(raw: str) -> str | None:
    """A plain file name in the kit directory, or None (no paths, no dot files, no traversal)."""
    if not raw or "/" in raw or "\\" in raw or "\0" in raw or raw.startswith("."):
        return None
    name = secure_filename(raw)
    if not name or name.startswith(".") or not SAFE_NAME.fullmatch(name):
        return None
    return name


def kit_files() -> list[dict[str, Any]]:
    out = []
    now = time.time()
    for p in sorted(kit_dir().iterdir(), key=lambda p: p.name.lower()):
        if p.is_file() and not p.name.startswith("."):
            st = p.stat()
            out.append({"name": p.name, "size": st.st_size, "mtime": st.st_mtime, "age_s": now - st.st_mtime})
    return out


@bp.get("/offline-kit/")
def kit() -> Any:
    files = kit_files()
    if wants_json():
        return {"files": files}
    return render_template("kit.html", files=files, admin=auth.session_admin(),
                           max_bytes=current_app.config["MAX_CONTENT_LENGTH"])


@bp.get("/offline-kit/<path:name>")
def kit_file(name: str) -> Any:
    if safe_name(name) != name:
        abort(404)
    path = kit_dir() / name
    if not path.is_file():
        abort(404)
    return send_file(path, as_attachment=False, download_name=name, max_age=0)


@bp.post("/offline-kit/")
def kit_upload() -> Any:
    auth.require_admin()
    f = request.files.get("file")
    if f is None or not f.filename:
        raise ApiFault(400, "no_file", "choose a file to upload")
    name = safe_name(f.filename.strip())
    if name is None:
        raise ApiFault(400, "bad_name", "use a plain file name: letters, digits, dot, dash, underscore")
    d = kit_dir()
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            f.save(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, d / name)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ApiFault(507, "storage", f"could not store the file: {exc.strerror}") from None
    if wants_json():
        return {"name": name, "message": f"uploaded {name}"}
    flash(f"Uploaded {name}.", "ok")
    return redirect(url_for("pages.kit"))


@bp.post("/offline-kit/<path:name>/delete")
def kit_delete(name: str) -> Any:
    auth.require_admin()
    if safe_name(name) != name:
        abort(404)
    path = kit_dir() / name
    if not path.is_file():
        abort(404)
    path.unlink()
    if wants_json():
        return {"name": name, "message": f"deleted {name}"}
    flash(f"Deleted {name}.", "ok")
    return redirect(url_for("pages.kit"))


# ----------------------------------------------------------------------------------- temporary orders
@bp.get("/orders")
def orders() -> Any:
    rows = be().reader.orders()
    return render_template("orders.html", rows=list(reversed(rows)), admin=auth.session_admin())


@bp.post("/orders")
def new_order() -> Any:
    who = auth.require_reader_post()
    initials = request.form.get("initials", "").strip()
    if not api.INITIALS.fullmatch(initials):
        if wants_json():
            raise ApiFault(400, "bad_initials", "initials must be 1-4 letters")
        flash("Initials must be 1-4 letters.", "error")
        return redirect(url_for("pages.orders"))
    note = request.form.get("note", "")[:500]
    return _form_action("order_number", {"initials": initials, "note": note}, who)


@bp.post("/orders/<number>/reconcile")
def reconcile(number: str) -> Any:
    who = auth.require_admin().who
    return _form_action("order.reconcile", {"number": number[:64]}, who)
