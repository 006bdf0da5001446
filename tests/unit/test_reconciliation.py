"""services.exchange_manager.reconciliation.Reconciler against a real venue Matcher.

The connector below is the smallest real thing that answers reconciliation's queries (mass status,
fills since a number, order status): it asks the venue simulator's own command handlers
(services.venue_sim.handlers, over a real Matcher), and passes each answer through the wire encoding
(proto.encode/decode of the Reply, then proto.parse_result) as the real connector would receive it. Orders are placed on the venue with Matcher.new_order and the market
moved with Matcher.on_quote; the exchange manager's book and positions are the real objects, and
missed reports are simulated simply by not telling the book.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

import proto
from proto import OrderStatus, Side
from proto.commands import NewOrderArgs, OrderArgs, parse_args
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

    def mass_status(self, on_result: Callable[[Any], None]) -> None:
        self.query("mass_status", {}, proto.MassStatus, on_result)

    def fills_since(self, after_seq: int, limit: int, on_result: Callable[[Any], None]) -> None:
        self.query("fills_since", {"after_seq": after_seq, "limit": limit}, proto.FillPage, on_result)

    def order_status(self, client_order_ids: list[str], on_result: Callable[[Any], None]) -> None:
        self.query("order_status", {"client_order_ids": client_order_ids}, proto.OrderStatusReports, on_result)

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
    def __init__(self, grace_s: float = 2.0) -> None:
        self.matcher = Matcher(VenueSimSettings(fee_bps=1.0, slippage_bps=0.0), epoch=time.time_ns())
        self.matcher.on_quote("BTC-USD", 100.0, 101.0)
        self.matcher.on_quote("ETH-USD", 10.0, 10.1)
        self.connector = MatcherConnector("sim", self.matcher)
        self.book = OrderBook("em")
        self.positions: dict[str, Position] = {}
        self.reports: list[Outcome] = []
        self.reconciler = Reconciler(self.book, self.positions, grace_s, self.apply_fill, self.reports.append)

    def apply_fill(self, fill: proto.Fill) -> None:
        """What the exchange manager does with a fill (ExchangeManager.on_fill, minus publishing)."""
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
        record = self.book.new(args, connector)
        if send:
            self.matcher.new_order(NewOrderArgs(client_order_id=record.client_order_id, symbol=symbol, side=side,
                                                qty=qty, order_type=args.order_type, limit_price=limit))
        return record.client_order_id

    def reconcile(self) -> Outcome:
        before = len(self.reports)
        self.reconciler.run(self.connector)
        assert len(self.reports) == before + 1, "the outcome is reported once the venue has answered"
        return self.reports[-1]


def test_reconcile_resolves_adopts_and_takes_venue_positions() -> None:
    rig = Rig(grace_s=2.0)
    book = rig.book
    resting = rig.our_order(Side.BUY, 1.0, limit=90.0)  # open at the venue: stays open
    filled = rig.our_order(Side.BUY, 2.0)  # filled at the venue; we missed the fill
    cancelled = rig.our_order(Side.SELL, 1.0, limit=120.0)
    rig.matcher.cancel(cancelled)  # cancelled at the venue; we missed the report
    lost = rig.our_order(Side.BUY, 1.0, send=False)  # never reached the venue, long ago
    book.orders[lost].created_ns = time.time_ns() - 10_000_000_000
    in_flight = rig.our_order(Side.BUY, 1.0, send=False)  # sent a moment ago: may still be on its way
    elsewhere = rig.our_order(Side.BUY, 1.0, connector="other", send=False)
    book.orders[elsewhere].created_ns = time.time_ns() - 10_000_000_000
    # an order at the venue the book never heard of
    rig.matcher.new_order(NewOrderArgs(client_order_id="stranger-1", symbol="BTC-USD", side=Side.SELL, qty=0.5,
                                       order_type="limit", limit_price=130.0))

    outcome = rig.reconcile()

    assert outcome.ok and outcome.connector == "sim" and outcome.run == 1 and outcome.error == ""
    assert outcome.adopted == ["stranger-1"]
    assert book.orders["stranger-1"].status is OrderStatus.ACKNOWLEDGED and book.adopted == 1
    assert book.orders["stranger-1"].limit_price == 130.0 and book.orders["stranger-1"].side is Side.SELL
    assert book.orders[resting].status is OrderStatus.ACKNOWLEDGED  # the venue's report was applied
    assert book.orders[filled].status is OrderStatus.FILLED
    assert book.orders[filled].filled_qty == 2.0 and book.orders[filled].avg_fill_price == 101.0
    assert book.orders[cancelled].status is OrderStatus.CANCELLED
    assert book.orders[cancelled].reason == "not open at the venue (reconciled)"
    assert book.orders[lost].status is OrderStatus.REJECTED
    assert book.orders[lost].reason == "lost in transit: the venue never received it"
    assert book.orders[in_flight].status is OrderStatus.NEW
    assert book.orders[elsewhere].status is OrderStatus.NEW  # another connector's order: not this venue's
    assert outcome.resolved[cancelled] == "cancelled" and outcome.resolved[lost] == "rejected"
    assert in_flight not in outcome.resolved and elsewhere not in outcome.resolved
    assert resting not in outcome.resolved
    # the missed fill was applied: positions agree with the venue, so no mismatch
    assert rig.positions["BTC-USD"].qty == pytest.approx(2.0)
    assert rig.positions["BTC-USD"].fees == pytest.approx(rig.matcher.positions["BTC-USD"].fees)
    assert outcome.position_mismatches == {}
    assert outcome.venue_positions == {"BTC-USD": pytest.approx(2.0)}
    assert outcome.venue_open_orders == 2  # resting + stranger
    assert rig.reconciler.last is outcome and rig.reconciler.outcomes["sim"] is outcome


def test_an_order_resolved_from_venue_fills_is_listed_as_resolved() -> None:
    """Outcome.resolved is 'client order id -> new status' for every order the book thought open and
    the venue does not hold open; one resolved by the venue's fills should show up as filled."""
    rig = Rig()
    filled = rig.our_order(Side.BUY, 2.0)
    outcome = rig.reconcile()
    assert rig.book.orders[filled].status is OrderStatus.FILLED
    assert outcome.resolved == {filled: "filled"}


