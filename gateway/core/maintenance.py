"""Maintenance windows and freeze periods: recurrence, what is in force now, and the staff-notice cadence.

Pure: every function takes the time it reasons about.  Recurrences are in the site's local time (an
aware ``tzinfo`` is passed in), so "Tuesday 19:30" stays 19:30 across daylight-saving changes.

Recurrence grammar (case-insensitive)::

    daily HH:MM-HH:MM
    weekly mon,tue,... HH:MM-HH:MM
    monthly first|second|third|fourth|last mon..sun HH:MM-HH:MM
    monthly DAY HH:MM-HH:MM          (day of month 1..28)

An end time at or before the start time means the window ends the next day (22:00-02:00).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
_SPAN = r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})"


class RecurrenceError(ValueError):
    """A recurrence string that does not follow the grammar."""


@dataclass(frozen=True)
class Recurrence:
    freq: str  # daily | weekly | monthly
    start: time
    end: time
    weekdays: tuple[int, ...] = ()  # 0 = Monday
    ordinal: int | None = None  # monthly: 1..4 or -1 (last)
    monthday: int | None = None

    @property
    def duration(self) -> timedelta:
        s = timedelta(hours=self.start.hour, minutes=self.start.minute)
        e = timedelta(hours=self.end.hour, minutes=self.end.minute)
        return e - s if e > s else e - s + timedelta(days=1)


def _time(h: str, m: str) -> time:
    hh, mm = int(h), int(m)
    if not (0 <= hh <= 23 and 0 <= mm <= 59):
        raise RecurrenceError(f"{h}:{m} is not a time of day")
    return time(hh, mm)


def parse_recurrence(text: str) -> Recurrence:
    t = " ".join(text.lower().split())
    m = re.fullmatch(rf"daily {_SPAN}", t)
    if m:
        return Recurrence("daily", _time(m[1], m[2]), _time(m[3], m[4]))
    m = re.fullmatch(rf"weekly ([a-z,]+) {_SPAN}", t)
    if m:
        names = m[1].split(",")
        bad = [n for n in names if n not in DAYS]
        if bad or not names:
            raise RecurrenceError(f"unknown weekday {', '.join(bad)!r} (use {','.join(DAYS)})")
        return Recurrence("weekly", _time(m[2], m[3]), _time(m[4], m[5]),
                          weekdays=tuple(sorted({DAYS.index(n) for n in names})))
    m = re.fullmatch(rf"monthly (first|second|third|fourth|last) ([a-z]+) {_SPAN}", t)
    if m:
        if m[2] not in DAYS:
            raise RecurrenceError(f"unknown weekday {m[2]!r}")
        return Recurrence("monthly", _time(m[3], m[4]), _time(m[5], m[6]), weekdays=(DAYS.index(m[2]),),
                          ordinal=ORDINALS[m[1]])
    m = re.fullmatch(rf"monthly (\d{{1,2}}) {_SPAN}", t)
    if m:
        day = int(m[1])
        if not 1 <= day <= 28:
            raise RecurrenceError("day of month must be 1..28 (every month has it)")
        return Recurrence("monthly", _time(m[2], m[3]), _time(m[4], m[5]), monthday=day)
    raise RecurrenceError(f"cannot read recurrence {text!r}: expected e.g. 'weekly tue,thu 19:30-21:00' "
                          "or 'monthly first sat 10:00-13:00'")


def _month_days(rec: Recurrence, year: int, month: int) -> list[date]:
    if rec.monthday is not None:
        return [date(year, month, rec.monthday)]
    wd = rec.weekdays[0]
    first = date(year, month, 1)
    days = [first + timedelta(days=i) for i in range(31)]
    days = [d for d in days if d.month == month and d.weekday() == wd]
    assert rec.ordinal is not None
    return [days[-1] if rec.ordinal == -1 else days[rec.ordinal - 1]]


def _days(rec: Recurrence, first: date, last: date) -> Iterator[date]:
    if rec.freq == "monthly":
        y, m = first.year, first.month
        while (y, m) <= (last.year, last.month):
            for d in _month_days(rec, y, m):
                if first <= d <= last:
                    yield d
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return
    d = first
    while d <= last:
        if rec.freq == "daily" or d.weekday() in rec.weekdays:
            yield d
        d += timedelta(days=1)


def occurrences(rec: Recurrence, since: datetime, until: datetime, tz: tzinfo) -> list[tuple[datetime, datetime]]:
    """Every window (start, end) that overlaps [since, until), as aware datetimes in ``tz``."""
    lo = since.astimezone(tz).date() - timedelta(days=1)
    hi = until.astimezone(tz).date()
    out = []
    for d in _days(rec, lo, hi):
        start = datetime.combine(d, rec.start, tz)
        end = start + rec.duration
        if end > since and start < until:
            out.append((start, end))
    return out


@dataclass(frozen=True)
class Window:
    """A configured or added window: one-off (start/end) or recurring."""

    id: str
    name: str
    kind: str = "window"  # window | freeze
    start: datetime | None = None
    end: datetime | None = None
    recurrence: Recurrence | None = None
    services: tuple[str, ...] = ()
    switch_to_lte: bool = False
    description: str = ""

    def spans(self, since: datetime, until: datetime, tz: tzinfo) -> list[tuple[datetime, datetime]]:
        if self.recurrence is not None:
            return occurrences(self.recurrence, since, until, tz)
        if self.start is not None and self.end is not None and self.end > since and self.start < until:
            return [(self.start, self.end)]
        return []


def active(windows: list[Window], now: datetime, tz: tzinfo) -> list[tuple[Window, datetime, datetime]]:
    """Windows in force at ``now``."""
    out = []
    for w in windows:
        for s, e in w.spans(now, now + timedelta(seconds=1), tz):
            if s <= now < e:
                out.append((w, s, e))
    return out


def next_start(window: Window, now: datetime, tz: tzinfo, horizon_days: int = 400) -> tuple[datetime, datetime] | None:
    spans = [(s, e) for s, e in window.spans(now, now + timedelta(days=horizon_days), tz) if e > now]
    return min(spans) if spans else None


def conflicts_with_freeze(candidate: Window, windows: list[Window], now: datetime, tz: tzinfo,
                          horizon_days: int = 120) -> str | None:
    """Name of a freeze period the candidate's next occurrences fall in, or None."""
    until = now + timedelta(days=horizon_days)
    mine = candidate.spans(now, until, tz)
    for w in windows:
        if w.kind != "freeze" or w.id == candidate.id:
            continue
        for fs, fe in w.spans(now, until, tz):
            if any(s < fe and e > fs for s, e in mine):
                return w.name
    return None


