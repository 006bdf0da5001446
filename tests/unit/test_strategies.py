"""services.engine.strategies: crafted quote sequences in, the expected intents out."""

from __future__ import annotations

import pytest

import proto
from proto import OrderStatus, Side
from proto.commands import CancelArgs, OrderArgs
from services.engine.strategies import MarketMaker, MeanReversion, build
from services.engine.strategies.market_maker import MarketMakerSettings
from services.engine.strategies.mean_reversion import MeanReversionSettings


def q(mid: float, symbol: str = "BTC-USD", half: float = 0.01) -> proto.Quote:
    return proto.Quote(symbol=symbol, bid=mid - half, ask=mid + half, bid_size=1.0, ask_size=1.0, ts_ns=1)


def fill(side: Side, qty: float, symbol: str = "BTC-USD", price: float = 100.0) -> proto.Fill:
    return proto.Fill(fill_id="f", client_order_id="c", symbol=symbol, side=side, qty=qty, price=price, fee=0.0,
                      ts_ns=1)


# -- mean reversion ------------------------------------------------------------------------------


def meanrev(**kw: object) -> MeanReversion:
    fields: dict[str, object] = {"symbol": "BTC-USD", "window": 4, "entry_bps": 10.0, "qty": 1.0,
                                 "max_position": 2.0, "min_interval_s": 1.0}
    fields.update(kw)
    cfg = MeanReversionSettings(**fields)  # type: ignore[arg-type]
    strategy = build(cfg)
    assert isinstance(strategy, MeanReversion)
    return strategy


def test_mean_reversion_waits_for_a_full_window() -> None:
    s = meanrev()
    assert [s.on_quote(q(m), now=float(i)) for i, m in enumerate([100.0, 100.0, 90.0])] == [[], [], []]
    # the window is full: the mean of 100, 100, 90, 100 is 97.5, and 100 is 256 bps above it
    assert s.on_quote(q(100.0), now=3.0) == [OrderArgs(symbol="BTC-USD", side=Side.SELL, qty=1.0, strategy="meanrev")]


def test_mean_reversion_buys_below_and_sells_above_the_mean() -> None:
    s = meanrev()
    for i in range(4):
        assert s.on_quote(q(100.0), now=float(i)) == []  # on the mean: nothing
    (buy,) = s.on_quote(q(99.0), now=10.0)  # mean 99.75: -75 bps
    assert buy == OrderArgs(symbol="BTC-USD", side=Side.BUY, qty=1.0, order_type="market", strategy="meanrev")
    s.on_fill(fill(Side.BUY, 1.0))
    for i in range(4):
        s.on_quote(q(99.0), now=20.0 + i)
    (sell,) = s.on_quote(q(100.0), now=30.0)  # mean 99.25: +75 bps
    assert sell.side is Side.SELL and sell.qty == 1.0 and sell.symbol == "BTC-USD"
    assert s.on_quote(q(99.3), now=40.0) == []  # mean 99.325: -2.5 bps, inside entry_bps


def test_mean_reversion_min_interval_between_orders() -> None:
    s = meanrev()
    for i in range(4):
        s.on_quote(q(100.0), now=float(i))
    assert len(s.on_quote(q(99.0), now=10.0)) == 1
    assert s.on_quote(q(98.0), now=10.5) == []  # still far below the mean, but too soon
    assert s.on_quote(q(98.0), now=10.99) == []
    (again,) = s.on_quote(q(97.0), now=11.0)
    assert again.side is Side.BUY


def execute(s: MeanReversion, intent: OrderArgs, cid: str) -> None:
    """The whole life of one order: accepted under ``cid``, filled in full, closed."""
    s.on_accepted(intent, cid)
    s.on_fill(proto.Fill(fill_id=f"f-{cid}", client_order_id=cid, symbol=intent.symbol, side=intent.side,
                         qty=intent.qty, price=100.0, fee=0.0, ts_ns=1))
    s.on_order_update(proto.OrderUpdate(client_order_id=cid, symbol=intent.symbol, side=intent.side,
                                        qty=intent.qty, order_type="market", limit_price=None,
                                        status=OrderStatus.FILLED, filled_qty=intent.qty, avg_fill_price=100.0))


def test_mean_reversion_respects_the_position_limit() -> None:
    s = meanrev()
    for i in range(4):
        s.on_quote(q(100.0), now=float(i))
    (first,) = s.on_quote(q(99.0), now=10.0)
    execute(s, first, "c1")
    (second,) = s.on_quote(q(98.0), now=20.0)
    execute(s, second, "c2")
    assert s.position == 2.0  # at the long limit
    assert s.on_quote(q(90.0), now=30.0) == []  # would buy, but 2 + 1 > max_position
    for i in range(4):
        s.on_quote(q(100.0), now=40.0 + i)
    (sell,) = s.on_quote(q(120.0), now=50.0)  # selling is allowed
    assert sell.side is Side.SELL
    execute(s, sell, "c3")
    assert s.position == 1.0


