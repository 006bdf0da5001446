"""The venue simulator's matching engine behind the subset of Binance's spot REST API that ccxt's
``binance`` class calls for spot trading.

The calls and their answers follow Binance's spot API documentation
(https://developers.binance.com/docs/binance-spot-api-docs/rest-api) as ccxt's ``binance.py``
reads them (``fetch_markets``/``parse_market``, ``create_order_request``/``parse_order``,
``parse_trade``, ``parse_balance``, ``handle_errors``). Errors are Binance's: ``{"code", "msg"}``
with the HTTP status Binance gives, so ccxt raises the same exception it would against Binance.

Every method runs on the venue's own loop (the server hands it over): the matcher is the one the
native ``proto`` command socket also drives, so both faces trade on one book, each with its own
account (``ACCOUNT`` here, the key's): this face's orders, trades and balances are its account's
alone, as a sub-account's are on a real exchange.

Spot accounting: the account holds balances per asset (``exchange_api.balances`` at start), moved
by its fills: a buy needs its cost in the quote asset, a sell its quantity in the base asset, both
free of what its open orders lock. ``updateTime`` is the time of its last balance change (its last
fill), as Binance reports it: the point its balances stand at.
"""

from __future__ import annotations

import bisect
import itertools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import proto
from proto import OrderStatus, Side
from proto.commands import NewOrderArgs
from services.venue_sim.matching import Event, VenueOrder

if TYPE_CHECKING:
    from services.venue_sim.main import Venue

# Binance's error codes for what the simulator refuses (and the HTTP status it answers with).
BAD_PARAM = -1102  # a mandatory parameter was not sent, was empty or malformed
BAD_SYMBOL = -1121
FILTER_FAILURE = -1013
NEW_ORDER_REJECTED = -2010
CANCEL_REJECTED = -2011
NO_SUCH_ORDER = -2013
INSUFFICIENT = "Account has insufficient balance for requested action."  # ccxt: InsufficientFunds

STATUS = {OrderStatus.NEW: "NEW", OrderStatus.ACKNOWLEDGED: "NEW", OrderStatus.PARTIALLY_FILLED: "PARTIALLY_FILLED",
          OrderStatus.FILLED: "FILLED", OrderStatus.CANCELLED: "CANCELED", OrderStatus.REJECTED: "REJECTED"}
ACCOUNT = "exchange_api"  # the matcher's account this face trades (its one API key's)
MAX_TRADES = 1000  # myTrades answers at most this many (Binance's own maximum)
# The matcher's instrument checks (services/instruments.py) as the Binance filter that refuses them.
FILTERS = {"bad_quantity": "LOT_SIZE", "min_qty": "LOT_SIZE", "lot_size": "LOT_SIZE", "max_qty": "LOT_SIZE",
           "bad_price": "PRICE_FILTER", "tick_size": "PRICE_FILTER", "price_limits": "PRICE_FILTER",
           "min_notional": "NOTIONAL", "max_notional": "NOTIONAL", "price_band": "PERCENT_PRICE_BY_SIDE"}


class ApiError(Exception):
    """An answer Binance gives as an error: ``{"code": code, "msg": msg}`` with ``http`` status."""

    def __init__(self, code: int, msg: str, http: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.http = code, msg, http

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg}


def venue_symbol(symbol: str) -> str:
    """``BTC-USD`` → ``BTCUSD``: Binance names a market by its assets run together."""
    return symbol.replace("-", "")


def _num(value: float) -> str:
    """A decimal as Binance writes it: a string, no exponent."""
    return f"{value:.8f}".rstrip("0").rstrip(".") if value else "0"


@dataclass
class _Times:
    created_ms: int
    updated_ms: int


