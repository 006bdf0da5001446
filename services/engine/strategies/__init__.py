"""Strategies, loaded by their ``kind`` from the engine's settings."""

from __future__ import annotations

from services.engine.strategies.base import Intent, Strategy
from services.engine.strategies.market_maker import MarketMaker, MarketMakerSettings
from services.engine.strategies.mean_reversion import MeanReversion, MeanReversionSettings
from services.engine.strategies.probe import Probe, ProbeSettings

StrategySettings = MeanReversionSettings | MarketMakerSettings | ProbeSettings

# kind -> strategy class; the engine's settings accept exactly these kinds (services/engine/settings.py).
KINDS: dict[str, type[Strategy]] = {
    "mean_reversion": MeanReversion,
    "market_maker": MarketMaker,
    "probe": Probe,
}


def build(cfg: StrategySettings) -> Strategy:
    return KINDS[cfg.kind](cfg)  # type: ignore[call-arg]


__all__ = ["Intent", "KINDS", "MarketMaker", "MeanReversion", "Probe", "Strategy", "StrategySettings", "build"]
