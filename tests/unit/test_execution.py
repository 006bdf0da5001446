"""services.safety.execution: each fill judged against its own order (limit, market), unknown orders,
overfills, reject ratio and order rate on session time, the position check, and what holds."""

from __future__ import annotations

import pytest

import proto
from proto import OrderStatus, SafetyEventType, Severity, Side
from services.safety.execution import ExecutionAnomalies
from services.safety.settings import SafetySettings
from proto.summaries import VenueUnknown


def update(cid: str, status: OrderStatus, *, side: Side = Side.BUY, qty: float = 1.0, order_type: str = "market",
           limit: float | None = None, filled: float = 0.0, symbol: str = "BTC-USD") -> proto.OrderUpdate:
    return proto.OrderUpdate(client_order_id=cid, symbol=symbol, side=side, qty=qty, order_type=order_type,
                             limit_price=limit, status=status, filled_qty=filled, avg_fill_price=0.0)


def fill(cid: str, side: Side, qty: float, price: float, *, strategy: str = "mm", fid: str = "f",
         symbol: str = "BTC-USD") -> proto.Fill:
    return proto.Fill(fill_id=fid, client_order_id=cid, symbol=symbol, side=side, qty=qty, price=price, fee=0.0,
                      ts_ns=1, strategy=strategy)


def judged(ex: ExecutionAnomalies, f: proto.Fill, now: float = 0.0) -> list[proto.SafetyEvent]:
    """A fill of an order this system sent: only one-shot anomalies, never a lasting one."""
    one_shot, lasting = ex.on_fill(f, now)
    assert lasting == []
    return one_shot


def touch(ex: ExecutionAnomalies, bid: float, ask: float, symbol: str = "BTC-USD") -> None:
    ex.on_quote(proto.Quote(symbol=symbol, bid=bid, ask=ask, bid_size=1, ask_size=1, ts_ns=1))


def test_a_resting_limit_order_filled_at_its_limit_far_from_the_touch_is_no_anomaly() -> None:
    """The real 08:27 spike: a sell limit resting at 41,800 is filled at 41,800 when the market gaps
    through it to 42,869 (256 bps from the touch): the order got exactly what it asked for."""
    ex = ExecutionAnomalies(SafetySettings(fill_far_bps=50.0))
    touch(ex, 41_757.0, 41_759.0)
    ex.on_order(update("s1", OrderStatus.NEW, side=Side.SELL, order_type="limit", limit=41_800.0), now=0.0)
    touch(ex, 42_868.0, 42_870.0)  # the market gapped through the limit
    assert judged(ex, fill("s1", Side.SELL, 1.0, 41_800.0)) == []
    # a buy limit filled below its limit (better) is no anomaly either
    ex.on_order(update("b1", OrderStatus.NEW, side=Side.BUY, order_type="limit", limit=42_000.0), now=1.0)
    assert judged(ex, fill("b1", Side.BUY, 1.0, 41_000.0, fid="f2")) == []


def test_a_limit_fill_worse_than_its_limit_is_an_anomaly() -> None:
    ex = ExecutionAnomalies(SafetySettings())
    touch(ex, 100.0, 101.0)
    ex.on_order(update("b1", OrderStatus.NEW, side=Side.BUY, order_type="limit", limit=100.0), now=0.0)
    (ev,) = judged(ex, fill("b1", Side.BUY, 1.0, 100.05))
    assert ev.event_type is SafetyEventType.EXECUTION_ANOMALY and ev.severity is Severity.WARNING
    assert ev.message == "Fill buy 1 BTC-USD at 100.050 is 5.0 bps worse than its limit 100.000"
    assert ev.evidence == pytest.approx({"bps": 5.0, "price": 100.05, "limit": 100.0})
    ex.on_order(update("s1", OrderStatus.ACKNOWLEDGED, side=Side.SELL, order_type="limit", limit=100.0), now=1.0)
    (ev,) = judged(ex, fill("s1", Side.SELL, 1.0, 99.9, fid="f2"))  # learnt from an update other than NEW
    assert ev.evidence["bps"] == pytest.approx(10.0)


def test_a_market_order_is_judged_against_the_touch_when_it_was_sent() -> None:
    ex = ExecutionAnomalies(SafetySettings(fill_far_bps=10.0))
    touch(ex, 100.0, 101.0)
    ex.on_order(update("m1", OrderStatus.NEW, side=Side.BUY), now=0.0)
    touch(ex, 110.0, 111.0)  # the touch moves after it was sent: what the fill is judged by does not
    (ev,) = judged(ex, fill("m1", Side.BUY, 1.0, 101.202))  # 20 bps above the ask when sent
    assert ev.message == "Fill buy 1 BTC-USD at 101.202 is 20 bps from the touch 101.000 when it was sent"
    assert ev.evidence == pytest.approx({"bps": 20.0, "price": 101.202, "touch": 101.0})
    ex.on_order(update("m2", OrderStatus.NEW, side=Side.SELL), now=1.0)  # the bid when sent: 110
    assert judged(ex, fill("m2", Side.SELL, 1.0, 109.95, fid="f2")) == []  # 4.5 bps: fine
    ex.on_order(update("m3", OrderStatus.NEW, side=Side.SELL), now=2.0)
    assert judged(ex, fill("m3", Side.SELL, 1.0, 120.0, fid="f3")) == []  # better than the touch: never


