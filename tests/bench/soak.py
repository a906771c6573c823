"""`make soak`: the lab office through SOAK_DAYS simulated days of random outages, with time compressed.

Power cuts, the wired ISP down / blackholed / lossy, the LTE line down and the CRM (in the lab's ``inet``
namespace) unreachable are injected at random (seeded: SOAK_SEED) through the lab's CLI, sometimes two at once.
At the end the soak checks, through the daemon's HTTP API and its journal (read-only):

- every outage became an incident whose causes name it, which closed and has a report
  (``GET /api/v1/incidents``, ``GET /api/v1/incidents/ID/report?format=json``);
- the journal stayed within its retention bound all along (oldest event no older than retention + one
  housekeeping interval, file no bigger than ``max_mb``) and retention really removed rows;
- the daemon's RSS (``/proc/PID/status`` VmRSS) grew by at most 5 % from the end of the warm-up to the end;

and it reports event storms (one kind journalled more than STORM_EVENTS times within STORM_WINDOW_S).

Time compression.  A simulated day is SOAK_DAY_S real seconds (default 20, so 30 days take ~10 min plus the
lab).  What the soak is about -- probes, UPS polls, AT commands, netlink, SQLite -- runs at its real rates:
compressing it would soak something else.  What only waits for a human-scale calm is scaled down so that an
outage and its recovery fit in a day: the incident close hold (lab 30 s, default 180 s) to 3 s, the failback
hold to 3 s, the power restore hold and stagger to 2 s / 0.5 s, the business-app check interval to 1 s and
the modem's retry/recovery waits to a few seconds.  Calendar quantities are scaled exactly by the day:
retention keeps RETENTION_SIM_DAYS simulated days (``[journal] retention_days`` takes fractions of a day)
and housekeeping runs every simulated 3 hours (``retention_interval_s``).  Outages last 4-8 s (or 20-40 % of
a longer day): long enough for every detector (a blackhole ~1 s, the CRM check 2 x 1 s, the loss window
2 s, the power debounce 0.5 s) and short enough for about one outage cycle per simulated day.

Writes its figures to bench/results.json as soak_* entries ({"name": {"value", "unit", "baseline"}}, as
tests/bench/run.py does) and exits 1 when a check fails.  Runs in a lab of its own (GATEWAY_LAB_PREFIX /
GATEWAY_LAB_DIR), so it can run beside the tests.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway import config as config_mod

ROOT = Path(__file__).resolve().parents[2]

RSS_GROWTH_GOAL_PCT = 5.0
STORM_EVENTS = 30  # more rows of one kind than this ...
STORM_WINDOW_S = 10.0  # ... within this many real seconds is a storm
# the causes an incident names for each kind of outage (gateway.core.incidents' condition texts)
EXPECTED: dict[str, tuple[str, ...]] = {
    "power": ("power: on battery", "power: battery low"),
    "isp_down": ("wired: down",),
    "isp_blackhole": ("wired: down",),
    "isp_loss": ("wired: degraded", "wired: down"),
    "lte_down": ("lte: down", "lte modem: failed"),
    "crm": ("CRM: unreachable",),
}
RESOURCE = {"power": "power", "isp_down": "isp", "isp_blackhole": "isp", "isp_loss": "isp",
            "lte_down": "lte", "crm": "crm"}
# how often each kind comes up: power cuts and dead lines are the office's everyday trouble
WEIGHTS = {"power": 3, "isp_down": 1, "isp_blackhole": 2, "isp_loss": 1, "lte_down": 1, "crm": 2}
LOSS_PCT = 60  # above down_loss_pct's 50 %, so the line is surely at least degraded


@dataclass
class Settings:
    days: int = 30
    day_s: float = 20.0
    seed: int = 13
    retention_sim_days: float = 7.0
    warmup_days: int = 2

    @classmethod
    def from_env(cls) -> Settings:
        days = int(os.environ.get("SOAK_DAYS", "30"))
        day_s = float(os.environ.get("SOAK_DAY_S", "20"))
        if days < 1 or day_s < 10:
            raise SystemExit("SOAK_DAYS must be >= 1 and SOAK_DAY_S >= 10 (an outage and its recovery take ~10 s)")
        seed = int(os.environ.get("SOAK_SEED", "13"))
        # retention must run several times within the soak: a week, or a quarter of a short soak
        retention = float(os.environ.get("SOAK_RETENTION_DAYS", str(min(7.0, max(0.25, days / 4)))))
        warmup = min(3, max(1, days // 10)) if days > 2 else 0  # caches, pools and the first retention
        return cls(days=days, day_s=day_s, seed=seed, retention_sim_days=retention, warmup_days=warmup)

    @property
    def retention_s(self) -> float:
        return self.retention_sim_days * self.day_s

    @property
    def housekeeping_s(self) -> float:
        return max(1.0, self.day_s / 8)  # a simulated 3 hours


@dataclass
class Outage:
    n: int
    kind: str
    at_s: float  # planned start, real seconds from the soak's start
    duration_s: float
    started: float | None = None  # wall clock, once the fault is in place
    ended: float | None = None  # wall clock, once the fault is cleared
    incident: int | None = None


@dataclass
class Plan:
    outages: list[Outage] = field(default_factory=list)
    day_of: dict[int, int] = field(default_factory=dict)


def plan(s: Settings) -> Plan:
    """A seeded random schedule: 0-3 outages a day (1.35 on average), sometimes overlapping (two resources at once), never two
    faults on one resource at a time (the lab has one ISP line, one modem, one UPS, one CRM)."""
    rng = random.Random(s.seed)
    kinds = list(WEIGHTS)
    weights = [WEIGHTS[k] for k in kinds]
    out = Plan()
    busy_until: dict[str, float] = {}
    dmin, dmax = max(4.0, 0.2 * s.day_s), max(8.0, 0.4 * s.day_s)
    for day in range(s.days):
        count = rng.choices((0, 1, 2, 3), (0.15, 0.45, 0.3, 0.1))[0]
        starts = sorted(rng.uniform(0, s.day_s * 0.5) for _ in range(count))
        for off in starts:
            kind = rng.choices(kinds, weights)[0]
            at = day * s.day_s + off
            dur = rng.uniform(dmin, dmax)
            res = RESOURCE[kind]
            if busy_until.get(res, -1.0) + 1.0 > at:  # that resource is still out: pick another one or skip
                free = [k for k in kinds if busy_until.get(RESOURCE[k], -1.0) + 1.0 <= at]
                if not free:
                    continue
                kind = rng.choice(free)
                res = RESOURCE[kind]
            busy_until[res] = at + dur
            o = Outage(len(out.outages) + 1, kind, at, dur)
            out.outages.append(o)
            out.day_of[o.n] = day
    return out


# ----------------------------------------------------------------------------------------------- lab


def crm_fault(netns: str, crm_url: str, down: bool) -> None:
    """The CRM unreachable (or back): its port refused inside the lab's own ``inet`` namespace, by a table of
    the soak's own (the lab has no CLI for the business app)."""
    url = urllib.parse.urlsplit(crm_url)
    script = (f"table inet soak_crm {{\n chain input {{ type filter hook input priority -10; "
              f"ip daddr {url.hostname} tcp dport {url.port or 80} reject with tcp reset; }}\n}}\n") if down \
        else "delete table inet soak_crm\n"
    r = subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=script, capture_output=True,
                       text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"nft in {netns}: {r.stderr.strip()}")


