"""The user data stream's events for the exchange API's account, made from the matcher's events, in
Binance's shapes (https://developers.binance.com/docs/binance-spot-api-docs/user-data-stream) as
ccxt.pro's ``binance`` reads them (``handle_order_update``: ``parse_ws_order`` and
``parse_ws_trade``; ``handle_balance``):

* ``executionReport``: ``x`` ``NEW`` when an order rests or is taken, ``TRADE`` for each fill (the
  trade ``t`` with the id ``myTrades`` gives it, its quantity ``l`` and price ``L``, the order's
  cumulative ``z``/``Z`` after it), ``CANCELED``; a refused order never existed (REST answered the
  refusal), as on Binance;
* ``outboundAccountPosition``: the free and locked balances of the assets that just moved, ``u``
  the account's ``updateTime``.

The matcher reports a fill as the ``Fill`` followed by its order's ``OrderUpdate``: the pair is one
``TRADE`` report, the update giving the order's state after the fill.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import proto
from proto import OrderStatus
from services.venue_sim.exchange_api.binance import STATUS, num, venue_symbol
from services.venue_sim.matching import Event

if TYPE_CHECKING:
    from services.venue_sim.exchange_api.binance import BinanceSpot


def user_events(api: BinanceSpot, events: list[Event], now_ms: int) -> list[dict[str, Any]]:
    """The stream's events for ``events`` (one account's, in the matcher's order)."""
    out: list[dict[str, Any]] = []
    fills: dict[str, proto.Fill] = {}  # a fill waiting for its order's update
    moved: set[str] = set()  # symbols whose assets moved (locked or held)
    for event in events:
        if isinstance(event, proto.Fill):
            fills[event.client_order_id] = event
            continue
        fill = fills.pop(event.client_order_id, None)
        report = _execution_report(api, event, fill, now_ms)
        if report is not None:
            out.append(report)
            moved.add(event.symbol)
    if moved:
        assets = sorted({a for s in moved for a in api.assets_of(s)})
        out.append({"e": "outboundAccountPosition", "E": now_ms, "u": api.update_ms,
                    "B": [{"a": asset, "f": free, "l": locked} for asset, free, locked in api.asset_balances(assets)]})
    return out


def _execution_report(api: BinanceSpot, update: proto.OrderUpdate, fill: proto.Fill | None,
                      now_ms: int) -> dict[str, Any] | None:
    cid = update.client_order_id
    order_id = api.order_id(cid)
    if order_id is None or update.status is OrderStatus.REJECTED:
        return None  # not this face's order, or one refused at entry: no report on Binance either
    if fill is not None:
        kind = "TRADE"
    elif update.status is OrderStatus.CANCELLED:
        kind = "CANCELED"
    elif update.status in (OrderStatus.NEW, OrderStatus.ACKNOWLEDGED):
        kind = "NEW"
    else:
        return None  # a state already reported with its fill
    created_ms = api.created_ms(cid)
    report: dict[str, Any] = {
        "e": "executionReport", "E": now_ms, "s": venue_symbol(update.symbol),
        # a cancel's own id is "c" and the cancelled order's "C", as Binance reports them
        "c": f"cancel-{order_id}" if kind == "CANCELED" else cid, "C": cid if kind == "CANCELED" else "",
        "S": update.side.value.upper(), "o": update.order_type.upper(), "f": "GTC", "q": num(update.qty),
        "p": num(update.limit_price or 0.0), "P": "0", "F": "0", "g": -1, "x": kind, "X": STATUS[update.status],
        "r": "NONE", "i": order_id, "l": "0", "z": num(update.filled_qty), "L": "0", "n": "0", "N": None,
        "T": now_ms, "t": -1, "I": 0, "w": update.status.is_open and update.order_type == "limit",
        "m": False, "M": False, "O": created_ms, "Z": num(update.filled_qty * update.avg_fill_price),
        "Y": "0", "Q": "0", "W": created_ms, "V": "NONE"}
    if fill is not None:
        report.update({"l": num(fill.qty), "L": num(fill.price), "n": num(fill.fee),
                       "N": api.assets_of(update.symbol)[1], "T": fill.ts_ns // 1_000_000,
                       "t": api.trade_id(fill), "Y": num(fill.qty * fill.price),
                       "m": update.order_type == "limit", "M": True})  # maker: as myTrades says (isMaker)
    return report
