"""Sessions with a start and an end (services/orchestrator/session_lifecycle.py, session_fingerprint.py)
and counters per session (services/exchange_manager/session_ledger.py).

* A graceful stop of the whole daemon (``supervisorctl shutdown``, what Ctrl-C of ``make run`` does)
  ends the session: SHUTDOWN with the reason, end-of-day report, a line in the session log; the
  next start is a new session and goes LIVE in seconds. With ``session.resume_after_stop`` the
  next start resumes it.
* A restart of the orchestrator alone resumes the session.
* A start under a different configuration ends the unfinished session ("configuration changed",
  its end-of-day report) and starts a new one; ``tradectl status`` shows the fingerprint.
* The end-of-day report's summary is the sum of its per-symbol table, after a real session with
  fills in three symbols; a second session starts its counters from zero while it holds the position
  carried over, reported as an opening position at its mark.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from typing import Any

import pytest

from bus import CommandTimeout
from services.positions import Position

from .daemon import Daemon, wait_until

NO_STRATEGIES = {"engine": {"strategies": []}}  # the test's own orders only: every count is known
RAW_FLOAT = re.compile(r"\d\.\d{9,}")  # float dust such as 0.009999999999999997


def _journal(d: Daemon) -> list[tuple[str, int, str, str, str]]:
    db = sqlite3.connect(d.state_dir / "orchestrator.sqlite")
    try:
        return db.execute("SELECT session_id, no, old, new, reason FROM transitions ORDER BY ts, no").fetchall()
    finally:
        db.close()


def _reports(d: Daemon, session_id: str) -> tuple[dict[str, Any], str]:
    path = wait_until(lambda: next(iter((d.log_dir / "reports").glob(f"eod_*_{session_id}.json")), None), 15,
                      message=lambda: d.diagnostics())
    return json.loads(path.read_text()), path.with_suffix(".md").read_text()


def _live_log(d: Daemon) -> str:
    return "\n".join(p.read_text() for p in sorted(d.session_log_dir.glob("live_trading_*.log")))


def _stop_daemon(d: Daemon) -> None:
    res = d.supervisorctl("shutdown", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert d.proc is not None
    d.proc.wait(timeout=60)
    assert not d.leftover_processes()


def _start_to_live(d: Daemon) -> float:
    t0 = time.monotonic()
    d.start(wait=False)
    wait_until(lambda: d.state() == "live", 60, interval=0.05, ignore=(CommandTimeout, OSError),
               message=lambda: d.diagnostics())
    return time.monotonic() - t0


def _order(d: Daemon, symbol: str, side: str, qty: float) -> str:
    return d.request("exchange_manager", "submit_order", symbol=symbol, side=side, qty=qty)["client_order_id"]


def _venue_fills(d: Daemon) -> list[dict[str, Any]]:
    return d.request("venue_sim", "fills_since", after_seq=0, limit=500)["fills"]


@pytest.mark.daemon(config=NO_STRATEGIES)
def test_a_graceful_stop_of_the_daemon_ends_the_session_and_the_next_start_is_a_new_one(daemon: Daemon) -> None:
    d = daemon
    d.wait_trading()
    first = d.status()["session_id"]
    _order(d, "ETH-USD", "buy", 0.1)
    wait_until(lambda: d.stats_json()["fills"] == 1, 10)
    _stop_daemon(d)
    ended = [row for row in _journal(d) if row[0] == first]
    assert ended[-1][3] == "shutdown" and ended[-1][4].startswith("daemon stopped"), ended
    report, md = _reports(d, first)
    assert report["ended_because"].startswith("daemon stopped")
    assert report["per_symbol"]["ETH-USD"]["fills"] == 1 and report["totals"]["fills"] == 1
    assert "Daemon stopping" in _live_log(d) and f"Session {first} ended" in _live_log(d)
    took = _start_to_live(d)
    second = d.status()["session_id"]
    assert second != first
    assert took < 20, took  # a new session: STARTUP → READY → LIVE, no resumed DEGRADED
    stats = d.stats_json()
    assert stats["session_id"] == second and stats["fills"] == 0 and stats["orders_submitted"] == 0
    # the book holds what the venue holds (the simulator is one of the daemon's programs: it starts
    # again with an empty account, and the new session opens on that, not on the journal's 0.1)
    venue = d.request("venue_sim", "positions")["positions"]
    assert stats["positions"].get("ETH-USD", 0.0) == pytest.approx(venue.get("ETH-USD", {}).get("qty", 0.0))
    opening = d.request("exchange_manager", "session_stats")["symbols"]
    assert opening.get("ETH-USD", {}).get("opening_qty", 0.0) == pytest.approx(stats["positions"].get("ETH-USD", 0.0))


@pytest.mark.daemon(config={**NO_STRATEGIES, "session": {"resume_after_stop": True}})
def test_resume_after_stop_keeps_the_session_open_across_a_daemon_stop(daemon: Daemon) -> None:
    d = daemon
    d.wait_state("live")
    first = d.status()["session_id"]
    _stop_daemon(d)
    assert _journal(d)[-1][3] == "live"
    assert "session.resume_after_stop" in _live_log(d)
    _start_to_live(d)
    assert d.status()["session_id"] == first


@pytest.mark.daemon(config=NO_STRATEGIES)
def test_a_restart_of_the_orchestrator_alone_resumes_the_session(daemon: Daemon) -> None:
    d = daemon
    d.wait_state("live")
    first = d.status()["session_id"]
    d.restart("orchestrator")
    d.wait_state("live")
    assert d.status()["session_id"] == first
    assert "Orchestrator stopped alone (supervisord is RUNNING" in _live_log(d)
    assert not list((d.log_dir / "reports").glob("eod_*"))


@pytest.mark.daemon(config=NO_STRATEGIES)
def test_a_start_with_another_configuration_starts_a_new_session(daemon: Daemon) -> None:
    d = daemon
    d.wait_state("live")
    before = d.status_json()
    first, print_before = before["session_id"], before["session_fingerprint"]
    assert re.fullmatch(r"[0-9a-f]{12}", print_before)
    assert f"fingerprint {print_before}" in d.tradectl("status").stdout
    # a trading limit changes; the orchestrator starts again under it
    text = d.toml_path.read_text()
    d.toml_path.write_text(text + "\n[exchange_manager.risk]\nmax_order_qty = 8.0\n")
    d.restart("orchestrator")
    after = wait_until(lambda: (st := d.status())["session_id"] != first and st, 20, ignore=(CommandTimeout,))
    assert after["session_fingerprint"] != print_before
    old = [row for row in _journal(d) if row[0] == first]
    assert old[-1][3] == "shutdown" and old[-1][4].startswith("configuration changed"), old
    report, _ = _reports(d, first)
    assert report["ended_because"].startswith("configuration changed")
    assert f"Session {first} ended at start" in _live_log(d)
    d.wait_state("live")


@pytest.mark.daemon(config=NO_STRATEGIES)
def test_the_report_summary_is_the_sum_of_its_table_and_the_next_session_counts_from_zero(daemon: Daemon) -> None:
    d = daemon
    d.wait_trading()
    first = d.status()["session_id"]
    # fills in three symbols, a position left in two, one order refused at the gate (off the lot grid)
    for symbol, side, qty in (("BTC-USD", "buy", 0.02), ("BTC-USD", "sell", 0.01), ("ETH-USD", "buy", 0.3),
                              ("ETH-USD", "sell", 0.1), ("SOL-USD", "buy", 2.0), ("SOL-USD", "sell", 2.0)):
        _order(d, symbol, side, qty)
    refused = d.call("exchange_manager", "submit_order", symbol="SOL-USD", side="buy", qty=0.0005)
    assert not refused.ok
    wait_until(lambda: d.stats_json()["fills"] == 6, 15, message=lambda: str(d.stats_json()))
    assert d.tradectl("shutdown").returncode == 0
    report, md = _reports(d, first)
    rows, totals = report["per_symbol"], report["totals"]
    assert set(rows) == {"BTC-USD", "ETH-USD", "SOL-USD"}
    for total, column in (("orders_submitted", "orders"), ("orders_rejected", "rejected"), ("fills", "fills"),
                          ("volume", "volume"), ("fees", "fees"), ("realized_pnl", "realized_pnl"),
                          ("unrealized_pnl", "unrealized_pnl")):
        assert totals[total] == pytest.approx(sum(row[column] for row in rows.values())), total
    assert (totals["orders_submitted"], totals["orders_rejected"], totals["fills"]) == (6, 1, 6)
    # realized PnL and fees per symbol, recomputed from the venue's own fills
    for symbol in rows:
        expected = Position()
        for fill in _venue_fills(d):
            if fill["symbol"] == symbol:
                expected.apply_fill(1 if fill["side"] == "buy" else -1, fill["qty"], fill["price"], fill["fee"])
        assert rows[symbol]["realized_pnl"] == pytest.approx(expected.realized_pnl, abs=1e-9), symbol
        assert rows[symbol]["fees"] == pytest.approx(expected.fees, abs=1e-9), symbol
        assert rows[symbol]["final_qty"] == pytest.approx(expected.qty, abs=1e-9), symbol
    assert not RAW_FLOAT.search(md), md
    assert "| BTC-USD | 0 |" in md  # opened flat in this first session

    # The next session: the orchestrator starts again (the last one ended); counters from zero,
    # the positions carried over as opening positions at their mark.
    d.restart("orchestrator")
    d.wait_trading()
    second = d.status()["session_id"]
    assert second != first
    stats = d.stats_json()
    assert (stats["orders_submitted"], stats["orders_rejected"], stats["fills"]) == (0, 0, 0)
    assert stats["realized_pnl"] == 0 and stats["fees"] == 0 and stats["volume"] == 0
    assert stats["positions"]["BTC-USD"] == pytest.approx(0.01) and stats["positions"]["ETH-USD"] == pytest.approx(0.2)
    opening = d.request("exchange_manager", "session_stats")
    assert opening["session_id"] == second
    btc = opening["symbols"]["BTC-USD"]
    assert btc["opening_qty"] == pytest.approx(0.01) and btc["opening_mark"] is not None
    assert btc["fills"] == 0 and btc["orders"] == 0
    # closing the carried position counts from its opening mark, in this session only
    _order(d, "BTC-USD", "sell", 0.01)
    wait_until(lambda: d.stats_json()["fills"] == 1, 10)
    row = d.request("exchange_manager", "session_stats")["symbols"]["BTC-USD"]
    sell = [f for f in _venue_fills(d) if f["symbol"] == "BTC-USD"][-1]
    assert row["realized_pnl"] == pytest.approx(0.01 * (sell["price"] - btc["opening_mark"]) - sell["fee"], abs=1e-9)
    assert d.stats_json()["realized_pnl"] == pytest.approx(row["realized_pnl"])
    # and an exchange manager restarted within the session neither loses nor repeats it
    old = d.kill9("exchange_manager")
    d.wait_respawned("exchange_manager", old)
    again = wait_until(lambda: (r := d.call("exchange_manager", "session_stats")).ok and r.result, 20,
                       ignore=(CommandTimeout,))
    assert again["session_id"] == second
    assert again["symbols"]["BTC-USD"]["realized_pnl"] == pytest.approx(row["realized_pnl"])
    assert again["totals"]["fills"] == 1

