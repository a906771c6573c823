"""Every real UPS dump in ../shared/nut-ddl is read and mapped to a power state without error."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core import power as core
from tests.power.peers import DDL

DUMPS = sorted(DDL.glob("*/*.dev")) + sorted(DDL.glob("*/*.nds"))
POLICY = core.Policy(loads=(core.LoadSpec("ap", 0), core.LoadSpec("cam", 1)),
                     tiers=(core.TierRule(1, after_on_battery_s=0.0),), debounce_s=0.0)


def test_the_library_is_there() -> None:
    if not DDL.is_dir():
        pytest.skip(f"{DDL} not present")
    assert len(DUMPS) >= 700


def _map(path: Path) -> tuple[core.UpsReading, str]:
    values = core.parse_dump(path.read_text(encoding="utf-8", errors="replace"))
    reading = core.reading_from_vars(values)
    s = core.initial(POLICY, 0.0)
    s, _ = core.step(s, reading, 1.0)
    s, _ = core.step(s, reading, 2.0)
    return reading, s.state


def test_every_dump_maps_to_a_power_state() -> None:
    if not DUMPS:
        pytest.skip("no dumps")
    states: dict[str, int] = {}
    seen_flags: set[str] = set()
    for path in DUMPS:
        reading, state = _map(path)
        assert state in core.STATES, path
        assert "ap" not in {n for n, (x, _, _) in core.desired(core.initial(POLICY, 0)).items() if x == "off"}
        if reading.charge_pct is not None:
            assert 0 <= reading.charge_pct <= 100, path
        if reading.runtime_s is not None:
            assert reading.runtime_s >= 0, path
        states[state] = states.get(state, 0) + 1
        seen_flags |= set(reading.status)
        # the state follows the flags: on battery only with OB and without OL
        supply = core.supply_of(reading.status)
        if state in ("on_battery", "low_battery"):
            assert supply == "battery", path
        if supply == "mains":
            assert state == "online", path
    assert states.get("online", 0) > 600
    assert states.get("on_battery", 0) + states.get("low_battery", 0) + states.get("shutting_down", 0) > 10
    assert {"OL", "OB", "LB", "CHRG", "DISCHRG", "BYPASS", "TRIM", "BOOST", "OFF", "OVER", "RB", "FSD",
            "ALARM", "CAL", "HB"} <= seen_flags


def test_bogus_values_of_real_units_are_not_measurements() -> None:
    r = core.reading_from_vars({"battery.charge": "255", "battery.runtime": "65535", "ups.load": "2e80",
                                "input.voltage": "-6437.0", "ups.status": "OL CHRG"})
    assert (r.charge_pct, r.runtime_s, r.load_pct, r.input_voltage) == (None, None, None, None)
    r = core.reading_from_vars({"battery.charge": "100", "battery.runtime": "0", "ups.status": "OL"})
    assert r.runtime_s is None  # "0 s at full charge" means "not measured"
    r = core.reading_from_vars({"battery.charge": "5", "battery.runtime": "0", "ups.status": "OB LB"})
    assert r.runtime_s == 0.0


def test_dump_comments_and_odd_lines() -> None:
    text = "# c\nups.status: OL OB\t#BAD: actually online\nbattery.charge: 40\t#BAD\ndevice.serial:\n\n" \
           "ups.debug.V: 31 30 0d '10.'\n"
    v = core.parse_dump(text)
    assert v["ups.status"] == "OL OB" and v["battery.charge"] == "40" and v["device.serial"] == ""
    assert core.supply_of(core.parse_status(v["ups.status"])) == "mains"
