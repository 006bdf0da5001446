"""The account's own streams for the ccxt connector: its orders (``watch_orders``) and its trades
(``watch_my_trades``), where the exchange has them (ccxt.pro's ``has``) and ``streams`` is on.

They feed the same paths polling feeds (``CcxtExecutionClient._take_order``, and the fill numbering
of ``fills.py``), so a report comes once whichever path brought it first. A streamed trade is
named here, on the ccxt thread, by its order's client order id: the adapter's own (an order it sent
or saw), else the one ccxt's order cache holds (the same message carried it, on Binance an
``executionReport``); one that cannot be named is left to polling, which asks the venue.

``live``: both streams answered since their last (re)subscription; the connector then polls orders
and trades only every ``stream_poll_interval_s``, the safety net that catches what a stream lost.
A trade a poll found first while the trade stream was live (for ``SETTLE_S``: the polls just after a
subscription still find what was traded before it) is expected on the stream too; one it has not
brought ``MISSED_AFTER_S`` later (by this process's clock, not the venue's) was lost by it:
counted as dropped, and the streams are subscribed afresh (a stream that drops messages may be
broken in a way its connection does not show).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from bus.reactor import Reactor
from services.venues.ccxt.session import CcxtSession
from services.venues.ccxt.streams import Stream
from services.venues.settings import CcxtConnectorSettings

log = logging.getLogger(__name__)

MISSED_AFTER_S = 3.0  # a trade polled while the trade stream was live, and not streamed this long after: lost
SETTLE_S = 10.0
MAX_EXPECTED = 10_000

Named = tuple[dict[str, Any], str | None]  # a trade and its client order id (None: not known here)


class AccountStreams:
    def __init__(self, cfg: CcxtConnectorSettings, session: CcxtSession, reactor: Reactor,
                 cid_of: Callable[[str], str | None], on_orders: Callable[[list[dict[str, Any]]], None],
                 on_trades: Callable[[list[Named]], None]) -> None:
        """``cid_of`` (read on the ccxt thread): the client order id of a venue order id the adapter
        knows; ``on_orders`` / ``on_trades`` (reactor): what the streams brought."""
        self._session = session
        self._cid_of = cid_of
        exchange = session.exchange
        self.orders: Stream[dict[str, Any]] | None = None
        self.trades: Stream[Named] | None = None
        self.missed = 0
        self._expected: dict[str, float] = {}  # trade id -> when a poll found it first (time.monotonic())
        if exchange.has.get("watchOrders"):
            self.orders = Stream("orders", cfg, session, reactor, lambda: exchange.watch_orders(), list, on_orders)
        if exchange.has.get("watchMyTrades"):
            self.trades = Stream("trades", cfg, session, reactor, lambda: exchange.watch_my_trades(), self._named,
                                 on_trades)
        if self.orders is None or self.trades is None:
            log.info("connector %s: %s streams %s: polling for the rest", cfg.name, cfg.exchange,
                     "orders" if self.orders else "trades" if self.trades else "neither orders nor trades")

    def start(self) -> None:
        for stream in self._streams():
            stream.start()

    def stop(self) -> None:
        for stream in self._streams():
            stream.stop()

    def _streams(self) -> list[Stream[Any]]:
        return [s for s in (self.orders, self.trades) if s is not None]

    @property
    def live(self) -> bool:
        """Both streams are there and up: polling may slow down."""
        return self.orders is not None and self.trades is not None and self.orders.live and self.trades.live

    @property
    def trades_live(self) -> bool:
        return self.trades is not None and self.trades.live

    def _named(self, trades: list[dict[str, Any]]) -> list[Named]:
        """(ccxt thread) Each trade with its order's client order id, where it can be told here."""
        cache = getattr(self._session.exchange, "orders", None)
        by_symbol = getattr(cache, "hashmap", None) or {}
        out: list[Named] = []
        for trade in trades:
            order_id = str(trade.get("order") or "")
            cid = self._cid_of(order_id) if order_id else None
            if cid is None and order_id:
                cid = (by_symbol.get(trade.get("symbol"), {}).get(order_id) or {}).get("clientOrderId") or None
            out.append((trade, cid))
        return out

    def polled(self, trade_ids: Iterable[str]) -> None:
        """Trades a poll numbered first: if the trade stream is live, it should bring them too."""
        now = time.monotonic()
        if self.trades is None or not self.trades.live or now - self.trades.live_at < SETTLE_S:
            return
        for trade_id in trade_ids:
            if len(self._expected) >= MAX_EXPECTED:
                del self._expected[next(iter(self._expected))]
            self._expected[trade_id] = now

    def streamed(self, trade_ids: Iterable[str]) -> None:
        for trade_id in trade_ids:
            self._expected.pop(trade_id, None)

    def check_missed(self) -> None:
        """The trades the stream has not brought ``MISSED_AFTER_S`` after a poll found them: lost."""
        if not self._expected:
            return
        if not self.trades_live:  # it failed meanwhile: it is subscribing afresh anyway
            self._expected.clear()
            return
        due = time.monotonic() - MISSED_AFTER_S
        lost = [trade_id for trade_id, found in self._expected.items() if found < due]
        if not lost:
            return
        for trade_id in lost:
            del self._expected[trade_id]
        self.missed += len(lost)
        log.warning("connector streams: %d trade(s) polled that the live trade stream never brought; "
                    "subscribing afresh", len(lost))
        self._session.spawn(self._session.exchange.close_ws_clients())

    def stats(self) -> dict[str, int]:
        """Sums over both streams, for the connector's figures."""
        streams = self._streams()
        return {"messages": sum(s.messages for s in streams), "dropped": sum(s.dropped for s in streams) + self.missed,
                "errors": sum(s.errors for s in streams), "reconnects": sum(s.reconnects for s in streams)}