# ----------------------------------------------------------------------------------- notice cadence

# stage -> offset from the window's start (negative = before); "finished" is measured from the end
STAGES: tuple[tuple[str, timedelta], ...] = (
    ("advance", timedelta(days=-5)),  # 3-5 days before: sent once inside that span
    ("day", timedelta(hours=-24)),
    ("hour", timedelta(hours=-1)),
    ("started", timedelta(0)),
)
ADVANCE_LATEST = timedelta(days=-3)


def due_stage(start: datetime, end: datetime, sent: frozenset[str], now: datetime) -> tuple[str, frozenset[str]] | None:
    """The one notice to send now for this occurrence, and the stages it makes moot; None if none is due.

    Only the latest due stage is sent: a window added two hours before its start gets the "1 hour" notice
    when that time comes, not a late "3-5 days" one.
    """
    if now >= end:
        return ("finished", frozenset({s for s, _ in STAGES}) | {"finished"}) if "finished" not in sent else None
    due = [name for name, off in STAGES if now >= start + off]
    if not due:
        return None
    latest = due[-1]
    if latest == "advance" and now >= start + ADVANCE_LATEST:
        return None  # the 3-5-day span has passed without a notice; the 24 h one will come
    later_sent = any(name in sent for name, _ in STAGES[[n for n, _ in STAGES].index(latest):])
    if later_sent:
        return None
    return latest, frozenset(due)


STAGE_WORDS = {"advance": "in a few days", "day": "within 24 hours", "hour": "in one hour", "started": "now",
               "finished": "finished"}


def notice_text(site: str, window: Window, start: datetime, end: datetime, stage: str) -> tuple[str, str, str]:
    """(title, short, detailed) staff notice for one stage of one occurrence."""
    when = f"{start:%a %d %b %H:%M}–{end:%H:%M}"
    affected = ", ".join(window.services) or "the office network"
    if stage == "finished":
        title = f"Maintenance finished: {window.name}"
        short = f"{window.name} is finished; {affected} should work normally again. Tell IT if not."
    elif stage == "started":
        title = f"Maintenance started: {window.name}"
        short = f"{window.name} has started ({when}); {affected} may be unavailable until {end:%H:%M}."
    else:
        title = f"Planned maintenance {STAGE_WORDS[stage]}: {window.name}"
        short = f"{window.name} on {when}: {affected} may be unavailable."
    lte = ("Internet traffic will use the backup LTE line during the window; large downloads and video "
           "calls should wait.\n" if window.switch_to_lte else "")
    body = (f"{site}: {short}\n\nWhat: {window.description or window.name}\nWhen: {when}\n"
            f"Affected: {affected}\n{lte}"
            "If you need CRM/ERP during the window, use the offline kit on the gateway's page "
            "(order forms, price lists, temporary order numbers).\n")
    return title, short, body


def outage_notice(site: str, causes: tuple[str, ...], since: datetime, next_update_min: int,
                  affected: tuple[str, ...]) -> tuple[str, str, str]:
    """Staff notice for an unplanned outage: what is affected, the workaround, when the next update comes."""
    what = " and ".join(causes) or "an outage"
    aff = ", ".join(affected) or "internet access"
    title = f"Outage: {what}"
    short = f"Since {since:%H:%M}: {what}. Affected: {aff}. Next update in {next_update_min} min."
    body = (f"{site}: {short}\n\nWorkaround: keep working with the offline kit on the gateway's page — "
            "order forms, price lists, client contacts — and take temporary order numbers there; they are "
            f"reconciled with CRM once it is back.\nNext update: within {next_update_min} minutes.\n")
    return title, short, body
