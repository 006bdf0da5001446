"""The price-jump detector: a move over one minute of session time, judged against the symbol's own
one-minute volatility. The rule, exactly (``docs/safety.md`` has the calibration):

  1. **Volatility.** Each symbol's mid is sampled at every minute boundary of session time (the mid
     of its last update before the boundary). A sample makes a one-minute return (sample / the
     previous sample - 1); a minute with no update repeats the last sample (a zero return). The
     window is the last ``price_jump_vol_window_s / 60`` returns, and sigma is their root mean
     square (the standard deviation about zero, in percent).
  2. **Move.** On each quote, the move is the mid versus the reference: the mid of the symbol's
     latest update at or before one minute earlier, or, with less than a minute of history (since
     the start or the last event), the oldest update there is. The first quote has nothing to move from.
     (Updates less than 0.1 s after the one kept before them count as one, the latest.)
  3. **Threshold.** ``price_jump_k`` x sigma, clamped to [``price_jump_floor_pct``, the cap
     (``price_jump_cap_pct``, or the symbol's own in ``price_jump_cap_pct_by_symbol``)]. While the
     window holds fewer than ``price_jump_min_samples`` returns (warm-up), the cap.
  4. **Event.** |move| >= threshold is a DATA_ANOMALY: critical at ``price_jump_critical_pct`` or
     more, a warning otherwise. The history is then cleared: the new level is the only reference
     from there on (one jump, one event), while the volatility window keeps the move.

Session time is the data's own time in a replay, so the same file gives the same events at any speed.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from proto import SafetyEvent, SafetyEventType, Severity
from services.safety.detectors import event, price_text
from services.safety.settings import SafetySettings

MINUTE_S = 60.0
# Updates closer than this to the one kept before them are kept as one (the latest): a minute of
# history is at most 600 entries per symbol, however fast the feed.
HISTORY_STEP_S = 0.1


@dataclass
class _Symbol:
    returns: deque[float]
    sum_sq: float = 0.0
    minute: int | None = None  # the minute index of the latest update
    last_mid: float = 0.0
    last_sample: float | None = None  # the mid sampled at the latest minute boundary
    history: deque[tuple[float, float]] = field(default_factory=deque)  # (time, mid) since the last event

    def add_return(self, r: float) -> None:
        if len(self.returns) == self.returns.maxlen:
            self.sum_sq -= self.returns[0] ** 2
        self.returns.append(r)
        self.sum_sq += r * r

    def sigma_pct(self) -> float:
        return math.sqrt(max(self.sum_sq, 0.0) / len(self.returns)) * 100 if self.returns else 0.0


class PriceJump:
    name = "price_jump"

    def __init__(self, cfg: SafetySettings) -> None:
        self._cfg = cfg
        self._window = max(1, round(cfg.price_jump_vol_window_s / MINUTE_S))
        self._symbols: dict[str, _Symbol] = {}

    def on_quote(self, symbol: str, bid: float, ask: float, now: float) -> list[SafetyEvent]:
        """A quote at session time ``now`` (its own time in a replay)."""
        mid = (bid + ask) / 2
        s = self._symbols.get(symbol)
        if s is None:
            s = self._symbols[symbol] = _Symbol(returns=deque(maxlen=self._window))
        self._sample(s, now)
        found = self._judge(symbol, s, mid, now)
        s.last_mid = mid
        history = s.history
        if len(history) >= 2 and now - history[-2][0] < HISTORY_STEP_S:
            history[-1] = (now, mid)  # bounded memory on a fast feed: one update per step is kept
        else:
            history.append((now, mid))
        return found

    def _sample(self, s: _Symbol, now: float) -> None:
        minute = math.floor(now / MINUTE_S)
        if s.minute is not None and minute > s.minute:
            if s.last_sample is not None:
                s.add_return(s.last_mid / s.last_sample - 1)
                for _ in range(min(minute - s.minute - 1, self._window)):
                    s.add_return(0.0)  # minutes without an update: the price did not move
            s.last_sample = s.last_mid
        if s.minute is None or minute > s.minute:
            s.minute = minute

    def _judge(self, symbol: str, s: _Symbol, mid: float, now: float) -> list[SafetyEvent]:
        history = s.history
        while len(history) >= 2 and history[1][0] <= now - MINUTE_S:
            history.popleft()  # keep the latest update at or before a minute ago, and what follows
        if not history:
            return []
        ref_time, ref = history[0]
        move = (mid / ref - 1) * 100
        threshold, sigma = self.threshold_pct(symbol)
        if abs(move) < threshold:
            return []
        critical = abs(move) >= self._cfg.price_jump_critical_pct
        evidence = {"move_pct": move, "reference": ref, "price": mid, "threshold_pct": threshold,
                    "over_s": now - ref_time, "samples": float(len(s.returns))}
        if sigma is not None:
            evidence["sigma_pct"] = sigma
        history.clear()  # the new level is the reference from now on
        return [event(SafetyEventType.DATA_ANOMALY, Severity.CRITICAL if critical else Severity.WARNING, symbol,
                      f"Price jump {abs(move):.1f}% from {price_text(ref)} to {price_text(mid)}", **evidence)]

    def threshold_pct(self, symbol: str) -> tuple[float, float | None]:
        """The symbol's warning threshold now, and the sigma it comes from (None in the warm-up)."""
        cap = self._cfg.cap_pct(symbol)
        s = self._symbols.get(symbol)
        if s is None or len(s.returns) < self._cfg.price_jump_min_samples:
            return cap, None
        sigma = s.sigma_pct()
        return min(max(self._cfg.price_jump_k * sigma, self._cfg.price_jump_floor_pct), cap), sigma
