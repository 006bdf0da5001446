"""Safety settings (section ``[safety]``, env ``TRADING_SAFETY__<FIELD>``).

Every detector has its thresholds here; a breach of a ``*_critical_*`` threshold is a critical
event (the orchestrator goes to FAILSAFE), any other breach a warning (DEGRADED). Every duration
is session time (``services/session_clock.py``: wall time live, the data's own time in a replay)
unless its comment says wall. The rules and how the defaults were calibrated: ``docs/safety.md``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.setting_fields import SymbolField

# Settings that no longer mean anything, with what replaced them: refused with that sentence
# rather than as an unknown key, so a configuration written for the old rule says how to move on.
REMOVED: dict[str, str] = {
    "price_jump_pct": "the warning threshold now scales with each symbol's one-minute volatility: "
                      "price_jump_k (x sigma), clamped between price_jump_floor_pct and price_jump_cap_pct",
    "price_jump_pct_by_symbol": "use price_jump_cap_pct_by_symbol (the most a symbol's warning threshold can be)",
    "rolling_window_s": "the move is measured over one minute of session time; the volatility window is "
                        "price_jump_vol_window_s",
}


class SafetySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # One incident is one event: the same detector, event type and symbol stay quiet this long.
    cooldown_s: float = Field(default=30.0, ge=0)
    # A critical event is held back only this long: a second critical incident must not wait
    # out the warning cool-down.
    critical_cooldown_s: float = Field(default=1.0, ge=0)

    # price jump: the mid's move over one minute (versus the mid one minute earlier) is a warning
    # at price_jump_k standard deviations of the symbol's one-minute returns over the last
    # price_jump_vol_window_s, the threshold clamped to [price_jump_floor_pct, price_jump_cap_pct];
    # with fewer than price_jump_min_samples returns in the window (warm-up) it is the cap.
    price_jump_k: float = Field(default=10.0, gt=0)
    price_jump_floor_pct: float = Field(default=0.5, gt=0)
    price_jump_cap_pct: float = Field(default=2.5, gt=0)
    price_jump_cap_pct_by_symbol: dict[SymbolField, float] = Field(default_factory=dict)
    price_jump_vol_window_s: float = Field(default=4 * 3600.0, ge=60)
    price_jump_min_samples: int = Field(default=30, ge=1)
    # A move of this much (percent, any symbol) is critical: FAILSAFE.
    price_jump_critical_pct: float = Field(default=15.0, gt=0)
    # A price jump counts as holding (recovery refused) this long after it was last seen.
    price_jump_hold_s: float = Field(default=120.0, ge=0)

    # stale feed: a symbol with no update for max(stale_feed_s, stale_cadence_factor x the longest
    # of its last 128 update intervals) of session time while the session is trading (seen only
    # once: stale_unknown_cadence_s); the whole feed silent that long on the wall clock (the
    # intervals between any two updates, in wall seconds).
    stale_feed_s: float = Field(default=5.0, gt=0)
    stale_cadence_factor: float = Field(default=2.0, ge=1)
    stale_unknown_cadence_s: float = Field(default=60.0, gt=0)

    # execution: reject ratio over a window (once enough orders); a market order's fill versus the
    # touch when it was sent; a fill worse than its own limit price, a fill of an order the book of
    # record did not send, an overfill; an order-rate spike; the exchange manager's positions
    # versus the sum of its fills.
    reject_ratio: float = Field(default=0.5, gt=0, le=1)
    reject_window_s: float = Field(default=30.0, gt=0)
    reject_min_orders: int = Field(default=10, ge=1)
    fill_far_bps: float = Field(default=50.0, gt=0)
    order_rate_per_s: float = Field(default=50.0, gt=0)
    position_tolerance: float = Field(default=1e-6, ge=0)
    # Any other one-shot anomaly (a fill against its order, an overfill, an order-rate spike, a locked
    # or refused book) counts as holding this long after it was last seen.
    anomaly_hold_s: float = Field(default=60.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            gone = [f"{key} was removed: {REMOVED[key]} (docs/safety.md)" for key in REMOVED if key in data]
            if gone:
                raise ValueError("; ".join(gone))
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "SafetySettings":
        problems = []
        if self.price_jump_floor_pct > self.price_jump_cap_pct:
            problems.append(f"price_jump_floor_pct={self.price_jump_floor_pct:g} is above "
                            f"price_jump_cap_pct={self.price_jump_cap_pct:g}")
        caps = {"price_jump_cap_pct": self.price_jump_cap_pct} | {
            f"price_jump_cap_pct_by_symbol[{s}]": v for s, v in self.price_jump_cap_pct_by_symbol.items()}
        for name, cap in caps.items():
            if self.price_jump_critical_pct < cap:
                problems.append(f"price_jump_critical_pct={self.price_jump_critical_pct:g} must be at least "
                                f"{name}={cap:g}: a jump must be a warning before it is critical")
            if cap <= 0:
                problems.append(f"{name}={cap:g} must be above 0")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def cap_pct(self, symbol: str) -> float:
        return self.price_jump_cap_pct_by_symbol.get(symbol, self.price_jump_cap_pct)
