"""services.exchange_manager.order_book.OrderBook: the book of record.

Client order ids are never reused (within a book, nor across books with different prefixes, which
is how a restarted exchange manager keeps them unique); statuses only move forward; a fill is
applied once per fill_id; reports for unknown orders are adopted and counted; closed orders are
forgotten beyond ``keep_closed``.
"""

from __future__ import annotations

import time

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unit_support import enter

import proto
from proto import OrderStatus, Side
from proto.commands import NewOrderArgs, OrderArgs
from services.exchange_manager.order_book import OrderBook


def args(symbol: str = "BTC-USD", side: Side = Side.BUY, qty: float = 1.0, **kw: object) -> OrderArgs:
    return OrderArgs(symbol=symbol, side=side, qty=qty, strategy="t", **kw)  # type: ignore[arg-type]


def update(cid: str, status: OrderStatus, qty: float = 1.0, **kw: object) -> proto.OrderUpdate:
    fields = dict(client_order_id=cid, symbol="BTC-USD", side=Side.BUY, qty=qty, order_type="limit",
                  limit_price=100.0, status=status, filled_qty=0.0, avg_fill_price=0.0, connector="sim",
                  ts_ns=time.time_ns())
    fields.update(kw)
    return proto.OrderUpdate(**fields)  # type: ignore[arg-type]


def fill(cid: str, fill_id: str, qty: float, price: float = 100.0, side: Side = Side.BUY) -> proto.Fill:
    return proto.Fill(fill_id=fill_id, client_order_id=cid, symbol="BTC-USD", side=side, qty=qty, price=price,
                      fee=0.01, ts_ns=time.time_ns(), connector="sim")


def test_client_order_ids_unique_within_a_book() -> None:
    book = OrderBook("abc", keep_closed=5)
    ids = []
    for i in range(300):
        record = enter(book, args(), "sim")
        ids.append(record.client_order_id)
        if i % 2:  # closing (and forgetting) orders must not free their ids for reuse
            book.reject(record, "test")
    assert len(set(ids)) == len(ids) == 300
    assert all(cid.startswith("abc-") for cid in ids)
    assert book.submitted == 300


@settings(max_examples=100, deadline=None)
@given(prefixes=st.lists(st.text(alphabet="0123456789abcdef-", min_size=1, max_size=6), min_size=2, max_size=4,
                         unique=True))
def test_books_with_different_prefixes_never_collide(prefixes: list[str]) -> None:
    """A restarted process gets a new prefix (its start epoch): its ids never meet the old ones."""
    seen: dict[str, str] = {}
    for prefix in prefixes:
        book = OrderBook(prefix)
        for _ in range(30):
            cid = enter(book, args(), "sim").client_order_id
            assert cid not in seen, f"{cid} from prefix {prefix!r} already issued under {seen.get(cid)!r}"
            seen[cid] = prefix


def test_restart_prefix_from_epoch_differs() -> None:
    """The exchange manager's prefix is its start epoch in ms, hex: two starts 1 ms apart differ."""
    epoch = time.time_ns()
    first, second = OrderBook(f"{epoch // 1_000_000:x}"), OrderBook(f"{(epoch + 1_000_000) // 1_000_000:x}")
    a = {enter(first, args(), "sim").client_order_id for _ in range(50)}
    b = {enter(second, args(), "sim").client_order_id for _ in range(50)}
    assert not a & b


