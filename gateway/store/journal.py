"""The journal: SQLite through sqlite-utils, WAL mode, versioned migrations, retention.

The single source of truth for events, incidents, desired load state, drills, maintenance windows and
the notification outbox.  Every state change is committed (``synchronous=FULL``) before it is acted
on, so a kill -9 or a power cut at any instant leaves a consistent file that still holds every row
whose write returned.

One :class:`Journal` is the writer (the daemon's loop); :class:`JournalReader` opens read-only
connections per thread for the web server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.core.errors import JournalError

if TYPE_CHECKING:
    import sqlite_utils

log = logging.getLogger("gateway")

Listener = Callable[[dict[str, Any]], None]
Op = tuple[str, Any, bool]  # (sql, params, executemany)

# While the disk is full the writer holds its rows in memory, in order, and writes them when there is room
# again; the bound keeps a long outage on a full card from eating the box's memory (samples go first).
MAX_HELD_OPS = 100_000
RETRY_EVERY_S = 1.0


class JournalFull(JournalError):
    """The journal's disk is full (or failing): nothing was written."""


def _cannot_write(exc: sqlite3.Error) -> bool:
    """SQLITE_FULL, or an I/O error (ENOSPC on the WAL can surface as one): the disk, not the query."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "full" in str(exc)
    return bool(code == sqlite3.SQLITE_FULL or code & 0xFF == sqlite3.SQLITE_IOERR)


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


_INSERT_EVENT = ("INSERT INTO events (ts, kind, message, severity, data, incident_id) "
                 "VALUES (:ts, :kind, :message, :severity, :data, :incident_id)")
_INSERT_EVENT_ID = ("INSERT INTO events (id, ts, kind, message, severity, data, incident_id) "
                    "VALUES (:id, :ts, :kind, :message, :severity, :data, :incident_id)")
_ID_TABLES = frozenset({"events", "incidents", "drills", "maintenance", "outbox", "orders", "notices"})

MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_m1, _m2]
SCHEMA_VERSION = len(MIGRATIONS)


READER_CACHE_KB = 512


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=5)
        # one reader per web worker thread: SQLite's default page cache (2 MB each) would let eight of them
        # hold 16 MB of journal pages, growing as the journal churns; what the page reads is small and recent
        conn.execute(f"PRAGMA cache_size=-{READER_CACHE_KB}")
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


class _Base(ABC):
    """The queries the writer and the readers share; each says how it holds its connection."""

    path: Path

    @abstractmethod
    def _conn(self) -> sqlite3.Connection: ...

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
        self._db: sqlite_utils.Database | None = None
        try:
            self._c = _connect(self.path)
            # sqlite-utils (and click, dateutil, pluggy with it: ~10 MB) builds the schema; a journal already
            # at this version never needs it loaded, so a daemon restarted on its journal stays lighter
            current = self._c.execute("PRAGMA user_version").fetchone()[0]
            self.version = current if current == SCHEMA_VERSION else migrate(self.db)
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
        self._lock = threading.RLock()
        self.held: list[Op] = []  # writes not yet on disk (disk full), oldest first
        self.full_since: float | None = None  # wall clock, for display
        self.full_error = ""
        self.dropped = 0  # held rows given up because the hold was over its bound
        self._next_ids: dict[str, int] = {}
        self._retry_at = 0.0  # monotonic

    def _conn(self) -> sqlite3.Connection:
        return self._c

    @property
    def db(self) -> sqlite_utils.Database:
        """The writer's connection through sqlite-utils (imported on first use)."""
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self._c)
        return self._db

    def close(self) -> None:
        self._c.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable write: everything inside commits together or not at all."""
        with self._lock:
            if self.held and not self.flush(force=False):
                raise JournalFull(f"journal write failed: {self.full_error} (holding {len(self.held)} rows)")
            try:
                self._c.execute("BEGIN IMMEDIATE")
                try:
                    yield self._c
                except BaseException:
                    if self._c.in_transaction:  # SQLITE_FULL may already have rolled it back
                        self._c.execute("ROLLBACK")
                    raise
                self._c.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._c.in_transaction:  # a failed COMMIT leaves it open: the next BEGIN would fail too
                    with contextlib.suppress(sqlite3.Error):
                        self._c.execute("ROLLBACK")
                if _cannot_write(exc):
                    raise JournalFull(f"journal write failed: {exc}") from exc
                raise JournalError(f"journal write failed: {exc}") from exc

    # ------------------------------------------------------------------------------ disk full
    @property
    def full(self) -> bool:
        return bool(self.held)

    def _write(self, ops: list[Op], table: str | None = None) -> int:
        """Commit ``ops`` together; when the disk is full, hold them (in order) instead of failing.

        Returns the last row id written or reserved for ``table`` (0 when none)."""
        with self._lock:
            if not self.held:
                try:
                    with self.transaction() as c:
                        last = 0
                        for sql, params, many in ops:
                            cur = c.executemany(sql, params) if many else c.execute(sql, params)
                            last = int(cur.lastrowid or 0)
                        return last
                except JournalFull as exc:
                    self._enter_full(str(exc.__cause__ or exc))
            self._hold(ops)
            self.flush(force=False)
            return 0

    def _enter_full(self, error: str) -> None:
        self.full_since, self.full_error = self.clock(), error
        self._retry_at = time.monotonic() + RETRY_EVERY_S
        log.error("journal: cannot write (%s); holding rows in memory until the disk has room", error)
        self._hold_event("journal.full", f"journal: cannot write ({error}); holding rows in memory until the "
                                         "disk has room", "critical", {"error": error})

    def _hold(self, ops: list[Op]) -> None:
        self.held.extend(ops)
        if len(self.held) > MAX_HELD_OPS:  # samples first: they are summaries, events are the record
            keep = [op for op in self.held if not op[0].startswith("INSERT INTO samples")]
            self.dropped += len(self.held) - len(keep)
            if len(keep) > MAX_HELD_OPS:
                self.dropped += len(keep) - MAX_HELD_OPS
                keep = keep[:MAX_HELD_OPS]
            self.held = keep

    def _reserve_id(self, table: str) -> int:
        """The id SQLite will give the next row of ``table`` (one writer, ids only grow): held rows keep it."""
        if table not in self._next_ids:
            row = self._c.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()
            self._next_ids[table] = int(row[0]) + 1
        self._next_ids[table] += 1
        return self._next_ids[table] - 1

    def _hold_event(self, kind: str, message: str, severity: str, data: dict[str, Any]) -> dict[str, Any]:
        row = {"id": self._reserve_id("events"), "ts": self.clock(), "kind": kind, "message": message,
               "severity": severity, "data": json.dumps(data, default=str), "incident_id": None}
        self._hold([(_INSERT_EVENT_ID, dict(row), False)])
        row["data"] = data
        self._notify(row)
        return row

    def flush(self, force: bool = True) -> bool:
        """Write the held rows if the disk has room now; True when nothing is held any more.

        Without ``force`` it tries at most every RETRY_EVERY_S (writes keep arriving while the disk is full)."""
        with self._lock:
            if not self.held:
                return True
            if not force and time.monotonic() < self._retry_at:
                return False
            self._retry_at = time.monotonic() + RETRY_EVERY_S
            held_s = max(0.0, self.clock() - (self.full_since or self.clock()))
            n, dropped = len(self.held), self.dropped
            back: dict[str, Any] = {"id": self._reserve_id("events"), "ts": self.clock(), "kind": "journal.writable",
                    "message": f"journal: writable again after {held_s:.0f} s; {n} held rows written"
                               + (f", {dropped} dropped" if dropped else ""),
                    "severity": "warning", "incident_id": None,
                    "data": json.dumps({"held_s": round(held_s, 1), "rows": n, "dropped": dropped})}
            try:
                self._c.execute("BEGIN IMMEDIATE")
                for sql, params, many in [*self.held, (_INSERT_EVENT_ID, back, False)]:
                    try:
                        if many:
                            self._c.executemany(sql, params)
                        else:
                            self._c.execute(sql, params)
                    except sqlite3.Error as exc:
                        if _cannot_write(exc):
                            raise
                        # one bad row (a constraint) must not keep all the others off the disk for ever
                        log.error("journal: a held row could not be written (%s): %s", exc, sql[:60])
                        self.dropped += 1
                self._c.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._c.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._c.execute("ROLLBACK")
                self._next_ids["events"] -= 1  # the writable event was not written: its id is free again
                self.full_error = str(exc)
                return False
            self.held, self.dropped, self.full_since = [], 0, None
            self._next_ids.clear()
            log.warning("%s", back["message"])
            back["data"] = json.loads(str(back["data"]))
            self._notify(back)
            return True

    def _notify(self, row: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(row)

    def add_event(self, kind: str, message: str, severity: str = "info", data: dict[str, Any] | None = None,
                  incident_id: int | None = None, ts: float | None = None) -> dict[str, Any]:
        row = {"ts": self.clock() if ts is None else ts, "kind": kind, "message": message,
               "severity": severity, "data": json.dumps(data or {}, default=str), "incident_id": incident_id}
        with self._lock:
            if self.held:
                row["id"] = self._reserve_id("events")
                self._write([(_INSERT_EVENT_ID, dict(row), False)])
            else:
                row["id"] = self._write([(_INSERT_EVENT, dict(row), False)]) or None
                if row["id"] is None:  # the disk filled up just now: held, under the id it will have
                    row["id"] = self._reserve_id("events")
                    self.held[-1] = (_INSERT_EVENT_ID, dict(row), False)
        row["data"] = data or {}
        self._notify(row)
        return row

    def set_event_incident(self, event_ids: list[int], incident_id: int) -> None:
        self._write([("UPDATE events SET incident_id = ? WHERE id = ?", [(incident_id, i) for i in event_ids], True)])

    def put(self, key: str, value: Any) -> None:
        self._write([("INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
                      "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                      (key, json.dumps(value, default=str), self.clock()), False)])

    def set_load(self, name: str, state: str, reason: str, override: str = "auto") -> None:
        self._write([("INSERT INTO loads (name, state, reason, override, updated_at) VALUES (?, ?, ?, ?, ?) "
                      "ON CONFLICT(name) DO UPDATE SET state = excluded.state, reason = excluded.reason, "
                      "override = excluded.override, updated_at = excluded.updated_at",
                      (name, state, reason, override, self.clock()), False)])

    def insert(self, table: str, row: dict[str, Any]) -> int:
        row = {k: json.dumps(v, default=str) if isinstance(v, (dict, list)) else v for k, v in row.items()}
        with self._lock:
            if self.held and "id" not in row and table in _ID_TABLES:
                row = {"id": self._reserve_id(table), **row}
            cols = ", ".join(row)
            marks = ", ".join(f":{k}" for k in row)
            sql = f"INSERT INTO {table} ({cols}) VALUES ({marks})"
            rid = self._write([(sql, row, False)])
            if not rid and self.held and self.held[-1][1] is row and "id" not in row and table in _ID_TABLES:
                row = {"id": self._reserve_id(table), **row}  # the disk filled up just now
                cols, marks = ", ".join(row), ", ".join(f":{k}" for k in row)
                self.held[-1] = (f"INSERT INTO {table} ({cols}) VALUES ({marks})", row, False)
            return int(rid or row.get("id") or 0)

    def update(self, table: str, pk: str, pk_value: Any, values: dict[str, Any]) -> None:
        values = {k: json.dumps(v, default=str) if isinstance(v, (dict, list)) else v for k, v in values.items()}
        sets = ", ".join(f"{k} = :{k}" for k in values)
        self._write([(f"UPDATE {table} SET {sets} WHERE {pk} = :_pk", {**values, "_pk": pk_value}, False)])

    def add_samples(self, samples: list[tuple[float, str, float]]) -> None:
        self._write([("INSERT INTO samples (ts, series, value) VALUES (?, ?, ?)", list(samples), True)])

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
