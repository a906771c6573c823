"""Loading and validating the TOML config; every problem names the file, line and key.

The schema is a tree of frozen dataclasses.  Field metadata carries the checks a type cannot say:
``min``/``max`` for numbers, ``choices`` for strings, ``doc`` for the example config.  ``load()`` returns a
:class:`Config` or raises :class:`ConfigError` with every problem found, as ``file:line: key: message``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.core.errors import ConfigError

DEFAULT_PATH = Path("/etc/office-gateway/gateway.toml")


def opt(default: Any = dataclasses.MISSING, *, min: float | None = None, max: float | None = None,
        choices: tuple[str, ...] | None = None, factory: Any = None) -> Any:
    meta = {"min": min, "max": max, "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------------------------- schema

@dataclass(frozen=True)
class Site:
    name: str
    timezone: str = "UTC"
    state_dir: str = "/var/lib/office-gateway"


@dataclass(frozen=True)
class Ups:
    name: str = "ups"
    host: str = "127.0.0.1"
    port: int = opt(3493, min=1, max=65535)
    username: str | None = None
    password: str | None = None
    poll_interval_s: float = opt(1.0, min=0.1, max=60)
    timeout_s: float = opt(2.0, min=0.1, max=30)
    stale_after_s: float = opt(5.0, min=1, max=300)
    # shutdown starts when runtime <= shutdown_duration_s + shutdown_reserve_s
    shutdown_reserve_s: float = opt(120.0, min=0, max=3600)
    shutdown_duration_s: float = opt(90.0, min=0, max=3600)
    shutdown_mode: str = opt("fsd", choices=("fsd", "notify", "none"))
    notify_hosts: list[str] = opt(factory=list)


@dataclass(frozen=True)
class Switch:
    name: str
    host: str
    port: int = opt(161, min=1, max=65535)
    profile: str = "rfc3621"
    version: str = opt("2c", choices=("2c", "3"))
    community: str = "private"
    read_community: str | None = None
    user: str | None = None
    auth_key: str | None = None
    auth_protocol: str = opt("sha", choices=("md5", "sha", "sha224", "sha256", "sha384", "sha512"))
    priv_key: str | None = None
    priv_protocol: str = opt("aes", choices=("des", "aes", "aes192", "aes256"))
    context: str = ""  # SNMP v3 context name (most switches: empty)
    timeout_s: float = opt(1.0, min=0.05, max=30)
    retries: int = opt(2, min=0, max=10)
    pse_group: int = opt(1, min=1, max=64)


@dataclass(frozen=True)
class Load:
    name: str
    switch: str
    port: int = opt(min=1, max=4096)
    tier: int = opt(min=0, max=9)
    description: str = ""
    watts: float | None = opt(None, min=0, max=1000)


@dataclass(frozen=True)
class TierTrigger:
    tier: int = opt(min=1, max=9)
    after_on_battery_s: float | None = opt(None, min=0, max=86400)
    runtime_below_s: float | None = opt(None, min=0, max=86400)
    charge_below_pct: float | None = opt(None, min=0, max=100)


def _default_tiers() -> list[TierTrigger]:
    return [TierTrigger(tier=1, after_on_battery_s=0.0),
            TierTrigger(tier=2, after_on_battery_s=300.0, runtime_below_s=900.0, charge_below_pct=60.0),
            TierTrigger(tier=3, runtime_below_s=600.0, charge_below_pct=40.0)]


@dataclass(frozen=True)
class Power:
    debounce_s: float = opt(2.0, min=0, max=120)
    low_battery_charge_pct: float = opt(30.0, min=0, max=100)
    low_battery_runtime_s: float = opt(300.0, min=0, max=86400)
    restore_hold_s: float = opt(60.0, min=0, max=86400)
    restore_stagger_s: float = opt(10.0, min=0, max=3600)
    reapply_interval_s: float = opt(30.0, min=1, max=3600)
    tiers: list[TierTrigger] = opt(factory=_default_tiers)


@dataclass(frozen=True)
class Uplink:
    name: str
    interface: str
    role: str = opt(choices=("primary", "backup"))
    gateway: str | None = None
    source: str | None = None
    table: int = opt(100, min=1, max=2**31 - 1)
    metric: int = opt(100, min=0, max=2**31 - 1)
    probe_targets: list[str] = opt(factory=list)
    probe_kind: str = opt("icmp", choices=("icmp", "tcp", "http", "dns"))
    probe_port: int = opt(443, min=1, max=65535)
    dns: list[str] = opt(factory=list)


@dataclass(frozen=True)
class Lte:
    data_budget_mb: float = opt(0.0, min=0, max=10_000_000)  # 0 = no budget
    billing_day: int = opt(1, min=1, max=28)
    warn_pct: list[float] = opt(factory=lambda: [50.0, 80.0, 95.0])
    at_cap: str = opt("alert", choices=("alert", "restrict"))
    restrict_rate_kbit: int = opt(512, min=8, max=10_000_000)
    priority_ports: list[int] = opt(factory=lambda: [5060, 5061])
    priority_hosts: list[str] = opt(factory=list)  # extra hosts/addresses/CIDRs prioritised on LTE (besides [[services]])


@dataclass(frozen=True)
class Failover:
    probe_interval_ms: int = opt(200, min=20, max=60_000)
    standby_probe_interval_ms: int = opt(2000, min=50, max=600_000)
    probe_timeout_ms: int = opt(600, min=20, max=30_000)
    window: int = opt(10, min=2, max=1000)
    quorum: int = opt(2, min=1, max=64)  # targets that must agree an uplink is down
    down_after: int = opt(6, min=1, max=100)  # consecutive lost probes per target (probed 4x faster after a loss)
    up_after: int = opt(5, min=1, max=1000)
    degraded_loss_pct: float = opt(20.0, min=0, max=100)
    down_loss_pct: float = opt(50.0, min=0, max=100)
    degraded_rtt_ms: float = opt(500.0, min=1, max=60_000)
    failback_hold_s: float = opt(60.0, min=0, max=86400)
    lte: Lte = opt(factory=Lte)


@dataclass(frozen=True)
class Modem:
    enabled: bool = True
    device: str = "/dev/gateway-modem"
    profile: str = "quectel-ec25"
    apn: str = "internet"
    pin: str | None = None
    baudrate: int = opt(115200, min=1200, max=4_000_000)
    interface: str = "wwan0"
    standby: str = opt("warm", choices=("warm", "cold"))
    command_timeout_s: float = opt(2.0, min=0.1, max=120)
    poll_interval_s: float = opt(10.0, min=1, max=3600)
    recovery_after_s: float = opt(30.0, min=0, max=86400)  # trouble this long starts the recovery ladder
    recovery_backoff_s: float = opt(60.0, min=0, max=86400)  # wait after a rung; doubles every rung
    registration_timeout_s: float = opt(180.0, min=0, max=86400)  # not registered this long is trouble
    dial_retry_s: float = opt(15.0, min=0, max=3600)
    giveup_retry_s: float = opt(3600.0, min=0, max=604800)  # after giving up, retry the ladder this often
    recovery_clear_s: float = opt(15.0, min=0, max=3600)  # trouble is over after this long without it
    power_off_s: float = opt(5.0, min=0.5, max=600)  # how long the USB power stays off on a power cycle


@dataclass(frozen=True)
class Panel:
    board: str = "rpi-gateway-hat"
    pin_factory: str = opt("auto", choices=("auto", "mock", "lgpio", "rpigpio", "native"))
    hold_s: float = opt(3.0, min=0.5, max=30)
    quiet_hours: str | None = None  # "22:00-07:00"
    quiet_min_severity: str = opt("critical", choices=("info", "warning", "high", "critical"))


@dataclass(frozen=True)
class Web:
    listen: str = "0.0.0.0:8080"
    admin_password_hash: str = ""
    read_only: str = opt("lan", choices=("lan", "login"))
    api_token_hash: str = ""
    session_minutes: int = opt(480, min=1, max=100_000)
    login_attempts_per_minute: int = opt(5, min=1, max=1000)


@dataclass(frozen=True)
class Service:
    name: str
    url: str | None = None
    address: str | None = None  # host:port, for a TCP check
    expect_status: int = opt(200, min=100, max=599)
    department: str = ""
    rto_s: float = opt(900.0, min=0, max=604800)
    rpo_s: float = opt(3600.0, min=0, max=604800)
    interval_s: float = opt(10.0, min=0.5, max=3600)
    timeout_s: float = opt(3.0, min=0.1, max=60)


@dataclass(frozen=True)
class NotifyTarget:
    name: str
    url: str  # an apprise URL: mailto://, tgram://, json://, ntfy://, ...


@dataclass(frozen=True)
class EscalationLevel:
    name: str
    targets: list[str]
    after_min: float = opt(0.0, min=0, max=100_000)
    hours: str | None = None  # "08:00-18:00"; None = always


@dataclass(frozen=True)
class Notify:
    targets: list[NotifyTarget] = opt(factory=list)
    escalation: list[EscalationLevel] = opt(factory=list)
    response_critical_min: float = opt(15.0, min=0, max=100_000)
    response_high_min: float = opt(30.0, min=0, max=100_000)
    retry_max_s: float = opt(900.0, min=1, max=86400)
    coalesce_s: float = opt(120.0, min=0, max=86400)
    staff: list[str] = opt(factory=list)  # target names that receive staff notices
    link_base_url: str | None = None  # e.g. http://gateway.office.lan:8080 — for acknowledge links in messages
    outage_update_min: int = opt(30, min=1, max=1440)  # "next update in N min" of outage notices


@dataclass(frozen=True)
class Maintenance:
    name: str
    kind: str = opt("window", choices=("window", "freeze"))
    start: str | None = None  # one-off: ISO datetime
    end: str | None = None
    recurrence: str | None = None  # "weekly tue,thu 19:30-21:00" or "monthly first sat 10:00-13:00"
    services: list[str] = opt(factory=list)
    switch_to_lte: bool = False
    description: str = ""


@dataclass(frozen=True)
class Incidents:
    close_hold_s: float = opt(180.0, min=0, max=86400)  # all normal this long closes an incident
    service_fail_after: int = opt(2, min=1, max=100)  # failed checks in a row before a business app is unreachable


@dataclass(frozen=True)
class Drills:
    interval_days: int = opt(91, min=1, max=3650)
    remind_days: int = opt(7, min=0, max=365)
    wan_minutes: float = opt(5.0, min=0.1, max=240)
    runtime_margin_pct: float = opt(20.0, min=0, max=100)


@dataclass(frozen=True)
class Journal:
    # age after which events and samples go; a float, so a compressed-time lab (the soak) can keep minutes
    retention_days: float = opt(400.0, min=0.0001, max=36500)
    max_mb: float = opt(200.0, min=0.1, max=100_000)
    retention_interval_s: float = opt(3600.0, min=1, max=86400)  # how often retention runs
    summary_interval_s: float = opt(300.0, min=10, max=86400)


@dataclass(frozen=True)
class Config:
    site: Site
    ups: Ups
    uplinks: list[Uplink]
    switches: list[Switch] = opt(factory=list)
    loads: list[Load] = opt(factory=list)
    power: Power = opt(factory=Power)
    failover: Failover = opt(factory=Failover)
    modem: Modem = opt(factory=Modem)
    panel: Panel = opt(factory=Panel)
    web: Web = opt(factory=Web)
    services: list[Service] = opt(factory=list)
    notify: Notify = opt(factory=Notify)
    maintenance: list[Maintenance] = opt(factory=list)
    drills: Drills = opt(factory=Drills)
    incidents: Incidents = opt(factory=Incidents)
    journal: Journal = opt(factory=Journal)
    path: str = ""  # where it was loaded from (not a TOML key)

    @property
    def state_dir(self) -> Path:
        return Path(self.site.state_dir)

    def uplink(self, role: str) -> Uplink | None:
        return next((u for u in self.uplinks if u.role == role), None)


_NOT_KEYS = {"path"}

# ------------------------------------------------------------------------------------- line locator

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=")


def _locate(text: str) -> dict[str, int]:
    """Map dotted key paths (``loads[2].port``) to 1-based line numbers, as written in the file."""
    where: dict[str, int] = {}
    counts: dict[str, int] = {}
    prefix = ""
    for n, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if m:
            name = ".".join(p.strip().strip("\"'") for p in m.group(2).split("."))
            if m.group(1) == "[[":
                # an array-of-tables element; nested arrays (notify.targets) index under their parent
                parent, _, leaf = name.rpartition(".")
                base = _resolve(parent, counts) if parent else ""
                key = f"{base}.{leaf}" if base else leaf
                idx = counts.get(key, -1) + 1
                counts[key] = idx
                prefix = f"{key}[{idx}]"
            else:
                parent, _, leaf = name.rpartition(".")
                base = _resolve(parent, counts) if parent else ""
                prefix = f"{base}.{leaf}" if base else leaf
            where.setdefault(prefix, n)
            continue
        m = _KEY.match(line)
        if m and not line.lstrip().startswith("#"):
            key = ".".join(p.strip().strip("\"'") for p in m.group(1).split("."))
            where.setdefault(f"{prefix}.{key}" if prefix else key, n)
    return where


def _resolve(name: str, counts: dict[str, int]) -> str:
    out = ""
    for part in name.split("."):
        out = f"{out}.{part}" if out else part
        if out in counts:
            out = f"{out}[{counts[out]}]"
    return out


def _line_of(where: dict[str, int], path: str) -> int:
    """The line of ``path`` or, failing that, of its nearest written parent (1 if none)."""
    p = path
    while p:
        if p in where:
            return where[p]
        p = re.sub(r"(\[\d+\]|\.[^.\[]+)$", "", p) if ("." in p or "[" in p) else ""
    return 1


# ------------------------------------------------------------------------------------------ convert

class _Problems:
    def __init__(self, filename: str, where: dict[str, int]) -> None:
        self.filename, self.where, self.items = filename, where, []  # type: list[tuple[int, str]]
        self.items: list[tuple[int, str]] = []

    def add(self, path: str, message: str, line: int | None = None) -> None:
        n = line if line is not None else _line_of(self.where, path)
        self.items.append((n, f"{self.filename}:{n}: {path or '<top>'}: {message}"))

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError([m for _, m in sorted(self.items, key=lambda t: t[0])])


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if dataclasses.is_dataclass(tp):
        return "table"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, path: str, meta: dict[str, Any], probs: _Problems) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(value, args[0], path, meta, probs)
    if origin is list:
        if not isinstance(value, list):
            probs.add(path, f"expected {_type_name(tp)}, got {type(value).__name__}")
            return None
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{path}[{i}]", meta, probs) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            probs.add(path, f"expected a table, got {type(value).__name__}")
            return None
        return _build(tp, value, path, probs)
    ok = (isinstance(value, bool) if tp is bool else
          isinstance(value, int) and not isinstance(value, bool) if tp is int else
          isinstance(value, (int, float)) and not isinstance(value, bool) if tp is float else
          isinstance(value, str) if tp is str else True)
    if not ok:
        probs.add(path, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
        return None
    if tp is float:
        value = float(value)
    lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    if lo is not None and value < lo or hi is not None and value > hi:
        probs.add(path, f"{value!r} is out of range ({lo}..{hi})")
    if choices is not None and value not in choices:
        probs.add(path, f"{value!r} is not one of {', '.join(choices)}")
    return value


def _build(cls: Any, raw: dict[str, Any], path: str, probs: _Problems) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in _NOT_KEYS}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        sub = f"{path}.{key}" if path else key
        if key not in fields:
            probs.add(sub, f"unknown key (known: {', '.join(sorted(fields))})")
            continue
        kwargs[key] = _convert(value, hints[key], sub, dict(fields[key].metadata), probs)
    for name, f in fields.items():
        if name in raw:
            continue
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            sub = f"{path}.{name}" if path else name
            what = "section" if dataclasses.is_dataclass(hints[name]) or typing.get_origin(hints[name]) is list \
                and not path else "key"
            probs.add(sub, f"missing required {what}", line=_line_of(probs.where, path) if path else 1)
    if any(v is None and not _optional(hints[k]) for k, v in kwargs.items()):
        return None
    try:
        return cls(**kwargs)
    except TypeError:
        return None


def _optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


# ------------------------------------------------------------------------------------ cross-checks

def _unique(items: list[Any], attr: str, path: str, probs: _Problems) -> None:
    seen: dict[Any, int] = {}
    for i, item in enumerate(items):
        v = getattr(item, attr)
        if v in seen:
            probs.add(f"{path}[{i}].{attr}", f"duplicate {attr} {v!r} (also {path}[{seen[v]}])")
        else:
            seen[v] = i


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def _check(cfg: Config, probs: _Problems) -> None:
    if not cfg.site.name.strip():
        probs.add("site.name", "must not be empty: it is shown on the page and in every message")
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(cfg.site.timezone)
    except (ValueError, OSError, KeyError):
        probs.add("site.timezone", f"{cfg.site.timezone!r} is not a time zone (e.g. Europe/Berlin, UTC)")
    if not cfg.site.state_dir.startswith("/"):
        probs.add("site.state_dir", f"{cfg.site.state_dir!r} is not an absolute path")
    for path, items in (("switches", cfg.switches), ("loads", cfg.loads), ("uplinks", cfg.uplinks),
                        ("services", cfg.services), ("notify.targets", cfg.notify.targets),
                        ("maintenance", cfg.maintenance)):
        for i, item in enumerate(items):
            if not str(getattr(item, "name", "x")).strip():
                probs.add(f"{path}[{i}].name", "must not be empty")
    _unique(cfg.switches, "name", "switches", probs)
    _unique(cfg.loads, "name", "loads", probs)
    _unique(cfg.uplinks, "name", "uplinks", probs)
    _unique(cfg.services, "name", "services", probs)
    _unique(cfg.notify.targets, "name", "notify.targets", probs)
    _unique(cfg.maintenance, "name", "maintenance", probs)
    switches = {s.name for s in cfg.switches}
    ports: dict[tuple[str, int], int] = {}
    for i, load in enumerate(cfg.loads):
        if load.switch not in switches:
            probs.add(f"loads[{i}].switch", f"no switch named {load.switch!r} (have: {', '.join(sorted(switches)) or 'none'})")
        key = (load.switch, load.port)
        if key in ports:
            probs.add(f"loads[{i}].port", f"port {load.port} on {load.switch!r} is already used by loads[{ports[key]}]")
        else:
            ports[key] = i
    for i, sw in enumerate(cfg.switches):
        if sw.version == "3" and not sw.user:
            probs.add(f"switches[{i}].user", "SNMP v3 needs a user")
    roles = [u.role for u in cfg.uplinks]
    if "primary" not in roles:
        probs.add("uplinks", "one uplink must have role = \"primary\"")
    for role in ("primary", "backup"):
        if roles.count(role) > 1:
            probs.add("uplinks", f"only one uplink may have role = {role!r}")
    _unique(cfg.uplinks, "table", "uplinks", probs)
    for i, up in enumerate(cfg.uplinks):
        for field_name in ("gateway", "source"):
            v = getattr(up, field_name)
            if v is not None and not _is_ip(v):
                probs.add(f"uplinks[{i}].{field_name}", f"{v!r} is not an IP address")
    if cfg.failover.quorum > max((len(u.probe_targets) for u in cfg.uplinks), default=0) and any(
            u.probe_targets for u in cfg.uplinks):
        probs.add("failover.quorum", f"quorum {cfg.failover.quorum} is larger than the number of probe targets")
    for i, t in enumerate(cfg.power.tiers):
        if t.after_on_battery_s is None and t.runtime_below_s is None and t.charge_below_pct is None:
            probs.add(f"power.tiers[{i}]", "a tier trigger needs after_on_battery_s, runtime_below_s or charge_below_pct")
    targets = {t.name for t in cfg.notify.targets}
    for name in cfg.notify.staff:
        if name not in targets:
            probs.add("notify.staff", f"no notify target named {name!r}")
    for i, lvl in enumerate(cfg.notify.escalation):
        if lvl.hours and not re.fullmatch(r"\d{1,2}:\d{2}-\d{1,2}:\d{2}", lvl.hours):
            probs.add(f"notify.escalation[{i}].hours", f"{lvl.hours!r} is not HH:MM-HH:MM")
        for name in lvl.targets:
            if name not in targets:
                probs.add(f"notify.escalation[{i}].targets", f"no notify target named {name!r}")
    for i, s in enumerate(cfg.services):
        if bool(s.url) == bool(s.address):
            probs.add(f"services[{i}]", "give exactly one of url or address")
        if s.address and not re.fullmatch(r"\[?[\w.:\-]+\]?:\d{1,5}", s.address):
            probs.add(f"services[{i}].address", f"{s.address!r} is not host:port")
    if cfg.panel.quiet_hours:
        from gateway.core.panel import parse_quiet_hours

        try:
            parse_quiet_hours(cfg.panel.quiet_hours)
        except ValueError as exc:
            probs.add("panel.quiet_hours", str(exc))
    svc = {s.name for s in cfg.services}
    from gateway.core.maintenance import RecurrenceError, parse_recurrence

    for i, m in enumerate(cfg.maintenance):
        if m.recurrence:
            try:
                parse_recurrence(m.recurrence)
            except RecurrenceError as exc:
                probs.add(f"maintenance[{i}].recurrence", str(exc))
        for key in ("start", "end"):
            v = getattr(m, key)
            if v:
                try:
                    datetime.fromisoformat(v)
                except ValueError:
                    probs.add(f"maintenance[{i}].{key}", f"{v!r} is not an ISO date-time (2026-12-01T19:30)")
        if bool(m.recurrence) == bool(m.start):
            probs.add(f"maintenance[{i}]", "give either recurrence or start/end")
        if m.start and not m.end:
            probs.add(f"maintenance[{i}].end", "a one-off window needs an end")
        for name in m.services:
            if name not in svc:
                probs.add(f"maintenance[{i}].services", f"no service named {name!r}")
    port = cfg.web.listen.rpartition(":")[2]
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        probs.add("web.listen", f"{cfg.web.listen!r} is not host:port")


# ------------------------------------------------------------------------------------------- public

def parse(text: str, filename: str = "<config>") -> Config:
    """Parse and validate config text; raise ConfigError listing every problem."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        # "(at end of document)" has no line: the last line of the file is where it went wrong
        line = int(m.group(1)) if m else max(1, len(text.rstrip("\n").splitlines()))
        raise ConfigError([f"{filename}:{line}: toml: {msg}"]) from None
    probs = _Problems(filename, _locate(text))
    cfg = _build(Config, raw, "", probs)
    probs.raise_if_any()
    assert cfg is not None
    _check(cfg, probs)
    probs.raise_if_any()
    return dataclasses.replace(cfg, path=filename)


def load(path: str | Path = DEFAULT_PATH) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{p}:1: <file>: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{p}:1: <file>: not UTF-8 text"]) from None
    return parse(text, str(p))
