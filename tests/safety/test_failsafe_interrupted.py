"""The FAILSAFE sequence when things are slow or break in its middle.

* The orchestrator is killed (kill -9) while the sequence is under way: it is journalled as pending,
  so the restarted orchestrator finishes it: incident report written, venue flat. The sequence is
  held in its first step by a hung engine (SIGSTOP: its command times out and is retried, which
  takes ``step_timeout_s`` x 3) so the kill lands in the middle for certain.
* A slow venue (500 ms added to order handling, ``fault latency``), with and without that kill:
  the sequence must still end flat at the venue, not merely "done".
* While the sequence waits on a hung process, the orchestrator goes on answering (state, status)
  and refuses to end the session until the sequence has finished.

Each test has its own daemon.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time

import pytest

from bus import CommandTimeout
from integration.daemon import Daemon, wait_until
from integration.e2e import (
    ask,
    incident_files,
    orchestrator_status,
    place_resting_orders,
    venue_fills,
    venue_open_orders,
    venue_positions,
    wait_trading_with_positions,
)


def _journalled_failsafe_pending(d: Daemon) -> str | None:
    """What the orchestrator's journal says (read directly: the orchestrator may be dead)."""
    path = d.state_dir / "orchestrator.sqlite"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        row = db.execute("SELECT counters FROM sessions ORDER BY updated DESC LIMIT 1").fetchone()
    return json.loads(row[0])["failsafe_pending"]


def _restarted_orchestrator(d: Daemon, old_pid: int) -> int:
    new_pid = d.wait_respawned("orchestrator", old_pid, timeout=20)
    wait_until(lambda: orchestrator_status(d)["pid"] == new_pid, 15, ignore=(CommandTimeout,), message=lambda: d.diagnostics())
    return new_pid


def test_orchestrator_killed_in_the_middle_of_the_failsafe_finishes_it_after_restart(make_daemon) -> None:
    d: Daemon = make_daemon()
    wait_trading_with_positions(d)
    resting = place_resting_orders(d)
    assert venue_positions(d) and venue_open_orders(d)
    orchestrator, engine = d.pid_of("orchestrator"), d.pid_of("engine")

    os.kill(engine, signal.SIGSTOP)  # a hung engine: "stop new orders: disable engine" times out
    try:
        reply = d.call("orchestrator", "failsafe", reason="kill -9 in the middle")
        assert reply.ok and reply.result["state"] == "failsafe", reply
        time.sleep(0.3)  # well inside the first step (0.5 s x 3 attempts)
        assert incident_files(d) == ([], []), "the sequence finished before the kill"
        os.kill(orchestrator, signal.SIGKILL)
    finally:
        os.kill(engine, signal.SIGCONT)
    # killed in the middle: the journal still holds the sequence as pending
    assert _journalled_failsafe_pending(d) == "kill -9 in the middle"

    _restarted_orchestrator(d, orchestrator)
    wait_until(lambda: orchestrator_status(d)["failsafe_pending"] is None, 20, message=lambda: d.diagnostics())
    assert d.state() == "failsafe"
    assert _journalled_failsafe_pending(d) is None
    (json_path,), (md_path,) = incident_files(d)
    report = json.loads(json_path.read_text())
    assert report["trigger"] == "kill -9 in the middle"
    assert report["ok"] is True, report["steps"]
    assert any("restored in FAILSAFE" in e["what"] for e in report["timeline"]), report["timeline"]
    assert set(resting) <= {o["client_order_id"] for o in report["before"]["open_orders"]}
    assert report["after"]["open_orders"] == []
    assert venue_positions(d) == {} and venue_open_orders(d) == []
    stats = d.stats_json()
    assert stats["failsafe_activations"] == 1 and stats["orchestrator_restarts"] == 1, stats


@pytest.mark.parametrize("kill_orchestrator", [False, True], ids=["uninterrupted", "orchestrator-killed"])
def test_failsafe_with_a_slow_venue_ends_flat(make_daemon, kill_orchestrator: bool) -> None:
    d: Daemon = make_daemon()
    wait_trading_with_positions(d)
    assert venue_positions(d)
    orchestrator = d.pid_of("orchestrator")
    assert ask(d, "venue_sim", "fault", fault="latency", value=500.0) == {"fault": "latency"}

    res = d.tradectl("failsafe", "--reason", "slow venue")
    assert res.returncode == 0, res.stderr
    failsafe_at = time.time_ns()
    if kill_orchestrator:
        os.kill(orchestrator, signal.SIGKILL)
        _restarted_orchestrator(d, orchestrator)
    wait_until(lambda: orchestrator_status(d)["failsafe_pending"] is None, 20, message=lambda: d.diagnostics())
    time.sleep(1.5)  # three times the venue's latency: every order sent has been executed by now

    json_files, _ = incident_files(d)
    assert len(json_files) == 1, json_files
    report = json.loads(json_files[0].read_text())
    fills = venue_fills(d)["fills"]
    after = [(f["client_order_id"], f["side"], f["qty"]) for f in fills if f["ts_ns"] >= failsafe_at]
    position = venue_positions(d)
    assert position == {} and venue_open_orders(d) == [], (
        f"not flat at the venue after the failsafe: positions {position}; fills after it began {after}; "
        f"steps {[(s['name'], s['ok'], s['detail']) for s in report['steps']]}")
    assert report["ok"] is True, report["steps"]


def test_the_orchestrator_answers_while_the_sequence_waits_on_a_hung_engine(make_daemon) -> None:
    """The sequence runs beside the orchestrator's loop: held in its first step by a hung engine
    (3 x 0.5 s), the orchestrator still answers ``status`` (which says the sequence is pending) and
    refuses ``reset`` (toward risk) until the sequence is done; ``failsafe`` again is accepted (a
    step toward safety is never refused); then the session ends normally."""
    d: Daemon = make_daemon()
    wait_trading_with_positions(d)
    engine = d.pid_of("engine")
    os.kill(engine, signal.SIGSTOP)
    try:
        reply = d.call("orchestrator", "failsafe", reason="hung engine")
        assert reply.ok and reply.result["state"] == "failsafe", reply
        time.sleep(0.2)  # inside the first step
        status = d.call("orchestrator", "status", timeout_s=1.0).result  # no retry: the loop answers
        assert status["state"] == "failsafe" and status["failsafe_pending"] == "hung engine", status
        refused = d.call("orchestrator", "reset", timeout_s=1.0, reason="operator")
        assert not refused.ok and "has not finished" in refused.error, refused
        again = d.call("orchestrator", "failsafe", timeout_s=1.0, reason="operator: again")
        assert again.ok and again.result["state"] == "failsafe", again
        assert orchestrator_status(d)["failsafe_pending"] == "hung engine", "the sequence ended too soon"
        wait_until(lambda: orchestrator_status(d)["failsafe_pending"] is None, 20, message=lambda: d.diagnostics())
    finally:
        os.kill(engine, signal.SIGCONT)
    (json_path,), _ = incident_files(d)
    report = json.loads(json_path.read_text())
    assert report["trigger"] == "hung engine"
    # the hung engine's step timed out (so the report is not ok); the gate's step closed the way
    assert [s["ok"] for s in report["steps"][:2]] == [False, True] and report["ok"] is False, report["steps"]
    wait_until(lambda: venue_positions(d) == {} and venue_open_orders(d) == [], 10, ignore=(CommandTimeout,))
    assert d.call("orchestrator", "shutdown", reason="operator").ok
    assert d.state() == "shutdown"
