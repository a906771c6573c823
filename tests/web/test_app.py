"""Flask test-client tests: every route, access rules, CSRF, bad input as JSON 4xx, ETags, offline kit."""

from __future__ import annotations

import io
import json
import re
import time

import pytest

from gateway.core.errors import ActionRejected, JournalError
from gateway.core.escalation import ack_signature
from tests.web.conftest import PASSWORD, TOKEN, Env

BEARER = {"Authorization": f"Bearer {TOKEN}"}


def err(r) -> str:  # type: ignore[no-untyped-def]
    assert r.is_json, (r.status_code, r.data[:200])
    body = r.get_json()
    assert set(body["error"]) == {"code", "message"} and body["error"]["message"]
    return str(body["error"]["code"])


# ---------------------------------------------------------------------------------------------- page
def test_page_shows_every_section(env: Env) -> None:
    r = env.client().get("/")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    for text in ("On battery", "about 41 min left", "Running on backup internet (lte)", "ERP unreachable",
                 "Internet outage: working on backup LTE",  # the notice banner
                 'id="power"', "81 %", "41 min", "23 %", "for 12 min",
                 "access-point-1", "camera-entrance", "tier 1 shed: on battery",
                 'id="uplinks"', "wired", "3/3 targets lost", "48 ms", "100 %",
                 "Telekom.de", "-71 dBm", "bars b3", "734.0 MB of 10.0 GB",
                 "CRM", "connection refused",
                 "Incident #1: Wired ISP down, mains lost", "Call the ISP", "mains lost: on battery",
                 "ISP works", "#1 wan", "updated", "Not built yet: panel"):
        assert text in html, text
    assert html.count("<svg") == 4 and "<polyline" in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html
    assert ">Shed<" not in html and "Use LTE" not in html  # no admin buttons without login
    assert 'http-equiv="refresh"' in html  # JS off: inside <noscript>, the page still refreshes


def test_page_renders_with_an_empty_snapshot_and_journal(env: Env) -> None:
    env.backend.snap = {"daemon": {"not_built": ["power", "uplinks", "modem", "continuity", "notify", "panel"]}}
    env.journal.db.execute("DELETE FROM samples")
    html = env.client().get("/").get_data(as_text=True)
    assert html.count("not available in this build") >= 6
    assert html.count("no data yet") == 4
    env.backend.snap = {}
    assert env.client().get("/").status_code == 200
    assert env.client().get("/fragment/status").status_code == 200


def test_admin_sees_controls(env: Env) -> None:
    c, _ = env.admin()
    html = c.get("/").get_data(as_text=True)
    for text in ("Use LTE", "Use wired", ">Shed<", ">Restore<", "Acknowledge", "Start WAN drill", "Log out"):
        assert text in html, text


def test_fragment_etag_and_304(env: Env) -> None:
    c = env.client()
    r = c.get("/fragment/status")
    tag = r.headers["ETag"]
    assert r.status_code == 200 and tag.startswith('W/"') and "<section" in r.get_data(as_text=True)
    env.backend.snap["updated_at"] = "2030-01-01T00:00:00+00:00"  # a new timestamp alone is no change
    assert c.get("/fragment/status", headers={"If-None-Match": tag}).status_code == 304
    env.backend.snap["power"]["state"] = "online"
    r2 = c.get("/fragment/status", headers={"If-None-Match": tag})
    assert r2.status_code == 200 and r2.headers["ETag"] != tag


def test_status_etag(env: Env) -> None:
    c = env.client()
    r = c.get("/api/v1/status")
    assert r.status_code == 200 and r.get_json()["power"]["state"] == "on_battery"
    for key in ("updated_at", "power", "loads", "uplinks", "modem", "incident", "override"):
        assert key in r.get_json()
    tag = r.headers["ETag"]
    assert c.get("/api/v1/status", headers={"If-None-Match": tag}).status_code == 304
    env.backend.snap["override"] = "lte"
    assert c.get("/api/v1/status", headers={"If-None-Match": tag}).status_code == 200


