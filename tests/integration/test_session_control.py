"""Changing the session with tradectl: open, failsafe, reset, recover; auto_open at start-up.

Each test gets its own daemon (function-scoped ``daemon`` fixture).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .daemon import Daemon, wait_until

NO_AUTO_OPEN = pytest.mark.daemon(config={"orchestrator": {"auto_open": False}})


@NO_AUTO_OPEN
def test_open_goes_live_and_a_second_open_is_refused(daemon: Daemon) -> None:
    daemon.wait_state("ready", timeout=15)
    res = daemon.tradectl("open")
    assert res.returncode == 0, res.stderr
    assert "live" in res.stdout
    assert daemon.state() == "live"
    again = daemon.tradectl("open")
    assert again.returncode == 1, (again.stdout, again.stderr)
    assert again.stdout == ""
    assert "refused" in again.stderr and "open needs ready" in again.stderr, again.stderr
    assert daemon.state() == "live"


@pytest.mark.daemon(start=False)
def test_auto_open_goes_live_within_30s_of_start(daemon: Daemon) -> None:
    daemon.start(wait=False)
    assert daemon.started_at is not None
    daemon.wait_state("live", timeout=30)
    elapsed = time.monotonic() - daemon.started_at
    assert elapsed < 30, elapsed
    live_log = daemon.status()["session_logs"]["live_trading"]
    text = Path(live_log).read_text(encoding="utf-8")
    assert "State transition: READY → LIVE" in text, text


def test_failsafe_reset_open_cycle(daemon: Daemon) -> None:
    d = daemon
    d.wait_state("live", timeout=30)
    res = d.tradectl("failsafe", "--reason", "test")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "failsafe: done; session is failsafe"
    assert d.tradectl("state").stdout == "failsafe\n"
    # in FAILSAFE a failsafe is a round of the sequence now, never refused (issue 11: it was)
    again = d.tradectl("failsafe", "--reason", "test again")
    assert again.returncode == 0 and again.stdout.strip() == "failsafe: done; session is failsafe", again.stderr
    # reset waits for the failsafe sequence; it finishes in well under a second
    wait_until(lambda: d.status()["failsafe_pending"] is None, 10)
    res = d.tradectl("reset")
    assert res.returncode == 0, res.stderr
    assert d.tradectl("state").stdout == "ready\n"
    # after a reset the session waits for an explicit open (auto_open applies at start-up only)
    time.sleep(0.5)
    assert d.state() == "ready"
    res = d.tradectl("open")
    assert res.returncode == 0, res.stderr
    assert d.tradectl("state").stdout == "live\n"
    assert d.stats_json()["failsafe_activations"] == 1
    # recover when not degraded: refused, nothing changes
    res = d.tradectl("recover")
    assert res.returncode == 1 and "refused" in res.stderr, (res.stdout, res.stderr)
    assert d.state() == "live"
    log = Path(d.status()["session_logs"]["live_trading"]).read_text(encoding="utf-8")
    for transition in ("LIVE → DEGRADED", "DEGRADED → FAILSAFE", "FAILSAFE → READY", "READY → LIVE"):
        assert f"State transition: {transition}" in log, (transition, log)


@NO_AUTO_OPEN
def test_operator_commands_are_recorded_in_the_governance_log(daemon: Daemon) -> None:
    """session_logs.py: governance_events_<ts>.log holds "governance: limits, refusals, operator
    commands"; an operator's open, and a refused open, must appear there."""
    d = daemon
    d.wait_state("ready", timeout=15)
    assert d.tradectl("open").returncode == 0
    assert d.tradectl("open").returncode == 1
    path = d.status()["session_logs"]["governance_events"]
    text = Path(path).read_text(encoding="utf-8")
    assert "open" in text.lower() and "refus" in text.lower(), f"{path} is {text!r}"
