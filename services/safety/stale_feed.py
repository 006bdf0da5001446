"""The stale-feed detector: a symbol gone silent, and the whole feed gone silent.

* **A symbol** is stale when, while the session is trading, no update of it has come for its
  threshold of session time: ``max(stale_feed_s, stale_cadence_factor x the longest of its last
  128 update intervals)``; seen only once (its cadence unknown), ``stale_unknown_cadence_s``. The
  cadence term keeps a slow or bursty symbol from looking dead between two of its own updates:
  replayed one-minute bars give a quote every 15 s, so 5 s would fire between every two quotes, and
  recorded FX ticks come a few every second and then nothing for 20 s (docs/safety.md has the
  figures). Session time is the data's time in a replay: a symbol is judged silent while other
  symbols' data moves the clock on, on every update (``SafetyMonitor.on_quote``), so the same file
  gives the same events at any speed; live, the periodic check sees the wall clock move too.
* **The whole feed** is silent when no update of any symbol has come for ``max(stale_feed_s,
  stale_cadence_factor x the longest of the last 128 wall intervals between updates)`` of wall time
  (before the first update: ``stale_feed_s`` since the session began trading). Only the wall clock
  can see it: in a replay the session clock stands still when no data comes.

A gap that spans a silence of the whole feed is an outage, not a cadence: it is not learnt (a
learnt outage doubled the threshold each time, and a third outage in a row went unseen for 10 s).

Either holds (``holding``) until the next update. A closed session has no stale feeds.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from proto import SafetyEvent, SafetyEventType, Severity
from services.safety.conditions import Condition
from services.safety.detectors import event
from services.safety.settings import SafetySettings

CADENCE_SAMPLES = 128
ALL = "*"


@dataclass
class _Cadence:
    """The latest update's time and the longest of the last ``CADENCE_SAMPLES`` intervals (a
    monotonic queue: constant time per update, whatever the window)."""

    last: float
    threshold: float
    outages: int = 0  # the whole-feed outages counted when this was last updated
    intervals: int = 0
    longest: deque[tuple[int, float]] = field(default_factory=deque)  # (interval number, length), decreasing

    def update(self, t: float, floor: float, factor: float, outages: int) -> None:
        if outages != self.outages:
            # The gap spans a silence of the whole feed: an outage, not this stream's cadence. Were
            # it learnt, each outage would double the threshold and the next one be seen later.
            self.outages, self.last = outages, max(self.last, t)
            return
        if t > self.last:
            gap, self.intervals = t - self.last, self.intervals + 1
            while self.longest and self.longest[-1][1] <= gap:
                self.longest.pop()
            self.longest.append((self.intervals, gap))
            if self.longest[0][0] <= self.intervals - CADENCE_SAMPLES:
                self.longest.popleft()
            self.threshold = max(floor, factor * self.longest[0][1])
            self.last = t


class StaleFeed:
    name = "stale_feed"

    def __init__(self, cfg: SafetySettings, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._cfg = cfg
        self._monotonic = monotonic
        self.symbols: dict[str, _Cadence] = {}
        self._stale: dict[str, float] = {}  # symbol -> session time it went stale (until it updates)
        self._next_due = float("inf")  # no other symbol can go stale before this session time
        self._feed: _Cadence | None = None  # wall time of updates of any symbol
        self._trading_since: float | None = None  # wall time the session was first seen trading
        self._feed_silent_since: float | None = None  # session time the whole feed was first seen silent
        self._outages = 0  # whole-feed silences seen: a gap across one teaches no cadence

    def on_update(self, symbol: str, t: float) -> None:
        """An update of ``symbol`` at session time ``t`` (its own time in a replay)."""
        cfg = self._cfg
        cadence = self.symbols.get(symbol)
        if cadence is None:
            cadence = self.symbols[symbol] = _Cadence(last=t, threshold=max(cfg.stale_feed_s,
                                                                            cfg.stale_unknown_cadence_s),
                                                      outages=self._outages)
        else:
            cadence.update(t, cfg.stale_feed_s, cfg.stale_cadence_factor, self._outages)
        self._stale.pop(symbol, None)
        self._feed_silent_since = None
        self._next_due = min(self._next_due, cadence.last + cadence.threshold)
        wall = self._monotonic()
        if self._feed is None:
            self._feed = _Cadence(last=wall, threshold=cfg.stale_feed_s, outages=self._outages)
        else:
            self._feed.update(wall, cfg.stale_feed_s, cfg.stale_cadence_factor, self._outages)

    def check(self, now: float, trading: bool) -> list[SafetyEvent]:
        """An event for each stale symbol at session time ``now``, and for the whole feed by the wall clock."""
        found = []
        for c in self.holding(now, trading):
            if c.symbol == ALL:
                found.append(event(SafetyEventType.STALE_FEED, Severity.WARNING, ALL, c.reason))
            else:
                cadence = self.symbols[c.symbol]
                found.append(event(SafetyEventType.STALE_FEED, Severity.WARNING, c.symbol, c.reason,
                                   age_s=now - cadence.last, threshold_s=cadence.threshold))
        return found

    def holding(self, now: float, trading: bool) -> list[Condition]:
        if not trading:
            self._trading_since = self._feed_silent_since = None
            return []
        wall = self._monotonic()
        if self._trading_since is None:
            self._trading_since = wall
        if now >= self._next_due:
            self._find_stale(now)
        found = [Condition(self.name, SafetyEventType.STALE_FEED, symbol,
                           f"Stale feed: no update for {symbol} for {now - self.symbols[symbol].last:.1f}s "
                           f"(threshold {self.symbols[symbol].threshold:.1f}s)", since)
                 for symbol, since in self._stale.items()]
        feed = self._feed
        limit = feed.threshold if feed is not None else self._cfg.stale_feed_s
        silent = wall - max(feed.last if feed is not None else self._trading_since, self._trading_since)
        if silent >= limit:
            if self._feed_silent_since is None:
                self._feed_silent_since = now
                self._outages += 1
            what = "no market data at all" if feed is None else "no update of any symbol"
            found.append(Condition(self.name, SafetyEventType.STALE_FEED, ALL,
                                   f"Stale feed: {what} for {silent:.1f}s (wall clock; threshold {limit:.1f}s)",
                                   self._feed_silent_since))
        return found

    def _find_stale(self, now: float) -> None:
        """Every symbol due by ``now`` goes stale (until its next update); a full pass only when
        one can be due, so a busy feed costs one comparison per update."""
        next_due = float("inf")
        for symbol, c in self.symbols.items():
            if symbol in self._stale:
                continue
            due = c.last + c.threshold
            if now >= due:
                self._stale[symbol] = due
            else:
                next_due = min(next_due, due)
        self._next_due = next_due
