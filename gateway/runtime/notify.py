"""Notifications with escalation, maintenance windows, staff notices and temporary order numbers.

The outbox is in the journal: a message is committed before it is sent, retried with backoff, never lost
across a restart, and marked sent once delivered (so never sent twice after that).
"""

from __future__ import annotations

import logging
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.config import Config
from gateway.core import escalation, maintenance
from gateway.core.base import JournalEvent
from gateway.core.errors import ActionRejected, DeviceRefused, GatewayError
from gateway.core.escalation import ack_signature
from gateway.core.signals import AlertAcknowledged, IncidentStatus, MaintenanceStatus, Notice
from gateway.drivers.notify import Notifier
from gateway.runtime.service import Context, Service, every

log = logging.getLogger("gateway.notify")
STAFF_SEVERITIES = frozenset({"high", "critical"})

INITIALS = re.compile(r"[A-Za-z]{1,4}")


def _tz(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _levels(cfg: Config) -> tuple[escalation.Level, ...]:
    levels = sorted(cfg.notify.escalation, key=lambda lv: lv.after_min)
    return tuple(escalation.Level(lv.name, tuple(lv.targets), lv.after_min * 60.0, escalation.parse_hours(lv.hours))
                 for lv in levels)


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")


@dataclass
class _Banner:
    kind: str
    title: str
    short: str
    since: str


class NotifyService(Service):
    name = "notify"

    def __init__(self, ctx: Context, notifier: Any = None) -> None:
        super().__init__(ctx)
        cfg = ctx.config
        self.notifier = notifier or Notifier({t.name: t.url for t in cfg.notify.targets})
        self.esc = escalation.State(levels=_levels(cfg), coalesce_s=cfg.notify.coalesce_s)
        self.tz = _tz(cfg.site.timezone)
        self.incidents: dict[int, IncidentStatus] = {}
        self.maint = MaintenanceStatus()
        self.banner: _Banner | None = None
        self.unreachable: set[str] = set()
        self.sent_total = 0
        ctx.bus.subscribe(IncidentStatus, self._on_incident)
        ctx.bus.subscribe(AlertAcknowledged, self._on_ack)
        ctx.register_action("maintenance.add", self._add_window)
        ctx.register_action("maintenance.cancel", self._cancel_window)
        ctx.register_action("order_number", self._order_number)
        ctx.register_action("order.reconcile", self._reconcile)

    # ------------------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.spawn(every(1.0, self._tick), "escalation")
        self.spawn(every(1.0, self.drain), "outbox")
        self.spawn(every(30.0, self.maintenance_tick), "maintenance")

    def reload(self, config: Config) -> None:
        super().reload(config)
        self.notifier.targets = {t.name: t.url for t in config.notify.targets}
        self.esc = escalation.State(levels=_levels(config), coalesce_s=config.notify.coalesce_s,
                                    chains=self.esc.chains)
        self.tz = _tz(config.site.timezone)

    def now_local(self) -> datetime:
        return datetime.fromtimestamp(self.ctx.wall(), self.tz)

    # ---------------------------------------------------------------------------------- escalation
    def _feed(self, event: escalation.Event) -> None:
        self.esc, effects = escalation.step(self.esc, event, self.ctx.monotonic())
        for eff in effects:
            if isinstance(eff, escalation.Send):
                self._enqueue_alert(eff)

    async def _tick(self) -> None:
        local = self.now_local()
        self._feed(escalation.Clock(local.hour * 60 + local.minute))

    def _on_incident(self, fact: IncidentStatus) -> None:
        before = self.incidents.get(fact.incident_id)
        self.incidents[fact.incident_id] = fact
        title = self._title(fact)
        if fact.kind == "drill":
            return  # drills are announced by whoever starts them, not escalated
        if before is None and fact.open:
            self._feed(escalation.Opened(fact.incident_id, fact.severity, title))
        elif before is not None and fact.open and fact.severity != before.severity:
            self._feed(escalation.SeverityChanged(fact.incident_id, fact.severity, title))
        if fact.open and fact.severity in STAFF_SEVERITIES and \
                (before is None or before.severity not in STAFF_SEVERITIES):
            # staff hear of what affects their work (backup power or line, apps unreachable); a low incident
            # such as the idle LTE backup failing goes to the admins' chain only, and is announced to staff
            # once (the notice key is the incident's) if it grows worse
            self._outage_notice(fact)
        if fact.acked and not (before and before.acked):
            self._feed(escalation.Acked(fact.incident_id, "incident"))
        if not fact.open and (before is None or before.open):
            self._feed(escalation.Closed(fact.incident_id))
            if self.banner and self.banner.kind == "outage":
                self.banner = None

    def _on_ack(self, fact: AlertAcknowledged) -> None:
        ids = [fact.incident_id] if fact.incident_id is not None else [i for i, f in self.incidents.items() if f.open]
        for i in ids:
            self._feed(escalation.Acked(i, fact.who))

    def _title(self, fact: IncidentStatus) -> str:
        causes = ", ".join(fact.causes) or "an outage"
        return f"{self.ctx.config.site.name}: {causes}"

    def ack_link(self, incident_id: int) -> str | None:
        base = self.ctx.config.notify.link_base_url
        if not base:
            return None
        return f"{base.rstrip('/')}/ack/{incident_id}/{ack_signature(self._secret(), incident_id)}"

    def _secret(self) -> str:
        path = self.ctx.config.state_dir / "api.token"
        return path.read_text().strip() if path.exists() else ""

    def _held(self, fact: IncidentStatus | None) -> bool:
        """During a maintenance window, alerts for the parts it affects are held."""
        if fact is None or not self.maint.active:
            return False
        scope = {s.lower() for s in self.maint.services} | ({"wired", "isp"} if self.maint.switch_to_lte else set())
        return bool(fact.causes) and all(any(word in c.lower() for word in scope) for c in fact.causes)

    def _enqueue_alert(self, send: escalation.Send) -> None:
        fact = self.incidents.get(send.incident_id)
        if send.stage.startswith("level:") and self._held(fact):
            self.ctx.record(JournalEvent("notify.held", f"notify: held {send.stage} for incident #{send.incident_id} "
                                         "(maintenance window in force)", data={"incident_id": send.incident_id}))
            return
        title, body = self._alert_text(send)
        for target in send.targets:
            self.enqueue(f"inc{send.incident_id}:{send.stage}:{send.severity}:{target}", target, title, body,
                         send.severity, send.incident_id)

    def _alert_text(self, send: escalation.Send) -> tuple[str, str]:
        inc = self.ctx.journal.incident(send.incident_id) or {}
        opened = float(inc.get("opened_at") or self.ctx.wall())
        closed = inc.get("closed_at")
        lasted = _duration((float(closed) if closed else self.ctx.wall()) - opened)
        since = datetime.fromtimestamp(opened, self.tz).strftime("%a %d %b %H:%M")
        did = [e["message"] for e in self.ctx.journal.events(incident_id=send.incident_id, limit=500)
               if e["kind"].split(".")[0] in ("power", "load", "loads", "uplink", "uplinks", "modem", "action")][-6:]
        what = inc.get("title") or send.title
        if send.stage == "recovery":
            title = f"RESOLVED: {what} (lasted {lasted})"
            lines = [f"Back to normal. It started {since} and lasted {lasted}."]
        elif send.stage == "flapping":
            title = f"AGAIN: {what}"
            lines = [f"The problem came back shortly after it cleared (first seen {since})."]
        else:
            word = "UPDATE" if send.stage == "update" else send.severity.upper()
            title = f"{word}: {what}"
            lines = [f"Since {since} ({lasted} so far). Severity: {send.severity}."]
        if did:
            lines += ["", "What the gateway did:"] + [f"- {m}" for m in did]
        link = self.ack_link(send.incident_id)
        if link and send.stage not in ("recovery",):
            lines += ["", f"Acknowledge (stops escalation): {link}"]
        return title, "\n".join(lines)

    # -------------------------------------------------------------------------------------- outbox
    def enqueue(self, key: str, target: str, title: str, body: str, severity: str = "info",
                incident_id: int | None = None) -> bool:
        """Commit a message to the outbox (once per key); the drain loop sends it."""
        now = self.ctx.wall()
        try:
            with self.ctx.journal.transaction() as c:
                cur = c.execute("INSERT OR IGNORE INTO outbox (created_at, dedupe_key, target, title, body, severity, "
                                "incident_id, state, attempts, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, "
                                "'pending', 0, ?)", (now, key, target, title, body, severity, incident_id, now))
                return cur.rowcount == 1
        except (GatewayError, sqlite3.Error) as exc:
            log.error("outbox: could not queue %s: %s", key, exc)
            return False

    async def drain(self) -> None:
        now = self.ctx.wall()
        rows = self.ctx.journal.query("SELECT * FROM outbox WHERE state = 'pending' AND next_attempt_at <= ? "
                                      "ORDER BY id LIMIT 20", [now])
        for row in rows:
            try:
                await self.notifier.send(row["target"], row["title"], row["body"])
            except GatewayError as exc:
                attempts = int(row["attempts"] or 0) + 1
                permanent = isinstance(exc, DeviceRefused)
                delay = min(self.ctx.config.notify.retry_max_s, 5.0 * 2 ** (attempts - 1))
                self.ctx.journal.update("outbox", "id", row["id"], {
                    "attempts": attempts, "last_error": str(exc), "state": "failed" if permanent else "pending",
                    "next_attempt_at": self.ctx.wall() + delay})
                if row["target"] not in self.unreachable:
                    self.unreachable.add(row["target"])
                    self.ctx.record(JournalEvent("notify.unreachable", f"notify: {row['target']} unreachable: {exc}",
                                                 "warning", {"target": row["target"]}))
                continue
            self.ctx.journal.update("outbox", "id", row["id"], {
                "state": "sent", "sent_at": self.ctx.wall(), "attempts": int(row["attempts"] or 0) + 1})
            self.sent_total += 1
            if row["target"] in self.unreachable:
                self.unreachable.discard(row["target"])
                self.ctx.record(JournalEvent("notify.reachable", f"notify: {row['target']} reachable again",
                                             data={"target": row["target"]}))

    # --------------------------------------------------------------------------------- maintenance
    def windows(self) -> list[maintenance.Window]:
        out = []
        for m in self.ctx.config.maintenance:
            out.append(self._window(f"cfg:{m.name}", m.name, m.kind, m.start, m.end, m.recurrence, m.services,
                                    m.switch_to_lte, m.description))
        for r in self.ctx.journal.maintenance():
            out.append(self._window(f"db:{r['id']}", r["name"], r["kind"], r["start"], r["end"], r["recurrence"],
                                    r["services"] or [], bool(r["switch_to_lte"]), r["description"] or ""))
        return out

    def _window(self, wid: str, name: str, kind: str, start: str | None, end: str | None, rec: str | None,
                services: list[str], lte: bool, desc: str) -> maintenance.Window:
        def when(s: str | None) -> datetime | None:
            if not s:
                return None
            d = datetime.fromisoformat(s)
            return d if d.tzinfo else d.replace(tzinfo=self.tz)

        return maintenance.Window(wid, name, kind, when(start), when(end),
                                  maintenance.parse_recurrence(rec) if rec else None, tuple(services), lte, desc)

    async def maintenance_tick(self) -> None:
        now = self.now_local()
        wins = self.windows()
        act = [(w, s, e) for w, s, e in maintenance.active(wins, now, self.tz) if w.kind == "window"]
        status = MaintenanceStatus(active=tuple(w.name for w, _, _ in act),
                                   services=tuple(sorted({s for w, _, _ in act for s in w.services})),
                                   switch_to_lte=any(w.switch_to_lte for w, _, _ in act), hold_failback=bool(act))
        if status != self.maint:
            word = "started" if status.active else "ended"
            names = ", ".join(status.active or self.maint.active)
            self.maint = status
            self.ctx.record(JournalEvent(f"maintenance.{word}", f"maintenance: {names} {word}",
                                         data={"active": list(status.active)}))
            self.ctx.bus.publish(status)
        for w in wins:
            if w.kind != "window":
                continue
            for s, e in w.spans(now - timedelta(days=1), now + timedelta(days=6), self.tz):
                self._notice_for(w, s, e, now)

    def _notice_for(self, w: maintenance.Window, s: datetime, e: datetime, now: datetime) -> None:
        key = f"notice:{w.id}:{s.isoformat()}"
        sent = frozenset(self.ctx.journal.get(key, []))
        due = maintenance.due_stage(s, e, sent, now)
        if due is None:
            return
        stage, moot = due
        self.ctx.journal.put(key, sorted(sent | moot | {stage}))
        title, short, body = maintenance.notice_text(self.ctx.config.site.name, w, s, e, stage)
        self._publish_notice(f"{w.id}:{s.isoformat()}:{stage}", "planned", title, short, body, s.timestamp(),
                             e.timestamp())
        if stage in ("started", "hour", "day"):
            self.banner = _Banner("planned", title, short, now.isoformat(timespec="minutes"))
        elif stage == "finished" and self.banner and self.banner.kind == "planned":
            self.banner = None

    def _outage_notice(self, fact: IncidentStatus) -> None:
        inc = self.ctx.journal.incident(fact.incident_id) or {}
        since = datetime.fromtimestamp(float(inc.get("opened_at") or self.ctx.wall()), self.tz)
        affected = tuple(s.name for s in self.ctx.config.services)
        title, short, body = maintenance.outage_notice(self.ctx.config.site.name, fact.causes, since,
                                                       self.ctx.config.notify.outage_update_min, affected)
        self._publish_notice(f"incident:{fact.incident_id}", "outage", title, short, body, since.timestamp(), None)
        self.banner = _Banner("outage", title, short, since.isoformat(timespec="minutes"))

    def _publish_notice(self, key: str, kind: str, title: str, short: str, body: str, starts: float,
                        ends: float | None) -> None:
        with self.ctx.journal.transaction() as c:
            cur = c.execute("INSERT OR IGNORE INTO notices (key, created_at, kind, title, short, body, starts_at, "
                            "ends_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (key, self.ctx.wall(), kind, title, short, body, starts, ends))
            fresh = cur.rowcount == 1
        if not fresh:
            return
        self.ctx.record(JournalEvent("notice." + kind, f"notice: {title}", data={"key": key}))
        self.ctx.bus.publish(Notice(title, body, kind))
        for target in self.ctx.config.notify.staff:
            self.enqueue(f"notice:{key}:{target}", target, title, body, "info")

    # ------------------------------------------------------------------------------------- actions
    async def _add_window(self, params: dict[str, Any], who: str) -> dict[str, Any]:
        name = params.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise ActionRejected("bad_name", "a window needs a name (1-100 characters)")
        kind = params.get("kind", "window")
        if kind not in ("window", "freeze"):
            raise ActionRejected("bad_kind", "kind must be window or freeze")
        rec, start, end = params.get("recurrence"), params.get("start"), params.get("end")
        if bool(rec) == bool(start):
            raise ActionRejected("bad_schedule", "give either recurrence or start and end")
        if start and not end:
            raise ActionRejected("bad_schedule", "a one-off window needs an end")
        services = params.get("services", [])
        known = {s.name for s in self.ctx.config.services}
        if not isinstance(services, list) or any(not isinstance(s, str) or s not in known for s in services):
            raise ActionRejected("unknown_service", f"services must be among: {', '.join(sorted(known)) or 'none'}")
        try:
            w = self._window("new", name, kind, start, end, rec, services, bool(params.get("switch_to_lte")),
                             str(params.get("description", "")))
        except (ValueError, TypeError) as exc:
            raise ActionRejected("bad_schedule", str(exc)) from None
        if w.start and w.end and w.end <= w.start:
            raise ActionRejected("bad_schedule", "end must be after start")
        if kind == "window" and not params.get("emergency"):
            freeze = maintenance.conflicts_with_freeze(w, self.windows(), self.now_local(), self.tz)
            if freeze:
                raise ActionRejected("freeze", f"falls in the freeze period {freeze!r}; only emergencies then")
        row_id = self.ctx.journal.insert("maintenance", {
            "name": name.strip(), "kind": kind, "start": start, "end": end, "recurrence": rec, "services": services,
            "switch_to_lte": int(bool(params.get("switch_to_lte"))), "description": str(params.get("description", "")),
            "source": who, "created_at": self.ctx.wall()})
        await self.maintenance_tick()
        nxt = maintenance.next_start(w, self.now_local(), self.tz)
        return {"id": row_id, "message": f"added maintenance #{row_id} {name}"
                + (f", next {nxt[0]:%a %d %b %H:%M}" if nxt else "")}

    async def _cancel_window(self, params: dict[str, Any], who: str) -> dict[str, Any]:
        wid = params.get("id")
        if not isinstance(wid, int) or isinstance(wid, bool):
            raise ActionRejected("bad_id", "id must be a number")
        if not any(r["id"] == wid for r in self.ctx.journal.maintenance()):
            raise ActionRejected("unknown_window", f"no active maintenance window #{wid}")
        self.ctx.journal.update("maintenance", "id", wid, {"cancelled_at": self.ctx.wall()})
        await self.maintenance_tick()
        return {"id": wid, "message": f"cancelled maintenance #{wid}"}

    async def _order_number(self, params: dict[str, Any], who: str) -> dict[str, Any]:
        initials = params.get("initials")
        if not isinstance(initials, str) or not INITIALS.fullmatch(initials):
            raise ActionRejected("bad_initials", "initials must be 1-4 letters")
        day = self.now_local().strftime("%Y%m%d")
        with self.ctx.journal.transaction() as c:
            n = c.execute("SELECT count(*) FROM orders WHERE number LIKE ?", (f"{day}-%",)).fetchone()[0] + 1
            number = f"{day}-{initials.upper()}-{n:03d}"
            c.execute("INSERT INTO orders (number, initials, created_at, note) VALUES (?, ?, ?, ?)",
                      (number, initials.upper(), self.ctx.wall(), str(params.get("note", ""))[:500]))
        return {"number": number, "message": f"temporary order number {number}"}

    async def _reconcile(self, params: dict[str, Any], who: str) -> dict[str, Any]:
        number = params.get("number")
        rows = [r for r in self.ctx.journal.orders(open_only=True) if r["number"] == number]
        if not rows:
            raise ActionRejected("unknown_order", f"no open temporary order {number!r}")
        self.ctx.journal.update("orders", "id", rows[0]["id"], {"reconciled_at": self.ctx.wall(), "reconciled_by": who})
        return {"number": number, "message": f"{number} reconciled"}

    # ------------------------------------------------------------------------------------- reading
    def snapshot(self) -> dict[str, Any]:
        now = self.now_local()
        nxt = None
        for w in self.windows():
            if w.kind != "window":
                continue
            span = maintenance.next_start(w, now, self.tz, horizon_days=60)
            if span and (nxt is None or span[0] < nxt[1]):
                nxt = (w, span[0], span[1])
        pending = self.ctx.journal.query("SELECT state, count(*) AS n FROM outbox GROUP BY state")
        counts = {r["state"]: r["n"] for r in pending}
        return {
            "notice": None if self.banner is None else {"kind": self.banner.kind, "title": self.banner.title,
                                                        "text": self.banner.short, "since": self.banner.since},
            "maintenance": {"active": list(self.maint.active),
                            "next": None if nxt is None else {"name": nxt[0].name, "start": nxt[1].isoformat(),
                                                              "end": nxt[2].isoformat(),
                                                              "services": list(nxt[0].services)}},
            "outbox": {"pending": counts.get("pending", 0), "failed": counts.get("failed", 0),
                       "sent": counts.get("sent", 0)},
            "orders": {"open": len(self.ctx.journal.orders(open_only=True))},
        }

    def metrics(self) -> list[tuple[str, str, dict[str, str], float]]:
        snap = self.snapshot()["outbox"]
        return [("gateway_notify_outbox", "Messages in the outbox by state", {"state": k}, float(v))
                for k, v in snap.items()] + \
               [("gateway_maintenance_active", "1 while a maintenance window is in force", {},
                 1.0 if self.maint.active else 0.0)]
