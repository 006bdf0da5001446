"""The market schedule: is the market open at a session time, and when does it next open and close.

One interface (``MarketSchedule``) over three sources, chosen by ``[orchestrator.schedule]``
(``settings.py``):

- always open (the default): the synthetic / crypto 24/7 session; it never closes and asks no clock;
- an exchange calendar (``calendar = "XNYS"``, any ``exchange_calendars`` code or alias): its
  sessions, holidays and early closes. ``exchange_calendars`` brings pandas and numpy (~70 MB and
  about a second to import), so it is imported here, only when a calendar is configured;
- hand-written hours (``always_open = false``): ``open``/``close`` in ``timezone`` on ``weekdays``,
  minus the ``holidays`` listed. ``open`` after ``close`` is an overnight session (futures, FX):
  it opens on the weekday named and closes the next day.

The orchestrator asks on every tick (a few hundred ms apart), so the sessions are loaded once for a
window of ``WINDOW_DAYS`` around the session time and kept as plain floats: a tick is a comparison
with the current open/closed span, a new span a bisect; a new window (once per year of session
time, ~0.1 s for a calendar) only when the session time leaves the one held.

A session's lunch break (``break_start``/``break_end`` of some calendars, e.g. XHKG) does not end it:
a close here ends the orchestrator's whole trading session (flatten, end-of-day report).
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import zoneinfo
from typing import Any, Protocol

from services.orchestrator.settings import ScheduleSettings

log = logging.getLogger("orchestrator.schedule")

DAY_S = 86_400.0
WINDOW_DAYS = 400  # sessions loaded ahead of the session time; a year ahead stays answerable
BEFORE_DAYS = 8  # and behind it: an overnight session opened yesterday, a long weekend
MARGIN_DAYS = 2  # the window counts as covered this far inside what was loaded

Interval = tuple[float, float]  # [open, close) in seconds since the epoch


class UnknownCalendar(ValueError):
    """``calendar`` names no exchange_calendars calendar: a bad setting (the orchestrator exits 78)."""


class SessionSource(Protocol):
    name: str
    zone: zoneinfo.ZoneInfo  # the times in the status and the logs are this venue's local time

    def sessions(self, first: dt.date, last: dt.date) -> list[Interval]:
        """Every session opening between ``first`` and ``last`` (UTC dates, inclusive), in order."""


class HandHours:
    """``open``..``close`` in ``timezone`` on ``weekdays``; ``open > close`` spans midnight (the
    weekday and the holiday name the day the session opens)."""

    def __init__(self, schedule: ScheduleSettings) -> None:
        self.zone = zoneinfo.ZoneInfo(schedule.timezone)
        self._open, self._close = schedule.open, schedule.close
        self._weekdays = frozenset(schedule.weekdays)
        self._holidays = frozenset(schedule.holidays)
        self.overnight = schedule.open > schedule.close
        span = f"{schedule.open:%H:%M}-{schedule.close:%H:%M}{' overnight' if self.overnight else ''}"
        self.name = f"hours {span} {schedule.timezone}"

    def sessions(self, first: dt.date, last: dt.date) -> list[Interval]:
        out = []
        day = first - dt.timedelta(days=1)  # a local date lags the UTC one west of Greenwich
        while day <= last + dt.timedelta(days=1):
            if day.weekday() in self._weekdays and day not in self._holidays:
                closes_on = day + dt.timedelta(days=1) if self.overnight else day
                out.append((dt.datetime.combine(day, self._open, self.zone).timestamp(),
                            dt.datetime.combine(closes_on, self._close, self.zone).timestamp()))
            day += dt.timedelta(days=1)
        return out


class ExchangeCalendar:
    """The sessions of one ``exchange_calendars`` calendar, holidays and early closes included."""

    def __init__(self, code: str) -> None:
        import exchange_calendars  # pandas and numpy: only for a configured calendar (see the module doc)

        names = exchange_calendars.get_calendar_names(include_aliases=True)
        if code not in names:
            raise UnknownCalendar(f"orchestrator.schedule.calendar={code!r} is not an exchange_calendars calendar "
                                  f"(one of {len(names)} codes such as XNYS, XLON, CMES, 24/7)")
        self._xcals = exchange_calendars
        self.name = code
        self.zone = zoneinfo.ZoneInfo("UTC")  # the exchange's own, once its first sessions are loaded

    def sessions(self, first: dt.date, last: dt.date) -> list[Interval]:
        try:
            calendar = self._xcals.get_calendar(self.name, start=first, end=last)
        except (ValueError, self._xcals.errors.CalendarError) as exc:
            # outside the years the calendar knows, or no session at all: closed (fail closed)
            log.warning("calendar %s has no sessions from %s to %s (%s): the market counts as closed",
                        self.name, first, last, exc)
            return []
        self.zone = zoneinfo.ZoneInfo(str(calendar.tz))
        schedule = calendar.schedule
        return [(o.timestamp(), c.timestamp()) for o, c in zip(schedule["open"], schedule["close"], strict=True)]


def merged(sessions: list[Interval]) -> list[Interval]:
    """Sessions that touch or overlap become one (a 24/7 calendar's days): no close between them."""
    out: list[Interval] = []
    for start, end in sorted(sessions):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


class MarketSchedule:
    """What the orchestrator asks: open at this session time? next open, next close? ``source``
    None: always open. A session time of None (a replay before its first data: no market time yet)
    is closed for any schedule but the always-open one."""

    def __init__(self, source: SessionSource | None) -> None:
        self._source = source
        self._opens: list[float] = []
        self._closes: list[float] = []
        self._covered = (0.0, -1.0)  # [lo, hi) of session time the loaded sessions answer for
        self._span: tuple[float, float, bool] | None = None  # (since, until, open) of the latest answer

    @property
    def name(self) -> str:
        return "24/7 (always_open)" if self._source is None else self._source.name

    def is_open(self, ts: float | None) -> bool:
        if self._source is None:
            return True
        if ts is None:
            return False
        span = self._span
        if span is None or not span[0] <= ts < span[1]:
            span = self._span = self._span_at(ts)
            log.info("market schedule %s: %s", self.name, self._describe(span))
        return span[2]

    def next_open(self, ts: float | None) -> float | None:
        """When the market next opens after ``ts`` (the next session's open when it is open now);
        None: always open, no market time yet, or no session within the window loaded."""
        if self._source is None or ts is None:
            return None
        _, until, is_open = self._span_at(ts)
        if not is_open:
            return self._known(until)
        i = bisect.bisect_right(self._opens, ts)
        return self._known(self._opens[i]) if i < len(self._opens) else None

    def next_close(self, ts: float | None) -> float | None:
        """When the session open at ``ts`` (or the next one) closes; None as for ``next_open``, or
        when it lasts beyond the window loaded (a 24/7 calendar)."""
        if self._source is None or ts is None:
            return None
        _, until, is_open = self._span_at(ts)
        if is_open:
            return self._known(until)
        i = bisect.bisect_right(self._opens, ts)
        return self._known(self._closes[i]) if i < len(self._closes) else None

    def _known(self, ts: float) -> float | None:
        """``ts`` if the sessions loaded vouch for it: a session cut by the window's end has no known close."""
        return ts if ts < self._covered[1] else None

    def status(self, ts: float | None) -> dict[str, Any]:
        """For ``tradectl status``: the schedule, open now, and the next open and close in the
        venue's local time (ISO 8601)."""
        return {"schedule": self.name, "open": self.is_open(ts),
                "next_open": self._iso(self.next_open(ts)), "next_close": self._iso(self.next_close(ts))}

    def _span_at(self, ts: float) -> tuple[float, float, bool]:
        """(since, until, open): the market is open (or closed) for all of [since, until)."""
        lo, hi = self._covered
        if not lo <= ts < hi - WINDOW_DAYS / 2 * DAY_S:
            self._load(ts)
            lo, hi = self._covered
        i = bisect.bisect_right(self._opens, ts) - 1
        if i >= 0 and ts < self._closes[i]:
            return self._opens[i], self._closes[i], True
        since = self._closes[i] if i >= 0 else lo
        until = self._opens[i + 1] if i + 1 < len(self._opens) else hi
        return since, until, False

    def _load(self, ts: float) -> None:
        assert self._source is not None
        day = dt.datetime.fromtimestamp(ts, dt.timezone.utc).date()
        first, last = day - dt.timedelta(days=BEFORE_DAYS), day + dt.timedelta(days=WINDOW_DAYS)
        sessions = merged(self._source.sessions(first, last))
        self._opens = [o for o, _ in sessions]
        self._closes = [c for _, c in sessions]
        midnight = dt.datetime.combine(day, dt.time(), dt.timezone.utc).timestamp()
        self._covered = (midnight - (BEFORE_DAYS - MARGIN_DAYS) * DAY_S,
                         midnight + (WINDOW_DAYS - MARGIN_DAYS) * DAY_S)
        self._span = None

    def _iso(self, ts: float | None) -> str | None:
        if ts is None or self._source is None:
            return None
        return dt.datetime.fromtimestamp(ts, self._source.zone).isoformat()

    def _describe(self, span: tuple[float, float, bool]) -> str:
        _, until, is_open = span
        end = self._iso(self._known(until)) or "beyond the sessions loaded"
        return f"open until {end}" if is_open else f"closed until {end}"


def market_schedule(settings: ScheduleSettings, now: float | None = None) -> MarketSchedule:
    """The schedule ``[orchestrator.schedule]`` describes, its sessions loaded around ``now`` (if
    known: the first tick then finds them ready); raises ``UnknownCalendar``."""
    if settings.calendar is not None:
        schedule = MarketSchedule(ExchangeCalendar(settings.calendar))
    elif settings.always_open:
        return MarketSchedule(None)
    else:
        schedule = MarketSchedule(HandHours(settings))
    if now is not None:
        schedule.next_open(now)
    return schedule
