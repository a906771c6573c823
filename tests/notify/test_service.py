"""NotifyService in-process: outbox, escalation, restart, real delivery, maintenance and order numbers."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gateway import config
from gateway.core.errors import ActionRejected
from gateway.core.signals import AlertAcknowledged, IncidentStatus
from gateway.drivers.notify import Notifier
from gateway.drivers.notify_fake import FakeNotifier
from gateway.runtime.notify import NotifyService
from gateway.runtime.service import Context
from gateway.store import Journal
from tests.conftest import wait_until

CFG = """
[site]
name = "Test Office"
timezone = "UTC"
state_dir = "{state}"

[ups]

[[uplinks]]
name = "wired"
interface = "eth1"
role = "primary"

[[services]]
name = "CRM"
url = "http://127.0.0.1:9/"

[notify]
staff = ["staff"]
link_base_url = "http://gw.test:8080"
coalesce_s = 60.0

[[notify.targets]]
name = "duty"
url = "{duty}"

[[notify.targets]]
name = "head"
url = "json://127.0.0.1:9/"

[[notify.targets]]
name = "staff"
url = "json://127.0.0.1:9/"

[[notify.escalation]]
name = "duty"
targets = ["duty"]

[[notify.escalation]]
name = "head"
targets = ["head"]
after_min = 30.0

