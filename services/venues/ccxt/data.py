"""The data router's feed from a venue reached through ccxt (``data_router.feed = "ccxt"``, the
venue of the exchange manager's connector ``data_router.feed_connector``).

It polls the venue's best bid and ask (``fetch_bids_asks``, one call for every routed symbol; per
symbol ``fetch_order_book`` where the venue lacks it) every ``poll_interval_s``, and hands on a
``Quote`` when the touch moved: a repeated snapshot is not news, and repeating it would hide a
venue whose prices froze from the stale-feed check.
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
from services.venues.settings import CcxtConnectorSettings

log = logging.getLogger(__name__)


class CcxtDataClient:
    def __init__(self, cfg: CcxtConnectorSettings, reactor: Reactor, symbols: list[str], on_update: OnUpdate) -> None:
        self.name = f"ccxt:{cfg.exchange}"
        self._cfg = cfg
        self.symbols = set(symbols)
        self._on_update = on_update
        self._session = CcxtSession(cfg, credentials.Credentials("", ""), reactor)  # public data: no key
        self._unified: dict[str, str] = {}
        self._touch: dict[str, tuple[float, float]] = {}
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
        log.info("feed %s: %d market(s): %s", self.name, len(self._unified), ", ".join(sorted(self._unified)))

    def _poll(self) -> None:
        if self._busy or not self._unified:
            return
        routed = {ours: unified for ours, unified in self._unified.items() if not self.symbols or ours in self.symbols}
        if not routed:
            return
        self._busy = True
        self._session.run(self._touches(list(routed.values())), self._on_touches)

    async def _touches(self, unified: list[str]) -> dict[str, tuple[float, float, float, float, int | None]]:
        exchange = self._session.exchange
        out: dict[str, tuple[float, float, float, float, int | None]] = {}
        if exchange.has.get("fetchBidsAsks"):
            for symbol, t in (await exchange.fetch_bids_asks(unified)).items():
                if t.get("bid") and t.get("ask"):
                    out[symbol] = (t["bid"], t["ask"], t.get("bidVolume") or 0.0, t.get("askVolume") or 0.0,
                                   t.get("timestamp"))
            return out
        for symbol in unified:
            book = await exchange.fetch_order_book(symbol, 5)
            if book["bids"] and book["asks"]:
                out[symbol] = (book["bids"][0][0], book["asks"][0][0], book["bids"][0][1], book["asks"][0][1],
                               book.get("timestamp"))
        return out

    def _on_touches(self, result: Any, error: BaseException | None) -> None:
        self._busy = False
        self.polls += 1
        if error is not None:
            self.failed_polls += 1
            log.debug("feed %s: poll failed: %s", self.name, translate.reason(error))
            return
        ours_of = {unified: ours for ours, unified in self._unified.items()}
        now_ns = time.time_ns()
        for unified, (bid, ask, bid_size, ask_size, stamp_ms) in result.items():
            ours = ours_of.get(unified)
            if ours is None or self._touch.get(ours) == (bid, ask):
                continue
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
        return {"adapter": self.name, "polls": self.polls, "failed_polls": self.failed_polls, "quotes": self.quotes}
