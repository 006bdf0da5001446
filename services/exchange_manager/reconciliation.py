"""Reconciliation: make the book of record agree with a venue, asking only what has changed.

One run asks the venue (``proto.venue_reports``), in this order:
  1. its **mass status**: the orders it holds open and its positions, one snapshot, with the number
     ``S`` of the last fill those positions include;
  2. the **fills after** the last number the book has applied (``FillCursor.applied``, journalled),
     page by page, up to ``S``: only the fills the book missed, however long the session;
  3. the **status of the orders in doubt**: those the book holds open that the venue does not.
Then:
  * an open order the book does not know is adopted (and reported);
  * an order in doubt is resolved from the venue's report: filled, cancelled or rejected; one the
    venue never received is rejected as lost in transit (unless it was sent so recently that it may
    still be on its way: ``in_flight``);
  * an order the venue had reported filled before the run began whose fills have still not all
    come is awaited no longer (``fills_missing``): its trades preceded the snapshot, and every fill
    up to ``S`` is applied by the verdict, so what is missing never comes (a venue that restarted
    forgets them). Awaited, it would count as working for good: every flatten on its side refused
    as "not reducing";
  * a position that differs is reported and the venue is taken as truth, for the symbols routed
    to that venue (``owner``); a position the venue holds in a symbol routed elsewhere is risk no
    one manages (the failsafe would not flatten it there): the run fails, naming it;
  * an order status answer about an id that was not asked (or whose order is another id) is
    refused, counted (``unasked_answers``) and logged, and the run fails: it would resolve the
    wrong order.

Every answer's size follows what is open now and a page limit, never the session's history.

The answers come on the command session and the fills on the venue's stream, two sockets: an
answer given just before a fill can arrive after it. If the book has applied a fill numbered after
``S`` by the time it compares positions, the answer is older than what the book already knows, and
nothing is taken from it but its fills (the run is reported stale, not ok, and retried). Taking its
positions would put a position back that a fill has just closed, and the next flatten would
reverse it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import proto
from proto.venue_reports import MAX_ORDER_STATUS_IDS
from services.venues.base import ExecutionClient
from services.exchange_manager.fill_cursor import FillCursor
from services.exchange_manager.order_book import OrderBook
from services.positions import EPSILON, Position

log = logging.getLogger(__name__)
NO_ANSWER = "venue did not answer every reconciliation query"


@dataclass
class Outcome:
    connector: str
    ok: bool
    run: int = 0
    adopted: list[str] = field(default_factory=list)
    resolved: dict[str, str] = field(default_factory=dict)  # client order id -> new status
    # Orders reported filled whose fills never came (awaited no longer): client order id -> quantity
    # the fills lacked. Listed in ``resolved`` too (status filled), so the book journals them.
    fills_missing: dict[str, float] = field(default_factory=dict)
    position_mismatches: dict[str, tuple[float, float]] = field(default_factory=dict)  # ours, venue's
    error: str = ""
    finished_at: float = 0.0
    # What the venue itself says, after this reconciliation: the failsafe's "verify flat".
    venue_positions: dict[str, float] = field(default_factory=dict)
    venue_open_orders: int = -1
    # Orders the book holds open that the venue has not received yet (sent within the in-flight
    # grace): "flat" is not verified while one of them may still land.
    in_flight: int = 0
    stale: bool = False  # answered before fills the book has since applied: nothing taken from it
    # Its cost: from the first question to the verdict, the time its own work held the exchange
    # manager's loop (the rest is waiting for the venue, when the loop serves orders), the fill pages
    # it needed and its largest answer.
    duration_ms: float = 0.0
    loop_ms: float = 0.0
    fill_pages: int = 0
    fills_fetched: int = 0
    largest_reply_bytes: int = 0


@dataclass
class _Run:
    connector: ExecutionClient
    outcome: Outcome
    started: float
    entered: float = 0.0  # when the callback now running began (perf_counter)
    status: proto.MassStatus | None = None
    statuses: dict[str, proto.OrderStatusReport] = field(default_factory=dict)
    asked: int = 0  # order status questions still out
    asked_after: int = 0  # the fill number the page asked for begins after
    # Orders of this connector already reported filled, and awaiting fills, when the run began: their
    # trades are older than its snapshot (``_settle_missing_fills``).
    awaiting: tuple[str, ...] = ()


class Reconciler:
    def __init__(self, book: OrderBook, positions: dict[str, Position], in_flight_grace_s: float,
                 apply_fill: Callable[[proto.Fill], None], report: Callable[[Outcome], None],
                 page_size: int = 500, cursors: dict[str, FillCursor] | None = None,
                 save_cursor: Callable[[str, FillCursor], None] | None = None,
                 owner: Callable[[str], str] | None = None) -> None:
        """``owner``: the connector a symbol trades through (None: every connector trades every symbol)."""
        self._book = book
        self._owner = owner
        self._positions = positions
        self._grace_ns = int(in_flight_grace_s * 1e9)
        self._apply_fill = apply_fill
        self._report = report
        self._page_size = page_size
        self._save_cursor = save_cursor or (lambda _name, _cursor: None)
        self.cursors: dict[str, FillCursor] = cursors or {}
        self.runs = 0
        self.stale_answers = 0
        self.unasked_answers = 0  # order_status answers about ids not asked: refused
        self.last: Outcome | None = None
        # Per connector, the latest run that reached a verdict: a stale answer says nothing new (the
        # book knows more than it), so it neither confirms nor withdraws the one before. Per
        # connector: one venue that agrees says nothing of another (``reconciled`` reads these).
        self.verdicts: dict[str, Outcome] = {}
        self.outcomes: dict[str, Outcome] = {}  # the latest per connector

    def reconciled(self, connectors: Iterable[str]) -> bool:
        """Whether the latest verdict of every one of ``connectors`` is ok (none yet: not reconciled)."""
        return all((verdict := self.verdicts.get(name)) is not None and verdict.ok for name in connectors)

    def cursor(self, connector: str) -> FillCursor:
        return self.cursors.setdefault(connector, FillCursor())

    def heard(self, connector: str, session: int | None, fill: proto.Fill) -> None:
        """The book has just applied (or already had) this fill of ``connector``'s venue session."""
        if not fill.venue_seq or session is None:
            return
        cursor = self.cursor(connector)
        if cursor.session != session:
            cursor.reset(session)  # the venue restarted: its numbering starts again
        cursor.advance(fill.venue_seq, fill.fill_id)

    def run(self, connector: ExecutionClient) -> int:
        """Start one reconciliation and return its run number; the outcome is reported when the
        venue has answered (asynchronously)."""
        self.runs += 1
        state = _Run(connector, Outcome(connector.name, ok=False, run=self.runs), time.perf_counter(),
                     awaiting=tuple(o.client_order_id for o in self._book.awaiting_fills()
                                    if o.connector == connector.name))
        cursor = self.cursor(connector.name)
        if connector.venue_session is not None and cursor.session != connector.venue_session:
            cursor.reset(connector.venue_session)
            self._save_cursor(connector.name, cursor)
        connector.mass_status(lambda status: self._timed(state, self._on_status, status))
        return state.outcome.run

    def _timed(self, state: _Run, step: Callable[[_Run, Any], None], answer: Any) -> None:
        """Run one step on an answer, adding the time it holds the loop to the run's ``loop_ms``
        (a step that ends the run adds its share in ``_done``, before the outcome is reported)."""
        state.entered = time.perf_counter()
        step(state, answer)
        if state.entered:
            state.outcome.loop_ms += (time.perf_counter() - state.entered) * 1000
            state.entered = 0.0

    # -- the questions, in order -----------------------------------------------------------------

    def _on_status(self, state: _Run, status: proto.MassStatus | None) -> None:
        self._measure(state)
        if status is None:
            return self._fail(state, NO_ANSWER)
        if status.open_orders_total > len(status.open_orders):
            return self._fail(state, f"the venue holds {status.open_orders_total} open orders, more than one "
                                     f"answer carries ({len(status.open_orders)}): cannot reconcile")
        cursor = self.cursor(state.connector.name)
        if cursor.session != status.session:
            cursor.reset(status.session)
        state.status = status
        self._next_page(state)

    def _next_page(self, state: _Run) -> None:
        assert state.status is not None
        cursor = self.cursor(state.connector.name)
        if cursor.applied >= state.status.fill_seq:
            return self._ask_orders_in_doubt(state)
        state.outcome.fill_pages += 1
        state.asked_after = cursor.applied
        state.connector.fills_since(cursor.applied, self._page_size,
                                    lambda page: self._timed(state, self._on_page, page))

    def _on_page(self, state: _Run, page: proto.FillPage | None) -> None:
        assert state.status is not None
        self._measure(state)
        if page is None:
            return self._fail(state, NO_ANSWER)
        cursor = self.cursor(state.connector.name)
        if page.session != state.status.session or cursor.session != page.session:
            return self._fail(state, "the venue restarted during reconciliation; asking again")
        for fill in page.fills:
            if fill.venue_seq > state.status.fill_seq:
                break  # newer than the snapshot: the stream (or the next run) brings it
            record = self._book.orders.get(fill.client_order_id)
            was_open = record is not None and record.status.is_open
            self._apply_fill(fill)  # once per fill id: only missed fills change anything
            state.outcome.fills_fetched += 1
            if was_open and record is not None and not record.status.is_open:
                state.outcome.resolved[record.client_order_id] = record.status.value  # closed by a missed fill
        # Progress since the page was asked counts whether the page or the stream brought it: fills
        # the stream applied meanwhile are in the page too, and change nothing the second time.
        if cursor.applied == state.asked_after and cursor.applied < state.status.fill_seq:
            return self._fail(state, f"the venue's fills after number {state.asked_after} are missing from its answer")
        self._next_page(state)

    def _ask_orders_in_doubt(self, state: _Run) -> None:
        assert state.status is not None
        venue_open = {o.client_order_id for o in state.status.open_orders}
        in_doubt = [o.client_order_id for o in self._book.open_orders()
                    if o.connector == state.connector.name and o.client_order_id not in venue_open]
        chunks = [in_doubt[i:i + MAX_ORDER_STATUS_IDS] for i in range(0, len(in_doubt), MAX_ORDER_STATUS_IDS)]
        if not chunks:
            return self._finish(state)
        state.asked = len(chunks)
        for chunk in chunks:
            step = partial(self._on_order_status, asked=frozenset(chunk))
            state.connector.order_status(chunk, lambda reports, step=step: self._timed(state, step, reports))

    def _on_order_status(self, state: _Run, reports: proto.OrderStatusReports | None, asked: frozenset[str]) -> None:
        self._measure(state)
        if state.asked <= 0:
            return  # the run has already failed on another chunk
        if reports is None:
            state.asked = 0
            return self._fail(state, NO_ANSWER)
        # An answer about an id this question did not ask (or whose order is another id) would
        # resolve the wrong order: the venue is not to be believed for this run. Refused, counted,
        # logged, and the run fails (not reconciled: nothing opens until a run agrees).
        strays = sorted({r.client_order_id for r in reports.reports if r.client_order_id not in asked}
                        | {r.client_order_id for r in reports.reports
                           if r.order is not None and r.order.client_order_id != r.client_order_id})
        if strays:
            self.unasked_answers += 1
            state.asked = 0
            log.warning("connector %s: order_status answered for ids it was not asked: %s; refused",
                        state.connector.name, ", ".join(strays[:3]))
            return self._fail(state, f"the venue answered order_status for ids it was not asked "
                                     f"({', '.join(strays[:3])}): refused; asking again")
        state.statuses.update({r.client_order_id: r for r in reports.reports})
        state.asked -= 1
        if state.asked == 0:
            self._finish(state)

    # -- the verdict -----------------------------------------------------------------------------

    def _finish(self, state: _Run) -> None:
        status, outcome, name = state.status, state.outcome, state.connector.name
        assert status is not None
        cursor = self.cursor(name)
        self._save_cursor(name, cursor)
        newer, fill_ids = cursor.newer_than(status.fill_seq)
        if newer:
            self.stale_answers += 1
            outcome.stale = True
            return self._fail(state, f"stale answer: the venue answered before {newer} fill(s) the book has "
                                     f"since applied ({', '.join(sorted(fill_ids)[:3])}); asking again")
        venue_open = {o.client_order_id: o for o in status.open_orders}
        for cid, update in venue_open.items():
            if cid not in self._book.orders:
                outcome.adopted.append(cid)
            self._book.apply_update(update)
        now = time.time_ns()
        for record in self._book.open_orders():
            cid = record.client_order_id
            if record.connector != name or cid in venue_open:
                continue
            report = state.statuses.get(cid)
            if report is None or not report.known or report.order is None:
                if report is None or now - record.created_ns < self._grace_ns:
                    outcome.in_flight += 1  # may still be on its way to the venue (or asked before it was sent)
                    continue
                self._book.reject(record, "lost in transit: the venue never received it")
            elif report.order.status.is_open:
                self._book.apply_update(report.order)  # it reached the venue after the snapshot
                continue
            elif report.order.status == proto.OrderStatus.FILLED:
                self._book.apply_update(report.order)  # its fills come on the stream or the next run
            else:
                reason = f"{report.order.reason} (reconciled)" if report.order.reason else "not open at the venue (reconciled)"
                self._book.apply_update(proto.OrderUpdate(
                    client_order_id=cid, symbol=record.symbol, side=record.side, qty=record.qty,
                    order_type=record.order_type, limit_price=record.limit_price, status=report.order.status,
                    filled_qty=record.filled_qty, avg_fill_price=record.avg_fill_price, reason=reason,
                    connector=name, ts_ns=now))
            outcome.resolved[cid] = record.status.value
        unrouted = self._compare_positions(status, outcome)
        if unrouted:
            self._fail(state, f"{name} holds positions in symbols routed to other connectors: {unrouted}; "
                              f"nothing here manages them (flatten them at that venue)")
            return
        self._settle_missing_fills(state)
        outcome.ok = True
        self._done(state)

    def _settle_missing_fills(self, state: _Run) -> None:
        """The orders reported filled before the run began whose fills are still missing now: the
        venue made their trades before it reported them filled, so before its snapshot, and the book
        has applied every fill up to that snapshot's ``fill_seq`` (the positions just compared hold
        them): the ones missing are not coming (the venue restarted and forgot them, or named them
        otherwise). Awaited further, they would count as working on their side for good (the gate
        refuses every flatten there as not reducing). An order reported filled during the run is
        left to the next one: its fills may be after the snapshot."""
        assert state.status is not None
        outcome = state.outcome
        for cid in state.awaiting:
            record = self._book.orders.get(cid)
            missing = self._book.settle_missing_fills(record) if record is not None else 0.0
            if missing <= 0.0:
                continue  # its fills came meanwhile
            assert record is not None
            outcome.fills_missing[cid] = missing
            outcome.resolved[cid] = record.status.value
            log.warning("connector %s: order %s (%s %g %s) was reported filled, but %g of its fills never came "
                        "(every fill up to the venue's number %d is applied): awaited no longer; the venue's "
                        "positions stand", outcome.connector, cid, record.side.value, record.qty, record.symbol,
                        missing, state.status.fill_seq)

    def _compare_positions(self, status: proto.MassStatus, outcome: Outcome) -> dict[str, float]:
        """The venue's positions include exactly the fills up to ``status.fill_seq``, and so does the
        book now (none newer applied, none older missing): any difference is real. Returns the
        positions the venue holds in symbols routed to other connectors."""
        venue_positions = {p.symbol: p for p in status.positions}
        outcome.venue_positions = {symbol: p.qty for symbol, p in venue_positions.items()}
        outcome.venue_open_orders = status.open_orders_total
        unrouted: dict[str, float] = {}
        for symbol in set(venue_positions) | set(self._positions):
            theirs = venue_positions.get(symbol)
            venue_qty = theirs.qty if theirs is not None else 0.0
            if self._owner is not None and self._owner(symbol) != outcome.connector:
                if abs(venue_qty) > EPSILON:
                    unrouted[symbol] = venue_qty
                continue
            ours = self._positions.setdefault(symbol, Position())
            if abs(ours.qty - venue_qty) > EPSILON:
                outcome.position_mismatches[symbol] = (ours.qty, venue_qty)
                # The venue is the truth: take its position, average price and PnL as they are
                # (a symbol the venue does not hold at all is flat).
                truth = Position(**theirs.fields()) if theirs is not None else Position()
                for key, value in truth.to_dict().items():
                    setattr(ours, key, value)
        return unrouted

    def _measure(self, state: _Run) -> None:
        state.outcome.largest_reply_bytes = max(state.outcome.largest_reply_bytes, state.connector.last_reply_bytes)

    def _fail(self, state: _Run, error: str) -> None:
        state.outcome.ok, state.outcome.error = False, error
        self._done(state)

    def _done(self, state: _Run) -> None:
        outcome = state.outcome
        outcome.finished_at = time.time()
        now = time.perf_counter()
        outcome.duration_ms = (now - state.started) * 1000
        if state.entered:
            outcome.loop_ms += (now - state.entered) * 1000
            state.entered = 0.0
        latest = self.outcomes.get(outcome.connector)
        if latest is None or outcome.run >= latest.run:  # a run overtaken by a later one is not "the latest"
            self.last = outcome
            self.outcomes[outcome.connector] = outcome
            if not outcome.stale:
                self.verdicts[outcome.connector] = outcome
        self._report(outcome)