class BinanceSpot:
    def __init__(self, venue: Venue) -> None:
        self._venue = venue
        cfg = venue.settings.exchange_api
        self.balances: dict[str, float] = dict(cfg.balances)
        self._symbols = {venue_symbol(s): s for s in venue.matcher.instruments}
        # Binance's ids are integers unique across the venue's life: this process's start (in
        # seconds) above a counter, so a restarted simulator never reuses one.
        self._id_base = (venue.matcher.session // 1_000_000_000) * 1_000_000
        self._order_ids: dict[str, int] = {}  # client order id -> orderId
        self._by_order_id: dict[int, str] = {}
        self._next_order_id = itertools.count(self._id_base + 1)
        self._times: dict[str, _Times] = {}
        self._fills_by_order: dict[str, list[proto.Fill]] = {}
        self._account = venue.matcher.account(ACCOUNT)
        self.update_ms = _ms()  # the last balance change

    # -- what its fills do to the account (the venue hands this face its account's events) --------

    def on_events(self, events: list[Event]) -> None:
        now = _ms()
        for event in events:
            times = self._times.get(event.client_order_id)
            if times is not None:
                times.updated_ms = now
            if not isinstance(event, proto.Fill):
                continue
            spec = self._venue.matcher.instruments.get(event.symbol)
            if spec is None:
                continue
            sign = event.side.sign
            self.balances[spec.base] = self.balances.get(spec.base, 0.0) + sign * event.qty
            self.balances[spec.quote] = (self.balances.get(spec.quote, 0.0) - sign * event.qty * event.price
                                         - event.fee)
            self.update_ms = max(self.update_ms, event.ts_ns // 1_000_000)
            fills = self._fills_by_order.setdefault(event.client_order_id, [])
            if len(fills) < 1000:  # an order's own fills, for its FULL answer (bounded)
                fills.append(event)

    # -- public ----------------------------------------------------------------------------------

    def exchange_info(self, _params: dict[str, str]) -> dict[str, Any]:
        symbols = []
        for ours, spec in self._venue.matcher.instruments.items():
            filters: list[dict[str, Any]] = [
                {"filterType": "PRICE_FILTER", "minPrice": _num(spec.min_price or spec.tick_size),
                 "maxPrice": _num(spec.max_price or 1_000_000.0), "tickSize": _num(spec.tick_size)},
                {"filterType": "LOT_SIZE", "minQty": _num(spec.min_qty or spec.lot_size),
                 "maxQty": _num(spec.max_qty or self._venue.settings.max_order_qty), "stepSize": _num(spec.lot_size)},
                {"filterType": "NOTIONAL", "minNotional": _num(spec.min_notional), "applyMinToMarket": True,
                 "maxNotional": _num(spec.max_notional or 9_000_000.0), "applyMaxToMarket": False,
                 "avgPriceMins": 5},
            ]
            symbols.append({
                "symbol": venue_symbol(ours), "status": "TRADING", "baseAsset": spec.base, "baseAssetPrecision": 8,
                "quoteAsset": spec.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
                "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
                "orderTypes": ["LIMIT", "MARKET"], "icebergAllowed": False, "ocoAllowed": False,
                "quoteOrderQtyMarketAllowed": False, "allowTrailingStop": False, "cancelReplaceAllowed": False,
                "isSpotTradingAllowed": True, "isMarginTradingAllowed": False, "filters": filters,
                "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "NONE",
                "allowedSelfTradePreventionModes": ["NONE"]})
        return {"timezone": "UTC", "serverTime": _ms(), "exchangeFilters": [], "symbols": symbols,
                "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 1,
                                "limit": int(self._venue.settings.exchange_api.max_requests_per_s)}]}

    def book_ticker(self, params: dict[str, str]) -> dict[str, Any] | list[dict[str, Any]]:
        if "symbol" in params:
            return self._ticker(self._symbol(params))
        return [self._ticker(s) for s in self._venue.matcher.touch]

    def depth(self, params: dict[str, str]) -> dict[str, Any]:
        """The touch as a one-level book: the simulator quotes a top of book, not depth."""
        symbol = self._symbol(params)
        bid, ask = self._touch(symbol)
        size = _num(1.0)
        return {"lastUpdateId": self._venue.quotes_published, "bids": [[_num(bid), size]], "asks": [[_num(ask), size]]}

    def _ticker(self, symbol: str) -> dict[str, Any]:
        bid, ask = self._touch(symbol)
        return {"symbol": venue_symbol(symbol), "bidPrice": _num(bid), "bidQty": "1", "askPrice": _num(ask),
                "askQty": "1"}

    # -- private (signed) ------------------------------------------------------------------------

    def new_order(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol(params)
        side = _side(params)
        kind = params.get("type", "").upper()
        if kind not in ("LIMIT", "MARKET"):
            raise ApiError(BAD_PARAM, f"Order type {kind or '(none)'} is not supported by this venue.")
        qty = _positive(params, "quantity")
        price = _positive(params, "price") if kind == "LIMIT" else None
        if kind == "LIMIT" and params.get("timeInForce", "GTC") != "GTC":
            raise ApiError(BAD_PARAM, "Only timeInForce=GTC is supported by this venue.")
        cid = params.get("newClientOrderId") or f"sim-{next(self._next_order_id)}"
        if cid in self._venue.matcher.orders:
            # Binance refuses a client order id still known; the book never reuses one on purpose.
            raise ApiError(NEW_ORDER_REJECTED, "Duplicate order sent.")
        self._check_balance(symbol, side, qty, price)
        self._order_ids[cid] = oid = next(self._next_order_id)
        self._by_order_id[oid] = cid
        now = _ms()
        self._times[cid] = _Times(now, now)
        self._venue.place(NewOrderArgs(client_order_id=cid, symbol=symbol, side=side, qty=qty,
                                       order_type=kind.lower(), limit_price=price), ACCOUNT)
        order = self._venue.matcher.orders[cid]
        if order.status is OrderStatus.REJECTED:
            check = order.reason.partition(":")[0]
            if check in FILTERS:  # an instrument's rule: Binance's filter failure, in its words
                raise ApiError(FILTER_FAILURE, f"Filter failure: {FILTERS[check]}")
            raise ApiError(NEW_ORDER_REJECTED, order.reason)
        answer = self._order(order)
        answer["transactTime"] = now
        answer["fills"] = [{"price": _num(f.price), "qty": _num(f.qty), "commission": _num(f.fee),
                            "commissionAsset": self._quote(symbol), "tradeId": self._id_base + f.venue_seq}
                           for f in self._fills_by_order.get(cid, [])]
        return answer

    def cancel_order(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol(params)
        order = self._find(params, symbol, CANCEL_REJECTED, "Unknown order sent.")
        if not order.status.is_open:
            raise ApiError(CANCEL_REJECTED, "Unknown order sent.")
        self._venue.withdraw(order.client_order_id, ACCOUNT)
        return self._order(order)

    def cancel_open_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._symbol(params)
        open_orders = [o for o in self._venue.matcher.open_orders(ACCOUNT) if o.symbol == symbol]
        if not open_orders:
            raise ApiError(CANCEL_REJECTED, "Unknown order sent.")
        self._venue.withdraw_all(symbol, ACCOUNT)
        return [self._order(o) for o in open_orders]

    def get_order(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol(params)
        return self._order(self._find(params, symbol, NO_SUCH_ORDER, "Order does not exist."))

    def open_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._symbol(params) if "symbol" in params else None
        return [self._order(o) for o in self._venue.matcher.open_orders(ACCOUNT) if symbol is None or o.symbol == symbol]

    def my_trades(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """The account's trades in one symbol, oldest first: from ``fromId`` (a trade id), else from
        ``startTime`` (ms), at most ``limit`` (500, up to 1,000)."""
        symbol = self._symbol(params)
        limit = min(int(params.get("limit", 500) or 500), MAX_TRADES)
        fills = self._account.fills
        if "fromId" in params:
            start = max(0, _int(params, "fromId") - self._id_base - 1)  # trade id = base + venue_seq
            candidates = (f for f in itertools.islice(fills, start, None))
        else:  # fills are in time order: found by bisection, not a scan of the session's history
            since_ns = _int(params, "startTime") * 1_000_000 if "startTime" in params else 0
            candidates = itertools.islice(fills, bisect.bisect_left(fills, since_ns, key=lambda f: f.ts_ns), None)
        trades = []
        for fill in candidates:
            if fill.symbol != symbol:
                continue
            trades.append(self._trade(fill))
            if len(trades) >= limit:
                break
        return trades

    def account(self, _params: dict[str, str]) -> dict[str, Any]:
        locked = self._locked()
        return {"makerCommission": 0, "takerCommission": 0, "buyerCommission": 0, "sellerCommission": 0,
                "commissionRates": {"maker": "0", "taker": "0", "buyer": "0", "seller": "0"},
                "canTrade": True, "canWithdraw": False, "canDeposit": False, "brokered": False,
                "requireSelfTradePrevention": False, "preventSor": False, "updateTime": self.update_ms,
                "accountType": "SPOT", "permissions": ["SPOT"],
                "balances": [{"asset": a, "free": _num(max(0.0, v - locked.get(a, 0.0))),
                              "locked": _num(locked.get(a, 0.0))} for a, v in sorted(self.balances.items())]}

    # -- shapes ----------------------------------------------------------------------------------

    def _order(self, order: VenueOrder) -> dict[str, Any]:
        cid = order.client_order_id
        oid = self._order_ids[cid]  # this face shows its own orders only: each numbered when placed
        times = self._times[cid]
        return {"symbol": venue_symbol(order.symbol), "orderId": oid, "orderListId": -1, "clientOrderId": cid,
                "price": _num(order.limit_price or 0.0), "origQty": _num(order.qty),
                "executedQty": _num(order.filled_qty), "cummulativeQuoteQty": _num(order.filled_qty * order.avg_fill_price),
                "status": STATUS[order.status], "timeInForce": "GTC", "type": order.order_type.upper(),
                "side": order.side.value.upper(), "stopPrice": "0", "icebergQty": "0", "time": times.created_ms,
                "updateTime": times.updated_ms, "workingTime": times.created_ms, "isWorking": order.status.is_open,
                "origQuoteOrderQty": "0", "selfTradePreventionMode": "NONE"}

    def _trade(self, fill: proto.Fill) -> dict[str, Any]:
        order = self._venue.matcher.orders[fill.client_order_id]
        oid = self._order_ids[fill.client_order_id]
        return {"symbol": venue_symbol(fill.symbol), "id": self._id_base + fill.venue_seq, "orderId": oid,
                "orderListId": -1, "price": _num(fill.price), "qty": _num(fill.qty),
                "quoteQty": _num(fill.qty * fill.price), "commission": _num(fill.fee),
                "commissionAsset": self._quote(fill.symbol), "time": fill.ts_ns // 1_000_000,
                "isBuyer": fill.side is Side.BUY, "isMaker": order.order_type == "limit",
                "isBestMatch": True}

    # -- helpers ---------------------------------------------------------------------------------

    def _symbol(self, params: dict[str, str]) -> str:
        name = params.get("symbol")
        if not name:
            raise ApiError(BAD_PARAM, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        symbol = self._symbols.get(name)
        if symbol is None:
            raise ApiError(BAD_SYMBOL, "Invalid symbol.")
        return symbol

    def _touch(self, symbol: str) -> tuple[float, float]:
        touch = self._venue.matcher.touch.get(symbol)
        if touch is None:
            raise ApiError(BAD_SYMBOL, f"No market in {venue_symbol(symbol)} yet.")
        return touch

    def _quote(self, symbol: str) -> str:
        return self._venue.matcher.instruments[symbol].quote

    def _find(self, params: dict[str, str], symbol: str, code: int, msg: str) -> VenueOrder:
        cid = params.get("origClientOrderId")
        if not cid and "orderId" in params:
            cid = self._by_order_id.get(_int(params, "orderId"))
        order = self._venue.matcher.owned(cid or "", ACCOUNT)
        if order is None or order.symbol != symbol or order.status is OrderStatus.REJECTED:
            raise ApiError(code, msg)
        return order

    def _locked(self) -> dict[str, float]:
        locked: dict[str, float] = {}
        for order in self._venue.matcher.open_orders(ACCOUNT):
            spec = self._venue.matcher.instruments[order.symbol]
            left = order.qty - order.filled_qty
            if order.side is Side.BUY:
                locked[spec.quote] = locked.get(spec.quote, 0.0) + left * (order.limit_price or 0.0)
            else:
                locked[spec.base] = locked.get(spec.base, 0.0) + left
        return locked

    def _check_balance(self, symbol: str, side: Side, qty: float, price: float | None) -> None:
        spec = self._venue.matcher.instruments[symbol]
        locked = self._locked()
        if side is Side.BUY:
            bid, ask = self._touch(symbol)
            need, asset = qty * (price if price is not None else ask), spec.quote
        else:
            need, asset = qty, spec.base
        if need > self.balances.get(asset, 0.0) - locked.get(asset, 0.0) + 1e-12:
            raise ApiError(NEW_ORDER_REJECTED, INSUFFICIENT)


def _ms() -> int:
    return time.time_ns() // 1_000_000


def _side(params: dict[str, str]) -> Side:
    side = params.get("side", "").upper()
    if side not in ("BUY", "SELL"):
        raise ApiError(BAD_PARAM, "Mandatory parameter 'side' was not sent, was empty/null, or malformed.")
    return Side.BUY if side == "BUY" else Side.SELL


def _positive(params: dict[str, str], name: str) -> float:
    try:
        value = float(params[name])
    except (KeyError, ValueError):
        raise ApiError(BAD_PARAM, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.") from None
    if not value > 0 or value == float("inf"):
        raise ApiError(BAD_PARAM, f"Illegal value for parameter '{name}'.")
    return value


def _int(params: dict[str, str], name: str) -> int:
    try:
        return int(params[name])
    except (KeyError, ValueError):
        raise ApiError(BAD_PARAM, f"Illegal value for parameter '{name}'.") from None
