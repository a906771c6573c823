"""End to end: the real daemon (power, continuity, notify services) against the lab's real upsd, its page in Chromium.

The page shows the power cut and the return of mains as they happen, without reloading.  Only the power and
notify services run: the uplink service would change this host's routes outside the lab's namespaces.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import needs_root, wait_until
from tests.web.test_browser import ARGS, CHROMIUM, Recorder, shoot

pytestmark = [pytest.mark.lab, pytest.mark.browser, needs_root,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium")]

ROOT = Path(__file__).resolve().parents[2]
RUN = """
import sys
from gateway.runtime import daemon
daemon.SERVICES = ["gateway.runtime.power:PowerService", "gateway.runtime.continuity:ContinuityService",
                   "gateway.runtime.notify:NotifyService"]
sys.exit(daemon.run(sys.argv[1]))
"""


@pytest.fixture
def lab_daemon(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    from gateway.lab.ups import UpsPeer, free_port

    peer = UpsPeer(tmp_path / "ups").start()
    state = tmp_path / "state"
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f"""
[site]
name = "Lab Office"
timezone = "UTC"
state_dir = "{state}"

[ups]
name = "{peer.name}"
host = "{peer.host}"
port = {peer.port}
username = "{peer.user}"
password = "{peer.password}"
poll_interval_s = 0.2
shutdown_mode = "none"

[power]
debounce_s = 0.5

[[uplinks]]
name = "wired"
interface = "lo"
role = "primary"

[web]
listen = "127.0.0.1:{free_port()}"
""")
    proc = subprocess.Popen([sys.executable, "-c", RUN, str(cfg)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "daemon.log", "wb"))
    try:
        info = state / "daemon.json"
        wait_until(lambda: info.exists() or proc.poll() is not None, 30, what="the daemon to serve")
        assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
        url = json.loads(info.read_text())["url"].replace("0.0.0.0", "127.0.0.1")

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(healthy, 30, what="/healthz 200")
        yield peer, url
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        peer.stop()


def test_page_shows_power_cut_and_return_live(lab_daemon: tuple[Any, str]) -> None:
    from playwright.sync_api import sync_playwright

    peer, url = lab_daemon
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
            page = ctx.new_page()
            rec = Recorder(page)
            page.goto(url + "/")
            pill = "document.querySelector('#power .pill') && document.querySelector('#power .pill').textContent.trim()"
            page.wait_for_function(f"{pill} === 'online'", timeout=20_000)
            page.evaluate("window.__sameDocument = 1")
            peer.cut()
            page.wait_for_function(f"{pill} === 'on battery'", timeout=20_000)
            assert page.locator(".headline").inner_text().startswith("On battery")
            page.wait_for_selector("#incident", timeout=20_000)  # the continuity service opened an incident
            shoot(page, "lab-power-cut")
            peer.restore()
            page.wait_for_function(f"{pill} === 'online'", timeout=20_000)
            assert page.evaluate("window.__sameDocument") == 1
            assert rec.foreign(url) == []
            status = json.loads(urllib.request.urlopen(url + "/api/v1/status", timeout=5).read())
            assert status["power"]["state"] == "online"
            events = json.loads(urllib.request.urlopen(url + "/api/v1/events?kind=power", timeout=5).read())
            assert events, "the power transitions are in the journal"
            metrics = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
            assert "gateway_power_state" in metrics and "gateway_web_requests_total" in metrics
        finally:
            browser.close()