def test_statuses_only_move_forward() -> None:
    book = OrderBook("p")
    record = enter(book, args(order_type="limit", limit_price=100.0), "sim")
    cid = record.client_order_id
    assert record.status is OrderStatus.NEW
    book.apply_update(update(cid, OrderStatus.ACKNOWLEDGED, venue_order_id="v-1"))
    assert record.status is OrderStatus.ACKNOWLEDGED and record.venue_order_id == "v-1"
    book.apply_update(update(cid, OrderStatus.NEW))  # a stale report
    assert record.status is OrderStatus.ACKNOWLEDGED
    book.apply_fill(fill(cid, "f1", 1.0))
    assert record.status is OrderStatus.FILLED
    book.apply_update(update(cid, OrderStatus.ACKNOWLEDGED))  # late ack after the fill: does not reopen
    book.apply_update(update(cid, OrderStatus.PARTIALLY_FILLED))
    book.apply_update(update(cid, OrderStatus.CANCELLED))  # closed is final, whatever the report
    assert record.status is OrderStatus.FILLED
    assert book.open_orders() == []


def test_rejected_is_final_and_counted_once() -> None:
    book = OrderBook("p")
    record = enter(book, args(), "sim")
    book.reject(record, "gate said no")
    book.apply_update(update(record.client_order_id, OrderStatus.ACKNOWLEDGED))
    book.apply_update(update(record.client_order_id, OrderStatus.REJECTED, reason="again"))
    assert record.status is OrderStatus.REJECTED
    assert record.reason == "gate said no"
    assert book.rejected == 1


def test_apply_fill_is_idempotent_on_fill_id() -> None:
    book = OrderBook("p")
    record = enter(book, args(qty=2.0), "sim")
    cid = record.client_order_id
    assert book.apply_fill(fill(cid, "f1", 1.0, 100.0)) is record
    assert book.apply_fill(fill(cid, "f1", 1.0, 100.0)) is None  # the same fill via another path
    assert record.filled_qty == 1.0 and record.status is OrderStatus.PARTIALLY_FILLED
    assert book.fills == 1


def test_partial_fills_then_filled_with_average_price() -> None:
    book = OrderBook("p")
    record = enter(book, args(qty=3.0, order_type="limit", limit_price=101.0), "sim")
    cid = record.client_order_id
    book.apply_update(update(cid, OrderStatus.ACKNOWLEDGED, qty=3.0))
    book.apply_fill(fill(cid, "f1", 1.0, 100.0))
    assert record.status is OrderStatus.PARTIALLY_FILLED and record.filled_qty == 1.0
    assert record in book.open_orders("BTC-USD")
    book.apply_fill(fill(cid, "f2", 1.5, 101.0))
    assert record.status is OrderStatus.PARTIALLY_FILLED and record.filled_qty == 2.5
    book.apply_fill(fill(cid, "f3", 0.5, 102.0))
    assert record.status is OrderStatus.FILLED and record.filled_qty == pytest.approx(3.0)
    assert record.avg_fill_price == pytest.approx((100.0 + 1.5 * 101.0 + 0.5 * 102.0) / 3.0)
    assert book.open_orders() == [] and book.fills == 3
    msg = record.message()
    assert msg.status is OrderStatus.FILLED and msg.filled_qty == pytest.approx(3.0) and msg.client_order_id == cid


def test_report_fill_progress_does_not_change_fill_accounting() -> None:
    """Fill progress belongs to the fills: a report claiming a fill moves the status, not filled_qty."""
    book = OrderBook("p")
    record = enter(book, args(qty=2.0), "sim")
    book.apply_update(update(record.client_order_id, OrderStatus.PARTIALLY_FILLED, qty=2.0, filled_qty=1.0))
    assert record.status is OrderStatus.PARTIALLY_FILLED and record.filled_qty == 0.0


def test_unknown_orders_in_updates_and_fills_are_adopted_and_counted() -> None:
    book = OrderBook("p")
    adopted = book.apply_update(update("venue-only-1", OrderStatus.ACKNOWLEDGED, qty=2.0, venue_order_id="v9"))
    assert book.orders["venue-only-1"] is adopted
    assert adopted.status is OrderStatus.ACKNOWLEDGED and adopted.qty == 2.0 and adopted.venue_order_id == "v9"
    assert book.adopted == 1
    assert adopted in book.open_orders()
    by_fill = book.apply_fill(fill("venue-only-2", "fx", 0.5, 99.0, side=Side.SELL))
    assert by_fill is not None and book.orders["venue-only-2"] is by_fill
    assert by_fill.side is Side.SELL and by_fill.filled_qty == 0.5 and by_fill.status is OrderStatus.FILLED
    assert book.adopted == 2
    book.apply_update(update("venue-only-1", OrderStatus.CANCELLED))  # known now: not adopted again
    assert book.adopted == 2 and adopted.status is OrderStatus.CANCELLED
    assert book.submitted == 0


