"""Engine settings (section ``[engine]``, env ``TRADING_ENGINE__<FIELD>``).

Strategies are a list; each entry's ``kind`` picks the strategy, e.g. in TOML:

    [[engine.strategies]]
    kind = "mean_reversion"
    symbol = "BTC-USD"
    entry_bps = 3.0
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.engine.strategies import StrategySettings as AnyStrategy
from services.engine.strategies.market_maker import MarketMakerSettings
from services.engine.strategies.mean_reversion import MeanReversionSettings

StrategySettings = Annotated[AnyStrategy, Field(discriminator="kind")]


class EngineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategies: list[StrategySettings] = Field(
        default_factory=lambda: [MeanReversionSettings(), MarketMakerSettings()])
    # Dead-man switch: with no word from the orchestrator for this long, stop trading by itself.
    deadman_timeout_s: float = Field(default=2.0, gt=0)
    # An order the exchange manager has not answered within this time is counted as an error.
    order_timeout_s: float = Field(default=1.0, gt=0)
    # A strategy that raises this many times is switched off (the others go on).
    max_strategy_errors: int = Field(default=10, ge=1)
    # When quotes arrive faster than the strategies take them, they see only the latest waiting
    # quote of each symbol (what an older one would have decided is moot); counted in the status as
    # ``quotes_conflated``. False: every quote, however late (a replay that must see each one).
    conflate_quotes: bool = True

    @model_validator(mode="after")
    def _unique_names(self) -> "EngineSettings":
        names = [s.name for s in self.strategies]
        if len(set(names)) != len(names):
            raise ValueError(f"strategy names must be unique: {names}")
        return self
