"""Facts one area publishes and others consume (through the runtime's bus).

They are plain frozen dataclasses so the pure state machines of other areas can take them as events:
the panel reads power and uplink facts, incidents read all of them, notifications read incidents.
Add new facts at the end; do not change the fields of existing ones without updating every consumer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.core.base import Event


@dataclass(frozen=True)
class PowerStatus(Event):
    """The power area's state changed (or a periodic refresh)."""

    state: str  # online | on_battery | low_battery | comm_lost | shutting_down
    charge_pct: float | None = None
    runtime_s: float | None = None
    load_pct: float | None = None
    on_battery_since: float | None = None  # wall clock
    shed_tiers: tuple[int, ...] = ()
    shed_watts: float = 0.0
    minutes_gained: float | None = None


@dataclass(frozen=True)
class LoadChanged(Event):
    name: str
    state: str  # on | off
    reason: str
    tier: int


@dataclass(frozen=True)
class UplinkStatus(Event):
    name: str
    role: str  # primary | backup
    state: str  # up | degraded | down | standby (as shown: a healthy uplink carrying no traffic is standby)
    active: bool
    reason: str = ""
    rtt_ms: float | None = None
    loss_pct: float | None = None
    health: str = ""  # the probes' own verdict: up | degraded | down | standby | unknown ("": as state)


@dataclass(frozen=True)
class ActiveUplinkChanged(Event):
    name: str | None  # None: no uplink works (the last route is kept)
    previous: str | None
    reason: str
    override: str | None = None  # lte | wired | None (auto)


@dataclass(frozen=True)
class OverrideRequest(Event):
    target: str  # lte | wired | auto
    who: str


@dataclass(frozen=True)
class ModemStatus(Event):
    state: str  # absent | sim_missing | pin_needed | searching | registered | connected | failed
    registration: str | None = None
    operator: str | None = None
    technology: str | None = None
    rssi_dbm: float | None = None
    recovery_rung: str | None = None
    data_wanted: bool = True  # False: cold standby and LTE not active, so no data call is made on purpose


@dataclass(frozen=True)
class ServiceReachability(Event):
    name: str
    reachable: bool
    latency_ms: float | None = None
    via: str | None = None  # the uplink it was checked through
    error: str = ""


@dataclass(frozen=True)
class AlertAcknowledged(Event):
    who: str
    incident_id: int | None = None
    source: str = "api"  # api | page | button | link


@dataclass(frozen=True)
class IncidentStatus(Event):
    incident_id: int
    open: bool
    severity: str  # low | high | critical
    causes: tuple[str, ...] = ()
    acked: bool = False
    kind: str = "outage"  # outage | drill


@dataclass(frozen=True)
class ShutdownRequested(Event):
    reason: str


@dataclass(frozen=True)
class MaintenanceStatus(Event):
    active: tuple[str, ...] = ()  # names of windows in force
    services: tuple[str, ...] = ()  # affected services
    switch_to_lte: bool = False
    hold_failback: bool = False


@dataclass(frozen=True)
class Notice(Event):
    title: str
    body: str
    kind: str = "info"  # info | planned | outage
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModemPowerCycle(Event):
    """The modem area asks the board to cut the modem's USB power for ``off_s`` and restore it (last rung
    of the modem's recovery ladder).  The panel service owns the GPIO line (hw/boards) and acts on it."""

    reason: str
    off_s: float = 5.0


@dataclass(frozen=True)
class OverrideChanged(Event):
    """The manual failover override changed (the button, ``gateway failover``, the HTTP action): once per
    change, also when traffic does not move (e.g. held on wired while wired carries it anyway)."""

    override: str | None  # lte | wired | None (auto)
    uplink: str | None  # the uplink traffic is held on (None: auto)
    previous: str | None  # lte | wired | None
    who: str = ""
