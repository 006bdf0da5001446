"""proto/venue_reports.py and the venue simulator's answers: typed, paged, and bounded in size
whatever the session's history."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

import proto
from proto import OrderStatus, Side
from proto.commands import NewOrderArgs, parse_args
from proto.venue_reports import MAX_FILL_PAGE, MAX_OPEN_ORDERS, MAX_ORDER_ID_PAGE, MAX_ORDER_STATUS_IDS
from services.venue_sim.handlers import build_handlers
from services.venue_sim.matching import Matcher
from services.venue_sim.settings import VenueSimSettings

# Longer than any id or symbol the system makes (ids like "19a2b3c4d5e-12345", symbols like "BTC-USD").
LONG_ID = "x" * 48
LONG_SYMBOL = "S" * 24


def _venue() -> tuple[Matcher, Any]:
    matcher = Matcher(VenueSimSettings(fee_bps=1.0, slippage_bps=0.0), epoch=time.time_ns())
    matcher.on_quote("BTC-USD", 100.0, 101.0)
    return matcher, build_handlers(SimpleNamespace(matcher=matcher))  # type: ignore[arg-type]


def _ask(handlers: Any, name: str, report_type: type[proto.venue_reports.R], **args: Any) -> proto.venue_reports.R:
    """A command through the wire encoding, its result validated back into its report."""
    reply = proto.ok("q", **handlers[name](parse_args(name, args)))
    return proto.parse_result(proto.decode(proto.encode("venue_sim", 1, 1, 1, reply)).body.result, report_type)


def _market(matcher: Matcher, n: int) -> None:
    for i in range(n):
        matcher.new_order(NewOrderArgs(client_order_id=f"c{i}", symbol="BTC-USD", side=Side.BUY if i % 2 else Side.SELL,
                                       qty=0.1))


def test_fills_are_numbered_and_paged() -> None:
    matcher, handlers = _venue()
    _market(matcher, 7)
    assert [f.venue_seq for f in matcher.native.fills] == list(range(1, 8))
    page = _ask(handlers, "fills_since", proto.FillPage, after_seq=0, limit=3)
    assert [f.venue_seq for f in page.fills] == [1, 2, 3] and page.more and page.last_seq == 7
    assert page.session == matcher.session
    page = _ask(handlers, "fills_since", proto.FillPage, after_seq=6, limit=3)
    assert [f.venue_seq for f in page.fills] == [7] and not page.more
    page = _ask(handlers, "fills_since", proto.FillPage, after_seq=7, limit=3)
    assert page.fills == [] and not page.more


def test_mass_status_carries_the_fill_number_its_positions_include() -> None:
    matcher, handlers = _venue()
    _market(matcher, 3)
    matcher.new_order(NewOrderArgs(client_order_id="rest", symbol="BTC-USD", side=Side.BUY, qty=1.0,
                                   order_type="limit", limit_price=90.0))
    status = _ask(handlers, "mass_status", proto.MassStatus)
    assert status.fill_seq == 3 and status.open_orders_total == 1
    assert [o.client_order_id for o in status.open_orders] == ["rest"]
    assert [(p.symbol, p.qty) for p in status.positions] == [("BTC-USD", pytest.approx(-0.1))]


def test_order_status_answers_for_the_ids_asked_only() -> None:
    matcher, handlers = _venue()
    _market(matcher, 3)
    reports = _ask(handlers, "order_status", proto.OrderStatusReports, client_order_ids=["c1", "never-sent"])
    assert [(r.client_order_id, r.known) for r in reports.reports] == [("c1", True), ("never-sent", False)]
    assert reports.reports[0].order is not None and reports.reports[0].order.status is OrderStatus.FILLED
    assert reports.reports[1].order is None
    with pytest.raises(proto.ProtocolError):
        parse_args("order_status", {"client_order_ids": ["x"] * (MAX_ORDER_STATUS_IDS + 1)})


def test_orders_received_pages_through_every_id_once() -> None:
    matcher, handlers = _venue()
    _market(matcher, 5)
    matcher.new_order(NewOrderArgs(client_order_id="c2", symbol="BTC-USD", side=Side.BUY, qty=0.1))  # a resend
    ids: list[str] = []
    while True:
        page = _ask(handlers, "orders_received", proto.OrderIdPage, after=len(ids), limit=2)
        ids += page.ids
        assert page.next_after == len(ids)
        if not page.more:
            break
    assert ids == [f"c{i}" for i in range(5)] and matcher.duplicate_ids == 1


def test_page_limits_are_validated() -> None:
    with pytest.raises(proto.ProtocolError):
        parse_args("fills_since", {"after_seq": 0, "limit": MAX_FILL_PAGE + 1})
    with pytest.raises(proto.ProtocolError):
        parse_args("fills_since", {"after_seq": -1})
    with pytest.raises(proto.ProtocolError):
        parse_args("orders_received", {"limit": MAX_ORDER_ID_PAGE + 1})


def _order(i: int) -> proto.OrderUpdate:
    return proto.OrderUpdate(client_order_id=f"{LONG_ID}{i}", symbol=LONG_SYMBOL, side=Side.SELL, qty=123456.789,
                             order_type="limit", limit_price=98765.4321, status=OrderStatus.PARTIALLY_FILLED,
                             filled_qty=0.123456789, avg_fill_price=98765.4321, venue_order_id=f"{LONG_ID}v{i}",
                             reason="", strategy="", connector="SIM", ts_ns=time.time_ns(), reduce_only=True)


def _fill(i: int) -> proto.Fill:
    return proto.Fill(fill_id=f"{LONG_ID}F{i}", client_order_id=f"{LONG_ID}{i}", symbol=LONG_SYMBOL, side=Side.BUY,
                      qty=0.123456789, price=98765.4321, fee=1.23456789, ts_ns=time.time_ns(), strategy="",
                      connector="SIM", venue_seq=10**12 + i)


@pytest.mark.parametrize("report", [
    proto.FillPage(session=time.time_ns(), fills=[_fill(i) for i in range(MAX_FILL_PAGE)], last_seq=10**12, more=True),
    proto.MassStatus(session=time.time_ns(), fill_seq=10**12, open_orders=[_order(i) for i in range(MAX_OPEN_ORDERS)],
                     open_orders_total=MAX_OPEN_ORDERS,
                     positions=[proto.PositionReport(symbol=f"{LONG_SYMBOL}{i}", qty=1.5, avg_price=2.5,
                                                     realized_pnl=-3.5, fees=4.5, volume=5.5) for i in range(200)]),
    proto.OrderStatusReports(session=time.time_ns(), reports=[
        proto.OrderStatusReport(client_order_id=f"{LONG_ID}{i}", known=True, order=_order(i))
        for i in range(MAX_ORDER_STATUS_IDS)]),
    proto.OrderIdPage(ids=[f"{LONG_ID}{i}" for i in range(MAX_ORDER_ID_PAGE)], next_after=10**12, more=True),
], ids=lambda r: type(r).__name__)
def test_the_largest_answer_of_each_kind_fits_a_message(report: proto.venue_reports.Report) -> None:
    data = proto.encode("venue_sim", time.time_ns(), 1, time.time_ns(), proto.ok("venue_sim:1:1", **proto.result_of(report)))
    assert len(data) < proto.MAX_MESSAGE_BYTES * 0.9, len(data)
    assert proto.parse_result(proto.decode(data).body.result, type(report)) == report


def _wire(report: proto.venue_reports.Report) -> dict[str, Any]:
    """A report's result map as the exchange manager receives it: encoded and decoded again."""
    data = proto.encode("venue_sim", 1, 1, 1, proto.ok("venue_sim:1:1", **proto.result_of(report)))
    return proto.decode(data).body.result


