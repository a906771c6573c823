"""Replaying ../shared/nut-ddl through real upsd + dummy-ups and reading each UPS through the daemon's driver.

Shared by tests/faults/test_nut_ddl.py (a sample; all with GATEWAY_TEST_FULL=1) and tests/bench/bench_nutddl.py
(all dumps, with figures).  Each dump ends as one :class:`Outcome`:

- ``ok``: upsd served it, :class:`gateway.drivers.ups.UpsDriver` read it, the reading is exactly what upsd's
  variables map to, and the power machine took it to a state that follows its flags;
- ``nut``: NUT itself cannot serve the dump (its driver exits or upsd never has data): a documented skip,
  with upsd's reason, counted apart;
- ``failed``: anything else (our driver or core broke, or disagreed with upsd): a bug to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway.core import power as core
from gateway.core.base import Tick
from gateway.core.errors import GatewayError
from gateway.drivers.ups import UpsDriver
from gateway.lab.ups import UpsPeerError
from gateway.lab.upsfarm import UpsFarm
from tests.conftest import until

SHARED = Path(__file__).resolve().parents[3] / "shared"
DDL = SHARED / "nut-ddl"
BATCH = 100  # dumps per upsd; ~100 dummy-ups processes at a time
SERVED_WITHIN_S = 20.0
POLICY = core.Policy(loads=(core.LoadSpec("phones", 0), core.LoadSpec("camera", 1), core.LoadSpec("signage", 2)),
                     tiers=(core.TierRule(1, after_on_battery_s=0.0), core.TierRule(2, charge_below_pct=50.0)),
                     debounce_s=0.0)


def all_dumps() -> list[Path]:
    return sorted(DDL.glob("*/*.dev"))


@dataclass
class Outcome:
    dump: Path
    kind: str  # ok | nut | failed
    detail: str = ""
    state: str = ""
    status: tuple[str, ...] = ()
    seconds: float = 0.0


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)

    def of(self, kind: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind == kind]


def _vars_of(dump: Path) -> dict[str, str]:
    return core.parse_dump(dump.read_text(encoding="utf-8", errors="replace"))


def sample(dumps: Sequence[Path] | None = None) -> list[Path]:
    """A small deterministic sample that still covers the odd cases: every status flag NUT documents, no
    ``ups.status``, no ``battery.runtime``, no ``ups.load``, a value NUT reads across a line end (``\\``).
    Greedy: for each criterion in turn, unless a dump already picked meets it, the dump (in sorted order)
    meeting the most criteria still open."""
    dumps = list(dumps if dumps is not None else all_dumps())
    facts: dict[Path, set[str]] = {}
    for d in dumps:
        text = d.read_text(encoding="utf-8", errors="replace")
        v = core.parse_dump(text)
        f = {f"flag:{x}" for x in core.parse_status(v.get("ups.status"))}
        if "ups.status" not in v:
            f.add("no-status")
        if "battery.runtime" not in v:
            f.add("no-runtime")
        if "ups.load" not in v:
            f.add("no-load")
        if any(line.rstrip("\r").endswith("\\") for line in text.splitlines()):
            f.add("backslash")
        facts[d] = f
    criteria = ["no-status", "no-runtime", "no-load", "backslash",
                *(f"flag:{x}" for x in ("OB", "LB", "BYPASS", "OFF", "CAL", "TRIM", "BOOST", "OVER", "FSD", "ALARM",
                                        "RB", "HB", "CHRG", "DISCHRG"))]
    picked: list[Path] = []
    for c in criteria:
        if any(c in facts[p] for p in picked):
            continue
        open_ = {x for x in criteria if not any(x in facts[p] for p in picked)}
        best = max((d for d in dumps if c in facts[d]), key=lambda d: len(facts[d] & open_), default=None)
        if best is not None:
            picked.append(best)
    return picked


def _check_state(reading: core.UpsReading) -> str:
    s = core.initial(POLICY, 0.0)
    s, _ = core.step(s, reading, 1.0)
    s, _ = core.step(s, Tick(), 1.5)
    s, _ = core.step(s, reading, 2.0)
    want_off = {n for n, (st, _, _) in core.desired(s).items() if st == "off"}
    if "phones" in want_off:
        raise AssertionError("tier 0 shed")
    supply = core.supply_of(reading.status)
    if s.state not in core.STATES or s.state == "comm_lost":
        raise AssertionError(f"state {s.state} from a fresh reading")
    if supply == "battery" and s.state == "online":
        raise AssertionError("on battery (OB without OL) but online")
    if supply == "mains" and s.state != "online":
        raise AssertionError(f"on mains but {s.state}")
    if supply == "battery" and "camera" not in want_off:
        raise AssertionError("on battery but tier 1 (after 0 s on battery) not shed")
    return s.state


async def _read_one(farm: UpsFarm, name: str, dump: Path, deadline: float) -> Outcome:
    started = time.monotonic()
    got: dict[str, str] = {}
    why = ""

    def served() -> bool:
        """upsd serves the dump (True), or dummy-ups died on it (True, nothing got); else keep waiting."""
        nonlocal why
        try:
            raw = farm.raw(name)
        except (UpsPeerError, OSError) as exc:
            why = str(exc)
            return not farm.driver_alive(name) and "DRIVER-NOT-CONNECTED" in why
        if raw.get("ups.status", "").strip().upper() == "WAIT":
            why = "ups.status WAIT"
            return False
        got.update(raw)
        return True

    with contextlib.suppress(AssertionError):  # the deadline: told below as what NUT did not serve
        await until(served, max(0.0, deadline - time.monotonic()), "upsd to serve the dump", interval=0.1)
    if not got:
        return Outcome(dump, "nut", f"NUT does not serve it: {why}"
                       + ("" if farm.driver_alive(name) else " (dummy-ups exited)"))
    raw = got
    driver = UpsDriver(name, farm.host, farm.port, timeout_s=5.0)
    try:
        reading = await driver.read()
        mapped = core.reading_from_vars(raw)
        if reading != mapped:
            return Outcome(dump, "failed", f"driver read {reading}, upsd's variables map to {mapped}")
        if reading.status != core.parse_status(raw.get("ups.status")):
            return Outcome(dump, "failed", f"status {reading.status} but upsd says {raw.get('ups.status')!r}")
        state = _check_state(reading)
    except (GatewayError, AssertionError, ValueError, TypeError, KeyError) as exc:
        return Outcome(dump, "failed", f"{type(exc).__name__}: {exc}")
    finally:
        await driver.close()
    return Outcome(dump, "ok", state=state, status=reading.status, seconds=time.monotonic() - started)


async def _read_batch(farm: UpsFarm, names: dict[str, Path]) -> list[Outcome]:
    deadline = time.monotonic() + SERVED_WITHIN_S
    sem = asyncio.Semaphore(16)  # upsd answers many at once; our driver uses worker threads

    async def one(name: str, dump: Path) -> Outcome:
        async with sem:
            return await _read_one(farm, name, dump, deadline)

    return list(await asyncio.gather(*(one(n, d) for n, d in names.items())))


def replay(workdir: Path, dumps: Iterable[Path], batch: int = BATCH) -> Tally:
    """Every dump through one upsd per batch; returns what became of each."""
    dumps = list(dumps)
    tally = Tally()
    farm = UpsFarm(workdir)
    try:
        for i in range(0, len(dumps), batch):
            chunk = dumps[i:i + batch]
            names = farm.load(chunk)
            tally.outcomes += asyncio.run(_read_batch(farm, names))
    finally:
        farm.stop()
    return tally
