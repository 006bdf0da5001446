"""Exponential backoff: the one policy for "not yet, try again later" (reconnects, retries, waits).

A waiter that asks again at once spins (the failsafe's verify step once reconciled ~120 times a
second against a slow venue); one that waits a fixed long time reacts late. Doubling from a short
first delay to a cap gives both: quick while the answer is about to come, cheap when it is not.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial_s: float, maximum_s: float, *, factor: float = 2.0, jitter: float = 0.0,
                 rng: random.Random | None = None) -> None:
        if not 0 < initial_s <= maximum_s:
            raise ValueError(f"backoff needs 0 < initial ({initial_s}) <= maximum ({maximum_s})")
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self._factor = factor
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._next = initial_s
        self.attempts = 0

    def next(self) -> float:
        """The delay before the next attempt; each call doubles the one after it, up to the cap.
        With jitter j, the delay is spread by ±j so that many waiters do not retry in step."""
        delay = self._next
        self._next = min(self.maximum_s, self._next * self._factor)
        self.attempts += 1
        if self._jitter:
            delay *= 1 + self._jitter * self._rng.uniform(-1, 1)
        return delay

    def reset(self) -> None:
        self._next = self.initial_s
        self.attempts = 0
