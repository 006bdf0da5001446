"""The venue simulator's data client: its market-data topics (``md.<symbol>`` on its PUB)."""

from __future__ import annotations

import proto
from bus import Subscriber
from services.runtime import ServiceRuntime
from services.venues.base import OnUpdate


class VenueSimDataClient:
    """The venue's own market-data socket (``md.<symbol>`` topics on its PUB)."""

    def __init__(self, runtime: ServiceRuntime, venue: str, symbols: list[str], on_update: OnUpdate) -> None:
        self.name = f"venue:{venue}"
        self.symbols = set(symbols)
        self._on_update = on_update
        prefixes = [proto.topics.market_data(s) for s in symbols] or [proto.topics.MARKET_DATA_PREFIX]
        self._sub: Subscriber = runtime.subscribe([venue], prefixes, self._on_message)
        self.ignored = 0

    def _on_message(self, _topic: str, env: proto.Envelope) -> None:
        body = env.body
        if isinstance(body, (proto.Quote, proto.Trade)):
            self._on_update(body)
        else:
            self.ignored += 1

    def subscribe(self, symbols: list[str]) -> None:
        for symbol in symbols:
            self._sub.subscribe(proto.topics.market_data(symbol))
            self.symbols.add(symbol)

    def unsubscribe(self, symbols: list[str]) -> None:
        for symbol in symbols:
            self._sub.unsubscribe(proto.topics.market_data(symbol))
            self.symbols.discard(symbol)

    def stats(self) -> dict[str, object]:
        return {"adapter": self.name, **self._sub.stats()}