def test_closed_orders_are_bounded_by_keep_closed() -> None:
    book = OrderBook("p", keep_closed=3)
    open_ones = [enter(book, args(), "sim") for _ in range(4)]
    closed = []
    for i in range(10):
        record = enter(book, args(), "sim")
        book.apply_fill(fill(record.client_order_id, f"f{i}", 1.0))
        closed.append(record.client_order_id)
    # the open orders are all kept, and only the three most recently closed ones
    assert set(book.orders) == {r.client_order_id for r in open_ones} | set(closed[-3:])
    assert len(book.open_orders()) == 4
    for i, record in enumerate(open_ones):
        book.reject(record, "x")
    assert len(book.orders) == 3
    assert set(book.orders) == {r.client_order_id for r in open_ones[-3:]}
    assert book.fills == 10 and book.rejected == 4


def test_an_order_reported_filled_before_its_fills_still_counts_until_they_arrive() -> None:
    """Reports and fills travel apart: between the venue's FILLED report and the fills, the order
    is closed but the position has not moved. Flatten and the gate count it meanwhile
    (``awaiting_fills``), or a flatten in that window would flatten twice."""
    book = OrderBook("x")
    rec = enter(book, args("SOL-USD", Side.SELL, 0.5), "sim")
    book.apply_update(update(rec.client_order_id, OrderStatus.FILLED, 0.5, symbol="SOL-USD", side=Side.SELL))
    assert book.open_orders("SOL-USD") == []
    assert book.awaiting_fills("SOL-USD") == [rec] and rec.qty - rec.filled_qty == 0.5
    book.apply_fill(fill(rec.client_order_id, "f1", 0.2, side=Side.SELL))
    assert book.awaiting_fills("SOL-USD") == [rec] and abs(rec.qty - rec.filled_qty - 0.3) < 1e-12
    book.apply_fill(fill(rec.client_order_id, "f2", 0.3, side=Side.SELL))
    assert book.awaiting_fills() == []
    # An order whose fills came first is never awaiting.
    other = enter(book, args("SOL-USD", Side.BUY, 1.0), "sim")
    book.apply_fill(fill(other.client_order_id, "f3", 1.0))
    book.apply_update(update(other.client_order_id, OrderStatus.FILLED, 1.0, symbol="SOL-USD"))
    assert book.awaiting_fills() == []


def test_the_book_keeps_the_intent_itself_under_its_client_order_id() -> None:
    """One order shape: the record's order is the engine's intent, every field of it, with the
    client order id and the connector; that struct is what goes to the venue (``new_order``)."""
    intent = OrderArgs(symbol="ETH-USD", side=Side.SELL, qty=2.5, order_type="limit", limit_price=3001.5,
                       strategy="mm", reduce_only=True, connector="", origin_ts_ns=123456789)
    assert all(getattr(intent, f) != getattr(OrderArgs(symbol="X", side=Side.BUY, qty=1.0), f)
               for f in OrderArgs.__struct_fields__ if f not in ("symbol", "side", "qty", "connector"))
    record = OrderBook("p").make(intent, "sim")
    order = record.order
    assert isinstance(order, NewOrderArgs) and order.client_order_id == record.client_order_id
    assert {f: getattr(order, f) for f in OrderArgs.__struct_fields__} == \
        {**{f: getattr(intent, f) for f in OrderArgs.__struct_fields__}, "connector": "sim"}
    # as the venue decodes it
    assert proto.parse_args("new_order", msgspec.to_builtins(order)) == order


