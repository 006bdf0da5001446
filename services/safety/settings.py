"""Safety settings (section ``[safety]``, env ``TRADING_SAFETY__<FIELD>``).

Every detector has its thresholds here; a breach of a ``*_critical_*`` threshold is a critical
event (the orchestrator goes to FAILSAFE), any other breach a warning (DEGRADED).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SafetySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # One incident is one event: the same detector and symbol stay quiet for this long.
    cooldown_s: float = Field(default=30.0, ge=0)
    # A critical event is held back only this long: a second critical incident must not wait
    # out the warning cool-down.
    critical_cooldown_s: float = Field(default=1.0, ge=0)

    # price jump: percent move of the mid versus the previous quote and versus the oldest quote
    # within the rolling window, whichever is larger.
    price_jump_pct: float = Field(default=5.0, gt=0)
    price_jump_critical_pct: float = Field(default=15.0, gt=0)
    price_jump_pct_by_symbol: dict[str, float] = Field(default_factory=dict)
    rolling_window_s: float = Field(default=5.0, gt=0)

    # stale feed: no update for a symbol for this long while the session is trading (no market
    # data at all: counted from when trading began, or from start-up into a trading session).
    stale_feed_s: float = Field(default=5.0, gt=0)

    # execution: reject ratio over a window (once enough orders), fill price versus the touch,
    # order-rate spike, position at the exchange manager versus the sum of fills.
    reject_ratio: float = Field(default=0.5, gt=0, le=1)
    reject_window_s: float = Field(default=30.0, gt=0)
    reject_min_orders: int = Field(default=10, ge=1)
    fill_far_bps: float = Field(default=50.0, gt=0)
    order_rate_per_s: float = Field(default=50.0, gt=0)
    position_tolerance: float = Field(default=1e-6, ge=0)

    @model_validator(mode="after")
    def _critical_above_warning(self) -> "SafetySettings":
        if self.price_jump_critical_pct < self.price_jump_pct:
            raise ValueError("price_jump_critical_pct must be at least price_jump_pct")
        return self
