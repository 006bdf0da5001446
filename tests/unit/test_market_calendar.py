"""services/orchestrator/market_calendar.py: the market schedule from a real exchange calendar
(exchange_calendars: holidays, early closes, DST), from hand-written hours (overnight sessions,
explicit holidays), and always open; the orchestrator's call site reads the session clock."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import zoneinfo
from pathlib import Path

import pytest

from services.orchestrator.market_calendar import MarketSchedule, UnknownCalendar, market_schedule, merged
from services.orchestrator.journal import Journal
from services.orchestrator.session_lifecycle import begin_session
from services.orchestrator.session_logs import SessionLogs
from services.orchestrator.session_state import Session
from services.orchestrator.settings import ScheduleSettings
from services.session_clock import SessionClock
from services.settings import Settings

# exchange_calendars on pandas 3 warns of pandas deprecations inside the library (DeprecationWarning:
# hidden outside tests by Python's default filter), not of anything this project calls.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
CHICAGO = zoneinfo.ZoneInfo("America/Chicago")


def at(text: str, zone: zoneinfo.ZoneInfo = NEW_YORK) -> float:
    """Seconds since the epoch of a local wall time in ``zone``."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


@pytest.fixture(scope="module")
def nyse() -> MarketSchedule:
    return market_schedule(ScheduleSettings(calendar="XNYS"))


def test_nyse_normal_day_opens_at_9_30_and_closes_at_16_00(nyse: MarketSchedule) -> None:
    assert not nyse.is_open(at("2026-11-25T09:29:59"))
    assert nyse.is_open(at("2026-11-25T09:30:00"))
    assert nyse.is_open(at("2026-11-25T15:59:59"))
    assert not nyse.is_open(at("2026-11-25T16:00:00"))
    assert nyse.next_close(at("2026-11-25T12:00")) == at("2026-11-25T16:00")
    assert nyse.next_open(at("2026-11-25T08:00")) == at("2026-11-25T09:30")


def test_nyse_holiday_is_closed_all_day(nyse: MarketSchedule) -> None:
    for hour in ("09:30", "12:00", "15:59"):
        assert not nyse.is_open(at(f"2026-12-25T{hour}")), hour  # Christmas, a Friday
    assert nyse.is_open(at("2026-12-24T12:00"))
    # the next open skips the holiday and the weekend after it
    assert nyse.next_open(at("2026-12-25T12:00")) == at("2026-12-28T09:30")
    assert nyse.status(at("2026-12-25T12:00")) == {
        "schedule": "XNYS", "open": False,
        "next_open": "2026-12-28T09:30:00-05:00", "next_close": "2026-12-28T16:00:00-05:00"}


def test_nyse_early_close_after_thanksgiving_at_13_00(nyse: MarketSchedule) -> None:
    assert not nyse.is_open(at("2026-11-26T12:00"))  # Thanksgiving
    assert nyse.is_open(at("2026-11-27T12:59:59"))
    assert not nyse.is_open(at("2026-11-27T13:00:00"))
    assert not nyse.is_open(at("2026-11-27T15:00:00"))
    assert nyse.next_close(at("2026-11-27T10:00")) == at("2026-11-27T13:00")


def test_nyse_weekend_is_closed_until_monday(nyse: MarketSchedule) -> None:
    assert not nyse.is_open(at("2026-11-28T12:00"))
    assert not nyse.is_open(at("2026-11-29T12:00"))
    assert nyse.next_open(at("2026-11-28T12:00")) == at("2026-11-30T09:30")


def test_nyse_keeps_new_york_hours_across_the_dst_change(nyse: MarketSchedule) -> None:
    # 2026-03-08 the clocks move forward: the open moves from 14:30 UTC to 13:30 UTC
    utc = dt.timezone.utc
    friday_1330 = dt.datetime(2026, 3, 6, 13, 30, tzinfo=utc).timestamp()
    monday_1330 = dt.datetime(2026, 3, 9, 13, 30, tzinfo=utc).timestamp()
    assert not nyse.is_open(friday_1330)
    assert nyse.is_open(friday_1330 + 3600)
    assert nyse.is_open(monday_1330)
    assert nyse.next_open(friday_1330) == friday_1330 + 3600
    assert nyse.status(monday_1330)["next_close"] == "2026-03-09T16:00:00-04:00"


