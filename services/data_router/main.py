"""``python -m services.data_router``: market data in from a feed, validated, out on ``md.<symbol>``.

Top to bottom: bind sockets, attach the feed adapter, and for every update: validate, publish it
(or publish why it was refused), and note the time per symbol (the safety layer's stale-feed
check reads it from the status and the heartbeat). In a replay it also publishes the data's time
on ``clock``: the session clock of the processes that read no market data.
"""

from __future__ import annotations

import time
from typing import Any

import proto
from proto.summaries import RouterSummary
from services.data_router.handlers import build_handlers
from services.data_router.validation import MarketData, Validator
from services.runtime import ServiceRuntime, configure_logging, load_settings_or_exit
from services.session_clock import SessionClock
from services.settings import Settings
from services.venues.base import DataClient
from services.venues.registry import data_client


class DataRouter:
    def __init__(self, settings: Settings) -> None:
        cfg = settings.data_router
        self.runtime = ServiceRuntime("data_router", settings, stats=self.stats)
        self.validator = Validator(cfg.max_future_skew_s)
        self.routed: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self.last_update: dict[str, float] = {}  # symbol -> time.time() of its last valid update
        self.max_symbols = cfg.max_symbols
        self.clock = SessionClock(settings.clock_mode())
        self._clock_told_ns = 0
        if self.clock.replaying:
            self.runtime.reactor.call_every(cfg.clock_interval_s, self._tell_clock)
        self.feed: DataClient = data_client(settings, self.runtime, self.on_update)
        self.runtime.add_handlers(build_handlers(self))

    def on_update(self, update: MarketData) -> None:
        reason = self.validator.refusal(update)
        if reason is not None:
            self.refused[reason] = self.refused.get(reason, 0) + 1
            self.runtime.publisher.publish(proto.topics.BAD_MARKET_DATA, proto.BadMarketData(
                symbol=update.symbol, reason=reason, detail=repr(update)))
            return
        self.runtime.publisher.publish(proto.topics.market_data(update.symbol), update)
        self.routed[update.symbol] = self.routed.get(update.symbol, 0) + 1
        self.last_update[update.symbol] = time.time()
        self.clock.observe(update.ts_ns)

    def _tell_clock(self) -> None:
        now_ns = self.clock.now_ns()
        if now_ns != self._clock_told_ns:
            self._clock_told_ns = now_ns
            self.runtime.publisher.publish(proto.topics.CLOCK, proto.SessionTime(ts_ns=now_ns))

    def stats(self) -> RouterSummary:
        now = time.time()
        return RouterSummary(
            clock=self.clock.mode,
            session_time=self.clock.now() if self.clock.started else None,
            routed=sum(self.routed.values()),
            refused=dict(self.refused),
            symbols={s: {"routed": n, "age_s": round(now - self.last_update[s], 3)} for s, n in self.routed.items()},
        )

    def run(self) -> None:
        self.runtime.run()


def main() -> None:
    settings = load_settings_or_exit("data_router")
    configure_logging(settings.logs)
    DataRouter(settings).run()
