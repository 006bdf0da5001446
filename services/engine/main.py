"""``python -m services.engine``: strategy decisions, only while the session allows trading.

Top to bottom: bind sockets; follow the session from the orchestrator (fail closed: no order
until it has heard the session is LIVE, and none once the orchestrator has gone quiet); load the
strategies named in the settings; for each quote from the data router ask the strategies, and send
what they decide to the exchange manager; hand fills and order updates back to them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import msgspec

import proto
from bus import NotConnected
from proto.commands import OrderArgs
from proto.summaries import EngineSummary
from services.engine.handlers import build_handlers
from services.engine.instrument_guard import InstrumentGuard
from services.engine.strategies import Intent, Strategy, build
from services.engine.strategy_sync import StrategySync
from services.latency import LatencyHistogram, percentile
from services.runtime import ServiceRuntime, configure_logging, load_settings_or_exit
from services.session_follower import SessionFollower
from services.settings import Settings

log = logging.getLogger("engine")


class Engine:
    def __init__(self, settings: Settings) -> None:
        cfg = self.cfg = settings.engine
        self.runtime = ServiceRuntime("engine", settings, stats=self.stats,
                                      state=lambda: self.session.state,
                                      trading_enabled=lambda: self.session.trading_allowed())
        self.session = SessionFollower(self.runtime, cfg.deadman_timeout_s, halt_on_critical=True)
        self._degraded_mode = settings.orchestrator.health.degraded_mode
        self.strategies: dict[str, Strategy] = {s.name: build(s) for s in cfg.strategies}
        self._by_symbol: dict[str, list[Strategy]] = {}
        for strategy in self.strategies.values():
            self._by_symbol.setdefault(strategy.symbol, []).append(strategy)
        self.strategy_errors: dict[str, int] = {name: 0 for name in self.strategies}
        self.switched_off: set[str] = set()
        self.decisions_made = 0  # in this session (the orchestrator's, as the follower heard it)
        self.session_id: str | None = None
        self.session.on_session(self._new_session)
        self.suppressed = 0
        self.orders_refused = 0
        self.order_timeouts = 0
        self._latency_ns: deque[int] = deque(maxlen=1024)
        self.decision_latency = LatencyHistogram()
        self.orders = self.runtime.channel("exchange_manager", timeout_s=cfg.order_timeout_s)
        # The quotes read at one wake-up, latest of each symbol (``conflate_quotes``).
        self._waiting: dict[str, proto.Quote] = {}
        self.quotes_conflated = 0
        self.runtime.subscribe(["data_router"], [proto.topics.market_data(s) for s in self._by_symbol],
                               self._on_market_data, after_read=self._decide_waiting)
        self.sync = StrategySync(self.runtime, self.orders, self.strategies, self._on_execution, self._tell)
        # The engine's own check of every order against its instrument (asked at every resync).
        self.instruments = InstrumentGuard(self.runtime.reactor, self.orders,
                                           settings.exchange_manager.risk.price_collar_pct)
        self.sync.on_resync.append(self.instruments.refresh)
        self.runtime.add_handlers(build_handlers(self.session))

    # -- decisions -------------------------------------------------------------------------------

    def _on_market_data(self, _topic: str, env: proto.Envelope) -> None:
        quote = env.body
        if not isinstance(quote, proto.Quote):
            return
        if not self.cfg.conflate_quotes:
            self._decide(quote)
            return
        if self._waiting.pop(quote.symbol, None) is not None:
            self.quotes_conflated += 1
        self._waiting[quote.symbol] = quote  # last in line: the symbols are decided in arrival order

    def _decide_waiting(self) -> None:
        waiting, self._waiting = self._waiting, {}
        for quote in waiting.values():
            self._decide(quote)

    def _decide(self, quote: proto.Quote) -> None:
        now = time.monotonic()
        # no decision on a book the strategies may not know (start, loss, trading resuming)
        synced = self.sync.ready(self.session.openings)
        for strategy in self._by_symbol.get(quote.symbol, ()):
            if strategy.name in self.switched_off:
                continue
            t0 = time.perf_counter_ns()
            try:
                intents = strategy.on_quote(quote, now)
            except Exception:
                self._strategy_failed(strategy)
                continue
            took = time.perf_counter_ns() - t0
            self._latency_ns.append(took)
            self.decision_latency.observe_ns(took)
            if not intents:
                continue
            if not synced:
                self.suppressed += len(intents)
                for intent in intents:
                    self._tell(strategy, "on_refused", intent, "waiting for the book of record (resync)")
                continue
            if not self.session.trading_allowed():
                self.suppressed += len(intents)
                for intent in intents:
                    self._tell(strategy, "on_refused", intent, "trading is not enabled")
                continue
            mid = (quote.bid + quote.ask) / 2
            for intent in intents:
                wire: Intent = intent
                if isinstance(intent, OrderArgs):
                    intent = msgspec.structs.replace(intent, origin_ts_ns=quote.ts_ns)
                    checked, problem = self.instruments.prepare(intent, mid)
                    if checked is None:
                        self._tell(strategy, "on_refused", intent, problem)
                        continue
                    wire = checked
                if self._restricted(strategy, wire):
                    self.suppressed += 1
                    self._tell(strategy, "on_refused", intent, f"session is degraded ({self._degraded_mode})")
                else:
                    self._send(strategy, intent, wire)

    def _restricted(self, strategy: Strategy, intent: Intent) -> bool:
        """While DEGRADED, only what reduces the strategy's position goes out (the gate checks the
        account's position again); cancels always go. Saves the gate refusing at quote rate."""
        if self.session.state != proto.OrchestratorState.DEGRADED or self._degraded_mode == "continue":
            return False
        if not isinstance(intent, OrderArgs):
            return False
        if self._degraded_mode == "halt":
            return True
        return not (strategy.position * intent.side.sign < 0 and intent.qty <= abs(strategy.position) + 1e-12)

    def _send(self, strategy: Strategy, intent: Intent, wire: Intent) -> None:
        """Send ``wire`` (the intent on its instrument's grid); the strategy hears of ``intent``, what
        it asked for, so its own bookkeeping stays in its own terms."""
        self.decisions_made += 1
        is_order = isinstance(intent, OrderArgs)

        def on_reply(reply: proto.Reply) -> None:
            if not reply.ok:
                self.orders_refused += 1
                self._tell(strategy, "on_refused", intent, reply.error)
            elif is_order:
                self._tell(strategy, "on_accepted", intent, reply.result["client_order_id"])

        def on_timeout(_command_id: str) -> None:
            self.order_timeouts += 1
            self._tell(strategy, "on_refused", intent, "no answer from the exchange manager")

        name = "submit_order" if is_order else "cancel_order"
        try:
            self.orders.send(name, wire, on_reply, on_timeout)
        except NotConnected:
            on_timeout("")

    def _on_execution(self, _topic: str, env: proto.Envelope) -> None:
        body = env.body
        if isinstance(body, (proto.Fill, proto.OrderUpdate)):
            strategy = self.strategies.get(body.strategy)
            if strategy is not None and strategy.name not in self.switched_off:
                self._tell(strategy, "on_fill" if isinstance(body, proto.Fill) else "on_order_update", body)

    def _tell(self, strategy: Strategy, method: str, *args: Any) -> None:
        try:
            getattr(strategy, method)(*args)
        except Exception:
            self._strategy_failed(strategy)

    def _strategy_failed(self, strategy: Strategy) -> None:
        """A strategy's exception is counted and isolated; too many and it is switched off."""
        self.strategy_errors[strategy.name] += 1
        log.exception("strategy %s failed", strategy.name)
        if self.strategy_errors[strategy.name] >= self.cfg.max_strategy_errors:
            self.switched_off.add(strategy.name)
            log.error("strategy %s switched off after %d errors", strategy.name, self.strategy_errors[strategy.name])

    def _new_session(self, session_id: str) -> None:
        """The session's counters start again from zero (an engine started in the middle of a
        session counts from its start: the orchestrator adds what earlier engines counted)."""
        if self.session_id is not None:
            log.info("session %s: decisions start from zero (session %s made %d)", session_id, self.session_id,
                     self.decisions_made)
            self.decisions_made = 0
        self.session_id = session_id

    # -- reporting -------------------------------------------------------------------------------

    def latency_ms(self, q: float) -> float:
        return percentile(self._latency_ns, q * 100) / 1e6 if self._latency_ns else 0.0

    def stats(self) -> EngineSummary:
        return EngineSummary(
            **self.session.summary(),
            session_id=self.session_id,
            decisions_made=self.decisions_made,
            latency_p50_ms=round(self.latency_ms(0.50), 4),
            latency_p99_ms=round(self.latency_ms(0.99), 4),
            decision_latency=self.decision_latency.snapshot(),
            error_count=sum(self.strategy_errors.values()) + self.order_timeouts,
            orders_refused=self.orders_refused,
            suppressed=self.suppressed,
            quotes_conflated=self.quotes_conflated,
            book_sync=self.sync.stats(),
            instruments=self.instruments.stats(),
            strategies={name: {"symbol": s.symbol, "position": s.position,
                               "errors": self.strategy_errors[name], "on": name not in self.switched_off}
                        for name, s in self.strategies.items()},
        )

    def run(self) -> None:
        self.runtime.run()


def main() -> None:
    settings = load_settings_or_exit("engine")
    configure_logging(settings.logs)
    Engine(settings).run()