class SoakLab:
    """A lab of the soak's own, driven through `gateway lab`, the daemon's API and its journal (read-only)."""

    def __init__(self, base: Path, prefix: str) -> None:
        self.base = base
        self.prefix = prefix
        self.env = {**os.environ, "GATEWAY_LAB_DIR": str(base), "GATEWAY_LAB_PREFIX": prefix,
                    "PYTHONPATH": str(ROOT)}
        self.info: dict[str, Any] = {}

    def gw(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, env=self.env,
                           cwd=str(ROOT), timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"gateway {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
        return r

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.gw("lab", "status", "--json").stdout)
        return out

    @property
    def web(self) -> str:
        return str(self.info["web"]).rstrip("/")

    def api(self, path: str, timeout: float = 10.0) -> Any:
        with urllib.request.urlopen(self.web + path, timeout=timeout) as r:
            return json.loads(r.read())

    def crm(self, down: bool) -> None:
        crm_fault(self.info["netns"]["inet"], self.info["inet"]["crm"], down)

    def inject(self, o: Outage) -> None:
        {"power": lambda: self.gw("lab", "power", "cut"),
         "isp_down": lambda: self.gw("lab", "isp", "down"),
         "isp_blackhole": lambda: self.gw("lab", "isp", "blackhole"),
         "isp_loss": lambda: self.gw("lab", "isp", "loss", str(LOSS_PCT)),
         "lte_down": lambda: self.gw("lab", "lte", "down"),
         "crm": lambda: self.crm(True)}[o.kind]()

    def clear(self, o: Outage) -> None:
        {"power": lambda: self.gw("lab", "power", "restore"),
         "isp": lambda: self.gw("lab", "isp", "up"),
         "lte": lambda: self.gw("lab", "lte", "up"),
         "crm": lambda: self.crm(False)}[RESOURCE[o.kind]]()


