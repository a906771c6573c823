"""The page in Debian's headless Chromium (driven by Playwright), served by waitress on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import ARTIFACTS, PASSWORD, Env, Served

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium")]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Env, Served]]:
    env = Env(tmp_path)
    env.app.config["POLL_MS"] = 250
    srv = Served(env.app)
    yield env, srv
    srv.close()
    env.journal.close()


class Recorder:
    """Every request the page makes, to prove none leaves 127.0.0.1."""

    def __init__(self, page: Any) -> None:
        self.urls: list[str] = []
        self.statuses: list[tuple[str, int]] = []
        page.on("request", lambda r: self.urls.append(r.url))
        page.on("response", lambda r: self.statuses.append((r.url, r.status)))

    def foreign(self, base: str) -> list[str]:
        return [u for u in self.urls if not (u.startswith(base + "/") or u.startswith("data:"))]


def shoot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"web-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


SECTIONS = ("#power", "#uplinks", "#modem", "#services", "#loads", "#charts", "#maintenance", "#drills", "#incident")


def test_page_renders_every_section_locally(browser: Any, served: tuple[Env, Served]) -> None:
    env, srv = served
    for name, viewport, scheme in (("desktop", {"width": 1280, "height": 900}, "light"),
                                   ("phone", {"width": 390, "height": 844}, "dark")):
        ctx = browser.new_context(viewport=viewport, color_scheme=scheme)
        page = ctx.new_page()
        rec = Recorder(page)
        errors: list[str] = []
        page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
        page.goto(srv.url + "/")
        for sel in SECTIONS:
            assert page.locator(sel).is_visible(), sel
        assert page.locator(".headline").inner_text().startswith("On battery")
        assert page.locator(".notice").is_visible()
        assert page.locator("svg.chart polyline").count() >= 4
        # wait for one live refresh so its request is recorded too
        assert page.locator("#updated .n").is_visible()
        page.wait_for_event("response", lambda r: "/fragment/status" in r.url, timeout=10_000)
        if name == "phone":  # no sideways scrolling on a phone
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"] + 1
        shoot(page, name)
        assert rec.foreign(srv.url) == [], rec.foreign(srv.url)
        assert errors == []
        ctx.close()


def test_works_with_javascript_off(browser: Any, served: tuple[Env, Served]) -> None:
    env, srv = served
    ctx = browser.new_context(java_script_enabled=False, viewport={"width": 1024, "height": 800})
    page = ctx.new_page()
    rec = Recorder(page)
    page.goto(srv.url + "/")
    for sel in SECTIONS:
        assert page.locator(sel).is_visible(), sel
    page.click("text=Admin login")
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url(srv.url + "/")
    page.click("button:has-text('Use LTE')")
    page.wait_for_selector(".flash.ok")
    assert env.backend.submitted == [("failover", {"target": "lte"}, "admin@127.0.0.1")]
    shoot(page, "nojs-after-failover")
    assert rec.foreign(srv.url) == []
    ctx.close()


def test_live_update_arrives_without_reload(browser: Any, served: tuple[Env, Served]) -> None:
    env, srv = served
    ctx = browser.new_context(bypass_csp=True)  # wait_for_function evaluates strings; the page's CSP forbids that
    page = ctx.new_page()
    rec = Recorder(page)
    page.goto(srv.url + "/")
    page.evaluate("window.__sameDocument = 42")
    # nothing changed: the page's polls are answered 304 Not Modified
    page.wait_for_event("response", lambda r: "/fragment/status" in r.url and r.status == 304, timeout=10_000)
    env.backend.snap["power"] = {"state": "online", "ups": {"status": ["OL"], "charge_pct": 97.0, "runtime_s": 3600.0,
                                                             "load_pct": 21.0, "input_voltage": 230.0}}
    env.backend.snap["uplinks"][0].update(state="up", active=True, rtt_ms=11.0, loss_pct=0.0)
    env.backend.snap["uplinks"][1].update(state="standby", active=False)
    page.wait_for_function("document.querySelector('#power .pill').textContent.trim() === 'online'", timeout=10_000)
    assert page.evaluate("window.__sameDocument") == 42  # the same document: no reload
    assert "Running on backup" not in page.locator(".headline").inner_text()
    assert [u for u in rec.urls if u.rstrip("/") == srv.url] == [srv.url + "/"]  # the page itself loaded once
    assert rec.foreign(srv.url) == []
    ctx.close()


def test_login_and_manual_failover_through_the_page(browser: Any, served: tuple[Env, Served]) -> None:
    env, srv = served
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = ctx.new_page()
    rec = Recorder(page)
    page.goto(srv.url + "/login")
    page.fill("input[name=password]", "wrong password")
    page.click("button:has-text('Log in')")
    assert page.locator("text=Wrong password.").is_visible()
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url(srv.url + "/")
    page.evaluate("window.__sameDocument = 7")
    page.click("button:has-text('Use LTE')")
    page.wait_for_selector("#toast:not([hidden])")
    assert page.locator("#toast").inner_text() == "failover done"
    assert env.backend.submitted[-1] == ("failover", {"target": "lte"}, "admin@127.0.0.1")
    env.backend.snap["override"] = "lte"
    page.wait_for_function("document.querySelector('#uplinks .meta').textContent.includes('held on lte')",
                           timeout=10_000)
    page.click("#loads button:has-text('Restore')")
    page.wait_for_function("document.querySelector('#toast').textContent === 'load done'")
    assert env.backend.submitted[-1] == ("load", {"name": "camera-entrance", "state": "on"}, "admin@127.0.0.1")
    assert page.evaluate("window.__sameDocument") == 7
    shoot(page, "admin")
    assert rec.foreign(srv.url) == []
    ctx.close()


def test_staff_pages_fit_a_phone(browser: Any, served: tuple[Env, Served]) -> None:
    env, srv = served
    kit = env.state / "offline-kit"
    kit.mkdir()
    (kit / "Price_list_2026_all_products_final.xlsx").write_bytes(b"x" * 45000)
    ctx = browser.new_context(viewport={"width": 360, "height": 740})
    page = ctx.new_page()
    rec = Recorder(page)
    page.goto(srv.url + "/login")
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url(srv.url + "/")
    for path in ("/", "/offline-kit/", "/orders", "/login"):
        page.goto(srv.url + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 361, path
    page.goto(srv.url + "/orders")
    page.fill("input[name=initials]", "AB")
    page.click("button:has-text('Get a number')")
    page.wait_for_selector(".flash.ok")
    assert env.backend.submitted[-1][0] == "order_number"
    shoot(page, "phone-orders")
    assert rec.foreign(srv.url) == []
    ctx.close()
