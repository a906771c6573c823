"""Maintenance recurrence, windows in force, freezes and the staff-notice cadence (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import maintenance as m

TZ = ZoneInfo("Europe/Berlin")


def dt(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=TZ)


def test_weekly_tue_thu() -> None:
    rec = m.parse_recurrence("weekly tue,thu 19:30-21:00")
    occ = m.occurrences(rec, dt("2026-11-23T00:00"), dt("2026-11-30T00:00"), TZ)
    assert [(s.strftime("%a %H:%M"), e.strftime("%H:%M")) for s, e in occ] == [("Tue 19:30", "21:00"),
                                                                              ("Thu 19:30", "21:00")]


def test_monthly_first_saturday_and_last_friday() -> None:
    rec = m.parse_recurrence("monthly first sat 10:00-13:00")
    occ = m.occurrences(rec, dt("2026-11-01T00:00"), dt("2027-01-31T00:00"), TZ)
    assert [s.date().isoformat() for s, _ in occ] == ["2026-11-07", "2026-12-05", "2027-01-02"]
    last = m.parse_recurrence("Monthly LAST fri 18:00-19:00")
    occ = m.occurrences(last, dt("2026-11-01T00:00"), dt("2026-12-01T00:00"), TZ)
    assert [s.date().isoformat() for s, _ in occ] == ["2026-11-27"]


def test_window_across_midnight_and_dst() -> None:
    rec = m.parse_recurrence("daily 22:00-02:00")
    assert rec.duration == timedelta(hours=4)
    (s, e), *_ = m.occurrences(rec, dt("2026-03-28T12:00"), dt("2026-03-29T00:00"), TZ)
    assert s == dt("2026-03-28T22:00") and e.hour in (2, 3)  # DST starts that night in Berlin
    rec2 = m.parse_recurrence("weekly sun 19:30-21:00")
    before, after = (m.occurrences(rec2, dt(a), dt(b), TZ)[0][0] for a, b in
                     (("2026-03-22T00:00", "2026-03-23T00:00"), ("2026-03-29T00:00", "2026-03-30T00:00")))
    assert before.hour == after.hour == 19  # local time stays, across the change


@pytest.mark.parametrize("bad", ["weekly xyz 10:00-11:00", "monthly fifth sat 10:00-11:00", "daily 25:00-26:00",
                                 "monthly 31 10:00-11:00", "sometimes", ""])
def test_bad_recurrence(bad: str) -> None:
    with pytest.raises(m.RecurrenceError):
        m.parse_recurrence(bad)


def test_active_and_next_and_freeze() -> None:
    w = m.Window("1", "ISP work", recurrence=m.parse_recurrence("weekly tue 19:30-21:00"), services=("CRM",),
                 switch_to_lte=True)
    now = dt("2026-11-24T20:00")  # a Tuesday
    assert [x[0].name for x in m.active([w], now, TZ)] == ["ISP work"]
    assert m.active([w], dt("2026-11-24T21:00"), TZ) == []
    assert m.next_start(w, dt("2026-11-24T21:00"), TZ) == (dt("2026-12-01T19:30"), dt("2026-12-01T21:00"))
    freeze = m.Window("2", "year-end", kind="freeze", start=dt("2026-12-20T00:00"), end=dt("2027-01-03T00:00"))
    cand = m.Window("3", "switch upgrade", start=dt("2026-12-22T10:00"), end=dt("2026-12-22T12:00"))
    assert m.conflicts_with_freeze(cand, [w, freeze], now, TZ) == "year-end"
    ok = m.Window("4", "early", start=dt("2026-12-10T10:00"), end=dt("2026-12-10T12:00"))
    assert m.conflicts_with_freeze(ok, [w, freeze], now, TZ) is None


def simulate(start: datetime, end: datetime, created: datetime, step: timedelta) -> list[tuple[str, datetime]]:
    sent: frozenset[str] = frozenset()
    out = []
    t = created
    while t < end + timedelta(hours=2):
        due = m.due_stage(start, end, sent, t)
        if due:
            stage, moot = due
            sent = sent | moot | {stage}
            out.append((stage, t))
        t += step
    return out


def test_notice_cadence_for_a_window_planned_a_week_ahead() -> None:
    start, end = dt("2026-12-01T19:30"), dt("2026-12-01T21:00")
    got = simulate(start, end, dt("2026-11-24T09:00"), timedelta(minutes=5))
    assert [s for s, _ in got] == ["advance", "day", "hour", "started", "finished"]
    when = dict(got)
    assert timedelta(days=3) <= start - when["advance"] <= timedelta(days=5)
    assert start - when["day"] <= timedelta(hours=24)
    assert start - when["hour"] <= timedelta(hours=1)


def test_late_window_skips_stale_stages() -> None:
    start, end = dt("2026-12-01T19:30"), dt("2026-12-01T21:00")
    got = simulate(start, end, dt("2026-12-01T17:45"), timedelta(minutes=5))
    assert [s for s, _ in got] == ["day", "hour", "started", "finished"]  # told at once, then on cadence
    got = simulate(start, end, dt("2026-12-01T19:00"), timedelta(minutes=5))
    assert [s for s, _ in got] == ["hour", "started", "finished"]  # no stale "within 24 hours" notice


def test_notice_cadence_over_a_simulated_month() -> None:
    rec = m.parse_recurrence("weekly tue,thu 19:30-21:00")
    first = m.parse_recurrence("monthly first sat 10:00-13:00")
    since, until = dt("2026-11-01T00:00"), dt("2026-12-01T00:00")
    occs = m.occurrences(rec, since, until, TZ) + m.occurrences(first, since, until, TZ)
    assert len(occs) == 8 + 1  # 4 Tuesdays, 4 Thursdays, the first Saturday
    sent: dict[tuple[datetime, datetime], frozenset[str]] = {o: frozenset() for o in occs}
    log: list[tuple[datetime, str]] = []
    t = since - timedelta(days=6)
    while t < until + timedelta(days=1):
        for o in occs:
            due = m.due_stage(o[0], o[1], sent[o], t)
            if due:
                sent[o] = sent[o] | due[1] | {due[0]}
                log.append((o[0], due[0]))
        t += timedelta(minutes=15)
    for o in occs:
        stages = [s for start, s in log if start == o[0]]
        assert stages[-2:] == ["started", "finished"] and "hour" in stages and "day" in stages
        assert len(stages) == len(set(stages)), "a notice was sent twice"


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 60 * 24 * 8), st.integers(1, 600), st.integers(5, 120))
def test_each_stage_at_most_once_and_finished_always(created_min: int, dur_min: int, step_min: int) -> None:
    start = dt("2026-12-08T10:00")
    end = start + timedelta(minutes=dur_min)
    got = simulate(start, end, start - timedelta(minutes=created_min), timedelta(minutes=step_min))
    stages = [s for s, _ in got]
    assert len(stages) == len(set(stages))
    assert stages[-1] == "finished"
    order = ["advance", "day", "hour", "started", "finished"]
    assert stages == sorted(stages, key=order.index)


def test_notice_texts_name_what_when_and_the_workaround() -> None:
    w = m.Window("1", "ISP maintenance", recurrence=m.parse_recurrence("weekly tue 19:30-21:00"),
                 services=("CRM", "ERP"), switch_to_lte=True)
    title, short, body = m.notice_text("Example Office", w, dt("2026-12-01T19:30"), dt("2026-12-01T21:00"), "day")
    assert title == "Planned maintenance within 24 hours: ISP maintenance"
    assert "Tue 01 Dec 19:30–21:00" in short and "CRM, ERP" in short
    assert "backup LTE" in body and "offline kit" in body
    title, short, body = m.outage_notice("Example Office", ("wired ISP down",), dt("2026-12-01T09:12"), 30, ("CRM",))
    assert "Since 09:12" in short and "Next update in 30 min" in short and "temporary order numbers" in body
