"""The exchange manager's connector to a venue through ccxt (``kind = "ccxt"``).

Orders go out with ccxt's unified ``create_order``, the book's client order id as the venue's own
(``clientOrderId``), so a resent order is refused by the venue, not doubled, and an order stays
nameable across a restart. Execution reports come from the account's streams where the exchange
has them (``watch_orders``, ``watch_my_trades``: ``account_streams.py``) and from polling
(``fetch_open_orders``, ``fetch_order``, ``fetch_my_trades`` since the last trade read), the
fallback the unified API offers every venue, every ``poll_interval_s``; while the streams are up,
polling slows to ``stream_poll_interval_s`` but never stops: it catches what a stream lost. The
answers of ``create_order`` and ``cancel_order`` are reported at once. Whichever path brings a
report first, it is reported once, and an order's state only ever moves forward (a late message
never takes back a fill or reopens an ended order).

Fills are numbered by this adapter in the order it learns them (``Fill.venue_seq``, ``fills.py``),
in a session of its own (its start): what reconciliation asks (``fills_since``) is answered from
them, over ``fills_lookback_s`` at most, so its size never follows the account's history. A mass
status is one consistent snapshot: trades, open orders and balances, read again until no trade
arrived between (a REST venue has no atomic snapshot). Positions are spot holdings: the base asset
held beyond ``inventory``.

Everything here runs on the exchange manager's loop; ccxt's calls run on the session's thread and
come back through ``CcxtSession.run``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import ccxt
from ccxt.base.decimal_to_precision import TICK_SIZE

import proto
from bus import NotConnected
from proto.commands import NewOrderArgs
from proto.instruments import InstrumentList
from services.backoff import Backoff
from services.runtime import ServiceRuntime
from services.venues.base import ExecutionEvents
from services.venues.ccxt import credentials, translate
from services.venues.ccxt.account_streams import AccountStreams, Named
from services.venues.ccxt.fills import FillNumbering, Trades
from services.venues.ccxt.session import CcxtSession
from services.venues.settings import CcxtConnectorSettings

log = logging.getLogger(__name__)

MAX_ENDED_KEPT = 100_000  # ended orders remembered (a late report of one is not taken)
SNAPSHOT_TRIES = 5
# Polling within the venue's request weights: every interval, only the symbols where a report may be
# due (an order open, or sent within ACTIVE_S); every SWEEP_S, every symbol.
ACTIVE_S = 10.0
SWEEP_S = 5.0
# A restarted connector reads each symbol's trades again from this long before the book last applied
# one of its fills (the book's clock against the venue's, and a poll's lag behind its trades).
RESUME_MARGIN_S = 60.0


class CcxtExecutionClient:
    def __init__(self, cfg: CcxtConnectorSettings, runtime: ServiceRuntime, events: ExecutionEvents) -> None:
        self.name = cfg.name
        self._cfg = cfg
        self._events = events
        self._reactor = runtime.reactor
        self._credentials = credentials.load(cfg)  # CredentialsError: the exchange manager refuses to start
        self._session: CcxtSession | None = None
        self.session_id = time.time_ns()  # this adapter's fill numbering starts here
        self.venue_session: int | None = None
        self.last_reply_bytes = 0
        self._unified: dict[str, str] = {}  # our symbol -> the venue's unified symbol
        self._ours: dict[str, str] = {}
        self._markets: dict[str, dict[str, Any]] = {}  # by our symbol
        self._tick_size_mode = True
        self._connected = False
        self._connecting = False
        self._heard: float | None = None
        self._backoff = Backoff(cfg.reconnect_initial_s, cfg.reconnect_max_s, jitter=cfg.reconnect_jitter)
        self._orders: dict[str, tuple[str, str]] = {}  # client order id -> (venue order id, our symbol)
        self._cid_by_order: dict[str, str] = {}
        self._reported: dict[str, tuple[str, float]] = {}  # client order id -> (status, filled) last reported
        self._ended: dict[str, None] = {}  # client order ids reported ended, oldest first
        self._fills = FillNumbering(cfg.name, self._resolve, events.on_fill)
        self._streams: AccountStreams | None = None
        self._slow_until = 0.0  # while the streams are up: no full poll before this (time.monotonic())
        self._active_until: dict[str, float] = {}  # our symbol -> until when it is polled every interval
        self._sweep_at = 0.0
        self._trades_due: set[str] = set()  # our symbols whose trades the next poll reads
        self._polling = False
        self._snapshotting = False  # a mass status is being read: no poll meanwhile (see _snapshot)
        self._status_reads = 0  # order status reads out (a reconciliation's last questions: see _settle)
        self.reconnects = 0
        self.errors = 0
        self.failed_polls = 0
        runtime.reactor.call_every(cfg.poll_interval_s, self._poll)

    # -- the link --------------------------------------------------------------------------------

    def connect(self) -> None:
        if self._connecting or self._connected:
            return
        if self._session is None:
            self._session = CcxtSession(self._cfg, self._credentials, self._reactor)
        self._connecting = True
        log.info("connector %s: connecting to %s through ccxt", self.name, self._cfg.exchange)
        if self._markets:  # a reconnection: one light call shows the venue is back (markets stay loaded)
            self._call(self._session.exchange.fetch_time(), self._on_back)
        else:
            self._call(self._session.exchange.load_markets(True), self._on_markets)

    def _on_back(self, _time: Any, error: BaseException | None) -> None:
        self._connecting = False
        if error is not None:
            self._down(f"still no answer: {translate.reason(error)}")
            return
        self._up()

    def _on_markets(self, markets: dict[str, Any] | None, error: BaseException | None) -> None:
        self._connecting = False
        if error is not None or markets is None:
            self._down(f"loading markets failed: {translate.reason(error) if error else 'no answer'}")
            return
        self._map_markets(markets)
        self._resume()
        log.info("connector %s: %s has %d market(s) to trade: %s", self.name, self._cfg.exchange,
                 len(self._unified), ", ".join(sorted(self._unified)))
        self._start_streams()
        self._up()

    def _resume(self) -> None:
        """Where each symbol's trades are read from when this connector starts: from where the book
        of record was (a restart: what it has applied is not read again), within
        ``fills_lookback_s``; and the book's orders by the venue's order id, so their trades are
        named without asking the venue order by order."""
        if self._fills.since_ms:
            return  # a reconnection: each symbol's read goes on from its cursor
        lookback_ms = int((time.time() - self._cfg.fills_lookback_s) * 1000)
        resume = self._events.fills_resume_ns(self.name)
        for symbol in self._unified:
            applied_ms = (resume[symbol] // 1_000_000 - int(RESUME_MARGIN_S * 1000)) if symbol in resume else 0
            self._fills.since_ms[symbol] = max(lookback_ms, applied_ms)
        for venue_id, cid in self._events.known_orders(self.name).items():
            self._cid_by_order.setdefault(venue_id, cid)

    def _up(self) -> None:
        self._connected, self._heard = True, time.monotonic()
        self.venue_session = self.session_id
        self._backoff.reset()
        self._sweep_at = 0.0  # a full sweep first: what happened while away
        log.info("connector %s: connected to %s", self.name, self._cfg.exchange)
        self._events.on_connected(self)

    def _map_markets(self, markets: dict[str, Any]) -> None:
        exchange = self._session.exchange if self._session else None
        self._tick_size_mode = exchange is None or exchange.precisionMode == TICK_SIZE
        wanted = dict(self._cfg.symbols) or {
            f"{m['base']}-{m['quote']}": unified for unified, m in markets.items()
            if m.get("spot") and m.get("active", True) is not False and m.get("base") and m.get("quote")}
        self._unified = {ours: unified for ours, unified in wanted.items() if unified in markets}
        self._ours = {unified: ours for ours, unified in self._unified.items()}
        self._markets = {ours: markets[unified] for ours, unified in self._unified.items()}

    def disconnect(self, reason: str) -> None:
        if self._connected:
            log.warning("connector %s: disconnected: %s", self.name, reason)
        self._connected = False

    def _down(self, why: str) -> None:
        """The venue did not answer: count it, and connect again after the backoff."""
        self.errors += 1
        self.disconnect(why)
        delay = self._backoff.next()
        self.reconnects += 1
        log.info("connector %s: %s; reconnect attempt %d in %.2fs", self.name, why, self._backoff.attempts, delay)
        self._reactor.call_later(delay, self.connect)

    def is_connected_check(self) -> bool:
        """Connected, and an HTTP answer (a refusal counts) within ``heartbeat_timeout_s``: judged per
        request, so a long rate-limited reconciliation does not make a live venue look gone."""
        heard = max(self._heard or 0.0, (self._session.last_answer if self._session else None) or 0.0)
        return self._connected and heard > 0 and time.monotonic() - heard < self._cfg.heartbeat_timeout_s

    def _call(self, coro: Awaitable[Any], on_done: Callable[[Any, BaseException | None], None]) -> None:
        assert self._session is not None

        def done(result: Any, error: BaseException | None) -> None:
            if error is None:
                self._heard = time.monotonic()
            elif not translate.is_network(error):
                self._heard = time.monotonic()  # an answer, if a refusal
            on_done(result, error)

        self._session.run(coro, done)

    # -- polling: the execution reports --------------------------------------------------------

    def _poll(self) -> None:
        if not self._connected or self._session is None:
            return
        if not self.is_connected_check():  # a poll may still hang in flight: the link is judged anyway
            self._down(f"no answer from {self._cfg.exchange} for {self._cfg.heartbeat_timeout_s:g}s")
            return
        if self._polling or self._snapshotting:
            return
        now = time.monotonic()
        if self._streams is not None and self._streams.live and now < self._slow_until:
            self._keep_judged(now)  # the streams report: the safety net's next full poll is later
            return
        self._slow_until = now + self._cfg.stream_poll_interval_s
        if now >= self._sweep_at:  # every symbol now and then: what happened there without us
            self._sweep_at = now + SWEEP_S
            symbols = list(self._unified)
            self._trades_due.update(symbols)
        else:
            symbols = self._active_symbols(now)
        if not symbols:
            self._keep_judged(now)
            return
        self._polling = True
        due, self._trades_due = self._trades_due & set(symbols), self._trades_due - set(symbols)
        self._call(self._reports(symbols, due), self._on_reports)

    def _keep_judged(self, now: float) -> None:
        """Nothing to read: one light call now and then keeps the link judged (by REST answers)."""
        assert self._session is not None
        if now - (self._session.last_answer or 0.0) > self._cfg.heartbeat_timeout_s / 3:
            self._polling = True
            self._call(self._session.exchange.fetch_time(), lambda _r, e: self._on_reports(([], []), e))

    def _active_symbols(self, now: float) -> list[str]:
        """The symbols where an execution report may be due: an order of ours open there, or sent
        within ``ACTIVE_S`` (a market order's trades come after it closed)."""
        active = {self._orders[cid][1] for cid in self._reported if cid in self._orders}
        active |= {symbol for symbol, until in self._active_until.items() if until > now}
        return [symbol for symbol in self._unified if symbol in active]

    async def _reports(self, symbols: list[str], due: set[str]
                       ) -> tuple[list[tuple[dict[str, Any], str]], list[dict[str, Any]]]:
        """The orders whose state may have moved (every open one, and each one reported open that no
        longer is: its end), then the trades since the last seen, in the symbols where one may have
        come: a fill changed or an order ended there, or ``due`` says so (a sweep, an order that
        filled on arrival). Trades are the venue's costliest read (Binance: four times an order
        list): they are not read where nothing filled."""
        exchange = self._session.exchange  # type: ignore[union-attr]
        orders: list[dict[str, Any]] = []
        open_cids: set[str] = set()
        moved = set(due)
        for ours in symbols:
            for order in await exchange.fetch_open_orders(self._unified[ours]):
                orders.append(order)
                cid = order.get("clientOrderId") or ""
                open_cids.add(cid)
                if float(order.get("filled") or 0.0) != self._reported.get(cid, ("", 0.0))[1]:
                    moved.add(ours)
        for cid, (status, _filled) in list(self._reported.items()):
            known = self._orders.get(cid)
            if (status in ("acknowledged", "partially_filled") and cid not in open_cids and known is not None
                    and known[1] in symbols):
                orders.append(await exchange.fetch_order(known[0], self._unified[known[1]]))
                moved.add(known[1])
        return await self._trades([s for s in symbols if s in moved]), orders

    async def _trades(self, symbols: list[str] | None = None) -> list[tuple[dict[str, Any], str]]:
        """Every trade of the account since the last seen in ``symbols`` (default every one), page
        after page while pages come full, each with its client order id (asked of the venue for an
        order neither this adapter nor the book knows)."""
        exchange = self._session.exchange  # type: ignore[union-attr]
        limit = self._cfg.trades_page
        out = []
        for ours, unified in [(s, self._unified[s]) for s in (symbols or list(self._unified)) if s in self._unified]:
            since = self._fills.since_ms.get(ours)
            while True:
                page = await exchange.fetch_my_trades(unified, since=since, limit=limit)
                for trade in page:
                    order_id = str(trade.get("order") or "")
                    cid = self._cid_by_order.get(order_id)
                    if cid is None and order_id:
                        cid = (await exchange.fetch_order(order_id, unified)).get("clientOrderId") or f"venue-{order_id}"
                        self._cid_by_order[order_id] = cid
                    out.append((trade, cid or f"venue-{trade['id']}"))
                if len(page) < limit:
                    break
                last = max(int(t.get("timestamp") or 0) for t in page)
                if since is not None and last <= since:  # a page of one millisecond: "since" cannot move on
                    raise ccxt.ExchangeError(f"more than {limit} trades of {unified} in one millisecond: "
                                             f"its trades cannot be read completely by time")
                since = last
        return out

    def _on_reports(self, result: Any, error: BaseException | None) -> None:
        self._polling = False
        if error is not None:
            self.failed_polls += 1
            self.errors += 1
            log.debug("connector %s: poll failed: %s", self.name, translate.reason(error))
            if self._connected and not self.is_connected_check():
                self._down(f"no answer from {self._cfg.exchange}: {translate.reason(error)}")
            return
        trades, orders = result
        new = self._fills.take(trades)
        if self._streams is not None:  # the safety net: what did the trade stream lose?
            self._streams.polled(f.fill_id for f in new)
            self._streams.check_missed()
        for order in orders:
            self._take_order(order)

    def _resolve(self, unified: str) -> tuple[str, str] | None:
        """A unified symbol's (our symbol, quote asset); None when this connector does not trade it."""
        ours = self._ours.get(unified)
        return (ours, self._markets[ours].get("quote") or "") if ours is not None else None

    def _take_order(self, order: dict[str, Any]) -> proto.OrderUpdate | None:
        """One of the venue's orders (from an answer, a poll or a stream), reported if it moved on:
        an order's reports only go forward (a fill is never taken back, an ended order never reopens),
        whatever order the paths' messages arrive in."""
        ours = self._ours.get(order.get("symbol") or "")
        update = translate.order_update(order, ours, self.name) if ours else None
        if update is None:
            return None
        cid = update.client_order_id
        self._orders.setdefault(cid, (update.venue_order_id, ours or ""))
        if update.venue_order_id:
            self._cid_by_order[update.venue_order_id] = cid
        key = (update.status.value, update.filled_qty)
        before = self._reported.get(cid)
        if cid in self._ended or (before is not None and update.filled_qty < before[1]) or before == key:
            return update
        self._reported[cid] = key
        if not update.status.is_open:
            self._reported.pop(cid)  # ended: nothing more to watch
            self._ended[cid] = None
            if len(self._ended) > MAX_ENDED_KEPT:
                del self._ended[next(iter(self._ended))]
        self._events.on_order_update(update)
        return update

    # -- the account's streams -------------------------------------------------------------------

    def _start_streams(self) -> None:
        if self._streams is not None or self._session is None or not self._cfg.streams:
            return
        if self._cfg.streams_off_why() is not None:
            log.warning("connector %s: %s", self.name, self._cfg.streams_off_why())
            return
        self._streams = AccountStreams(self._cfg, self._session, self._reactor, self._cid_by_order.get,
                                       self._on_streamed_orders, self._on_streamed_trades)
        self._streams.start()

    def _on_streamed_orders(self, orders: list[dict[str, Any]]) -> None:
        for order in orders:
            before = self._reported.get(order.get("clientOrderId") or "")
            update = self._take_order(order)
            if (update is not None and update.filled_qty > (before[1] if before else 0.0)
                    and not (self._streams and self._streams.trades_live)):
                self._trades_due.add(update.symbol)  # filled, and no trade stream brings its trades

    def _on_streamed_trades(self, trades: list[Named]) -> None:
        if self._streams is not None:
            self._streams.streamed(str(t["id"]) for t, _ in trades)
        named: Trades = [(t, cid) for t, cid in trades if cid is not None]
        for trade, _ in (t for t in trades if t[1] is None):  # an order not known here: polling asks the venue
            if (ours := self._ours.get(trade.get("symbol") or "")) is not None:
                self._trades_due.add(ours)
        if self._snapshotting:
            self._fills.hold(named)  # after the mass status has numbered its own (see _snapshot)
        else:
            self._fills.take(named, cursor=False)

    # -- orders ----------------------------------------------------------------------------------

    def submit(self, order: NewOrderArgs) -> None:
        """Send a new order; raises ``NotConnected`` if it could not leave."""
        unified = self._unified.get(order.symbol)
        if not self._connected or self._session is None:
            self.errors += 1
            raise NotConnected(f"connector {self.name} is not connected")
        cid = order.client_order_id
        if unified is None:
            self._reject(order, f"rejected: {self._cfg.exchange} does not trade {order.symbol} (or it is not mapped)")
            return
        self._active_until[order.symbol] = time.monotonic() + ACTIVE_S
        params: dict[str, Any] = {"clientOrderId": cid}
        if order.reduce_only and not self._markets[order.symbol].get("spot"):
            params["reduceOnly"] = True  # spot has no such flag: a sell there only sells what is held
        self._reported[cid] = ("new", 0.0)

        def on_done(result: Any, error: BaseException | None) -> None:
            if error is None:
                update = self._take_order({**result, "clientOrderId": result.get("clientOrderId") or cid,
                                           "symbol": result.get("symbol") or unified})
                if update is not None and update.filled_qty > 0:
                    self._trades_due.add(order.symbol)  # filled on arrival: its trades are there now
            elif translate.is_network(error):
                self._events.on_in_doubt(self, cid)  # it may have reached the venue: reconcile
            else:
                self.errors += 1
                self._reported.pop(cid, None)
                self._reject(order, translate.reason(error))

        self._call(self._session.exchange.create_order(unified, order.order_type, order.side.value,
                                                       self._on_lot_grid(order.symbol, order.qty),
                                                       order.limit_price, params), on_done)

    def _on_lot_grid(self, symbol: str, qty: float) -> float:
        """``qty`` on its market's lot grid when it is there but for float noise: ccxt truncates an
        amount to the grid, and a flatten of 0.009999999999999998 (the book's sum of 0.01, 0.001 and
        -0.001) would leave one lot behind, below the venue's minimum, never to be flattened."""
        step = (self._markets[symbol].get("precision") or {}).get("amount")
        if step is None:
            return qty
        step = float(step) if self._tick_size_mode else 10.0 ** -int(step)
        lots = round(qty / step)
        return round(lots * step, 12) if lots and abs(qty / step - lots) < 1e-6 else qty

    def _reject(self, order: NewOrderArgs, reason: str) -> None:
        self._events.on_order_update(proto.OrderUpdate(
            client_order_id=order.client_order_id, symbol=order.symbol, side=order.side, qty=order.qty,
            order_type=order.order_type, limit_price=order.limit_price, status=proto.OrderStatus.REJECTED,
            filled_qty=0.0, avg_fill_price=0.0, reason=f"venue: {reason}", connector=self.name, ts_ns=time.time_ns()))

    def cancel(self, client_order_id: str) -> None:
        known = self._orders.get(client_order_id)
        if not self._connected or self._session is None:
            raise NotConnected(f"connector {self.name} is not connected")
        if known is None:
            self._events.on_in_doubt(self, client_order_id)  # not seen at the venue yet: reconcile
            return
        venue_id, ours = known
        self._call(self._session.exchange.cancel_order(venue_id, self._unified[ours]), self._on_cancelled)

    def _on_cancelled(self, result: Any, error: BaseException | None) -> None:
        if error is None and isinstance(result, dict):
            self._take_order(result)
        elif error is not None:
            self.errors += 1
            log.info("connector %s: cancel refused: %s", self.name, translate.reason(error))

    def cancel_all(self, symbol: str | None) -> None:
        if not self._connected or self._session is None:
            raise NotConnected(f"connector {self.name} is not connected")
        self._call(self._cancel_all([symbol] if symbol else list(self._unified)), self._on_cancelled_all)

    async def _cancel_all(self, symbols: list[str]) -> list[dict[str, Any]]:
        """Every open order of ``symbols``, cancelled: with one call per symbol where the venue has
        it, else one per order. The symbols at once, not one after another: a cancel waits for the
        venue's answer (and ccxt's rate limiter), and an exchange manager killed in the first moments
        of a FAILSAFE must not leave the last symbols' orders resting because their turn had not come.
        A symbol that fails does not stop the others; the first failure is raised once all are done."""
        outcomes = await asyncio.gather(*(self._cancel_symbol(ours) for ours in symbols if ours in self._unified),
                                        return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors:
            raise errors[0]
        return [order for done in outcomes if isinstance(done, list) for order in done]

    async def _cancel_symbol(self, ours: str) -> list[dict[str, Any]]:
        exchange = self._session.exchange  # type: ignore[union-attr]
        unified = self._unified[ours]
        open_orders = await exchange.fetch_open_orders(unified)
        if not open_orders:
            return []
        done: list[dict[str, Any]] = []
        try:
            if exchange.has.get("cancelAllOrders"):
                await exchange.cancel_all_orders(unified)
                done += [{**o, "status": "canceled"} for o in open_orders]
            else:
                for order in open_orders:
                    done.append(await exchange.cancel_order(order["id"], unified))
        except ccxt.OrderNotFound:  # ended since they were read (Binance: -2011): polling reports how they
            pass  # ended, and the other symbols' cancels go on
        return done

    def _on_cancelled_all(self, result: Any, error: BaseException | None) -> None:
        if error is not None:
            self.errors += 1
            log.warning("connector %s: cancel all failed: %s", self.name, translate.reason(error))
            return
        for order in result:
            self._take_order(order)

    # -- reconciliation's reports ----------------------------------------------------------------

    def mass_status(self, on_result: Callable[[proto.MassStatus | None], None]) -> None:
        if not self._connected or self._session is None:
            on_result(None)
            return
        self._snapshot(on_result, SNAPSHOT_TRIES)

    def _snapshot(self, on_result: Callable[[proto.MassStatus | None], None], tries: int) -> None:
        """Open orders, trades, balances, trades again. The balances hold every trade of the first
        read; of the trades the second read brings, those before the balances' own time (Binance's
        account ``updateTime``: its last change) are in them and those after are not, so ``fill_seq``
        is the number of the last trade before it. A venue that gives its balances no time, a trade
        at that very millisecond, or a time that contradicts the first read (a trade seen before the
        balances, yet after their time): read again, as when the second read brings nothing new.
        Polling waits meanwhile, and the trade stream's trades are held: a trade numbered during the
        reads would break that order; they are numbered once the answer is made."""
        assert self._session is not None
        self._snapshotting = True  # pending or reading: no new poll starts
        if self._polling:  # the poll under way numbers its trades first, then the reads begin
            self._reactor.call_later(0.02, lambda: self._snapshot(on_result, tries))
            return
        self._session.largest_response_bytes = 0

        async def read() -> tuple[Any, ...]:
            exchange = self._session.exchange  # type: ignore[union-attr]
            orders = [o for unified in list(self._unified.values()) for o in await exchange.fetch_open_orders(unified)]
            before = await self._trades()  # the balances' window: as short as the venue allows
            server_ms = await exchange.fetch_time()  # the venue's clock just before the balances
            balance = await exchange.fetch_balance()
            return before, orders, (balance, server_ms), await self._trades()

        def answer(status: proto.MassStatus | None) -> None:
            on_result(status)
            self._settle()

        def done(result: Any, error: BaseException | None) -> None:
            if error is not None:
                log.info("connector %s: mass status failed: %s", self.name, translate.reason(error))
                answer(None)
                return
            before, orders, (balance, server_ms), after = result
            self.last_reply_bytes = self._session.largest_response_bytes if self._session else 0
            fill_seq = self._fills.number_snapshot(before, after, balance.get("timestamp"), server_ms)
            if fill_seq is None:  # trades came that the balances may or may not hold
                if tries > 1:
                    self._snapshot(on_result, tries - 1)  # still reading: streamed trades stay held
                else:  # never an inconsistent answer: a wrong "mismatch" would be corrected into the book
                    log.info("connector %s: trades kept coming during %d mass status reads: no answer this time",
                             self.name, SNAPSHOT_TRIES)
                    answer(None)
                return
            updates = [u for u in (self._take_order(o) for o in orders) if u is not None]
            answer(proto.MassStatus(session=self.session_id, fill_seq=fill_seq, open_orders=updates,
                                    open_orders_total=len(updates),
                                    positions=translate.positions(balance, self._markets, self._cfg.inventory)))

        self._call(read(), done)

    def fills_since(self, after_seq: int, limit: int, on_result: Callable[[proto.FillPage | None], None]) -> None:
        on_result(self._fills.page(self.session_id, after_seq, limit))

    def order_status(self, client_order_ids: list[str],
                     on_result: Callable[[proto.OrderStatusReports | None], None]) -> None:
        if not self._connected or self._session is None:
            on_result(None)
            return

        async def read() -> list[tuple[str, dict[str, Any] | None]]:
            exchange = self._session.exchange  # type: ignore[union-attr]
            out: list[tuple[str, dict[str, Any] | None]] = []
            for cid in client_order_ids:
                known = self._orders.get(cid)
                try:
                    if known is not None:
                        out.append((cid, await exchange.fetch_order(known[0], self._unified[known[1]])))
                        continue
                    found = None
                    for unified in list(self._unified.values()):  # by the client order id, where the venue allows
                        try:
                            found = await exchange.fetch_order("", unified, {"clientOrderId": cid})
                            break
                        except ccxt.OrderNotFound:
                            continue
                    out.append((cid, found))
                except ccxt.OrderNotFound:
                    out.append((cid, None))
            return out

        def done(result: Any, error: BaseException | None) -> None:
            self._status_reads -= 1
            if error is not None:
                on_result(None)
                self._settle()
                return
            reports = []
            for cid, order in result:
                update = self._take_order(order) if order is not None else None
                reports.append(proto.OrderStatusReport(client_order_id=cid, known=update is not None, order=update))
            on_result(proto.OrderStatusReports(session=self.session_id, reports=reports))
            self._settle()

        self._status_reads += 1
        self._snapshotting = True  # see _settle
        self._call(read(), done)

    def _settle(self) -> None:
        """A reconciliation has its verdict (its mass status answered, and the orders in doubt it
        asked about then): polling resumes and the trades held meanwhile are numbered. Before that,
        a fill numbered after the mass status's fill_seq would make the run stale."""
        if self._status_reads == 0:
            self._snapshotting = False
            self._fills.release()

    def instruments(self, on_result: Callable[[InstrumentList | None], None]) -> None:
        if not self._markets:
            on_result(None)
            return
        on_result(InstrumentList(venue=self._cfg.exchange, instruments=[
            translate.instrument(market, ours, self._tick_size_mode) for ours, market in self._markets.items()]))

    def get_stats(self) -> dict[str, Any]:
        """The link's figures: HTTP answers and the streams' messages received; failed polls, and
        what the streams dropped or lost, dropped; errors and reconnections of both."""
        streams = self._streams.stats() if self._streams is not None else {}
        return {
            "connected": self.is_connected_check(),
            "latency_ms": round(self._session.latency_ms if self._session else 0.0, 3),
            "messages_received": (self._session.requests if self._session else 0) + streams.get("messages", 0),
            "messages_dropped": self.failed_polls + streams.get("dropped", 0) + self._fills.dropped,
            "error_count": self.errors + streams.get("errors", 0),
            "reconnects": self.reconnects + streams.get("reconnects", 0),
        }

    def close(self) -> None:
        if self._streams is not None:
            self._streams.stop()
        if self._session is not None:
            self._session.close()
