"""Strategies, loaded by their ``kind`` from the engine's settings."""

from __future__ import annotations

from services.engine.strategies.base import Intent, Strategy
from services.engine.strategies.market_maker import MarketMaker, MarketMakerSettings
from services.engine.strategies.mean_reversion import MeanReversion, MeanReversionSettings

def build(cfg: MeanReversionSettings | MarketMakerSettings) -> Strategy:
    if isinstance(cfg, MeanReversionSettings):
        return MeanReversion(cfg)
    return MarketMaker(cfg)


__all__ = ["Intent", "MarketMaker", "MeanReversion", "Strategy", "build"]
