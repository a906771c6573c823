"""Modem faults in a whole lab office: the modem unplugged, answering garbage, its SIM pulled, hung.

Each fault goes in through `gateway lab lte ...` (the pty emulator), and is judged through the daemon's
public faces only: /api/v1/status, its journal (events after a baseline id, of the kinds the fault causes)
and its pid.  For each: the daemon stays up, its state is right, one journal event per transition, and it
recovers by itself once the fault ends.  The lab config keeps the recovery ladder short (3 s of trouble,
then 1.5/3/6 s between rungs, trouble over after 2 s), so the hang's whole ladder plays out in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.lab import modem_emu
from tests.faults.conftest import Office, needs_root, still_the_same_daemon, transition_chain

pytestmark = needs_root


def modem(office: Office) -> dict[str, Any]:
    snap = office.snapshot()
    assert snap is not None
    out: dict[str, Any] = snap["modem"]
    return out


def healthy(office: Office) -> bool:
    m = modem(office)
    return bool(m["present"] and m["state"] == "connected" and m["recovery_rung"] is None and m["sim"] == "ready")


def settle(office: Office) -> tuple[int, int]:
    """Wait until the modem is connected with no recovery under way; return (baseline event id, daemon pid)."""
    def journal_agrees() -> bool:  # the snapshot can be a moment ahead of the journal
        last = office.events("modem.state")
        return bool(last) and last[-1]["data"]["to"] == "connected" and (
            office.events("modem.recovery")[-1:] == [] or
            office.events("modem.recovered")[-1:] != [] and
            office.events("modem.recovered")[-1]["id"] > office.events("modem.recovery")[-1]["id"])

    office.wait(lambda: healthy(office) and journal_agrees(), 60,
                "the modem connected, no recovery under way, the journal caught up")
    return office.last_event_id(), office.pid


def state_chain(office: Office, since: int) -> list[str]:
    """The modem's states journaled after ``since``, one event per transition."""
    return transition_chain(office.events("modem.state", since))


def emulator(office: Office) -> dict[str, Any]:
    return modem_emu.status(Path(office.info["lab_dir"]))


def lte_uplink(office: Office) -> dict[str, Any]:
    snap = office.snapshot()
    assert snap is not None
    return next(u for u in snap["uplinks"] if u["name"] == "lte")


def test_unplugged_modem_is_absent_and_is_reopened_when_plugged_back(office: Office) -> None:
    base, pid = settle(office)
    office.lab("lte", "unplug")
    office.wait(lambda: not modem(office)["present"] and modem(office)["state"] == "absent", 30,
                "the modem shown absent")
    assert modem(office)["error"], "the status says why the modem is absent"
    office.lab("lte", "plug")
    office.wait(lambda: healthy(office), 60, "the modem re-opened and connected again")
    chain = state_chain(office, base)
    assert chain[:2] == ["connected", "absent"] and chain[-1] == "connected", chain
    assert chain.count("absent") == 1, chain
    # and the LTE uplink behind it works again by itself (probed slowly while it stands by)
    office.wait(lambda: lte_uplink(office)["state"] in ("up", "standby") and lte_uplink(office)["carrier"], 60,
                "the LTE uplink working again")
    still_the_same_daemon(office, pid)


def test_modem_answering_garbage_is_unresponsive_and_recovers(office: Office) -> None:
    base, pid = settle(office)
    office.lab("lte", "garbage")
    office.wait(lambda: modem(office)["state"] == "unresponsive", 30, "the modem shown unresponsive")
    assert modem(office)["present"] is True  # the device is there; it just talks nonsense
    office.lab("lte", "up")
    office.wait(lambda: healthy(office), 60, "the modem answering again")
    chain = state_chain(office, base)
    assert chain[:2] == ["connected", "unresponsive"] and chain[-1] == "connected", chain
    assert chain.count("unresponsive") == 1, chain
    still_the_same_daemon(office, pid)


def test_sim_removed_is_sim_missing_without_a_recovery_ladder_and_back(office: Office) -> None:
    base, pid = settle(office)
    office.lab("lte", "no-sim")
    office.wait(lambda: modem(office)["state"] == "sim_missing" and modem(office)["sim"] == "missing", 30,
                "sim_missing in the status")
    missing_at = office.events("modem.state", base)[-1]["id"]
    # a missing SIM needs a person, not the ladder: let the daemon poll the SIM-less modem for longer than
    # recovery_after_s (3 s) — 16 more AT commands are 4+ polls of 3-4 commands, one a second
    seen = emulator(office)["commands_seen"]
    office.wait(lambda: emulator(office)["commands_seen"] >= seen + 16, 30, "the daemon polling the modem")
    assert modem(office)["state"] == "sim_missing" and modem(office)["trouble"] is None
    office.lab("lte", "sim")
    office.wait(lambda: healthy(office), 60, "the SIM back and the modem connected")
    assert [e["data"]["rung"] for e in office.events("modem.recovery", missing_at)] == []
    chain = state_chain(office, base)
    assert chain[:2] == ["connected", "sim_missing"] and chain[-1] == "connected", chain
    assert chain.count("sim_missing") == 1, chain
    still_the_same_daemon(office, pid)


def test_hung_modem_walks_the_whole_recovery_ladder_then_comes_back_when_unhung(office: Office) -> None:
    base, pid = settle(office)
    office.lab("lte", "hang")
    gave_up = office.wait(lambda: office.events("modem.gave_up", base), 120, "the ladder to give up")
    assert len(gave_up) == 1 and gave_up[0]["severity"] == "critical"
    rungs = office.events("modem.recovery", base)
    assert [e["data"]["rung"] for e in rungs] == ["redial", "radio_reset", "power_cycle"], \
        [e["message"] for e in rungs]
    assert all(e["data"]["trouble"] == "modem does not answer" for e in rungs)
    assert rungs[0]["id"] < rungs[1]["id"] < rungs[2]["id"] < gave_up[0]["id"]
    # the power cycle went through the board's GPIO line (the mock pin): off, then on again
    power = office.events("panel.modem_power", base)
    assert [e["data"].get("power") for e in power] == [False, True], [e["message"] for e in power]
    assert rungs[2]["id"] < power[0]["id"]
    m = modem(office)
    assert m["state"] == "failed" and m["recovery_rung"] == "gave_up"
    still_the_same_daemon(office, pid)
    office.lab("lte", "up")  # the module answers again
    office.wait(lambda: healthy(office), 60, "the modem connected again after the hang")
    recovered = office.events("modem.recovered", base)
    assert len(recovered) == 1 and recovered[0]["data"]["rung"] == "gave_up"
    assert len(office.events("modem.gave_up", base)) == 1  # said once, not once per poll
    chain = state_chain(office, base)
    assert chain[:2] == ["connected", "unresponsive"] and chain[-1] == "connected", chain
    still_the_same_daemon(office, pid)


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
