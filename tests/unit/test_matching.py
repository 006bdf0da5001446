"""services.venue_sim.matching.Matcher: the simulated venue's matching, fees and account."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import proto
from proto import OrderStatus, Side
from proto.commands import NewOrderArgs
from services.positions import Position
from services.venue_sim.matching import Matcher
from services.venue_sim.settings import VenueSimSettings

SLIP_BPS, FEE_BPS = 2.0, 5.0


def matcher(**kw: object) -> Matcher:
    m = Matcher(VenueSimSettings(slippage_bps=SLIP_BPS, fee_bps=FEE_BPS, max_order_qty=100.0, **kw),  # type: ignore[arg-type]
                epoch=time.time_ns())
    m.on_quote("BTC-USD", 100.0, 101.0)
    return m


_n = iter(range(1, 1_000_000))


def new(m: Matcher, side: Side, qty: float, limit: float | None = None, symbol: str = "BTC-USD",
        cid: str | None = None) -> list[proto.OrderUpdate | proto.Fill]:
    return m.new_order(NewOrderArgs(client_order_id=cid or f"c{next(_n)}", symbol=symbol, side=side, qty=qty,
                                    order_type="limit" if limit is not None else "market", limit_price=limit))


def fills(events: list) -> list[proto.Fill]:
    return [e for e in events if isinstance(e, proto.Fill)]


def last_update(events: list) -> proto.OrderUpdate:
    return [e for e in events if isinstance(e, proto.OrderUpdate)][-1]


def test_market_orders_fill_at_the_touch_with_slippage_against_the_taker() -> None:
    m = matcher()
    buy = new(m, Side.BUY, 2.0)
    (f,) = fills(buy)
    assert f.price == pytest.approx(101.0 * (1 + SLIP_BPS / 1e4))  # above the ask
    assert f.qty == 2.0 and f.side is Side.BUY
    assert last_update(buy).status is OrderStatus.FILLED and last_update(buy).filled_qty == 2.0
    assert buy[0].status is OrderStatus.ACKNOWLEDGED  # acknowledged, then filled
    (g,) = fills(new(m, Side.SELL, 1.0))
    assert g.price == pytest.approx(100.0 * (1 - SLIP_BPS / 1e4))  # below the bid


def test_fees_are_fee_bps_of_notional() -> None:
    m = matcher()
    (f,) = fills(new(m, Side.BUY, 3.0))
    assert f.fee == pytest.approx(3.0 * f.price * FEE_BPS / 1e4)
    assert m.native.positions["BTC-USD"].fees == pytest.approx(f.fee)


def test_limit_orders_rest_then_fill_at_their_price_when_crossed() -> None:
    m = matcher()
    events = new(m, Side.BUY, 1.0, limit=99.0, cid="rest-buy")
    assert fills(events) == [] and last_update(events).status is OrderStatus.ACKNOWLEDGED
    assert [o.client_order_id for o in m.open_orders()] == ["rest-buy"]
    assert m.on_quote("BTC-USD", 99.2, 99.5) == []  # ask 99.5 still above the limit
    crossed = m.on_quote("BTC-USD", 98.0, 98.5)  # ask through the limit: fills at the limit
    (f,) = fills(crossed)
    assert f.price == 99.0 and f.client_order_id == "rest-buy" and f.fee == pytest.approx(99.0 * FEE_BPS / 1e4)
    assert last_update(crossed).status is OrderStatus.FILLED and m.open_orders() == []
    assert m.on_quote("BTC-USD", 90.0, 91.0) == []  # filled once only

    new(m, Side.SELL, 2.0, limit=105.0, cid="rest-sell")
    assert m.on_quote("BTC-USD", 104.0, 104.5) == []
    (g,) = fills(m.on_quote("BTC-USD", 105.0, 105.5))  # bid reaches the limit
    assert g.price == 105.0 and g.qty == 2.0 and g.side is Side.SELL


def test_a_quote_for_another_symbol_does_not_fill() -> None:
    m = matcher()
    m.on_quote("ETH-USD", 10.0, 10.1)
    new(m, Side.BUY, 1.0, limit=99.0, symbol="BTC-USD")
    assert m.on_quote("ETH-USD", 1.0, 1.01) == []
    assert len(m.open_orders()) == 1


def test_marketable_limits_fill_at_the_touch() -> None:
    m = matcher()
    (f,) = fills(new(m, Side.BUY, 1.0, limit=110.0))
    assert f.price == 101.0  # the ask, not the limit, and no slippage
    (g,) = fills(new(m, Side.SELL, 1.0, limit=90.0))
    assert g.price == 100.0


def test_cancel_and_cancel_all() -> None:
    m = matcher()
    m.on_quote("ETH-USD", 10.0, 10.1)
    new(m, Side.BUY, 1.0, limit=90.0, cid="a")
    new(m, Side.SELL, 1.0, limit=120.0, cid="b")
    new(m, Side.BUY, 1.0, limit=9.0, symbol="ETH-USD", cid="e")
    (u,) = m.cancel("a")
    assert u.status is OrderStatus.CANCELLED and u.client_order_id == "a"
    assert m.cancel("a") == [] and m.cancel("never-seen") == []
    events = m.cancel_all("BTC-USD")
    assert [e.client_order_id for e in events] == ["b"]
    assert [o.client_order_id for o in m.open_orders()] == ["e"]
    assert [e.client_order_id for e in m.cancel_all()] == ["e"]
    assert m.open_orders() == []
    assert m.on_quote("BTC-USD", 50.0, 50.5) == []  # a cancelled order never fills


def test_rejects() -> None:
    m = matcher()
    (u,) = new(m, Side.BUY, 1.0, symbol="DOGE-USD")
    assert u.status is OrderStatus.REJECTED and u.reason == "unknown symbol DOGE-USD"
    (u,) = new(m, Side.BUY, 100.5)
    assert u.status is OrderStatus.REJECTED and u.reason == "quantity 100.5 over the venue's maximum 100"
    m.reject_all = True
    (u,) = new(m, Side.BUY, 1.0)
    assert u.status is OrderStatus.REJECTED and u.reason == "venue is rejecting every order (fault injected)"
    assert m.rejected == 3 and m.native.fills == [] and m.native.positions == {}
    m.reject_all = False
    assert fills(new(m, Side.BUY, 1.0))


def test_each_account_sees_only_its_own_orders_fills_and_positions() -> None:
    """Two faces of one venue (the native socket, the exchange API) trade two accounts: a connector
    of one must never see the other's orders, nor a hole in its fill numbers made by the other's."""
    m = matcher()
    new(m, Side.BUY, 1.0, cid="n1")
    api = m.new_order(NewOrderArgs(client_order_id="a1", symbol="BTC-USD", side=Side.BUY, qty=2.0,
                                   order_type="market"), account="api")
    m.new_order(NewOrderArgs(client_order_id="a2", symbol="BTC-USD", side=Side.SELL, qty=1.0, order_type="limit",
                             limit_price=105.0), account="api")
    new(m, Side.BUY, 3.0, cid="n2")
    assert [f.venue_seq for f in m.native.fills] == [1, 2] and [f.venue_seq for f in fills(api)] == [1]
    assert m.native.positions["BTC-USD"].qty == 4.0 and m.account("api").positions["BTC-USD"].qty == 2.0
    assert m.open_orders() == [] and [o.client_order_id for o in m.open_orders("api")] == ["a2"]
    assert m.cancel("a2") == [] and m.cancel_all() == [] and m.owned("a2", "native") is None
    (refused,) = new(m, Side.BUY, 1.0, cid="a2")  # the other account's id: refused, its order untouched
    assert refused.status is OrderStatus.REJECTED and m.orders["a2"].status is OrderStatus.ACKNOWLEDGED
    assert [e.client_order_id for e in m.cancel_all(account="api")] == ["a2"]


def test_a_resent_client_order_id_executes_nothing() -> None:
    m = matcher()
    first = new(m, Side.BUY, 1.0, cid="dup")
    again = new(m, Side.BUY, 1.0, cid="dup")
    assert fills(again) == []
    (u,) = again
    assert u.status is OrderStatus.FILLED and u.venue_order_id == first[0].venue_order_id
    assert m.duplicate_ids == 1 and len(m.native.fills) == 1
    assert m.native.positions["BTC-USD"].qty == 1.0
    new(m, Side.SELL, 5.0, limit=120.0, cid="dup2")
    (u,) = new(m, Side.SELL, 7.0, limit=115.0, cid="dup2")  # even with other terms: the known order
    assert u.qty == 5.0 and u.limit_price == 120.0 and u.status is OrderStatus.ACKNOWLEDGED
    assert m.duplicate_ids == 2 and len(m.open_orders()) == 1


def test_ids_are_unique_and_a_restarted_venue_does_not_reuse_them() -> None:
    a = matcher()
    b = Matcher(VenueSimSettings(), epoch=time.time_ns() + 5_000_000)
    b.on_quote("BTC-USD", 100.0, 101.0)
    ids = set()
    for m in (a, b):
        for _ in range(20):
            events = new(m, Side.BUY, 1.0)
            ids.add(events[0].venue_order_id)
            ids.update(f.fill_id for f in fills(events))
    assert len(ids) == 80


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from([Side.BUY, Side.SELL]),
                              st.floats(min_value=0.01, max_value=50.0),
                              st.one_of(st.none(), st.floats(min_value=80.0, max_value=120.0)),
                              st.floats(min_value=50.0, max_value=150.0)),
                    min_size=1, max_size=25))
def test_positions_match_the_fills(ops: list[tuple[Side, float, float | None, float]]) -> None:
    """Whatever is traded, the account equals the fills replayed into a fresh Position, and every
    order's filled quantity is the sum of its fills."""
    m = matcher()
    for side, qty, limit, next_bid in ops:
        new(m, side, qty, limit)
        m.on_quote("BTC-USD", next_bid, next_bid * 1.001)
    replay = Position()
    per_order: dict[str, float] = {}
    for f in m.native.fills:
        replay.apply_fill(f.side.sign, f.qty, f.price, f.fee)
        per_order[f.client_order_id] = per_order.get(f.client_order_id, 0.0) + f.qty
        assert f.fee == pytest.approx(f.qty * f.price * FEE_BPS / 1e4)
    account = m.native.positions.get("BTC-USD", Position())
    assert account.to_dict() == pytest.approx(replay.to_dict())
    for cid, order in m.orders.items():
        assert order.filled_qty == pytest.approx(per_order.get(cid, 0.0))
        assert (order.status is OrderStatus.FILLED) == (per_order.get(cid, 0.0) > 0)


