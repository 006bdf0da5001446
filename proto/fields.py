"""Constrained field types shared by the message and command schemas: what a symbol, an id or a
name may look like on the wire, and the bounds a number must keep.

Decoding checks them, so a symbol such as ``""``, ``"BTC-USD\\x00"``, one with a newline or one of
5,000 characters never gets past ``proto.decode`` / ``proto.parse_args``: it is refused with a
counted protocol error before any handler, book or log line sees it. Settings check the same
patterns (``valid_symbol``, ``valid_name``) so a strategy or a replay cannot name a symbol the wire
would refuse.

The patterns are anchored with ``\\A`` and ``\\Z``: msgspec matches with ``re.search``, where ``$``
also matches before a trailing newline (``"BTC-USD\\n"`` would pass).
"""

from __future__ import annotations

import functools
import re
from typing import Annotated

import msgspec

# Venue symbols as ccxt writes them (``BTC/USDT``, ``BTC/USDT:USDT``, ``BTC/USD:BTC-240329``) and as
# our venues do (``BTC-USD``, ``EURUSD``): upper-case letters, digits and ``. _ : / -``.
SYMBOL_PATTERN = r"\A[A-Z0-9][A-Z0-9._:/-]{0,63}\Z"
SYMBOL_MAX = 64
# Client order ids, venue order ids, fill ids (venues allow about this: Binance ``[.A-Z:/a-z0-9_-]{1,36}``).
ID_PATTERN = r"\A[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}\Z"
# Names of strategies, connectors and venues; ``""`` is allowed (the default, "none"/"the default").
NAME_PATTERN = r"\A[A-Za-z0-9._:-]{0,64}\Z"
# Free text in command arguments (reasons): bounded, never patterned; every log line escapes it
# (services/log_escape.py). Free text in published messages is not bounded here: what our own
# processes say must never be dropped for its length (a frame is bounded by max_message_bytes).
TEXT_MAX = 1_000
# Sane bounds of any quantity or price on the wire: far beyond any real market, far below the
# magnitudes (1e308, inf) that overflow a notional. A quantity too small for its market is the
# instrument's business (lot size, minimum), checked with a clear reason by the gate and the venue.
QTY_MAX = 1e12
PRICE_MAX = 1e12
# Sums of money a venue reports (realized PnL, fees, traded volume): finite and far beyond any
# session (a whole day at QTY_MAX x PRICE_MAX would be 1e24 a trade), never inf or NaN.
AMOUNT_MAX = 1e30

Symbol = Annotated[str, msgspec.Meta(pattern=SYMBOL_PATTERN, max_length=SYMBOL_MAX)]
# A symbol, or "" (none), or "*" (every symbol: a safety event about the whole feed)
SymbolOrAll = Annotated[str, msgspec.Meta(pattern=r"\A(\*|[A-Z0-9][A-Z0-9._:/-]{0,63})?\Z", max_length=SYMBOL_MAX)]
OrderId = Annotated[str, msgspec.Meta(pattern=ID_PATTERN, max_length=64)]
OptionalId = Annotated[str, msgspec.Meta(pattern=r"\A([A-Za-z0-9][A-Za-z0-9._:/-]{0,63})?\Z", max_length=64)]
Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN, max_length=64)]
Text = Annotated[str, msgspec.Meta(max_length=TEXT_MAX)]
Quantity = Annotated[float, msgspec.Meta(gt=0, le=QTY_MAX)]  # NaN fails gt, inf fails le
Price = Annotated[float, msgspec.Meta(gt=0, le=PRICE_MAX)]
# A position (negative: short), an amount of money (a fee may be a rebate), a counter or a number
# (a venue's session, its fill numbers): NaN fails both bounds, inf one of them.
SignedQuantity = Annotated[float, msgspec.Meta(ge=-QTY_MAX, le=QTY_MAX)]
PriceOrZero = Annotated[float, msgspec.Meta(ge=0, le=PRICE_MAX)]  # 0: none yet (no fill, no position)
QuantityOrZero = Annotated[float, msgspec.Meta(ge=0, le=QTY_MAX)]
Amount = Annotated[float, msgspec.Meta(ge=-AMOUNT_MAX, le=AMOUNT_MAX)]
Count = Annotated[int, msgspec.Meta(ge=0)]

_SYMBOL = re.compile(SYMBOL_PATTERN)
_NAME = re.compile(NAME_PATTERN)


def valid_symbol(value: str) -> str:
    """``value`` if it is a symbol the wire accepts; else ValueError (a pydantic validator)."""
    if not _SYMBOL.search(value):
        raise ValueError(f"symbol {value[:80]!r} is not upper-case letters, digits and . _ : / - "
                         f"(at most {SYMBOL_MAX} characters, starting with a letter or digit)")
    return value


def valid_name(value: str) -> str:
    """``value`` if it is a name (strategy, connector, venue) the wire accepts; else ValueError."""
    if not _NAME.search(value):
        raise ValueError(f"name {value[:80]!r} is not letters, digits and . _ : - (at most 64 characters)")
    return value


# Market data: thousands of messages a second naming the same few symbols. msgspec checks a
# ``pattern`` with Python's ``re`` at every decode, 1.3 us of a quote's 1.9 us; ``Quote`` and
# ``Trade`` bound their names' length in the schema and check the patterns in ``__post_init__``
# through this memo: the same rule and the same refusal (a ``ProtocolError``), at 0.6 us a decode.
MarketSymbol = Annotated[str, msgspec.Meta(max_length=SYMBOL_MAX, extra_json_schema={"pattern": SYMBOL_PATTERN})]
MarketName = Annotated[str, msgspec.Meta(max_length=64, extra_json_schema={"pattern": NAME_PATTERN})]


@functools.lru_cache(maxsize=4096)  # bounded: a flood of new names only evicts
def _market_names_ok(symbol: str, venue: str) -> bool:
    return _SYMBOL.search(symbol) is not None and _NAME.search(venue) is not None


def check_market_names(symbol: str, venue: str) -> None:
    """ValueError unless ``symbol`` and ``venue`` match ``SYMBOL_PATTERN`` and ``NAME_PATTERN``."""
    if not _market_names_ok(symbol, venue):
        valid_symbol(symbol)
        valid_name(venue)
