"""How the reports write times and numbers: UTC ISO 8601 times, and figures rounded to what they are.

Quantities are rounded to their instrument's lot size and prices to its tick size (the instrument
book, ``proto/instruments.py``: the exchange manager's session counters carry each symbol's
``tick_size`` and ``lot_size``); money to cents. Float dust such
as ``-0.009999999999999997`` never reaches a report, nor does ``-0.00``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from proto.instruments import decimals

FALLBACK_DECIMALS = 8  # an instrument the report knows nothing of: enough for any lot or tick in use


def utc(ts: float | None) -> str:
    """``2026-01-19T14:30:45.123Z``; ``-`` for no time."""
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def places(step: float | None) -> int:
    """The decimals a grid step needs (0.01 → 2, 1e-05 → 5); an unknown step: FALLBACK_DECIMALS."""
    if not step or step <= 0 or not math.isfinite(step):
        return FALLBACK_DECIMALS
    return decimals(step)


def _fixed(value: float | None, places: int, grouped: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    text = f"{value:,.{places}f}" if grouped else f"{value:.{places}f}"
    if float(text.replace(",", "")) == 0:
        text = text.lstrip("-")
    if "." in text and not grouped:
        text = text.rstrip("0").rstrip(".")
    return text


def money(value: float | None) -> str:
    return _fixed(value, 2, grouped=True)


class Precision:
    """Tick and lot size per symbol, from rows that carry them (the session counters' rows)."""

    def __init__(self, rows: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.ticks = {symbol: row.get("tick_size") for symbol, row in (rows or {}).items()}
        self.lots = {symbol: row.get("lot_size") for symbol, row in (rows or {}).items()}

    def qty(self, symbol: str, value: float | None) -> str:
        return _fixed(value, places(self.lots.get(symbol)))

    def price(self, symbol: str, value: float | None) -> str:
        return _fixed(value, places(self.ticks.get(symbol)))
