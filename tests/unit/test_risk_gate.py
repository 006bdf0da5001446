"""services.exchange_manager.risk_gate.RiskGate: every kind of refusal, with its reason text.

The gate is driven with real settings (RiskLimits) and plain callables for the session's word (is
trading allowed, which mode the session asks for), exactly as the exchange manager wires it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from proto import Side
from proto.commands import OrderArgs
from services.exchange_manager.risk_gate import RiskGate
from services.exchange_manager.settings import RiskLimits
from unit_support import wait_until


@dataclass
class Session:
    trading: bool = True
    mode: str = "normal"


LIMITS = RiskLimits(max_order_qty=10.0, max_order_notional=50_000.0, max_position=5.0,
                    max_gross_exposure=200_000.0, max_orders_per_s=1000)


def make(limits: RiskLimits = LIMITS) -> tuple[RiskGate, Session]:
    session = Session()
    return RiskGate(limits, lambda: session.trading, lambda: session.mode), session  # type: ignore[arg-type,return-value]


def order(side: Side = Side.BUY, qty: float = 1.0, symbol: str = "BTC-USD", **kw: object) -> OrderArgs:
    return OrderArgs(symbol=symbol, side=side, qty=qty, **kw)  # type: ignore[arg-type]


def test_a_plain_order_passes_and_is_counted() -> None:
    gate, _ = make()
    assert gate.check(order(), position=0.0, open_same_side=0.0, mark=100.0, gross_exposure=0.0) is None
    assert gate.passed == 1 and gate.refusals == {}


def test_trading_disabled_only_reducing_orders_pass() -> None:
    gate, session = make()
    session.trading = False
    kind, reason = gate.check(order(Side.BUY, 1.0), 0.0, 0.0, 100.0, 0.0)
    assert kind == "trading_disabled"
    assert reason == ("trading is not enabled (session not live, disabled, or no word from the orchestrator): "
                      "only reducing orders pass")
    # increasing a long is refused; reducing it passes; selling more than the position (a flip) is refused
    assert gate.check(order(Side.BUY, 1.0), 2.0, 0.0, 100.0, 200.0)[0] == "trading_disabled"
    assert gate.check(order(Side.SELL, 2.0), 2.0, 0.0, 100.0, 200.0) is None
    assert gate.check(order(Side.SELL, 3.0), 2.0, 0.0, 100.0, 200.0)[0] == "trading_disabled"
    assert gate.check(order(Side.BUY, 1.0), -1.5, 0.0, 100.0, 150.0) is None  # reducing a short
    assert gate.refusals == {"trading_disabled": 3} and gate.passed == 2


def test_halt_mode_only_reducing_orders_pass() -> None:
    gate, _ = make()
    gate.operator_mode = "halt"
    assert gate.mode == "halt"
    assert gate.check(order(Side.BUY), 0.0, 0.0, 100.0, 0.0) == (
        "halted", "the gate is halted: only reducing orders pass")
    assert gate.check(order(Side.SELL, 1.0), 1.0, 0.0, 100.0, 100.0) is None
    assert gate.refusals == {"halted": 1}


def test_reduce_only_mode_refuses_opening_orders() -> None:
    gate, session = make()
    session.mode = "reduce_only"
    assert gate.check(order(Side.SELL, 0.5), 0.0, 0.0, 100.0, 0.0) == (
        "reduce_only", "reduce-only: sell 0.5 BTC-USD would not reduce the position 0")
    assert gate.check(order(Side.BUY, 1.0), 3.0, 0.0, 100.0, 0.0) == (
        "reduce_only", "reduce-only: buy 1 BTC-USD would not reduce the position 3")
    assert gate.check(order(Side.SELL, 1.0), 3.0, 0.0, 100.0, 300.0) is None
    assert gate.refusals == {"reduce_only": 2}


def test_reduce_only_flag_on_the_order() -> None:
    gate, _ = make()  # normal mode: only the flag asks for it
    assert gate.check(order(Side.BUY, 1.0, reduce_only=True), 0.0, 0.0, 100.0, 0.0) == (
        "reduce_only", "reduce-only: buy 1 BTC-USD would not reduce the position 0")
    assert gate.check(order(Side.SELL, 4.0, reduce_only=True), 3.0, 0.0, 100.0, 0.0)[0] == "reduce_only"
    assert gate.check(order(Side.SELL, 3.0, reduce_only=True), 3.0, 0.0, 100.0, 0.0) is None


@pytest.mark.parametrize(("session_mode", "operator_mode", "effective"), [
    ("normal", "normal", "normal"),
    ("reduce_only", "normal", "reduce_only"),
    ("normal", "reduce_only", "reduce_only"),
    ("normal", "halt", "halt"),
    ("halt", "reduce_only", "halt"),
    ("reduce_only", "halt", "halt"),
])
def test_session_and_operator_mode_combine_stricter_wins(session_mode: str, operator_mode: str,
                                                         effective: str) -> None:
    gate, session = make()
    session.mode = session_mode
    gate.operator_mode = operator_mode  # type: ignore[assignment]
    assert gate.mode == effective
    result = gate.check(order(Side.BUY), 0.0, 0.0, 100.0, 0.0)
    assert (result[0] if result else "normal") == {"normal": "normal", "reduce_only": "reduce_only",
                                                    "halt": "halted"}[effective]


def test_no_price_for_a_market_order_without_a_mark() -> None:
    gate, _ = make()
    assert gate.check(order(), 0.0, 0.0, None, 0.0) == ("no_price", "no market price for BTC-USD yet")
    # a limit order carries its own price
    assert gate.check(order(order_type="limit", limit_price=100.0), 0.0, 0.0, None, 0.0) is None


def test_a_reducing_market_order_needs_no_mark_even_with_trading_disabled() -> None:
    """An exchange manager restarted in FAILSAFE has no quote yet: its flatten must still go."""
    gate, session = make()
    session.trading = False
    flatten = order(Side.SELL, 2.0, reduce_only=True)
    assert gate.check(flatten, 2.0, 0.0, None, 0.0) is None
    # past the position it is not reducing: refused as before (trading disabled comes first)
    assert gate.check(order(Side.SELL, 3.0, reduce_only=True), 2.0, 0.0, None, 0.0)[0] == "trading_disabled"
    session.trading = True
    assert gate.check(order(Side.SELL, 3.0), 2.0, 0.0, None, 0.0)[0] == "no_price"


def test_max_order_qty() -> None:
    gate, _ = make()
    assert gate.check(order(qty=10.5), 0.0, 0.0, 1.0, 0.0) == ("max_order_qty",
                                                                "quantity 10.5 over max_order_qty 10")
    assert gate.check(order(qty=10.0, order_type="limit", limit_price=1.0), -20.0, 0.0, 1.0, 0.0) is None


def test_max_order_notional_uses_limit_price_or_mark() -> None:
    gate, _ = make()
    assert gate.check(order(qty=2.0), 0.0, 0.0, 30_000.0, 0.0) == (
        "max_order_notional", "notional 60,000.00 over max_order_notional 50,000.00")
    assert gate.check(order(qty=2.0, order_type="limit", limit_price=30_000.0), 0.0, 0.0, 1.0, 0.0)[0] == \
        "max_order_notional"
    assert gate.check(order(qty=2.0, order_type="limit", limit_price=20_000.0), 0.0, 0.0, 30_000.0, 0.0) is None


def test_max_position_counts_open_same_side_orders() -> None:
    gate, _ = make()
    # position 2 + open buys 2 + this 2 = 6 > 5
    assert gate.check(order(Side.BUY, 2.0), 2.0, 2.0, 100.0, 200.0) == (
        "max_position", "position in BTC-USD could reach 6, over max_position 5")
    assert gate.check(order(Side.BUY, 1.0), 2.0, 2.0, 100.0, 200.0) is None  # exactly 5
    # the short side: -4 - (0 + 2) = -6
    assert gate.check(order(Side.SELL, 2.0), -4.0, 0.0, 100.0, 400.0)[0] == "max_position"
    # a flip counts its far side: 1 - 7 = -6
    assert gate.check(order(Side.SELL, 7.0), 1.0, 0.0, 100.0, 100.0)[0] == "max_position"
    # a reducing order is never refused by the position limit ...
    assert gate.check(order(Side.SELL, 4.0), 4.0, 0.0, 100.0, 400.0) is None
    # ... but with sells already working it is no longer reducing: together they would reach -9
    assert gate.check(order(Side.SELL, 4.0), 4.0, 9.0, 100.0, 400.0) == (
        "max_position", "position in BTC-USD could reach 9, over max_position 5")


def test_max_gross_exposure() -> None:
    gate, _ = make()
    assert gate.check(order(Side.BUY, 1.0), 0.0, 0.0, 30_000.0, 180_000.0) == (
        "max_gross_exposure", "gross exposure would be 210,000.00, over max_gross_exposure 200,000.00")
    assert gate.check(order(Side.BUY, 1.0), 0.0, 0.0, 10_000.0, 180_000.0) is None
    # reducing an exposure is not refused for exposure
    assert gate.check(order(Side.SELL, 1.0), 1.0, 0.0, 30_000.0, 250_000.0) is None


def test_max_orders_per_s_and_recovery() -> None:
    gate, _ = make(RiskLimits(max_orders_per_s=3))
    for _ in range(3):
        assert gate.check(order(qty=0.1), 0.0, 0.0, 100.0, 0.0) is None
    assert gate.check(order(qty=0.1), 0.0, 0.0, 100.0, 0.0) == ("max_orders_per_s",
                                                                 "order rate over max_orders_per_s 3")
    assert gate.passed == 3 and gate.refusals == {"max_orders_per_s": 1}
    # a second later the window has moved on
    wait_until(lambda: gate.check(order(qty=0.1), 0.0, 0.0, 100.0, 0.0) is None, timeout=3.0, interval=0.05,
               what="rate window moves on")
    assert gate.passed == 4


def test_refusals_do_not_use_up_the_rate() -> None:
    gate, _ = make(RiskLimits(max_orders_per_s=2))
    for _ in range(5):
        assert gate.check(order(qty=100.0), 0.0, 0.0, 1.0, 0.0)[0] == "max_order_qty"
    assert gate.check(order(qty=0.1), 0.0, 0.0, 100.0, 0.0) is None
    assert gate.check(order(qty=0.1), 0.0, 0.0, 100.0, 0.0) is None
    assert gate.refusals == {"max_order_qty": 5}


def test_refusals_are_counted_by_kind() -> None:
    gate, session = make()
    gate.check(order(qty=11.0), 0.0, 0.0, 1.0, 0.0)
    gate.check(order(qty=11.0), 0.0, 0.0, 1.0, 0.0)
    gate.check(order(), 0.0, 0.0, None, 0.0)
    session.trading = False
    gate.check(order(), 0.0, 0.0, 1.0, 0.0)
    session.trading = True
    assert gate.check(order(), 0.0, 0.0, 1.0, 0.0) is None
    assert gate.refusals == {"max_order_qty": 2, "no_price": 1, "trading_disabled": 1}
    assert gate.passed == 1


def test_a_reducing_order_is_never_refused_by_the_gates_limits() -> None:
    """Issue 11, item 0: with max_orders_per_s spent (a FAILSAFE right after a burst of orders), and a
    position larger than max_order_qty and max_order_notional allow in one order, the flatten still
    passes; it is counted in the rate window, so opening orders after it find the budget used."""
    gate, _ = make(RiskLimits(max_order_qty=1.0, max_order_notional=100.0, max_position=1.0,
                              max_gross_exposure=100.0, max_orders_per_s=2))
    for _ in range(2):
        assert gate.check(order(qty=0.5), 0.0, 0.0, 100.0, 0.0) is None
    assert gate.check(order(qty=0.5), 0.0, 0.0, 100.0, 0.0)[0] == "max_orders_per_s"
    # position 25 (reached before the limits were lowered, or adopted from the venue): one flatten
    flatten = order(Side.SELL, 25.0, reduce_only=True, strategy="flatten")
    for _ in range(5):
        assert gate.check(flatten, 25.0, 0.0, 30_000.0, 750_000.0) is None
    assert gate.check(order(Side.SELL, 25.0, order_type="limit", limit_price=1e6), 25.0, 0.0, None, 0.0) is None
    assert gate.check(order(qty=0.5), 0.0, 0.0, 100.0, 0.0)[0] == "max_orders_per_s"
    assert gate.refusals == {"max_orders_per_s": 2}


def test_until_the_venue_is_reconciled_after_a_connection_only_reducing_orders_pass() -> None:
    """A restarted exchange manager (or a link back) holds positions that may lack the fills made
    meanwhile: the limits would be checked against them, so opening orders wait for the
    reconciliation; a flatten does not."""
    pending = {"BTC-USD"}
    gate = RiskGate(LIMITS, lambda: True, lambda: "normal",
                    unreconciled=lambda o: "not reconciled since it connected" if o.symbol in pending else None)
    assert gate.check(order(Side.BUY, 1.0), 0.0, 0.0, 100.0, 0.0) == ("not_reconciled", "not reconciled since it connected")
    assert gate.check(order(Side.SELL, 1.0), 2.0, 0.0, 100.0, 200.0) is None  # reducing
    assert gate.check(order(Side.BUY, 1.0, symbol="ETH-USD"), 0.0, 0.0, 100.0, 0.0) is None  # another venue's
    pending.clear()
    assert gate.check(order(Side.BUY, 1.0), 0.0, 0.0, 100.0, 0.0) is None
    assert gate.refusals == {"not_reconciled": 1}
