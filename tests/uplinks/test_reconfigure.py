"""A config reload (SIGHUP) must not make the uplinks forget what they know: no re-journaled transitions."""

from __future__ import annotations

from gateway.core import uplink as core
from gateway.core.base import JournalEvent
from tests.uplinks.test_core import TARGETS, policy, started


def test_reload_with_the_same_uplinks_journals_nothing_and_keeps_the_route() -> None:
    s = started()
    s.rounds(LOST_ROUNDS, wired=False)  # wired down: traffic on lte
    assert s.state.active == "lte" and s.health("wired") == "down"
    s.effects.clear()
    s.state = core.reconfigure(s.state, policy(failback_hold_s=30.0), s.now)
    assert s.state.policy.failback_hold_s == 30.0
    s.rounds(3, wired=False)
    assert s.state.active == "lte" and s.health("wired") == "down" and s.health("lte") == "up"
    assert [e for e in s.effects if isinstance(e, (JournalEvent, core.SetActive))] == []


def test_a_changed_uplink_starts_unknown_and_an_unchanged_one_keeps_its_health() -> None:
    s = started()
    specs = (core.UplinkSpec("wired", "primary", TARGETS[:2]), core.UplinkSpec("lte", "backup", TARGETS))
    s.state = core.reconfigure(s.state, core.Policy(specs), s.now)
    assert s.health("wired") == "unknown" and s.health("lte") == "up"
    assert s.state.active == "wired"


def test_an_override_naming_a_removed_uplink_is_dropped() -> None:
    s = started()
    s.feed(core.Override("lte", "admin"))
    assert s.state.override == "lte"
    only_wired = core.Policy((core.UplinkSpec("wired", "primary", TARGETS),))
    s.state = core.reconfigure(s.state, only_wired, s.now)
    assert s.state.override is None and s.state.active == "wired"


LOST_ROUNDS = 8
