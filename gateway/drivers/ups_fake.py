"""A UPS in memory with the interface of :class:`gateway.drivers.ups.UpsDriver`, for unit tests.

Start it from a NUT dump (``FakeUps.from_dump(path)``) or from variables; change what it reports with
``set(...)``/``cut()``/``restore()``/``low()``, make it fail with ``fail(...)``.
"""

from __future__ import annotations

from pathlib import Path

from gateway.core.errors import DeviceRefused, DeviceUnavailable
from gateway.core.power import UpsReading, parse_dump, reading_from_vars
from gateway.drivers.ups import BATTERY_TESTS, UpsStale, pick_battery_test

ONLINE = {"ups.status": "OL", "battery.charge": "100", "battery.runtime": "1800", "ups.load": "40",
          "input.voltage": "230", "input.voltage.nominal": "230", "ups.realpower.nominal": "600"}


class FakeUpsDriver:
    def __init__(self, values: dict[str, str] | None = None, name: str = "ups") -> None:
        self.name = name
        self.host, self.port = "fake", 0
        self.values = dict(ONLINE if values is None else values)
        self.error: str | None = None  # "stale" | "down" | None
        self.fsd_set = False
        self.reads = 0
        self.closed = False
        # what upsd would list (LIST CMD); a battery test runs for ``test_reads`` reads: "TEST" in the status,
        # the charge falling ``test_drain_pct`` a read, then back to what it was before
        self.instcmds: dict[str, str] = {"test.battery.start": "Start a battery test",
                                         "test.battery.stop": "Stop a battery test"}
        self.commands_run: list[str] = []
        self.test_reads = 6
        self.test_drain_pct = 0.5
        self._test_left = 0

    @classmethod
    def from_dump(cls, path: str | Path, name: str = "ups") -> FakeUpsDriver:
        return cls(parse_dump(Path(path).read_text(encoding="utf-8", errors="replace")), name)

    @property
    def address(self) -> str:
        return f"{self.name}@fake"

    def set(self, **values: str) -> None:
        self.values.update({k.replace("_", "."): v for k, v in values.items()})

    def cut(self) -> None:
        self.values["ups.status"] = "OB DISCHRG"

    def restore(self) -> None:
        self.values["ups.status"] = "OL CHRG"

    def low(self) -> None:
        self.values.update({"ups.status": "OB DISCHRG LB", "battery.charge": "8", "battery.runtime": "60"})

    def fail(self, kind: str | None) -> None:
        self.error = kind

    async def read_vars(self) -> dict[str, str]:
        self.reads += 1
        if self.error == "stale":
            raise UpsStale(f"upsd {self.address}: ERR DATA-STALE")
        if self.error:
            raise DeviceUnavailable(f"upsd {self.address}: {self.error}")
        if self._test_left > 0:
            self._test_left -= 1
            charge = float(self.values.get("battery.charge", "100")) - self.test_drain_pct
            self.values["battery.charge"] = f"{charge:g}"
        values = dict(self.values)
        if self._test_left > 0:
            values["ups.status"] = values.get("ups.status", "OL") + " TEST"
        if self.fsd_set:
            values["ups.status"] = "FSD " + values.get("ups.status", "")
        return values

    async def read(self) -> UpsReading:
        return reading_from_vars(await self.read_vars())

    async def set_fsd(self) -> None:
        if self.error:
            raise DeviceUnavailable(f"upsd {self.address}: FSD not answered")
        self.fsd_set = True

    async def commands(self) -> dict[str, str]:
        if self.error:
            raise DeviceUnavailable(f"upsd {self.address}: {self.error}")
        return dict(self.instcmds)

    async def run_command(self, command: str) -> None:
        if self.error:
            raise DeviceUnavailable(f"upsd {self.address}: INSTCMD {command} not answered")
        if command not in self.instcmds:
            raise DeviceRefused(f"upsd {self.address}: INSTCMD {command}: ERR CMD-NOT-SUPPORTED")
        self.commands_run.append(command)
        if command in BATTERY_TESTS:
            self._test_left = self.test_reads
        elif command == "test.battery.stop":
            self._test_left = 0

    async def battery_test(self) -> dict[str, str]:
        command = pick_battery_test(await self.commands(), self.address)
        await self.run_command(command)
        return {"command": command, "message": f"{command} accepted by {self.address}"}

    async def close(self) -> None:
        self.closed = True
