"""The operator's failsafe and the dead-man switch, on one daemon (each test starts from LIVE).

* ``tradectl failsafe --reason test`` on a trading session: flat at the venue, incident report
  written, within a second of the command returning.
* The orchestrator stopped: within the dead-man timeout (1 s here) plus a margin, the engine and the
  exchange manager's gate stop opening positions by themselves, and say so in their status.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from bus import CommandTimeout
from integration.daemon import Daemon, wait_until
from integration.e2e import (
    ask,
    em_stats,
    ensure_live,
    incident_files,
    orchestrator_status,
    place_resting_orders,
    submit,
    venue_open_orders,
    venue_positions,
    wait_routed,
    wait_trading_with_positions,
)

DEADMAN_S = 1.0  # engine.deadman_timeout_s and exchange_manager.deadman_timeout_s (conftest)
MARGIN_S = 1.0


def test_tradectl_failsafe_is_flat_at_the_venue_with_a_report_within_a_second(module_daemon: Daemon) -> None:
    d = module_daemon
    wait_trading_with_positions(d)
    resting = place_resting_orders(d)
    assert venue_positions(d) and len(venue_open_orders(d)) >= len(resting)

    res = d.tradectl("failsafe", "--reason", "test")
    returned = time.monotonic()
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "failsafe: done; session is failsafe"

    def done() -> bool:
        json_files, md_files = incident_files(d)
        return bool(json_files and md_files) and not venue_positions(d) and not venue_open_orders(d)

    wait_until(done, 1.0, interval=0.02,
               message=lambda: f"{incident_files(d)}, venue {venue_positions(d)} {venue_open_orders(d)}")
    elapsed = time.monotonic() - returned
    assert elapsed <= 1.0, elapsed
    (json_path,), _ = incident_files(d)
    report = json.loads(json_path.read_text())
    assert report["trigger"] == "test"
    assert report["ok"] is True, report["steps"]
    assert set(resting) <= {o["client_order_id"] for o in report["before"]["open_orders"]}
    assert d.state() == "failsafe"


def test_tradectl_failsafe_wait_returns_once_the_venue_is_verified_flat(module_daemon: Daemon) -> None:
    d = module_daemon
    ensure_live(d)
    wait_trading_with_positions(d)
    place_resting_orders(d)
    res = d.tradectl("failsafe", "--reason", "wait test", "--wait", "--timeout", "30")
    assert res.returncode == 0, res.stderr
    assert "sequence ended, venue verified flat" in res.stdout, res.stdout
    # when it returns, the venue holds nothing: no waiting after the command
    assert not venue_positions(d) and not venue_open_orders(d)
    assert orchestrator_status(d)["failsafe_pending"] is None


def _trading_allowed(d: Daemon, service: str) -> dict:
    return ask(d, service, "status")["stats"]


def _stop_orchestrator_until_the_deadman_trips(d: Daemon) -> None:
    ensure_live(d)
    for service in ("engine", "exchange_manager"):
        wait_until(lambda: _trading_allowed(d, service)["trading_allowed"], 10)
    wait_routed(d, "SOL-USD")
    trips = {s: _trading_allowed(d, s)["deadman_trips"] for s in ("engine", "exchange_manager")}

    res = d.supervisorctl("stop", d.qualified("orchestrator"))
    stopped = time.monotonic()
    assert res.returncode == 0, res.stdout + res.stderr

    def tripped() -> bool:
        return all(not (st := _trading_allowed(d, s))["trading_allowed"] and st["deadman_trips"] > trips[s]
                   for s in ("engine", "exchange_manager"))

    wait_until(tripped, DEADMAN_S + MARGIN_S, interval=0.05, ignore=(CommandTimeout,),
               message=lambda: str({s: _trading_allowed(d, s) for s in ("engine", "exchange_manager")}))
    assert time.monotonic() - stopped <= DEADMAN_S + MARGIN_S


def _start_orchestrator(d: Daemon) -> None:
    d.start_programs("orchestrator")
    wait_until(lambda: d.call("orchestrator", "state").ok, 15, ignore=(CommandTimeout,))


def test_deadman_switch_stops_opening_orders_when_the_orchestrator_is_gone(module_daemon: Daemon) -> None:
    d = module_daemon
    try:
        _stop_orchestrator_until_the_deadman_trips(d)
        for service in ("engine", "exchange_manager"):
            stats = _trading_allowed(d, service)
            assert stats["trading_allowed"] is False and stats["deadman_trips"] >= 1, stats
            assert stats["session_state"] == "live", stats  # the last word heard, too old to trade on
            assert stats["orchestrator_age_s"] >= DEADMAN_S, stats
        reply = submit(d, "SOL-USD", "buy", 0.1)
        assert not reply.ok, f"an opening order passed the gate with no orchestrator: {reply.result}"
        assert "no word from the orchestrator" in reply.error, reply.error
        # the engine sends nothing more: the exchange manager's order count stands still
        submitted = em_stats(d)["orders_submitted"]
        time.sleep(1.0)
        assert em_stats(d)["orders_submitted"] == submitted
    finally:
        _start_orchestrator(d)


def test_trading_resumes_when_the_stopped_orchestrator_is_back(module_daemon: Daemon) -> None:
    """The journalled LIVE session resumes with the orchestrator, and trading with it."""
    d = module_daemon
    try:
        _stop_orchestrator_until_the_deadman_trips(d)
    finally:
        _start_orchestrator(d)
    for service in ("engine", "exchange_manager"):
        wait_until(lambda: _trading_allowed(d, service)["trading_allowed"], 10)
    time.sleep(1.0)  # a few of the restarted orchestrator's ticks and health checks
    status = orchestrator_status(d)
    assert status["state"] == "live", (
        f"the session was LIVE when the orchestrator stopped and is {status['state']} after its restart: "
        + _last_transition(d))
    assert d.stats_json()["orchestrator_restarts"] >= 1


def _last_transition(d: Daemon) -> str:
    log = Path(orchestrator_status(d)["session_logs"]["live_trading"]).read_text(encoding="utf-8")
    lines = [line for line in log.splitlines() if "State transition" in line]
    return lines[-1] if lines else "(no transition logged since the restart)"
