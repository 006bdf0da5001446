"""Where the simulated venue's prices come from: a synthetic random walk, or a recorded file.

Both produce top-of-book updates on demand: the venue's loop asks ``due(now)`` for whatever is due
and publishes it. ``jump`` moves a symbol's price at once (fault injection).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol

from services.venue_sim.replay import ReplayEvent, load_file
from services.venue_sim.settings import VenueSimSettings


@dataclass
class Tick:
    symbol: str
    kind: str  # "quote" | "trade"
    bid: float = 0.0
    ask: float = 0.0
    size: float = 0.0
    price: float = 0.0
    side: str = "buy"
    # The event's own time (ns since the epoch): a replay's recorded time; 0 means "now".
    ts_ns: int = 0


class PriceSource(Protocol):
    def begin(self, now: float) -> None: ...

    def due(self, now: float) -> list[Tick]: ...

    def jump(self, symbol: str, percent: float) -> None: ...

    def reference_prices(self) -> dict[str, float]:
        """Each symbol this source trades, with its first price (the instruments are derived from it)."""
        ...

    @property
    def finished(self) -> bool: ...


class SyntheticPrices:
    """Geometric Brownian motion per symbol with occasional jumps, ``quotes_per_s`` per symbol."""

    def __init__(self, settings: VenueSimSettings, start: float) -> None:
        self._rng = random.Random(settings.seed)
        self._mid = dict(settings.symbols)
        self._start_mid = dict(settings.symbols)
        self._rate = settings.quotes_per_s
        dt = 1.0 / self._rate
        self._sigma_step = settings.volatility_bps_per_sqrt_s / 1e4 * math.sqrt(dt)
        self._jump_p = settings.jump_probability_per_s * dt
        self._jump = settings.jump_bps / 1e4
        self._half_spread = settings.spread_bps / 2e4
        self._last = start
        self._carry = 0.0

    @property
    def finished(self) -> bool:
        return False

    def begin(self, now: float) -> None:
        pass  # a synthetic market runs whether or not anyone listens

    def reference_prices(self) -> dict[str, float]:
        return dict(self._start_mid)

    def due(self, now: float) -> list[Tick]:
        self._carry += (now - self._last) * self._rate
        self._last = now
        steps = int(self._carry)
        self._carry -= steps
        ticks = []
        for _ in range(min(steps, 10_000)):  # after a stall, do not flood: skip the backlog
            for symbol in self._mid:
                ticks.append(self._step(symbol))
        return ticks

    def _step(self, symbol: str) -> Tick:
        rng = self._rng
        mid = self._mid[symbol] * math.exp(self._sigma_step * rng.gauss(0.0, 1.0))
        if self._jump_p and rng.random() < self._jump_p:
            mid *= 1 + (self._jump if rng.random() < 0.5 else -self._jump)
        self._mid[symbol] = mid
        half = mid * self._half_spread
        return Tick(symbol, "quote", bid=mid - half, ask=mid + half,
                    size=float(rng.randint(1, 10)))

    def jump(self, symbol: str, percent: float) -> None:
        if symbol in self._mid:
            self._mid[symbol] *= 1 + percent / 100


class ReplayPrices:
    """Recorded events replayed at ``replay_speed`` times their recorded pace, merged across files."""

    def __init__(self, settings: VenueSimSettings, start: float) -> None:
        events: list[tuple[float, str, ReplayEvent]] = []
        for i, spec in enumerate(settings.replay_files):
            events += [(e.ts, spec.symbol, e) for e in load_file(f"venue_sim.replay_files[{i}] ({spec.symbol})",
                                                                  spec.path, spec.format, settings.spread_bps)]
        events.sort(key=lambda item: item[0])
        self._events = events
        self._speed = settings.replay_speed
        self._loop = settings.replay_loop
        self._start: float | None = None if settings.replay_wait_for_subscriber else start
        self._i = 0
        self._shift: dict[str, float] = {}  # per-symbol multiplier from jump()
        # Added to the recorded times on each loop past the first, so the data's time keeps moving
        # forward (the data router refuses an update older than the one before it).
        self._loop_offset = 0.0

    @property
    def finished(self) -> bool:
        return not self._loop and self._i >= len(self._events)

    def reference_prices(self) -> dict[str, float]:
        first: dict[str, float] = {}
        for _ts, symbol, e in self._events:
            if symbol not in first:
                first[symbol] = (e.bid + e.ask) / 2 if e.kind == "quote" else e.price
        return first  # every file has a row (load_file), so every file's symbol

    def begin(self, now: float) -> None:
        """Start the replay clock (once): the first market-data subscriber has connected."""
        if self._start is None:
            self._start = now

    def due(self, now: float) -> list[Tick]:
        if not self._events or self._start is None:
            return []
        first = self._events[0][0]
        horizon = first + (now - self._start) * self._speed
        ticks = []
        while self._i < len(self._events) and self._events[self._i][0] <= horizon:
            _ts, symbol, e = self._events[self._i]
            k = self._shift.get(symbol, 1.0)
            ticks.append(Tick(symbol, e.kind, bid=e.bid * k, ask=e.ask * k, size=e.size or 1.0,
                              price=e.price * k, side=e.side, ts_ns=int((e.ts + self._loop_offset) * 1e9)))
            self._i += 1
        if self._i >= len(self._events) and self._loop:
            self._i = 0
            self._start = now
            self._loop_offset += self._events[-1][0] - first + 1.0
        return ticks

    def jump(self, symbol: str, percent: float) -> None:
        self._shift[symbol] = self._shift.get(symbol, 1.0) * (1 + percent / 100)


def make_source(settings: VenueSimSettings, start: float) -> PriceSource:
    if settings.source == "replay":
        return ReplayPrices(settings, start)
    return SyntheticPrices(settings, start)