# -- market maker --------------------------------------------------------------------------------


def maker(**kw: object) -> MarketMaker:
    cfg = MarketMakerSettings(symbol="ETH-USD", half_spread_bps=10.0, requote_bps=5.0, qty=1.0, max_position=1.5,
                              **kw)  # type: ignore[arg-type]
    strategy = build(cfg)
    assert isinstance(strategy, MarketMaker)
    return strategy


def orders(intents: list) -> dict[Side, OrderArgs]:
    return {i.side: i for i in intents if isinstance(i, OrderArgs)}


def cancels(intents: list) -> list[str]:
    return [i.client_order_id for i in intents if isinstance(i, CancelArgs)]


def update(cid: str, side: Side, status: OrderStatus) -> proto.OrderUpdate:
    return proto.OrderUpdate(client_order_id=cid, symbol="ETH-USD", side=side, qty=1.0, order_type="limit",
                             limit_price=100.0, status=status, filled_qty=0.0, avg_fill_price=0.0)


def test_market_maker_quotes_both_sides_around_the_mid() -> None:
    mm = maker()
    intents = mm.on_quote(q(100.0, "ETH-USD"), now=0.0)
    placed = orders(intents)
    assert set(placed) == {Side.BUY, Side.SELL} and cancels(intents) == []
    assert placed[Side.BUY].limit_price == pytest.approx(99.9) and placed[Side.SELL].limit_price == pytest.approx(100.1)
    for o in placed.values():
        assert o.order_type == "limit" and o.qty == 1.0 and o.symbol == "ETH-USD" and o.strategy == "mm"
    # while both are in flight, nothing more is sent
    assert mm.on_quote(q(101.0, "ETH-USD"), now=0.1) == []


def test_market_maker_requotes_when_the_mid_moves_past_requote_bps() -> None:
    mm = maker()
    first = orders(mm.on_quote(q(100.0, "ETH-USD"), now=0.0))
    mm.on_accepted(first[Side.BUY], "b1")
    mm.on_accepted(first[Side.SELL], "s1")
    assert mm.on_quote(q(100.04, "ETH-USD"), now=1.0) == []  # 4 bps: keep the quotes
    intents = mm.on_quote(q(100.06, "ETH-USD"), now=2.0)  # 6 bps: cancel both and quote again
    assert sorted(cancels(intents)) == ["b1", "s1"]
    second = orders(intents)
    assert second[Side.BUY].limit_price == pytest.approx(100.06 * (1 - 10 / 1e4))
    assert second[Side.SELL].limit_price == pytest.approx(100.06 * (1 + 10 / 1e4))
    assert intents.index(next(i for i in intents if isinstance(i, CancelArgs))) == 0  # cancels go first
    mm.on_accepted(second[Side.BUY], "b2")
    mm.on_accepted(second[Side.SELL], "s2")
    # the old quotes' cancellations arrive: they do not drop the new ones
    mm.on_order_update(update("b1", Side.BUY, OrderStatus.CANCELLED))
    mm.on_order_update(update("s1", Side.SELL, OrderStatus.CANCELLED))
    assert mm.on_quote(q(100.07, "ETH-USD"), now=3.0) == []  # 1 bp from the new reference
    # the requote is measured from the new reference, not the first one
    assert sorted(cancels(mm.on_quote(q(100.0, "ETH-USD"), now=4.0))) == ["b2", "s2"]


def test_market_maker_tracks_fills_and_respects_its_position_limit() -> None:
    mm = maker()
    first = orders(mm.on_quote(q(100.0, "ETH-USD"), now=0.0))
    mm.on_accepted(first[Side.BUY], "b1")
    mm.on_accepted(first[Side.SELL], "s1")
    mm.on_fill(fill(Side.BUY, 1.0, "ETH-USD", 99.9))
    mm.on_order_update(update("b1", Side.BUY, OrderStatus.FILLED))
    assert mm.position == 1.0
    intents = mm.on_quote(q(101.0, "ETH-USD"), now=1.0)  # 100 bps: requote
    assert cancels(intents) == ["s1"]  # only the live one: b1 is gone
    placed = orders(intents)
    assert set(placed) == {Side.SELL}  # another buy would make 2 > max_position 1.5
    mm.on_accepted(placed[Side.SELL], "s2")
    mm.on_fill(fill(Side.SELL, 1.0, "ETH-USD"))
    mm.on_fill(fill(Side.SELL, 1.0, "ETH-USD"))  # say a second sell filled too: short 1
    mm.on_order_update(update("s2", Side.SELL, OrderStatus.FILLED))
    placed = orders(mm.on_quote(q(101.0, "ETH-USD"), now=2.0))  # nothing live: quote again
    assert set(placed) == {Side.BUY}  # another sell would make -2


