"""A modem without hardware, with the same interface as :class:`gateway.drivers.modem.ModemDriver`.

Tests set ``reading`` (what the next poll sees) and read ``calls`` (what the service asked for).  Dialling
a registered fake brings its data call up, a radio reset drops it, like the real thing.
"""

from __future__ import annotations

from dataclasses import replace

from gateway.core.errors import DeviceRefused
from gateway.core.modem import Reading

HEALTHY = Reading(present=True, responsive=True, sim="ready", registration="home", operator="Fake Mobile",
                  technology="LTE", rssi_dbm=-75.0, rsrp_dbm=-100.0, rsrq_db=-9.0, sinr_db=12.0,
                  data_connected=False, iccid="8949000000000000001")


class FakeModemDriver:
    def __init__(self, reading: Reading = HEALTHY, dial_works: bool = True) -> None:
        self.reading = reading
        self.dial_works = dial_works
        self.calls: list[str] = []
        self.closed = False

    async def read(self) -> Reading:
        self.calls.append("read")
        return self.reading

    async def dial(self, apn: str) -> None:
        self.calls.append(f"dial {apn}")
        if not (self.dial_works and self.reading.responsive and self.reading.registration in ("home", "roaming")):
            raise DeviceRefused("AT+QNETDEVCTL=1,1,1: ERROR")
        self.reading = replace(self.reading, data_connected=True)

    async def hangup(self) -> None:
        self.calls.append("hangup")
        self.reading = replace(self.reading, data_connected=False)

    async def reset_radio(self) -> None:
        self.calls.append("reset_radio")
        self.reading = replace(self.reading, data_connected=False)

    async def reset(self) -> None:
        self.calls.append("reset")
        self.reading = replace(self.reading, data_connected=False)

    async def close(self) -> None:
        self.closed = True
