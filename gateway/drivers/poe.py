"""PoE ports over SNMP (asyncio), with the switch's MIB as data from ``hw/switches/*.toml``.

``await switch.set_port(port, on)`` sets the port's admin state, then reads it back and returns what the
switch really holds; ``await switch.get_port(port)`` reads it.  Every failure is translated, once: a
timeout is :class:`~gateway.core.errors.DeviceUnavailable`; a refused community or user, a
``noSuchObject``/``noSuchInstance``, a read-only row or a value that did not stick is
:class:`~gateway.core.errors.DeviceRefused`; a reply that cannot be understood is
:class:`~gateway.core.errors.ParseError`.

SNMP goes through the small clients on pysnmp's protocol API, :mod:`gateway.drivers.snmp_v2c` and
:mod:`gateway.drivers.snmp_v3` (USM), never pysnmp's hlapi engine (~500 modules with its MIBs, ~15 MB);
the v3 one, with its cryptography, is imported only when a v3 switch is configured.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from gateway.core.errors import DeviceRefused, DeviceUnavailable, ParseError
from gateway.drivers.snmp_v2c import V2cClient


@dataclass(frozen=True)
class SwitchProfile:
    """How one family of switches says "PoE on/off" (and, where it can, the power drawn)."""

    key: str
    name: str
    admin_oid: str  # template with {group} and {port}
    on: int
    off: int
    status_oid: str | None = None
    delivering: tuple[int, ...] = ()
    power_oid: str | None = None
    power_scale_w: float = 1.0
    pse_power_oid: str | None = None
    pse_power_scale_w: float = 1.0

    def oid(self, template: str, port: int, group: int) -> str:
        return template.format(port=port, group=group)


def parse_profile(text: str, key: str, where: str = "<profile>") -> SwitchProfile:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParseError(f"{where}: {exc}") from None
    problems = []
    for k in ("admin_oid", "on", "off"):
        if k not in raw:
            problems.append(f"missing {k}")
    known = {f for f in SwitchProfile.__dataclass_fields__} - {"key"}
    problems += [f"unknown key {k}" for k in raw if k not in known]
    for k in ("admin_oid", "status_oid", "power_oid", "pse_power_oid"):
        v = raw.get(k)
        if v is not None:
            probe = str(v).replace("{group}", "1").replace("{port}", "1")
            if not all(p.isdigit() for p in probe.split(".")) or "{port}" not in str(v) and k != "pse_power_oid":
                problems.append(f"{k} {v!r} is not a dotted OID with {{port}}")
    for k in ("on", "off"):
        if k in raw and (not isinstance(raw[k], int) or isinstance(raw[k], bool)):
            problems.append(f"{k} must be an integer")
    if "on" in raw and raw.get("on") == raw.get("off"):
        problems.append("on and off must differ")
    if problems:
        raise ParseError(f"{where}: " + "; ".join(problems))
    return SwitchProfile(key=key, name=str(raw.get("name", key)), admin_oid=raw["admin_oid"], on=raw["on"],
                         off=raw["off"], status_oid=raw.get("status_oid"),
                         delivering=tuple(raw.get("delivering", ())), power_oid=raw.get("power_oid"),
                         power_scale_w=float(raw.get("power_scale_w", 1.0)),
                         pse_power_oid=raw.get("pse_power_oid"),
                         pse_power_scale_w=float(raw.get("pse_power_scale_w", 1.0)))


def profiles() -> list[str]:
    return sorted(x.name.removesuffix(".toml") for x in resources.files("hw.switches").iterdir()
                  if x.name.endswith(".toml"))


def load_profile(name: str) -> SwitchProfile:
    """A profile by name (``rfc3621``, ``tplink``) from hw/switches, or a path to a .toml file."""
    if name.endswith(".toml") or "/" in name:
        p = Path(name)
        try:
            return parse_profile(p.read_text(encoding="utf-8"), p.stem, str(p))
        except OSError as exc:
            raise DeviceUnavailable(f"switch profile {p}: {exc.strerror}") from None
    res = resources.files("hw.switches").joinpath(f"{name}.toml")
    if not res.is_file():
        raise DeviceUnavailable(f"no switch profile {name!r} in hw/switches (have: {', '.join(profiles())})")
    return parse_profile(res.read_text(encoding="utf-8"), name, f"hw/switches/{name}.toml")


@dataclass(frozen=True)
class PortState:
    port: int
    on: bool
    delivering: bool | None = None  # the switch says a device draws power (None: profile cannot tell)
    power_w: float | None = None


class PoeSwitch:
    """One PoE switch.  ``version`` is ``"2c"`` (community) or ``"3"`` (USM user, auth and privacy)."""

    def __init__(self, name: str, host: str, profile: SwitchProfile, port: int = 161, version: str = "2c",
                 community: str = "private", read_community: str | None = None, user: str | None = None,
                 auth_key: str | None = None, auth_protocol: str = "sha", priv_key: str | None = None,
                 priv_protocol: str = "aes", timeout_s: float = 1.0, retries: int = 2, group: int = 1,
                 context: str = "") -> None:
        self.name, self.host, self.port, self.profile = name, host, port, profile
        self.context = context
        self.version, self.group = version, group
        self.timeout_s, self.retries = timeout_s, retries
        self._v2c: V2cClient | None = None
        self._v3: Any = None  # a gateway.drivers.snmp_v3.V3Client
        self._write_community, self._read_community = community, read_community or community
        if version == "3":
            from gateway.drivers.snmp_v3 import V3Client

            self._v3 = V3Client(host, port, user or "", auth_key, auth_protocol, priv_key, priv_protocol,
                                context, timeout_s, retries, where=self.where)
        else:
            self._v2c = V2cClient(host, port, timeout_s, retries, where=self.where)

    @classmethod
    def from_config(cls, sw: Any) -> PoeSwitch:
        """From a ``[[switches]]`` entry (gateway.config.Switch)."""
        return cls(sw.name, sw.host, load_profile(sw.profile), port=sw.port, version=sw.version,
                   community=sw.community, read_community=sw.read_community, user=sw.user,
                   auth_key=sw.auth_key, auth_protocol=sw.auth_protocol, priv_key=sw.priv_key,
                   priv_protocol=sw.priv_protocol, timeout_s=sw.timeout_s, retries=sw.retries,
                   group=sw.pse_group, context=getattr(sw, "context", ""))

    @property
    def where(self) -> str:
        return f"switch {self.name} ({self.host}:{self.port})"

    async def _get(self, what: str, *oids: str) -> list[tuple[str, Any]]:
        if self._v3 is not None:
            result: list[tuple[str, Any]] = await self._v3.get(list(oids), what)
            return result
        assert self._v2c is not None
        return await self._v2c.get(self._read_community, list(oids), what)

    @staticmethod
    def _int(value: Any, what: str) -> int:
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ParseError(f"{what}: not a number: {value!r}") from None

    async def get_port(self, port: int) -> PortState:
        p = self.profile
        oids = [p.oid(p.admin_oid, port, self.group)]
        if p.status_oid:
            oids.append(p.oid(p.status_oid, port, self.group))
        rows = await self._get(f"read port {port}", *oids)
        admin = self._int(rows[0][1], f"{self.where}: port {port}")
        if admin not in (p.on, p.off):
            raise ParseError(f"{self.where}: port {port}: admin value {admin} is neither on ({p.on}) nor off ({p.off})")
        delivering = None
        if p.status_oid and len(rows) > 1:
            delivering = self._int(rows[1][1], f"{self.where}: port {port} status") in p.delivering
        power = None
        if p.power_oid:
            try:
                (_, v), = await self._get(f"power of port {port}", p.oid(p.power_oid, port, self.group))
                power = round(self._int(v, "power") * p.power_scale_w, 2)
            except (DeviceRefused, ParseError):
                power = None  # the port's power is a nicety; its absence is not a failure
        return PortState(port, admin == p.on, delivering, power)

    async def set_port(self, port: int, on: bool) -> PortState:
        """Set the port's PoE admin state, then read it back; a value that did not stick is refused."""
        p = self.profile
        oid = p.oid(p.admin_oid, port, self.group)
        what = f"set port {port} {'on' if on else 'off'}"
        value = p.on if on else p.off
        if self._v3 is not None:
            await self._v3.set([(oid, value)], what)
        elif self._v2c is not None:
            await self._v2c.set(self._write_community, [(oid, value)], what)
        state = await self.get_port(port)
        if state.on != on:
            raise DeviceRefused(f"{self.where}: port {port} reads back {'on' if state.on else 'off'} "
                                f"after setting it {'on' if on else 'off'}")
        return state

    async def pse_power_w(self) -> float | None:
        p = self.profile
        if not p.pse_power_oid:
            return None
        (_, v), = await self._get("PSE power", p.pse_power_oid.format(group=self.group, port=0))
        return round(self._int(v, "PSE power") * p.pse_power_scale_w, 1)

    async def close(self) -> None:
        for client in (self._v2c, self._v3):
            if client is not None:
                await client.close()
