"""The strategy interface: market data in, order intents out; fills and refusals back.

A strategy is plain Python with no I/O: the engine calls it, sends what it asks for through the
exchange manager's gate, and tells it what happened. It keeps its own view of its position from
its fills, and takes the book of record's view whenever the engine resyncs (``resync``: at start,
after a loss on the streams, before trading resumes). Exceptions it raises are caught, counted and
isolated by the engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import proto
from proto.commands import CancelArgs, OrderArgs

Intent = OrderArgs | CancelArgs


class Strategy(ABC):
    def __init__(self, name: str, symbol: str) -> None:
        self.name = name
        self.symbol = symbol
        self.position = 0.0

    @abstractmethod
    def on_quote(self, quote: proto.Quote, now: float) -> list[Intent]:
        """Decide on a new top of book; ``now`` is ``time.monotonic()``."""

    def on_accepted(self, intent: OrderArgs, client_order_id: str) -> None:
        """The gate let the order through under this id."""

    def on_refused(self, intent: Intent, reason: str) -> None:
        """The gate, the venue or the link refused the intent."""

    def on_order_update(self, update: proto.OrderUpdate) -> None:
        """An order of this strategy moved on (acknowledged, cancelled, rejected, filled)."""

    def on_fill(self, fill: proto.Fill) -> None:
        self.position += fill.side.sign * fill.qty

    def resync(self, position: float, open_orders: list[proto.OrderUpdate]) -> None:
        """The book of record's view replaces this strategy's: its position, and its orders still
        open (a strategy with order state rebuilds it from ``open_orders``)."""
        self.position = position

    def order(self, side: proto.Side, qty: float, order_type: str = "market", limit_price: float | None = None) -> OrderArgs:
        return OrderArgs(symbol=self.symbol, side=side, qty=qty, order_type=order_type,  # type: ignore[arg-type]
                         limit_price=limit_price, strategy=self.name)
