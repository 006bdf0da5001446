"""``python -m services.safety``: anomaly detectors over market data, orders and fills.

Top to bottom: bind sockets; follow the session (stale-feed checks only matter while trading); read
the session clock (``Settings.clock_mode()``: wall time live, the data's own time in a replay, moved
by each quote's and trade's ``ts_ns``); subscribe to the data router (quotes, refused data) and the
exchange manager (orders, fills, its heartbeat for positions); run every update through the
detectors (``monitor.SafetyMonitor``); publish each new incident as one ``SafetyEvent`` on
``safety``, and what still holds in the heartbeat's ``holding``. The orchestrator decides what to
do about it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import proto
from proto.summaries import Condition, ExchangeSummary, SafetySummary
from services.runtime import ServiceRuntime, configure_logging, load_settings_or_exit
from services.safety.handlers import build_handlers
from services.safety.monitor import Published, SafetyMonitor
from services.session_clock import SessionClock
from services.session_follower import TRADING_STATES, SessionFollower
from services.settings import Settings

log = logging.getLogger("safety")
# A fill within this long (wall) may not be in the exchange manager's positions yet: the position
# check is about messages in flight on the bus, so it waits on the wall clock, not the session's.
FILLS_SETTLE_S = 1.0


class Safety:
    def __init__(self, settings: Settings) -> None:
        self.runtime = ServiceRuntime("safety", settings, stats=self.stats,
                                      state=lambda: self.session.state)
        # Safety never trades; it follows the session only to know when a quiet feed matters.
        self.session = SessionFollower(self.runtime, deadman_timeout_s=settings.exchange_manager.deadman_timeout_s)
        self.monitor = SafetyMonitor(settings.safety, SessionClock(settings.clock_mode()),
                                     trading=lambda: self.session.state in TRADING_STATES)
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
        body = env.body
        if isinstance(body, proto.Quote):
            self._publish(self.monitor.on_quote(body))
        elif isinstance(body, proto.Trade):
            self._publish(self.monitor.on_trade(body))
        elif isinstance(body, proto.BadMarketData):
            self._publish(self.monitor.on_bad_data(body))

    def _on_execution(self, _topic: str, env: proto.Envelope) -> None:
        body = env.body
        if isinstance(body, proto.OrderUpdate):
            self._publish(self.monitor.on_order(body))
        elif isinstance(body, proto.Fill):
            self._last_fill = time.monotonic()
            self._publish(self.monitor.on_fill(body))
        elif isinstance(body, proto.GovernanceEvent) and body.kind == "reconciliation":
            # The exchange manager corrected its book from the venue (a position it took as the truth
            # is an execution anomaly it publishes itself): start the fill sum afresh from its positions.
            self._positions_adopted = False
        elif isinstance(body, proto.Heartbeat) and isinstance(body.stats, ExchangeSummary):
            self.monitor.execution.venue_unknown(body.stats.venue_unknown)
            positions = body.stats.positions
            if env.epoch != self._em_epoch:
                # A restarted exchange manager: its positions come from its journal and the venue,
                # not from fills we saw; start the comparison afresh (it reconciles on its own).
                self._em_epoch = env.epoch
                self._positions_adopted = False
            if not self._positions_adopted:
                # Clone pattern: start from the exchange manager's state, then follow its fills.
                self.monitor.execution.adopt_positions(positions)
                self._positions_adopted = True
            else:
                quiet = time.monotonic() - self._last_fill > FILLS_SETTLE_S
                self._publish(self.monitor.check_positions(positions, quiet))

    def _periodic(self) -> None:
        self._publish(self.monitor.check_stale())
        peer = self._em.peers.get("exchange_manager")
        # Order and fill streams only: a heartbeat missed across a restart is not an execution gap.
        lost = sum(peer.lost_by_topic.get(t, 0) for t in (proto.topics.ORDERS, proto.topics.FILLS)) if peer else 0
        if lost > self._lost_seen:
            self._publish(self.monitor.sequence_gap(lost - self._lost_seen))
            self._lost_seen = lost
            # A fill may be among the lost: the fill sum is no measure of the positions any more.
            self._positions_adopted = False

    # -- output ----------------------------------------------------------------------------------

    def _publish(self, events: list[Published]) -> None:
        for _detector, ev in events:
            log.warning("%s %s %s: %s", ev.severity.value.upper(), ev.event_type.value, ev.symbol, ev.message)
            self.runtime.publisher.publish(proto.topics.SAFETY, ev)

    def reset(self) -> None:
        """Forget every cool-down: the next anomaly is reported afresh, and what still holds is
        reported again now (a reset never hides a condition)."""
        self._publish(self.monitor.reset())
        log.info("safety reset")

    def conditions(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.monitor.holding()]

    def stats(self) -> SafetySummary:
        clock = self.monitor.clock
        return SafetySummary(**self.session.summary(), events=dict(self.monitor.counts),
                             suppressed=self.monitor.dedup.suppressed, clock=clock.mode,
                             session_time=clock.now() if clock.started else None,
                             symbols=len(self.monitor.stale.symbols),
                             holding=[Condition(**c) for c in self.conditions()])

    def run(self) -> None:
        self.runtime.run()


def main() -> None:
    settings = load_settings_or_exit("safety")
    configure_logging(settings.logs)
    Safety(settings).run()
