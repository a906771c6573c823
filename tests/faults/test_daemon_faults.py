"""Daemon-level faults in the lab: the wall clock jumping, a bad config on SIGHUP, the journal's disk full.

Each: the daemon stays up, its state is right, one journal event per transition, and it recovers by itself.
Assertions are about events after a baseline id and about the kinds the test causes.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.lab.cli import _LAUNCH
from gateway.store import JournalReader
from tests.faults.conftest import ROOT, Office
from tests.faults.crash import Plant

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
HOUR_S = 3600.0


def _kinds(evs: list[dict[str, Any]], prefix: str) -> list[str]:
    return [e["kind"] for e in evs if str(e["kind"]).startswith(prefix)]


def _daemon_wall(office: Office) -> float:
    snap = office.snapshot()
    assert snap is not None
    return datetime.fromisoformat(snap["updated_at"]).timestamp()


def _uptime(office: Office) -> float:
    snap = office.snapshot()
    assert snap is not None
    return float(snap["daemon"]["uptime_s"])


def _active(office: Office) -> str | None:
    snap = office.snapshot() or {}
    return next((u["name"] for u in snap.get("uplinks", []) if u.get("active")), None)


def _wired_up_and_active(office: Office) -> bool:
    snap = office.snapshot() or {}
    return any(u["name"] == "wired" and u["active"] and u["state"] == "up" for u in snap.get("uplinks", []))


# ------------------------------------------------------------------------------------------ SIGHUP

def test_bad_config_on_sighup_keeps_the_old_one_with_one_event_and_a_good_one_reloads(office: Office) -> None:
    office.wait(lambda: _wired_up_and_active(office), 60, "wired up and carrying traffic")
    # the start's own transitions (wired judged up by its probes, the modem's call connected) are over first,
    # so what follows the baseline can only come from the reloads
    office.wait(lambda: any(e["message"].startswith("wired: up") for e in office.events("uplink.state"))
                and any("connected" in e["message"] for e in office.events("modem.state")), 60,
                "the start's uplink and modem transitions journaled")
    path = office.config_path
    good = path.read_text()
    lines = good.splitlines()
    lineno = next(i for i, ln in enumerate(lines, 1) if ln.startswith("poll_interval_s") and i < 20)
    bad = "\n".join(ln if i != lineno else 'poll_interval_s = "fast"' for i, ln in enumerate(lines, 1)) + "\n"
    reader = JournalReader(office.journal_path)  # found through the config, so before it turns bad

    def config_events(since: int) -> list[dict[str, Any]]:
        return reader.events(since_id=since, kind_prefix="config.")
    base = office.last_event_id()
    pid = office.pid
    try:
        path.write_text(bad)
        os.kill(pid, signal.SIGHUP)
        failed = office.wait(lambda: config_events(base), 20, "config.reload_failed")
        assert [e["kind"] for e in failed] == ["config.reload_failed"]
        assert re.search(rf"{re.escape(str(path))}:{lineno}: ups\.poll_interval_s: ", failed[0]["message"])
        snap = office.snapshot()
        assert snap is not None and snap["power"]["state"] == "online" and office.alive()
    finally:
        path.write_text(good)
    mark = office.last_event_id()
    os.kill(pid, signal.SIGHUP)
    ok = office.wait(lambda: config_events(mark), 20, "config.reloaded")
    assert [e["kind"] for e in ok] == ["config.reloaded"]
    assert office.pid == pid and _wired_up_and_active(office)
    # two reloads, the config events only: the uplinks did not re-announce themselves
    up = _uptime(office)
    office.wait(lambda: _uptime(office) >= up + 2, 30, "two more seconds of daemon uptime")
    evs = office.events(since_id=base)
    assert [e["kind"] for e in evs if e["kind"].startswith(("config.", "uplink.", "power."))] == \
        ["config.reload_failed", "config.reloaded"]


# --------------------------------------------------------------------------------------- disk full

class OwnDaemon:
    """The lab's daemon started by the test itself (the lab's is stopped first), in the gw namespace with the
    lab's config and the page on the lab's port, and optionally:

    - ``tmpfs_mb``: its state dir on a small tmpfs the test mounts on its own tmp dir (unmounted by stop();
      SQLite resolves /proc/PID/root paths to the host's view, so a private mount namespace would hide the file);
    - ``env``: variables for the daemon process only (libfaketime's, so no other process sees its clock).
    """

    def __init__(self, office: Office, work: Path, tmpfs_mb: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.office = office
        self.state = work / "state"
        self.state.mkdir()
        text = office.config_path.read_text()
        text = re.sub(r'(?m)^state_dir = ".*"$', f'state_dir = "{self.state}"', text)
        self.config = work / "gateway.toml"
        self.config.write_text(text)
        office.lab("daemon", "stop")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        port = int(office.web.rsplit(":", 1)[1])
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        daemon = ["ip", "netns", "exec", str(office.info["netns"]["gw"]),
                  "env", *[f"{k}={v}" for k, v in (env or {}).items()],
                  sys.executable, "-m", "gateway", "run", "--config", str(self.config)]
        self.mounted = False
        if tmpfs_mb is not None:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={tmpfs_mb}m,mode=0700", "tmpfs", str(self.state)],
                           check=True)
            self.mounted = True
        argv = [sys.executable, "-c", _LAUNCH, str(sock.fileno()), *daemon]
        self.log = open(work / "daemon.log", "wb")  # noqa: SIM115 -- open for the daemon's whole life
        self.proc = subprocess.Popen(argv, pass_fds=[sock.fileno()], stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=str(ROOT), start_new_session=True,
                                     env={**office.env, "PYTHONUNBUFFERED": "1"})
        sock.close()

    @property
    def journal(self) -> Path:
        return self.state / "journal.db"

    def events_full(self, since_id: int = 0) -> list[dict[str, Any]]:
        return JournalReader(self.journal).events(since_id=since_id, limit=100000)

    def events(self, since_id: int = 0) -> list[dict[str, Any]]:
        conn = sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True, timeout=5)
        try:
            cur = conn.execute("SELECT id, ts, kind, message FROM events WHERE id > ? ORDER BY id", (since_id,))
            return [dict(zip(("id", "ts", "kind", "message"), r, strict=True)) for r in cur.fetchall()]
        finally:
            conn.close()

    def fill(self) -> Path:
        """Write a file until the tmpfs says ENOSPC."""
        filler = self.state / "filler"
        chunk = b"\0" * 65536
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        return filler

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        if self.mounted:
            subprocess.run(["umount", str(self.state)], check=True)
            self.mounted = False


def test_journal_disk_full_keeps_the_daemon_acting_and_journaling_resumes(office: Office, tmp_path: Path) -> None:
    plant = Plant(office)
    d = OwnDaemon(office, tmp_path, tmpfs_mb=8)
    try:
        office.wait(lambda: _wired_up_and_active(office) and d.proc.poll() is None, 90, "the tmpfs daemon serving")
        snap = office.snapshot()
        assert snap is not None and snap["journal"]["state"] == "ok" and snap["daemon"]["pid"] == d.proc.pid
        before = d.events()
        filler = d.fill()
        # mains fails while nothing can be journaled: the loads are still shed, and the API says the journal is full
        office.lab("power", "cut")
        office.wait(lambda: all(s == "off" for n, s in plant.poe().items() if plant.tier[n] == 1), 30,
                    "tier 1 shed on the switches with the journal's disk full")
        full = office.wait(lambda: (office.snapshot() or {}).get("journal", {}).get("state") == "full"
                           and office.snapshot(), 20, "journal: full in /api/v1/status")
        assert full["journal"]["held_rows"] > 0 and "full" in full["journal"]["error"]
        assert full["power"]["state"] == "on_battery" and d.proc.poll() is None
        assert d.events()[:len(before)] == before  # what was committed stays, nothing new reached the disk
        filler.unlink()
        office.wait(lambda: (office.snapshot() or {}).get("journal", {}).get("state") == "ok", 20,
                    "journal: ok again once there is room")
        after = d.events()
        assert after[:len(before)] == before
        new = after[len(before):]
        kinds = [e["kind"] for e in new]
        assert kinds.count("journal.full") == 1 and kinds.count("journal.writable") == 1
        assert kinds.index("journal.full") < kinds.index("power.shed") < kinds.index("journal.writable")
        assert kinds.count("power.shed") == 1
        assert [e["id"] for e in new] == list(range(new[0]["id"], new[0]["id"] + len(new)))  # no gap
        conn = sqlite3.connect(f"file:{d.journal}?mode=ro", uri=True)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            shed = dict(conn.execute("SELECT name, state FROM loads").fetchall())
        finally:
            conn.close()
        assert {n for n, s in shed.items() if s == "off"} >= {n for n, t in plant.tier.items() if t == 1}
        # and it journals straight away again
        mark = after[-1]["id"]
        office.lab("power", "restore")
        office.wait(lambda: any(e["kind"] == "power.state" for e in d.events(mark)), 30, "the next power.state")
        assert d.proc.poll() is None
    finally:
        d.stop()


# -------------------------------------------------------------------------------------------- the clock

@pytest.mark.skipif(not LIBFAKETIME.exists(), reason="libfaketime is not installed (make test installs it)")
def test_wall_clock_jumps_back_and_forward_change_nothing_and_timers_keep_time(office: Office,
                                                                             tmp_path: Path) -> None:
    """The daemon alone runs on a shifted wall clock (libfaketime, monotonic left real); the host's is untouched."""
    offset = tmp_path / "faketime"
    env = {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(offset), "FAKETIME_CACHE_DURATION": "1",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    d = OwnDaemon(office, tmp_path, env=env)
    try:
        _clock_jumps(office, d, offset)
    finally:
        d.stop()


def _clock_jumps(office: Office, d: OwnDaemon, offset: Path) -> None:
    def steady() -> bool:
        snap = office.snapshot() or {}
        return _wired_up_and_active(office) and d.alive() and snap["power"]["state"] == "online" \
            and all(ld["state"] == "on" for ld in snap["loads"]) \
            and all(any(e["kind"] == "uplink.state" and e["message"].startswith(f"{name}: up") for e in d.events())
                    for name in ("wired", "lte"))
    office.wait(steady, 90, "both uplinks judged up by their probes, wired carrying traffic, every load on")
    base = max([e["id"] for e in d.events()] or [0])

    def jump(spec: str, expect_offset_s: float) -> None:
        offset.write_text(spec + "\n")
        office.wait(lambda: abs(_daemon_wall(office) - time.time() - expect_offset_s) < 600, 20,
                    f"the daemon's clock at {spec}")
        up = _uptime(office)
        office.wait(lambda: _uptime(office) >= up + 3, 30, "three more seconds of daemon uptime")

    # an hour back, with traffic moving to LTE while it is: probe deadlines are monotonic, so failover happens
    jump("-1h", -HOUR_S)
    office.lab("isp", "blackhole")
    office.wait(lambda: _active(office) == "lte", 30, "traffic on LTE with the clock an hour back")
    # then two hours forward, and the line comes back: the failback hold (monotonic) must neither be skipped
    # nor stretched by the jump -- we see the hold in progress, then the failback
    jump("+1h", HOUR_S)
    office.lab("isp", "up")
    # a healthy wired line waiting out its failback hold is shown as standby with the hold's countdown
    holding = office.wait(lambda: next((u for u in (office.snapshot() or {}).get("uplinks", [])
                                        if u["name"] == "wired" and not u["active"]
                                        and u.get("failback_in_s") is not None), None),
                          60, "wired healthy again, failback held")
    assert holding is not None
    office.wait(lambda: _wired_up_and_active(office), 90, "failback to wired after the hold")
    assert d.alive()

    evs = d.events_full(base)
    switches = [e for e in evs if e["kind"] == "uplink.switch"]
    assert [(e["data"]["from"], e["data"]["to"]) for e in switches] == [("wired", "lte"), ("lte", "wired")]
    wired_states = [e["data"]["to"] for e in evs if e["kind"] == "uplink.state" and e["data"]["uplink"] == "wired"]
    assert wired_states[0] == "down" and wired_states[-1] == "up" and "unknown" not in wired_states
    assert _kinds(evs, "power.") == [], "a clock jump must not look like a power event"
    assert [e for e in evs if e["kind"] == "uplink.state" and e["data"]["uplink"] == "lte"] == []
    assert len(_kinds(evs, "incident.open")) <= 1  # the wired outage, at most; nothing for the jumps
    # the journal keeps the clock it had (ids give the order); each event's time is the daemon's at that moment
    assert [e["id"] for e in evs] == sorted(e["id"] for e in evs)
    first_switch, back_switch = switches
    assert first_switch["ts"] < time.time() - HOUR_S / 2 and back_switch["ts"] > time.time() + HOUR_S / 2
    snap = office.snapshot()
    assert snap is not None and snap["daemon"]["uptime_s"] >= 0
    for u in snap["uplinks"]:
        assert u.get("rtt_ms") is None or u["rtt_ms"] >= 0
