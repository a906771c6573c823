"""ContinuityService on a real loop with a real journal; facts fed through the bus, apps checked for real."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway import config
from gateway.core.errors import ActionRejected
from gateway.core.signals import (
    ActiveUplinkChanged,
    AlertAcknowledged,
    IncidentStatus,
    PowerStatus,
    UplinkStatus,
)
from gateway.runtime.continuity import ContinuityService
from gateway.runtime.service import Context
from gateway.store import Journal
from tests.conftest import until
from tests.continuity.conftest import App, free_port

CFG = """
[site]
name = "Test Office"
state_dir = "{state}"

[ups]

[[uplinks]]
name = "wired"
interface = "eth1"
role = "primary"

[[uplinks]]
name = "lte"
interface = "wwan0"
table = 101
role = "backup"

[[services]]
name = "CRM"
url = "{crm}"
department = "Sales"
rto_s = 60.0
interval_s = 0.5
timeout_s = 0.5

[incidents]
close_hold_s = {hold}
service_fail_after = 2
"""


def make(tmp_path: Path, crm: str, hold: float = 0.3) -> tuple[ContinuityService, Context, list[Any]]:
    cfg = config.parse(CFG.format(state=tmp_path, crm=crm, hold=hold), "t.toml")
    ctx = Context(config=cfg, journal=Journal(tmp_path / "journal.db"))
    seen: list[Any] = []
    ctx.bus.subscribe(IncidentStatus, seen.append)
    return ContinuityService(ctx), ctx, seen


def test_overlapping_power_and_isp_failures_are_one_incident_with_both_causes(tmp_path: Path,
                                                                              http_app: App) -> None:
    async def main() -> None:
        svc, ctx, seen = make(tmp_path, http_app.url)
        await svc.start()
        try:
            await until(lambda: svc.apps["CRM"].reachable is True, what="CRM checked")
            assert svc.snapshot()["incident"] is None
            ctx.bus.publish(UplinkStatus("wired", "primary", "up", True))
            ctx.bus.publish(UplinkStatus("lte", "backup", "standby", False))
            # a transition recorded just before the fact that opens the incident is gathered into it
            before = ctx.journal.add_event("uplink.state", "wired: down (3/3 targets lost)", "warning",
                                           {"uplink": "wired", "to": "down"})
            ctx.bus.publish(UplinkStatus("wired", "primary", "down", False))
            inc = svc.snapshot()["incident"]
            assert inc is not None and inc["severity"] == "high" and inc["causes"] == ["wired: down"]
            ctx.journal.add_event("uplink.switch", "uplinks: traffic wired → lte", "warning", {"to": "lte"})
            ctx.bus.publish(ActiveUplinkChanged("lte", "wired", "wired down"))
            ctx.bus.publish(UplinkStatus("lte", "backup", "up", True))
            ctx.journal.add_event("power.state", "power: on battery", "warning")
            ctx.bus.publish(PowerStatus("on_battery", charge_pct=90, runtime_s=1500, shed_tiers=(1,),
                                        shed_watts=42.0, minutes_gained=6.0))
            snap = svc.snapshot()["incident"]
            assert snap["id"] == inc["id"] and snap["causes"] == ["wired: down", "power: on battery"]
            book = {i["item"]: i for i in snap["runbook"]}
            assert book["recorded"]["done"] and book["backup"]["done"] and book["ups"]["done"]
            assert book["shed"]["done"] and book["apps"]["done"] and not book["owner"]["done"]
            assert not book["owner"]["auto"] and book["backup"]["auto"]
            assert seen and seen[-1].open and seen[-1].severity == "high" and not seen[-1].acked
            # the CRM stops answering: critical
            http_app.status = 500
            await until(lambda: svc.apps["CRM"].reachable is False, what="CRM unreachable")
            assert svc.snapshot()["incident"]["severity"] == "critical"
            assert seen[-1].severity == "critical"
            with pytest.raises(ActionRejected):
                await ctx.action("ack", {"incident_id": 999}, "admin")
            res = await ctx.action("ack", {}, "alice")
            assert "alice" in res["message"]
            snap = svc.snapshot()["incident"]
            assert snap["acked"] and {i["item"]: i for i in snap["runbook"]}["owner"]["by"] == "alice"
            assert seen[-1].acked
            http_app.status = 200
            await until(lambda: svc.apps["CRM"].reachable is True, what="CRM back")
            ctx.bus.publish(PowerStatus("online"))
            ctx.bus.publish(UplinkStatus("wired", "primary", "up", True))
            assert svc.snapshot()["incident"]["closing_in_s"] is not None
            await until(lambda: svc.snapshot()["incident"] is None, what="incident closed after the hold time")
            assert not seen[-1].open
            iid = inc["id"]
            await until(lambda: ctx.journal.report(iid), what="report written")
            row = ctx.journal.incident(iid)
            assert row["closed_at"] and row["severity"] == "critical" and row["acked_by"] == "alice"
            assert row["causes"] == ["wired: down", "power: on battery", "CRM: unreachable"]
            linked = {e["id"]: e for e in ctx.journal.events(incident_id=iid)}
            assert before["id"] in linked
            kinds = {e["kind"] for e in linked.values()}
            assert {"uplink.switch", "power.state", "service.unreachable", "service.reachable",
                    "incident.open", "incident.ack", "incident.close"} <= kinds
            rep = ctx.journal.report(iid)
            js = rep["json"]
            assert js["figures"]["time_to_backup_s"] is not None and js["figures"]["shed_watts"] == 42.0
            assert "Mains power failed" in js["cause"] or "mains power failed" in js["cause"]
            assert "wired line went down" in js["cause"]
            assert js["services"][0]["name"] == "CRM" and js["services"][0]["met"] is True
            assert js["response"]["acked_by"] == "alice" and js["response"]["met"] is True
            assert "## What worked" in rep["markdown"]
        finally:
            await svc.stop()
            ctx.journal.close()

    asyncio.run(main())


def test_incident_reopened_after_restart_and_closes_when_all_is_normal(tmp_path: Path, http_app: App) -> None:
    async def first() -> int:
        svc, ctx, _ = make(tmp_path, http_app.url, hold=0.5)
        await svc.start()
        ctx.bus.publish(PowerStatus("comm_lost"))
        iid = svc.snapshot()["incident"]["id"]
        # a crash: no stop(), the journal just goes away
        await asyncio.sleep(0)  # let the tasks start, so cancelling them is what a crash looks like
        for t in svc._tasks + svc._check_tasks:
            t.cancel()
        ctx.journal.close()
        return int(iid)

    iid = asyncio.run(first())

    async def second() -> None:
        svc, ctx, seen = make(tmp_path, http_app.url, hold=0.5)
        # the power service starts first and reports the fact again: still the same incident
        ctx.bus.publish(PowerStatus("comm_lost"))
        await svc.start()
        try:
            snap = svc.snapshot()["incident"]
            assert snap is not None and snap["id"] == iid and snap["causes"] == ["ups: contact lost"]
            assert seen and all(f.incident_id == iid and f.open for f in seen)
            assert ctx.journal.query("SELECT count(*) AS n FROM incidents")[0]["n"] == 1
            ctx.bus.publish(PowerStatus("online"))
            await until(lambda: svc.snapshot()["incident"] is None, what="closed after restart")
            await until(lambda: ctx.journal.report(iid), what="report")
            # the next incident gets a fresh id
            ctx.bus.publish(UplinkStatus("lte", "backup", "down", False))
            assert svc.snapshot()["incident"]["id"] == iid + 1
            assert svc.snapshot()["incident"]["severity"] == "low"
        finally:
            await svc.stop()
            ctx.journal.close()

    asyncio.run(second())


def test_wan_drill_end_to_end_with_a_registered_failover_action(tmp_path: Path, http_app: App) -> None:
    async def main() -> None:
        svc, ctx, seen = make(tmp_path, http_app.url)
        calls: list[str] = []

        async def failover(params: dict[str, Any], who: str) -> dict[str, Any]:
            target = params["target"]
            calls.append(target)
            if target == "lte":
                # the uplinks service answers at once and publishes the switch a moment later
                asyncio.get_running_loop().call_later(0.05, ctx.bus.publish,
                                                      ActiveUplinkChanged("lte", "wired", "manual override", "lte"))
                return {"override": "lte", "active": "wired"}
            ctx.bus.publish(ActiveUplinkChanged("wired", "lte", "policy"))
            return {"override": None, "active": "wired"}

        ctx.register_action("failover", failover)
        await svc.start()
        try:
            for bad in ({"kind": "fire"}, {"kind": "wan", "minutes": -1}, {"kind": "wan", "minutes": "5"},
                        {"kind": "power", "mains_cut": "yes"}):
                with pytest.raises(ActionRejected):
                    await ctx.action("drill", bad, "admin")
            assert ctx.journal.drills() == []
            res = await ctx.action("drill", {"kind": "wan", "minutes": 0.02}, "admin")
            did = res["id"]
            assert did and "started" in res["message"]
            with pytest.raises(ActionRejected) as exc:
                await ctx.action("drill", {"kind": "wan"}, "admin")
            assert exc.value.code == "drill_running"
            assert svc.snapshot()["incident"]["kind"] == "drill"
            row = await until(lambda: next((d for d in ctx.journal.drills() if d["id"] == did
                                            and d["status"] != "running"), None), what="drill finished")
            assert row["status"] == "passed", row["results"]
            assert calls == ["lte", "auto"]
            steps = row["results"]["steps"]
            assert any("backup line after" in s for s in steps) and any("CRM answers" in s for s in steps)
            assert row["results"]["time_to_failover_s"] > 0 and row["results"]["time_to_apps_s"] > 0
            iid = row["incident_id"]
            assert iid and svc.snapshot()["incident"] is None
            await until(lambda: ctx.journal.report(iid), what="drill report")
            rep = ctx.journal.report(iid)["json"]
            assert rep["kind"] == "drill" and rep["drill"]["passed"] is True
            assert rep["drill"]["time_to_failover_s"] == row["results"]["time_to_failover_s"]
            assert rep["drill"]["time_to_apps_s"] == row["results"]["time_to_apps_s"]
            assert "Drill: time until business apps answered" in ctx.journal.report(iid)["markdown"]
            assert all(s.kind == "drill" for s in seen)
            assert svc.snapshot()["drills"]["last"]["status"] == "passed"
            # done within the interval: a scheduled drill is not due
            res = await ctx.action("drill", {"kind": "wan", "only_if_due": True}, "timer")
            assert res["id"] is None and "no wan drill due" in res["message"]
        finally:
            await svc.stop()
            ctx.journal.close()

    asyncio.run(main())


def test_real_failure_during_a_drill_ends_it_and_opens_an_incident(tmp_path: Path, http_app: App) -> None:
    async def main() -> None:
        svc, ctx, _ = make(tmp_path, http_app.url)
        calls: list[str] = []

        async def failover(params: dict[str, Any], who: str) -> dict[str, Any]:
            calls.append(params["target"])
            return {"override": "lte", "active": "lte" if params["target"] == "lte" else "wired"}

        ctx.register_action("failover", failover)
        await svc.start()
        try:
            res = await ctx.action("drill", {"kind": "wan", "minutes": 5}, "admin")
            await until(lambda: "time_to_failover_s" in (svc.drill.results if svc.drill else {}), what="switched")
            ctx.bus.publish(PowerStatus("on_battery"))
            row = await until(lambda: next((d for d in ctx.journal.drills() if d["id"] == res["id"]
                                            and d["status"] != "running"), None), what="drill aborted")
            assert row["status"] == "failed" and "power: on battery" in row["results"]["verdict"]
            assert calls == ["lte", "auto"]
            inc = svc.snapshot()["incident"]
            assert inc["kind"] == "outage" and inc["causes"] == ["power: on battery"]
            with pytest.raises(ActionRejected) as exc:
                await ctx.action("drill", {"kind": "power"}, "admin")
            assert exc.value.code == "incident_open"
        finally:
            await svc.stop()
            ctx.journal.close()

    asyncio.run(main())


def test_app_checks_are_debounced_and_journaled_on_transitions_only(tmp_path: Path) -> None:
    async def main() -> None:
        svc, ctx, _ = make(tmp_path, f"http://127.0.0.1:{free_port()}/")
        ctx.bus.publish(ActiveUplinkChanged("wired", None, "start"))
        app = svc.apps["CRM"]
        await svc.check_app(app)
        assert app.reachable is None and svc.snapshot()["incident"] is None  # one failed check is not an outage
        await svc.check_app(app)
        assert app.reachable is False and app.via == "wired"
        for _ in range(3):
            await svc.check_app(app)
        rows = ctx.journal.events(kind_prefix="service.")
        assert [r["kind"] for r in rows] == ["service.unreachable"] and "refused" in rows[0]["message"]
        snap = svc.snapshot()
        assert snap["services"][0]["reachable"] is False and snap["services"][0]["department"] == "Sales"
        assert snap["incident"]["severity"] == "critical"
        assert any(m[0] == "gateway_service_reachable" and m[3] == 0.0 for m in svc.metrics())
        ctx.bus.publish(AlertAcknowledged("bob", None, "button"))
        assert svc.snapshot()["incident"]["acked_by"] == "bob"
        ctx.journal.close()

    asyncio.run(main())


class FakePower:
    """Stands in for the power service's read side and its UPS battery test (power area owns the real one)."""

    name = "power"

    def __init__(self) -> None:
        self.charge = 100.0
        self.testing = False
        self.reads = 0

    def snapshot(self) -> dict[str, Any]:
        self.reads += 1
        if self.testing:
            self.charge -= 0.5
            if self.reads > 8:
                self.testing = False
        status = ["OL", "TEST"] if self.testing else ["OL"]
        return {"power": {"state": "online", "ups": {"status": status, "charge_pct": self.charge,
                                                     "runtime_s": 1200.0, "load_pct": 30.0}}}

    async def battery_test(self) -> dict[str, Any]:
        self.testing = True
        return {"message": "test.battery.start accepted"}


