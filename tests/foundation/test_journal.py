"""The journal: migrations, durability, kill -9 safety, retention, reader isolation."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlite_utils

from gateway.core.errors import JournalError
from gateway.store import SCHEMA_VERSION, Journal, JournalReader, migrate

ROOT = Path(__file__).resolve().parents[2]


def test_new_journal_is_migrated_wal_and_full_sync(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    assert j.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert j.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert j.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    for table in ("events", "incidents", "reports", "loads", "kv", "drills", "maintenance", "outbox", "samples"):
        assert table in j.db.table_names()


def test_migrations_are_idempotent_and_refuse_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    Journal(path).close()
    db = sqlite_utils.Database(path)
    assert migrate(db) == SCHEMA_VERSION  # nothing to do the second time
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.conn.close()
    with pytest.raises(JournalError, match="newer than this software"):
        Journal(path)


def test_events_round_trip_and_reader_sees_committed_rows(tmp_path: Path) -> None:
    seen: list[dict] = []
    j = Journal(tmp_path / "j.db", clock=lambda: 1000.0)
    j.listeners.append(seen.append)
    row = j.add_event("power.state", "power: on battery", "warning", {"charge": 90})
    assert row["id"] == 1 and seen == [row]
    r = JournalReader(tmp_path / "j.db")
    (ev,) = r.events()
    assert ev["data"] == {"charge": 90} and ev["ts"] == 1000.0 and ev["severity"] == "warning"
    j.put("uplinks.override", "lte")
    assert r.get("uplinks.override") == "lte" and r.get("absent", 5) == 5
    j.set_load("cam", "off", "tier 1 on battery")
    assert r.loads()["cam"]["state"] == "off"


def test_reader_cannot_write(tmp_path: Path) -> None:
    Journal(tmp_path / "j.db").add_event("x", "y")
    r = JournalReader(tmp_path / "j.db")
    with pytest.raises(JournalError):
        r.query("INSERT INTO kv (key, value) VALUES ('a', '1')")


def test_readers_page_cache_is_bounded_per_thread(tmp_path: Path) -> None:
    """Eight web workers each hold a reader connection: each caches at most 512 KiB, not SQLite's 2 MB."""
    import threading

    j = Journal(tmp_path / "j.db")
    j.add_event("t.x", "one")
    reader = JournalReader(tmp_path / "j.db")
    sizes: list[int] = []

    def read() -> None:
        assert reader.events()[0]["message"] == "one"
        sizes.append(reader.query("PRAGMA cache_size")[0]["cache_size"])
    threads = [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sizes == [-512, -512, -512]


def test_failed_transaction_changes_nothing(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    with pytest.raises(RuntimeError):
        with j.transaction() as c:
            c.execute("INSERT INTO kv (key, value) VALUES ('a', '1')")
            raise RuntimeError("boom")
    assert j.get("a") is None


def test_retention_by_age_and_size(tmp_path: Path) -> None:
    now = [10 * 86400.0]
    j = Journal(tmp_path / "j.db", clock=lambda: now[0])
    for i in range(50):
        j.add_event("old", "x" * 100, ts=float(i))
    j.add_event("new", "recent")
    removed = j.apply_retention(retention_days=1, max_mb=100)
    assert removed == 50
    assert [e["kind"] for e in j.events()] == ["new"]
    big = "y" * 2000
    with j.transaction() as c:
        c.executemany("INSERT INTO events (ts, kind, message, severity, data) VALUES (?, 'bulk', ?, 'info', '{}')",
                      [(now[0], big) for _ in range(2000)])
    assert j.size_bytes() > 2 * 1024 * 1024
    j.apply_retention(retention_days=1000, max_mb=1)
    assert j.size_bytes() <= 1024 * 1024
    assert j.integrity_ok()


def test_sigkill_mid_write_never_corrupts_or_loses_committed_rows(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    Journal(path).close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    committed = 0
    for trial in range(8):
        proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("writer.py")), str(path)],
                                stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        target = 20 + trial * 13  # kill at a different moment each trial
        last = 0
        for line in proc.stdout:
            last = int(line)
            if last >= committed + target:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        committed = last
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = [r[0] for r in conn.execute("SELECT id FROM events ORDER BY id")]
        assert ids[: committed] == list(range(1, committed + 1)), "a committed row was lost"
        # every event row has its load row from the same transaction (atomicity)
        max_id = ids[-1]
        reasons = {r[0] for r in conn.execute("SELECT reason FROM loads")}
        assert f"e{max_id}" in reasons or max_id < 7
        conn.close()
        committed = max_id
