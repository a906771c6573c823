"""Crash trials shared by tests/faults/test_crash.py (a few) and tests/bench/bench_crash.py (a hundred or more).

One trial, during an outage in the lab (mains cut so tier-1 loads are shed, the wired ISP blackholed so LTE
carries the traffic): maybe flip one fault, let the daemon run for a random number of API round trips, read
every committed row through a read-only connection, SIGKILL the daemon, then check the file
(``PRAGMA integrity_check``, every row still there) and, after ``gateway lab daemon start``, that the default
route in the gw namespace and the PoE ports (SNMP GET on the snmpsim switches) match the journal's desired
state -- after the peers were knocked out of it while the daemon was dead (switch ports all powered again, the
default route deleted), so the daemon has to re-apply it, not just find it in place.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway import config
from gateway.drivers.poe import load_profile
from tests.faults.conftest import Office

CONVERGE_S = 10.0  # the contract: routes and PoE match the journal's desired state within 10 s of a start
# table -> (key, columns that never change once written); rows the daemon updates later (a load's state, an
# incident's counters) must still be there, with their immutable part unchanged
TABLES = {"events": ("id", ("ts", "kind", "message", "severity", "data")), "loads": ("name", ()),
          "kv": ("key", ()), "incidents": ("id", ("kind", "opened_at")), "outbox": ("id", ("created_at", "title")),
          "reports": ("incident_id", ())}


@dataclass
class Trial:
    flip: str
    round_trips: int
    rows_before_kill: int
    integrity: str = ""
    lost: list[str] = field(default_factory=list)
    start_s: float = 0.0  # `gateway lab daemon start` until the daemon serves (Python start-up, services)
    converge_s: float | None = None  # from serving to routes + PoE matching the journal again
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.integrity == "ok" and not self.lost and self.converge_s is not None and not self.error


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)


def committed_rows(journal: Path) -> dict[str, dict[Any, tuple[Any, ...]]]:
    """Every row of the tables that carry state, as the file holds them now (a read-only snapshot)."""
    conn = _ro(journal)
    try:
        out: dict[str, dict[Any, tuple[Any, ...]]] = {}
        conn.execute("BEGIN")  # one consistent read across the tables
        for table, (key, fixed) in TABLES.items():
            cur = conn.execute(f"SELECT {', '.join((key, *fixed))} FROM {table}")
            out[table] = {row[0]: tuple(row[1:]) for row in cur.fetchall()}
        conn.execute("COMMIT")
        return out
    finally:
        conn.close()


def integrity(journal: Path) -> str:
    conn = _ro(journal)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


class Plant:
    """What the lab's peers say right now: the gw namespace's default route and every load's PoE port."""

    def __init__(self, office: Office) -> None:
        self.office = office
        cfg = config.load(office.config_path)
        st = office.info
        self.iface_of = {name: u["interface"] for name, u in st["uplinks"].items()}
        self.loads: list[tuple[str, str, str, int, int]] = []  # (load, host:port, oid, on, off)
        switches = {s.name: s for s in cfg.switches}
        for ld in cfg.loads:
            sw = switches[ld.switch]
            prof = load_profile(sw.profile)
            peer = st["switches"][ld.switch]
            oid = prof.admin_oid.format(group=sw.pse_group, port=ld.port)
            self.loads.append((ld.name, f"{peer['host']}:{peer['port']}", oid, prof.on, prof.off))
        self.tier = {ld.name: ld.tier for ld in cfg.loads}
        peers = list(st["switches"].values())
        self.community, self.write_community = str(peers[0]["read_community"]), str(peers[0]["community"])

    def route_uplink(self) -> str | None:
        r = self.office.ns("gw", ["ip", "-o", "route", "show", "default"])
        for name, iface in self.iface_of.items():
            if f" dev {iface} " in r.stdout + " ":
                return name
        return None

    def desync(self) -> None:
        """What a dead daemon can come back to: the switches rebooted (every port powered again) and the
        default route gone, so only re-applying the journal's desired state gets the office right again."""
        for _name, peer, oid, on, _off in self.loads:
            subprocess.run(["snmpset", "-v2c", "-c", self.write_community, "-Oqv", "-t", "1", "-r", "2", peer, oid,
                            "i", str(on)], capture_output=True, text=True, timeout=15, check=True)
        self.office.ns("gw", ["ip", "route", "del", "default"])

    def poe(self) -> dict[str, str | None]:
        """Each load's port as the switch reports it: "on", "off", or None (no answer)."""
        out: dict[str, str | None] = {}
        by_peer: dict[str, list[tuple[str, str, int, int]]] = {}
        for name, peer, oid, on, off in self.loads:
            by_peer.setdefault(peer, []).append((name, oid, on, off))
        for peer, rows in by_peer.items():
            r = subprocess.run(["snmpget", "-v2c", "-c", self.community, "-Oqv", "-t", "1", "-r", "2", peer,
                                *[oid for _, oid, _, _ in rows]], capture_output=True, text=True, timeout=15)
            values = r.stdout.split() if r.returncode == 0 else []
            for i, (name, _, on, off) in enumerate(rows):
                v = values[i] if i < len(values) else None
                out[name] = "on" if v == str(on) else "off" if v == str(off) else None
        return out


