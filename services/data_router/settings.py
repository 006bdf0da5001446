"""Data router settings (section ``[data_router]``, env ``TRADING_DATA_ROUTER__<FIELD>``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.setting_fields import NameField


class DataRouterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Which adapter brings market data in (services/venues/): "venue", the venue simulator's own
    # market-data socket (of ``feed_venue``); "ccxt", the venue of the exchange manager's ccxt
    # connector named ``feed_connector``, polled through ccxt.
    feed: Literal["venue", "ccxt"] = "venue"
    feed_venue: str = "venue_sim"
    feed_connector: NameField = "sim"
    # Symbols routed at start; empty means every symbol the feed carries.
    symbols: list[str] = Field(default_factory=list)
    # Symbols routed by name at most (at start and by `subscribe`): each is a subscription the
    # venue's PUB holds for this process, which it caps (bus.subscriptions_per_peer).
    max_symbols: int = Field(default=500, ge=1)
    # An update stamped further in the future than this is refused (a clock or feed fault).
    max_future_skew_s: float = Field(default=1.0, gt=0)
    # In a replay (session clock on the data's time), the data's time is published on ``clock`` at
    # most this often (wall seconds), for the processes that do not read market data.
    clock_interval_s: float = Field(default=0.02, gt=0)
