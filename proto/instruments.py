"""Instrument specifications: the grid an order's price and quantity must lie on at its venue, and
the smallest and largest order the venue accepts.

A venue answers ``instruments`` with an ``InstrumentList``; the exchange manager loads it on every
(re)connection and answers its own ``instruments`` with an ``InstrumentBook`` (one list per
connector). Replies carry them as plain data (``to_builtins``); the receiver validates them back
with ``msgspec.convert(result, InstrumentList)``, so a malformed specification is refused, never
half-used.

The fields follow ccxt's unified market structure, so a ccxt adapter fills them from
``load_markets()``: ``tick_size``/``lot_size`` are ``precision['price']``/``precision['amount']``
in ccxt's TICK_SIZE precision mode (for an exchange in DECIMAL_PLACES mode, ``10 ** -n``);
``min_qty``/``max_qty`` are ``limits['amount']``, ``min_price``/``max_price`` ``limits['price']``,
``min_notional``/``max_notional`` ``limits['cost']`` (a missing limit is 0 or None).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from proto.fields import PRICE_MAX, QTY_MAX, Name, Symbol

Step = Annotated[float, msgspec.Meta(gt=0, le=PRICE_MAX)]
Bound = Annotated[float, msgspec.Meta(ge=0, le=QTY_MAX * PRICE_MAX)]


class Instrument(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    symbol: Symbol
    tick_size: Step  # a limit price must be a multiple of it
    lot_size: Step  # a quantity must be a multiple of it
    min_qty: Bound = 0.0
    max_qty: Bound | None = None
    min_notional: Bound = 0.0  # quantity x price, in the quote currency
    max_notional: Bound | None = None
    min_price: Bound = 0.0
    max_price: Bound | None = None
    base: Name = ""
    quote: Name = ""


class InstrumentList(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A venue's answer to ``instruments``: every market it trades."""

    venue: Name
    instruments: list[Instrument]


class InstrumentBook(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The exchange manager's answer to ``instruments``: each connector's list as last loaded,
    the connector an order with ``connector=""`` goes to (its symbol's route, else the default),
    and the connectors whose list is not (re)loaded yet since their latest connection."""

    default_connector: Name
    connectors: dict[Name, InstrumentList]
    pending: list[Name] = []
    routes: dict[Symbol, Name] = {}

    def connector_for(self, symbol: str) -> str:
        return self.routes.get(symbol, self.default_connector)


def decimals(step: float) -> int:
    """Decimal places needed to write multiples of ``step`` (0.01 → 2, 0.5 → 1, 5 → 0)."""
    places = 0
    while places < 12:
        scaled = step * 10 ** places
        if abs(scaled - round(scaled)) <= 1e-9 * max(1.0, scaled):
            break
        places += 1
    return places
