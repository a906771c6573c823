"""The uplink core, pure: voting, carrier, failback hold, flaps, override, maintenance, both down."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import uplink as core
from gateway.core.base import JournalEvent, Tick
from gateway.core.signals import ActiveUplinkChanged, UplinkStatus

TARGETS = ("t1", "t2", "t3")
INTERVAL = 0.2
LOST = 6  # down_after


def policy(**kw: object) -> core.Policy:
    specs = (core.UplinkSpec("wired", "primary", TARGETS), core.UplinkSpec("lte", "backup", TARGETS))
    return core.Policy(specs, **kw)  # type: ignore[arg-type]


class Sim:
    """Feeds rounds of probes (one per target per uplink) and collects effects."""

    def __init__(self, **kw: object) -> None:
        self.state = core.initial(policy(**kw))
        self.now = 0.0
        self.effects: list[object] = []

    def feed(self, ev: object) -> None:
        self.state, eff = core.step(self.state, ev, self.now)  # type: ignore[arg-type]
        self.effects.extend(eff)

    def round(self, wired: dict[str, bool] | bool = True, lte: dict[str, bool] | bool = True) -> None:
        for name, outcome in (("wired", wired), ("lte", lte)):
            for t in TARGETS:
                ok = outcome if isinstance(outcome, bool) else outcome.get(t, True)
                self.feed(core.ProbeResult(name, t, ok, 5.0 if ok else None, sent_at=self.now))
        self.now += INTERVAL
        self.feed(Tick())

    def rounds(self, n: int, **kw: object) -> None:
        for _ in range(n):
            self.round(**kw)  # type: ignore[arg-type]

    def switches(self) -> list[core.SetActive]:
        return [e for e in self.effects if isinstance(e, core.SetActive)]

    def health(self, name: str) -> str:
        u = self.state.uplink(name)
        assert u is not None
        return u.health


def started() -> Sim:
    s = Sim(failback_hold_s=10.0)
    s.rounds(6)
    assert s.health("wired") == "up" and s.health("lte") == "up"
    s.effects.clear()
    return s


def test_blackhole_fails_over_after_down_after_losses_with_reason() -> None:
    s = started()
    s.rounds(LOST - 1, wired=False)
    assert s.state.active == "wired"
    s.round(wired=False)
    assert s.state.active == "lte"
    sw = s.switches()
    assert len(sw) == 1 and sw[0].previous == "wired"
    assert "wired: down, 2/3 targets lost for 1.0 s" == sw[0].reason
    assert core.FlushConntrack("wired") in s.effects
    facts = [e.fact for e in s.effects if isinstance(e, core.Publish)]
    assert any(isinstance(f, ActiveUplinkChanged) and f.name == "lte" for f in facts)
    assert any(isinstance(f, UplinkStatus) and f.name == "wired" and f.state == "down" for f in facts)
    kinds = [e.kind for e in s.effects if isinstance(e, JournalEvent)]
    assert kinds.count("uplink.switch") == 1 and kinds.count("uplink.state") == 1


def test_a_healthy_backup_behind_the_primary_is_shown_standby_with_its_probes_verdict() -> None:
    """The modem takes the probes' verdict from these facts: standby alone would not say LTE answers again."""
    s = started()
    s.rounds(LOST, lte=False)
    s.rounds(6)
    facts = [e.fact for e in s.effects if isinstance(e, core.Publish) and isinstance(e.fact, UplinkStatus)
             and e.fact.name == "lte"]
    assert [(f.state, f.health, f.active) for f in facts] == [("down", "down", False), ("standby", "up", False)]


def test_one_dead_target_never_fails_over() -> None:
    s = started()
    s.rounds(500, wired={"t1": False})
    assert s.switches() == [] and s.health("wired") == "up"


def test_carrier_loss_is_immediate_and_recovery_needs_probes() -> None:
    s = started()
    s.feed(core.Carrier("wired", False))
    assert s.state.active == "lte" and s.health("wired") == "down"
    assert "carrier lost" in s.switches()[0].reason
    s.feed(core.Carrier("wired", True))
    assert s.health("wired") == "down"
    s.rounds(5)
    assert s.health("wired") == "up" and s.state.active == "lte"


