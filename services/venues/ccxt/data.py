"""The data router's feed from a venue reached through ccxt (``data_router.feed = "ccxt"``, the
venue of the exchange manager's connector ``data_router.feed_connector``).

Where the exchange streams its touch (ccxt.pro: ``watch_bids_asks``, else ``watch_order_book_for_symbols``)
and ``streams`` is on, quotes come from that stream (``streams.py``: reconnected with backoff when
it fails, and when it brings nothing for ``stream_quiet_s``). Polling is the fallback: the best bid
and ask of every routed symbol in one call (``fetch_bids_asks``; per symbol ``fetch_order_book``
where the venue lacks it) every ``poll_interval_s``, whenever the stream is missing, down, or has
been silent for ``heartbeat_timeout_s``. Either way a ``Quote`` is handed on only when the touch
moved: a repeated snapshot is not news, and repeating it would hide a venue whose prices froze from
the stale-feed check. A quote's time is the venue's where it gives one (a book's event time), else
its arrival.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import proto
from bus.reactor import Reactor
from services.venues.base import OnUpdate
from services.venues.ccxt import credentials, translate
from services.venues.ccxt.session import CcxtSession
from services.venues.ccxt.streams import Stream
from services.venues.settings import CcxtConnectorSettings

log = logging.getLogger(__name__)

Touch = tuple[float, float, float, float, int | None]  # bid, ask, bid size, ask size, the venue's time (ms)


class CcxtDataClient:
    def __init__(self, cfg: CcxtConnectorSettings, reactor: Reactor, symbols: list[str], on_update: OnUpdate) -> None:
        self.name = f"ccxt:{cfg.exchange}"
        self._cfg = cfg
        self._reactor = reactor
        self.symbols = set(symbols)
        self._on_update = on_update
        self._session = CcxtSession(cfg, credentials.Credentials("", ""), reactor)  # public data: no key
        self._unified: dict[str, str] = {}
        self._ours: dict[str, str] = {}
        self._touch: dict[str, tuple[float, float]] = {}
        self._streamed: dict[str, tuple[float, float, float, float]] = {}  # the stream's last touches (ccxt thread)
        self._stream: Stream[tuple[str, Touch]] | None = None
        self._busy = False
        self.polls = 0
        self.failed_polls = 0
        self.quotes = 0
        self._session.run(self._session.exchange.load_markets(), self._on_markets)
        reactor.call_every(cfg.poll_interval_s, self._poll)

    def _on_markets(self, markets: dict[str, Any] | None, error: BaseException | None) -> None:
        if error is not None or not markets:
            self.failed_polls += 1
            log.warning("feed %s: loading markets failed: %s (retrying)", self.name,
                        translate.reason(error) if error else "no answer")
            self._session.run(self._session.exchange.load_markets(True), self._on_markets)
            return
        wanted = dict(self._cfg.symbols) or {f"{m['base']}-{m['quote']}": unified for unified, m in markets.items()
                                             if m.get("spot") and m.get("base") and m.get("quote")}
        self._unified = {ours: unified for ours, unified in wanted.items() if unified in markets}
        self._ours = {unified: ours for ours, unified in self._unified.items()}
        log.info("feed %s: %d market(s): %s", self.name, len(self._unified), ", ".join(sorted(self._unified)))
        self._start_stream()

    # -- the stream ------------------------------------------------------------------------------

    def _start_stream(self) -> None:
        exchange, cfg = self._session.exchange, self._cfg
        if not cfg.streams or not self._unified:
            return
        if cfg.streams_off_why() is not None:
            log.warning("feed %s: %s", self.name, cfg.streams_off_why())
            return
        symbols = list(self._unified.values())
        if exchange.has.get("watchBidsAsks"):
            watch, cache = (lambda: exchange.watch_bids_asks(symbols)), (lambda: exchange.bidsasks)
        elif exchange.has.get("watchOrderBookForSymbols"):
            watch, cache = (lambda: exchange.watch_order_book_for_symbols(symbols)), (lambda: exchange.orderbooks)
        else:
            log.info("feed %s: %s streams no touch: polling", self.name, cfg.exchange)
            return
        self._stream = Stream("quotes", cfg, self._session, self._reactor, watch, lambda _answer: self._news(cache()),
                              self._on_streamed, quiet_s=cfg.stream_quiet_s, on_quiet=exchange.close_ws_clients)
        self._stream.start()

    def _news(self, cache: dict[str, Any]) -> list[tuple[str, Touch]]:
        """(ccxt thread) The touches that moved since the stream last handed them: read from ccxt's
        cache of every watched symbol, not only the answer, which names the first symbol of a burst."""
        out = []
        for unified in self._ours:
            touch = _touch(cache.get(unified))
            if touch is not None and self._streamed.get(unified) != touch[:4]:
                self._streamed[unified] = touch[:4]
                out.append((unified, touch))
        return out

    def _on_streamed(self, touches: list[tuple[str, Touch]]) -> None:
        now_ns = time.time_ns()
        for unified, touch in touches:
            self._emit(unified, touch, now_ns)

    def _stream_answers(self) -> bool:
        """The stream is up and has brought something within heartbeat_timeout_s: no polling."""
        stream = self._stream
        return stream is not None and stream.live and time.monotonic() - stream.heard < self._cfg.heartbeat_timeout_s

    # -- polling ---------------------------------------------------------------------------------

    def _poll(self) -> None:
        if self._busy or not self._unified or self._stream_answers():
            return
        routed = {ours: unified for ours, unified in self._unified.items() if not self.symbols or ours in self.symbols}
        if not routed:
            return
        self._busy = True
        self._session.run(self._touches(list(routed.values())), self._on_touches)

    async def _touches(self, unified: list[str]) -> dict[str, Touch]:
        exchange = self._session.exchange
        out: dict[str, Touch] = {}
        if exchange.has.get("fetchBidsAsks"):
            for symbol, ticker in (await exchange.fetch_bids_asks(unified)).items():
                if (touch := _touch(ticker)) is not None:
                    out[symbol] = touch
            return out
        for symbol in unified:
            if (touch := _touch(await exchange.fetch_order_book(symbol, 5))) is not None:
                out[symbol] = touch
        return out

    def _on_touches(self, result: Any, error: BaseException | None) -> None:
        self._busy = False
        self.polls += 1
        if error is not None:
            self.failed_polls += 1
            log.debug("feed %s: poll failed: %s", self.name, translate.reason(error))
            return
        now_ns = time.time_ns()
        for unified, touch in result.items():
            self._emit(unified, touch, now_ns)

    def _emit(self, unified: str, touch: Touch, now_ns: int) -> None:
        ours = self._ours.get(unified)
        bid, ask, bid_size, ask_size, stamp_ms = touch
        if ours is None or (self.symbols and ours not in self.symbols) or self._touch.get(ours) == (bid, ask):
            return
        self._touch[ours] = (bid, ask)
        self.quotes += 1
        self._on_update(proto.Quote(symbol=ours, bid=float(bid), ask=float(ask), bid_size=float(bid_size),
                                    ask_size=float(ask_size), ts_ns=min(now_ns, int(stamp_ms) * 1_000_000)
                                    if stamp_ms else now_ns, venue=self._cfg.exchange))

    def subscribe(self, symbols: list[str]) -> None:
        self.symbols.update(symbols)

    def unsubscribe(self, symbols: list[str]) -> None:
        self.symbols.difference_update(symbols)

    def stats(self) -> dict[str, object]:
        return {"adapter": self.name, "polls": self.polls, "failed_polls": self.failed_polls, "quotes": self.quotes,
                "stream": self._stream.stats() if self._stream is not None else None}


def _touch(found: Any) -> Touch | None:
    """The touch in ccxt's ticker (``bid``/``ask``) or order book (``bids``/``asks``); None when one side is empty."""
    if not found:
        return None
    if "bids" in found:
        bids, asks = found.get("bids") or [], found.get("asks") or []
        if not bids or not asks:
            return None
        return bids[0][0], asks[0][0], bids[0][1], asks[0][1], found.get("timestamp")
    if not found.get("bid") or not found.get("ask"):
        return None
    return found["bid"], found["ask"], found.get("bidVolume") or 0.0, found.get("askVolume") or 0.0, found.get("timestamp")
