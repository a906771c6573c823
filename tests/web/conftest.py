"""Fixtures for the web tests: a real config and journal, a FakeBackend with a full snapshot, the Flask app."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.security import generate_password_hash

from gateway import config
from gateway.core import report
from gateway.store import Journal
from web.app import create_app
from web.backend import FakeBackend

PASSWORD = "correct horse battery"
TOKEN = "test-token-0123456789"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

CFG = """
[site]
name = "Müller & Partner"
timezone = "Europe/Berlin"
state_dir = "{state}"

[ups]

[[switches]]
name = "core"
host = "127.0.0.1"

[[loads]]
name = "access-point-1"
switch = "core"
port = 1
tier = 0

[[loads]]
name = "camera-entrance"
switch = "core"
port = 3
tier = 1

[[loads]]
name = "signage-lobby"
switch = "core"
port = 4
tier = 2

[[uplinks]]
name = "wired"
interface = "eth1"
role = "primary"

[[uplinks]]
name = "lte"
interface = "wwan0"
role = "backup"
table = 101

[web]
admin_password_hash = "{hash}"
read_only = "{read_only}"
login_attempts_per_minute = 3

[[services]]
name = "CRM"
url = "http://127.0.0.1:9/"

[[services]]
name = "ERP"
address = "127.0.0.1:9"