def test_market_maker_replaces_a_refused_quote() -> None:
    mm = maker()
    first = orders(mm.on_quote(q(100.0, "ETH-USD"), now=0.0))
    mm.on_accepted(first[Side.BUY], "b1")
    mm.on_refused(first[Side.SELL], "gate: max_position")
    assert mm.on_quote(q(100.0, "ETH-USD"), now=1.0) == []  # one side live, no move: leave it
    mm.on_order_update(update("b1", Side.BUY, OrderStatus.REJECTED))
    again = orders(mm.on_quote(q(100.0, "ETH-USD"), now=2.0))
    assert set(again) == {Side.BUY, Side.SELL}


def test_market_maker_ignores_updates_of_orders_it_does_not_track() -> None:
    mm = maker()
    first = orders(mm.on_quote(q(100.0, "ETH-USD"), now=0.0))
    mm.on_accepted(first[Side.BUY], "b1")
    mm.on_accepted(first[Side.SELL], "s1")
    mm.on_order_update(update("someone-else", Side.BUY, OrderStatus.CANCELLED))
    mm.on_order_update(update("b1", Side.BUY, OrderStatus.ACKNOWLEDGED))  # still open
    assert sorted(cancels(mm.on_quote(q(200.0, "ETH-USD"), now=1.0))) == ["b1", "s1"]


def test_mean_reversion_position_limit_holds_while_fills_are_in_flight() -> None:
    """The engine sends each intent and tells the strategy on_accepted / on_refused at once; the fill
    comes later on the bus. With no minimum interval, quotes keep arriving before the fills: orders
    already accepted (and not refused) must count toward max_position, or the strategy overshoots it."""
    s = meanrev(min_interval_s=0.0)  # qty 1, max_position 2
    for i in range(4):
        s.on_quote(q(100.0), now=float(i))
    sent = []
    for i, mid in enumerate([99.0, 98.0, 97.0, 96.0]):  # each far below the mean; no fill has arrived yet
        for intent in s.on_quote(q(mid), now=10.0 + i * 0.01):
            s.on_accepted(intent, f"c{len(sent)}")
            sent.append(intent)
    assert sum(o.qty for o in sent if o.side is Side.BUY) <= 2.0, \
        f"{len(sent)} buys of 1 in flight against max_position 2"


# -- resync from the book of record ---------------------------------------------------------------


def test_a_market_maker_resynced_takes_the_books_position_and_replaces_the_quotes_it_finds() -> None:
    """A restarted engine: the book says the strategy is long 1.0 with two quotes resting (one side
    twice). It cancels all three, and quotes only the side its limit still allows."""
    mm = maker()
    mm.resync(1.0, [update("b1", Side.BUY, OrderStatus.ACKNOWLEDGED), update("b2", Side.BUY, OrderStatus.ACKNOWLEDGED),
                    update("s1", Side.SELL, OrderStatus.ACKNOWLEDGED)])
    assert mm.position == 1.0
    intents = mm.on_quote(q(100.0, "ETH-USD"), now=0.0)
    assert sorted(cancels(intents)) == ["b1", "b2", "s1"]
    assert set(orders(intents)) == {Side.SELL}  # a buy would take it to 2 > max_position 1.5
    assert cancels(mm.on_quote(q(100.0, "ETH-USD"), now=0.1)) == []  # cancelled once


def test_a_mean_reversion_resynced_counts_the_books_open_orders_against_its_limit() -> None:
    mr = meanrev()
    mr.resync(1.0, [proto.OrderUpdate(client_order_id="o1", symbol="BTC-USD", side=Side.BUY, qty=1.0,
                                      order_type="market", limit_price=None, status=OrderStatus.ACKNOWLEDGED,
                                      filled_qty=0.0, avg_fill_price=0.0)])
    assert mr.position == 1.0
    for i, mid in enumerate((100.0, 100.0, 100.0, 100.0, 99.0)):  # 1 % under the mean: a buy signal
        intents = mr.on_quote(q(mid), now=float(i) * 2)
    assert intents == [], "position 1 + open 1 + another 1 would pass max_position 2"