def soak_config(text: str, s: Settings) -> str:
    """The lab's config with the soak's compressed holds and calendar (see the module's docstring)."""
    cfg = tomllib.loads(text)
    cfg["incidents"] = {**cfg.get("incidents", {}), "close_hold_s": 3.0}
    cfg["failover"] = {**cfg.get("failover", {}), "failback_hold_s": 3.0}
    cfg["power"] = {**cfg.get("power", {}), "debounce_s": 0.5, "restore_hold_s": 2.0, "restore_stagger_s": 0.5}
    for t in cfg["power"].get("tiers", []):
        if t.get("after_on_battery_s"):
            t["after_on_battery_s"] = 3.0  # tier 2 goes too during a longer cut
    cfg["modem"] = {**cfg.get("modem", {}), "poll_interval_s": 1.0, "dial_retry_s": 2.0, "recovery_after_s": 10.0,
                    "recovery_backoff_s": 5.0, "registration_timeout_s": 20.0}
    for svc in cfg.get("services", []):
        svc.update(interval_s=1.0, timeout_s=1.0)
    cfg["notify"] = {**cfg.get("notify", {}), "coalesce_s": 2.0}
    cfg["journal"] = {"retention_days": s.retention_s / 86400, "retention_interval_s": s.housekeeping_s,
                      "max_mb": 20.0, "summary_interval_s": 10.0}
    return "# The lab's config with the soak's compressed time (tests/bench/soak.py)\n" + dump_toml(cfg)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def dump_toml(d: dict[str, Any], prefix: str = "") -> str:
    """Enough TOML for a config: scalars and lists of scalars, tables, arrays of tables (nested)."""
    def is_tables(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)

    lines = [f"{k} = {_value(v)}" for k, v in d.items() if not isinstance(v, dict) and not is_tables(v)]
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in d.items():
        name = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out += f"\n[{name}]\n" + dump_toml(v, name)
        elif is_tables(v):
            for item in v:
                out += f"\n[[{name}]]\n" + dump_toml(item, name)
    return out


