"""The order book of record: every order's life, under a client order id that is never reused.

Statuses only move forward (new → acknowledged → partially filled → filled; or → cancelled /
rejected); a late or repeated report never moves an order back, and one that changes nothing is
reported as such (``apply_update`` returns None, counted), so the exchange manager journals and
publishes each step once. Fills are applied once per ``fill_id``, whichever way they arrive
(execution report, reply, reconciliation).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

import proto
from proto import OrderStatus, Side
from proto.commands import NewOrderArgs, OrderArgs

# The strategy of an adopted order: one the venue holds or filled that this system did not send
# (placed at the venue behind its back). Its fills are attributed to it, never to a strategy.
FOREIGN = "foreign"

_RANK = {OrderStatus.NEW: 0, OrderStatus.ACKNOWLEDGED: 1, OrderStatus.PARTIALLY_FILLED: 2,
         OrderStatus.FILLED: 3, OrderStatus.CANCELLED: 3, OrderStatus.REJECTED: 3}


class OrderRecord(msgspec.Struct, kw_only=True):
    """An order in the book of record: the order as sent (``order``: the engine's intent under its
    client order id and connector, the very struct that went to the venue) and what became of it.
    The journal keeps it as it is (``journal.py``); the ``orders`` topic carries its public view
    (``message()``)."""

    order: NewOrderArgs
    status: OrderStatus = OrderStatus.NEW
    filled_qty: float = 0.0
    avg_fill_price: float = 0.0
    venue_order_id: str = ""
    reason: str = ""
    created_ns: int = 0
    updated_ns: int = 0
    # A cancel was sent: the order no longer counts as exposure the gate must allow for.
    cancel_requested: bool = False
    # Reported filled, but a reconciliation found its fills missing for good: every fill the venue's
    # positions include was applied by then and these were not among them (the venue restarted and
    # forgot them, or named them otherwise). No longer awaited (``settle_missing_fills``), restarts
    # included: the venue's positions, taken as the truth, hold what it did fill.
    fills_missing: bool = False

    # The order's own fields, read everywhere the book is: a record is its order plus its fate.
    # A loop over many orders (the gate's, flatten's) reads ``record.order`` instead: a property
    # costs two to three times an attribute.
    @property
    def client_order_id(self) -> str:
        return self.order.client_order_id

    @property
    def symbol(self) -> str:
        return self.order.symbol

    @property
    def side(self) -> Side:
        return self.order.side

    @property
    def qty(self) -> float:
        return self.order.qty

    @property
    def order_type(self) -> str:
        return self.order.order_type

    @property
    def limit_price(self) -> float | None:
        return self.order.limit_price

    @property
    def strategy(self) -> str:
        return self.order.strategy

    @property
    def connector(self) -> str:
        return self.order.connector

    @property
    def reduce_only(self) -> bool:
        return self.order.reduce_only

    def message(self) -> proto.OrderUpdate:
        o = self.order
        return proto.OrderUpdate(
            client_order_id=o.client_order_id, symbol=o.symbol, side=o.side, qty=o.qty, order_type=o.order_type,
            limit_price=o.limit_price, status=self.status, filled_qty=self.filled_qty,
            avg_fill_price=self.avg_fill_price, venue_order_id=self.venue_order_id, reason=self.reason,
            strategy=o.strategy, connector=o.connector, ts_ns=self.updated_ns, reduce_only=o.reduce_only)

    def to_dict(self) -> dict[str, Any]:
        """Flat, as ``tradectl orders`` and the incident report show it."""
        d: dict[str, Any] = msgspec.to_builtins(self)
        return {**d.pop("order"), **d}


def _adopted(cid: str, symbol: str, side: Side, qty: float, order_type: str, limit_price: float | None,
             connector: str, ts_ns: int) -> OrderRecord:
    """A record for an order the venue holds or filled that this book never sent."""
    return OrderRecord(order=NewOrderArgs(client_order_id=cid, symbol=symbol, side=side, qty=qty,
                                          order_type=order_type,  # type: ignore[arg-type]
                                          limit_price=limit_price, strategy=FOREIGN, connector=connector),
                       created_ns=ts_ns, updated_ns=ts_ns)


class OrderBook:
    def __init__(self, id_prefix: str, keep_closed: int = 10_000) -> None:
        self._prefix = id_prefix
        self._numbers = itertools.count(1)
        self.orders: dict[str, OrderRecord] = {}
        # Open orders only: the gate and flatten read these on every order, so never a full scan.
        self._open: dict[str, OrderRecord] = {}
        self._closed: deque[str] = deque()
        self._keep_closed = keep_closed
        # Reported filled by the venue before their fills arrived (reports and fills travel apart):
        # their quantity is about to change a position, so flatten and the gate still count it.
        self._awaiting_fills: dict[str, OrderRecord] = {}
        # Fill ids already applied: a bounded window, far larger than any replay of missed fills.
        self._fill_ids: set[str] = set()
        self._fill_order: deque[str] = deque()
        self._keep_fill_ids = keep_closed * 10
        self.submitted = 0
        self.rejected = 0
        self.fills = 0
        self.adopted = 0
        self.duplicate_reports = 0  # venue reports that changed nothing (each step comes twice)
        # Told of every order that becomes rejected (by the venue, a reconciliation, a lost connection).
        self.on_rejected: Callable[[OrderRecord], None] | None = None

    def restore(self, records: list[OrderRecord], fill_ids: list[str]) -> None:
        """Load what the journal kept (oldest first), after a restart."""
        for record in records:
            self.orders[record.client_order_id] = record
            if record.status.is_open:
                self._open[record.client_order_id] = record
            else:
                self._closed.append(record.client_order_id)
                if (record.status == OrderStatus.FILLED and record.filled_qty < record.qty - 1e-12
                        and not record.fills_missing):
                    self._awaiting_fills[record.client_order_id] = record  # its fills were still on their way
        # The session's counters go on from what the journal holds (it keeps the latest orders).
        self.submitted += len(records)
        self.rejected += sum(1 for r in records if r.status == OrderStatus.REJECTED)
        self.fills += len(fill_ids)
        for fill_id in fill_ids:
            self._fill_ids.add(fill_id)
            self._fill_order.append(fill_id)

    def make(self, args: OrderArgs, connector: str) -> OrderRecord:
        """A new order under a fresh client order id, not yet in the book: it enters with ``add``
        once it is journalled, so a write that fails leaves no phantom order behind."""
        now = time.time_ns()
        return OrderRecord(order=NewOrderArgs.of(args, f"{self._prefix}-{next(self._numbers)}", connector),
                           created_ns=now, updated_ns=now)

    def add(self, record: OrderRecord) -> None:
        self.orders[record.client_order_id] = record
        self._open[record.client_order_id] = record
        self.submitted += 1

    def reject(self, record: OrderRecord, reason: str) -> None:
        self._move(record, OrderStatus.REJECTED, reason)

    def apply_update(self, update: proto.OrderUpdate) -> OrderRecord | None:
        """Apply a venue's report; an order the book does not know is adopted (and counted).
        Returns the order, or None if the report changed nothing (counted in ``duplicate_reports``):
        the venue reports each step twice (its reply and its stream), and a late report never moves
        an order back. Fill progress is the fills' business (``apply_fill``): a report only moves the
        status on and names the venue's order id."""
        record = self.orders.get(update.client_order_id)
        if record is None:
            record = _adopted(update.client_order_id, update.symbol, update.side, update.qty, update.order_type,
                              update.limit_price, update.connector, update.ts_ns)
            self.orders[record.client_order_id] = record
            self._open[record.client_order_id] = record
            self.adopted += 1
            changed = True
        else:
            changed = bool(update.venue_order_id) and update.venue_order_id != record.venue_order_id
        if update.venue_order_id:
            record.venue_order_id = update.venue_order_id
        if self._move(record, update.status, update.reason):
            changed = True
            if record.status == OrderStatus.FILLED and record.filled_qty < record.qty - 1e-12:
                self._awaiting_fills[record.client_order_id] = record
        if not changed:
            self.duplicate_reports += 1
            return None
        return record

    def apply_fill(self, fill: proto.Fill) -> OrderRecord | None:
        """Apply a fill once. Returns the order, or None if this fill was already applied."""
        if fill.fill_id in self._fill_ids:
            return None
        self._fill_ids.add(fill.fill_id)
        self._fill_order.append(fill.fill_id)
        if len(self._fill_order) > self._keep_fill_ids:
            self._fill_ids.discard(self._fill_order.popleft())
        self.fills += 1
        record = self.orders.get(fill.client_order_id)
        if record is None:
            record = _adopted(fill.client_order_id, fill.symbol, fill.side, fill.qty, "market", None, fill.connector,
                              fill.ts_ns)
            self.orders[record.client_order_id] = record
            self._open[record.client_order_id] = record
            self.adopted += 1
        total = record.filled_qty + fill.qty
        record.avg_fill_price = (record.avg_fill_price * record.filled_qty + fill.price * fill.qty) / total
        record.filled_qty = total
        record.updated_ns = time.time_ns()
        filled = total >= record.qty - 1e-12
        self._move(record, OrderStatus.FILLED if filled else OrderStatus.PARTIALLY_FILLED, "")
        if filled:
            self._awaiting_fills.pop(record.client_order_id, None)
        return record

    def settle_missing_fills(self, record: OrderRecord) -> float:
        """Stop awaiting the fills of ``record`` (reported filled): a reconciliation has shown they
        will not come. Returns the quantity they lacked (0.0: it was not awaiting any)."""
        if self._awaiting_fills.pop(record.client_order_id, None) is None:
            return 0.0
        record.fills_missing = True
        return record.qty - record.filled_qty

    def _move(self, record: OrderRecord, status: OrderStatus, reason: str) -> bool:
        """Move ``record`` on to ``status``; False if that is no step forward (nothing changed)."""
        if _RANK[status] <= _RANK[record.status] or not record.status.is_open:
            return False
        if status == OrderStatus.REJECTED:
            self.rejected += 1
            if self.on_rejected is not None:
                self.on_rejected(record)
        record.status = status
        record.reason = reason or record.reason
        record.updated_ns = time.time_ns()
        if not status.is_open:
            self._open.pop(record.client_order_id, None)
            self._closed.append(record.client_order_id)
            if len(self._closed) > self._keep_closed:  # bounded memory: forget the oldest closed orders
                forgotten = self._closed.popleft()
                self.orders.pop(forgotten, None)
                self._awaiting_fills.pop(forgotten, None)
        return True

    def venue_order_ids(self, connector: str) -> dict[str, str]:
        """The venue's order id -> client order id of ``connector``'s orders the book holds."""
        return {r.venue_order_id: cid for cid, r in self.orders.items()
                if r.connector == connector and r.venue_order_id}

    def last_filled_ns(self, connector: str) -> dict[str, int]:
        """Per symbol, when the book last applied a fill of ``connector`` (its own clock), over the
        orders it holds: where a venue's trades are to be read from again after a restart."""
        out: dict[str, int] = {}
        for record in self.orders.values():
            if record.connector == connector and record.filled_qty > 0:
                out[record.symbol] = max(out.get(record.symbol, 0), record.updated_ns)
        return out

    def foreign_open(self) -> list[OrderRecord]:
        """Open orders this system did not send."""
        return [o for o in self._open.values() if o.order.strategy == FOREIGN]

    def open_orders(self, symbol: str | None = None) -> list[OrderRecord]:
        return [o for o in self._open.values() if symbol is None or o.order.symbol == symbol]

    def awaiting_fills(self, symbol: str | None = None) -> list[OrderRecord]:
        """Orders reported filled whose fills have not all arrived yet."""
        return [o for o in self._awaiting_fills.values() if symbol is None or o.order.symbol == symbol]
