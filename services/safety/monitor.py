"""Every detector together, on the session clock, with no I/O: what the safety process runs on the
bus and ``tradectl safety replay`` runs over a file, the same objects in both.

Each input returns the events to publish, as ``(detector, SafetyEvent)``: stamped with the session
time of the detection (``ts_ns``) and de-duplicated (one incident, one event, the cool-down in
session time). ``holding()`` says which conditions hold now (``conditions.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import proto
from proto import SafetyEvent, SafetyEventType, Severity
from services.safety.conditions import Condition, OneShotHolds
from services.safety.detectors import CrossedBook, Dedup, event
from services.safety.execution import ExecutionAnomalies
from services.safety.price_jump import PriceJump
from services.safety.settings import SafetySettings
from services.safety.stale_feed import StaleFeed
from services.session_clock import SessionClock

DETECTORS = ("price_jump", "stale_feed", "crossed_book", "execution", "sequence_gap")
Published = tuple[str, SafetyEvent]


class SafetyMonitor:
    def __init__(self, cfg: SafetySettings, clock: SessionClock, trading: Callable[[], bool] = lambda: True,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self._trading = trading  # stale feeds are judged only while the session trades
        self.price_jump = PriceJump(cfg)
        self.stale = StaleFeed(cfg, monotonic)
        self.crossed = CrossedBook()
        self.execution = ExecutionAnomalies(cfg)
        self.dedup = Dedup(cfg.cooldown_s, cfg.critical_cooldown_s)
        self.holds = OneShotHolds()
        self.counts: dict[str, int] = dict.fromkeys(DETECTORS, 0)

    # -- market data -------------------------------------------------------------------------------

    def on_quote(self, quote: proto.Quote) -> list[Published]:
        t = self._observe(quote.ts_ns)
        self.stale.on_update(quote.symbol, t)
        self.execution.on_quote(quote)
        out = self._one_shot("price_jump", self.price_jump.on_quote(quote.symbol, quote.bid, quote.ask, t),
                             self.cfg.price_jump_hold_s)
        out += self._one_shot("crossed_book", self.crossed.on_quote(quote), self.cfg.anomaly_hold_s)
        return out + self.check_stale()

    def on_trade(self, trade: proto.Trade) -> list[Published]:
        self.stale.on_update(trade.symbol, self._observe(trade.ts_ns))
        return self.check_stale()

    def on_bad_data(self, bad: proto.BadMarketData) -> list[Published]:
        return self._one_shot("crossed_book", self.crossed.on_bad_data(bad), self.cfg.anomaly_hold_s)

    def _observe(self, ts_ns: int) -> float:
        """Move the clock; the update's own session time (its recorded time in a replay)."""
        self.clock.observe(ts_ns)
        return ts_ns / 1e9 if self.clock.replaying and ts_ns > 0 else self.clock.now()

    def check_stale(self) -> list[Published]:
        """On every update (another symbol's data moves a replay's clock) and periodically (live,
        the clock moves by itself; the whole feed's silence is on the wall clock)."""
        return self._emit("stale_feed", self.stale.check(self.clock.now(), self._trading()))

    # -- execution ---------------------------------------------------------------------------------

    def on_order(self, update: proto.OrderUpdate) -> list[Published]:
        spike, ratio = self.execution.on_order(update, self.clock.now())
        return self._one_shot("execution", spike, self.cfg.anomaly_hold_s) + self._emit("execution", ratio)

    def on_fill(self, fill: proto.Fill) -> list[Published]:
        one_shot, lasting = self.execution.on_fill(fill, self.clock.now())
        return self._one_shot("execution", one_shot, self.cfg.anomaly_hold_s) + self._emit("execution", lasting)

    def check_positions(self, positions: dict[str, float], fills_quiet: bool) -> list[Published]:
        return self._emit("execution", self.execution.check_positions(positions, fills_quiet, self.clock.now()))

    def sequence_gap(self, lost: int) -> list[Published]:
        """Lost order/fill messages: reported, not held. What they cost is made good at once (the
        fill sum starts again from the exchange manager's positions; the engine asks for its book)."""
        ev = event(SafetyEventType.SEQUENCE_GAP, Severity.WARNING, "*",
                   f"{lost} message(s) lost on the exchange manager's order/fill streams", lost=float(lost))
        return self._emit("sequence_gap", [ev])

    # -- what holds, and the operator's reset --------------------------------------------------------

    def holding(self) -> list[Condition]:
        now = self.clock.now()
        found = (self.holds.holding(now) + self.stale.holding(now, self._trading())
                 + self.execution.holding(now))
        return sorted(found, key=lambda c: (c.detector, c.event_type.value, c.symbol))

    def reset(self) -> list[Published]:
        """Forget every cool-down, so the next incident is reported afresh, and report again at once
        what still holds: a reset never hides a condition (windows, holds and clocks are kept)."""
        self.dedup.reset()
        out: list[Published] = []
        for c in self.holding():
            out += self._emit(c.detector, [event(c.event_type, Severity.WARNING, c.symbol,
                                                 f"Still holding after a safety reset: {c.reason}")])
        return out

    # -- output ------------------------------------------------------------------------------------

    def _one_shot(self, detector: str, events: list[SafetyEvent], hold_s: float) -> list[Published]:
        now = self.clock.now()
        for ev in events:
            self.holds.record(detector, ev, now, hold_s)  # a repeat the cool-down hides still holds
        return self._emit(detector, events, now)

    def _emit(self, detector: str, events: list[SafetyEvent], now: float | None = None) -> list[Published]:
        now = self.clock.now() if now is None else now
        out = []
        for ev in events:
            ev.ts_ns = int(now * 1e9)  # the same instant as the condition's ``since``
            if self.dedup.admit(detector, ev, now):
                self.counts[detector] += 1
                out.append((detector, ev))
        return out