# -------------------------------------------------------------------------------------------- watching


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Watch:
    """What the soak sees while it runs: RSS samples, the event stream, the journal's size and oldest row."""

    lab: SoakLab
    journal: Path
    pid: int
    last_id: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    recent: dict[str, deque[float]] = field(default_factory=dict)
    storms: dict[str, int] = field(default_factory=dict)  # kind -> most rows within STORM_WINDOW_S
    rss: list[tuple[float, int]] = field(default_factory=list)  # (soak seconds, kB)
    journal_max_bytes: int = 0
    oldest_age_max_s: float = 0.0
    oldest_checks: int = 0
    rows_seen: int = 0
    died: str = ""

    def sample_rss(self, t: float) -> None:
        try:
            self.rss.append((t, rss_kb(self.pid)))
        except (OSError, RuntimeError) as exc:
            self.died = f"daemon pid {self.pid} gone: {exc}"

    def tail_events(self) -> None:
        while True:
            rows = self.lab.api(f"/api/v1/events?since={self.last_id}&limit=1000")
            for e in rows:
                self.last_id = max(self.last_id, int(e["id"]))
                self.rows_seen += 1
                kind = str(e["kind"])
                self.kinds[kind] += 1
                q = self.recent.setdefault(kind, deque())
                q.append(float(e["ts"]))
                while q and q[0] < float(e["ts"]) - STORM_WINDOW_S:
                    q.popleft()
                if len(q) > STORM_EVENTS:
                    self.storms[kind] = max(self.storms.get(kind, 0), len(q))
            if len(rows) < 1000:
                return

    def journal_stats(self, settle_s: float) -> dict[str, Any]:
        """Size on disk (db + WAL) and the oldest event's age; after the first retention run the age must stay
        within retention + one housekeeping interval (+ settle_s for a run that is busy)."""
        size = sum(p.stat().st_size for p in (self.journal, self.journal.with_name("journal.db-wal"))
                   if p.exists())
        self.journal_max_bytes = max(self.journal_max_bytes, size)
        con = sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True, timeout=10)
        try:
            oldest_id, oldest_ts, rows = con.execute("SELECT MIN(id), MIN(ts), COUNT(*) FROM events").fetchone()
        finally:
            con.close()
        age = time.time() - float(oldest_ts) if oldest_ts is not None else 0.0
        return {"bytes": size, "rows": int(rows), "oldest_id": oldest_id, "oldest_age_s": age}


def wait_for(pred: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = pred()
        except (OSError, ValueError, KeyError, urllib.error.URLError):
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)  # poll interval


# ---------------------------------------------------------------------------------------------- the run


def run_soak(s: Settings, log: Any = print) -> dict[str, Any]:
    """Bring a lab up, soak it, check it, tear it down; returns the summary (figures + checks)."""
    if os.geteuid() != 0:
        raise SystemExit("the soak needs root (network namespaces, real peers)")
    schedule = plan(s)
    base = Path(tempfile.mkdtemp(prefix="gateway-soak-"))
    lab = SoakLab(base, f"sk{os.getpid() % 1000:03d}")
    t_lab = time.monotonic()
    try:
        lab.gw("lab", "up")
        cfg_path = Path(lab.status()["config"])
        cfg_path.write_text(soak_config(cfg_path.read_text(), s))
        lab.gw("check-config", str(cfg_path))
        lab.gw("lab", "daemon", "start")
        lab.info = lab.status()
        cfg = config_mod.load(lab.info["config"])
        if cfg.incidents.close_hold_s != 3.0:  # the lab rewrote its config (a port clash): not a soak any more
            raise RuntimeError("the lab's config lost the soak's settings")
        wait_for(lambda: lab.api("/api/v1/status")["uplinks"], 60, "the daemon's API")
        log(f"soak: lab {lab.prefix} up in {time.monotonic() - t_lab:.0f} s; {s.days} days x {s.day_s:g} s, "
            f"{len(schedule.outages)} outages planned (seed {s.seed}), retention {s.retention_sim_days:g} days "
            f"= {s.retention_s:g} s, housekeeping every {s.housekeeping_s:g} s")
        return _soak(lab, cfg, s, schedule, log)
    finally:
        lab.gw("lab", "down", check=False)
        shutil.rmtree(base, ignore_errors=True)


