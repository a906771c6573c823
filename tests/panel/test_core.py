"""The panel's pure decisions: patterns from the box's state, the button judged on release, acks, quiet hours."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from gateway.core import panel as core
from gateway.core.base import Effect, Event, JournalEvent, Tick
from gateway.core.signals import (
    ActiveUplinkChanged,
    AlertAcknowledged,
    IncidentStatus,
    PowerStatus,
    UplinkStatus,
)

POLICY = core.Policy(hold_s=3.0, debounce_s=0.03, stuck_s=30.0, quiet_min_severity="critical",
                     roles=(("wired", "primary"), ("lte", "backup")))


def run(events: list[Event], now: float = 100.0, state: core.PanelState | None = None
        ) -> tuple[core.PanelState, list[Effect]]:
    s = state or core.initial(POLICY)
    out: list[Effect] = []
    for ev in events:
        s, effs = core.step(s, ev, now)
        out += effs
    return s, out


WELL = [PowerStatus("online"), UplinkStatus("wired", "primary", "up", True),
        UplinkStatus("lte", "backup", "standby", False)]
WIRED_DOWN = [UplinkStatus("wired", "primary", "down", False), UplinkStatus("lte", "backup", "up", True),
              ActiveUplinkChanged("lte", "wired", "wired down")]
BOTH_DOWN = [UplinkStatus("wired", "primary", "down", False), UplinkStatus("lte", "backup", "down", False),
             ActiveUplinkChanged(None, "wired", "nothing works")]


def look(events: list[Event]) -> tuple[str, str, str, str | None, str]:
    s, _ = run(events)
    o = core.outputs(s, 100.0)
    return o.led("power").pattern, o.led("network").pattern, o.led("alert").pattern, o.led("alert").color, o.buzzer


# ------------------------------------------------------------------------------------ the pattern table

def test_all_well_is_steady_green_and_silent() -> None:
    assert look(WELL) == ("on", "on", "on", "green", "off")


def test_on_battery_blinks_slowly_and_beeps_as_a_warning() -> None:
    assert look(WELL + [PowerStatus("on_battery")]) == ("slow_blink", "on", "slow_blink", "green", "warning")


def test_low_battery_blinks_fast_in_amber_and_beeps_more() -> None:
    assert look(WELL + [PowerStatus("low_battery")]) == ("fast_blink", "on", "fast_blink", "amber", "high")


def test_shutdown_near_is_red_with_critical_beeps() -> None:
    assert look(WELL + [PowerStatus("shutting_down")]) == ("fast_blink", "on", "fast_blink", "red", "critical")


def test_on_lte_is_amber_and_silent() -> None:
    assert look(WELL + WIRED_DOWN) == ("on", "slow_blink", "on", "amber", "off")


def test_both_uplinks_down_is_red_with_critical_beeps() -> None:
    assert look(WELL + BOTH_DOWN) == ("on", "fast_blink", "on", "red", "critical")


def test_ups_not_answering_winks_and_warns() -> None:
    assert look(WELL + [PowerStatus("comm_lost")])[::4] == ("wink", "warning")


def test_nothing_known_yet_is_dark_and_silent() -> None:
    assert look([]) == ("off", "off", "on", "green", "off")


def test_incident_severity_sets_the_alarm_and_drills_do_not() -> None:
    assert look(WELL + [IncidentStatus(1, True, "high")])[3:] == ("amber", "high")
    assert look(WELL + [IncidentStatus(1, True, "critical")])[3:] == ("red", "critical")
    assert look(WELL + [IncidentStatus(1, True, "critical", kind="drill")])[3:] == ("green", "off")
    assert look(WELL + [IncidentStatus(1, True, "high"), IncidentStatus(1, False, "high")])[3:] == ("green", "off")


def test_override_names_are_shown_as_lte_or_wired() -> None:
    s, _ = run(WELL + [ActiveUplinkChanged("lte", "wired", "manual", override="lte")])
    assert s.override == "lte"
    s, _ = run([ActiveUplinkChanged("wired", "lte", "manual", override=None)], state=s)
    assert s.override is None


# ------------------------------------------------------------------------------- acknowledgements

def test_ack_silences_this_alert_and_a_worse_one_sounds_again() -> None:
    s, _ = run(WELL + [PowerStatus("on_battery")])
    assert core.alarm(s) == "warning"
    s, _ = run([AlertAcknowledged("page", source="page")], state=s)
    assert core.alarm(s) == "off"
    s, _ = run([PowerStatus("on_battery")], state=s)  # a refresh of the same alert stays silent
    assert core.alarm(s) == "off"
    s, _ = run(BOTH_DOWN, state=s)  # worse
    assert core.alarm(s) == "critical"
    s, _ = run([AlertAcknowledged("page")], state=s)
    s, _ = run([PowerStatus("low_battery")], state=s)  # worse than on battery, not worse than critical
    assert core.alarm(s) == "off"


def test_after_all_is_well_the_next_alert_sounds_from_the_start() -> None:
    s, _ = run(WELL + [PowerStatus("on_battery"), AlertAcknowledged("x"), PowerStatus("online")])
    assert s.acked_rank == 0
    s, _ = run([PowerStatus("on_battery")], now=200.0, state=s)
    assert core.alarm(s) == "warning" and s.alert_since == 200.0


def test_a_new_incident_sounds_even_at_the_same_severity() -> None:
    s, _ = run(WELL + [IncidentStatus(1, True, "high"), AlertAcknowledged("x", incident_id=1)])
    assert core.alarm(s) == "off"
    s, _ = run([AlertAcknowledged("x", incident_id=7)], state=s)  # someone else's ack changes nothing
    s, _ = run([IncidentStatus(1, False, "high"), PowerStatus("low_battery"), IncidentStatus(2, True, "high")],
               state=s)
    assert core.alarm(s) == "high"


def test_incident_acked_elsewhere_silences_once_not_on_every_refresh() -> None:
    s, _ = run(WELL + [IncidentStatus(3, True, "high", acked=False), IncidentStatus(3, True, "high", acked=True)])
    assert core.alarm(s) == "off"
    s, _ = run(BOTH_DOWN + [IncidentStatus(3, True, "critical", acked=True)], state=s)
    assert core.alarm(s) == "critical"  # worse after the ack: the periodic refresh must not re-silence it


# ------------------------------------------------------------------------------------- quiet hours

def test_quiet_hours_keep_only_severe_alarms() -> None:
    s, _ = run(WELL + [core.QuietHours(True), PowerStatus("low_battery")])
    assert core.alarm(s) == "off" and core.outputs(s, 100).led("alert").pattern == "fast_blink"
    s, _ = run([PowerStatus("shutting_down")], state=s)
    assert core.alarm(s) == "critical"
    s, _ = run([core.QuietHours(False), PowerStatus("low_battery")], state=replace(s, policy=POLICY))
    assert core.alarm(s) == "high"


def test_quiet_hours_parse_and_cross_midnight() -> None:
    span = core.parse_quiet_hours("22:00-07:00")
    assert span == (1320, 420)
    assert core.in_quiet_hours(span, 23 * 60) and core.in_quiet_hours(span, 0) and core.in_quiet_hours(span, 419)
    assert not core.in_quiet_hours(span, 420) and not core.in_quiet_hours(span, 12 * 60)
    assert core.in_quiet_hours(core.parse_quiet_hours("00:00-24:00"), 1439)
    for bad in ("22-07", "25:00-07:00", "22:00-07:60", "", "22:00"):
        try:
            core.parse_quiet_hours(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


@given(st.integers(0, 1439), st.integers(0, 1439), st.integers(0, 1439))
def test_a_span_and_its_reverse_split_the_day(a: int, b: int, m: int) -> None:
    if a != b:
        assert core.in_quiet_hours((a, b), m) != core.in_quiet_hours((b, a), m)


# ------------------------------------------------------------------------------------------ button

def press(s: core.PanelState, at: float, held: float) -> tuple[core.PanelState, list[Effect]]:
    return run([core.ButtonEdge(True, at), core.ButtonEdge(False, at + held)], now=at + held, state=s)


def test_short_press_acknowledges_with_a_chirp() -> None:
    s, _ = run(WELL + BOTH_DOWN)
    s, effs = press(s, 10.0, 0.2)
    assert [type(e) for e in effs if not isinstance(e, JournalEvent)] == [core.Acknowledge]
    assert core.alarm(s) == "off" and s.chirp == "chirp" and s.last_button == "ack"
    assert core.outputs(s, 10.25).buzzer == "chirp"
    assert core.outputs(s, 11.0).buzzer == "off"


def test_hold_toggles_manual_failover_and_back() -> None:
    s, _ = run(WELL)
    s, effs = press(s, 10.0, 3.2)
    assert [e for e in effs if isinstance(e, core.RequestFailover)] == [core.RequestFailover("lte")]
    assert not any(isinstance(e, core.Acknowledge) for e in effs)  # decided on release: never both
    assert s.override == "lte" and s.chirp == "chirp_lte"
    s, _ = run([core.FailoverResult(True, "lte")], state=s)
    s, effs = press(s, 20.0, 5.0)
    assert [e for e in effs if isinstance(e, core.RequestFailover)] == [core.RequestFailover("auto")]
    assert s.override is None and s.chirp == "chirp_auto"


def test_armed_shows_blue_while_held_long_enough() -> None:
    s, _ = run(WELL + [core.ButtonEdge(True, 10.0)], now=10.0)
    assert core.outputs(s, 12.0).led("alert").color == "green"
    assert core.outputs(s, 13.1).led("alert") == core.LedOut("on", "blue")


def test_refused_failover_chirps_an_error_and_is_journaled() -> None:
    s, _ = run(WELL)
    s, _ = press(s, 10.0, 3.5)
    s, effs = run([core.FailoverResult(False, message="no uplink 'lte'")], now=13.6, state=s)
    assert s.chirp == "chirp_error"
    assert any(isinstance(e, JournalEvent) and "refused" in e.message for e in effs)


def test_bounce_is_ignored() -> None:
    s, _ = run(WELL + BOTH_DOWN)
    s, effs = press(s, 10.0, 0.005)
    assert effs == [] and s.last_button == "bounce" and core.alarm(s) == "critical"


def test_stuck_button_is_journaled_once_and_does_nothing() -> None:
    s, _ = run(WELL + [core.ButtonEdge(True, 0.0)], now=0.0)
    journal: list[Effect] = []
    for t in range(1, 100):
        s, effs = core.step(s, Tick(), float(t))
        journal += effs
    assert len(journal) == 1 and "stuck" in journal[0].message  # type: ignore[attr-defined]
    assert core.outputs(s, 99.0).led("alert").color != "blue"
    s, effs = core.step(s, core.ButtonEdge(False, 100.0), 100.0)
    assert not any(isinstance(e, core.Acknowledge | core.RequestFailover) for e in effs)
    s, effs = press(s, 200.0, 0.2)  # works again once released
    assert any(isinstance(e, core.Acknowledge) for e in effs)


edges = st.lists(st.tuples(st.booleans(), st.floats(0.0, 40.0, allow_nan=False)), max_size=40)


@settings(max_examples=300)
@given(edges, st.booleans())
def test_any_edge_sequence_decides_at_most_once_per_release(seq: list[tuple[bool, float]], ticks: bool) -> None:
    s, _ = run(WELL)
    t = 0.0
    down_at: float | None = None
    for pressed, dt in seq:
        t += dt
        if ticks:
            s, _ = core.step(s, Tick(), t)
        s, effs = core.step(s, core.ButtonEdge(pressed, t), t)
        decisions = [e for e in effs if isinstance(e, core.Acknowledge | core.RequestFailover)]
        assert len(decisions) <= 1
        if pressed:
            if down_at is None:
                down_at = t
            assert not decisions  # nothing is decided on a press
            continue
        if down_at is None:
            assert not decisions  # a release without a press
            continue
        held, down_at = t - down_at, None
        if held < POLICY.debounce_s or held >= POLICY.stuck_s:
            assert not decisions
        elif held >= POLICY.hold_s:
            assert decisions and isinstance(decisions[0], core.RequestFailover)
        else:
            assert decisions == [core.Acknowledge()]


@given(st.sampled_from(sorted(core.BUZZER_PATTERNS)), st.floats(-1.0, 100.0, allow_nan=False))
def test_buzzer_patterns_are_well_formed(name: str, t: float) -> None:
    on = core.buzzer_on(name, t)
    if name == "off" or t < 0:
        assert not on
    steps, repeat = core.BUZZER_PATTERNS[name]
    if not repeat and t >= core.pattern_length(name):
        assert not on
    if steps and 0 <= t < steps[0][0] - 1e-9:
        assert on  # every pattern starts with its first beep


def test_alarms_escalate() -> None:
    def beeps_per_minute(name: str) -> int:
        return sum(core.buzzer_on(name, i / 100) and not core.buzzer_on(name, (i - 1) / 100) for i in range(1, 6000)) \
            + 1

    assert beeps_per_minute("warning") < beeps_per_minute("high") < beeps_per_minute("critical")


@given(st.sampled_from(sorted(core.LED_PATTERNS)), st.floats(0.0, 1e6, allow_nan=False))
def test_led_values_are_on_or_off(name: str, t: float) -> None:
    assert core.led_value(name, t) in (0.0, 1.0)
    assert core.led_value("on", t) == 1.0 and core.led_value("off", t) == 0.0


@given(st.sampled_from(sorted(core.BUZZER_PATTERNS)), st.sampled_from(sorted(core.LED_PATTERNS)),
       st.floats(0.0, 1000.0, allow_nan=False), st.floats(0.0, 100.0, allow_nan=False),
       st.floats(0.001, 0.999))
@example("critical", "fast_blink", 130.5, 1.9999999999999858, 0.5)  # a float-rounding edge hypothesis found once
def test_next_change_never_sleeps_past_an_edge(buzz: str, led: str, now: float, since_ago: float,
                                               frac: float) -> None:
    out = core.PanelOutput((("power", core.LedOut(led)),), buzz, now - since_ago, "none")
    wait = core.next_change(out, now)
    # the pattern's clock as the panel reads it: now - since, which float rounding can put on the other side
    # of an edge than since_ago itself (1.9999999999999858 ago at 130.5 is exactly 2.0)
    into = now - out.buzzer_since
    if wait is None:
        for dt in (0.5, 7.0, 61.0):
            assert core.led_value(led, now + dt) == core.led_value(led, now)
            assert core.buzzer_on(buzz, into + dt) == core.buzzer_on(buzz, into)
        return
    assert wait > 0
    assume(wait > 1e-6)  # closer to an edge than float rounding of `now + wait` can tell apart
    t = now + wait * frac  # any moment before the predicted change looks like now
    assert core.led_value(led, t) == core.led_value(led, now)
    assert core.buzzer_on(buzz, t - out.buzzer_since) == core.buzzer_on(buzz, into)
