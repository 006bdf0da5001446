"""An order against its instrument's specification (``proto.Instrument``): quantity and price on
the venue's grid, within its minimums and maximums. One definition for the three places that check:
the venue simulator (as a real venue does), the exchange manager's gate and the engine.

Each check returns ``None`` or ``(kind, reason)``: ``kind`` is a counter key (the gate counts it in
``gate.refusals``), ``reason`` says what was wrong in words an operator can act on. Grid checks
allow for binary floating point (0.1 + 0.2 is on a 0.001 grid) but not for a real offset.
"""

from __future__ import annotations

import math
from typing import Literal

from proto.fields import PRICE_MAX, QTY_MAX
from proto.instruments import Instrument, decimals

Problem = tuple[str, str] | None


def on_grid(value: float, step: float) -> bool:
    """Whether ``value`` is a positive whole multiple of ``step``, up to floating-point error."""
    if not (math.isfinite(value) and value > 0):
        return False
    n = round(value / step)
    return n >= 1 and abs(value - n * step) <= max(step * 1e-6, abs(value) * 1e-15)


def to_grid(value: float, step: float, mode: Literal["down", "up", "nearest"]) -> float:
    """``value`` moved onto the grid of ``step`` (down, up or to the nearest), written cleanly
    (3000.12, not 3000.1200000000003). May be 0 when rounding down a value below one step."""
    n = value / step
    k = math.floor(n + 1e-9) if mode == "down" else math.ceil(n - 1e-9) if mode == "up" else round(n)
    return round(k * step, decimals(step))


def quantity_problem(spec: Instrument, qty: float) -> Problem:
    if not (math.isfinite(qty) and 0 < qty <= QTY_MAX):
        return "bad_quantity", f"quantity {qty!r} is not a finite number in (0, {QTY_MAX:g}]"
    if qty < spec.min_qty * (1 - 1e-9):
        return "min_qty", f"quantity {qty:.12g} is below the minimum {spec.min_qty:.12g} for {spec.symbol}"
    if not on_grid(qty, spec.lot_size):
        return "lot_size", f"quantity {qty:.12g} is not a multiple of the lot size {spec.lot_size:.12g} for {spec.symbol}"
    if spec.max_qty is not None and qty > spec.max_qty * (1 + 1e-9):
        return "max_qty", f"quantity {qty:.12g} is above the maximum {spec.max_qty:.12g} for {spec.symbol}"
    return None


def price_problem(spec: Instrument, price: float) -> Problem:
    """A limit price: finite, on the tick grid, within the instrument's price limits."""
    if not (math.isfinite(price) and 0 < price <= PRICE_MAX):
        return "bad_price", f"limit price {price!r} is not a finite number in (0, {PRICE_MAX:g}]"
    if not on_grid(price, spec.tick_size):
        return "tick_size", f"limit price {price:.12g} is not a multiple of the tick size {spec.tick_size:.12g} for {spec.symbol}"
    if price < spec.min_price or (spec.max_price is not None and price > spec.max_price):
        return "price_limits", (f"limit price {price:.12g} is outside {spec.symbol}'s price limits "
                                f"[{spec.min_price:.12g}, {spec.max_price if spec.max_price is not None else 'none'}]")
    return None


def notional_problem(spec: Instrument, qty: float, price: float) -> Problem:
    """Quantity times the price the order is expected at (its limit, or the market's for a market order)."""
    notional = qty * price
    if notional < spec.min_notional * (1 - 1e-9):
        return "min_notional", (f"notional {notional:.12g} ({qty:.12g} x {price:.12g}) is below the minimum "
                                f"{spec.min_notional:.12g} for {spec.symbol}")
    if spec.max_notional is not None and notional > spec.max_notional:
        return "max_notional", (f"notional {notional:.12g} is above the maximum {spec.max_notional:.12g} "
                                f"for {spec.symbol}")
    return None


def collar_problem(symbol: str, price: float, mark: float, collar_pct: float, kind: str = "price_collar") -> Problem:
    """A limit price further than ``collar_pct`` from the mark (a fat finger, a unit mistake)."""
    away = abs(price / mark - 1) * 100
    if away > collar_pct:
        what = "price collar" if kind == "price_collar" else "venue's price band"
        return kind, (f"limit price {price:.12g} is {away:,.1f}% from the mark {mark:.12g} of {symbol}: "
                      f"outside the {collar_pct:g}% {what}")
    return None
