"""The gate's instrument checks: is this order meaningful at its venue, and sane against the market?

Called from ``RiskGate.check`` before the session and limit checks, so a nonsense order is refused
for what it is. In order (the first that fails is the refusal):

  1. numbers: quantity finite and in (0, 1e12]; a limit order's price finite and in (0, 1e12], a
     market order without one;
  2. the symbol: known to the order's venue (its instrument list, loaded from the venue on every
     connection). While that list is still loading an opening order is refused;
  3. the instrument: quantity ≥ minimum, a multiple of the lot size, ≤ maximum; limit price a
     multiple of the tick size and within the venue's price limits;
  4. the market: an opening order needs a mark (last quote's mid or trade); a limit price further
     than ``price_collar_pct`` from it is refused; notional (quantity x limit price or mark) within
     the instrument's minimum and maximum.

A reducing market order (the failsafe's and the operator's flatten) is refused only when it is
meaningless (1, and 2 once the venue's list is known): never for the quantity grid, the minimums or
a missing mark. A step toward safety is never blocked; the venue, which checks its own grid, stays
the judge of a flatten. A reducing *limit* order names its own price, and a price is not a step
toward safety: a sell at 0.01 against a mark of 150 reduces the position by giving it away. So its
price is held to the tick grid and the venue's price limits (once the list is known), and it needs
a mark and must lie within the collar around it. Nothing safe is lost: a flatten goes at market.
"""

from __future__ import annotations

import math

from proto.commands import OrderArgs
from proto.fields import PRICE_MAX, QTY_MAX
from proto.instruments import Instrument
from services.instruments import Problem, collar_problem, notional_problem, price_problem, quantity_problem


def instrument_refusal(order: OrderArgs, spec: Instrument | None, listed: bool, mark: float | None,
                       reduces: bool, collar_pct: float) -> Problem:
    """``None`` if the order may go on to the gate's other checks, else ``(kind, reason)``.

    ``spec`` is the order's instrument at its venue (None: not listed); ``listed`` whether the
    venue's list is loaded and current, so that a missing ``spec`` means an unknown symbol."""
    if not (math.isfinite(order.qty) and 0 < order.qty <= QTY_MAX):
        return "bad_quantity", f"quantity {order.qty!r} is not a finite number in (0, {QTY_MAX:g}]"
    limit = order.limit_price
    if order.order_type == "market" and limit is not None:
        return "bad_price", f"a market order takes no limit price (got {limit!r})"
    if order.order_type == "limit" and (limit is None or not (math.isfinite(limit) and 0 < limit <= PRICE_MAX)):
        return "bad_price", f"limit price {limit!r} is not a finite number in (0, {PRICE_MAX:g}]"
    if spec is None:
        if listed:
            return "unknown_symbol", f"unknown symbol {order.symbol}: the venue does not list it"
        if not reduces:
            return "instruments_not_loaded", (f"the venue's instrument list is not loaded yet: cannot check "
                                              f"{order.symbol} (only reducing orders pass)")
    if reduces:
        return None if limit is None else _reducing_limit_refusal(order.symbol, spec, limit, mark, collar_pct)
    problem = quantity_problem(spec, order.qty) or (price_problem(spec, limit) if limit is not None else None)
    if problem:
        return problem
    if mark is None or not (math.isfinite(mark) and mark > 0):
        return "no_mark", f"no market price for {order.symbol} yet: an opening order needs one"
    if limit is not None:
        problem = collar_problem(order.symbol, limit, mark, collar_pct)
        if problem:
            return problem
    return notional_problem(spec, order.qty, limit if limit is not None else mark)


def _reducing_limit_refusal(symbol: str, spec: Instrument | None, limit: float, mark: float | None,
                            collar_pct: float) -> Problem:
    """A reducing limit order's price: on the grid (when the list is in), and within the collar."""
    problem = price_problem(spec, limit) if spec is not None else None
    if problem:
        return problem
    if mark is None or not (math.isfinite(mark) and mark > 0):
        return "no_mark", (f"no market price for {symbol} yet: a reducing limit order needs one to check "
                           f"its price against (a market order reduces without one)")
    return collar_problem(symbol, limit, mark, collar_pct)