# ---------------------------------------------------------------------------------------- read API
def test_events(env: Env) -> None:
    c = env.client()
    rows = c.get("/api/v1/events").get_json()
    assert [e["kind"] for e in rows][:3] == ["uplink.down", "uplink.active", "power.on_battery"]
    first = rows[0]["id"]
    assert all(e["id"] > first for e in c.get(f"/api/v1/events?since={first}").get_json())
    assert c.get("/api/v1/events?since=2000-01-01T00:00:00").status_code == 200
    assert len(c.get("/api/v1/events?limit=1").get_json()) == 1
    assert all(e["incident_id"] == 1 for e in c.get("/api/v1/events?incident=1").get_json())
    assert c.get("/api/v1/events?kind=power").get_json()[0]["kind"] == "power.on_battery"
    for bad in ("since=yesterday", "limit=0", "limit=abc", "limit=100000", "incident=-1"):
        r = c.get(f"/api/v1/events?{bad}")
        assert r.status_code == 400 and err(r) == "bad_query", bad


def test_incidents(env: Env) -> None:
    c = env.client()
    rows = c.get("/api/v1/incidents").get_json()
    assert [r["id"] for r in rows] == [2, 1]
    opened = c.get("/api/v1/incidents?open=1").get_json()
    assert [r["id"] for r in opened] == [1] and opened[0]["checklist"][1]["done"] is False
    one = c.get("/api/v1/incidents/1").get_json()
    assert one["open"] and [e["kind"] for e in one["timeline"]] == ["uplink.down", "uplink.active",
                                                                      "power.on_battery"]
    assert err(c.get("/api/v1/incidents/999")) == "not_found"
    assert c.get(f"/api/v1/incidents/{2**70}").status_code == 404
    assert c.get("/api/v1/incidents/abc").status_code == 404
    assert c.get("/api/v1/incidents?open=maybe").status_code == 400


def test_reports(env: Env) -> None:
    c = env.client()
    md = c.get("/api/v1/incidents/2/report")
    assert md.mimetype == "text/markdown" and md.get_data(as_text=True).startswith("# Incident #2: ISP outage")
    js = c.get("/api/v1/incidents/2/report?format=json").get_json()
    assert js["incident_id"] == 2 and js["title"] == "ISP outage"
    html = c.get("/api/v1/incidents/2/report?format=html")
    assert html.mimetype == "text/html" and "<h1>Incident #2: ISP outage</h1>" in html.get_data(as_text=True)
    live = c.get("/api/v1/incidents/1/report").get_data(as_text=True)  # open: built from the journal now
    assert "still open" in live
    assert err(c.get("/api/v1/incidents/2/report?format=pdf")) == "bad_query"
    assert err(c.get("/api/v1/incidents/77/report")) == "not_found"


def test_drills_maintenance_orders_lists(env: Env) -> None:
    c = env.client()
    drills = c.get("/api/v1/drills").get_json()
    assert drills[0]["kind"] == "wan" and drills[0]["results"]["steps"] == ["cut", "ok"]
    assert c.get("/api/v1/drills/1").get_json()["status"] == "passed"
    assert err(c.get("/api/v1/drills/5")) == "not_found"
    day = time.strftime("%Y-%m-%d", time.localtime(time.time() + 30 * 86400))
    env.journal.insert("maintenance", {"name": "UPS battery swap", "kind": "window", "start": f"{day}T10:00",
                                       "end": f"{day}T11:00", "services": [], "switch_to_lte": 0,
                                       "source": "admin", "created_at": 1.0})
    rows = c.get("/api/v1/maintenance").get_json()
    assert [r["name"] for r in rows] == ["ISP works", "UPS battery swap"]
    assert rows[0]["source"] == "config" and re.match(r"\d{4}-\d\d-\d\dT19:30", rows[0]["next_start"])
    assert rows[1]["id"] == 1 and rows[1]["next_start"].startswith(f"{day}T10:00")
    orders = c.get("/api/v1/orders").get_json()
    assert orders[0]["number"] == "20260302-AB-001"
    assert c.get("/api/v1/orders?open=1").get_json()[0]["reconciled_at"] is None


def test_healthz(env: Env) -> None:
    c = env.client()
    r = c.get("/healthz")
    assert r.status_code == 200 and r.get_json()["ok"] is True
    env.backend.ready = False
    r = c.get("/healthz")
    assert r.status_code == 503 and r.get_json()["ok"] is False


