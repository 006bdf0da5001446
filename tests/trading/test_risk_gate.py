"""The pre-trade risk gate, through the exchange manager's ``submit_order``: each kind of breach is
refused with its reason, and each refusal is also published as a governance event.

One daemon for the module, with small limits and no strategy (only the test's orders reach the
gate). It starts with ``auto_open = false``: the first test finds trading disabled before the open;
the last one shuts the session down and finds it disabled again. Prices are the synthetic feed's
(BTC-USD about 40,000, ETH-USD about 3,000, SOL-USD about 150), steady enough for these limits.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import proto
from integration.daemon import Daemon, wait_until
from integration.e2e import Collector, ask, em_positions, em_stats, submit, venue_open_orders, wait_routed

LIMITS = {
    "max_order_qty": 1.0,
    "max_order_notional": 30_000.0,  # one BTC (about 40,000) is over it, one ETH is not
    "max_position": 2.0,
    "max_gross_exposure": 5_000.0,  # two SOL (about 300) and one ETH (about 3,000) fit, two ETH do not
    "max_orders_per_s": 5,
}
MODULE_CONFIG = {
    "orchestrator": {"auto_open": False},
    "engine": {"strategies": []},
    "exchange_manager": {"risk": LIMITS},
    "venue_sim": {"volatility_bps_per_sqrt_s": 1.0},
}


@pytest.fixture(scope="module")
def governance(module_daemon: Daemon) -> Any:
    """Every governance event the exchange manager publishes from the module's start."""
    with Collector(module_daemon, "exchange_manager", [proto.topics.GOVERNANCE]) as collector:
        yield collector


@pytest.fixture
def live(module_daemon: Daemon) -> Daemon:
    d = module_daemon
    if d.state() == "ready":
        assert d.tradectl("open").returncode == 0
    d.wait_state("live", timeout=15)
    wait_until(lambda: em_stats(d)["trading_allowed"], 10)
    for symbol in ("BTC-USD", "ETH-USD", "SOL-USD"):
        wait_routed(d, symbol)
    return d


def _refused(d: Daemon, governance: Collector, kind: str, symbol: str, side: str, qty: float,
             **extra: Any) -> str:
    """Submit; check it is refused and that the same refusal was published as a governance event."""
    before = em_stats(d)["gate"]["refusals"].get(kind, 0)
    seen = len(governance.bodies(proto.GovernanceEvent))
    reply = submit(d, symbol, side, qty, **extra)
    assert not reply.ok, f"{kind}: the gate let {side} {qty} {symbol} {extra} through: {reply.result}"
    event = wait_until(
        lambda: next((e for e in governance.bodies(proto.GovernanceEvent)[seen:]
                      if e.kind == f"order_refused.{kind}"), None), 5,
        message=lambda: f"governance events: {governance.bodies(proto.GovernanceEvent)[seen:]}")
    assert event.reason == reply.error, (event, reply.error)
    assert event.symbol == symbol
    assert event.detail["side"] == side and event.detail["qty"] == qty, event.detail
    assert em_stats(d)["gate"]["refusals"].get(kind, 0) == before + 1
    return reply.error


def _filled(d: Daemon, symbol: str, side: str, qty: float) -> None:
    before = em_positions(d).get(symbol, {}).get("qty", 0.0)
    reply = submit(d, symbol, side, qty)
    assert reply.ok, reply.error
    target = before + (qty if side == "buy" else -qty)
    wait_until(lambda: abs(em_positions(d).get(symbol, {}).get("qty", 0.0) - target) < 1e-9, 5,
               message=lambda: str(em_positions(d)))


def test_refused_while_trading_is_disabled_before_the_open(module_daemon: Daemon, governance: Collector) -> None:
    d = module_daemon
    d.wait_state("ready", timeout=15)
    wait_routed(d, "SOL-USD")
    assert em_stats(d)["trading_allowed"] is False
    reason = _refused(d, governance, "trading_disabled", "SOL-USD", "buy", 0.1)
    assert "trading is not enabled" in reason, reason


