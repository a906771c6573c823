"""Continuity: incidents with a live runbook, business-app checks, post-incident reports and drills.

Facts from every area (power, uplinks, modem, business apps, acknowledgements) feed the pure incidents
machine (``gateway.core.incidents``); its effects write the incidents table, link journal rows to the
open incident and publish :class:`IncidentStatus` (notifications and the panel act on it).  When an
incident closes its report (``gateway.core.report``) is written into the reports table.

Business apps (``[[services]]``) are checked through the active uplink (the daemon lives in the
appliance's namespace, so the default route decides) and published as :class:`ServiceReachability` on
transitions only (``[incidents] service_fail_after`` failed checks in a row make an app unreachable).

Drills (actions ``drill``): ``wan`` forces failover to LTE for N minutes through the uplinks' ``failover``
action and times how long until every business app answers; ``power`` runs the UPS's own battery test
through the power service (or, with ``mains_cut``, watches a real mains cut) and compares the measured
runtime with the UPS's claim and the plan's margin.  A drill is an incident of kind ``drill``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.config import Config
from gateway.core import incidents as core
from gateway.core import report as report_mod
from gateway.core.base import Effect, Event, JournalEvent, Tick
from gateway.core.errors import ActionRejected, ConfigError, GatewayError
from gateway.core.signals import (
    ActiveUplinkChanged,
    AlertAcknowledged,
    IncidentStatus,
    ModemStatus,
    PowerStatus,
    ServiceReachability,
    UplinkStatus,
)
from gateway.drivers.apps import AppProbe, AppResult, AppTarget, target_of
from gateway.runtime.service import Context, Service, every

log = logging.getLogger("gateway.continuity")

TIMELINE_LEN = 20
ROW_REFRESH_S = 30.0  # an open incident's figures are written at least this often
SAMPLE_PERIOD_S = 60.0  # one latency sample per app per minute
DRILL_STATUS = ("running", "passed", "failed")


def policy_of(cfg: Config) -> core.Policy:
    return core.Policy(close_hold_s=cfg.incidents.close_hold_s, services=tuple(s.name for s in cfg.services),
                       uplinks=tuple(u.name for u in cfg.uplinks))


class _App:
    def __init__(self, target: AppTarget, department: str, rto_s: float, interval_s: float) -> None:
        self.target = target
        self.department = department
        self.rto_s = rto_s
        self.interval_s = interval_s
        self.reachable: bool | None = None
        self.latency_ms: float | None = None
        self.via: str | None = None
        self.since: float | None = None
        self.error = ""
        self.fails = 0
        self.checked_at: float | None = None
        self.latencies: list[float] = []


class _Drill:
    def __init__(self, drill_id: int, kind: str, started: float) -> None:
        self.id = drill_id
        self.kind = kind
        self.started_mono = started
        self.steps: list[str] = []
        self.results: dict[str, Any] = {"steps": self.steps}
        self.abort = asyncio.Event()
        self.abort_reason = ""
        self.task: asyncio.Task[Any] | None = None


class ContinuityService(Service):
    name = "continuity"

    def __init__(self, ctx: Context, probe: Any = None) -> None:
        super().__init__(ctx)
        self.probe = probe or AppProbe()
        self.state = core.initial(policy_of(ctx.config))
        self.apps: dict[str, _App] = {}
        self.active_uplink: str | None = None
        self.backup_names: set[str] = set()
        self.primary_names: set[str] = set()
        self._queue: deque[tuple[Event, float | None]] = deque()
        self._busy = False
        self._links: dict[int, list[int]] = {}
        self._rows: dict[int, dict[str, Any]] = {}  # recent journal rows by id (for the live timeline)
        self._timeline: deque[dict[str, Any]] = deque(maxlen=TIMELINE_LEN)
        self._row_written_at = 0.0
        self._row_dirty = False
        self._reports_due: list[int] = []
        self._samples_at = 0.0
        self._check_tasks: list[asyncio.Task[Any]] = []
        self._backup_event = asyncio.Event()
        self.drill: _Drill | None = None
        self.opened_total = 0
        self.power_sample_s = 1.0  # how often a power drill reads the UPS (the power service polls about as often)
        self._abandoned_wan = False
        self._build_apps(ctx.config)
        self._uplink_roles(ctx.config)
        self._restore()
        bus = ctx.bus
        for kind in (PowerStatus, UplinkStatus, ActiveUplinkChanged, ServiceReachability, ModemStatus,
                     AlertAcknowledged):
            bus.subscribe(kind, self._on_fact)
        ctx.journal.listeners.append(self._on_row)
        ctx.register_action("ack", self._action_ack)
        ctx.register_action("drill", self._action_drill)
        ctx.register_action("runbook", self._action_runbook)

    # ------------------------------------------------------------------------------------ config
    def _build_apps(self, cfg: Config) -> None:
        old = self.apps
        self.apps = {}
        for s in cfg.services:
            try:
                t = target_of(s.name, s.url, s.address, s.expect_status, s.timeout_s)
            except ConfigError as exc:
                log.error("continuity: %s (not checked)", exc.problems[0])
                continue
            app = _App(t, s.department, s.rto_s, s.interval_s)
            prev = old.get(s.name)
            if prev is not None:  # keep what is known across a reload
                app.reachable, app.latency_ms, app.via, app.since = prev.reachable, prev.latency_ms, prev.via, prev.since
            self.apps[s.name] = app

    def _uplink_roles(self, cfg: Config) -> None:
        self.primary_names = {u.name for u in cfg.uplinks if u.role == "primary"}
        self.backup_names = {u.name for u in cfg.uplinks if u.role == "backup"}

    def reload(self, config: Config) -> None:
        super().reload(config)
        self.state = replace(self.state, policy=policy_of(config))
        self._build_apps(config)
        self._uplink_roles(config)
        if self._tasks:
            self._start_checks()

    # --------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        await self._resume()
        self.spawn(every(1.0, self._tick), "tick")
        self._start_checks()
        self.spawn(every(3600.0, self._drill_reminder), "drill-reminder")

    async def stop(self) -> None:
        if self.drill is not None:
            self.drill.abort_reason = "daemon stopping"
            self.drill.abort.set()
            if self.drill.task is not None:
                try:
                    async with asyncio.timeout(5):
                        await asyncio.shield(self.drill.task)
                except (TimeoutError, asyncio.CancelledError, Exception):
                    pass
        for t in self._check_tasks:
            t.cancel()
        for t in self._check_tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._check_tasks.clear()
        self._flush()
        self._flush_samples(force=True)
        if self._on_row in self.ctx.journal.listeners:
            self.ctx.journal.listeners.remove(self._on_row)
        await super().stop()

    def _start_checks(self) -> None:
        for t in self._check_tasks:
            t.cancel()
        self._check_tasks = [asyncio.ensure_future(self._check_loop(app)) for app in self.apps.values()]

    def _restore(self) -> None:
        """Reopen the incident the journal still holds open (crash safety); mark drills cut short as failed.

        Runs in ``__init__``: other services may publish facts while they start, before this one does."""
        j = self.ctx.journal
        now = self.ctx.wall()
        max_id = j.query("SELECT max(id) AS m FROM incidents")[0]["m"] or 0
        current = None
        for row in j.incidents(open_only=True, limit=50):
            try:
                inc = core.incident_from_row(row)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("continuity: incident #%s unreadable (%s); closing it", row.get("id"), exc)
                j.update("incidents", "id", row["id"], {"closed_at": now})
                continue
            if current is None:
                current = inc
            else:  # more than one open (should not happen): close the older ones
                j.update("incidents", "id", inc.id, {"closed_at": now})
                self._reports_due.append(inc.id)
        self.state = core.initial(policy_of(self.ctx.config), next_id=max_id + 1, open_incident=current, now=now)
        for d in j.query("SELECT * FROM drills WHERE status = 'running'"):
            raw = d.get("results")
            results: dict[str, Any] = raw if isinstance(raw, dict) else {"steps": []}
            results.setdefault("steps", []).append("the daemon restarted during the drill; drill abandoned")
            results["verdict"] = "the daemon restarted during the drill"
            j.update("drills", "id", d["id"], {"status": "failed", "ended_at": now, "results": results})
            if d.get("kind") == "wan":
                self._abandoned_wan = True
        if current is not None:
            for e in j.query("SELECT * FROM events WHERE incident_id = ? ORDER BY id DESC LIMIT ?",
                             [current.id, TIMELINE_LEN]):
                self._timeline.appendleft(self._short(e))
            log.info("continuity: incident #%d still open after restart (%s)", current.id, current.title)

    async def _resume(self) -> None:
        """The asynchronous half of the restore: hand the uplinks back, tell the others, end a cut-short drill."""
        if self._abandoned_wan and "failover" in self.ctx.actions:
            try:
                await self.ctx.action("failover", {"target": "auto"}, "drill")
            except GatewayError as exc:
                log.warning("continuity: could not hand the uplinks back to the policy: %s", exc)
        self._abandoned_wan = False
        inc = self.state.incident
        if inc is not None:
            if inc.kind == "drill":
                self._feed(core.DrillEnded(False, "the daemon restarted during the drill"))
            else:
                self._publish_status(inc)
        self._write_reports()

    # ------------------------------------------------------------------------------------ feeding
    def _on_fact(self, fact: Event) -> None:
        if isinstance(fact, ActiveUplinkChanged):
            self.active_uplink = fact.name
            if fact.name in self.backup_names or fact.override == "lte":
                self._backup_event.set()
        elif isinstance(fact, UplinkStatus) and fact.active:
            self.active_uplink = fact.name
            if fact.role == "backup":
                self._backup_event.set()
        self._feed(fact)

    def _on_row(self, row: dict[str, Any]) -> None:
        rid = row.get("id")
        if not isinstance(rid, int):
            return
        self._rows[rid] = row
        if len(self._rows) > 200:
            for k in sorted(self._rows)[:100]:
                del self._rows[k]
        inc = self.state.incident
        if row.get("incident_id") is not None:
            if inc is not None and row["incident_id"] == inc.id:
                self._timeline.append(self._short(row))
            return
        self._feed(core.Observed(rid, float(row.get("ts") or self.ctx.wall()), str(row.get("kind", ""))))

    def _feed(self, event: Event, now: float | None = None) -> None:
        """Step the machine; events raised while carrying out effects are queued, never nested."""
        self._queue.append((event, now))
        if self._busy:
            return
        self._busy = True
        try:
            while self._queue:
                ev, at = self._queue.popleft()
                self.state, effects = core.step(self.state, ev, self.ctx.wall() if at is None else at)
                for eff in effects:
                    try:
                        self._apply(eff)
                    except GatewayError as exc:
                        log.error("continuity: %s failed: %s", type(eff).__name__, exc)
        finally:
            self._busy = False

    def _apply(self, eff: Effect) -> None:
        j = self.ctx.journal
        if isinstance(eff, core.Opened):
            j.insert("incidents", eff.incident.to_row())
            self._row_written_at, self._row_dirty = self.ctx.monotonic(), False
            self._timeline.clear()
            self.opened_total += 1
            self._publish_status(eff.incident)
        elif isinstance(eff, core.Updated):
            if eff.significant or self.ctx.monotonic() - self._row_written_at >= ROW_REFRESH_S:
                self._write_row(eff.incident)
                if eff.significant:
                    self._publish_status(eff.incident)
            else:
                self._row_dirty = True
        elif isinstance(eff, core.Closed):
            self._flush_links()
            self._write_row(eff.incident)
            self._publish_status(eff.incident)
            self._reports_due.append(eff.incident.id)
        elif isinstance(eff, core.Link):
            self._links.setdefault(eff.incident_id, []).extend(eff.event_ids)
            inc = self.state.incident
            for i in eff.event_ids:
                if inc is not None and eff.incident_id == inc.id and i in self._rows:
                    self._timeline.append(self._short(self._rows[i]))
        elif isinstance(eff, core.AbortDrill):
            if self.drill is not None:
                self.drill.abort_reason = eff.reason
                self.drill.abort.set()
        elif isinstance(eff, JournalEvent):
            iid = eff.data.get("incident_id")
            self.ctx.record(eff, incident_id=iid if isinstance(iid, int) else None)

    def _write_row(self, inc: core.Incident) -> None:
        row = inc.to_row()
        self.ctx.journal.update("incidents", "id", inc.id, {k: v for k, v in row.items() if k != "id"})
        self._row_written_at, self._row_dirty = self.ctx.monotonic(), False

    def _publish_status(self, inc: core.Incident) -> None:
        self.ctx.bus.publish(IncidentStatus(incident_id=inc.id, open=inc.closed_at is None, severity=inc.severity,
                                            causes=inc.causes, acked=inc.acked_at is not None, kind=inc.kind))

    @staticmethod
    def _short(row: dict[str, Any]) -> dict[str, Any]:
        return {"id": row.get("id"), "ts": row.get("ts"), "kind": row.get("kind"), "severity": row.get("severity"),
                "message": row.get("message")}

    # ------------------------------------------------------------------------------ housekeeping
    async def _tick(self) -> None:
        self._feed(Tick())
        self._flush()

    def _flush(self) -> None:
        self._flush_links()
        inc = self.state.incident
        if inc is not None and self._row_dirty and self.ctx.monotonic() - self._row_written_at >= ROW_REFRESH_S:
            self._write_row(inc)
        self._write_reports()
        self._flush_samples()

    def _flush_links(self) -> None:
        if not self._links:
            return
        links, self._links = self._links, {}
        for iid, ids in links.items():
            try:
                self.ctx.journal.set_event_incident(ids, iid)
            except GatewayError as exc:
                log.error("continuity: could not link %d journal rows to incident #%d: %s", len(ids), iid, exc)
                self._links.setdefault(iid, []).extend(ids)

    def _write_reports(self) -> None:
        while self._reports_due:
            iid = self._reports_due[0]
            try:
                self.write_report(iid)
            except GatewayError as exc:  # the journal is unwell: try again on the next tick
                log.error("continuity: report for incident #%d not written: %s", iid, exc)
                return
            except Exception:  # a bug in the report must not block the next ones
                log.exception("continuity: report for incident #%d failed", iid)
            self._reports_due.pop(0)

    def report_extra(self, incident: dict[str, Any]) -> dict[str, Any]:
        cfg = self.ctx.config
        extra: dict[str, Any] = {
            "site": cfg.site.name, "tz": cfg.site.timezone,
            "response_targets_min": {"critical": cfg.notify.response_critical_min,
                                     "high": cfg.notify.response_high_min},
            "services": [{"name": s.name, "rto_s": s.rto_s, "department": s.department} for s in cfg.services],
            "runtime_needed_s": cfg.ups.shutdown_duration_s + cfg.ups.shutdown_reserve_s,
            "runtime_margin_pct": cfg.drills.runtime_margin_pct,
            "primary": next(iter(sorted(self.primary_names)), None),
            "backup": next(iter(sorted(self.backup_names)), None),
        }
        raw = incident.get("data")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if incident.get("kind") == "drill" and data.get("drill_id"):
            rows = self.ctx.journal.query("SELECT * FROM drills WHERE id = ?", [data["drill_id"]])
            if rows:
                extra["drill"] = rows[0]
        return extra

    def write_report(self, incident_id: int) -> dict[str, Any] | None:
        """Build the report of a (closed) incident from the journal and store it; returns it."""
        j = self.ctx.journal
        inc = j.incident(incident_id)
        if inc is None:
            return None
        events = j.events(incident_id=incident_id, limit=200_000)
        rep = report_mod.build_report(inc, events, self.report_extra(inc))
        md = report_mod.render_markdown(rep)
        with j.transaction() as c:
            c.execute("INSERT INTO reports (incident_id, created_at, json, markdown) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT(incident_id) DO UPDATE SET created_at = excluded.created_at, json = excluded.json, "
                      "markdown = excluded.markdown",
                      (incident_id, self.ctx.wall(), json.dumps(rep, default=str), md))
        self.ctx.record(JournalEvent("incident.report", f"incident #{incident_id}: report written "
                                     f"(gateway report {incident_id})", data={"incident_id": incident_id}),
                        incident_id=incident_id)
        return rep

    # ---------------------------------------------------------------------------- business apps
    async def _check_loop(self, app: _App) -> None:
        while True:
            try:
                await self.check_app(app)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("continuity: check of %s crashed", app.target.name)
            # after a first failure, look again soon: one lost check is not an outage
            delay = min(app.interval_s, 1.0) if 0 < app.fails < self.ctx.config.incidents.service_fail_after \
                else app.interval_s
            await asyncio.sleep(delay)

    async def check_app(self, app: _App) -> AppResult:
        res: AppResult = await self.probe.check(app.target)
        via = self.active_uplink
        app.checked_at = self.ctx.wall()
        app.error = res.error
        if res.reachable:
            app.fails = 0
            app.latency_ms = res.latency_ms
            if res.latency_ms is not None:
                app.latencies.append(res.latency_ms)
        else:
            app.fails += 1
        need = self.ctx.config.incidents.service_fail_after
        new: bool | None = None
        if res.reachable and app.reachable is not True:
            new = True
        elif not res.reachable and app.reachable is not False and app.fails >= need:
            new = False
        if new is not None:
            first = app.reachable is None
            app.reachable, app.via, app.since = new, via, self.ctx.wall()
            name = app.target.name
            where = f" via {via}" if via else ""
            if new:
                ms = f", {res.latency_ms:.0f} ms" if res.latency_ms is not None else ""
                msg = f"{name}: reachable{where}{ms}" if not first else f"{name}: reachable{where}{ms} (first check)"
                ev = JournalEvent("service.reachable", msg, "info",
                                  {"service": name, "via": via, "latency_ms": res.latency_ms})
            else:
                ev = JournalEvent("service.unreachable", f"{name}: unreachable{where} ({res.error})", "warning",
                                  {"service": name, "via": via, "error": res.error, "checks": app.fails})
            self.ctx.record(ev)
            self.ctx.bus.publish(ServiceReachability(name, new, res.latency_ms if new else None, via, res.error))
        return res

    def _flush_samples(self, force: bool = False) -> None:
        now = self.ctx.monotonic()
        if not force and now - self._samples_at < SAMPLE_PERIOD_S:
            return
        self._samples_at = now
        ts = self.ctx.wall()
        rows = []
        for app in self.apps.values():
            if app.latencies:
                rows.append((ts, f"service.{app.target.name}.latency_ms", sum(app.latencies) / len(app.latencies)))
                app.latencies.clear()
        if rows:
            try:
                self.ctx.journal.add_samples(rows)
            except GatewayError as exc:
                log.warning("continuity: samples not written: %s", exc)

    # ----------------------------------------------------------------------------------- actions
    async def _action_ack(self, params: dict[str, Any], who: str) -> dict[str, Any]:
        iid = params.get("incident_id")
        if iid is not None and (not isinstance(iid, int) or isinstance(iid, bool)):
            raise ActionRejected("bad_incident", "incident_id must be a number")
        inc = self.state.incident
        if inc is None:
            raise ActionRejected("no_incident", "no open incident to acknowledge")
        if iid is not None and iid != inc.id:
            raise ActionRejected("unknown_incident", f"incident #{iid} is not open (open: #{inc.id})")
        source = params.get("source", "api")
        if source not in ("api", "page", "button", "link"):
            source = "api"
        already = inc.acked_at is not None
        self.ctx.bus.publish(AlertAcknowledged(who=who, incident_id=inc.id, source=source))
        by = self.state.incident.acked_by if self.state.incident else who
        msg = f"incident #{inc.id} already acknowledged by {by}" if already else \
            f"incident #{inc.id} acknowledged by {who}"
        return {"incident_id": inc.id, "message": msg}

    async def _action_runbook(self, params: dict[str, Any], who: str) -> dict[str, Any]:
        item, done = params.get("item"), params.get("done", True)
        inc = self.state.incident
        if inc is None:
            raise ActionRejected("no_incident", "no open incident")
        if not isinstance(item, str) or inc.item(item) is None:
            raise ActionRejected("bad_item", "item must be one of: " + ", ".join(i.item for i in inc.runbook))
        if not isinstance(done, bool):
            raise ActionRejected("bad_done", "done must be true or false")
        self._feed(core.RunbookTick(item, done, who))
        return {"incident_id": inc.id, "message": f"runbook: {item} {'done' if done else 'not done'}"}

    def _last_drill(self, kind: str | None = None) -> dict[str, Any] | None:
        sql = "SELECT * FROM drills WHERE status IN ('passed', 'failed')"
        args: list[Any] = []
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        rows = self.ctx.journal.query(sql + " ORDER BY started_at DESC LIMIT 1", args)
        return rows[0] if rows else None

    def next_due(self, kind: str | None = None) -> float | None:
        """Wall time the next drill is due (None: never drilled, so due now)."""
        last = self._last_drill(kind)
        if last is None:
            return None
        return float(last["started_at"]) + self.ctx.config.drills.interval_days * 86400

    async def _action_drill(self, params: dict[str, Any], who: str) -> dict[str, Any]:
        kind = params.get("kind")
        if kind not in ("power", "wan"):
            raise ActionRejected("bad_kind", "kind must be power or wan")
        minutes = params.get("minutes")
        if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, (int, float))
                                    or not 0 < minutes <= 240):
            raise ActionRejected("bad_minutes", "minutes must be a number above 0 and at most 240")
        mains_cut = params.get("mains_cut", False)
        only_if_due = params.get("only_if_due", False)
        if not isinstance(mains_cut, bool) or not isinstance(only_if_due, bool):
            raise ActionRejected("bad_flag", "mains_cut and only_if_due must be true or false")
        if only_if_due:
            due = self.next_due(kind)
            if due is not None and due > self.ctx.wall():
                when = datetime.fromtimestamp(due, self._tz()).strftime("%Y-%m-%d")
                return {"id": None, "message": f"no {kind} drill due (next due {when})"}
        if self.drill is not None:
            raise ActionRejected("drill_running", f"drill #{self.drill.id} ({self.drill.kind}) is still running")
        inc = self.state.incident
        if inc is not None:
            raise ActionRejected("incident_open", f"incident #{inc.id} ({inc.title}) is open; drills wait until "
                                 "it is closed")
        if kind == "wan" and not self.backup_names:
            raise ActionRejected("no_backup", "no backup uplink configured; a WAN drill needs one")
        if minutes is None:
            minutes = self.ctx.config.drills.wan_minutes if kind == "wan" else (5.0 if mains_cut else 2.0)
        now = self.ctx.wall()
        drill_id = self.ctx.journal.insert("drills", {"kind": kind, "started_at": now, "status": "running",
                                                      "results": {"steps": [], "who": who, "minutes": minutes,
                                                                  "mains_cut": mains_cut}})
        d = _Drill(drill_id, kind, self.ctx.monotonic())
        d.results.update({"who": who, "minutes": minutes, "mains_cut": mains_cut})
        self.drill = d
        detail = f"{minutes:g} min" + (", real mains cut" if mains_cut else "") + f", by {who}"
        self._feed(core.DrillStarted(drill_id, kind, detail))
        inc_now = self.state.incident
        if inc_now is not None:
            self.ctx.journal.update("drills", "id", drill_id, {"incident_id": inc_now.id})
        coro = self._wan_drill(d, float(minutes)) if kind == "wan" else self._power_drill(d, float(minutes), mains_cut)
        d.task = self.spawn(self._run_drill(d, coro), f"drill-{drill_id}")
        what = "WAN drill: the office moves to the backup line" if kind == "wan" else \
            ("power drill: real mains cut, follow the steps" if mains_cut else "power drill: UPS battery test")
        return {"id": drill_id, "incident_id": inc_now.id if inc_now else None,
                "message": f"drill #{drill_id} started ({what}, {minutes:g} min)"}

    def _tz(self) -> Any:
        try:
            return ZoneInfo(self.ctx.config.site.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            return UTC

    # ------------------------------------------------------------------------------------ drills
    def _step(self, d: _Drill, text: str) -> None:
        t = self.ctx.monotonic() - d.started_mono
        d.steps.append(f"+{t:5.1f} s  {text}")
        log.info("drill #%d: %s", d.id, text)
        try:
            self.ctx.journal.update("drills", "id", d.id, {"results": d.results})
        except GatewayError as exc:
            log.warning("drill #%d: progress not written: %s", d.id, exc)

    async def _run_drill(self, d: _Drill, coro: Any) -> None:
        passed, verdict = False, ""
        try:
            passed, verdict = await coro
        except asyncio.CancelledError:
            verdict = "cancelled"
            raise
        except Exception as exc:
            log.exception("drill #%d crashed", d.id)
            verdict = f"drill failed: {type(exc).__name__}: {exc}"
        finally:
            if d.abort_reason and not verdict:
                verdict = f"ended early: {d.abort_reason}"
            d.results["verdict"] = verdict
            d.results["passed"] = passed
            self._step(d, ("PASSED: " if passed else "FAILED: ") + verdict)
            status = "passed" if passed else "failed"
            inc = self.state.incident
            if inc is not None and inc.kind == "drill" and inc.drill_id == d.id:
                self._feed(core.DrillEnded(passed, verdict))
            try:
                self.ctx.journal.update("drills", "id", d.id, {"status": status, "ended_at": self.ctx.wall(),
                                                               "results": d.results})
            except GatewayError as exc:
                log.error("drill #%d: result not written: %s", d.id, exc)
            self.drill = None
            self._flush()

    async def _sleep_or_abort(self, d: _Drill, seconds: float) -> bool:
        """Wait; True if the drill was aborted meanwhile."""
        try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races the abort
            async with asyncio.timeout(max(0.0, seconds)):
                await d.abort.wait()
            return True
        except TimeoutError:
            return False

    async def _all_apps(self) -> dict[str, AppResult]:
        apps = list(self.apps.values())
        results = await asyncio.gather(*(self.probe.check(a.target) for a in apps))
        return {a.target.name: r for a, r in zip(apps, results, strict=True)}

    async def _wan_drill(self, d: _Drill, minutes: float) -> tuple[bool, str]:
        end = d.started_mono + minutes * 60
        self._step(d, "switching the office to the backup line (LTE) by policy routing")
        if "failover" not in self.ctx.actions:
            self._step(d, "the uplinks service is not running: the line cannot be switched")
            return False, "could not switch to the backup line"
        self._backup_event.clear()
        switched = False
        try:
            res = await self.ctx.action("failover", {"target": "lte"}, "drill")
            if res.get("active") in self.backup_names:
                self._backup_event.set()
            deadline = min(30.0, max(1.0, end - self.ctx.monotonic()))
            try:
                async with asyncio.timeout(deadline):
                    await self._backup_event.wait()
                switched = True
            except TimeoutError:
                pass
            if switched:
                t_fo = self.ctx.monotonic() - d.started_mono
                d.results["time_to_failover_s"] = round(t_fo, 3)
                self._feed(core.DrillMark("failover", round(t_fo, 3)))
                self._step(d, f"traffic on the backup line after {t_fo:.2f} s")
            else:
                self._step(d, "the backup line did not become active within 30 s")
            per_app: dict[str, float] = {}
            apps_ok = False
            if not self.apps:
                self._step(d, "no business apps configured ([[services]]): nothing to time")
            while switched and not d.abort.is_set() and self.ctx.monotonic() < end:
                results = await self._all_apps()
                t = self.ctx.monotonic() - d.started_mono
                for name, r in results.items():
                    if r.reachable and name not in per_app:
                        per_app[name] = round(t, 3)
                        self._step(d, f"{name} answers through the backup line after {t:.2f} s"
                                   + (f" ({r.latency_ms:.0f} ms)" if r.latency_ms is not None else ""))
                if len(per_app) == len(self.apps):
                    apps_ok = True
                    break
                if await self._sleep_or_abort(d, 0.25):
                    break
            d.results["apps_s"] = per_app
            if apps_ok and self.apps:
                t_apps = max(per_app.values())
                d.results["time_to_apps_s"] = t_apps
                self._feed(core.DrillMark("apps_reachable", t_apps))
            elif switched and self.apps:
                missing = sorted(set(self.apps) - set(per_app))
                self._step(d, f"not reachable through the backup line: {', '.join(missing)}")
            if not d.abort.is_set():
                left = end - self.ctx.monotonic()
                if left > 0:
                    self._step(d, f"holding the backup line for {left:.0f} s more")
                await self._sleep_or_abort(d, left)
        finally:
            try:
                await self.ctx.action("failover", {"target": "auto"}, "drill")
                self._step(d, "control of the uplinks returned to the policy (failover auto)")
            except GatewayError as exc:
                self._step(d, f"could not return the uplinks to the policy: {exc}")
        if d.abort.is_set():
            return False, f"ended early: {d.abort_reason}"
        if not switched:
            return False, "the backup line did not take over"
        missed = [n for n, t in d.results.get("apps_s", {}).items()
                  if n in self.apps and t > self.apps[n].rto_s]
        if self.apps and "time_to_apps_s" not in d.results:
            return False, "business apps did not answer through the backup line"
        if missed:
            return False, f"over the RTO: {', '.join(missed)}"
        t_done = d.results.get("time_to_apps_s")
        return True, (f"failover {d.results['time_to_failover_s']:.2f} s" +
                      (f", business apps after {t_done:.2f} s" if t_done is not None else ""))

    def _power_snapshot(self) -> dict[str, Any] | None:
        svc = self.ctx.services.get("power")
        if svc is None:
            return None
        try:
            snap = svc.snapshot().get("power") or {}
        except Exception:
            return None
        return snap if isinstance(snap, dict) else None

    async def _power_drill(self, d: _Drill, minutes: float, mains_cut: bool) -> tuple[bool, str]:
        svc = self.ctx.services.get("power")
        snap = self._power_snapshot()
        if svc is None or snap is None:
            self._step(d, "the power service is not running: no UPS to test")
            return False, "no power service"
        ups = snap.get("ups") or {}
        claim_s, charge0 = ups.get("runtime_s"), ups.get("charge_pct")
        d.results.update({"runtime_claim_s": claim_s, "charge_start_pct": charge0, "load_pct": ups.get("load_pct")})
        self._step(d, f"UPS before the test: charge {charge0} %, runtime {claim_s} s, load {ups.get('load_pct')} %")
        end = self.ctx.monotonic() + minutes * 60
        if not mains_cut:
            test = getattr(svc, "battery_test", None)
            if test is None:
                self._step(d, "the power service offers no UPS battery test (NUT test.battery.start); "
                           "use --confirm-mains-cut for a real cut")
                return False, "UPS battery test not available"
            try:
                res = await test()
            except GatewayError as exc:
                self._step(d, f"the UPS refused the battery test: {exc}")
                return False, f"battery test refused: {exc}"
            d.results["battery_test"] = res
            self._step(d, f"UPS battery test started: {res.get('message', res) if isinstance(res, dict) else res}")
        else:
            self._step(d, "cut the mains now (switch off the UPS's input); waiting up to 5 min for on-battery")
            cut_deadline = self.ctx.monotonic() + 300
            while (self._power_snapshot() or {}).get("state") not in ("on_battery", "low_battery"):
                if self.ctx.monotonic() > cut_deadline or await self._sleep_or_abort(d, 0.5):
                    return False, "mains was not cut"
            self._step(d, "on battery: measuring")
            end = self.ctx.monotonic() + minutes * 60
        t0 = self.ctx.monotonic()
        samples: list[tuple[float, float, float | None]] = []
        while self.ctx.monotonic() < end:
            s = self._power_snapshot() or {}
            u = s.get("ups") or {}
            if isinstance(u.get("charge_pct"), (int, float)):
                samples.append((self.ctx.monotonic() - t0, float(u["charge_pct"]), u.get("runtime_s")))
            if not mains_cut and samples and len(samples) > 4 and s.get("state") == "online" and \
                    "TEST" not in (u.get("status") or []) and "CAL" not in (u.get("status") or []):
                break  # the UPS finished its own test
            if await self._sleep_or_abort(d, self.power_sample_s):
                return False, f"ended early: {d.abort_reason}"
        if mains_cut:
            self._step(d, "restore the mains now")
        if len(samples) >= 2 and samples[-1][0] > samples[0][0] and samples[0][1] > samples[-1][1]:
            slope = (samples[0][1] - samples[-1][1]) / (samples[-1][0] - samples[0][0])  # % per second
            measured = samples[0][1] / slope
            d.results.update({"charge_slope_pct_per_min": round(slope * 60, 3), "runtime_measured_s": round(measured)})
            self._step(d, f"charge fell {samples[0][1] - samples[-1][1]:.1f} % in {samples[-1][0]:.0f} s: "
                       f"about {measured / 60:.0f} min of runtime at this load")
            if isinstance(claim_s, (int, float)) and claim_s > 0:
                margin = self.ctx.config.drills.runtime_margin_pct
                ok = measured >= claim_s * (1 - margin / 100)
                return ok, (f"measured runtime {measured / 60:.0f} min against the UPS's claim of "
                            f"{claim_s / 60:.0f} min (margin {margin:.0f} %)")
            return True, f"measured runtime about {measured / 60:.0f} min"
        last_rt = samples[-1][2] if samples else None
        d.results["runtime_after_s"] = last_rt
        self._step(d, "the charge did not move measurably; runtime estimate now "
                   f"{last_rt if last_rt is not None else 'unknown'} s")
        if mains_cut:
            return False, "no measurable discharge during the mains cut"
        ok = isinstance(last_rt, (int, float)) and isinstance(claim_s, (int, float)) and \
            last_rt >= claim_s * (1 - self.ctx.config.drills.runtime_margin_pct / 100)
        return ok, "UPS battery test finished" + ("" if ok else " without a usable runtime figure")

    async def _drill_reminder(self) -> None:
        cfg = self.ctx.config.drills
        due = self.next_due()
        now = self.ctx.wall()
        if due is None or due - now > cfg.remind_days * 86400:
            return
        key = f"drill.reminded:{int(due)}"
        if self.ctx.journal.get(key):
            return
        self.ctx.journal.put(key, True)
        when = datetime.fromtimestamp(due, self._tz()).strftime("%Y-%m-%d")
        self.ctx.record(JournalEvent("drill.reminder", f"drill due {when}: run `gateway drill wan` and "
                                     "`gateway drill power`", "info", {"due": due}))

    # ----------------------------------------------------------------------------------- reading
    def snapshot(self) -> dict[str, Any]:
        inc = self.state.incident
        now = self.ctx.wall()
        incident = None
        if inc is not None:
            hold = self.state.policy.close_hold_s
            incident = {
                "id": inc.id, "kind": inc.kind, "severity": inc.severity, "causes": list(inc.causes),
                "title": inc.title, "opened_at": inc.opened_at, "duration_s": round(now - inc.opened_at, 1),
                "acked": inc.acked_at is not None, "acked_by": inc.acked_by or None, "acked_at": inc.acked_at,
                "active": [c.cause for c in self.state.conditions.values()],
                "closing_in_s": None if inc.clear_since is None or inc.kind == "drill" else
                round(max(0.0, hold - (now - inc.clear_since)), 1),
                "runbook": [i.as_dict() for i in inc.runbook],
                "timeline": list(self._timeline),
            }
        services = []
        for name, app in self.apps.items():
            services.append({"name": name, "reachable": app.reachable, "latency_ms": app.latency_ms,
                             "via": app.via, "since": None if app.since is None else int(round(app.since)),
                             "department": app.department,
                             "target": app.target.describe(), "error": app.error or None, "rto_s": app.rto_s,
                             "checked_at": app.checked_at})
        try:
            last = self._last_drill()
            running = self.drill
            due = self.next_due()
        except GatewayError:
            last, running, due = None, self.drill, None
        drills = {
            "last": None if last is None else {
                "id": last["id"], "kind": last["kind"], "status": last["status"], "started_at": last["started_at"],
                "ended_at": last["ended_at"], "incident_id": last["incident_id"],
                "verdict": (last.get("results") or {}).get("verdict") if isinstance(last.get("results"), dict)
                else None},
            "next_due": due,
            "due": due is None or due <= now,
            "running": None if running is None else {"id": running.id, "kind": running.kind,
                                                     "steps": list(running.steps)},
        }
        return {"incident": incident, "services": services, "drills": drills}

    def metrics(self) -> list[tuple[str, str, dict[str, str], float]]:
        inc = self.state.incident
        out: list[tuple[str, str, dict[str, str], float]] = [
            ("gateway_incident_open", "1 while an incident is open", {}, 0.0 if inc is None else 1.0),
            ("gateway_incident_severity", "Open incident's severity: 0 none, 1 low, 2 high, 3 critical", {},
             0.0 if inc is None else float(core.RANK.get(inc.severity, 0) + 1)),
            ("gateway_incident_acked", "1 if the open incident is acknowledged", {},
             1.0 if inc is not None and inc.acked_at is not None else 0.0),
            ("gateway_incidents_opened_total", "Incidents opened since the daemon started", {},
             float(self.opened_total)),
            ("gateway_drill_running", "1 while a drill runs", {}, 0.0 if self.drill is None else 1.0),
        ]
        for name, app in self.apps.items():
            if app.reachable is not None:
                out.append(("gateway_service_reachable", "1 if the business app answers", {"service": name},
                            1.0 if app.reachable else 0.0))
            if app.latency_ms is not None:
                out.append(("gateway_service_latency_ms", "Business app latency at the last good check",
                            {"service": name}, float(app.latency_ms)))
        return out
