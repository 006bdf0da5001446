"""The reconciliation rig shared by the unit tests: a real venue Matcher behind the smallest real
connector, and the exchange manager's real book, positions and Reconciler.

``MatcherConnector`` answers reconciliation's queries (mass status, fills since a number, order
status) by asking the venue simulator's own command handlers (services.venue_sim.handlers, over a
real Matcher), and passes each answer through the wire encoding (proto.encode/decode of the Reply,
then proto.parse_result) as the real connector receives it. Orders are placed on the venue with
Matcher.new_order and the market moved with Matcher.on_quote; missed reports are simulated simply by
not telling the book.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import msgspec
from unit_support import enter

import proto
from proto import Side
from proto.commands import NewOrderArgs, OrderArgs, parse_args
from services.exchange_manager.fill_cursor import FillCursor
from services.exchange_manager.fill_order import FillOrder
from services.exchange_manager.order_book import OrderBook
from services.exchange_manager.reconciliation import Outcome, Reconciler
from services.positions import Position
from services.venue_sim.handlers import build_handlers
from services.venue_sim.matching import Matcher
from services.venue_sim.settings import VenueSimSettings


class MatcherConnector:
    """Implements the ``Connector`` queries by asking the venue simulator's handlers over a real Matcher."""

    def __init__(self, name: str, matcher: Matcher) -> None:
        self.name = name
        self.matcher = matcher
        self.venue_session: int | None = matcher.session
        self.last_reply_bytes = 0
        self.asked: list[tuple[str, dict[str, Any]]] = []
        self._handlers = build_handlers(SimpleNamespace(matcher=matcher))  # type: ignore[arg-type]
        self._seq = 0
        self.answering = True
        self.connected = True

    def is_connected_check(self) -> bool:
        return self.connected

    def mass_status(self, on_result: Callable[[Any], None]) -> None:
        self.query("mass_status", {}, proto.MassStatus, on_result)

    def fills_since(self, after_seq: int, limit: int, on_result: Callable[[Any], None]) -> None:
        self.query("fills_since", {"after_seq": after_seq, "limit": limit}, proto.FillPage, on_result)

    def order_status(self, client_order_ids: list[str], on_result: Callable[[Any], None]) -> None:
        self.query("order_status", {"client_order_ids": client_order_ids}, proto.OrderStatusReports, on_result)

    def instruments(self, on_result: Callable[[Any], None]) -> None:
        self.query("instruments", {}, proto.InstrumentList, on_result)

    def query(self, name: str, args: dict[str, Any], report_type: type, on_result: Callable[[Any], None]) -> None:
        self.asked.append((name, args))
        if not self.answering:
            on_result(None)  # what the real connector reports on a timeout or a refused query
            return
        self._seq += 1
        reply = proto.ok(f"q{self._seq}", **self._handlers[name](parse_args(name, args)))
        data = proto.encode("venue_sim", 1, self._seq, time.time_ns(), reply)
        self.last_reply_bytes = len(data)
        report = proto.parse_result(proto.decode(data).body.result, report_type)
        for message in getattr(report, "fills", []) + getattr(report, "open_orders", []):
            message.connector = self.name  # as the real connector stamps its own name
        on_result(report)


class Rig:
    def __init__(self, grace_s: float = 2.0, page_size: int = 500, cursors: dict[str, FillCursor] | None = None,
                 matcher: Matcher | None = None, book_prefix: str = "em",
                 owner: Callable[[str], str] | None = None) -> None:
        self.matcher = matcher or Matcher(VenueSimSettings(fee_bps=1.0, slippage_bps=0.0), epoch=time.time_ns())
        self.matcher.on_quote("BTC-USD", 100.0, 101.0)
        self.matcher.on_quote("ETH-USD", 10.0, 10.1)
        self.connector = MatcherConnector("sim", self.matcher)
        self.book = OrderBook(book_prefix)
        self.positions: dict[str, Position] = {}
        self.reports: list[Outcome] = []
        self.listeners: list[Callable[[Outcome], None]] = []  # e.g. the VenueWatch, as the exchange manager wires it
        self.saved: dict[str, tuple[int, int]] = {}  # what the journal would hold: connector -> (session, applied)
        self.reconciler = Reconciler(self.book, self.positions, grace_s, self.apply_fill, self.on_outcome,
                                     page_size=page_size, cursors=cursors,
                                     save_cursor=lambda name, c: self.saved.__setitem__(name, (c.session, c.applied)),
                                     owner=owner)
        self.page_size = page_size
        self.timers: list[tuple[float, Callable[[], None]]] = []  # the reactor's call_later, run by hand
        self.fill_order = FillOrder(self.reconciler.cursor, self._apply, self._ask_fills_after,
                                    lambda delay, fn: self.timers.append((delay, fn)))

    def on_outcome(self, outcome: Outcome) -> None:
        self.reports.append(outcome)
        for listener in self.listeners:
            listener(outcome)

    def apply_fill(self, fill: proto.Fill) -> None:
        """What the exchange manager does with a fill (ExchangeManager.on_fill, minus publishing); the
        connector's name on it, as the real connector stamps it."""
        self.fill_order.arrive(msgspec.structs.replace(fill, connector="sim"), self.matcher.session)

    def _ask_fills_after(self, _connector: str, after_seq: int) -> None:
        def on_page(page: proto.FillPage | None) -> None:
            for fill in page.fills if page is not None else []:
                self.apply_fill(fill)
            self.fill_order.answered("sim")

        self.connector.fills_since(after_seq, self.page_size, on_page)

    def _apply(self, fill: proto.Fill) -> None:
        record = self.book.apply_fill(fill)
        self.reconciler.heard("sim", self.matcher.session, fill)
        if record is not None:
            self.positions.setdefault(fill.symbol, Position()).apply_fill(fill.side.sign, fill.qty, fill.price,
                                                                          fill.fee)

    def our_order(self, side: Side, qty: float, symbol: str = "BTC-USD", limit: float | None = None,
                  connector: str = "sim", send: bool = True) -> str:
        """An order in our book; ``send`` places it at the venue too (its reports are not seen)."""
        args = OrderArgs(symbol=symbol, side=side, qty=qty, order_type="limit" if limit else "market",
                         limit_price=limit)
        record = enter(self.book, args, connector)
        if send:
            self.matcher.new_order(NewOrderArgs(client_order_id=record.client_order_id, symbol=symbol, side=side,
                                                qty=qty, order_type=args.order_type, limit_price=limit))
        return record.client_order_id

    def reconcile(self) -> Outcome:
        before = len(self.reports)
        self.reconciler.run(self.connector)
        assert len(self.reports) == before + 1, "the outcome is reported once the venue has answered"
        return self.reports[-1]
