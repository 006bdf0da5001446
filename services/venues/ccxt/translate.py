"""ccxt's unified structures as ``proto`` messages and reports, and ccxt's exceptions as our reasons.

ccxt normalises every exchange to one order, trade, market and balance structure
(https://docs.ccxt.com/#/README?id=unified-api); these functions read only that structure, so they
hold for any exchange ccxt speaks.
"""

from __future__ import annotations

import time
from typing import Any

import ccxt

import proto
from proto import OrderStatus, Side
from proto.instruments import Instrument

STATUS = {"open": OrderStatus.ACKNOWLEDGED, "closed": OrderStatus.FILLED, "canceled": OrderStatus.CANCELLED,
          "cancelled": OrderStatus.CANCELLED, "expired": OrderStatus.CANCELLED, "rejected": OrderStatus.REJECTED}

# ccxt's exceptions, most specific first, as the reasons the book, the gate's counters and the
# connector's health read (a network error leaves an order in doubt: reconciliation settles it).
REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (ccxt.InsufficientFunds, "insufficient funds"),
    (ccxt.OrderNotFound, "unknown order"),
    (ccxt.InvalidOrder, "rejected"),
    (ccxt.DDoSProtection, "rate limited"),  # RateLimitExceeded is one
    (ccxt.AuthenticationError, "authentication refused"),
    (ccxt.PermissionDenied, "permission denied"),
    (ccxt.RequestTimeout, "network: timed out"),
    (ccxt.NetworkError, "network"),
    (ccxt.BadRequest, "rejected"),
    (ccxt.ExchangeError, "rejected"),
)


def reason(error: BaseException) -> str:
    """Our reason for ``error``, with ccxt's message (the exchange's own words) after it."""
    error = _ccxt_cause(error)
    for kind, text in REASONS:
        if isinstance(error, kind):
            return f"{text}: {str(error)[:300]}"
    return f"error: {type(error).__name__}: {str(error)[:300]}"


def _ccxt_cause(error: BaseException) -> BaseException:
    """ccxt's own error behind ``error``: ccxt.pro 4.5.90's Binance raises a KeyError while handling a
    refused user data subscription (it deletes the subscription twice), the refusal as its context."""
    found: BaseException | None = error
    while found is not None and not isinstance(found, ccxt.BaseError):
        found = found.__context__
    return found or error


def is_network(error: BaseException) -> bool:
    """The venue did not answer (or not in time): whatever was sent is in doubt."""
    return isinstance(error, ccxt.NetworkError) and not isinstance(error, ccxt.DDoSProtection)


def order_update(order: dict[str, Any], symbol: str, connector: str) -> proto.OrderUpdate | None:
    """One of the venue's orders (ccxt's order structure) as an ``OrderUpdate``; None when the
    venue does not give its client order id (not an order this system can name)."""
    cid = order.get("clientOrderId")
    if not cid:
        return None
    filled = float(order.get("filled") or 0.0)
    status = STATUS.get(order.get("status") or "", OrderStatus.ACKNOWLEDGED)
    if status is OrderStatus.ACKNOWLEDGED and filled > 0:
        status = OrderStatus.PARTIALLY_FILLED
    kind = "limit" if order.get("type") == "limit" else "market"
    stamp = order.get("lastUpdateTimestamp") or order.get("timestamp")
    return proto.OrderUpdate(
        client_order_id=cid, symbol=symbol, side=Side(order["side"]), qty=float(order["amount"]),
        order_type=kind, limit_price=float(order["price"]) if kind == "limit" and order.get("price") else None,
        status=status, filled_qty=filled, avg_fill_price=float(order.get("average") or 0.0),
        venue_order_id=str(order.get("id") or ""), connector=connector,
        ts_ns=int(stamp) * 1_000_000 if stamp else time.time_ns())


def fill(trade: dict[str, Any], symbol: str, client_order_id: str, quote: str, seq: int,
         connector: str) -> proto.Fill:
    """One of the account's trades (ccxt's trade structure) as a ``Fill`` numbered ``seq``. A fee
    charged in the base asset (some venues take a buy's fee from what it bought) is counted at the
    trade's price, in the quote."""
    price = float(trade["price"])
    fee = trade.get("fee") or {}
    cost = float(fee.get("cost") or 0.0)
    if cost and fee.get("currency") not in (None, quote):
        cost *= price
    return proto.Fill(fill_id=str(trade["id"]), client_order_id=client_order_id, symbol=symbol,
                      side=Side(trade["side"]), qty=float(trade["amount"]), price=price, fee=cost,
                      ts_ns=int(trade.get("timestamp") or time.time() * 1000) * 1_000_000,
                      connector=connector, venue_seq=seq)


def positions(balance: dict[str, Any], markets: dict[str, dict[str, Any]],
              inventory: dict[str, float]) -> list[proto.PositionReport]:
    """Spot positions from a balance (ccxt's balance structure): what the account holds of each
    traded base asset (``markets``: by our symbol) beyond ``inventory``."""
    totals = balance.get("total") or {}
    out = []
    for ours, market in markets.items():
        base = market.get("base") or ""
        qty = float(totals.get(base) or 0.0) - inventory.get(base, 0.0)
        if abs(qty) > 1e-12:
            out.append(proto.PositionReport(symbol=ours, qty=qty))
    return out


def instrument(market: dict[str, Any], symbol: str, tick_size_mode: bool) -> Instrument:
    """A market (ccxt's market structure) as an ``Instrument``: precision as steps (an exchange in
    DECIMAL_PLACES mode gives digits: 10 ** -n), limits as they are (None: no limit)."""
    precision, limits = market.get("precision") or {}, market.get("limits") or {}

    def step(value: Any) -> float:
        return float(value) if tick_size_mode else 10.0 ** -int(value)

    def bound(kind: str, end: str) -> float | None:
        value = (limits.get(kind) or {}).get(end)
        return float(value) if value is not None else None

    return Instrument(symbol=symbol, tick_size=step(precision["price"]), lot_size=step(precision["amount"]),
                      min_qty=bound("amount", "min") or 0.0, max_qty=bound("amount", "max"),
                      min_notional=bound("cost", "min") or 0.0, max_notional=bound("cost", "max"),
                      min_price=bound("price", "min") or 0.0, max_price=bound("price", "max"),
                      base=market.get("base") or "", quote=market.get("quote") or "")
