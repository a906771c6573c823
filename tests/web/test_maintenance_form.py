"""The plan-maintenance page (/maintenance): a plain HTML form behind the admin login and CSRF, in headless
Chromium with JavaScript off, and its refusals through the Flask test client (nothing submitted, input kept)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from gateway.core.errors import ActionRejected
from tests.web.conftest import PASSWORD, Env, Served
from tests.web.test_browser import CHROMIUM, Recorder, browser, shoot  # noqa: F401  (browser is a fixture)

FORM = {"name": "Router firmware", "kind": "window", "schedule": "once", "start": "2030-05-02T19:30",
        "end": "2030-05-02T21:00", "recurrence": "", "description": "The ISP updates the router",
        "services": "CRM", "switch_to_lte": "1"}


def _adds(env: Env) -> list[tuple[str, dict[str, Any], str]]:
    return [s for s in env.backend.submitted if s[0] == "maintenance.add"]


def test_readers_see_the_windows_but_no_form(env: Env) -> None:
    html = env.client().get("/maintenance").get_data(as_text=True)
    assert "ISP works" in html and "weekly tue,thu 19:30-21:00" in html  # the config's window
    assert 'action="/ui/maintenance"' not in html and "Log in as admin" in html
    r = env.client().post("/ui/maintenance", data=FORM)
    assert r.status_code in (401, 403) and _adds(env) == []


def test_the_form_needs_the_csrf_token(env: Env) -> None:
    c, _ = env.admin()
    r = c.post("/ui/maintenance", data=FORM)
    assert r.status_code == 403 and _adds(env) == []


@pytest.mark.parametrize("change, says", [
    ({"name": ""}, "Give the window a name"),
    ({"schedule": "recurring", "recurrence": ""}, "needs a schedule"),
    ({"end": ""}, "needs a start and an end"),
    ({"services": "Payroll"}, "must be among: CRM, ERP"),
    ({"kind": "party"}, "Choose a maintenance window or a freeze"),
])
def test_bad_input_shows_the_form_again_with_the_reason(env: Env, change: dict[str, str], says: str) -> None:
    c, csrf = env.admin()
    r = c.post("/ui/maintenance", data={**FORM, **change, "csrf_token": csrf})
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and says in html and 'role="alert"' in html
    assert "The ISP updates the router" in html  # what was typed is still there
    assert _adds(env) == []


def test_a_refusal_by_the_daemon_is_shown_and_nothing_is_added(env: Env) -> None:
    env.backend.errors["maintenance.add"] = ActionRejected("freeze", "falls in the freeze period 'Year end'")
    c, csrf = env.admin()
    r = c.post("/ui/maintenance", data={**FORM, "csrf_token": csrf})
    assert r.status_code == 409 and "freeze period" in r.get_data(as_text=True)
    assert 'value="Router firmware"' in r.get_data(as_text=True)


def test_the_form_sends_the_same_action_as_the_api(env: Env) -> None:
    c, csrf = env.admin()
    r = c.post("/ui/maintenance", data={**FORM, "csrf_token": csrf})
    assert r.status_code == 302 and r.headers["Location"].endswith("/maintenance")
    assert _adds(env) == [("maintenance.add", {
        "name": "Router firmware", "kind": "window", "services": ["CRM"], "description": "The ISP updates the router",
        "switch_to_lte": True, "emergency": False, "start": "2030-05-02T19:30", "end": "2030-05-02T21:00"},
        "admin@192.168.1.20")]
    c.post("/ui/maintenance", data={**FORM, "schedule": "recurring", "recurrence": "weekly sat 08:00-09:00",
                                    "csrf_token": csrf})
    params = _adds(env)[-1][1]
    assert params["recurrence"] == "weekly sat 08:00-09:00" and "start" not in params and "end" not in params


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium")
def test_plan_and_cancel_maintenance_in_chromium_with_javascript_off(browser: Any, env: Env) -> None:  # noqa: F811
    wid = env.journal.insert("maintenance", {"name": "Switch swap", "kind": "window", "start": "2030-06-01T10:00",
                                             "end": "2030-06-01T11:00", "services": [], "switch_to_lte": 0,
                                             "description": "", "source": "admin", "created_at": env.now})
    srv = Served(env.app)
    ctx = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    try:
        page = ctx.new_page()
        rec = Recorder(page)
        page.goto(srv.url + "/")
        page.click("#maintenance a:has-text('All windows')")
        page.wait_for_url(srv.url + "/maintenance")
        page.click("text=Log in as admin")
        page.fill("input[name=password]", PASSWORD)
        page.click("button:has-text('Log in')")
        page.wait_for_url(srv.url + "/maintenance")
        # every field has a label a screen reader announces
        page.get_by_label("Name", exact=True).fill("Router firmware")
        page.get_by_label("Once").check()
        page.get_by_label("Start", exact=True).fill("2030-05-02T19:30")
        page.get_by_label("End", exact=True).fill("2030-05-02T21:00")
        page.get_by_label("CRM").check()
        page.get_by_label("What happens (for the staff notice)").fill("The ISP updates the router")
        page.get_by_label("Move the office to LTE for the window (planned ISP work)").check()
        page.click("button:has-text('Add window')")
        page.wait_for_selector(".flash.ok")
        assert page.url == srv.url + "/maintenance"
        assert _adds(env)[-1][1] == {"name": "Router firmware", "kind": "window", "services": ["CRM"],
                                     "description": "The ISP updates the router", "switch_to_lte": True,
                                     "emergency": False, "start": "2030-05-02T19:30", "end": "2030-05-02T21:00"}
        # a repeating window without its schedule: the reason, the typed name kept, nothing sent
        page.get_by_label("Name", exact=True).fill("Backups")
        page.get_by_label("Repeating").check()
        page.click("button:has-text('Add window')")
        assert "needs a schedule" in page.get_by_role("alert").inner_text()
        assert page.get_by_label("Name", exact=True).input_value() == "Backups"
        assert len(_adds(env)) == 1
        assert page.evaluate("document.documentElement.scrollWidth") <= 391  # fits a phone
        shoot(page, "maintenance-form")
        page.get_by_label("Cancel maintenance window Switch swap").click()
        page.wait_for_selector(".flash.ok")
        assert env.backend.submitted[-1] == ("maintenance.cancel", {"id": wid}, "admin@127.0.0.1")
        assert rec.foreign(srv.url) == []
    finally:
        ctx.close()
        srv.close()