def reduce_only(m: Matcher, side: Side, qty: float, limit: float | None = None) -> list[proto.OrderUpdate | proto.Fill]:
    return m.new_order(NewOrderArgs(client_order_id=f"r{next(_n)}", symbol="BTC-USD", side=side, qty=qty,
                                    order_type="limit" if limit is not None else "market", limit_price=limit,
                                    reduce_only=True))


def test_a_reduce_only_order_fills_at_most_the_position_and_the_rest_is_cancelled() -> None:
    """The race the flag is for: a resting sell of ours fills while our flatten (sized before that
    fill) is on its way. The flatten closes the position and does not reverse it."""
    m = matcher()
    new(m, Side.BUY, 3.0)
    new(m, Side.SELL, 1.0, limit=105.0)  # resting
    m.on_quote("BTC-USD", 105.0, 106.0)  # ... and filled: the position is now 2
    assert m.native.positions["BTC-USD"].qty == pytest.approx(2.0)
    events = reduce_only(m, Side.SELL, 3.0)  # the flatten, sized for 3
    assert [f.qty for f in fills(events)] == [pytest.approx(2.0)]
    done = last_update(events)
    assert done.status is OrderStatus.CANCELLED and done.filled_qty == pytest.approx(2.0) and done.reduce_only
    assert done.reason == "reduce-only: the position is closed, the rest cancelled"
    assert m.native.positions["BTC-USD"].qty == pytest.approx(0.0) and m.open_orders() == []


def test_a_reduce_only_order_that_would_not_reduce_is_rejected() -> None:
    m = matcher()
    (flat,) = reduce_only(m, Side.SELL, 1.0)
    assert flat.status is OrderStatus.REJECTED and flat.reason == "reduce-only sell would not reduce the position 0"
    new(m, Side.BUY, 1.0)
    (same_side,) = reduce_only(m, Side.BUY, 1.0)
    assert same_side.status is OrderStatus.REJECTED
    assert m.native.positions["BTC-USD"].qty == pytest.approx(1.0)


def test_a_resting_reduce_only_limit_stops_at_flat() -> None:
    m = matcher()
    new(m, Side.BUY, 1.0)
    reduce_only(m, Side.SELL, 5.0, limit=110.0)  # rests: the bid is 100
    new(m, Side.SELL, 0.5)  # the position shrinks to 0.5 meanwhile
    events = m.on_quote("BTC-USD", 110.0, 111.0)
    assert [f.qty for f in fills(events)] == [pytest.approx(0.5)]
    assert last_update(events).status is OrderStatus.CANCELLED
    assert m.native.positions["BTC-USD"].qty == pytest.approx(0.0) and m.open_orders() == []
