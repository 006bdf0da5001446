"""The venue adapters the settings may choose, by kind: the exchange manager's connectors
(``[[exchange_manager.connectors]]``, ``kind``) and the data router's feed (``data_router.feed``)."""

from __future__ import annotations

from services.data_router.settings import DataRouterSettings
from services.runtime import ServiceRuntime
from services.venues.base import DataClient, ExecutionClient, ExecutionEvents, OnUpdate
from services.venues.settings import ConnectorSettings
from services.venues.venue_sim.data import VenueSimDataClient
from services.venues.venue_sim.execution import VenueSimExecutionClient


def execution_client(cfg: ConnectorSettings, runtime: ServiceRuntime, events: ExecutionEvents) -> ExecutionClient:
    """The connector ``cfg`` describes."""
    if cfg.kind == "venue_sim":
        return VenueSimExecutionClient(cfg, runtime, events)
    raise ValueError(f"no execution client of kind {cfg.kind!r}")  # the settings allow no other


def data_client(cfg: DataRouterSettings, runtime: ServiceRuntime, on_update: OnUpdate) -> DataClient:
    """The feed ``cfg`` names."""
    if cfg.feed == "venue":
        return VenueSimDataClient(runtime, cfg.feed_venue, cfg.symbols, on_update)
    raise ValueError(f"no data client of kind {cfg.feed!r}")
