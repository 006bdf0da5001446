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
from collections.abc import Callable
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


def num(value: float) -> str:
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
        # Each symbol's order book as the streams and the REST book show it: (update id, bid, ask,
        # size), the id counting the symbol's quotes (Binance's lastUpdateId, bookTicker's u).
        self._book: dict[str, tuple[int, float, float, float]] = {}
        # Set by the server when it serves the WebSocket faces: a new touch (Binance's symbol, update
        # id, bid, ask, size, the touch before), and the account's events.
        self.on_touch: Callable[[str, int, float, float, float, tuple[float, float] | None], None] | None = None
        self.on_account: Callable[[list[Event]], None] | None = None

    # -- the venue's quotes (every one, published or not: the touch moved) -----------------------

    def on_quote(self, symbol: str, bid: float, ask: float, size: float, published: bool) -> None:
        """A new touch of ``symbol``; ``published``: the venue's feed is on (the ``stop_feed`` fault
        silences the streams, not the touch, as a venue whose feed stalls still matches)."""
        before = self._book.get(symbol)
        update_id = (before[0] if before else 0) + 1
        self._book[symbol] = (update_id, bid, ask, size)
        if published and self.on_touch is not None:
            self.on_touch(venue_symbol(symbol), update_id, bid, ask, size, (before[1], before[2]) if before else None)

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
        if self.on_account is not None:  # after the balances moved: the events carry them
            self.on_account(events)

    # -- public ----------------------------------------------------------------------------------

    def exchange_info(self, _params: dict[str, str]) -> dict[str, Any]:
        symbols = []
        for ours, spec in self._venue.matcher.instruments.items():
            filters: list[dict[str, Any]] = [
                {"filterType": "PRICE_FILTER", "minPrice": num(spec.min_price or spec.tick_size),
                 "maxPrice": num(spec.max_price or 1_000_000.0), "tickSize": num(spec.tick_size)},
                {"filterType": "LOT_SIZE", "minQty": num(spec.min_qty or spec.lot_size),
                 "maxQty": num(spec.max_qty or self._venue.settings.max_order_qty), "stepSize": num(spec.lot_size)},
                {"filterType": "NOTIONAL", "minNotional": num(spec.min_notional), "applyMinToMarket": True,
                 "maxNotional": num(spec.max_notional or 9_000_000.0), "applyMaxToMarket": False,
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
        """The touch as a one-level book (the simulator quotes a top of book, not depth), at its
        update id: the depth stream's diffs follow from it."""
        update_id, bid, ask, size = self._level(self._symbol(params))
        return {"lastUpdateId": update_id, "bids": [[num(bid), num(size)]], "asks": [[num(ask), num(size)]]}

    def _ticker(self, symbol: str) -> dict[str, Any]:
        _id, bid, ask, size = self._level(symbol)
        return {"symbol": venue_symbol(symbol), "bidPrice": num(bid), "bidQty": num(size), "askPrice": num(ask),
                "askQty": num(size)}

    def _level(self, symbol: str) -> tuple[int, float, float, float]:
        """(update id, bid, ask, size) of ``symbol``'s touch (the matcher's, size 1, before any quote
        came through ``on_quote``)."""
        return self._book.get(symbol) or (0, *self._touch(symbol), 1.0)

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
            self._venue.matcher.duplicate_ids += 1  # the venue's audit (status), as the native face counts it
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
        answer["fills"] = [{"price": num(f.price), "qty": num(f.qty), "commission": num(f.fee),
                            "commissionAsset": self._quote(symbol), "tradeId": self.trade_id(f)}
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
                "balances": [{"asset": a, "free": num(max(0.0, v - locked.get(a, 0.0))),
                              "locked": num(locked.get(a, 0.0))} for a, v in sorted(self.balances.items())]}

    # -- shapes ----------------------------------------------------------------------------------

    def _order(self, order: VenueOrder) -> dict[str, Any]:
        cid = order.client_order_id
        oid = self._order_ids[cid]  # this face shows its own orders only: each numbered when placed
        times = self._times[cid]
        return {"symbol": venue_symbol(order.symbol), "orderId": oid, "orderListId": -1, "clientOrderId": cid,
                "price": num(order.limit_price or 0.0), "origQty": num(order.qty),
                "executedQty": num(order.filled_qty), "cummulativeQuoteQty": num(order.filled_qty * order.avg_fill_price),
                "status": STATUS[order.status], "timeInForce": "GTC", "type": order.order_type.upper(),
                "side": order.side.value.upper(), "stopPrice": "0", "icebergQty": "0", "time": times.created_ms,
                "updateTime": times.updated_ms, "workingTime": times.created_ms, "isWorking": order.status.is_open,
                "origQuoteOrderQty": "0", "selfTradePreventionMode": "NONE"}

    def _trade(self, fill: proto.Fill) -> dict[str, Any]:
        order = self._venue.matcher.orders[fill.client_order_id]
        oid = self._order_ids[fill.client_order_id]
        return {"symbol": venue_symbol(fill.symbol), "id": self.trade_id(fill), "orderId": oid,
                "orderListId": -1, "price": num(fill.price), "qty": num(fill.qty),
                "quoteQty": num(fill.qty * fill.price), "commission": num(fill.fee),
                "commissionAsset": self._quote(fill.symbol), "time": fill.ts_ns // 1_000_000,
                "isBuyer": fill.side is Side.BUY, "isMaker": order.order_type == "limit",
                "isBestMatch": True}

    # -- what the user data stream reports (user_data.py) ----------------------------------------

    def symbols(self) -> list[str]:
        return list(self._venue.matcher.instruments)

    def order_id(self, client_order_id: str) -> int | None:
        """The ``orderId`` of one of this face's orders (None: not one of them)."""
        return self._order_ids.get(client_order_id)

    def created_ms(self, client_order_id: str) -> int:
        times = self._times.get(client_order_id)
        return times.created_ms if times is not None else _ms()

    def trade_id(self, fill: proto.Fill) -> int:
        return self._id_base + fill.venue_seq  # the account's fills are numbered from 1

    def assets_of(self, symbol: str) -> tuple[str, str]:
        spec = self._venue.matcher.instruments[symbol]
        return spec.base, spec.quote

    def asset_balances(self, assets: list[str]) -> list[tuple[str, str, str]]:
        """(asset, free, locked) of each of ``assets``, as ``account`` shows them."""
        locked = self._locked()
        return [(a, num(max(0.0, self.balances.get(a, 0.0) - locked.get(a, 0.0))), num(locked.get(a, 0.0)))
                for a in assets]

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