def _soak(lab: SoakLab, cfg: config_mod.Config, s: Settings, schedule: Plan, log: Any) -> dict[str, Any]:
    journal = Path(cfg.site.state_dir) / "journal.db"
    pid = int(lab.info["daemon"]["pid"])
    watch = Watch(lab, journal, pid)
    # outages the daemon saw before the soak began (the start-up transitions) are not the soak's
    watch.tail_events()
    baseline_incident = max((int(i["id"]) for i in lab.api("/api/v1/incidents?limit=1000")), default=0)
    wait_for(lambda: not lab.api("/api/v1/incidents?open=1"), 120, "the start-up incident to close")
    actions: list[tuple[float, int, str, Outage]] = []
    for o in schedule.outages:
        actions.append((o.at_s, 0, "start", o))
    actions.sort(key=lambda a: (a[0], a[1], a[3].n))
    day_stats: list[dict[str, Any]] = []
    total_s = s.days * s.day_s
    t0 = time.monotonic()
    next_rss = next_tail = 0.0
    next_day = s.day_s
    injected: Counter[str] = Counter()
    active: set[str] = set()  # resources with a fault in place
    retention_ran_at: float | None = None
    first_oldest = watch.journal_stats(0)["oldest_id"]
    bound_s = s.retention_s + s.housekeeping_s + max(5.0, s.housekeeping_s)
    breaches: list[str] = []
    while True:
        t = time.monotonic() - t0
        while actions and actions[0][0] <= t:
            _, _, what, o = actions.pop(0)
            if what == "start" and RESOURCE[o.kind] in active:  # the last one there ran late: wait for its end
                actions.append((t + 0.5, 0, "start", o))
                actions.sort(key=lambda a: (a[0], a[1], a[3].n))
                continue
            if what == "start":
                active.add(RESOURCE[o.kind])
                lab.inject(o)
                o.started = time.time()
                injected[o.kind] += 1
                # the outage lasts its duration from when the fault is in place (the lab CLI can be slow here)
                actions.append((time.monotonic() - t0 + o.duration_s, 1, "end", o))
                actions.sort(key=lambda a: (a[0], a[1], a[3].n))
            else:
                lab.clear(o)
                o.ended = time.time()
                active.discard(RESOURCE[o.kind])
        if t >= next_rss:
            watch.sample_rss(t)
            next_rss = t + 1.0
            if watch.died:
                break
        if t >= next_tail:
            watch.tail_events()
            next_tail = t + 2.0
        if t >= next_day or (not actions and t >= total_s):
            st = watch.journal_stats(0)
            st["day"] = len(day_stats) + 1
            st["rss_kb"] = watch.rss[-1][1] if watch.rss else None
            day_stats.append(st)
            if retention_ran_at is None and st["oldest_id"] != first_oldest:
                retention_ran_at = t
            if retention_ran_at is not None:
                watch.oldest_checks += 1
                watch.oldest_age_max_s = max(watch.oldest_age_max_s, st["oldest_age_s"])
                if st["oldest_age_s"] > bound_s:
                    breaches.append(f"day {st['day']}: oldest event {st['oldest_age_s']:.0f} s old > {bound_s:.0f} s")
            if st["bytes"] > cfg.journal.max_mb * 1024 * 1024:
                breaches.append(f"day {st['day']}: journal {st['bytes'] / 1e6:.2f} MB > max_mb {cfg.journal.max_mb}")
            log(f"  day {st['day']:>3}: {len([o for o in schedule.outages if o.started])} outages so far, "
                f"events {st['rows']} (oldest #{st['oldest_id']}, {st['oldest_age_s']:.0f} s old), "
                f"journal {st['bytes'] / 1e6:.2f} MB, RSS {(st['rss_kb'] or 0) / 1024:.1f} MB")
            next_day += s.day_s
            if not actions and t >= total_s:
                break
        wake = min([next_rss, next_tail, next_day] + ([actions[0][0]] if actions else []))
        time.sleep(max(0.0, min(0.5, wake - (time.monotonic() - t0))))  # the soak's clock: wait for the next due thing

    # every fault is cleared (actions ran to the end); let the last incident close and its report be written
    settle_s = 120.0
    alive = not watch.died
    if alive:
        try:
            wait_for(lambda: not lab.api("/api/v1/incidents?open=1"), settle_s, "the last incident to close")
        except TimeoutError as exc:
            log(f"soak: {exc}")
        watch.tail_events()
    return _check(lab, s, schedule, watch, day_stats, baseline_incident, injected, breaches, retention_ran_at,
                  bound_s, cfg, alive)


