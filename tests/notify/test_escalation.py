"""Escalation with time driven by hand (pure)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import escalation as e

LEVELS = (e.Level("duty", ("duty",), 0.0), e.Level("deputy", ("deputy",), 1800.0),
          e.Level("head", ("head",), 5400.0))


def run(events: list[tuple[float, e.Event]], levels: tuple[e.Level, ...] = LEVELS) -> list[tuple[float, e.Send]]:
    st_ = e.State(levels=levels, coalesce_s=120.0)
    out = []
    for now, ev in events:
        st_, effs = e.step(st_, ev, now)
        out += [(now, x) for x in effs if isinstance(x, e.Send)]
    return out


def ticks(until: float, every: float = 60.0, minute: int = 600) -> list[tuple[float, e.Event]]:
    return [(t * every, e.Clock(minute)) for t in range(int(until / every) + 1)]


def test_critical_unacked_goes_up_the_chain() -> None:
    sent = run([(0.0, e.Opened(1, "critical", "CRM unreachable"))] + ticks(6000))
    assert [(t, s.stage) for t, s in sent] == [(0.0, "level:duty"), (1800.0, "level:deputy"), (5400.0, "level:head")]


def test_ack_stops_the_chain() -> None:
    evs = [(0.0, e.Opened(1, "critical", "x"))] + ticks(900) + [(901.0, e.Acked(1, "admin"))] + \
          [(t + 902.0, ev) for t, ev in ticks(6000)]
    assert [s.stage for _, s in run(evs)] == ["level:duty"]


def test_high_reaches_duty_only_low_nobody() -> None:
    assert [s.stage for _, s in run([(0.0, e.Opened(1, "high", "on battery"))] + ticks(6000))] == ["level:duty"]
    assert run([(0.0, e.Opened(1, "low", "degraded"))] + ticks(6000)) == []


def test_upgrade_to_critical_escalates_and_updates() -> None:
    evs = [(0.0, e.Opened(1, "high", "x")), (60.0, e.SeverityChanged(1, "critical", "CRM down"))] + ticks(2000)
    stages = [s.stage for _, s in run(evs)]
    assert stages == ["level:duty", "update", "level:deputy"]


def test_recovery_after_coalescing_and_flapping_is_one_note() -> None:
    evs = [(0.0, e.Opened(1, "high", "wired down")), (100.0, e.Closed(1)), (150.0, e.Opened(2, "high", "wired down"))]
    evs += [(160.0 + t, ev) for t, ev in ticks(600)] + [(1000.0, e.Closed(2))] + [(1000.0 + t, ev) for t, ev in ticks(300)]
    stages = [s.stage for _, s in run(evs)]
    assert stages == ["level:duty", "flapping", "recovery"]


def test_office_hours_delay_a_level() -> None:
    levels = (e.Level("duty", ("duty",), 0.0, hours=e.parse_hours("08:00-18:00")),)
    night = [(t * 60.0, e.Clock(22 * 60)) for t in range(5)]
    morning = [(300.0 + t * 60.0, e.Clock(8 * 60)) for t in range(2)]
    sent = run([(0.0, e.Opened(1, "critical", "x"))] + night + morning, levels)
    assert [t for t, _ in sent] == [300.0]
    assert e.in_hours(e.parse_hours("22:00-06:00"), 23 * 60) and not e.in_hours(e.parse_hours("22:00-06:00"), 12 * 60)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 10000), st.sampled_from(["tick", "ack", "sev", "close"])), max_size=40))
def test_no_level_is_sent_twice_and_nothing_after_ack(ops: list[tuple[float, str]]) -> None:
    evs: list[tuple[float, e.Event]] = [(0.0, e.Opened(1, "critical", "x"))]
    for t, op in sorted(ops):
        evs.append((t, {"tick": e.Clock(600), "ack": e.Acked(1, "a"), "sev": e.SeverityChanged(1, "critical", "y"),
                        "close": e.Closed(1)}[op]))
    sent = run(evs)
    levels = [s.stage for _, s in sent if s.stage.startswith("level:")]
    assert len(levels) == len(set(levels))
    ack_t = next((t for t, ev in evs if isinstance(ev, e.Acked)), None)
    if ack_t is not None:
        assert all(t <= ack_t or not s.stage.startswith("level:") for t, s in sent)
