"""The journal: SQLite through sqlite-utils, WAL mode, versioned migrations, retention.

The single source of truth for events, incidents, desired load state, drills, maintenance windows and
the notification outbox.  Every state change is committed (``synchronous=FULL``) before it is acted
on, so a kill -9 or a power cut at any instant leaves a consistent file that still holds every row
whose write returned.

One :class:`Journal` is the writer (the daemon's loop); :class:`JournalReader` opens read-only
connections per thread for the web server.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from gateway.core.errors import JournalError

Listener = Callable[[dict[str, Any]], None]


def _m1(db: sqlite_utils.Database) -> None:
    db["events"].create({"id": int, "ts": float, "kind": str, "message": str, "severity": str,
                         "data": str, "incident_id": int}, pk="id", not_null={"ts", "kind", "message"})
    db["events"].create_index(["ts"])
    db["events"].create_index(["kind"])
    db["events"].create_index(["incident_id"])
    db["incidents"].create({"id": int, "kind": str, "opened_at": float, "closed_at": float, "severity": str,
                            "causes": str, "title": str, "acked_at": float, "acked_by": str,
                            "checklist": str, "data": str}, pk="id")
    db["incidents"].create_index(["opened_at"])
    db["reports"].create({"incident_id": int, "created_at": float, "json": str, "markdown": str},
                         pk="incident_id")
    db["loads"].create({"name": str, "state": str, "reason": str, "override": str, "updated_at": float},
                       pk="name")
    db["kv"].create({"key": str, "value": str, "updated_at": float}, pk="key")
    db["drills"].create({"id": int, "kind": str, "started_at": float, "ended_at": float, "status": str,
                         "incident_id": int, "results": str}, pk="id")
    db["maintenance"].create({"id": int, "name": str, "kind": str, "start": str, "end": str,
                              "recurrence": str, "services": str, "switch_to_lte": int,
                              "description": str, "source": str, "created_at": float,
                              "cancelled_at": float}, pk="id")
    db["outbox"].create({"id": int, "created_at": float, "dedupe_key": str, "target": str, "title": str,
                         "body": str, "severity": str, "incident_id": int, "state": str, "attempts": int,
                         "next_attempt_at": float, "sent_at": float, "last_error": str}, pk="id")
    db["outbox"].create_index(["state", "next_attempt_at"])
    db["outbox"].create_index(["dedupe_key"], unique=True)
    db["samples"].create({"ts": float, "series": str, "value": float})
    db["samples"].create_index(["series", "ts"])


def _m2(db: sqlite_utils.Database) -> None:
    # temporary order numbers taken while CRM was unreachable, to reconcile once it is back
    db["orders"].create({"id": int, "number": str, "initials": str, "created_at": float, "note": str,
                         "reconciled_at": float, "reconciled_by": str}, pk="id")
    db["orders"].create_index(["number"], unique=True)
    # staff notices sent per maintenance occurrence and stage, so none is sent twice
    db["notices"].create({"id": int, "key": str, "created_at": float, "kind": str, "title": str,
                          "short": str, "body": str, "starts_at": float, "ends_at": float}, pk="id")
    db["notices"].create_index(["key"], unique=True)


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_m1, _m2]
SCHEMA_VERSION = len(MIGRATIONS)


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=5)
    else:
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def migrate(db: sqlite_utils.Database) -> int:
    """Bring the schema up to SCHEMA_VERSION, each step in its own transaction; return the version."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise JournalError(f"journal schema {version} is newer than this software ({SCHEMA_VERSION})")
    for n in range(version, SCHEMA_VERSION):
        with db.conn:
            db.conn.execute("BEGIN IMMEDIATE")
            MIGRATIONS[n](db)
            db.conn.execute(f"PRAGMA user_version={n + 1}")
    return SCHEMA_VERSION