def test_position_mismatch_is_reported_and_the_venue_taken_as_truth() -> None:
    rig = Rig()
    rig.our_order(Side.BUY, 1.0, symbol="ETH-USD")  # venue: long 1 ETH at 10.1
    rig.reconcile()  # we learn of the fill
    rig.positions["ETH-USD"].apply_fill(1, 1.0, 10.0, 0.0)  # a phantom fill only we counted
    assert rig.positions["ETH-USD"].qty == pytest.approx(2.0)

    outcome = rig.reconcile()

    assert outcome.position_mismatches == {"ETH-USD": (pytest.approx(2.0), pytest.approx(1.0))}
    venue = rig.matcher.positions["ETH-USD"]
    ours = rig.positions["ETH-USD"]
    assert (ours.qty, ours.avg_price, ours.realized_pnl, ours.fees, ours.volume) == pytest.approx(
        (venue.qty, venue.avg_price, venue.realized_pnl, venue.fees, venue.volume))
    assert outcome.venue_positions == {"ETH-USD": pytest.approx(1.0)}
    again = rig.reconcile()  # now they agree
    assert again.position_mismatches == {} and again.run == 3


def test_a_position_the_venue_does_not_hold_at_all_is_zeroed() -> None:
    """We hold 1.5 SOL; the venue has no SOL position at all (say it restarted with a fresh account).
    The venue is the truth: our position must become flat, not stay at 1.5 (a later flatten would
    otherwise sell 1.5 at the venue and open a short there)."""
    rig = Rig()
    rig.positions["SOL-USD"] = Position(qty=1.5, avg_price=150.0)
    outcome = rig.reconcile()
    assert outcome.position_mismatches == {"SOL-USD": (1.5, 0.0)}
    assert "SOL-USD" not in outcome.venue_positions
    assert rig.positions["SOL-USD"].qty == 0.0


def test_reconciling_twice_changes_nothing_the_second_time() -> None:
    rig = Rig()
    rig.our_order(Side.SELL, 3.0)
    rig.matcher.new_order(NewOrderArgs(client_order_id="stranger-2", symbol="ETH-USD", side=Side.BUY, qty=1.0,
                                       order_type="limit", limit_price=9.0))
    first = rig.reconcile()
    snapshot = rig.positions["BTC-USD"].to_dict()
    second = rig.reconcile()
    assert first.adopted == ["stranger-2"] and second.adopted == []
    assert second.resolved == {} and second.position_mismatches == {}
    assert rig.positions["BTC-USD"].to_dict() == snapshot
    assert rig.positions["BTC-USD"].qty == pytest.approx(-3.0)
    assert rig.book.fills == 1 and rig.book.adopted == 1


def test_a_venue_that_does_not_answer_changes_nothing() -> None:
    rig = Rig()
    lost = rig.our_order(Side.BUY, 1.0, send=False)
    rig.book.orders[lost].created_ns = 0
    rig.connector.answering = False
    outcome = rig.reconcile()
    assert not outcome.ok
    assert outcome.error == "venue did not answer every reconciliation query"
    assert rig.book.orders[lost].status is OrderStatus.NEW
    assert outcome.venue_open_orders == -1 and outcome.venue_positions == {}


