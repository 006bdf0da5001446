"""The engine's own sanity check of its strategies' orders, before they leave: against the same
instrument specifications the gate checks (the exchange manager's ``instruments``, which it loads
from each venue), so a strategy's mistake is caught where it is made, and the gate and the venue
stay the second and third line rather than the first.

Rounding: a strategy computes prices and sizes by formula (mid ± a spread, a fixed quantity), so
the grid value it meant is the nearest one on the safe side: a quantity down to the lot (never more
than asked), a buy price down and a sell price up to the tick (never more aggressive than meant).
Then the same checks as the gate (``services/instruments.py``): minimum and maximum quantity, price
limits, the price collar around the quote that triggered the decision, the minimum notional. An
order that fails is not sent: the strategy is told why (``on_refused``) and it is counted by kind.

The specifications are asked for whenever the strategies resync (start, a new exchange manager, a
gap, each opening); until the first answer no order leaves ("not loaded").
"""

from __future__ import annotations

import logging
import math

import msgspec

import proto
from bus import CommandChannel, NotConnected, Reactor
from proto.commands import OrderArgs
from proto.instruments import Instrument, InstrumentBook
from services.backoff import Backoff
from services.instruments import collar_problem, notional_problem, price_problem, quantity_problem, to_grid

log = logging.getLogger(__name__)
# Asking the exchange manager again (instruments, the strategies' snapshot): soon, then less often
# while it stays away (first delay, cap).
RETRY_S = (0.5, 2.0)


class InstrumentGuard:
    def __init__(self, reactor: Reactor, channel: CommandChannel, collar_pct: float) -> None:
        self._reactor = reactor
        self._channel = channel
        self._collar_pct = collar_pct
        self._book: InstrumentBook | None = None
        self._specs: dict[str, dict[str, Instrument]] = {}  # connector -> symbol -> spec
        self._asking = False
        self._retry = Backoff(*RETRY_S)
        self.refused: dict[str, int] = {}
        self.rounded = 0
        self.loads = 0

    # -- the specifications ----------------------------------------------------------------------

    def refresh(self) -> None:
        """Ask the exchange manager for the instruments (once at a time; again until it has them all)."""
        if self._asking:
            return
        self._asking = True
        try:
            self._channel.send("instruments", {}, self._on_reply, self._on_no_answer)
        except NotConnected:
            self._on_no_answer("")

    def _on_no_answer(self, _command_id: str) -> None:
        self._asking = False
        self._reactor.call_later(self._retry.next(), self.refresh)

    def _on_reply(self, reply: proto.Reply) -> None:
        self._asking = False
        try:
            if not reply.ok:
                raise ValueError(reply.error)
            book = msgspec.convert(reply.result, InstrumentBook)
        except (ValueError, msgspec.ValidationError) as exc:
            log.warning("instruments from the exchange manager not usable (%s); asking again", exc)
            self._reactor.call_later(self._retry.next(), self.refresh)
            return
        self._book = book
        self._retry.reset()
        self._specs = {name: {s.symbol: s for s in lst.instruments} for name, lst in book.connectors.items()}
        self.loads += 1
        if book.pending:  # a venue's list is being reloaded: take the newer one when it is in
            self._reactor.call_later(self._retry.next(), self.refresh)

    # -- the check -------------------------------------------------------------------------------

    def prepare(self, order: OrderArgs, mark: float) -> tuple[OrderArgs | None, str]:
        """The order on its instrument's grid, or ``(None, reason)`` if it must not leave."""
        if self._book is None:
            return self._refuse("not_loaded", "instrument specifications not loaded yet")
        connector = order.connector or self._book.connector_for(order.symbol)
        spec = self._specs.get(connector, {}).get(order.symbol)
        if spec is None:
            return self._refuse("unknown_symbol", f"unknown symbol {order.symbol} at {connector}")
        if not (math.isfinite(order.qty) and order.qty > 0):
            return self._refuse("bad_quantity", f"quantity {order.qty!r} is not a positive number")
        qty = to_grid(order.qty, spec.lot_size, "down")
        price = order.limit_price
        if order.order_type == "limit":
            if price is None or not (math.isfinite(price) and price > 0):
                return self._refuse("bad_price", f"limit price {price!r} is not a positive number")
            price = to_grid(price, spec.tick_size, "down" if order.side is proto.Side.BUY else "up")
        if qty <= 0:
            return self._refuse("min_qty", f"quantity {order.qty:.12g} is below one lot ({spec.lot_size:.12g}) "
                                           f"of {order.symbol}")
        problem = (quantity_problem(spec, qty) or (price_problem(spec, price) if price is not None else None)
                   or (collar_problem(order.symbol, price, mark, self._collar_pct) if price is not None else None)
                   or notional_problem(spec, qty, price if price is not None else mark))
        if problem:
            return self._refuse(*problem)
        if qty != order.qty or price != order.limit_price:
            self.rounded += 1
            order = msgspec.structs.replace(order, qty=qty, limit_price=price)
        return order, ""

    def _refuse(self, kind: str, reason: str) -> tuple[None, str]:
        self.refused[kind] = self.refused.get(kind, 0) + 1
        return None, f"engine: {reason}"

    def stats(self) -> dict[str, object]:
        return {"loaded": self._book is not None, "refused": dict(self.refused), "rounded": self.rounded,
                "loads": self.loads}
