"""Reconciliation: after every (re)connection, make the book of record agree with the venue.

Asks the venue for its open orders, its fills and its positions, then:
  * an open order the book does not know is adopted (and reported);
  * an order the book thinks open that the venue does not hold open is resolved from the venue's
    fills: filled, or cancelled; an order the venue never received is rejected as lost in transit
    (unless it was sent so recently that it may still be on its way);
  * a position that differs is reported as an execution anomaly and the venue is taken as truth.

The answers come on the command session and the fills on the venue's stream, two sockets: an
answer given just before a fill can arrive after it. So every fill heard while a reconciliation's
questions are out must be in its answer; if one is not, the answer is older than what the book
already knows, and nothing is taken from it but its fills (the run is reported stale, not ok, and
retried). Taking its positions would put a position back that a fill has just closed, and the next
flatten would reverse it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import proto
from services.exchange_manager.connectors import Connector
from services.exchange_manager.order_book import OrderBook
from services.positions import EPSILON, Position

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    connector: str
    ok: bool
    run: int = 0
    adopted: list[str] = field(default_factory=list)
    resolved: dict[str, str] = field(default_factory=dict)  # client order id -> new status
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


class Reconciler:
    def __init__(self, book: OrderBook, positions: dict[str, Position], in_flight_grace_s: float,
                 apply_fill: Callable[[proto.Fill], None], report: Callable[[Outcome], None]) -> None:
        self._book = book
        self._positions = positions
        self._grace_ns = int(in_flight_grace_s * 1e9)
        self._apply_fill = apply_fill
        self._report = report
        self.runs = 0
        self.stale_answers = 0
        self.last: Outcome | None = None
        self.outcomes: dict[str, Outcome] = {}  # the latest per connector
        # run -> (connector, fill ids the book learnt while that run's questions were out)
        self._heard: dict[int, tuple[str, set[str]]] = {}

    def heard(self, connector: str, fill_id: str) -> None:
        """The book has just applied this fill: the answer of every run still out must contain it."""
        for name, fill_ids in self._heard.values():
            if name == connector:
                fill_ids.add(fill_id)

    def run(self, connector: Connector) -> int:
        """Start one reconciliation and return its run number; the outcome is reported when the
        venue has answered (asynchronously)."""
        self.runs += 1
        run = self.runs
        replies: dict[str, dict[str, Any] | None] = {}

        def collect(name: str) -> Callable[[dict[str, Any] | None], None]:
            def on_result(result: dict[str, Any] | None) -> None:
                replies[name] = result
                if len(replies) == 3:
                    self._finish(connector.name, run, replies)
            return on_result

        self._heard[run] = (connector.name, set())
        for name in ("open_orders", "fills", "positions"):
            connector.query(name, collect(name))
        return run

    def _finish(self, connector: str, run: int, replies: dict[str, dict[str, Any] | None]) -> None:
        _, heard = self._heard.pop(run, (connector, set()))
        outcome = Outcome(connector, ok=all(r is not None for r in replies.values()), run=run,
                          finished_at=time.time())
        if not outcome.ok:
            outcome.error = "venue did not answer every reconciliation query"
            self._done(outcome)
            return
        open_before = {o.client_order_id for o in self._book.open_orders() if o.connector == connector}
        venue_fills = [proto.from_builtins(f, proto.Fill) for f in replies["fills"]["fills"]]
        for fill in venue_fills:
            self._apply_fill(fill)  # idempotent per fill_id: only missed fills change anything
        newer = heard - {f.fill_id for f in venue_fills}
        if newer:
            self.stale_answers += 1
            outcome.ok, outcome.stale = False, True
            outcome.error = (f"stale answer: the venue answered before {len(newer)} fill(s) the book has "
                             f"since applied ({', '.join(sorted(newer)[:3])}); asking again")
            self._done(outcome)
            return
        for cid in open_before:
            record = self._book.orders.get(cid)
            if record is not None and not record.status.is_open:
                outcome.resolved[cid] = record.status.value  # closed by a fill we had missed
        known_ids = set(replies["fills"]["client_order_ids"])
        venue_open = {o["client_order_id"]: proto.from_builtins(o, proto.OrderUpdate)
                      for o in replies["open_orders"]["orders"]}
        for cid, update in venue_open.items():
            if cid not in self._book.orders:
                outcome.adopted.append(cid)
            self._book.apply_update(update)
        now = time.time_ns()
        for record in self._book.open_orders():
            if record.connector != connector or record.client_order_id in venue_open:
                continue
            if record.client_order_id not in known_ids:
                if now - record.created_ns < self._grace_ns:
                    outcome.in_flight += 1  # may still be on its way to the venue
                    continue
                self._book.reject(record, "lost in transit: the venue never received it")
            elif record.status.is_open:
                self._book.apply_update(proto.OrderUpdate(
                    client_order_id=record.client_order_id, symbol=record.symbol, side=record.side,
                    qty=record.qty, order_type=record.order_type, limit_price=record.limit_price,
                    status=proto.OrderStatus.CANCELLED, filled_qty=record.filled_qty,
                    avg_fill_price=record.avg_fill_price, reason="not open at the venue (reconciled)",
                    connector=connector, ts_ns=now))
            outcome.resolved[record.client_order_id] = record.status.value
        # The positions in the fills reply (when the venue gives them) are exactly those fills' sum:
        # taken apart, a fill between the two answers would be in the positions and then applied
        # again when its message arrives.
        venue_positions: dict[str, dict[str, float]] = replies["fills"].get("positions",
                                                                            replies["positions"]["positions"])
        outcome.venue_positions = {symbol: p.get("qty", 0.0) for symbol, p in venue_positions.items()}
        outcome.venue_open_orders = len(venue_open)
        for symbol in set(venue_positions) | set(self._positions):
            theirs = venue_positions.get(symbol, {})
            ours = self._positions.setdefault(symbol, Position())
            if abs(ours.qty - theirs.get("qty", 0.0)) > EPSILON:
                outcome.position_mismatches[symbol] = (ours.qty, theirs.get("qty", 0.0))
                # The venue is the truth: take its position, average price and PnL as they are
                # (a symbol the venue does not hold at all is flat).
                truth = Position(**theirs)
                for key, value in truth.to_dict().items():
                    setattr(ours, key, value)
        self._done(outcome)

    def _done(self, outcome: Outcome) -> None:
        self.last = outcome
        self.outcomes[outcome.connector] = outcome
        self._report(outcome)
