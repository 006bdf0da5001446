"""``python -m services.venue_sim``: a stand-in for an exchange, on its own sockets.

It publishes market data (``md.<symbol>``) and execution reports (``orders``, ``fills``) on its PUB
socket and takes orders on its command socket, like a venue's market-data and order-entry
sessions. It is a separate supervisord program outside the ``trading`` group, so it outlives
restarts of our services and reconnection and reconciliation are exercised for real.

Top to bottom: read the price source (a replay's files in full, before anything is bound); bind
sockets; the matcher; serve orders, queries and faults; on every tick publish what the source has
due and the executions it causes.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import proto
from proto.commands import FaultArgs, NewOrderArgs
from proto.summaries import VenueSummary
from services.latency import TICK_TO_ORDER_PERCENTILES, percentile
from services.runtime import ServiceRuntime, configure_logging, exit_bad_settings, load_settings_or_exit
from services.settings import Settings
from services.venue_sim.handlers import build_handlers
from services.venue_sim.instruments import venue_instruments
from services.venue_sim.matching import NATIVE, Event, Matcher
from services.venue_sim.prices import PriceSource, make_source
from services.venue_sim.replay import ReplayFileError

if TYPE_CHECKING:
    from services.venue_sim.exchange_api.binance import BinanceSpot
    from services.venue_sim.exchange_api.server import ExchangeApiServer

log = logging.getLogger("venue_sim")


class Venue:
    def __init__(self, settings: Settings, source: PriceSource) -> None:
        self.settings = settings.venue_sim
        self.runtime = ServiceRuntime("venue_sim", settings, stats=self.stats,
                                      on_subscription=self._on_subscription)
        self.source = source
        self.matcher = Matcher(self.settings, self.runtime.epoch,
                               venue_instruments(self.settings, self.source.reference_prices()))
        self.feed_on = True
        self.extra_latency_ms = 0.0
        self.quotes_published = 0
        # Tick-to-order: from publishing the quote that triggered an order to receiving the order.
        self.tick_to_order_ns: deque[int] = deque(maxlen=100_000)
        self.runtime.add_handlers(build_handlers(self))
        self.exchange_api, self.exchange_api_server = self._exchange_api()
        # A replay follows its file's own timing, so it ticks finely; the synthetic source ticks
        # at its quote rate (at most 1 kHz: faster rates publish several quotes per tick).
        tick = 0.005 if self.settings.source == "replay" else min(0.2, max(0.001, 1.0 / self.settings.quotes_per_s))
        self.runtime.reactor.call_every(tick, self._tick)

    def _exchange_api(self) -> tuple[BinanceSpot | None, ExchangeApiServer | None]:
        """The Binance-spot face, when enabled (``[venue_sim.exchange_api]``)."""
        cfg = self.settings.exchange_api
        if not cfg.enabled:
            return None, None
        # imported here: aiohttp costs a venue that does not serve the API nothing at start
        from services.venue_sim.exchange_api.binance import BinanceSpot
        from services.venue_sim.exchange_api.server import ExchangeApiServer

        api = BinanceSpot(self)
        server = ExchangeApiServer(cfg, api, self.runtime.reactor,
                                   latency_ms=lambda: self.settings.latency_ms + self.extra_latency_ms)
        try:
            server.start()
        except OSError as exc:
            exit_bad_settings("venue_sim", [f"venue_sim.exchange_api: cannot serve on {cfg.host}:{cfg.port}: "
                                            f"{exc.strerror or exc}"])
        return api, server

    # -- market data -----------------------------------------------------------------------------

    def _on_subscription(self, prefix: str) -> None:
        if prefix.startswith(proto.topics.MARKET_DATA_PREFIX) or proto.topics.MARKET_DATA_PREFIX.startswith(prefix):
            self.source.begin(time.monotonic())

    def _tick(self) -> None:
        publish = self.runtime.publisher.publish
        venue = self.settings.venue
        for t in self.source.due(time.monotonic()):
            if t.kind == "quote":
                events = self.matcher.on_quote(t.symbol, t.bid, t.ask)
                if self.exchange_api is not None:  # its book's update ids, and its market streams
                    self.exchange_api.on_quote(t.symbol, t.bid, t.ask, t.size, published=self.feed_on)
                if self.feed_on:
                    publish(proto.topics.market_data(t.symbol), proto.Quote(
                        symbol=t.symbol, bid=t.bid, ask=t.ask, bid_size=t.size, ask_size=t.size,
                        ts_ns=t.ts_ns or time.time_ns(), venue=venue))
                    self.quotes_published += 1
                self._publish(events)
            elif self.feed_on:
                publish(proto.topics.market_data(t.symbol), proto.Trade(
                    symbol=t.symbol, price=t.price, size=t.size, side=proto.Side(t.side),
                    ts_ns=t.ts_ns or time.time_ns(), venue=venue))

    # -- orders ----------------------------------------------------------------------------------

    def submit(self, args: NewOrderArgs) -> proto.OrderUpdate | None:
        # Only a quote stamped at publication measures tick-to-order: a replayed one carries the
        # recorded time.
        if args.origin_ts_ns and self.settings.source == "synthetic":
            self.tick_to_order_ns.append(time.time_ns() - args.origin_ts_ns)
        if self._later(lambda: self.place(args)):
            return None
        return self.place(args)

    def cancel(self, client_order_id: str) -> bool | None:
        if self._later(lambda: self.withdraw(client_order_id)):
            return None
        return self.withdraw(client_order_id)

    def cancel_all(self, symbol: str | None) -> list[str] | None:
        if self._later(lambda: self.withdraw_all(symbol)):
            return None
        return self.withdraw_all(symbol)

    # Now, whatever latency is set (a face that applies its own: the exchange API's): matched, and
    # its reports published.

    def place(self, args: NewOrderArgs, account: str = NATIVE) -> proto.OrderUpdate:
        """The order's state after matching (its last report)."""
        events = self.matcher.new_order(args, account)
        self._publish(events, account)
        return next(e for e in reversed(events) if isinstance(e, proto.OrderUpdate))

    def withdraw(self, client_order_id: str, account: str = NATIVE) -> bool:
        events = self.matcher.cancel(client_order_id, account)
        self._publish(events, account)
        return bool(events)

    def withdraw_all(self, symbol: str | None, account: str = NATIVE) -> list[str]:
        events = self.matcher.cancel_all(symbol, account)
        self._publish(events, account)
        return [e.client_order_id for e in events]

    def _later(self, action: Callable[[], None]) -> bool:
        """With a latency set, run ``action`` after it and return True. Orders and cancels all wait
        the same time, so they keep their order, as on one session with a real venue."""
        latency_ms = self.settings.latency_ms + self.extra_latency_ms
        if latency_ms <= 0:
            return False
        self.runtime.reactor.call_later(latency_ms / 1000, action)
        return True

    def _publish(self, events: list[Event], account: str | None = None) -> None:
        """Each account's reports to its own face: the native account's on the PUB, the exchange
        API's to it (``account``: whose they all are; None: each event's order says)."""
        api: list[Event] = []
        for event in events:
            if (account or self._account_of(event)) != NATIVE:
                api.append(event)
                continue
            topic = proto.topics.FILLS if isinstance(event, proto.Fill) else proto.topics.ORDERS
            self.runtime.publisher.publish(topic, event)
        if self.exchange_api is not None and api:
            self.exchange_api.on_events(api)

    def _account_of(self, event: Event) -> str:
        order = self.matcher.orders.get(event.client_order_id)
        return order.account if order is not None else NATIVE

    # -- fault injection -------------------------------------------------------------------------

    def inject(self, args: FaultArgs) -> dict[str, Any]:
        log = self.runtime.log
        log.warning("fault injected: %s", args)
        if args.fault == "drop_connection":
            # After this reply has gone out (it needs a moment to leave the socket).
            self.runtime.reactor.call_later(0.1, lambda: self.runtime.drop_connections(args.duration_s))
            if self.exchange_api_server is not None:
                self.exchange_api_server.drop(args.duration_s)
        elif args.fault == "rate_limit":
            if self.exchange_api_server is None:
                raise proto.CommandError("rate_limit needs the exchange API (venue_sim.exchange_api.enabled)")
            self.exchange_api_server.rate_limit(args.duration_s)
        elif args.fault == "stop_feed":
            self.feed_on = False
        elif args.fault == "resume_feed":
            self.feed_on = True
        elif args.fault == "latency":
            self.extra_latency_ms = args.value
        elif args.fault == "reject_all":
            self.matcher.reject_all = True
        elif args.fault == "jump_price":
            if args.symbol is None:
                raise proto.CommandError("jump_price needs a symbol")
            self.source.jump(args.symbol, args.value)
        elif args.fault == "clear":
            self.extra_latency_ms, self.matcher.reject_all, self.feed_on = 0.0, False, True
            if self.exchange_api_server is not None:
                self.exchange_api_server.rate_limited_until = 0.0
        return {"fault": args.fault}

    def tick_to_order(self) -> dict[str, float]:
        """p50/p99/p99.9 in microseconds over the last orders that carried an origin timestamp."""
        samples = sorted(self.tick_to_order_ns)
        if not samples:
            return {"count": 0}
        return {"count": len(samples), **{key: percentile(samples, q) / 1e3 for key, q in TICK_TO_ORDER_PERCENTILES}}

    def stats(self) -> VenueSummary:
        m = self.matcher
        return VenueSummary(quotes_published=self.quotes_published, feed_on=self.feed_on,
                            open_orders=len(m.open_orders(None)),
                            fills=sum(len(a.fills) for a in m.accounts.values()), rejected=m.rejected,
                            duplicate_ids=m.duplicate_ids, replay_finished=self.source.finished,
                            exchange_api=self.exchange_api_server.stats() if self.exchange_api_server else {})

    def run(self) -> None:
        try:
            self.runtime.run()
        finally:
            if self.exchange_api_server is not None:
                self.exchange_api_server.stop()


def load_source_or_exit(settings: Settings) -> PriceSource:
    """The price source, its replay files read in full before anything is bound: a file it cannot
    use stops the venue at start with one line naming it and ``EXIT_BAD_SETTINGS``; a replayed
    symbol that no strategy trades, or files a synthetic source ignores, are a warning."""
    venue = settings.venue_sim
    try:
        source = make_source(venue, time.monotonic())
    except ReplayFileError as exc:
        exit_bad_settings("venue_sim", [str(exc)])
    traded = {getattr(s, "symbol", None) for s in settings.engine.strategies}
    if venue.source == "replay":
        for i, spec in enumerate(venue.replay_files):
            if spec.symbol not in traded:
                log.warning("venue_sim.replay_files[%d] (%s): no strategy trades %s; its market data still goes "
                            "to the data router and the safety detectors", i, spec.path, spec.symbol)
    elif venue.replay_files:
        log.warning('venue_sim.replay_files ignored: source is "synthetic" (set source = "replay" to replay them)')
    return source


def main() -> None:
    settings = load_settings_or_exit("venue_sim")
    configure_logging(settings.logs)
    Venue(settings, load_source_or_exit(settings)).run()