[[maintenance]]
name = "freeze"
kind = "freeze"
start = "2026-12-20T00:00"
end = "2027-01-03T00:00"
"""

T0 = 1795478400.0  # 2026-11-24T00:00Z, a Tuesday


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def mono(self) -> float:
        return self.t

    def wall(self) -> float:
        return T0 + self.t


def make(tmp_path: Path, duty: str = "json://127.0.0.1:9/", notifier: Any = None,
         clock: Clock | None = None) -> tuple[NotifyService, Context, Clock]:
    clock = clock or Clock()
    cfg = config.parse(CFG.format(state=tmp_path, duty=duty), "t.toml")
    (tmp_path / "api.token").write_text("secret\n")
    ctx = Context(config=cfg, journal=Journal(tmp_path / "j.db", clock=clock.wall), monotonic=clock.mono,
                  wall=clock.wall)
    svc = NotifyService(ctx, notifier if notifier is not None else FakeNotifier({t.name: t.url for t in
                                                                                 cfg.notify.targets}))
    return svc, ctx, clock


def open_incident(ctx: Context, severity: str = "critical") -> int:
    iid = ctx.journal.insert("incidents", {"kind": "outage", "opened_at": ctx.wall(), "severity": severity,
                                           "causes": ["wired ISP down"], "title": "wired ISP down"})
    ctx.bus.publish(IncidentStatus(iid, True, severity, ("wired ISP down",)))
    return iid


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_critical_incident_escalates_until_acknowledged(tmp_path: Path) -> None:
    svc, ctx, clock = make(tmp_path)
    iid = open_incident(ctx)
    run(svc.drain())
    (target, title, body), = [m for m in svc.notifier.sent if m[0] != "staff"]
    assert target == "duty" and title.startswith("CRITICAL:") and "Since Tue 24 Nov 00:00" in body
    assert f"http://gw.test:8080/ack/{iid}/" in body
    clock.t = 1799
    run(svc._tick())
    run(svc.drain())
    assert [s[0] for s in svc.notifier.sent if s[0] != "staff"] == ["duty"]
    clock.t = 1800
    run(svc._tick())
    run(svc.drain())
    assert [s[0] for s in svc.notifier.sent if s[0] != "staff"] == ["duty", "head"]
    staff, = [s for s in svc.notifier.sent if s[0] == "staff"]
    assert staff[1] == "Outage: wired ISP down" and "offline kit" in staff[2]
    ctx.bus.publish(AlertAcknowledged("admin", iid))
    ctx.bus.publish(IncidentStatus(iid, False, "critical", ("wired ISP down",), acked=True))
    ctx.journal.update("incidents", "id", iid, {"closed_at": clock.wall()})
    clock.t = 1800 + 61
    run(svc._tick())
    run(svc.drain())
    assert svc.notifier.sent[-1][1].startswith("RESOLVED:") and "lasted 30 min" in svc.notifier.sent[-1][1]
    assert {s[0] for s in svc.notifier.sent[-2:]} == {"duty", "head"}


def test_failed_sends_are_retried_and_survive_a_restart_and_are_sent_once(tmp_path: Path) -> None:
    svc, ctx, clock = make(tmp_path)
    svc.notifier.failing.add("duty")
    open_incident(ctx)
    run(svc.drain())
    row, = ctx.journal.query("SELECT * FROM outbox WHERE target = 'duty'")
    assert row["state"] == "pending" and row["attempts"] == 1 and row["next_attempt_at"] > clock.wall()
    assert ctx.journal.events(kind_prefix="notify.unreachable")
    ctx.journal.close()
    # the daemon restarts: a new service on the same journal, the target works again
    svc2, ctx2, _ = make(tmp_path, clock=clock)
    clock.t += 10
    run(svc2.drain())
    run(svc2.drain())
    assert [s[0] for s in svc2.notifier.sent].count("duty") == 1
    assert ctx2.journal.query("SELECT state FROM outbox WHERE target = 'duty'")[0]["state"] == "sent"


class Receiver(BaseHTTPRequestHandler):
    got: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        n = int(self.headers.get("Content-Length", 0))
        Receiver.got.append(json.loads(self.rfile.read(n)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    Receiver.got = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"json://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


def test_real_webhook_delivery(tmp_path: Path, webhook: str) -> None:
    svc, ctx, _ = make(tmp_path, duty=webhook, notifier=None)
    svc.notifier = Notifier({"duty": webhook, "head": "json://127.0.0.1:9/", "staff": "json://127.0.0.1:9/"},
                            timeout_s=10)
    open_incident(ctx)
    run(svc.drain())
    assert len(Receiver.got) == 1 and Receiver.got[0]["title"].startswith("CRITICAL:")
    sent = ctx.journal.query("SELECT target, state FROM outbox ORDER BY id")
    assert {"target": "duty", "state": "sent"} in sent
    # the staff notice to a closed port is retried, not lost
    assert {"target": "staff", "state": "pending"} in sent


def test_real_smtp_delivery(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    got: list[Any] = []

    class Keep(Message):
        def handle_message(self, message: Any) -> None:
            got.append(message)

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctl = Controller(Keep(), hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        url = f"mailto://gw@127.0.0.1:{port}?from=gw@office.test&to=duty@office.test&secure=no"
        n = Notifier({"duty": url})
        run(n.send("duty", "CRITICAL: test", "body text"))
        wait_until(lambda: got, 10, what="mail received")
        assert got[0]["Subject"] == "CRITICAL: test" and "duty@office.test" in got[0]["To"]
    finally:
        ctl.stop()


def test_maintenance_add_cancel_freeze_and_notices(tmp_path: Path) -> None:
    svc, ctx, clock = make(tmp_path)
    with pytest.raises(ActionRejected) as exc:
        run(ctx.action("maintenance.add", {"name": "x", "start": "2026-12-22T10:00", "end": "2026-12-22T11:00"}, "t"))
    assert exc.value.code == "freeze"
    with pytest.raises(ActionRejected):
        run(ctx.action("maintenance.add", {"name": "x", "recurrence": "fortnightly"}, "t"))
    with pytest.raises(ActionRejected):
        run(ctx.action("maintenance.add", {"name": "x", "start": "2026-11-24T10:00", "end": "2026-11-24T11:00",
                                           "services": ["Nope"]}, "t"))
    res = run(ctx.action("maintenance.add", {"name": "ISP work", "start": "2026-11-24T02:00",
                                             "end": "2026-11-24T03:00", "services": ["CRM"], "switch_to_lte": True},
                         "admin"))
    assert res["id"] == 1 and "next Tue 24 Nov 02:00" in res["message"]
    snap = svc.snapshot()
    assert snap["maintenance"]["next"]["name"] == "ISP work"
    assert snap["notice"]["title"].startswith("Planned maintenance within 24 hours")
    clock.t = 2 * 3600 + 60
    run(svc.maintenance_tick())
    assert svc.snapshot()["maintenance"]["active"] == ["ISP work"] and svc.maint.switch_to_lte
    clock.t = 3 * 3600 + 60
    run(svc.maintenance_tick())
    kinds = [n["key"].rsplit(":", 1)[1] for n in ctx.journal.notices()][::-1]
    assert kinds == ["day", "started", "finished"]
    assert svc.snapshot()["maintenance"]["active"] == []
    run(ctx.action("maintenance.cancel", {"id": 1}, "admin"))
    assert ctx.journal.maintenance() == []
    with pytest.raises(ActionRejected):
        run(ctx.action("maintenance.cancel", {"id": 1}, "admin"))


def test_alerts_for_affected_parts_are_held_during_a_window(tmp_path: Path) -> None:
    svc, ctx, clock = make(tmp_path)
    run(ctx.action("maintenance.add", {"name": "ISP work", "start": "2026-11-24T00:00", "end": "2026-11-24T02:00",
                                       "switch_to_lte": True}, "admin"))
    open_incident(ctx, "high")
    run(svc.drain())
    assert not [s for s in svc.notifier.sent if s[0] == "duty"]
    assert ctx.journal.events(kind_prefix="notify.held")


def test_order_numbers_unique_under_concurrency_and_across_restarts(tmp_path: Path) -> None:
    svc, ctx, clock = make(tmp_path)

    async def many() -> list[str]:
        res = await asyncio.gather(*[ctx.action("order_number", {"initials": "ab"}, "t") for _ in range(40)])
        return [r["number"] for r in res]

    nums = run(many())
    assert len(set(nums)) == 40 and nums[0] == "20261124-AB-001"
    ctx.journal.close()
    svc2, ctx2, _ = make(tmp_path, clock=clock)
    nxt = run(ctx2.action("order_number", {"initials": "CD"}, "t"))["number"]
    assert nxt == "20261124-CD-041"
    with pytest.raises(ActionRejected):
        run(ctx2.action("order_number", {"initials": "../x"}, "t"))
    run(ctx2.action("order.reconcile", {"number": nxt}, "admin"))
    assert len(ctx2.journal.orders(open_only=True)) == 40


def test_staff_hear_of_an_incident_only_once_it_affects_them(tmp_path: Path) -> None:
    """A low incident (the idle LTE backup failing) goes to the admins only; staff get one notice if it grows."""
    svc, ctx, _ = make(tmp_path)
    iid = open_incident(ctx, severity="low")
    run(svc.drain())
    assert [s for s in svc.notifier.sent if s[0] == "staff"] == []
    assert ctx.journal.notices() == [] and svc.snapshot()["notice"] is None
    ctx.bus.publish(IncidentStatus(iid, True, "high", ("wired ISP down",)))
    ctx.bus.publish(IncidentStatus(iid, True, "critical", ("wired ISP down",)))
    run(svc.drain())
    staff = [s for s in svc.notifier.sent if s[0] == "staff"]
    assert [s[1] for s in staff] == ["Outage: wired ISP down"]
    assert len(ctx.journal.notices()) == 1