def match_incident(incidents: list[dict[str, Any]], causes: tuple[str, ...], start: float, end: float) -> int | None:
    """The outage incident in which one of ``causes`` was in force during [start, end] (its condition spans)."""
    for inc in sorted(incidents, key=lambda i: i["opened_at"]):
        if inc.get("kind") != "outage":
            continue
        data = inc.get("data") or {}
        labels, spans = data.get("labels") or {}, data.get("spans") or {}
        for key, label in labels.items():
            if label not in causes:
                continue
            for s_start, s_end in spans.get(key, []):
                if s_start <= end and (s_end is None or s_end >= start):
                    return int(inc["id"])
    return None


def _check(lab: SoakLab, s: Settings, schedule: Plan, watch: Watch, day_stats: list[dict[str, Any]],
           baseline_incident: int, injected: Counter[str], breaches: list[str], retention_ran_at: float | None,
           bound_s: float, cfg: config_mod.Config, alive: bool) -> dict[str, Any]:
    failures: list[str] = []
    if not alive:
        failures.append(watch.died)
        incidents: list[dict[str, Any]] = []
    else:
        incidents = [i for i in lab.api("/api/v1/incidents?limit=1000") if int(i["id"]) > baseline_incident]
    by_id = {int(i["id"]): i for i in incidents}
    slack_s = 5.0  # the lab CLI's own latency around the recorded times
    unmatched: list[str] = []
    for o in schedule.outages:
        if o.started is None or o.ended is None:
            unmatched.append(f"#{o.n} {o.kind}: never ran")
            continue
        o.incident = match_incident(incidents, EXPECTED[o.kind], o.started - slack_s, o.ended + slack_s)
        if o.incident is None:
            unmatched.append(f"#{o.n} {o.kind} day {schedule.day_of[o.n] + 1} at {o.at_s:.0f} s "
                             f"for {o.duration_s:.1f} s: no incident names {' or '.join(EXPECTED[o.kind])}")
    if unmatched:
        failures.append(f"{len(unmatched)} outages without an incident: " + "; ".join(unmatched[:10]))
    reports = 0
    missing_report: list[int] = []
    still_open: list[int] = []
    for iid, inc in sorted(by_id.items()):
        if inc["closed_at"] is None:
            still_open.append(iid)
            continue
        try:
            rep = lab.api(f"/api/v1/incidents/{iid}/report?format=json")
            reports += 1 if rep else 0
            if not rep:
                missing_report.append(iid)
        except urllib.error.HTTPError:
            missing_report.append(iid)
    if still_open:
        failures.append(f"incidents still open after the soak: {still_open}")
    if missing_report:
        failures.append(f"closed incidents without a report: {missing_report}")
    matched = {o.incident for o in schedule.outages if o.incident is not None}
    unexplained = sorted(set(by_id) - matched)

    final = watch.journal_stats(0) if alive else (day_stats[-1] if day_stats else {"bytes": 0, "rows": 0,
                                                                                     "oldest_age_s": 0})
    if retention_ran_at is None:
        failures.append("retention never removed a row (oldest event unchanged)")
    failures += breaches
    removed = watch.rows_seen - int(final["rows"])

    # RSS: the median of the first simulated day after the warm-up against the median of the last day
    warm_end = s.warmup_days * s.day_s
    first = [kb for t, kb in watch.rss if warm_end <= t < warm_end + s.day_s]
    last = [kb for t, kb in watch.rss if t >= (s.days - 1) * s.day_s]
    rss_start = statistics.median(first) if first else 0.0
    rss_end = statistics.median(last) if last else 0.0
    growth = 100.0 * (rss_end - rss_start) / rss_start if rss_start else 0.0
    if rss_start and growth > RSS_GROWTH_GOAL_PCT:
        failures.append(f"RSS grew {growth:.1f} % ({rss_start / 1024:.1f} -> {rss_end / 1024:.1f} MB), goal <= 5 %")
    if watch.storms:
        failures.append("event storms: " + ", ".join(f"{k} x{n} in {STORM_WINDOW_S:g} s"
                                                      for k, n in sorted(watch.storms.items())))
    closed_n = sum(1 for i in incidents if i["closed_at"] is not None)
    return {
        "settings": {"days": s.days, "day_s": s.day_s, "seed": s.seed, "retention_sim_days": s.retention_sim_days,
                     "retention_days": cfg.journal.retention_days, "retention_interval_s": s.housekeeping_s,
                     "max_mb": cfg.journal.max_mb, "warmup_days": s.warmup_days},
        "injected": dict(sorted(injected.items())),
        "outages": len(schedule.outages),
        "overlapping": sum(1 for a in schedule.outages for b in schedule.outages
                           if a.n < b.n and b.at_s < a.at_s + a.duration_s),
        "incidents_opened": len(incidents), "incidents_closed": closed_n, "reports": reports,
        "unexplained_incidents": unexplained,
        "journal_mb_end": round(int(final["bytes"]) / 1e6, 3), "journal_mb_max": round(watch.journal_max_bytes / 1e6, 3),
        "journal_rows_end": int(final["rows"]), "journal_rows_seen": watch.rows_seen, "journal_rows_removed": removed,
        "oldest_age_max_s": round(watch.oldest_age_max_s, 1), "oldest_bound_s": round(bound_s, 1),
        "rss_start_mb": round(rss_start / 1024, 2), "rss_end_mb": round(rss_end / 1024, 2),
        "rss_peak_mb": round(max((kb for _, kb in watch.rss), default=0) / 1024, 2),
        "rss_growth_pct": round(growth, 2),
        "storms": watch.storms, "event_kinds": dict(watch.kinds.most_common(12)),
        "failures": failures,
    }


