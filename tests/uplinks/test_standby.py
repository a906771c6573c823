"""The uplink core, pure: a dialled LTE link without carrier before its first call (or in cold standby) is
standby, never an outage; a real LTE failure still is one; every override change is one fact."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import incidents
from gateway.core import uplink as core
from gateway.core.base import JournalEvent, Tick
from gateway.core.signals import OverrideChanged, UplinkStatus

TARGETS = ("t1", "t2", "t3")
INTERVAL = 0.2


class Sim:
    """The uplink core with a dialled LTE (as the runtime builds it when the modem owns lte's interface)."""

    def __init__(self, failback_hold_s: float = 10.0, lte_carrier: bool = False) -> None:
        specs = (core.UplinkSpec("wired", "primary", TARGETS), core.UplinkSpec("lte", "backup", TARGETS, dialled=True))
        self.state = core.initial(core.Policy(specs, failback_hold_s=failback_hold_s))
        self.now = 0.0
        self.effects: list[object] = []
        if not lte_carrier:
            self.feed(core.Carrier("lte", False))  # what the runtime sees at start: lte0 has no carrier yet

    def feed(self, ev: object) -> None:
        self.state, eff = core.step(self.state, ev, self.now)  # type: ignore[arg-type]
        self.effects.extend(eff)

    def round(self, wired: bool = True, lte: bool | None = True) -> None:
        for name, ok in (("wired", wired), ("lte", lte)):
            if ok is None:
                continue  # no probe leaves a link without carrier
            for t in TARGETS:
                self.feed(core.ProbeResult(name, t, ok, 5.0 if ok else None, sent_at=self.now))
        self.now += INTERVAL
        self.feed(Tick())

    def rounds(self, n: int, **kw: bool | None) -> None:
        for _ in range(n):
            self.round(**kw)  # type: ignore[arg-type]

    def health(self, name: str) -> str:
        u = self.state.uplink(name)
        assert u is not None
        return u.health

    def shown(self, name: str) -> str:
        u = self.state.uplink(name)
        assert u is not None
        return core.shown_state(self.state, u)

    def journal(self, kind: str = "uplink.state") -> list[JournalEvent]:
        return [e for e in self.effects if isinstance(e, JournalEvent) and e.kind == kind]

    def published(self, name: str) -> list[str]:
        return [e.fact.state for e in self.effects if isinstance(e, core.Publish)
                and isinstance(e.fact, UplinkStatus) and e.fact.name == name]

    def dial(self) -> None:
        """The modem makes the call: the fact, then the link (carrier), then probes prove it."""
        self.feed(core.DataCall("lte", "connected"))
        self.feed(core.Carrier("lte", True))
        self.rounds(6)


def test_lte_not_dialled_at_start_is_standby_quietly_then_up() -> None:
    s = Sim()
    s.rounds(6, lte=None)
    s.feed(core.DataCall("lte", "dialling", "modem searching"))
    s.rounds(3, lte=None)
    assert s.health("lte") == "standby" and s.shown("lte") == "standby"
    assert [e.message for e in s.journal()] == ["wired: up (3/3 targets answering)"]
    assert "down" not in s.published("lte") and s.published("lte")[-1] == "standby"
    s.dial()
    assert s.health("lte") == "up" and s.shown("lte") == "standby" and s.state.active == "wired"
    assert s.journal()[-1].message == "lte: up (3/3 targets answering)"


def test_link_lagging_the_connected_call_waits_out_the_grace_then_is_down() -> None:
    s = Sim()
    s.rounds(6, lte=None)
    s.feed(core.DataCall("lte", "connected"))  # the modem's fact can come before netlink's carrier
    s.rounds(10, lte=None)
    assert s.health("lte") == "standby"
    s.rounds(int(s.state.policy.link_grace_s / INTERVAL), lte=None)  # the link never comes: that is a failure
    assert s.health("lte") == "down"
    assert s.journal()[-1].severity == "warning" and "after the data call came up" in s.journal()[-1].message


def test_carrier_lost_after_lte_worked_is_down_whatever_order_the_modem_says_it() -> None:
    for modem_first in (True, False):
        s = Sim()
        s.rounds(6, lte=None)
        s.dial()
        s.effects.clear()
        if modem_first:
            s.feed(core.DataCall("lte", "dialling", "modem searching"))
            s.feed(core.Carrier("lte", False))
        else:
            s.feed(core.Carrier("lte", False))
            s.feed(core.DataCall("lte", "dialling", "modem searching"))
        assert s.health("lte") == "down", modem_first
        assert [(e.message, e.severity) for e in s.journal()] == [("lte: down (carrier lost)", "warning")]
        assert s.published("lte") == ["down"]
        s.rounds(5, lte=None)  # still redialling: stays down (not standby) until it has worked again
        assert s.health("lte") == "down"
        s.dial()
        assert s.health("lte") == "up"


def test_call_dropped_after_it_connected_is_down_even_before_probes_proved_the_link() -> None:
    s = Sim()
    s.feed(core.DataCall("lte", "connected"))
    s.feed(core.Carrier("lte", True))
    s.rounds(2)  # not yet proven (up_after is 5)
    assert s.health("lte") == "standby" and s.state.uplink("lte").reason == "link up, probing"  # type: ignore[union-attr]
    s.feed(core.DataCall("lte", "dialling", "modem searching"))  # the network went away
    s.feed(core.Carrier("lte", False))
    assert s.health("lte") == "down" and s.journal()[-1].message == "lte: down (carrier lost)"


def test_no_sim_at_start_is_a_real_failure() -> None:
    s = Sim()
    s.feed(core.DataCall("lte", "failed", "modem sim missing"))
    assert s.health("lte") == "down"
    assert s.journal()[-1].message == "lte: down (no data call (modem sim missing))"


def test_a_line_that_is_not_dialled_is_down_without_carrier_even_at_start() -> None:
    s = Sim()
    s.feed(core.Carrier("wired", False))  # an unplugged cable is a failure from the first second
    s.feed(core.DataCall("wired", "idle"))  # and no data-call fact can make it standby
    assert s.health("wired") == "down" and s.journal()[-1].message == "wired: down (carrier lost)"


def test_cold_standby_hangup_is_standby_and_a_failover_to_it_dials_then_leaves_without_hold() -> None:
    s = Sim(failback_hold_s=10.0)
    s.rounds(6, lte=None)
    s.dial()
    s.feed(core.DataCall("lte", "idle", "cold standby"))  # the modem says so before its hang-up drops carrier
    s.feed(core.Carrier("lte", False))
    assert s.health("lte") == "standby"
    assert s.journal()[-1].message == "lte: standby (data call not needed (cold standby))"
    assert s.journal()[-1].severity == "info"
    s.effects.clear()
    s.rounds(6, wired=False, lte=None)  # wired dies: traffic goes to the undialled LTE, so the modem dials
    assert s.state.active == "lte" and not s.state.both_down
    assert any(isinstance(e, core.SetActive) and e.name == "lte" for e in s.effects)
    s.feed(core.DataCall("lte", "dialling", "modem registered"))
    s.rounds(5, wired=True, lte=None)  # wired is back before LTE ever carried anything: no hold to wait
    assert s.health("wired") == "up" and s.state.active == "wired"


def test_real_lte_failure_is_low_while_wired_carries_and_an_outage_while_lte_does() -> None:
    def incident(active: bool) -> incidents.State:
        inc = incidents.initial(incidents.Policy(uplinks=("wired", "lte")))
        for fact in (UplinkStatus("wired", "primary", "standby" if active else "up", not active),
                     UplinkStatus("lte", "backup", "down", active, "carrier lost")):
            inc, _ = incidents.step(inc, fact, 100.0)
        return inc

    idle, carrying = incident(False).incident, incident(True).incident
    assert idle is not None and idle.severity == "low" and idle.causes == ("lte: down",)
    assert carrying is not None and carrying.severity == "high"


def test_standby_backup_opens_no_incident() -> None:
    s = Sim()
    s.rounds(6, lte=None)
    s.feed(core.DataCall("lte", "idle", "cold standby"))
    inc = incidents.initial(incidents.Policy(uplinks=("wired", "lte")))
    for e in s.effects:
        if isinstance(e, core.Publish) and isinstance(e.fact, UplinkStatus):
            inc, eff = incidents.step(inc, e.fact, s.now)
            assert not eff
    assert inc.incident is None and not inc.conditions


def test_every_override_change_is_one_fact_and_one_journal_row() -> None:
    s = Sim(lte_carrier=True)
    s.rounds(6)
    s.effects.clear()
    for target, who in (("lte", "button"), ("lte", "api"), ("wired", "cli"), (None, "api"), (None, "button")):
        s.feed(core.Override(target, who))
    facts = [e.fact for e in s.effects if isinstance(e, core.Publish) and isinstance(e.fact, OverrideChanged)]
    assert facts == [OverrideChanged("lte", "lte", None, "button"), OverrideChanged("wired", "wired", "lte", "cli"),
                     OverrideChanged(None, None, "wired", "api")]
    assert len(s.journal("uplink.override")) == 3


CALLS = st.sampled_from(["dialling", "idle"])
EVENTS = st.one_of(st.tuples(st.just("call"), CALLS), st.tuples(st.just("carrier"), st.booleans()),
                   st.tuples(st.just("tick"), st.floats(0.0, 30.0)))


@settings(max_examples=150, deadline=None)
@given(st.lists(EVENTS, max_size=40))
def test_lte_that_never_worked_is_never_down_while_its_call_is_only_pending(events: list[tuple[str, object]]) -> None:
    s = Sim()
    for kind, value in events:
        if kind == "call":
            s.feed(core.DataCall("lte", str(value)))
        elif kind == "carrier":
            s.feed(core.Carrier("lte", bool(value)))
        else:
            s.now += float(value)  # type: ignore[arg-type]
            s.round(lte=None)  # carrier or not, nothing proves the link: the call is only being made
    assert s.health("lte") in ("standby", "unknown")
    assert "down" not in s.published("lte")
    assert not [e for e in s.journal() if e.message.startswith("lte:")]


def test_a_backup_with_its_link_up_but_unproven_keeps_traffic_through_a_bouncing_primary() -> None:
    """LTE's call is up and its link too, its probes have not proven it yet, when wired's carrier drops:
    traffic moves to LTE and stays there while wired bounces back for a moment; only the hold brings it back."""
    s = Sim(failback_hold_s=10.0)
    s.rounds(6, lte=None)
    s.feed(core.DataCall("lte", "connected"))
    s.feed(core.Carrier("lte", True))
    assert s.health("lte") == "standby"  # link up, probing
    s.feed(core.Carrier("wired", False))
    assert s.state.active == "lte"
    s.feed(core.Carrier("wired", True))
    s.rounds(6)  # wired answers again at once (up after 5 in a row), LTE is proven meanwhile
    assert s.health("wired") == "up" and s.state.active == "lte"
    switches = [e.data["to"] for e in s.journal("uplink.switch")]
    assert switches == ["lte"]
    s.rounds(int(10.0 / INTERVAL) + 2)
    assert s.state.active == "wired"
    assert [e.data["to"] for e in s.journal("uplink.switch")] == ["lte", "wired"]


def test_a_backup_with_no_link_yet_is_left_as_soon_as_the_primary_works() -> None:
    s = Sim(failback_hold_s=10.0)
    s.rounds(6, lte=None)
    s.feed(core.Carrier("wired", False))
    assert s.state.active == "lte" and s.health("lte") == "standby"  # chosen, still dialling
    s.feed(core.Carrier("wired", True))
    s.rounds(6, lte=None)
    assert s.health("wired") == "up" and s.state.active == "wired"  # it carried nothing: no hold to honour