def test_a_fill_between_the_venue_answers_is_counted_once() -> None:
    """The venue fills an order after its mass status (positions at fill number S) and before it
    sends the fills the book missed; that fill's message reaches us after the reconciliation. Only
    fills up to S are taken from the page, the positions compared are those at S, and the late fill
    is applied once, when its message comes, not twice."""
    rig = Rig()
    missed = rig.our_order(Side.BUY, 2.0)  # filled at the venue; the book missed it (fill 1)
    late: list[proto.Fill] = []
    racing: list[str] = []
    query = rig.connector.query

    def racing_query(name: str, args: dict[str, Any], report_type: type, on_result: Callable[[Any], None]) -> None:
        if name != "mass_status":
            return query(name, args, report_type, on_result)
        answers: list[Any] = []
        query(name, args, report_type, answers.append)  # the snapshot, at fill 1
        racing.append(rig.our_order(Side.BUY, 1.0, symbol="ETH-USD"))  # then an order of ours fills: fill 2
        late.extend(f for f in rig.matcher.fills if f.client_order_id == racing[0])
        on_result(answers[0])

    rig.connector.query = racing_query  # type: ignore[method-assign]
    outcome = rig.reconcile()
    assert outcome.ok and outcome.position_mismatches == {}, outcome
    assert ("fills_since", {"after_seq": 0, "limit": 500}) in rig.connector.asked
    assert outcome.fill_pages == 1 and outcome.fills_fetched == 1  # fill 2 was in the page, not taken
    # the racing order is in doubt (open in the book, not in the snapshot): the venue reports it filled,
    # and the book waits for its fill rather than inventing one
    assert outcome.resolved == {missed: "filled", racing[0]: "filled"}
    assert [o.client_order_id for o in rig.book.awaiting_fills()] == racing
    assert rig.positions["BTC-USD"].qty == pytest.approx(2.0)
    assert "ETH-USD" not in rig.positions or rig.positions["ETH-USD"].qty == 0.0
    assert late and late[0].venue_seq == 2
    for fill in late:  # its message arrives now
        rig.apply_fill(fill)
    assert rig.positions["ETH-USD"].qty == pytest.approx(1.0) == rig.matcher.positions["ETH-USD"].qty
    assert rig.reconciler.cursor("sim").applied == 2
    again = rig.reconcile()
    assert again.ok and again.position_mismatches == {} and again.fill_pages == 0


def test_an_answer_older_than_a_fill_already_applied_is_stale() -> None:
    """The venue answers, then fills our flatten, and the fill's message (on the venue's stream)
    overtakes the answers (on the command session). Taking the answer's position would put back the
    position the fill has just closed, and the next flatten would reverse it: the answer is reported
    stale, nothing but its fills is taken, and the next reconciliation agrees."""
    rig = Rig()
    rig.our_order(Side.BUY, 1.0)
    for fill in rig.matcher.fills:
        rig.apply_fill(fill)
    assert rig.positions["BTC-USD"].qty == pytest.approx(1.0)
    held: list[tuple[Callable[[Any], None], Any]] = []
    query = rig.connector.query

    def answered_now_delivered_later(name: str, args: dict[str, Any], report_type: type,
                                     on_result: Callable[[Any], None]) -> None:
        query(name, args, report_type, lambda result: held.append((on_result, result)))

    rig.connector.query = answered_now_delivered_later  # type: ignore[method-assign]
    rig.reconciler.run(rig.connector)
    rig.connector.query = query  # type: ignore[method-assign]
    closing = rig.our_order(Side.SELL, 1.0)  # the flatten fills at the venue after it answered
    for fill in [f for f in rig.matcher.fills if f.client_order_id == closing]:
        rig.apply_fill(fill)  # and its message arrives first
    assert rig.positions["BTC-USD"].qty == pytest.approx(0.0)
    for on_result, result in held:
        on_result(result)
    stale = rig.reports[-1]
    assert not stale.ok and stale.stale and stale.error.startswith("stale answer: the venue answered before 1 fill")
    assert stale.position_mismatches == {} and rig.reconciler.stale_answers == 1
    assert rig.positions["BTC-USD"].qty == pytest.approx(0.0), "a stale answer put a closed position back"
    fresh = rig.reconcile()
    assert fresh.ok and not fresh.stale and fresh.position_mismatches == {}
    assert abs(fresh.venue_positions.get("BTC-USD", 0.0)) < 1e-12


def test_orders_sent_but_not_yet_at_the_venue_are_counted_in_flight() -> None:
    """An order within the in-flight grace that the venue has not received is neither rejected nor
    invisible: the failsafe does not call the venue flat while one may still land."""
    rig = Rig(grace_s=60.0)
    on_its_way = rig.our_order(Side.SELL, 1.0, send=False)
    outcome = rig.reconcile()
    assert outcome.ok and outcome.in_flight == 1 and outcome.venue_open_orders == 0
    assert rig.book.orders[on_its_way].status is OrderStatus.NEW
    rig.matcher.new_order(NewOrderArgs(client_order_id=on_its_way, symbol="BTC-USD", side=Side.SELL, qty=1.0,
                                       order_type="market", limit_price=None))
    outcome = rig.reconcile()
    assert outcome.ok and outcome.in_flight == 0
    assert rig.book.orders[on_its_way].status is OrderStatus.FILLED
