"""How the reports write times and numbers: UTC ISO 8601 times, and figures rounded to what they are.

Quantities are rounded to their instrument's lot size and prices to its tick size (the instrument
book, ``proto/instruments.py``, as the exchange manager serves it); money to cents. Float dust such
as ``-0.009999999999999997`` never reaches a report, nor does ``-0.00``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

FALLBACK_DECIMALS = 8  # an instrument the report knows nothing of: enough for any lot or tick in use


def utc(ts: float | None) -> str:
    """``2026-01-19T14:30:45.123Z``; ``-`` for no time."""
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decimals(step: float | None) -> int:
    """The decimals a grid step needs: 0.01 → 2, 1e-05 → 5, 0.5 → 1, 5 → 0."""
    if not step or step <= 0 or not math.isfinite(step):
        return FALLBACK_DECIMALS
    text = f"{step:.12f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


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
    """Tick and lot size per symbol, from the exchange manager's ``instruments`` answer."""

    def __init__(self, book: Mapping[str, Any] | None = None) -> None:
        self.ticks: dict[str, float] = {}
        self.lots: dict[str, float] = {}
        for listing in (book or {}).get("connectors", {}).values():
            for instrument in listing.get("instruments", []):
                self.ticks.setdefault(instrument["symbol"], instrument.get("tick_size"))
                self.lots.setdefault(instrument["symbol"], instrument.get("lot_size"))

    def qty(self, symbol: str, value: float | None) -> str:
        return _fixed(value, decimals(self.lots.get(symbol)))

    def price(self, symbol: str, value: float | None) -> str:
        return _fixed(value, decimals(self.ticks.get(symbol)))

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {"tick_size": self.ticks, "lot_size": self.lots}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Precision":
        out = cls()
        out.ticks, out.lots = dict(data.get("tick_size", {})), dict(data.get("lot_size", {}))
        return out