def test_the_answer_holds_as_session_time_moves_back_and_forth_across_windows(nyse: MarketSchedule) -> None:
    """A replay may start years from the wall clock and a new replay may go back: a session time
    outside the sessions loaded loads its own window."""
    assert not nyse.is_open(at("2028-12-25T12:00"))  # Christmas 2028, a Monday
    assert nyse.is_open(at("2028-12-26T12:00"))
    assert not nyse.is_open(at("2021-07-05T12:00"))  # Independence Day observed
    assert nyse.is_open(at("2021-07-06T12:00"))
    assert not nyse.is_open(at("2026-12-25T12:00"))


def test_a_calendar_outside_the_years_it_knows_is_closed() -> None:
    hong_kong = market_schedule(ScheduleSettings(calendar="XHKG"))  # holidays recorded to 2049
    noon = dt.datetime(2051, 3, 1, 4, 0, tzinfo=dt.timezone.utc).timestamp()
    assert not hong_kong.is_open(noon)
    assert hong_kong.next_open(noon) is None
    assert hong_kong.is_open(dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.timezone.utc).timestamp())  # 10:00 local


def test_a_24_7_calendar_never_closes() -> None:
    always = market_schedule(ScheduleSettings(calendar="24/7"))
    now = at("2026-11-28T03:00")
    assert always.is_open(now) and always.is_open(now + 86_400 * 3)
    # its daily sessions touch: no close between them, none known within the window
    assert always.next_close(now) is None


def test_cme_calendar_sessions_that_touch_close_only_at_the_holiday_early_close() -> None:
    """CMES sessions run 17:00 to 17:00 Chicago, each labelled by the day it closes: they touch, so
    the market does not close between them until Thanksgiving's early close (12:00)."""
    cme = market_schedule(ScheduleSettings(calendar="CMES"))
    assert cme.is_open(at("2026-11-24T18:00", CHICAGO))
    assert cme.is_open(at("2026-11-25T17:00", CHICAGO))
    assert cme.next_close(at("2026-11-24T18:00", CHICAGO)) == at("2026-11-26T12:00", CHICAGO)
    assert not cme.is_open(at("2026-11-26T12:00", CHICAGO))
    assert cme.next_open(at("2026-11-26T12:00", CHICAGO)) == at("2026-11-26T17:00", CHICAGO)


def test_unknown_calendar_code_is_refused_with_its_name() -> None:
    with pytest.raises(UnknownCalendar, match=r"orchestrator\.schedule\.calendar='NOPE' is not an exchange_calendars"):
        market_schedule(ScheduleSettings(calendar="NOPE"))


def test_a_calendar_alias_is_accepted() -> None:
    assert market_schedule(ScheduleSettings(calendar="NYSE")).is_open(at("2026-11-25T12:00"))


def test_hand_hours_same_day_with_dst() -> None:
    hours = market_schedule(ScheduleSettings(always_open=False, timezone="America/New_York"))
    assert hours.is_open(at("2026-03-06T09:30")) and hours.is_open(at("2026-03-09T09:30"))
    assert not hours.is_open(at("2026-03-09T09:29"))
    assert not hours.is_open(at("2026-03-07T12:00"))  # Saturday
    assert hours.next_open(at("2026-03-06T16:00")) == at("2026-03-09T09:30")
    assert hours.status(at("2026-03-09T10:00"))["next_close"] == "2026-03-09T16:00:00-04:00"


CME_STYLE = ScheduleSettings(always_open=False, timezone="America/Chicago", open=dt.time(17), close=dt.time(16),
                             weekdays=[6, 0, 1, 2, 3])  # opens Sunday..Thursday evening