def _row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    out = {d[0]: v for d, v in zip(cursor.description, row, strict=True)}
    for key in ("data", "causes", "checklist", "results", "services", "json"):
        if isinstance(out.get(key), str) and key in out:
            try:
                out[key] = json.loads(out[key])
            except ValueError:
                pass
    return out


class _Base:
    path: Path

    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        try:
            cur = self._conn().execute(sql, params)
            return [_row(cur, r) for r in cur.fetchall()]
        except sqlite3.Error as exc:
            raise JournalError(f"journal read failed: {exc}") from exc

    def events(self, since_id: int = 0, limit: int = 500, kind_prefix: str | None = None,
               incident_id: int | None = None, since_ts: float | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM events WHERE id > ?", [since_id]
        if kind_prefix:
            sql += " AND kind LIKE ?"
            args.append(kind_prefix + "%")
        if incident_id is not None:
            sql += " AND incident_id = ?"
            args.append(incident_id)
        if since_ts is not None:
            sql += " AND ts >= ?"
            args.append(since_ts)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        return self.query(sql, args)

    def incidents(self, open_only: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        where = "WHERE closed_at IS NULL" if open_only else ""
        return self.query(f"SELECT * FROM incidents {where} ORDER BY id DESC LIMIT ?", [limit])

    def incident(self, incident_id: int) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM incidents WHERE id = ?", [incident_id])
        return rows[0] if rows else None

    def report(self, incident_id: int) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM reports WHERE incident_id = ?", [incident_id])
        return rows[0] if rows else None

    def loads(self) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in self.query("SELECT * FROM loads")}

    def get(self, key: str, default: Any = None) -> Any:
        rows = self.query("SELECT value FROM kv WHERE key = ?", [key])
        return json.loads(rows[0]["value"]) if rows else default

    def samples(self, series: str, since_ts: float) -> list[tuple[float, float]]:
        rows = self.query("SELECT ts, value FROM samples WHERE series = ? AND ts >= ? ORDER BY ts",
                          [series, since_ts])
        return [(r["ts"], r["value"]) for r in rows]

    def maintenance(self, include_cancelled: bool = False) -> list[dict[str, Any]]:
        where = "" if include_cancelled else "WHERE cancelled_at IS NULL"
        return self.query(f"SELECT * FROM maintenance {where} ORDER BY id")

    def orders(self, open_only: bool = False) -> list[dict[str, Any]]:
        where = "WHERE reconciled_at IS NULL" if open_only else ""
        return self.query(f"SELECT * FROM orders {where} ORDER BY id")

    def notices(self, limit: int = 20) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM notices ORDER BY id DESC LIMIT ?", [limit])

    def drills(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM drills ORDER BY id DESC LIMIT ?", [limit])


class JournalReader(_Base):
    """Read-only access, one connection per thread (the web server's workers)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, readonly=True)
            self._local.conn = conn
        return conn


class Journal(_Base):
    """The writer.  Use from one thread (the daemon's event loop); every write commits durably."""

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.listeners: list[Listener] = []
        try:
            self._c = _connect(self.path)
            self.db = sqlite_utils.Database(self._c)
            self.version = migrate(self.db)
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
        self._lock = threading.RLock()

    def _conn(self) -> sqlite3.Connection:
        return self._c

    def close(self) -> None:
        self._c.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable write: everything inside commits together or not at all."""
        with self._lock:
            try:
                self._c.execute("BEGIN IMMEDIATE")
                try:
                    yield self._c
                except BaseException:
                    self._c.execute("ROLLBACK")
                    raise
                self._c.execute("COMMIT")
            except sqlite3.Error as exc:
                raise JournalError(f"journal write failed: {exc}") from exc

    def add_event(self, kind: str, message: str, severity: str = "info", data: dict[str, Any] | None = None,
                  incident_id: int | None = None, ts: float | None = None) -> dict[str, Any]:
        row = {"ts": self.clock() if ts is None else ts, "kind": kind, "message": message,
               "severity": severity, "data": json.dumps(data or {}, default=str), "incident_id": incident_id}
        with self.transaction() as c:
            cur = c.execute("INSERT INTO events (ts, kind, message, severity, data, incident_id) "
                            "VALUES (:ts, :kind, :message, :severity, :data, :incident_id)", row)
            row["id"] = cur.lastrowid
        row["data"] = data or {}
        for listener in list(self.listeners):
            listener(row)
        return row

    def set_event_incident(self, event_ids: list[int], incident_id: int) -> None:
        with self.transaction() as c:
            c.executemany("UPDATE events SET incident_id = ? WHERE id = ?", [(incident_id, i) for i in event_ids])

    def put(self, key: str, value: Any) -> None:
        with self.transaction() as c:
            c.execute("INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
                      "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                      (key, json.dumps(value, default=str), self.clock()))

    def set_load(self, name: str, state: str, reason: str, override: str = "auto") -> None:
        with self.transaction() as c:
            c.execute("INSERT INTO loads (name, state, reason, override, updated_at) VALUES (?, ?, ?, ?, ?) "
                      "ON CONFLICT(name) DO UPDATE SET state = excluded.state, reason = excluded.reason, "
                      "override = excluded.override, updated_at = excluded.updated_at",
                      (name, state, reason, override, self.clock()))

    def insert(self, table: str, row: dict[str, Any]) -> int:
        row = {k: json.dumps(v, default=str) if isinstance(v, (dict, list)) else v for k, v in row.items()}
        cols = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        with self.transaction() as c:
            cur = c.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", row)
            return int(cur.lastrowid or 0)

    def update(self, table: str, pk: str, pk_value: Any, values: dict[str, Any]) -> None:
        values = {k: json.dumps(v, default=str) if isinstance(v, (dict, list)) else v for k, v in values.items()}
        sets = ", ".join(f"{k} = :{k}" for k in values)
        with self.transaction() as c:
            c.execute(f"UPDATE {table} SET {sets} WHERE {pk} = :_pk", {**values, "_pk": pk_value})

    def add_samples(self, samples: list[tuple[float, str, float]]) -> None:
        with self.transaction() as c:
            c.executemany("INSERT INTO samples (ts, series, value) VALUES (?, ?, ?)", samples)

    def apply_retention(self, retention_days: float, max_mb: float) -> int:
        """Delete events and samples older than the retention age, then oldest-first while over size."""
        cutoff = self.clock() - retention_days * 86400
        removed = 0
        with self.transaction() as c:
            removed += c.execute("DELETE FROM events WHERE ts < ? AND (incident_id IS NULL OR incident_id IN "
                                 "(SELECT id FROM incidents WHERE closed_at IS NOT NULL))", (cutoff,)).rowcount
            removed += c.execute("DELETE FROM samples WHERE ts < ?", (cutoff,)).rowcount
            removed += c.execute("DELETE FROM outbox WHERE state = 'sent' AND sent_at < ?", (cutoff,)).rowcount
        limit = max_mb * 1024 * 1024
        while self.size_bytes() > limit:
            with self.transaction() as c:
                n = c.execute("DELETE FROM samples WHERE rowid IN (SELECT rowid FROM samples ORDER BY ts LIMIT 5000)"
                              ).rowcount
                n += c.execute("DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT 5000)"
                               ).rowcount
            removed += n
            self._c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._c.execute("VACUUM")
            if n == 0:
                break
        return removed

    def size_bytes(self) -> int:
        page_count = self._c.execute("PRAGMA page_count").fetchone()[0]
        free = self._c.execute("PRAGMA freelist_count").fetchone()[0]
        page_size = self._c.execute("PRAGMA page_size").fetchone()[0]
        return int((page_count - free) * page_size)

    def integrity_ok(self) -> bool:
        return bool(self._c.execute("PRAGMA integrity_check").fetchone()[0] == "ok")