def desired(journal: Path, loads: list[str]) -> tuple[dict[str, str], str]:
    """The journal's desired state: each load's row (no row: never touched, so on) and the uplink the last
    committed switch moved traffic to (none yet: the primary, wired)."""
    conn = _ro(journal)
    try:
        rows = dict(conn.execute("SELECT name, state FROM loads").fetchall())
        last = conn.execute("SELECT json_extract(data, '$.to') FROM events WHERE kind = 'uplink.switch' "
                            "ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    return {name: str(rows.get(name, "on")) for name in loads}, str(last[0]) if last and last[0] else "wired"


def converged(office: Office, plant: Plant) -> bool:
    """Peers match the journal, and the journal says what this outage needs (tier 1 shed, traffic on LTE)."""
    want_loads, want_route = desired(office.journal_path, [n for n, *_ in plant.loads])
    outage = want_route == "lte" and all(s == "off" for n, s in want_loads.items() if plant.tier[n] == 1)
    return outage and plant.route_uplink() == want_route and plant.poe() == want_loads


def start_outage(office: Office, plant: Plant) -> None:
    office.lab("power", "cut")
    office.lab("isp", "blackhole")
    office.wait(lambda: converged(office, plant), 60, "tier 1 shed and traffic on LTE")


FLIPS = ("none", "power", "isp")


def run_trial(office: Office, plant: Plant, rng: random.Random) -> Trial:
    """One kill at a random moment during the outage; the daemon is running again (converged) after it."""
    flip = rng.choice(FLIPS)
    t = Trial(flip, rng.randint(0, 30), 0)
    if flip == "power":  # a mains blip inside the outage: the restore hold starts, then mains fails again
        office.lab("power", "restore")
        office.lab("power", "cut")
    elif flip == "isp":  # the wired line answers for a moment, then drops everything again
        office.lab("isp", "up")
        office.lab("isp", "blackhole")
    for _ in range(t.round_trips):  # a random moment: n round trips through the daemon's own API
        office.snapshot()
    before = committed_rows(office.journal_path)
    t.rows_before_kill = sum(len(v) for v in before.values())
    office.lab("daemon", "kill")
    t.integrity = integrity(office.journal_path)
    after = committed_rows(office.journal_path)
    for table, rows in before.items():
        for key, row in rows.items():
            if after[table].get(key) != row:
                t.lost.append(f"{table}[{key!r}]")
    plant.desync()
    started = time.monotonic()
    office.lab("daemon", "start")
    t.start_s = time.monotonic() - started
    started = time.monotonic()
    try:
        office.wait(lambda: converged(office, plant), CONVERGE_S, "routes and PoE matching the journal")
        t.converge_s = time.monotonic() - started
    except AssertionError as exc:
        t.error = f"{exc}: route {plant.route_uplink()}, poe {plant.poe()}, " \
                  f"journal {desired(office.journal_path, [n for n, *_ in plant.loads])}"
    return t