def test_orders_it_has_not_seen_are_not_judged_and_unknown_ones_are_the_books_word() -> None:
    """A restarted safety process does not know the orders sent before: their fills are not 'unknown
    orders'. An order the book of record did not send is one it adopted as ``foreign``."""
    ex = ExecutionAnomalies(SafetySettings(fill_far_bps=10.0))
    touch(ex, 100.0, 101.0)
    assert judged(ex, fill("before-start", Side.BUY, 1.0, 150.0)) == []
    one_shot, (ev,) = ex.on_fill(fill("venue-9", Side.SELL, 2.0, 100.0, strategy="foreign"), now=5.0)
    assert one_shot == [] and ev.event_type is SafetyEventType.EXECUTION_ANOMALY and ev.symbol == "BTC-USD"
    assert ev.message == "Fill sell 2 BTC-USD at 100.000: an order the book of record did not send (venue-9)"
    # it holds while the exchange manager says the venue holds what this system did not send
    (held,) = ex.holding(100.0)
    assert (held.symbol, held.since, held.reason) == ("BTC-USD", 5.0, ev.message)
    ex.venue_unknown(VenueUnknown(orders=0, positions={"BTC-USD": -2.0}))
    assert len(ex.holding(1000.0)) == 1
    ex.venue_unknown(VenueUnknown(orders=0, positions={}))  # flattened
    assert ex.holding(1000.0) == []
    # a market order whose NEW it missed (it learns the order from a later update): no touch to judge by
    ex.on_order(update("m1", OrderStatus.ACKNOWLEDGED, side=Side.BUY), now=0.0)
    assert judged(ex, fill("m1", Side.BUY, 1.0, 150.0, fid="f2")) == []
    assert ex.fill_position["BTC-USD"] == pytest.approx(1.0 - 2.0 + 1.0)  # every fill counts in the sum


def test_an_overfill_is_an_anomaly() -> None:
    ex = ExecutionAnomalies(SafetySettings())
    ex.on_order(update("b1", OrderStatus.NEW, qty=1.0, order_type="limit", limit=100.0), now=0.0)
    assert judged(ex, fill("b1", Side.BUY, 0.6, 100.0, fid="f1")) == []
    ex.on_order(update("b1", OrderStatus.PARTIALLY_FILLED, qty=1.0, order_type="limit", limit=100.0, filled=0.6), 0.1)
    assert judged(ex, fill("b1", Side.BUY, 0.4, 100.0, fid="f2")) == []
    (ev,) = judged(ex, fill("b1", Side.BUY, 0.5, 100.0, fid="f3"))
    assert ev.message == "Fill buy 0.5 BTC-USD at 100.000: overfill, 1.5 filled of 1 ordered"
    assert ev.evidence == pytest.approx({"filled": 1.5, "qty": 1.0})
    # an order first seen part-filled starts from what its update says
    ex.on_order(update("b2", OrderStatus.PARTIALLY_FILLED, qty=1.0, order_type="limit", limit=100.0, filled=0.9), 1.0)
    assert len(judged(ex, fill("b2", Side.BUY, 0.2, 100.0, fid="f4"))) == 1


def test_reject_ratio_on_session_time_and_it_holds_while_over() -> None:
    ex = ExecutionAnomalies(SafetySettings(reject_ratio=0.5, reject_window_s=30.0, reject_min_orders=4))
    for i in range(3):  # three rejects: not yet enough orders to judge
        assert ex.on_order(update(f"r{i}", OrderStatus.REJECTED), now=float(i)) == ([], [])
    assert ex.holding(2.0) == []
    spike, (ev,) = ex.on_order(update("f0", OrderStatus.FILLED), now=3.0)
    assert spike == [] and ev.message == "Reject ratio 3/4 over 30s"
    assert ev.evidence == pytest.approx({"rejected": 3, "orders": 4, "ratio": 0.75})
    (held,) = ex.holding(10.0)
    assert (held.symbol, held.since, held.reason) == ("*", 3.0, "Reject ratio 3/4 over 30s")
    assert len(ex.holding(30.0)) == 1  # r0 (t=0) is still inside the 30 s window
    assert ex.holding(30.5) == []  # r0 has left: three orders are too few to judge, it no longer holds
    for i in range(4):  # four fills and no reject is fine
        assert ex.on_order(update(f"g{i}", OrderStatus.FILLED), now=100.0 + i) == ([], [])
    assert ex.on_order(update("x", OrderStatus.ACKNOWLEDGED), now=104.0) == ([], [])  # not an outcome