def test_overnight_hours_sunday_evening_to_friday_afternoon() -> None:
    week = market_schedule(CME_STYLE)
    assert not week.is_open(at("2026-11-22T16:59", CHICAGO))  # Sunday before the open
    assert week.is_open(at("2026-11-22T17:00", CHICAGO))
    assert week.is_open(at("2026-11-23T02:00", CHICAGO))  # after midnight, same session
    assert week.next_close(at("2026-11-23T02:00", CHICAGO)) == at("2026-11-23T16:00", CHICAGO)
    assert not week.is_open(at("2026-11-25T16:30", CHICAGO))  # the daily hour between sessions
    assert week.is_open(at("2026-11-27T15:59", CHICAGO))  # Friday: Thursday evening's session
    assert not week.is_open(at("2026-11-27T16:00", CHICAGO))
    assert not week.is_open(at("2026-11-27T20:00", CHICAGO))  # no session opens on Friday
    assert not week.is_open(at("2026-11-28T12:00", CHICAGO))
    assert week.next_open(at("2026-11-27T16:00", CHICAGO)) == at("2026-11-29T17:00", CHICAGO)
    assert week.status(at("2026-11-28T12:00", CHICAGO))["schedule"] == "hours 17:00-16:00 overnight America/Chicago"


def test_explicit_holidays_skip_the_session_opening_that_day() -> None:
    days = market_schedule(ScheduleSettings(always_open=False, timezone="America/New_York",
                                            holidays=[dt.date(2026, 7, 3)]))
    assert not days.is_open(at("2026-07-03T12:00"))
    assert days.is_open(at("2026-07-02T12:00"))
    assert days.next_open(at("2026-07-02T16:00")) == at("2026-07-06T09:30")
    nights = market_schedule(CME_STYLE.model_copy(update={"holidays": [dt.date(2026, 12, 24)]}))
    assert nights.is_open(at("2026-12-24T15:00", CHICAGO))  # Wednesday evening's session runs to its close
    assert not nights.is_open(at("2026-12-24T18:00", CHICAGO))  # Thursday evening's does not open
    assert not nights.is_open(at("2026-12-25T10:00", CHICAGO))
    assert nights.next_open(at("2026-12-24T16:00", CHICAGO)) == at("2026-12-27T17:00", CHICAGO)


def test_always_open_asks_no_clock() -> None:
    always = market_schedule(ScheduleSettings())
    assert always.is_open(None) and always.is_open(0.0) and always.is_open(at("2026-12-25T12:00"))
    assert always.status(None) == {"schedule": "24/7 (always_open)", "open": True, "next_open": None,
                                   "next_close": None}


def test_no_market_time_yet_is_closed_for_a_schedule_with_hours(nyse: MarketSchedule) -> None:
    hours = market_schedule(ScheduleSettings(always_open=False))
    for schedule in (nyse, hours):
        assert not schedule.is_open(None)
        assert schedule.status(None) == {"schedule": schedule.name, "open": False, "next_open": None,
                                         "next_close": None}


def test_touching_sessions_merge() -> None:
    assert merged([(5.0, 9.0), (0.0, 5.0), (12.0, 13.0), (12.5, 14.0)]) == [(0.0, 9.0), (12.0, 14.0)]


def test_orchestrator_schedule_reads_the_data_clock_in_a_replay(tmp_path: Path) -> None:
    """The call site: the orchestrator's session reads the data's time in a replay (invariant 10),
    and before the first data there is no market time: closed."""
    settings = Settings(session={"clock": "data"}, orchestrator={"schedule": {"calendar": "XNYS"}})
    journal = Journal(tmp_path / "journal.sqlite")
    logs = SessionLogs(tmp_path / "logs")
    session = Session(journal, logs, begin_session(journal, logs, "fp"), SessionClock(settings.clock_mode()),
                      lambda *_: None)
    schedule = market_schedule(settings.orchestrator.schedule, session.market_time())
    assert session.market_time() is None and not schedule.is_open(session.market_time())
    session.clock.observe(int(at("2026-11-27T12:59") * 1e9))
    assert schedule.is_open(session.market_time())
    session.clock.observe(int(at("2026-11-27T13:00") * 1e9))  # the early close
    assert not schedule.is_open(session.market_time())
    journal.close()


def test_default_orchestrator_does_not_import_the_calendars() -> None:
    """pandas and numpy only for a configured calendar: the default 24/7 orchestrator stays small."""
    probe = ("import sys\n"
             "import services.orchestrator.main\n"
             "from services.orchestrator.market_calendar import market_schedule\n"
             "from services.settings import Settings\n"
             "assert market_schedule(Settings().orchestrator.schedule, None).is_open(None)\n"
             "print(sorted(m for m in ('exchange_calendars', 'pandas', 'numpy') if m in sys.modules))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    out = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
