"""The pure modem machine: states, the recovery ladder with its backoff, standby policy, budget, policy text."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.base import Effect, JournalEvent
from gateway.core.modem import (
    RUNGS,
    Budget,
    Counters,
    DataPath,
    Dial,
    HangUp,
    ModemState,
    Policy,
    PowerCycle,
    Reading,
    ResetRadio,
    WantData,
    billing_period,
    budget_from_json,
    budget_step,
    initial,
    lte_policy_mode,
    render_lte_policy,
    step,
)

OK = Reading(present=True, responsive=True, sim="ready", registration="home", operator="Op", technology="LTE",
             rssi_dbm=-80.0, data_connected=True)
POLICY = Policy(recovery_after_s=10, backoff_s=30, registration_timeout_s=60, dial_retry_s=5, giveup_retry_s=1000)


def journal(effects: tuple[Effect, ...]) -> list[JournalEvent]:
    return [e for e in effects if isinstance(e, JournalEvent)]


def test_states_from_readings() -> None:
    s = initial(POLICY)
    seq = [(Reading(present=False), "absent"), (replace(OK, sim="missing", registration=None), "sim_missing"),
           (replace(OK, sim="pin_needed"), "pin_needed"), (replace(OK, registration="searching"), "searching"),
           (replace(OK, data_connected=False), "registered"), (OK, "connected"),
           (replace(OK, responsive=False), "unresponsive")]
    for t, (r, phase) in enumerate(seq):
        s, eff = step(s, r, float(t))
        assert s.phase == phase
        assert [e.kind for e in journal(eff)] == (["modem.state"] if t else [])  # one per transition
    s, eff = step(s, replace(OK, responsive=False), 99.0)
    assert [e for e in journal(eff) if e.kind == "modem.state"] == []  # no transition, no state event


def test_warm_standby_dials_when_registered_and_retries_slowly() -> None:
    s = initial(POLICY)
    s, eff = step(s, replace(OK, data_connected=False), 0.0)
    assert Dial() in eff
    s, eff = step(s, replace(OK, data_connected=False), 1.0)
    assert Dial() not in eff  # dial_retry_s not over
    s, eff = step(s, replace(OK, data_connected=False), 5.0)
    assert Dial() in eff


def test_cold_standby_dials_only_when_lte_is_active() -> None:
    s = initial(replace(POLICY, standby="cold"))
    s, eff = step(s, replace(OK, data_connected=False), 0.0)
    assert Dial() not in eff and s.trouble is None
    s, eff = step(s, WantData(True, "wired down"), 1.0)
    assert s.want_data and [e.kind for e in journal(eff)] == ["modem.standby"]
    assert Dial() in eff  # registered and now wanted: dial at once
    s, eff = step(s, OK, 2.0)
    s, eff = step(s, WantData(False, "failback"), 3.0)
    assert HangUp() in eff


def run_ladder(s: ModemState, reading: Reading, until: float, dt: float = 1.0) -> tuple[ModemState, list[Effect]]:
    out: list[Effect] = []
    t = 0.0
    while t <= until:
        s, eff = step(s, reading, t)
        out += eff
        t += dt
    return s, out


def test_ladder_for_a_hung_modem_with_backoff_and_give_up() -> None:
    s = initial(POLICY)
    s, _ = step(s, OK, -1.0)
    s, effects = run_ladder(s, replace(OK, responsive=False, error="AT: no answer"), until=250)
    rungs = [e for e in effects if isinstance(e, JournalEvent) and e.kind in ("modem.recovery", "modem.gave_up")]
    assert [e.data["rung"] for e in rungs] == ["redial", "radio_reset", "power_cycle", "gave_up"]
    assert rungs[-1].severity == "critical"
    assert any(isinstance(e, ResetRadio) for e in effects)
    assert any(isinstance(e, PowerCycle) for e in effects)
    # the trouble started at t=0; rungs at 10, +30, +60, +120 (doubling backoff)
    times = [e.data["trouble_for_s"] for e in rungs]
    assert times == [10.0, 40.0, 100.0, 220.0]
    assert s.state == "failed"


def test_ladder_recovers_and_resets() -> None:
    s = initial(POLICY)
    s, _ = step(s, OK, 0.0)
    s, _ = step(s, DataPath(False, "3/3 targets lost"), 1.0)
    assert s.trouble == "no traffic through LTE"
    s, eff = step(s, OK, 11.0)
    assert HangUp() in eff and Dial() in eff and s.recovery_rung == "redial"
    s, eff = step(s, DataPath(True), 12.0)
    assert s.rung == 1 and not journal(eff)  # not over yet: a flap must not restart the ladder
    s, eff = step(s, OK, 12.0 + POLICY.clear_after_s)
    assert s.rung == 0 and [e.kind for e in journal(eff)] == ["modem.recovered"]


def test_a_modem_that_answers_now_and_then_climbs_the_ladder() -> None:
    # hung, but one poll in three gets an answer: the ladder must go on, not restart at re-dial
    s = initial(POLICY)
    s, _ = step(s, OK, 0.0)
    hung = replace(OK, responsive=False, error="AT: no answer")
    effects: list[Effect] = []
    for i in range(1, 120):
        s, eff = step(s, OK if i % 3 == 0 else hung, float(i * 2))
        effects += eff
    rungs = [e.data["rung"] for e in journal(tuple(effects)) if e.kind in ("modem.recovery", "modem.gave_up")]
    assert rungs[:3] == ["redial", "radio_reset", "power_cycle"]
    assert "modem.recovered" not in [e.kind for e in journal(tuple(effects))]


def test_absent_modem_goes_straight_to_power_cycle() -> None:
    s = initial(POLICY)
    s, _ = step(s, OK, 0.0)
    s, eff = run_ladder(s, Reading(present=False), until=11)
    assert s.recovery_rung == "power_cycle" and any(isinstance(e, PowerCycle) for e in eff)


def test_sim_missing_is_not_laddered() -> None:
    s = initial(POLICY)
    s, eff = run_ladder(s, replace(OK, sim="missing", registration=None), until=1000, dt=50)
    assert s.rung == 0 and not any(isinstance(e, (PowerCycle, ResetRadio)) for e in eff)


def test_sim_removed_during_the_ladder_stops_it_without_calling_it_recovered() -> None:
    s = initial(POLICY)
    s, _ = step(s, OK, 0.0)
    s, _ = step(s, DataPath(False, "3/3 targets lost"), 1.0)
    s, eff = step(s, OK, 11.0)
    assert s.recovery_rung == "redial"
    s, eff = step(s, replace(OK, sim="missing", registration=None, data_connected=False), 12.0)
    kinds = [(e.kind, e.data.get("rung")) for e in journal(eff)]
    assert ("modem.recovery", "stopped") in kinds and "modem.recovered" not in [k for k, _ in kinds]
    assert s.rung == 0 and s.phase == "sim_missing"
    s, eff = run_ladder(s, replace(OK, sim="missing", registration=None, data_connected=False), until=500, dt=50)
    assert not [e for e in journal(eff) if e.kind.startswith("modem.recover")]  # said once


def test_long_registration_loss_is_trouble() -> None:
    s = initial(POLICY)
    s, eff = run_ladder(s, replace(OK, registration="searching", data_connected=None), until=75)
    assert s.recovery_rung == "redial"  # 60 s searching + 10 s recovery_after


def test_gave_up_retries_later() -> None:
    s = initial(POLICY)
    s, _ = run_ladder(s, replace(OK, responsive=False), until=300)
    assert s.state == "failed"
    s, eff = step(s, replace(OK, responsive=False), 300 + 1001.0)
    assert s.recovery_rung == "redial"


events = st.one_of(
    st.builds(Reading, present=st.booleans(), responsive=st.booleans(),
              sim=st.sampled_from([None, "ready", "missing", "pin_needed"]),
              registration=st.sampled_from([None, "home", "roaming", "searching", "denied"]),
              data_connected=st.sampled_from([None, True, False])),
    st.builds(DataPath, ok=st.booleans()), st.builds(WantData, want=st.booleans()))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(events, st.floats(0, 400)), max_size=40), st.sampled_from(["warm", "cold"]))
def test_machine_invariants(seq: list[tuple[object, float]], standby: str) -> None:
    s = initial(replace(POLICY, standby=standby))
    now = 0.0
    for ev, dt in seq:
        now += dt
        prev_rung = s.rung
        s, eff = step(s, ev, now)  # type: ignore[arg-type]
        assert 0 <= s.rung <= len(RUNGS)
        rung_events = [e for e in journal(eff) if e.kind in ("modem.recovery", "modem.gave_up")]
        assert len(rung_events) <= 2  # at most "retry" + one rung per step
        if s.rung not in (0, prev_rung):
            assert rung_events  # every rung is journaled
        if standby == "warm":
            assert s.want_data


# ---------------------------------------------------------------------------------------- budget

def test_billing_period() -> None:
    assert billing_period(2026, 11, 24, 1) == "2026-11-01"
    assert billing_period(2026, 11, 10, 15) == "2026-10-15"
    assert billing_period(2026, 1, 3, 15) == "2025-12-15"


def test_budget_counts_resets_warns_once_and_caps() -> None:
    b = Budget(budget_bytes=1000, warn_pct=(50.0, 80.0), at_cap="restrict")
    b, eff = budget_step(b, Counters(5000, "2026-11-01", 3))
    assert b.used_bytes == 0 and eff == ()  # first reading: counting starts here
    b, eff = budget_step(b, Counters(5600, "2026-11-01", 3))
    assert b.used_bytes == 600 and [e.data["pct"] for e in journal(eff)] == [50.0]
    b, eff = budget_step(b, Counters(5650, "2026-11-01", 3))
    assert eff == ()  # warned once
    b, eff = budget_step(b, Counters(100, "2026-11-01", 7))  # interface re-created: counters from zero
    assert b.used_bytes == 750
    b, eff = budget_step(b, Counters(400, "2026-11-01", 7))
    assert b.used_bytes == 1050 and b.capped and b.restrict
    kinds = [e.kind for e in journal(eff)]
    assert kinds == ["modem.budget_warning", "modem.budget_cap"]
    assert lte_policy_mode(False, b) == "block"
    b, eff = budget_step(b, Counters(500, "2026-12-01", 7))
    assert b.used_bytes == 100 and not b.capped and b.warned == ()
    assert lte_policy_mode(False, b) == "none" and lte_policy_mode(True, b) == "limit"


def test_budget_json_round_trip_and_garbage() -> None:
    b = Budget(budget_bytes=10, period="2026-11-01", used_bytes=5, last_counter=9, last_ifindex=2, warned=(50.0,))
    again = budget_from_json(b.to_json(), 10, b.warn_pct, b.at_cap)
    assert again == b
    assert budget_from_json({"used_bytes": "x", "warned": 3}, 10, (), "alert").used_bytes == 0
    assert budget_from_json(None, 10, (), "alert").period == ""


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 10**12)), st.sampled_from(["a", "b"]),
                          st.sampled_from([None, 1, 2])), max_size=30))
def test_budget_never_decreases_within_a_period(readings: list[tuple[int | None, str, int | None]]) -> None:
    b = Budget(budget_bytes=10**9)
    for total, period, idx in readings:
        before = b
        b, _ = budget_step(b, Counters(total, period, idx))
        assert b.used_bytes >= 0
        if period == before.period:
            assert b.used_bytes >= before.used_bytes


def test_policy_text() -> None:
    text = render_lte_policy("limit", "wwan0", ("198.51.100.10",), ("2001:db8::1",), (5060, 5061), 512)
    assert text.startswith("table inet office_gateway_lte {}\ndelete table inet office_gateway_lte\n")
    assert "198.51.100.10" in text and "2001:db8::1" in text and "5060, 5061" in text
    assert "limit rate over 64 kbytes/second" in text
    assert "limit rate" not in render_lte_policy("block", "wwan0", (), (), (), 512)
    assert "chain" not in render_lte_policy("none", "wwan0", (), (), (), 512)


def test_registered_again_after_a_reset_dials_at_once_despite_a_recent_dial() -> None:
    s = initial(POLICY)
    s, eff = step(s, replace(OK, data_connected=False), 0.0)
    assert Dial() in eff
    s, _ = step(s, replace(OK, registration="searching", data_connected=False), 1.0)  # the radio reset
    s, eff = step(s, replace(OK, data_connected=False), 2.0)  # registered again, 2 s < dial_retry_s later
    assert Dial() in eff
    s, eff = step(s, replace(OK, data_connected=False), 3.0)
    assert Dial() not in eff  # still registered without a call: retries keep their pace