def test_the_reject_ratio_counts_each_order_once_however_often_its_end_is_reported() -> None:
    """A filled order is reported again when its fills arrive (and a report may come twice): the
    ratio is of ended orders, not of reports."""
    ex = ExecutionAnomalies(SafetySettings(reject_ratio=0.5, reject_window_s=30.0, reject_min_orders=4))
    for i in range(2):
        ex.on_order(update(f"r{i}", OrderStatus.REJECTED), now=float(i))
        ex.on_order(update(f"r{i}", OrderStatus.REJECTED), now=float(i))
    for i in range(2):
        for _ in range(3):
            ex.on_order(update(f"f{i}", OrderStatus.FILLED), now=2.0 + i)
    (held,) = ex.holding(4.0)  # 2 of 4 orders, not 4 of 10 reports
    assert held.reason == "Reject ratio 2/4 over 30s"


def test_order_rate_spike_on_session_time() -> None:
    ex = ExecutionAnomalies(SafetySettings(order_rate_per_s=5.0))
    for i in range(5):
        assert ex.on_order(update(f"n{i}", OrderStatus.NEW), now=10.0 + i * 0.1) == ([], [])
    assert ex.on_order(update("n0", OrderStatus.NEW), now=10.55) == ([], [])  # the same order again: not counted
    (ev,), ratio = ex.on_order(update("n5", OrderStatus.NEW), now=10.6)
    assert ratio == [] and ev.message == "Order rate spike: 6 orders in the last second"
    assert ev.evidence == pytest.approx({"orders_per_s": 6, "threshold": 5.0})
    assert ex.on_order(update("n6", OrderStatus.NEW), now=12.0) == ([], [])  # a second later: calm again


def test_position_mismatch_needs_two_quiet_checks_and_holds_until_they_agree() -> None:
    ex = ExecutionAnomalies(SafetySettings())
    judged(ex, fill("c", Side.BUY, 1.0, 100.0))
    assert ex.check_positions({"BTC-USD": 1.0}, fills_quiet=True, now=0.0) == []  # agree
    assert ex.check_positions({"BTC-USD": 2.0}, fills_quiet=True, now=1.0) == []  # one check could be mid-update
    assert ex.check_positions({"BTC-USD": 2.0}, fills_quiet=False, now=2.0) == []  # a fill in between: start over
    assert ex.check_positions({"BTC-USD": 2.0}, fills_quiet=True, now=3.0) == []
    (ev,) = ex.check_positions({"BTC-USD": 2.0}, fills_quiet=True, now=4.0)
    assert ev.event_type is SafetyEventType.EXECUTION_ANOMALY and ev.symbol == "BTC-USD"
    assert ev.message == "Position mismatch: exchange manager holds 2, fills sum to 1"
    assert ev.evidence == pytest.approx({"exchange_manager": 2.0, "sum_of_fills": 1.0})
    assert ex.check_positions({"BTC-USD": 2.0}, fills_quiet=True, now=5.0) == []  # one event per incident
    (held,) = ex.holding(5.0)
    assert (held.symbol, held.since) == ("BTC-USD", 4.0)
    ex.check_positions({"BTC-USD": 2.0}, fills_quiet=False, now=6.0)  # fills moving: it still holds
    assert len(ex.holding(6.0)) == 1
    assert ex.check_positions({"BTC-USD": 1.0}, fills_quiet=True, now=7.0) == []  # resolved
    assert ex.holding(7.0) == []
    # a symbol only the exchange manager holds is a mismatch too; adopting its positions starts afresh
    ex.check_positions({"BTC-USD": 1.0, "ETH-USD": 3.0}, fills_quiet=True, now=8.0)
    (ev,) = ex.check_positions({"BTC-USD": 1.0, "ETH-USD": 3.0}, fills_quiet=True, now=9.0)
    assert ev.symbol == "ETH-USD" and len(ex.holding(9.0)) == 1
    ex.adopt_positions({"BTC-USD": 1.0, "ETH-USD": 3.0})
    assert ex.holding(9.0) == []
    assert ex.check_positions({"BTC-USD": 1.0, "ETH-USD": 3.0}, fills_quiet=True, now=10.0) == []
    assert ex.check_positions({"BTC-USD": 1.0, "ETH-USD": 3.0}, fills_quiet=True, now=11.0) == []