def test_metrics(env: Env) -> None:
    env.backend.metric_rows = [
        ("gateway_ups_charge_pct", "Battery charge", {}, 81.0),
        ("gateway_uplink_rtt_ms", "median probe round trip", {"uplink": "lte"}, 48.2),
        ("gateway_uplink_rtt_ms", "median probe round trip", {"uplink": "wired"}, 12.0),
        ("bad name!", "ignored", {}, 1.0),
    ]
    c = env.client()
    c.get("/api/v1/status")
    r = c.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    text = r.get_data(as_text=True)
    assert "gateway_ups_charge_pct 81.0" in text
    assert 'gateway_uplink_rtt_ms{uplink="lte"} 48.2' in text
    assert "gateway_incidents_open 1.0" in text
    assert 'gateway_web_requests_total{endpoint="api.status",method="GET",status="200"} 1.0' in text
    assert "bad name" not in text


def test_openapi_document_is_served(env: Env) -> None:
    doc = env.client().get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.") and "/api/v1/status" in doc["paths"]
    assert {"post"} <= set(doc["paths"]["/api/v1/failover"])


# ------------------------------------------------------------------------------------------- actions
def test_actions_need_login(env: Env) -> None:
    c = env.client()
    for path, body in (("/api/v1/failover", {"target": "lte"}), ("/api/v1/loads/camera-entrance", {"state": "on"}),
                       ("/api/v1/alerts/ack", {}), ("/api/v1/drills", {"kind": "wan"}),
                       ("/api/v1/maintenance", {"name": "x", "recurrence": "daily 01:00-02:00"})):
        r = c.post(path, json=body)
        assert r.status_code == 401 and err(r) == "login_required", path
    assert c.delete("/api/v1/maintenance/1").status_code == 401
    r = c.post("/api/v1/failover", json={"target": "lte"}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and err(r) == "bad_token"
    assert env.backend.submitted == []


def test_bearer_actions(env: Env) -> None:
    c = env.client()
    cases = [
        ("/api/v1/failover", {"target": "lte"}, ("failover", {"target": "lte"})),
        ("/api/v1/loads/camera-entrance", {"state": "on"}, ("load", {"name": "camera-entrance", "state": "on"})),
        ("/api/v1/alerts/ack", {"incident_id": 1}, ("ack", {"incident_id": 1})),
        ("/api/v1/alerts/ack", None, ("ack", {})),
        ("/api/v1/drills", {"kind": "wan", "minutes": 2}, ("drill", {"kind": "wan", "minutes": 2.0})),
        ("/api/v1/drills", {"kind": "power", "mains_cut": True, "only_if_due": False},
         ("drill", {"kind": "power", "mains_cut": True, "only_if_due": False})),
        ("/api/v1/maintenance", {"name": "ISP", "recurrence": "daily 01:00-02:00", "services": ["CRM"]},
         ("maintenance.add", {"name": "ISP", "kind": "window", "recurrence": "daily 01:00-02:00",
                              "description": "", "services": ["CRM"]})),
        ("/api/v1/orders", {"initials": "ab", "note": "Meier GmbH"},
         ("order_number", {"initials": "ab", "note": "Meier GmbH"})),
        ("/api/v1/orders/20260302-AB-001/reconcile", None, ("order.reconcile", {"number": "20260302-AB-001"})),
    ]
    for path, body, want in cases:
        r = c.post(path, json=body, headers=BEARER) if body is not None else c.post(path, headers=BEARER)
        assert r.status_code == 200, (path, r.data)
        assert r.get_json()["message"]
        assert env.backend.submitted[-1] == (*want, "api"), path
    r = c.delete("/api/v1/maintenance/3", headers=BEARER)
    assert r.status_code == 200 and env.backend.submitted[-1] == ("maintenance.cancel", {"id": 3}, "api")


@pytest.mark.parametrize("path,body,code", [
    ("/api/v1/failover", {"target": "moon"}, "bad_target"),
    ("/api/v1/failover", {}, "bad_target"),
    ("/api/v1/failover", [1, 2], "bad_json"),
    ("/api/v1/failover", "not json{", "bad_json"),
    ("/api/v1/loads/camera-entrance", {"state": "maybe"}, "bad_state"),
    ("/api/v1/loads/no-such-load", {"state": "off"}, "unknown_load"),
    ("/api/v1/loads/../../etc/passwd", {"state": "off"}, "unknown_load"),
    ("/api/v1/alerts/ack", {"incident_id": "1"}, "bad_incident_id"),
    ("/api/v1/alerts/ack", {"incident_id": True}, "bad_incident_id"),
    ("/api/v1/alerts/ack", {"incident_id": 2**80}, "bad_incident_id"),
    ("/api/v1/drills", {"kind": "flood"}, "bad_kind"),
    ("/api/v1/drills", {"kind": "wan", "minutes": -1}, "bad_minutes"),
    ("/api/v1/drills", {"kind": "wan", "minutes": "5"}, "bad_minutes"),
    ("/api/v1/drills", {"kind": "wan", "mains_cut": "yes"}, "bad_mains_cut"),
    ("/api/v1/maintenance", {}, "missing_name"),
    ("/api/v1/maintenance", {"name": 5}, "bad_name"),
    ("/api/v1/maintenance", {"name": "x", "services": "CRM"}, "bad_services"),
    ("/api/v1/maintenance", {"name": "x", "kind": "party"}, "bad_kind"),
    ("/api/v1/orders", {"initials": "A1"}, "bad_initials"),
    ("/api/v1/orders", {"initials": "ABCDE"}, "bad_initials"),
    ("/api/v1/orders", {"initials": "AB", "note": 7}, "bad_note"),
])
def test_bad_input_is_a_json_4xx_and_changes_nothing(env: Env, path: str, body: object, code: str) -> None:
    c = env.client()
    if isinstance(body, str):
        r = c.post(path, data=body, headers={**BEARER, "Content-Type": "application/json"})
    else:
        r = c.post(path, json=body, headers=BEARER)
    assert 400 <= r.status_code < 500 and err(r) == code
    assert env.backend.submitted == []


def test_wrong_content_type_and_methods(env: Env) -> None:
    c = env.client()
    r = c.post("/api/v1/failover", data="target=lte", headers={**BEARER, "Content-Type": "text/plain"})
    assert r.status_code == 415 and err(r) == "unsupported_media_type"
    r = c.put("/api/v1/failover", json={}, headers=BEARER)
    assert r.status_code == 405 and err(r) == "method_not_allowed"
    r = c.get("/api/v1/nothing-here")
    assert r.status_code == 404 and err(r) == "not_found"
    r = c.post("/api/v1/failover", data=b"x" * 70000, headers={**BEARER, "Content-Type": "application/json"})
    assert r.status_code == 413 and err(r) == "too_large"


def test_action_rejections_map_to_4xx(env: Env) -> None:
    c = env.client()
    env.backend.errors["failover"] = ActionRejected("no_backup", "the LTE uplink is down")
    r = c.post("/api/v1/failover", json={"target": "lte"}, headers=BEARER)
    assert r.status_code == 409 and err(r) == "no_backup"
    env.backend.errors["maintenance.add"] = ActionRejected("bad_schedule", "end must be after start")
    r = c.post("/api/v1/maintenance", json={"name": "x", "start": "2030-01-02T00:00", "end": "2030-01-01T00:00"},
               headers=BEARER)
    assert r.status_code == 400 and err(r) == "bad_schedule"
    env.backend.errors["drill"] = ActionRejected("unknown_action", "no such action: drill")
    r = c.post("/api/v1/drills", json={"kind": "wan"}, headers=BEARER)
    assert r.status_code == 409 and err(r) == "unknown_action"
    env.backend.errors["ack"] = JournalError("disk full")
    r = c.post("/api/v1/alerts/ack", json={}, headers=BEARER)
    assert r.status_code == 503 and err(r) == "unavailable"


def test_session_login_csrf_and_logout(env: Env) -> None:
    c, csrf = env.admin()
    r = c.post("/api/v1/failover", json={"target": "wired"})
    assert r.status_code == 403 and err(r) == "csrf"
    r = c.post("/api/v1/failover", json={"target": "wired"}, headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403
    r = c.post("/api/v1/failover", json={"target": "wired"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200
    assert env.backend.submitted == [("failover", {"target": "wired"}, "admin@192.168.1.20")]
    cookie = r.headers.get("Set-Cookie") or ""
    login = c.get("/").headers.get("Set-Cookie") or ""
    assert "Set-Cookie" not in r.headers or "HttpOnly" in cookie
    assert login == "" or ("HttpOnly" in login and "SameSite=Lax" in login)
    assert c.post("/logout", data={"csrf_token": csrf}).status_code == 302
    r = c.post("/api/v1/failover", json={"target": "wired"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 401


def test_login_cookie_flags(env: Env) -> None:
    c = env.client()
    tok = env.csrf(c)
    r = c.post("/login", data={"password": PASSWORD, "csrf_token": tok})
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_login_wrong_password_and_rate_limit(env: Env) -> None:
    c = env.client("192.168.1.77")
    tok = env.csrf(c)
    assert c.post("/login", data={"password": "nope", "csrf_token": tok}).status_code == 401
    r = c.post("/login", data={"password": PASSWORD})  # no CSRF token: refused before the password check
    assert r.status_code == 403
    for _ in range(2):
        assert c.post("/login", data={"password": "nope", "csrf_token": tok}).status_code == 401
    r = c.post("/login", data={"password": PASSWORD, "csrf_token": tok})  # limit reached: even right is refused
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    other = env.client("192.168.1.78")  # another address is not punished
    tok2 = env.csrf(other)
    assert other.post("/login", data={"password": PASSWORD, "csrf_token": tok2}).status_code == 302


def test_open_redirect_refused(env: Env) -> None:
    c = env.client()
    tok = env.csrf(c)
    r = c.post("/login", data={"password": PASSWORD, "csrf_token": tok, "next": "//evil.example/x"})
    assert r.headers["Location"] == "/"


def test_page_forms_without_js(env: Env) -> None:
    c, csrf = env.admin()
    r = c.post("/ui/loads/camera-entrance", data={"state": "on", "csrf_token": csrf, "next": "/"})
    assert r.status_code == 302 and r.headers["Location"] == "/"
    assert env.backend.submitted[-1][:2] == ("load", {"name": "camera-entrance", "state": "on"})
    assert "load done" in c.get("/").get_data(as_text=True)  # the flash message
    r = c.post("/ui/failover", data={"target": "lte", "csrf_token": csrf}, headers={"Accept": "application/json"})
    assert r.status_code == 200 and r.get_json()["message"] == "failover done"
    for path, data in (("/ui/ack", {"incident_id": "1"}), ("/ui/drill", {"kind": "wan"}),
                       ("/ui/maintenance/1/cancel", {})):
        r = c.post(path, data={**data, "csrf_token": csrf})
        assert r.status_code == 302, path
    assert [a for a, _, _ in env.backend.submitted][-3:] == ["ack", "drill", "maintenance.cancel"]
    env.backend.errors["failover"] = ActionRejected("no_backup", "the LTE uplink is down")
    r = c.post("/ui/failover", data={"target": "lte", "csrf_token": csrf})
    assert r.status_code == 302 and "the LTE uplink is down" in c.get("/").get_data(as_text=True)
    r = c.post("/ui/failover", data={"target": "lte"})
    assert r.status_code == 403


def test_read_only_lan(env: Env) -> None:
    outside = env.client("93.184.216.34")
    r = outside.get("/api/v1/status")
    assert r.status_code == 401 and err(r) == "login_required"
    r = outside.get("/", headers={"Accept": "text/html"})
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    assert outside.get("/api/v1/status", headers=BEARER).status_code == 200
    assert outside.get("/healthz").status_code == 200
    assert env.client("::1").get("/api/v1/status").status_code == 200
    assert env.client("10.1.2.3").get("/").status_code == 200


def test_read_only_login(login_env: Env) -> None:
    c = login_env.client()
    assert c.get("/api/v1/status").status_code == 401
    assert c.get("/").status_code == 302
    assert c.get("/offline-kit/", headers={"Accept": "application/json"}).status_code == 401
    assert c.get("/login").status_code == 200
    assert c.get("/healthz").status_code == 200
    assert c.get("/api/v1/status", headers=BEARER).status_code == 200
    admin, _ = login_env.admin()
    assert admin.get("/api/v1/status").status_code == 200 and admin.get("/").status_code == 200


def test_no_password_configured(tmp_path) -> None:  # type: ignore[no-untyped-def]
    e = Env(tmp_path)
    e.backend._config = e.cfg.__class__(**{**e.cfg.__dict__, "web": e.cfg.web.__class__(admin_password_hash="")})
    c = e.client()
    assert "gateway passwd" in c.get("/login").get_data(as_text=True)
    tok = e.csrf(c)
    assert c.post("/login", data={"password": "", "csrf_token": tok}).status_code == 401
    e.journal.close()


# --------------------------------------------------------------------------------------- ack links
def test_ack_link(env: Env) -> None:
    c = env.client("93.184.216.50")  # from outside the LAN too: the signature is the permission
    sig = ack_signature(TOKEN, 1)
    r = c.get(f"/ack/1/{sig}")
    assert r.status_code == 200 and "Yes, I am on it" in r.get_data(as_text=True)
    assert env.backend.submitted == []  # a GET (a mail scanner's prefetch) acknowledges nothing
    r = c.post(f"/ack/1/{sig}")
    assert r.status_code == 200 and env.backend.submitted == [("ack", {"incident_id": 1}, "link")]
    assert c.post(f"/ack/2/{sig}").status_code == 403  # another incident's signature
    assert c.post("/ack/1/" + "0" * 24).status_code == 403
    assert c.get(f"/ack/{2**70}/{sig}").status_code == 403
    assert len(env.backend.submitted) == 1


def test_ack_link_matches_notify(env: Env) -> None:
    """The notify service signs links with the token file in the state dir: the same secret as ours."""
    (env.state / "api.token").write_text(TOKEN + "\n")
    from gateway.runtime.notify import NotifyService

    secret = NotifyService._secret(type("S", (), {"ctx": type("C", (), {"config": env.cfg})()})())  # type: ignore[arg-type]
    assert secret == TOKEN


# ------------------------------------------------------------------------------------- offline kit
def test_offline_kit_upload_list_download_delete(env: Env) -> None:
    c, csrf = env.admin()
    r = c.post("/offline-kit/", data={"csrf_token": csrf, "file": (io.BytesIO(b"%PDF order form"), "Order form.pdf")},
               content_type="multipart/form-data")
    assert r.status_code == 302
    assert (env.state / "offline-kit" / "Order_form.pdf").read_bytes() == b"%PDF order form"
    staff = env.client()
    html = staff.get("/offline-kit/").get_data(as_text=True)
    assert "Order_form.pdf" in html and "ago" in html and "Upload" not in html
    assert staff.get("/offline-kit/", headers={"Accept": "application/json"}).get_json()["files"][0]["size"] == 15
    r = staff.get("/offline-kit/Order_form.pdf")
    assert r.status_code == 200 and r.data == b"%PDF order form"
    r = c.post("/offline-kit/Order_form.pdf/delete", data={"csrf_token": csrf})
    assert r.status_code == 302 and not (env.state / "offline-kit" / "Order_form.pdf").exists()


def test_offline_kit_needs_admin_and_csrf(env: Env) -> None:
    staff = env.client()
    r = staff.post("/offline-kit/", data={"file": (io.BytesIO(b"x"), "a.txt")}, content_type="multipart/form-data",
                   headers={"Accept": "application/json"})
    assert r.status_code == 401
    c, _ = env.admin()
    r = c.post("/offline-kit/", data={"file": (io.BytesIO(b"x"), "a.txt")}, content_type="multipart/form-data",
               headers={"Accept": "application/json"})
    assert r.status_code == 403
    assert not (env.state / "offline-kit" / "a.txt").exists()


@pytest.mark.parametrize("name", ["../../etc/passwd", "..\\..\\boot.ini", "/etc/passwd", ".hidden", "..", "a/b.txt",
                                  "", "x" * 300])
def test_offline_kit_refuses_unsafe_names(env: Env, name: str) -> None:
    c, csrf = env.admin()
    r = c.post("/offline-kit/", data={"csrf_token": csrf, "file": (io.BytesIO(b"evil"), name)},
               content_type="multipart/form-data", headers={"Accept": "application/json"})
    assert r.status_code == 400, name
    kit = env.state / "offline-kit"
    assert not kit.exists() or list(kit.iterdir()) == []
    assert not (env.state / "passwd").exists()


@pytest.mark.parametrize("path", ["/offline-kit/../journal.db", "/offline-kit/..%2Fjournal.db",
                                  "/offline-kit/%2e%2e/journal.db", "/offline-kit/.upload-x",
                                  "/offline-kit/..%5Cjournal.db", "/offline-kit/nothing.pdf"])
def test_offline_kit_download_traversal(env: Env, path: str) -> None:
    (env.state / "offline-kit").mkdir(exist_ok=True)
    (env.state / "offline-kit" / ".upload-x").write_bytes(b"partial")
    r = env.client().get(path, headers={"Accept": "application/json"})
    assert r.status_code == 404 and b"SQLite" not in r.data and b"partial" not in r.data


def test_offline_kit_upload_limit(env: Env) -> None:
    c, csrf = env.admin()
    big = io.BytesIO(b"x" * (65 * 1024))
    r = c.post("/offline-kit/", data={"csrf_token": csrf, "file": (big, "big.bin")},
               content_type="multipart/form-data", headers={"Accept": "application/json"})
    assert r.status_code == 413 and err(r) == "too_large"
    kit = env.state / "offline-kit"
    assert not kit.exists() or list(kit.iterdir()) == []


# ------------------------------------------------------------------------------------------ orders
def test_orders_page_for_staff(env: Env) -> None:
    c = env.client()
    html = c.get("/orders").get_data(as_text=True)
    assert "20260302-AB-001" in html and "Meier" in html and "/reconcile" not in html
    env.backend.results["order_number"] = {"number": "20260302-CD-002", "message": "temporary order number 20260302-CD-002"}
    tok = env.csrf(c)
    r = c.post("/orders", data={"initials": "cd", "note": "Schulz", "csrf_token": tok, "next": "/orders"})
    assert r.status_code == 302 and r.headers["Location"] == "/orders"
    assert env.backend.submitted[-1] == ("order_number", {"initials": "cd", "note": "Schulz"}, "staff@192.168.1.20")
    assert "Your temporary order number: 20260302-CD-002" in c.get("/orders").get_data(as_text=True)
    r = c.post("/orders", data={"initials": "c3", "csrf_token": tok})
    assert r.status_code == 302 and len(env.backend.submitted) == 1
    assert c.post("/orders", data={"initials": "cd"}).status_code == 403
    r = c.post("/api/v1/orders", json={"initials": "cd"}, headers={"X-CSRF-Token": tok})
    assert r.status_code == 200
    admin, csrf = env.admin()
    assert "/reconcile" in admin.get("/orders").get_data(as_text=True)
    r = admin.post("/orders/20260302-AB-001/reconcile", data={"csrf_token": csrf, "next": "/orders"})
    assert r.status_code == 302 and env.backend.submitted[-1][:2] == ("order.reconcile", {"number": "20260302-AB-001"})


def test_security_headers(env: Env) -> None:
    r = env.client().get("/")
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    static = env.client().get("/static/app.js")
    assert static.status_code == 200 and b"If-None-Match" in static.data
    json.loads(env.client().get("/api/v1/openapi.json").data)


def test_page_with_the_continuity_snapshot_shape(env: Env) -> None:
    """The continuity service's own shape: runbook items, its timeline, acked flag, drills summary."""
    now = time.time()
    env.backend.snap["incident"] = {
        "id": 1, "kind": "outage", "severity": "high", "causes": ["wired down"], "title": "Wired ISP down",
        "opened_at": now - 120, "duration_s": 120.0, "acked": True, "acked_by": "link", "acked_at": now - 60,
        "active": ["wired down"], "closing_in_s": None,
        "runbook": [{"item": "recorded", "text": "Time and type of the failure recorded", "auto": True, "done": True,
                     "done_at": now - 120, "by": "gateway"},
                    {"item": "isp", "text": "Ticket opened with the ISP", "auto": False, "done": False,
                     "done_at": None, "by": ""}],
        "timeline": [{"id": 9, "ts": now - 120, "kind": "uplink.down", "severity": "warning",
                      "message": "wired: down (blackhole)"}],
    }
    env.backend.snap["drills"] = {"last": None, "next_due": now + 86400 * 30, "due": False,
                                  "running": {"id": 4, "kind": "wan", "steps": ["primary cut", "waiting for CRM"]}}
    c, _ = env.admin()
    html = c.get("/").get_data(as_text=True)
    for text in ("Ticket opened with the ISP", "wired: down (blackhole)", "acknowledged by link",
                 "Still failing: wired down", "Drill #4 (wan) running: waiting for CRM", "Next drill due"):
        assert text in html, text
    assert ">Acknowledge<" not in html  # already acknowledged
    r1 = c.get("/fragment/status")
    env.backend.snap["incident"]["duration_s"] = 125.0  # ticks on every snapshot: no new fragment for it
    assert c.get("/fragment/status", headers={"If-None-Match": r1.headers["ETag"]}).status_code == 304
