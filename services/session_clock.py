"""The session clock: the one time every timer of the session reads.

Live, it is the wall clock. In a replay it is the data's own time: the latest market-data timestamp
seen (quotes carry the recorded time, ``services/venue_sim``), so detector windows, the stale-feed
age between symbols, the degradation window, auto-recover and the market schedule measure market
time, and the same file replayed at 60x or 6,000x gives the same events at the same market times.

A data clock stands still when no data comes (it never guesses ahead of the data: a guess would
depend on the replay speed). What only wall time can see (a whole feed gone silent, a process that
does not answer) is measured on the wall clock by whoever watches for it; ``wall_idle_s`` says
how long this clock has not moved.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

ClockMode = Literal["wall", "data"]


class SessionClock:
    def __init__(self, mode: ClockMode, *, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.mode = mode
        self._wall = wall
        self._monotonic = monotonic
        self._data_s: float | None = None
        self._moved_at = monotonic()

    @property
    def replaying(self) -> bool:
        return self.mode == "data"

    @property
    def started(self) -> bool:
        """Whether the clock tells a time: always live; in a replay once data has been seen."""
        return self.mode == "wall" or self._data_s is not None

    def observe(self, ts_ns: int) -> None:
        """A market-data timestamp seen (ns since the epoch). The data clock only moves forward:
        an update stamped earlier than one already seen (another symbol's slower stream) does not
        turn it back."""
        if self.mode != "data" or ts_ns <= 0:
            return
        ts = ts_ns / 1e9
        if self._data_s is None or ts > self._data_s:
            self._data_s = ts
            self._moved_at = self._monotonic()

    def now(self) -> float:
        """Session time in seconds since the epoch. A replay's clock before its first data reads 0.0
        (no market time yet: every window is empty, the schedule reads 1970)."""
        if self.mode == "wall":
            return self._wall()
        return self._data_s if self._data_s is not None else 0.0

    def now_ns(self) -> int:
        return int(self.now() * 1e9)

    def wall_idle_s(self) -> float:
        """Wall seconds since the clock last moved (live: always 0)."""
        return 0.0 if self.mode == "wall" else self._monotonic() - self._moved_at
