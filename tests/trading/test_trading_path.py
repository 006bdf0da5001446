"""The trading path end to end on the synthetic feed: venue → data router → engine → exchange
manager (risk gate) → venue, with the demo strategies as they come (their default settings).

One daemon for the module; the tests run in file order and the last one ends the session
(``close`` without flattening) to compare positions and PnL on a book that no longer moves.
"""

from __future__ import annotations

import math
import re
import time

import pytest

from bus import CommandTimeout
from integration.daemon import Daemon, wait_until
from integration.e2e import (
    OPEN_STATUSES,
    ask,
    em_positions,
    em_stats,
    recompute_positions,
    tradectl_json,
    venue_fills,
    venue_open_orders,
)

MODULE_CONFIG = {
    # the two demo strategies with every setting at its default
    "engine": {"strategies": [{"kind": "mean_reversion"}, {"kind": "market_maker"}]},
    "orchestrator": {
        # The last test closes the session and compares positions that must stay as traded.
        "close_flatten": False,
        # A venue outage may degrade the session (every connector down); back to LIVE by itself
        # soon after the connector is healthy again, so trading resumes without an operator.
        "health": {"auto_recover_after_s": 2.0},
    },
}

GROWING = ("decisions_made", "orders_submitted", "fills")


def _stats(d: Daemon) -> dict:
    return d.stats_json()


def _stats_when(d: Daemon, condition) -> dict | None:
    stats = _stats(d)
    return stats if condition(stats) else None


def test_demo_strategies_trade_and_the_counters_grow(module_daemon: Daemon) -> None:
    d = module_daemon
    d.wait_state("live", timeout=30)
    first = wait_until(lambda: _stats_when(d, lambda s: all(s[k] > 0 for k in GROWING)), 30,
                       interval=0.25, message=lambda: str(_stats(d)))
    # ... and they keep growing while the session is live
    later = wait_until(lambda: _stats_when(d, lambda s: all(s[k] > first[k] for k in GROWING)), 30,
                       interval=0.25, message=lambda: f"first {first}, now {_stats(d)}")
    for key in ("realized_pnl", "unrealized_pnl", "fees"):
        assert isinstance(later[key], float) and math.isfinite(later[key]), (key, later)
    # every fill belongs to an order (the venue fills an order at once, never in pieces)
    assert later["orders_submitted"] >= later["fills"] > 0, later
    assert later["state"] == "live"
    assert later["engine_errors"] == 0, later
    assert set(later["positions"]) <= {"BTC-USD", "ETH-USD"}, later["positions"]


def test_tradectl_positions_orders_and_human_tables(module_daemon: Daemon) -> None:
    d = module_daemon
    positions = wait_until(lambda: tradectl_json(d, "positions")["positions"] or None, 30)
    assert set(positions) <= {"BTC-USD", "ETH-USD"}
    for symbol, p in positions.items():
        assert set(p) >= {"qty", "avg_price", "realized_pnl", "unrealized_pnl", "fees", "volume", "mark"}, p
        assert p["volume"] > 0, (symbol, p)

    open_orders = tradectl_json(d, "orders")["orders"]
    assert isinstance(open_orders, list)
    assert all(o["status"] in OPEN_STATUSES for o in open_orders), open_orders
    every = tradectl_json(d, "orders", "--all")["orders"]
    assert any(o["status"] == "filled" for o in every), every
    ids = [o["client_order_id"] for o in every]
    assert len(ids) == len(set(ids)), "a client order id appears twice in the book"
    assert {o["strategy"] for o in every} <= {"meanrev", "mm"}, {o["strategy"] for o in every}

    # the human tables
    table = d.tradectl("positions")
    assert table.returncode == 0, table.stderr
    assert "positions" in table.stdout and "avg price" in table.stdout
    for symbol in positions:
        assert symbol in table.stdout, table.stdout
    table = d.tradectl("orders", "--all")
    assert table.returncode == 0, table.stderr
    assert "orders" in table.stdout and ("filled" in table.stdout or "cancel" in table.stdout), table.stdout
    table = d.tradectl("stats")
    assert table.returncode == 0, table.stderr
    for key in ("decisions_made", "orders_submitted", "fills", "realized_pnl", "unrealized_pnl"):
        assert key in table.stdout, table.stdout
    table = d.tradectl("status")
    assert table.returncode == 0, table.stderr
    for name in ("orchestrator", "exchange_manager", "engine", "data_router", "safety"):
        assert name in table.stdout, table.stdout


RECONNECT_LINE = re.compile(r"reconnect attempt (\d+) in ([\d.]+)s")


