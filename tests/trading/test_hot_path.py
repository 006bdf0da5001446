"""The hot path's shortcuts keep their meaning (issue 16), on the real daemon.

* The exchange manager reads market data on a timer (``marks_read_every_s``), not at each quote,
  and reads what is waiting before the gate checks an order: a price that moved a moment ago is the
  mark the collar judges, however long the timer.
* The engine's strategies see the latest quote of a symbol when several wait (``conflate_quotes``):
  an engine stopped for a second resumes on the market as it is, counting what it skipped.
"""

from __future__ import annotations

import os
import signal
import time

import proto
from integration.daemon import Daemon, wait_until
from integration.e2e import Collector, em_stats, submit

QUOTES_PER_S = 400
MODULE_CONFIG = {
    # one strategy on BTC-USD so the engine subscribes to it; it never orders (every 10^9 quotes)
    "engine": {"strategies": [{"kind": "probe", "symbol": "BTC-USD", "every_n": 1_000_000_000,
                                  "offset_pct": 1.0}]},
    "exchange_manager": {"marks_read_every_s": 1.0, "risk": {"price_collar_pct": 2.0}},
    "venue_sim": {"quotes_per_s": QUOTES_PER_S, "volatility_bps_per_sqrt_s": 1.0},
    # the jump below is no anomaly here: what is tested is the gate's mark, not the safety layer
    "safety": {"price_jump_floor_pct": 40.0, "price_jump_cap_pct": 50.0, "price_jump_critical_pct": 60.0},
}


def _mid(quote: proto.Quote) -> float:
    return (quote.bid + quote.ask) / 2


def test_the_gate_judges_an_order_on_the_latest_mark(module_daemon: Daemon) -> None:
    d = module_daemon
    d.wait_trading()
    with Collector(d, "data_router", [proto.topics.market_data("BTC-USD")]) as quotes:
        before = _mid(wait_until(lambda: (quotes.bodies(proto.Quote) or [None])[-1], 10))
        d.request("venue_sim", "fault", fault="jump_price", symbol="BTC-USD", value=5.0)
        moved = wait_until(lambda: next((q for q in quotes.bodies(proto.Quote) if _mid(q) > before * 1.04), None), 10,
                           message=lambda: f"no quote 4 % over {before}")
    # 5 % over the mark the exchange manager's timer last read (up to a second ago): refused by the
    # 2 % collar if the gate judged it on that mark
    reply = submit(d, "BTC-USD", "buy", 0.001, order_type="limit", limit_price=round(moved.bid, 2))
    assert reply.ok, reply.error
    assert em_stats(d)["gate"]["refusals"].get("price_collar", 0) == 0


def test_an_engine_behind_the_feed_decides_on_the_latest_quote(module_daemon: Daemon) -> None:
    d = module_daemon
    d.wait_state("live", timeout=30)
    before = d.request("engine", "status")["stats"]["quotes_conflated"]
    pid = d.pid_of("engine")
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(1.0)  # ~400 quotes wait in its socket
    finally:
        os.kill(pid, signal.SIGCONT)
    # read in a few wake-ups at most: nearly all of them skipped, each counted
    conflated = wait_until(lambda: (n := d.request("engine", "status")["stats"]["quotes_conflated"] - before)
                           >= QUOTES_PER_S // 2 and n, 10,
                           message=lambda: str(d.request("engine", "status")["stats"]))
    assert conflated < 2 * QUOTES_PER_S
