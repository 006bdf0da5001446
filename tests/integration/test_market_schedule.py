"""The market schedule in the running daemon: auto_open waits for the schedule to say open, and the
session closes itself (flatten, end of day) at the schedule's close.

The hours are set from the wall clock at the test's start: an overnight session (open after close)
that opened "yesterday" two minutes from now and closes 50 s from now (the daemon's start on a
loaded host took 20 s of it once: a 30 s window closed before the session could open). The exchange
calendars themselves are tested at unit level (tests/unit/test_market_calendar.py): a daemon on a
real calendar would depend on the day the test runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from .daemon import Daemon, wait_until

CLOSES_IN_S = 50


def test_overnight_hours_open_at_start_and_close_the_session_by_themselves(daemon_factory: Callable[..., Daemon]) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    close = (now + dt.timedelta(seconds=CLOSES_IN_S)).time().replace(microsecond=0)
    open_ = (now + dt.timedelta(minutes=2)).time().replace(microsecond=0)
    schedule = {"always_open": False, "open": open_.isoformat(), "close": close.isoformat(),
                "weekdays": list(range(7))}
    d: Daemon = daemon_factory(config={"orchestrator": {"schedule": schedule}})
    d.wait_state("live", timeout=CLOSES_IN_S - 5)
    market = d.status()["market"]
    assert market["open"] is True, market
    assert market["schedule"].startswith(f"hours {open_:%H:%M}-{close:%H:%M}"), market
    assert market["next_close"] == dt.datetime.combine(
        (now + dt.timedelta(seconds=CLOSES_IN_S)).date(), close, dt.timezone.utc).isoformat(), market
    shown = d.tradectl("status")
    assert f"market: open ({market['schedule']}), closes {market['next_close']}" in shown.stdout, shown.stdout

    d.wait_state("shutdown", timeout=CLOSES_IN_S + 15)
    log = d.program_log("orchestrator").read_text(encoding="utf-8")
    said = [line.split(": ", 1)[1] for line in log.splitlines() if "orchestrator.schedule INFO" in line]
    assert said[0] == f"open until {market['next_close']}" and said[-1].startswith("closed until "), said
    [report] = wait_until(lambda: list((d.log_dir / "reports").glob("eod_*.json")), 10)
    assert "scheduled market close (flatten: flat)" in report.read_text(encoding="utf-8")
    after = d.status()["market"]
    assert after["open"] is False and after["next_open"] is not None, after