def test_venue_disconnect_is_retried_with_backoff_and_trading_resumes(module_daemon: Daemon) -> None:
    d = module_daemon
    d.wait_state("live", timeout=30)
    before = em_stats(d)
    sim = before["connectors"]["sim"]
    assert sim["connected"] is True, sim
    log_offset = d.program_log("exchange_manager").stat().st_size

    # The venue closes its sockets right after answering, so the answer itself may be lost with
    # them: retry (the same command id, so the fault is injected once) until the venue is back.
    reply = d.call("venue_sim", "fault", fault="drop_connection", duration_s=2.0, timeout_s=1.0, retries=4)
    assert reply.ok and reply.result == {"fault": "drop_connection"}, reply
    # the connector notices the silence, drops the link and reconnects (counted) once the venue is back
    back = wait_until(lambda: (c := em_stats(d)["connectors"]["sim"])["connected"] and c["reconnects"] > sim["reconnects"]
                      and c, 20, interval=0.1, ignore=(CommandTimeout,), message=lambda: d.diagnostics())
    assert back["reconnects"] > sim["reconnects"] >= 0
    # reconnected, the book of record was reconciled with the venue again
    wait_until(lambda: em_stats(d)["reconciliations"] > before["reconciliations"] and em_stats(d)["reconciled"], 10)

    # retried with exponential backoff: each attempt waits about twice as long as the one before
    text = d.program_log("exchange_manager").read_bytes()[log_offset:].decode(errors="replace")
    attempts = [(int(n), float(s)) for n, s in RECONNECT_LINE.findall(text)]
    assert attempts, text[-3000:]
    assert attempts[0][0] == 1, attempts
    for n, delay in attempts:
        nominal = min(5.0, 0.1 * 2 ** (n - 1))  # reconnect_initial_s, reconnect_max_s (defaults)
        assert nominal * 0.8 - 0.01 <= delay <= nominal * 1.2 + 0.01, (n, delay, attempts)

    # trading resumes: the session is (or gets back to) LIVE and new fills arrive
    d.wait_state("live", timeout=30)
    fills = _stats(d)["fills"]
    wait_until(lambda: _stats(d)["fills"] > fills, 30, interval=0.25, message=lambda: str(_stats(d)))
    assert em_stats(d)["connectors"]["sim"]["connected"] is True


def _quiet(d: Daemon) -> tuple[int, int]:
    return len(venue_fills(d)["fills"]), em_stats(d)["fills"]


def test_positions_and_pnl_equal_a_recomputation_from_the_venue_fills(module_daemon: Daemon) -> None:
    d = module_daemon
    d.wait_state("live", timeout=30)
    wait_until(lambda: em_positions(d), 30)
    # End the session without flattening: the engine and the gate stop, the positions stay.
    wait_until(lambda: em_stats(d)["connectors"]["sim"]["connected"], 15)
    res = d.tradectl("close")
    assert res.returncode == 0, res.stderr
    assert d.state() == "shutdown"
    assert ask(d, "exchange_manager", "cancel_all")["venues"] == 1
    wait_until(lambda: not venue_open_orders(d), 10, message=lambda: str(venue_open_orders(d)))

    # nothing moves any more: the venue's fills and the ones the book of record applied agree
    def settled() -> tuple[int, int] | None:
        first = _quiet(d)
        time.sleep(0.5)
        second = _quiet(d)
        return second if first == second and second[0] == second[1] else None

    n_venue, n_em = wait_until(settled, 15, interval=0.1)
    assert n_venue > 0

    venue = venue_fills(d)
    assert venue["duplicate_ids"] == 0
    assert len(venue["client_order_ids"]) == len(set(venue["client_order_ids"]))
    fill_ids = [f["fill_id"] for f in venue["fills"]]
    assert len(fill_ids) == len(set(fill_ids))
    expected = recompute_positions(venue["fills"])
    ours = em_positions(d)
    theirs = ask(d, "venue_sim", "positions")["positions"]
    assert set(ours) == set(expected) == set(theirs), (ours, expected, theirs)
    for symbol, exp in expected.items():
        for key in ("qty", "avg_price", "realized_pnl", "fees", "volume"):
            assert ours[symbol][key] == pytest.approx(exp[key], rel=1e-9, abs=1e-9), (symbol, key, ours[symbol], exp)
            assert theirs[symbol][key] == pytest.approx(exp[key], rel=1e-9, abs=1e-9), (symbol, key, theirs[symbol], exp)
        mark = ours[symbol]["mark"]
        assert mark is not None and mark > 0
        assert ours[symbol]["unrealized_pnl"] == pytest.approx(exp["qty"] * (mark - exp["avg_price"]), abs=1e-6)

    # the session counters say the same (they come from the exchange manager's heartbeat)
    stats = wait_until(lambda: _stats_when(d, lambda s: s["fills"] == n_em), 5)
    assert stats["realized_pnl"] == pytest.approx(sum(e["realized_pnl"] for e in expected.values()), abs=1e-6)
    assert stats["fees"] == pytest.approx(sum(e["fees"] for e in expected.values()), abs=1e-6)
    assert stats["positions"] == pytest.approx({s: e["qty"] for s, e in expected.items()}, abs=1e-9)
    # and tradectl shows the same book
    shown = tradectl_json(d, "positions")["positions"]
    for symbol, exp in expected.items():
        assert shown[symbol]["qty"] == pytest.approx(exp["qty"], abs=1e-9)
        assert shown[symbol]["realized_pnl"] == pytest.approx(exp["realized_pnl"], rel=1e-9, abs=1e-9)
