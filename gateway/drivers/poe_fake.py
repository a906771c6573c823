"""A PoE switch in memory with the interface of :class:`gateway.drivers.poe.PoeSwitch`, for unit tests.

``fail("timeout" | "refused" | "nosuch" | None)`` makes every call fail that way; ``drop_sets`` makes a
SET look accepted while the port keeps its old state (a lost write); ``reboot()`` keeps admin state, as
real switches do.
"""

from __future__ import annotations

from gateway.core.errors import DeviceRefused, DeviceUnavailable
from gateway.drivers.poe import PortState


class FakePoeSwitch:
    def __init__(self, name: str = "core", ports: dict[int, bool] | None = None,
                 power_w: dict[int, float] | None = None) -> None:
        self.name = name
        self.host, self.port = "fake", 161
        self.ports: dict[int, bool] = dict(ports or {})
        self.power_w = dict(power_w or {})
        self.error: str | None = None
        self.drop_sets = False
        self.sets: list[tuple[int, bool]] = []

    @property
    def where(self) -> str:
        return f"switch {self.name} (fake)"

    def fail(self, kind: str | None) -> None:
        self.error = kind

    def _raise(self, what: str) -> None:
        if self.error == "timeout":
            raise DeviceUnavailable(f"{self.where}: {what}: no answer")
        if self.error == "refused":
            raise DeviceRefused(f"{self.where}: {what}: authorizationError")
        if self.error == "nosuch":
            raise DeviceRefused(f"{self.where}: {what}: noSuchObject")

    async def get_port(self, port: int) -> PortState:
        self._raise(f"read port {port}")
        if port not in self.ports:
            raise DeviceRefused(f"{self.where}: port {port}: noSuchInstance")
        on = self.ports[port]
        return PortState(port, on, on and port in self.power_w, self.power_w.get(port) if on else 0.0)

    async def set_port(self, port: int, on: bool) -> PortState:
        self._raise(f"set port {port}")
        if port not in self.ports:
            raise DeviceRefused(f"{self.where}: port {port}: noSuchInstance")
        self.sets.append((port, on))
        if not self.drop_sets:
            self.ports[port] = on
        state = await self.get_port(port)
        if state.on != on:
            raise DeviceRefused(f"{self.where}: port {port} reads back {'on' if state.on else 'off'}")
        return state

    async def pse_power_w(self) -> float | None:
        self._raise("PSE power")
        return round(sum(w for p, w in self.power_w.items() if self.ports.get(p)), 1)

    async def close(self) -> None:
        pass