def test_a_report_that_changes_nothing_is_dropped_and_counted() -> None:
    """The venue reports each step twice (its reply and its stream): the copy that changes nothing
    (same status, a stale one, a fill claimed before the fill) comes back None and is counted; a
    later status, or the venue's order id first named, still applies."""
    book = OrderBook("p")
    record = enter(book, args(qty=2.0), "sim")
    cid = record.client_order_id
    assert book.apply_update(update(cid, OrderStatus.ACKNOWLEDGED, qty=2.0)) is record
    assert book.apply_update(update(cid, OrderStatus.ACKNOWLEDGED, qty=2.0)) is None
    assert book.apply_update(update(cid, OrderStatus.ACKNOWLEDGED, qty=2.0, venue_order_id="v1")) is record
    assert book.apply_update(update(cid, OrderStatus.NEW, qty=2.0, venue_order_id="v1")) is None
    assert book.duplicate_reports == 2
    assert book.apply_update(update(cid, OrderStatus.PARTIALLY_FILLED, qty=2.0, filled_qty=1.0)) is record
    assert book.apply_update(update(cid, OrderStatus.PARTIALLY_FILLED, qty=2.0, filled_qty=1.5)) is None
    assert record.filled_qty == 0.0  # fills bring the quantity, and none is lost:
    assert book.apply_fill(fill(cid, "f1", 1.5)) is record and record.filled_qty == 1.5
    assert book.apply_update(update(cid, OrderStatus.FILLED, qty=2.0)) is record
    assert book.awaiting_fills() == [record]
    assert book.apply_update(update(cid, OrderStatus.FILLED, qty=2.0)) is None  # the other copy
    assert book.apply_fill(fill(cid, "f2", 0.5)) is record and record.filled_qty == 2.0
    assert book.awaiting_fills() == [] and book.duplicate_reports == 4 and book.fills == 2


def test_orders_are_found_by_the_venues_order_id_and_forgotten_with_them() -> None:
    """A REST venue's trades name its own order id: the book says which of its orders that is, per
    connector, for the orders it holds (none of the ones it has forgotten)."""
    book = OrderBook("p", keep_closed=2)
    first = enter(book, args(), "ccxt")
    book.apply_update(update(first.client_order_id, OrderStatus.ACKNOWLEDGED, venue_order_id="901", connector="ccxt"))
    assert book.venue_order_ids("ccxt") == {"901": first.client_order_id} and book.venue_order_ids("sim") == {}
    before = time.time_ns()
    book.apply_fill(fill(first.client_order_id, "f1", 1.0))
    assert book.last_filled_ns("ccxt")["BTC-USD"] >= before and book.last_filled_ns("sim") == {}
    for i in range(2):  # two more closed orders: the first is forgotten, and so is its venue id
        record = enter(book, args(), "ccxt")
        book.apply_update(update(record.client_order_id, OrderStatus.CANCELLED, venue_order_id=f"91{i}",
                                 connector="ccxt"))
    assert set(book.venue_order_ids("ccxt")) == {"910", "911"} and book.last_filled_ns("ccxt") == {}


def test_a_restored_order_reported_filled_still_awaits_its_fills() -> None:
    """Journalled as filled before its fills arrived, then a restart: a flatten must still count it."""
    book = OrderBook("p")
    record = enter(book, args(qty=2.0))
    book.apply_update(update(record.client_order_id, OrderStatus.FILLED, qty=2.0))
    restarted = OrderBook("q")
    restarted.restore([record], [])
    assert [o.client_order_id for o in restarted.awaiting_fills("BTC-USD")] == [record.client_order_id]
    restarted.apply_fill(fill(record.client_order_id, "f1", 2.0))
    assert restarted.awaiting_fills() == []