def test_failback_only_after_hold_and_timer_restarts_on_flap() -> None:
    s = started()
    s.rounds(LOST, wired=False)
    assert s.state.active == "lte"
    s.rounds(5)  # wired up again
    assert s.health("wired") == "up"
    up_at = s.now
    s.rounds(int(5 / INTERVAL))  # half the hold
    s.rounds(LOST, wired=False)  # a flap in the middle
    s.rounds(5)
    assert s.state.active == "lte"
    flap_up = s.now
    # after a second flap the hold doubles (20 s)
    s.rounds(int(15 / INTERVAL))
    assert s.state.active == "lte", "hold doubled after a flap"
    s.rounds(int(6 / INTERVAL))
    assert s.state.active == "wired"
    assert s.now - flap_up >= 20.0 > up_at
    assert s.switches()[-1].reason.startswith("wired: healthy for")


def test_hold_failback_and_switch_to_backup_maintenance() -> None:
    s = started()
    s.feed(core.Maintenance(switch_to_backup=True))
    assert s.state.active == "lte"
    s.feed(core.Maintenance(switch_to_backup=False, hold_failback=True))
    s.rounds(200)
    assert s.state.active == "lte"
    s.feed(core.Maintenance())
    s.round()
    assert s.state.active == "wired"


def test_override_wins_until_auto() -> None:
    s = started()
    s.feed(core.Override("lte", "admin"))
    assert s.state.active == "lte" and s.state.override == "lte"
    s.rounds(100)
    assert s.state.active == "lte"
    s.feed(core.Override("bogus"))
    assert s.state.override == "lte"
    s.feed(core.Override(None, "admin"))
    assert s.state.active == "wired"  # wired healthy for ages: no hold needed


def test_both_down_keeps_last_route_and_says_so_once() -> None:
    s = started()
    s.rounds(10, wired=False, lte=False)
    crit = [e for e in s.effects if isinstance(e, JournalEvent) and e.severity == "critical"]
    assert len(crit) == 1 and "keeping the last route" in crit[0].message
    assert s.state.active in ("wired", "lte")
    last = s.state.active
    s.rounds(10, wired=False, lte=False)
    assert s.state.active == last
    s.rounds(6, wired=False, lte=True)
    assert s.state.active == "lte"


def test_backup_dies_while_active_returns_to_healthy_primary_without_hold() -> None:
    s = started()
    s.rounds(LOST, wired=False)
    s.rounds(5)
    assert s.state.active == "lte" and s.health("wired") == "up"
    s.rounds(LOST, lte=False)
    assert s.state.active == "wired"


def test_sixty_percent_loss_fails_over() -> None:
    s = started()
    rng = random.Random(1)
    for _ in range(300):
        s.round(wired={t: rng.random() >= 0.6 for t in TARGETS})
        if s.state.active == "lte":
            break
    assert s.state.active == "lte"


def test_twenty_percent_loss_ten_minutes_no_failover() -> None:
    s = started()
    rng = random.Random(2)
    for _ in range(int(600 / INTERVAL)):
        s.round(wired={t: rng.random() >= 0.2 for t in TARGETS})
    assert s.switches() == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2 ** 3 - 1), min_size=1, max_size=400), st.integers(0, 2))
def test_never_down_while_two_targets_never_miss_twice_in_a_row(masks: list[int], dead: int) -> None:
    """Below the threshold (one target dead, the others losing at most a third, never in a row) nothing
    flaps: no switch, no down."""
    s = started()
    prev = prev2 = 0
    for m in masks:
        m &= ~(prev | prev2)  # a live target misses at most one round in three (below down_loss_pct)
        prev, prev2 = m, prev
        outcome = {t: not (m >> i & 1) for i, t in enumerate(TARGETS)}
        outcome[TARGETS[dead]] = False
        s.round(wired=outcome)
    assert s.switches() == []
    assert s.health("wired") != "down"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 40)), min_size=1, max_size=30))
def test_failback_never_before_the_hold(pattern: list[tuple[bool, int]]) -> None:
    """Whatever the wired line does, traffic returns to it only after it was up for the whole hold."""
    s = started()
    s.rounds(LOST, wired=False)
    assert s.state.active == "lte"
    for ok, n in pattern:
        for _ in range(n):
            s.round(wired=ok)
            if s.state.active == "wired":
                u = s.state.uplink("wired")
                assert u is not None and u.up_since is not None
                assert s.now - u.up_since >= s.state.policy.failback_hold_s
                return
