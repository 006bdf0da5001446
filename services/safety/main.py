"""``python -m services.safety``: anomaly detectors over market data, orders and fills.

Top to bottom: bind sockets; follow the session (stale-feed checks only matter while trading);
subscribe to the data router (quotes, refused data) and the exchange manager (orders, fills, its
heartbeat for positions); run every update through the detectors; publish each new incident as
one ``SafetyEvent`` on ``safety``. The orchestrator decides what to do about it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import proto
from services.runtime import ServiceRuntime, configure_logging, load_settings_or_exit
from services.safety.detectors import CrossedBook, Dedup, ExecutionAnomalies, PriceJump, StaleFeed
from services.safety.handlers import build_handlers
from services.session_follower import TRADING_STATES, SessionFollower
from services.settings import Settings

log = logging.getLogger("safety")


class Safety:
    def __init__(self, settings: Settings) -> None:
        cfg = settings.safety
        self.runtime = ServiceRuntime("safety", settings, stats=self.stats,
                                      state=lambda: self.session.state)
        # Safety never trades; it follows the session only to know when a quiet feed matters.
        self.session = SessionFollower(self.runtime, deadman_timeout_s=settings.exchange_manager.deadman_timeout_s)
        self.price_jump = PriceJump(cfg)
        self.stale = StaleFeed(cfg, time.monotonic())
        self.crossed = CrossedBook()
        self.execution = ExecutionAnomalies(cfg)
        self.dedup = Dedup(cfg.cooldown_s, cfg.critical_cooldown_s)
        self.counts: dict[str, int] = {d: 0 for d in ("price_jump", "stale_feed", "crossed_book", "execution",
                                                      "sequence_gap")}
        self._positions_adopted = False
        self._last_fill = 0.0
        self._lost_seen = 0
        self.runtime.subscribe(["data_router"], [proto.topics.MARKET_DATA_PREFIX, proto.topics.BAD_MARKET_DATA],
                               self._on_market_data)
        self._em_epoch: int | None = None
        self._em = self.runtime.subscribe(
            ["exchange_manager"], [proto.topics.ORDERS, proto.topics.FILLS, proto.topics.GOVERNANCE,
                                   proto.topics.heartbeat("exchange_manager")], self._on_execution)
        self.runtime.reactor.call_every(0.25, self._periodic)
        self.runtime.add_handlers(build_handlers(self))

    # -- inputs ----------------------------------------------------------------------------------

    def _on_market_data(self, _topic: str, env: proto.Envelope) -> None:
        now = time.monotonic()
        body = env.body
        if isinstance(body, proto.Quote):
            self.stale.on_update(body.symbol, now)
            self.execution.on_quote(body)
            self._raise("price_jump", self.price_jump.on_quote(body, now), now)
            self._raise("crossed_book", self.crossed.on_quote(body), now)
        elif isinstance(body, proto.Trade):
            self.stale.on_update(body.symbol, now)
        elif isinstance(body, proto.BadMarketData):
            self._raise("crossed_book", self.crossed.on_bad_data(body), now)

    def _on_execution(self, _topic: str, env: proto.Envelope) -> None:
        now = time.monotonic()
        body = env.body
        if isinstance(body, proto.OrderUpdate):
            self._raise("execution", self.execution.on_order(body, now), now)
        elif isinstance(body, proto.Fill):
            self._last_fill = now
            self._raise("execution", self.execution.on_fill(body), now)
        elif isinstance(body, proto.GovernanceEvent) and body.kind == "reconciliation":
            # The exchange manager corrected its book from the venue (a position it took as the truth
            # is an execution anomaly it publishes itself): start the fill sum afresh from its positions.
            self._positions_adopted = False
        elif isinstance(body, proto.Heartbeat):
            positions = body.stats.get("positions", {})
            if env.epoch != self._em_epoch:
                # A restarted exchange manager: its positions come from its journal and the venue,
                # not from fills we saw; start the comparison afresh (it reconciles on its own).
                self._em_epoch = env.epoch
                self._positions_adopted = False
            if not self._positions_adopted:
                # Clone pattern: start from the exchange manager's state, then follow its fills.
                self.execution.adopt_positions(positions)
                self._positions_adopted = True
            else:
                self._raise("execution", self.execution.check_positions(positions, now - self._last_fill > 1.0), now)

    def _periodic(self) -> None:
        now = time.monotonic()
        self._raise("stale_feed", self.stale.check(now, self.session.state in TRADING_STATES), now)
        peer = self._em.peers.get("exchange_manager")
        # Order and fill streams only: a heartbeat missed across a restart is not an execution gap.
        lost = sum(peer.lost_by_topic.get(t, 0) for t in (proto.topics.ORDERS, proto.topics.FILLS)) if peer else 0
        if lost > self._lost_seen:
            self._raise("sequence_gap", [proto.SafetyEvent(
                event_type=proto.SafetyEventType.SEQUENCE_GAP, severity=proto.Severity.WARNING, symbol="*",
                message=f"{lost - self._lost_seen} message(s) lost on the exchange manager's order/fill streams",
                evidence={"lost": float(lost - self._lost_seen)})], now)
            self._lost_seen = lost

    # -- output ----------------------------------------------------------------------------------

    def _raise(self, detector: str, events: list[proto.SafetyEvent], now: float) -> None:
        for ev in events:
            if not self.dedup.admit(detector, ev, now):
                continue
            self.counts[detector] += 1
            log.warning("%s %s %s: %s", ev.severity.value.upper(), ev.event_type.value, ev.symbol, ev.message)
            self.runtime.publisher.publish(proto.topics.SAFETY, ev)

    def reset(self) -> None:
        """Forget every incident and window: the next anomaly is reported afresh."""
        for detector in (self.price_jump, self.crossed, self.execution, self.dedup):
            detector.reset()
        self.stale.reset(time.monotonic())
        self._positions_adopted = False
        log.info("safety reset")

    def stats(self) -> dict[str, Any]:
        return {**self.session.summary(), "events": dict(self.counts), "suppressed": self.dedup.suppressed}

    def run(self) -> None:
        self.runtime.run()


def main() -> None:
    settings = load_settings_or_exit("safety")
    configure_logging(settings.logs)
    Safety(settings).run()