def figures(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The summary as bench/results.json figures ({"value", "unit", "baseline"}), with goals for the table."""
    out: dict[str, dict[str, Any]] = {
        "soak_days": {"value": summary["settings"]["days"], "unit": "days", "baseline": None},
        "soak_outages": {"value": summary["outages"], "unit": "count", "baseline": None},
        "soak_incidents_opened": {"value": summary["incidents_opened"], "unit": "count", "baseline": None},
        "soak_incidents_closed": {"value": summary["incidents_closed"], "unit": "count", "baseline": None},
        "soak_reports": {"value": summary["reports"], "unit": "count", "baseline": None,
                         "goal": "= incidents closed"},
        "soak_journal_mb_max": {"value": summary["journal_mb_max"], "unit": "MB",
                                "baseline": summary["settings"]["max_mb"], "goal": "<= max_mb"},
        "soak_journal_rows_end": {"value": summary["journal_rows_end"], "unit": "rows", "baseline": None},
        "soak_journal_rows_removed": {"value": summary["journal_rows_removed"], "unit": "rows", "baseline": None,
                                      "goal": "> 0 (retention ran)"},
        "soak_oldest_event_age_max_s": {"value": summary["oldest_age_max_s"], "unit": "s",
                                        "baseline": summary["oldest_bound_s"], "goal": "<= retention + interval"},
        "soak_rss_start_mb": {"value": summary["rss_start_mb"], "unit": "MB", "baseline": None},
        "soak_rss_end_mb": {"value": summary["rss_end_mb"], "unit": "MB", "baseline": summary["rss_start_mb"]},
        "soak_rss_growth_pct": {"value": summary["rss_growth_pct"], "unit": "%", "baseline": None, "goal": "<= 5 %"},
        "soak_event_storms": {"value": len(summary["storms"]), "unit": "count", "baseline": None, "goal": "0"},
        "soak_failed_checks": {"value": len(summary["failures"]), "unit": "count", "baseline": None, "goal": "0"},
    }
    for kind, n in summary["injected"].items():
        out[f"soak_injected_{kind}"] = {"value": n, "unit": "count", "baseline": None}
    return out


def write_results(figs: dict[str, dict[str, Any]]) -> Path:
    """Put the soak_* figures in bench/results.json, keeping what `make bench` wrote there."""
    path = ROOT / "bench" / "results.json"
    path.parent.mkdir(exist_ok=True)
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data.pop("soak", None)  # the nested form of earlier runs: the contract is one flat {"name": figure} map
    data = {k: v for k, v in data.items() if not k.startswith("soak_")}
    data.update({k: {"value": v["value"], "unit": v["unit"], "baseline": v.get("baseline")} for k, v in figs.items()})
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def print_summary(summary: dict[str, Any], figs: dict[str, dict[str, Any]]) -> None:
    st = summary["settings"]
    print(f"\nsoak: {st['days']} simulated days x {st['day_s']:g} s (seed {st['seed']}), "
          f"{summary['outages']} outages ({summary['overlapping']} overlapping): "
          + ", ".join(f"{k} {n}" for k, n in summary["injected"].items()))
    print(f"incidents opened {summary['incidents_opened']}, closed {summary['incidents_closed']}, reports "
          f"{summary['reports']}; not caused by an injected outage: {summary['unexplained_incidents'] or 'none'}")
    print(f"journal: {summary['journal_mb_end']} MB at the end (max {summary['journal_mb_max']} MB, max_mb "
          f"{st['max_mb']}), {summary['journal_rows_end']} rows, {summary['journal_rows_removed']} removed by "
          f"retention; oldest event at most {summary['oldest_age_max_s']} s old (bound {summary['oldest_bound_s']} s)")
    print(f"RSS: {summary['rss_start_mb']} MB after warm-up, {summary['rss_end_mb']} MB at the end "
          f"({summary['rss_growth_pct']:+.2f} %, goal <= 5 %), peak {summary['rss_peak_mb']} MB")
    print(f"event storms (> {STORM_EVENTS} of a kind in {STORM_WINDOW_S:g} s): {summary['storms'] or 'none'}")
    print("busiest event kinds: " + ", ".join(f"{k} {n}" for k, n in summary["event_kinds"].items()))
    print()
    print(f"{'figure':<32} {'value':>10} {'unit':<6} {'baseline':>9}  goal")
    for k, v in figs.items():
        base = v.get("baseline")
        print(f"{k:<32} {v['value']:>10.4g} {v['unit']:<6} {'-' if base is None else f'{base:g}':>9}  "
              f"{v.get('goal', '')}")
    if summary["failures"]:
        print("\nFAILED:")
        for f in summary["failures"]:
            print(f"  - {f}")
    else:
        print("\nall checks passed")


def main() -> int:
    s = Settings.from_env()
    started = time.monotonic()
    summary = run_soak(s, log=lambda m: print(m, flush=True))
    figs = figures(summary)
    print_summary(summary, figs)
    path = write_results(figs)
    print(f"written to {path.relative_to(ROOT)} as soak_* entries ({time.monotonic() - started:.0f} s in all)")
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
