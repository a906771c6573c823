"""The whole lab office with the daemon: a normal start opens no incident (LTE not dialled yet is standby),
a real LTE failure while wired carries the traffic is journaled as a low-severity incident, every manual
override change is one journal row and one fact (the panel follows a CLI override), and the snapshot's
"since" times are whole seconds that do not move between polls."""

from __future__ import annotations

from typing import Any

from tests.faults.conftest import Office, office

__all__ = ["office"]


def uplink(snap: dict[str, Any] | None, name: str) -> dict[str, Any]:
    assert snap is not None
    return next(u for u in snap["uplinks"] if u["name"] == name)


def test_normal_start_is_quiet_then_a_real_lte_failure_is_low(office: Office) -> None:
    # the modem dials after the daemon started: until then lte0 has no carrier (where "lte: down" came from)
    office.wait(lambda: (s := office.snapshot()) and s["modem"]["state"] == "connected"
                and uplink(s, "lte")["carrier"] and not uplink(s, "lte")["reason"].startswith("not dialled"),
                40, "the modem dialled, lte0 has carrier and the uplinks know")
    assert not [e["message"] for e in office.events("uplink.state") if e["message"].startswith("lte: down")]
    assert office.events("incident.") == [] and office.events("notice.outage") == []
    snap = office.snapshot()
    assert snap is not None and snap["incident"] is None and office.api("/api/v1/incidents") == []
    assert uplink(snap, "lte")["state"] == "standby" and uplink(snap, "wired")["active"]

    base = office.last_event_id()
    office.lab("lte", "down")
    office.wait(lambda: any(e["message"].startswith("lte: down") for e in office.events("uplink.state", base)),
                20, "lte: down journaled")
    opened = office.wait(lambda: office.events("incident.open", base), 10, "an incident for the lost backup")
    assert opened[0]["data"]["severity"] == "low" and opened[0]["data"]["causes"] == ["lte: down"]
    assert uplink(office.snapshot(), "wired")["active"]  # the office never left the wired line
    office.lab("lte", "up")  # (redials meanwhile; nothing below needs LTE)


def test_override_changes_are_one_row_and_one_fact_each(office: Office) -> None:
    office.wait(lambda: uplink(office.snapshot(), "wired")["state"] == "up", 20, "wired up")
    base = office.last_event_id()
    # held on wired while wired carries the traffic anyway: no switch, still a change everyone must see
    for _ in range(2):
        r = office.gw("failover", "wired")
        assert r.returncode == 0, r.stderr
    snap = office.wait(lambda: (s := office.snapshot()) and s["panel"]["override"] == "wired" and s, 10,
                       "the panel follows the CLI's override")
    assert snap["override"] == "wired" and uplink(snap, "wired")["active"]
    rows = office.events("uplink.override", base)
    assert [e["data"]["override"] for e in rows] == ["wired"]  # the repeat changed nothing: no second row
    assert office.events("uplink.switch", base) == []
    r = office.gw("failover", "auto")
    assert r.returncode == 0, r.stderr
    office.wait(lambda: office.snapshot()["panel"]["override"] is None, 10, "the panel back on auto")  # type: ignore[index]
    assert [e["data"]["override"] for e in office.events("uplink.override", base)] == ["wired", None]
    assert office.snapshot()["override"] is None  # type: ignore[index]


def test_since_is_whole_seconds_and_steady_between_polls(office: Office) -> None:
    first = office.snapshot()
    assert first is not None
    since = {u["name"]: u["since"] for u in first["uplinks"]}
    assert all(isinstance(v, int) for v in since.values()), since
    # the same values on later polls while nothing changes (a changed state may move one: then it moved for
    # a reason, with its state)
    for _ in range(5):
        again = office.snapshot()
        assert again is not None
        for u in again["uplinks"]:
            prev = next(p for p in first["uplinks"] if p["name"] == u["name"])
            if (u["state"], u["reason"]) == (prev["state"], prev["reason"]):
                assert u["since"] == since[u["name"]]