[[maintenance]]
name = "ISP works"
recurrence = "weekly tue,thu 19:30-21:00"
services = ["CRM"]
"""


def make_snapshot(now: float) -> dict[str, Any]:
    return {
        "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now)),
        "site": "Müller & Partner",
        "power": {"state": "on_battery", "on_battery_since": now - 754, "shed_tiers": [1],
                  "ups": {"status": ["OB", "DISCHRG"], "charge_pct": 81.0, "runtime_s": 2460.0, "load_pct": 23.0,
                          "input_voltage": 0.0}},
        "loads": [
            {"name": "access-point-1", "switch": "core", "port": 1, "tier": 0, "state": "on", "reason": "",
             "override": "auto"},
            {"name": "camera-entrance", "switch": "core", "port": 3, "tier": 1, "state": "off",
             "reason": "tier 1 shed: on battery", "override": "auto"},
            {"name": "signage-lobby", "switch": "core", "port": 4, "tier": 2, "state": "on", "reason": "",
             "override": "auto"},
        ],
        "uplinks": [
            {"name": "wired", "role": "primary", "state": "down", "active": False, "rtt_ms": None, "loss_pct": 100.0,
             "since": now - 300, "reason": "3/3 targets lost"},
            {"name": "lte", "role": "backup", "state": "up", "active": True, "rtt_ms": 48.2, "loss_pct": 0.0,
             "since": now - 299, "reason": ""},
        ],
        "override": None,
        "modem": {"present": True, "sim": "ready", "registration": "home", "operator": "Telekom.de",
                  "rssi_dbm": -71.0, "technology": "LTE", "data_used_bytes": 734_003_200,
                  "data_budget_bytes": 10_000_000_000, "data_capped": False},
        "services": [{"name": "CRM", "reachable": True, "latency_ms": 61.0, "via": "lte"},
                     {"name": "ERP", "reachable": False, "error": "connection refused", "via": "lte"}],
        "incident": None,
        "notice": {"kind": "outage", "title": "Internet outage: working on backup LTE",
                   "text": "CRM works; ERP is down. Next update 15:30.", "since": "2026-03-02T14:30"},
        "maintenance": {"active": [], "next": None},
        "drills": {"last": None},
        "daemon": {"pid": 1, "uptime_s": 12.0, "services": ["power", "uplinks", "modem", "notify", "continuity"],
                   "not_built": ["panel"]},
    }


def seed(journal: Journal, now: float) -> dict[str, int]:
    """A realistic journal: samples for the charts, an open incident with a timeline, a drill, a report."""
    rows = []
    for i in range(0, 180):
        ts = now - 3 * 3600 + i * 60
        rows.append((ts, "ups.charge_pct", 100.0 if i < 168 else 100.0 - (i - 168) * 1.5))
        rows.append((ts, "ups.load_pct", 30.0 + (i % 7)))
        rows.append((ts, "uplink.wired.rtt_ms", 12.0 + (i % 5)))
        rows.append((ts, "uplink.wired.loss_pct", 0.0 if i < 175 else 100.0))
        rows.append((ts, "uplink.lte.rtt_ms", 45.0 + (i % 9)))
        rows.append((ts, "uplink.lte.loss_pct", 0.0))
    journal.add_samples(rows)
    inc = journal.insert("incidents", {
        "kind": "outage", "opened_at": now - 300, "severity": "critical", "causes": ["wired down", "mains lost"],
        "title": "Wired ISP down, mains lost",
        "checklist": [{"text": "Check the ISP's status page", "done": True},
                      {"text": "Call the ISP (0800 123 456), contract 4711", "done": False}]})
    journal.add_event("uplink.down", "wired: down (3/3 targets lost 1.0 s)", "warning", incident_id=inc, ts=now - 300)
    journal.add_event("uplink.active", "active uplink: lte (was wired)", incident_id=inc, ts=now - 299)
    journal.add_event("power.on_battery", "mains lost: on battery", "critical", incident_id=inc, ts=now - 250)
    closed = journal.insert("incidents", {"kind": "outage", "opened_at": now - 86400, "closed_at": now - 80000,
                                          "severity": "high", "causes": ["wired down"], "title": "ISP outage"})
    journal.add_event("uplink.down", "wired: down (blackhole)", "warning", incident_id=closed, ts=now - 86400)
    journal.add_event("uplink.up", "wired: up", incident_id=closed, ts=now - 80000)
    row = journal.incident(closed)
    built = report.build_report(row, journal.events(incident_id=closed), {"site": "Müller & Partner", "tz": "UTC"})
    journal.insert("reports", {"incident_id": closed, "created_at": now - 80000, "json": built,
                               "markdown": report.render_markdown(built)})
    drill = journal.insert("drills", {"kind": "wan", "started_at": now - 7 * 86400, "ended_at": now - 7 * 86400 + 300,
                                      "status": "passed", "incident_id": closed, "results": {"steps": ["cut", "ok"]}})
    journal.insert("orders", {"number": "20260302-AB-001", "initials": "AB", "created_at": now - 100, "note": "Meier"})
    return {"incident": inc, "closed": closed, "drill": drill}


class Env:
    def __init__(self, tmp: Path, read_only: str = "lan") -> None:
        self.state = tmp / "state"
        self.state.mkdir()
        text = CFG.format(state=self.state, hash=generate_password_hash(PASSWORD), read_only=read_only)
        self.cfg = config.parse(text, str(tmp / "gateway.toml"))
        self.journal = Journal(self.state / "journal.db")
        self.now = time.time()
        self.ids = seed(self.journal, self.now)
        self.snap = make_snapshot(self.now)
        inc = self.journal.incident(self.ids["incident"])
        assert inc is not None
        self.snap["incident"] = inc
        self.backend = FakeBackend(self.cfg, str(self.state / "journal.db"), copy.deepcopy(self.snap), token=TOKEN)
        self.app = create_app(self.backend)
        self.app.config["TESTING"] = True
        self.app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
        # these tests change the snapshot by hand and look at once; the shared render has tests of its own
        # (tests/web/test_cache.py) and the bench measures with the daemon's default
        self.app.config["STATUS_CACHE_S"] = 0.0

    def client(self, addr: str = "192.168.1.20") -> Any:
        c = self.app.test_client()
        c.environ_base["REMOTE_ADDR"] = addr
        return c

    def csrf(self, c: Any) -> str:
        c.get("/login")
        with c.session_transaction() as s:
            return str(s["csrf"])

    def admin(self, addr: str = "192.168.1.20") -> tuple[Any, str]:
        c = self.client(addr)
        tok = self.csrf(c)
        r = c.post("/login", data={"password": PASSWORD, "csrf_token": tok})
        assert r.status_code == 302, r.data
        with c.session_transaction() as s:
            return c, str(s["csrf"])


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.journal.close()


@pytest.fixture
def login_env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path, read_only="login")
    yield e
    e.journal.close()


class Served:
    """The app served on 127.0.0.1 in a thread, as the daemon serves it (web/serve.py)."""

    def __init__(self, app: Any, threads: int = 4, asgi: Any = None) -> None:
        from web.serve import WebServer

        self.server = WebServer(app, workers=threads, name="office-gateway-test", asgi=asgi).start()
        self.url = self.server.url

    def close(self) -> None:
        self.server.close()