def test_power_drill_measures_the_runtime_slope_through_the_power_service(tmp_path: Path, http_app: App) -> None:
    async def main() -> None:
        svc, ctx, _ = make(tmp_path, http_app.url)
        power = FakePower()
        ctx.services["power"] = power  # type: ignore[assignment]
        svc.power_sample_s = 0.02
        await svc.start()
        try:
            res = await ctx.action("drill", {"kind": "power"}, "admin")
            row = await until(lambda: next((d for d in ctx.journal.drills() if d["id"] == res["id"]
                                            and d["status"] != "running"), None), what="power drill finished")
            r = row["results"]
            assert r["battery_test"]["message"] == "test.battery.start accepted"
            assert r["runtime_claim_s"] == 1200.0 and r["runtime_measured_s"] > 0
            # the fake battery drains in seconds: far below the UPS's claim and the plan's margin
            assert row["status"] == "failed" and "against the UPS's claim of 20 min" in r["verdict"]
            assert any("battery test started" in s for s in r["steps"])
            assert ctx.journal.incident(row["incident_id"])["kind"] == "drill"
        finally:
            await svc.stop()
            ctx.journal.close()

    asyncio.run(main())


def test_power_drill_without_a_ups_test_says_so(tmp_path: Path, http_app: App) -> None:
    async def main() -> None:
        svc, ctx, _ = make(tmp_path, http_app.url)
        await svc.start()
        try:
            res = await ctx.action("drill", {"kind": "power"}, "admin")
            row = await until(lambda: next((d for d in ctx.journal.drills() if d["id"] == res["id"]
                                            and d["status"] != "running"), None), what="drill finished")
            assert row["status"] == "failed" and "no power service" in row["results"]["verdict"]
        finally:
            await svc.stop()
            ctx.journal.close()

    asyncio.run(main())
