"""The pure power machine: debounce, tiers, shutdown slack, staggered restore, comm_lost, overrides."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import power as core
from gateway.core.base import JournalEvent, Tick

LOADS = (core.LoadSpec("ap", 0), core.LoadSpec("cam", 1, 6.5), core.LoadSpec("sign", 1, 10.0),
         core.LoadSpec("ap-spare", 2, 8.0), core.LoadSpec("lab", 3))
TIERS = (core.TierRule(1, after_on_battery_s=0.0),
         core.TierRule(2, after_on_battery_s=300.0, runtime_below_s=900.0, charge_below_pct=60.0),
         core.TierRule(3, runtime_below_s=600.0, charge_below_pct=40.0))
POLICY = core.Policy(loads=LOADS, tiers=TIERS, debounce_s=2.0, restore_hold_s=60.0, restore_stagger_s=10.0,
                     stale_after_s=5.0, shutdown_slack_s=210.0)


def ol(**kw: float) -> core.UpsReading:
    return core.UpsReading(status=("OL", "CHRG"), charge_pct=kw.get("charge", 100.0),
                           runtime_s=kw.get("runtime", 3000.0), load_pct=kw.get("load", 40.0), input_voltage=230.0)


def ob(**kw: float) -> core.UpsReading:
    return core.UpsReading(status=("OB", "DISCHRG"), charge_pct=kw.get("charge", 95.0),
                           runtime_s=kw.get("runtime", 2500.0), load_pct=kw.get("load", 40.0), input_voltage=0.0)


class Run:
    def __init__(self, policy: core.Policy = POLICY, **kw: object) -> None:
        self.t = 0.0
        self.s = core.initial(policy, self.t, **kw)  # type: ignore[arg-type]
        self.effects: list[object] = []

    def feed(self, ev: object, dt: float = 1.0) -> tuple[object, ...]:
        self.t += dt
        self.s, eff = core.step(self.s, ev, self.t)  # type: ignore[arg-type]
        self.effects += eff
        return eff

    def off(self) -> set[str]:
        return {n for n, (st_, _, _) in core.desired(self.s).items() if st_ == "off"}

    def kinds(self) -> list[str]:
        return [e.kind for e in self.effects if isinstance(e, JournalEvent)]


def test_first_reading_goes_online_and_journals_once() -> None:
    r = Run()
    r.feed(ol())
    r.feed(ol())
    assert r.s.state == "online"
    assert r.kinds() == ["power.state"]


def test_outage_sheds_tier1_after_debounce_then_more_tiers_by_triggers() -> None:
    r = Run()
    r.feed(ol())
    r.feed(ob(), 1.0)
    assert r.s.state == "online" and r.off() == set()  # still debouncing
    r.feed(ob(), 2.0)
    assert r.s.state == "on_battery" and r.off() == {"cam", "sign"}
    sets = [e for e in r.effects if isinstance(e, core.SetLoad)]
    assert {(e.name, e.state) for e in sets} == {("cam", "off"), ("sign", "off")}
    r.feed(ob(charge=55.0), 5.0)  # tier 2: charge below 60 %
    assert r.off() == {"cam", "sign", "ap-spare"}
    r.feed(ob(charge=50.0, runtime=500.0), 5.0)  # tier 3: runtime below 600 s
    assert r.off() == {"cam", "sign", "ap-spare", "lab"}
    assert "ap" not in r.off()


def test_blip_shorter_than_debounce_sheds_nothing_and_is_logged() -> None:
    r = Run()
    r.feed(ol())
    r.feed(ob(), 0.5)
    r.feed(ol(), 1.0)
    assert r.off() == set() and r.s.state == "online"
    assert "power.blip" in r.kinds() and "power.shed" not in r.kinds()


def test_emergency_is_not_debounced() -> None:
    r = Run()
    r.feed(ol())
    r.feed(core.UpsReading(status=("OB", "LB"), charge_pct=5.0, runtime_s=60.0), 0.1)
    assert r.s.state == "shutting_down"
    assert any(isinstance(e, core.RequestShutdown) for e in r.effects)
    assert r.off() == {"cam", "sign", "ap-spare", "lab"}


def test_runtime_slack_starts_shutdown_once() -> None:
    r = Run()
    r.feed(ol())
    r.feed(ob(), 3.0)
    r.feed(ob(runtime=400.0), 3.0)
    assert r.s.state == "on_battery" or r.s.state == "low_battery"
    r.feed(ob(runtime=200.0), 3.0)  # <= 90 + 120
    assert r.s.state == "shutting_down"
    r.feed(ob(runtime=150.0), 3.0)
    assert sum(isinstance(e, core.RequestShutdown) for e in r.effects) == 1


def test_low_battery_state_sheds_every_tier() -> None:
    r = Run()
    r.feed(ol())
    r.feed(ob(), 3.0)
    r.feed(ob(charge=25.0, runtime=1000.0), 3.0)
    assert r.s.state == "low_battery"
    assert r.off() == {"cam", "sign", "ap-spare", "lab"}


def test_restore_after_hold_one_tier_at_a_time_most_important_first() -> None:
    r = Run()
    r.feed(ol())
    r.feed(ob(), 3.0)
    r.feed(ob(charge=30.0, runtime=500.0), 3.0)
    assert r.s.shed_tiers == (1, 2, 3)
    r.feed(ol(), 1.0)
    assert r.s.state == "online" and r.s.shed_tiers == (1, 2, 3)
    r.feed(ol(), 59.0)
    assert r.s.shed_tiers == (1, 2, 3)
    r.feed(ol(), 1.0)
    assert r.s.shed_tiers == (1, 2)
    r.feed(ol(), 5.0)
    assert r.s.shed_tiers == (1, 2)
    r.feed(ol(), 5.0)
    assert r.s.shed_tiers == (1,)
    r.feed(ol(), 10.0)
    assert r.s.shed_tiers == () and r.off() == set()


def test_new_outage_during_restore_stops_it() -> None:
    r = Run()
    r.feed(ol())
    r.feed(ob(), 3.0)
    r.feed(ob(charge=30.0), 3.0)
    r.feed(ol(), 1.0)
    r.feed(ol(), 60.0)
    assert r.s.shed_tiers == (1, 2)
    r.feed(ob(), 5.0)  # on battery again, not even debounced yet
    r.feed(ob(), 20.0)
    assert 1 in r.s.shed_tiers and 2 in r.s.shed_tiers
    assert "power.restore_stopped" in r.kinds()


def test_comm_lost_never_sheds_and_never_restores() -> None:
    r = Run()
    r.feed(ol())
    r.feed(core.PollFailed("upsd: ERR DATA-STALE", stale=True))
    assert r.s.state == "comm_lost" and r.off() == set()
    for _ in range(100):
        r.feed(Tick(), 10.0)
        r.feed(core.PollFailed("no answer"), 1.0)
    assert r.off() == set()
    assert r.kinds().count("power.comm_lost") == 1
    # shed before the loss: stays shed while lost, restores only once heard again on mains
    r.feed(ob(), 1.0)
    r.feed(ob(), 3.0)
    assert r.off() == {"cam", "sign"}
    r.feed(core.PollFailed("x", stale=True))
    r.feed(Tick(), 1000.0)
    assert r.off() == {"cam", "sign"} and r.s.state == "comm_lost"
    r.feed(ol(), 1.0)
    r.feed(ol(), 61.0)
    assert r.off() == set()


def test_single_failed_poll_is_not_comm_lost_but_staleness_is() -> None:
    r = Run()
    r.feed(ol())
    r.feed(core.PollFailed("timeout"), 1.0)
    assert r.s.state == "online"
    r.feed(core.PollFailed("timeout"), 5.0)
    assert r.s.state == "comm_lost"


def test_never_heard_is_announced_once_when_overdue() -> None:
    r = Run()
    r.feed(core.PollFailed("refused"), 1.0)
    assert r.kinds() == []
    r.feed(core.PollFailed("refused"), 5.0)
    r.feed(core.PollFailed("refused"), 5.0)
    assert r.kinds() == ["power.comm_lost"]


def test_override_holds_until_auto() -> None:
    r = Run()
    r.feed(ol())
    r.feed(core.Override("cam", "off", "ann"))
    assert r.off() == {"cam"}
    r.feed(ob(), 3.0)
    r.feed(core.Override("sign", "on", "ann"))
    assert r.off() == {"cam"}  # sign held on through the outage
    r.feed(ol(), 1.0)
    r.feed(ol(), 100.0)
    assert r.off() == {"cam"}  # held off after the restore
    r.feed(core.Override("cam", "auto", "ann"))
    assert r.off() == set()
    assert "power.override" in r.kinds()


def test_bad_override_changes_nothing() -> None:
    r = Run()
    r.feed(ol())
    before = r.s
    r.feed(core.Override("nope", "off"))
    r.feed(core.Override("cam", "maybe"))
    assert r.s.overrides == before.overrides


def test_resume_after_restart_keeps_shed_tiers() -> None:
    r = Run(shed={1: "shed: tier 1 (on battery 0 s)"}, on_battery_for_s=100.0)
    assert r.off() == {"cam", "sign"}
    r.feed(ob())
    assert r.off() == {"cam", "sign"} and r.s.state == "on_battery"
    r.feed(ob(), 250.0)  # 350 s on battery in all: tier 2's timer counted from before the restart
    assert "ap-spare" in r.off()


def test_minutes_gained_and_shed_watts() -> None:
    assert core.minutes_gained(50.0, 25.0, 1200.0) == 10.0
    assert core.minutes_gained(None, 25.0, 1200.0) is None
    assert core.minutes_gained(20.0, 30.0, 600.0) == 0.0
    r = Run()
    r.feed(ol())
    r.feed(ob(), 1.0)
    r.feed(ob(), 3.0)
    assert core.shed_watts(r.s) == 16.5
    assert core.shed_watts(r.s, {"cam": 4.0}) == 14.0
    assert r.s.load_before_pct == 40.0


def test_power_quality_events_with_duration() -> None:
    r = Run()
    r.feed(ol())
    trim = core.UpsReading(status=("OL", "TRIM"), input_voltage=262.0, input_transfer_low=170.0,
                           input_transfer_high=255.0)
    r.feed(trim)
    r.feed(trim, 30.0)
    r.feed(ol(), 10.0)
    q = [e for e in r.effects if isinstance(e, JournalEvent) and e.kind == "power.quality"]
    started = [e.data["condition"] for e in q if e.data["started"]]
    ended = {e.data["condition"]: e.data["duration_s"] for e in q if not e.data["started"]}
    assert sorted(started) == ["trim", "voltage_high"]
    assert ended == {"trim": 40.0, "voltage_high": 40.0}


def test_transfer_logged_with_duration() -> None:
    r = Run()
    r.feed(ol())
    r.feed(ob(), 1.0)
    r.feed(ob(), 10.0)
    r.feed(ol(), 5.0)
    t = [e for e in r.effects if isinstance(e, JournalEvent) and e.kind == "power.transfer"]
    assert len(t) == 1 and t[0].data["duration_s"] == 15.0


def test_fsd_on_mains_is_a_flag_not_a_shutdown() -> None:
    r = Run()
    r.feed(core.UpsReading(status=("FSD", "OL")))
    assert r.s.state == "online"
    r.feed(core.UpsReading(status=("FSD", "OB")), 1.0)
    r.feed(core.UpsReading(status=("FSD", "OB")), 3.0)
    assert r.s.state == "shutting_down"


# ------------------------------------------------------------------------------------ hypothesis

FLAG = st.sampled_from(sorted(core.FLAGS) + ["HE", "XX"])
READING = st.builds(
    core.UpsReading,
    status=st.lists(FLAG, max_size=5).map(tuple),
    charge_pct=st.one_of(st.none(), st.floats(0, 100)),
    runtime_s=st.one_of(st.none(), st.floats(0, 10000)),
    load_pct=st.one_of(st.none(), st.floats(0, 150)),
    input_voltage=st.one_of(st.none(), st.floats(0, 300)))
EVENT = st.one_of(READING, st.builds(core.PollFailed, st.text(max_size=5), st.booleans()), st.just(Tick()))
STEP = st.tuples(EVENT, st.floats(0.01, 400))


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=40))
def test_any_sequence_never_sheds_tier0(steps: list[tuple[object, float]]) -> None:
    r = Run()
    for ev, dt in steps:
        r.feed(ev, dt)
        assert "ap" not in r.off()
        assert r.s.state in core.STATES


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=30), st.lists(st.one_of(st.builds(core.PollFailed, st.text(max_size=3),
                                                                st.booleans()), st.just(Tick())),
                                             min_size=1, max_size=20))
def test_comm_lost_never_sheds(prefix: list[tuple[object, float]], lost: list[object]) -> None:
    r = Run()
    for ev, dt in prefix:
        r.feed(ev, dt)
    r.feed(core.PollFailed("stale", stale=True))
    shed = r.off()
    for ev in lost:
        eff = r.feed(ev, 50.0)
        assert not any(isinstance(e, core.SetLoad) and e.state == "off" for e in eff)
    assert r.off() <= shed


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=30))
def test_always_restores_once_stably_online(steps: list[tuple[object, float]]) -> None:
    r = Run()
    for ev, dt in steps:
        r.feed(ev, dt)
    for _ in range(20):
        r.feed(ol(), 10.0)
    assert r.off() == set() and r.s.state == "online"


@settings(max_examples=200, deadline=None)
@given(st.lists(FLAG, max_size=8), st.floats(0.01, 1.99))
def test_blips_shorter_than_debounce_shed_nothing(flags: list[str], blip_s: float) -> None:
    r = Run()
    r.feed(ol())
    reading = core.UpsReading(status=tuple(["OB"] + [f for f in flags if f not in ("OL", "LB", "FSD")]),
                              charge_pct=90.0, runtime_s=3000.0)
    r.feed(reading, 0.01)
    r.feed(ol(), blip_s - 0.01 if blip_s > 0.02 else 0.005)
    assert r.off() == set()
    assert r.s.state == "online"


@given(st.lists(FLAG, max_size=10))
def test_any_flag_combination_parses_and_maps(flags: list[str]) -> None:
    parsed = core.parse_status(" ".join(flags))
    assert set(parsed) == set(flags)
    assert core.supply_of(parsed) in ("battery", "mains", "unknown")
    r = Run()
    r.feed(core.UpsReading(status=parsed, charge_pct=50.0))
    assert r.s.state in core.STATES


def test_policy_replace_keeps_state() -> None:
    r = Run()
    r.feed(ol())
    s2 = replace(r.s, policy=replace(POLICY, debounce_s=0.0))
    s3, _ = core.step(s2, ob(), r.t + 0.1)
    assert s3.state == "on_battery"
