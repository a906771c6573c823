"""The incidents machine, pure: overlaps, severity, hold-time close, flapping, drills, runbook (hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import incidents as I
from gateway.core.base import Effect, JournalEvent, Tick
from gateway.core.signals import (
    ActiveUplinkChanged,
    AlertAcknowledged,
    ModemStatus,
    PowerStatus,
    ServiceReachability,
    UplinkStatus,
)

POLICY = I.Policy(close_hold_s=60.0, lookback_s=10.0, services=("CRM", "ERP"), uplinks=("wired", "lte"))


class Run:
    def __init__(self, policy: I.Policy = POLICY) -> None:
        self.s = I.initial(policy)
        self.effects: list[tuple[float, Effect]] = []

    def __call__(self, ev: Any, t: float) -> tuple[Effect, ...]:
        self.s, eff = I.step(self.s, ev, t)
        self.effects += [(t, e) for e in eff]
        return eff

    def of(self, kind: type) -> list[Any]:
        return [e for _, e in self.effects if isinstance(e, kind)]


def test_power_and_isp_together_are_one_incident_with_both_causes() -> None:
    r = Run()
    r(UplinkStatus("wired", "primary", "up", True), 0)
    r(UplinkStatus("lte", "backup", "standby", False), 0)
    r(PowerStatus("on_battery", shed_tiers=(1,), shed_watts=30.0), 10)
    r(UplinkStatus("wired", "primary", "down", False), 11)
    r(ActiveUplinkChanged("lte", "wired", "wired down"), 12)
    assert len(r.of(I.Opened)) == 1
    inc = r.s.incident
    assert inc is not None and inc.causes == ("power: on battery", "wired: down") and inc.severity == "high"
    assert inc.marks["backup_active"] == 12 and inc.item("backup") and inc.item("backup").done  # type: ignore[union-attr]
    assert inc.item("shed").done and inc.item("ups").done  # type: ignore[union-attr]
    assert any(isinstance(e, JournalEvent) and e.kind == "incident.cause" for _, e in r.effects)


def test_severity_by_business_impact_and_never_lowered() -> None:
    r = Run()
    r(UplinkStatus("wired", "primary", "degraded", True), 0)
    assert r.s.incident and r.s.incident.severity == "low"
    r(UplinkStatus("wired", "primary", "down", False), 1)
    assert r.s.incident.severity == "high"
    r(ServiceReachability("CRM", False), 2)
    assert r.s.incident.severity == "critical"
    r(ServiceReachability("CRM", True), 3)
    assert r.s.incident.severity == "critical"
    sev = [e for _, e in r.effects if isinstance(e, JournalEvent) and e.kind == "incident.severity"]
    assert [e.data["to"] for e in sev] == ["high", "critical"]


def test_both_lines_down_is_critical_offline_lte_alone_is_low() -> None:
    r = Run()
    r(UplinkStatus("lte", "backup", "down", False), 0)
    assert r.s.incident and r.s.incident.severity == "low" and r.s.incident.causes == ("lte: down",)
    r(UplinkStatus("wired", "primary", "down", False), 1)
    assert r.s.incident.severity == "critical" and "no uplink works" in r.s.incident.causes


def test_comm_lost_is_its_own_cause_not_on_battery() -> None:
    r = Run()
    r(PowerStatus("comm_lost"), 0)
    inc = r.s.incident
    assert inc and inc.causes == ("ups: contact lost",) and inc.severity == "low"
    assert inc.item("ups") is None  # no power runbook items: nothing says the UPS is on battery


def test_closes_only_after_the_hold_time_and_a_flap_keeps_it_open() -> None:
    r = Run()
    r(UplinkStatus("wired", "primary", "down", False), 0)
    r(UplinkStatus("wired", "primary", "up", True), 5)
    r(Tick(), 64)
    assert r.s.incident is not None
    r(UplinkStatus("wired", "primary", "down", False), 64.5)  # back within the hold: same incident, a flap
    assert r.s.incident.flaps == 1 and len(r.of(I.Opened)) == 1
    r(UplinkStatus("wired", "primary", "up", True), 70)
    r(Tick(), 129.9)
    assert r.s.incident is not None
    r(Tick(), 130)
    assert r.s.incident is None
    (closed,) = r.of(I.Closed)
    assert closed.incident.closed_at == 130 and closed.incident.spans["uplink:wired:down"] == ((0, 5), (64.5, 70))
    r(UplinkStatus("wired", "primary", "down", False), 200)
    assert r.s.incident and r.s.incident.id == closed.incident.id + 1


def test_events_before_opening_are_gathered_once_and_later_ones_linked() -> None:
    r = Run()
    r(I.Observed(1, 0.0, "daemon.start"), 0.0)
    r(I.Observed(2, 95.0, "uplink.state"), 95.0)
    r(UplinkStatus("wired", "primary", "down", False), 100)
    r(I.Observed(3, 101, "uplink.switch"), 101)
    links = r.of(I.Link)
    assert [lk.event_ids for lk in links] == [(2,), (3,)]


def test_ack_ticks_the_owner_and_counts_once() -> None:
    r = Run()
    r(ServiceReachability("CRM", False), 0)
    r(AlertAcknowledged("ann", None, "button"), 30)
    r(AlertAcknowledged("bob", None, "api"), 40)
    inc = r.s.incident
    assert inc and inc.acked_at == 30 and inc.acked_by == "ann" and inc.item("owner").by == "ann"  # type: ignore[union-attr]
    assert len([e for _, e in r.effects if isinstance(e, JournalEvent) and e.kind == "incident.ack"]) == 1


def test_manual_runbook_tick_and_apps_item_tracks_reachability() -> None:
    r = Run()
    r(ServiceReachability("ERP", True), 0)
    r(ServiceReachability("CRM", False), 1)
    assert not r.s.incident.item("apps").done  # type: ignore[union-attr]
    r(I.RunbookTick("staff", True, "ann"), 2)
    assert r.s.incident.item("staff").done  # type: ignore[union-attr]
    r(ServiceReachability("CRM", True), 3)
    assert r.s.incident.item("apps").done and r.s.incident.marks["apps_reachable"] == 3  # type: ignore[union-attr]


def test_drill_is_its_own_incident_tolerates_what_it_causes_and_aborts_on_real_failure() -> None:
    r = Run()
    r(I.DrillStarted(7, "wan", "1 min"), 0)
    inc = r.s.incident
    assert inc and inc.kind == "drill" and inc.drill_id == 7 and inc.severity == "low"
    r(ServiceReachability("CRM", False), 1)
    r(I.DrillMark("failover", 0.8), 1)
    assert r.s.incident.kind == "drill" and r.s.incident.severity == "low"  # type: ignore[union-attr]
    r(PowerStatus("on_battery"), 2)
    assert r.of(I.AbortDrill) and r.of(I.Closed)[0].incident.drill_passed is False
    inc = r.s.incident
    assert inc and inc.kind == "outage" and set(inc.causes) == {"CRM: unreachable", "power: on battery"}
    assert inc.severity == "critical"


def test_drill_end_with_failures_left_opens_an_outage() -> None:
    r = Run()
    r(I.DrillStarted(1, "wan"), 0)
    r(ServiceReachability("CRM", False), 1)
    r(I.DrillEnded(False, "CRM did not answer"), 60)
    assert [type(e).__name__ for _, e in r.effects if isinstance(e, (I.Opened, I.Closed))] == \
        ["Opened", "Closed", "Opened"]
    assert r.s.incident and r.s.incident.kind == "outage" and r.s.incident.causes == ("CRM: unreachable",)


def test_row_roundtrip() -> None:
    r = Run()
    r(PowerStatus("on_battery", runtime_s=900, shed_tiers=(1, 2), shed_watts=55, minutes_gained=3), 0)
    r(UplinkStatus("wired", "primary", "down", False), 1)
    r(AlertAcknowledged("ann"), 2)
    inc = r.s.incident
    assert inc is not None
    assert I.incident_from_row(inc.to_row()) == inc
    restored = I.initial(POLICY, next_id=1, open_incident=inc, now=50)
    assert restored.next_id == inc.id + 1 and restored.incident and restored.incident.clear_since == 50
    s, eff = I.step(restored, Tick(), 110)
    assert s.incident is None and any(isinstance(e, I.Closed) for e in eff)


# ------------------------------------------------------------------------------------ properties

facts = st.one_of(
    st.builds(PowerStatus, st.sampled_from(["online", "on_battery", "low_battery", "comm_lost", "shutting_down"])),
    st.builds(UplinkStatus, st.just("wired"), st.just("primary"), st.sampled_from(["up", "degraded", "down"]),
              st.booleans()),
    st.builds(UplinkStatus, st.just("lte"), st.just("backup"), st.sampled_from(["up", "standby", "down"]),
              st.booleans()),
    st.builds(ServiceReachability, st.sampled_from(["CRM", "ERP"]), st.booleans()),
    st.builds(ModemStatus, st.sampled_from(["connected", "failed"])),
    st.builds(AlertAcknowledged, st.just("x")),
    st.just(Tick()),
    st.just("observe"),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(facts, st.floats(min_value=0, max_value=90)), max_size=60))
def test_properties(seq: list[tuple[Any, float]]) -> None:
    r = Run()
    t = 0.0
    next_event = 1
    observed_during: dict[int, int | None] = {}
    open_spans: list[tuple[int, float, float | None]] = []
    for fact, dt in seq:
        t += dt
        before = r.s.incident
        if fact == "observe":
            fact = I.Observed(next_event, t, "x")
            observed_during[next_event] = before.id if before else None
            next_event += 1
        eff = r(fact, t)
        inc = r.s.incident
        for e in eff:
            if isinstance(e, I.Opened):
                open_spans.append((e.incident.id, t, None))
            if isinstance(e, I.Closed):
                c = e.incident
                # closing needs the hold time with nothing in force
                assert c.clear_since is not None and t - c.clear_since >= POLICY.close_hold_s
                assert not r.s.conditions or r.s.incident is not None
                iid, start, _ = open_spans[-1]
                assert iid == c.id
                open_spans[-1] = (iid, start, t)
        if inc is not None and before is not None and inc.id == before.id:
            # severity never goes down within an incident
            assert I.RANK[inc.severity] >= I.RANK[before.severity]
            assert set(before.causes) <= set(inc.causes)
        # an incident is open whenever some failure is in force
        if r.s.conditions:
            assert r.s.incident is not None
    # every observed journal row is linked at most once; rows seen during an incident belong to it
    linked: dict[int, int] = {}
    for lk in r.of(I.Link):
        for i in lk.event_ids:
            assert i not in linked, f"row {i} linked twice"
            linked[i] = lk.incident_id
    for i, during in observed_during.items():
        if during is not None:
            assert linked.get(i) == during
    # incidents never overlap, ids increase
    for (a_id, _, a_end), (b_id, b_start, _) in zip(open_spans, open_spans[1:], strict=False):
        assert b_id == a_id + 1 and a_end is not None and a_end <= b_start