@pytest.mark.parametrize(("kind", "symbol", "side", "qty", "extra", "words"), [
    ("max_order_qty", "SOL-USD", "buy", 1.5, {}, "quantity 1.5 over max_order_qty 1"),
    ("max_order_notional", "BTC-USD", "buy", 1.0, {}, "over max_order_notional 30,000.00"),
    # a limit order's notional is taken at its limit price (0.74 BTC at the market is about 29,600)
    ("max_order_notional", "BTC-USD", "buy", 0.74, {"order_type": "limit", "limit_price": 41_000.0},
     "notional 30,340.00 over max_order_notional"),
    ("reduce_only", "SOL-USD", "sell", 0.5, {"reduce_only": True}, "would not reduce the position"),
])
def test_order_limits_are_refused_with_their_reason(live: Daemon, governance: Collector, kind: str, symbol: str,
                                                    side: str, qty: float, extra: dict, words: str) -> None:
    reason = _refused(live, governance, kind, symbol, side, qty, **extra)
    assert words in reason, reason


def test_position_and_gross_exposure_limits(live: Daemon, governance: Collector) -> None:
    d = live
    _filled(d, "SOL-USD", "buy", 1.0)
    _filled(d, "SOL-USD", "buy", 1.0)
    reason = _refused(d, governance, "max_position", "SOL-USD", "buy", 0.5)
    assert "position in SOL-USD could reach 2.5, over max_position 2" in reason, reason
    # an order that reduces the position is not held to the position limit
    _filled(d, "SOL-USD", "sell", 0.5)
    _filled(d, "SOL-USD", "buy", 0.5)

    _filled(d, "ETH-USD", "buy", 1.0)  # gross about 300 + 3,000
    reason = _refused(d, governance, "max_gross_exposure", "ETH-USD", "buy", 1.0)
    assert "over max_gross_exposure 5,000.00" in reason, reason


def test_order_rate_is_limited(live: Daemon, governance: Collector) -> None:
    d = live
    time.sleep(1.1)  # nothing else passed the gate within the last second
    ids = []
    t0 = time.monotonic()
    for _ in range(LIMITS["max_orders_per_s"]):
        # resting buys below the touch (inside the price collar), each opening a small long BTC
        # position: they pass every other check. (Reducing orders are never refused by the rate:
        # a flatten must always go out, see test_failsafe_keeps_trying.py.)
        reply = submit(d, "BTC-USD", "buy", 0.001, order_type="limit", limit_price=38_000.0)
        assert reply.ok, reply.error
        ids.append(reply.result["client_order_id"])
    reason = _refused(d, governance, "max_orders_per_s", "BTC-USD", "buy", 0.001, order_type="limit",
                      limit_price=38_000.0)
    assert time.monotonic() - t0 < 1.0, "too slow to test the rate limit"
    assert "order rate over max_orders_per_s 5" in reason, reason
    # a reducing order still passes with the budget spent
    reply = submit(d, "SOL-USD", "sell", 0.01, order_type="limit", limit_price=160.0)
    assert reply.ok, reply.error
    ids.append(reply.result["client_order_id"])
    # the ones that passed reached the venue, and rest there
    wait_until(lambda: set(ids) <= {o["client_order_id"] for o in venue_open_orders(d)}, 5)
    # the next second lets orders through again
    time.sleep(1.1)
    reply = submit(d, "BTC-USD", "buy", 0.001, order_type="limit", limit_price=38_000.0)
    assert reply.ok, reply.error
    assert ask(d, "exchange_manager", "cancel_all")
    wait_until(lambda: not venue_open_orders(d), 5)


def test_refused_after_shutdown(live: Daemon, governance: Collector) -> None:
    d = live
    res = d.tradectl("shutdown")
    assert res.returncode == 0, res.stderr
    wait_until(lambda: em_stats(d)["trading_allowed"] is False, 5)
    reason = _refused(d, governance, "trading_disabled", "ETH-USD", "buy", 0.1)
    assert "trading is not enabled" in reason, reason
    # every refusal of this module is a governance event with its kind
    kinds = {e.kind for e in governance.bodies(proto.GovernanceEvent)}
    assert {f"order_refused.{k}" for k in ("trading_disabled", "max_order_qty", "max_order_notional",
                                           "max_position", "max_gross_exposure", "max_orders_per_s",
                                           "reduce_only")} <= kinds, kinds
