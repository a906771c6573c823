"""The uplink core's DNS verdicts, pure: failing resolvers degrade a working uplink, never take it down,
never move traffic; one journal event per transition."""

from __future__ import annotations

from gateway.core import uplink as core
from gateway.core.base import JournalEvent
from tests.uplinks.test_core import started


def states(effects: list[object], name: str) -> list[str]:
    return [e.data["to"] for e in effects if isinstance(e, JournalEvent) and e.kind == "uplink.state"
            and e.data["uplink"] == name]


def test_failing_dns_degrades_after_a_few_rounds_and_recovers_on_one_answer() -> None:
    s = started()
    s.feed(core.DnsCheck("wired", False, "203.0.113.53: timeout"))
    assert s.health("wired") == "up"  # one lost query is no verdict
    for _ in range(5):
        s.feed(core.DnsCheck("wired", False, "203.0.113.53: timeout"))
        s.rounds(2)  # ICMP keeps answering all along
    u = s.state.uplink("wired")
    assert u is not None and u.health == "degraded" and "DNS not answering (203.0.113.53: timeout)" == u.reason
    assert states(s.effects, "wired") == ["degraded"]  # said once, not once per failed round
    assert s.switches() == [] and s.state.active == "wired"
    s.feed(core.DnsCheck("wired", True))
    s.rounds(2)
    assert s.health("wired") == "up" and states(s.effects, "wired") == ["degraded", "up"]
    assert s.switches() == []


def test_dns_failures_of_a_dead_uplink_are_forgotten_when_it_comes_back() -> None:
    s = started()
    for _ in range(3):
        s.feed(core.DnsCheck("lte", False, "timeout"))
    assert s.health("lte") == "degraded"
    s.feed(core.Carrier("lte", False))
    assert s.health("lte") == "down"
    s.feed(core.Carrier("lte", True))
    s.rounds(8)
    assert s.health("lte") == "up"  # not degraded by the failures from before it went down


def test_dns_check_for_an_unknown_uplink_changes_nothing() -> None:
    s = started()
    before = s.state
    s.feed(core.DnsCheck("nope", False, "timeout"))
    assert s.state == before and s.effects == []
