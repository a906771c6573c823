"""The journal's disk filling up: the writer holds rows in memory, in order, and writes them once there is room.

SQLite's own limit (``PRAGMA max_page_count``) makes the file unable to grow, which is the same SQLITE_FULL a
full card gives; the lab test (tests/faults/test_daemon_faults.py) fills a real tmpfs under the daemon.
"""

from __future__ import annotations

from pathlib import Path

from gateway.store import Journal, JournalReader


def _fill(j: Journal) -> int:
    """Cap the file at its current size, then write until a write is held; the committed ids."""
    pages = j._c.execute("PRAGMA page_count").fetchone()[0]
    j._c.execute(f"PRAGMA max_page_count = {pages}")
    for n in range(100_000):
        j.add_event("test.fill", "x" * 500, data={"n": n})
        if j.full:
            break
    assert j.full, "the capped journal never filled"
    return pages


def test_disk_full_holds_rows_in_order_and_writes_them_when_there_is_room(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db")
    j.add_event("test.before", "committed before the disk filled")
    pages = _fill(j)
    reader = JournalReader(j.path)
    committed = reader.events(limit=1_000_000)
    assert committed and all(e["kind"] != "journal.full" for e in committed)

    held = [j.add_event("test.held", f"held {i}") for i in range(3)]
    j.set_load("camera", "off", "shed: tier 1")
    j.put("power.outage", {"shed": {"1": "x"}})
    ids = [e["id"] for e in held]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert j.full and not j.flush()  # still no room: nothing written, nothing lost
    assert reader.events(limit=1_000_000) == committed

    j._c.execute(f"PRAGMA max_page_count = {pages * 100}")
    assert j.flush() and not j.full
    after = reader.events(limit=1_000_000)
    assert after[:len(committed)] == committed  # no committed row changed
    tail = [e for e in after if e["id"] > committed[-1]["id"]]
    kinds = [e["kind"] for e in tail]
    assert kinds.count("journal.full") == 1 and kinds[-1] == "journal.writable"
    assert [e["id"] for e in tail if e["kind"] == "test.held"] == ids
    assert reader.loads()["camera"]["state"] == "off"
    assert reader.get("power.outage") == {"shed": {"1": "x"}}
    assert j.integrity_ok()

    j.add_event("test.after", "written straight away again")
    assert not j.full and reader.events(since_id=after[-1]["id"])[0]["kind"] == "test.after"
    j.close()


def test_listeners_see_held_rows_with_the_ids_they_will_have(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db")
    seen: list[tuple[int, str]] = []
    j.listeners.append(lambda row: seen.append((int(row["id"]), str(row["kind"]))))
    pages = _fill(j)
    j.add_event("test.held", "held")
    j._c.execute(f"PRAGMA max_page_count = {pages * 100}")
    assert j.flush()
    on_disk = [(int(e["id"]), str(e["kind"])) for e in JournalReader(j.path).events(limit=1_000_000)]
    assert seen == on_disk
    j.close()