def _position(**kw: Any) -> dict[str, Any]:
    return {"symbol": "BTC-USD", "qty": 1.0, "avg_price": 100.0, "realized_pnl": 0.0, "fees": 0.0, "volume": 0.0} | kw


def _order_status(cid: str = "c1", **order: Any) -> dict[str, Any]:
    return {"client_order_id": cid, "known": True,
            "order": msgspec.to_builtins(_order(1)) | order}


@pytest.mark.parametrize(("report_type", "result", "words"), [
    (proto.MassStatus, {"fill_seq": -1}, "Expected `int` >= 0 - at `$.fill_seq`"),
    (proto.MassStatus, {"session": -5}, "at `$.session`"),
    (proto.MassStatus, {"open_orders_total": -1}, "at `$.open_orders_total`"),
    (proto.MassStatus, {"positions": [_position(qty=float("inf"))]}, "at `$.positions[0].qty`"),
    (proto.MassStatus, {"positions": [_position(qty=float("nan"))]}, "at `$.positions[0].qty`"),
    (proto.MassStatus, {"positions": [_position(qty=-1e300)]}, "at `$.positions[0].qty`"),
    (proto.MassStatus, {"positions": [_position(symbol="btc-usd")]}, "at `$.positions[0].symbol`"),
    (proto.MassStatus, {"positions": [_position(symbol="BTC-USD\n")]}, "at `$.positions[0].symbol`"),
    (proto.MassStatus, {"positions": [_position(symbol="S" * 65)]}, "at `$.positions[0].symbol`"),
    (proto.MassStatus, {"positions": [_position(avg_price=-1.0)]}, "at `$.positions[0].avg_price`"),
    (proto.MassStatus, {"positions": [_position(realized_pnl=float("-inf"))]}, "at `$.positions[0].realized_pnl`"),
    (proto.MassStatus, {"positions": [_position(fees=float("nan"))]}, "at `$.positions[0].fees`"),
    (proto.MassStatus, {"positions": [_position(volume=-1.0)]}, "at `$.positions[0].volume`"),
    (proto.MassStatus, {"positions": [_position(symbol=f"S{i}") for i in range(proto.venue_reports.MAX_POSITIONS + 1)]},
     "at `$.positions`"),
    (proto.MassStatus, {"open_orders": [msgspec.to_builtins(_order(1)) | {"filled_qty": float("inf")}]},
     "at `$.open_orders[0].filled_qty`"),
    (proto.FillPage, {"last_seq": -1}, "at `$.last_seq`"),
    (proto.FillPage, {"fills": [msgspec.to_builtins(_fill(1)) | {"venue_seq": -3}]},
     "at `$.fills[0].venue_seq`"),
    (proto.FillPage, {"fills": [msgspec.to_builtins(_fill(1)) | {"fee": float("nan")}]},
     "at `$.fills[0].fee`"),
    (proto.OrderStatusReports, {"reports": [_order_status("")]}, "at `$.reports[0].client_order_id`"),
    (proto.OrderStatusReports, {"reports": [_order_status("c1\x00")]}, "at `$.reports[0].client_order_id`"),
    (proto.OrderStatusReports, {"reports": [_order_status(avg_fill_price=float("inf"))]},
     "at `$.reports[0].order.avg_fill_price`"),
    (proto.OrderIdPage, {"ids": ["x" * 65]}, "at `$.ids[0]`"),
    (proto.OrderIdPage, {"ids": [f"c{i}" for i in range(MAX_ORDER_ID_PAGE + 1)]}, "at `$.ids`"),
    (proto.OrderIdPage, {"next_after": -1}, "at `$.next_after`"),
])
def test_a_hostile_answer_fails_decoding_with_a_protocol_error(report_type: type, result: dict, words: str) -> None:
    """A venue that answers inf, NaN, a negative number, a bad symbol or id, or too many entries:
    ``parse_result`` refuses it (the connector counts and logs the error) and nothing is applied."""
    valid = {proto.MassStatus: proto.MassStatus(session=1, fill_seq=0, open_orders=[], open_orders_total=0, positions=[]),
             proto.FillPage: proto.FillPage(session=1, fills=[], last_seq=0, more=False),
             proto.OrderStatusReports: proto.OrderStatusReports(session=1, reports=[]),
             proto.OrderIdPage: proto.OrderIdPage(ids=[], next_after=0, more=False)}[report_type]
    assert proto.parse_result(_wire(valid), report_type) == valid
    with pytest.raises(proto.ProtocolError) as caught:
        proto.parse_result(_wire(valid) | result, report_type)
    assert caught.value.kind == "invalid" and f"{report_type.__name__}: " in str(caught.value), caught.value
    assert words in str(caught.value), caught.value
