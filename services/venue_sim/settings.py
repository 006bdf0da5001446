"""Venue simulator settings (section ``[venue_sim]``, env ``TRADING_VENUE_SIM__<FIELD>``).

The simulator stands in for the outside world: a real deployment points the exchange manager's
connectors at real venues and does not run it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ReplayFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Path
    symbol: str
    # auto: recognised from the header (bars, quotes, histdata, tardis); see services/venue_sim/replay.py
    format: Literal["auto", "bars", "quotes", "histdata", "tardis"] = "auto"


class VenueSimSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    venue: str = "SIM"
    # price source: a synthetic random walk (default) or a replay of recorded files
    source: Literal["synthetic", "replay"] = "synthetic"
    symbols: dict[str, float] = Field(default_factory=lambda: {"BTC-USD": 40_000.0, "ETH-USD": 3_000.0,
                                                               "SOL-USD": 150.0})
    quotes_per_s: float = Field(default=5.0, gt=0, le=200_000)  # per symbol
    volatility_bps_per_sqrt_s: float = Field(default=4.0, ge=0)
    jump_probability_per_s: float = Field(default=0.002, ge=0, le=1)
    jump_bps: float = Field(default=40.0, ge=0)
    spread_bps: float = Field(default=2.0, gt=0)
    seed: int | None = None

    replay_files: list[ReplayFile] = Field(default_factory=list)
    replay_speed: float = Field(default=600.0, gt=0)
    replay_loop: bool = False
    # Hold the replay until the first market-data subscriber (the data router) has connected, so
    # a one-shot replay is not half gone before anyone listens.
    replay_wait_for_subscriber: bool = True

    # matching
    slippage_bps: float = Field(default=0.5, ge=0)
    fee_bps: float = Field(default=1.0, ge=0)
    latency_ms: float = Field(default=0.0, ge=0)
    max_order_qty: float = Field(default=1_000_000.0, gt=0)
