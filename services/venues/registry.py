"""The venue adapters the settings may choose, by kind: the exchange manager's connectors
(``[[exchange_manager.connectors]]``, ``kind``) and the data router's feed (``data_router.feed``).
ccxt's adapter is imported only when chosen: a process on the simulator pays nothing for it."""

from __future__ import annotations

from services.runtime import ServiceRuntime, exit_bad_settings
from services.settings import Settings
from services.venues.base import DataClient, ExecutionClient, ExecutionEvents, OnUpdate
from services.venues.settings import CcxtConnectorSettings, ConnectorSettings
from services.venues.venue_sim.data import VenueSimDataClient
from services.venues.venue_sim.execution import VenueSimExecutionClient


def execution_client(cfg: ConnectorSettings, runtime: ServiceRuntime, events: ExecutionEvents) -> ExecutionClient:
    """The connector ``cfg`` describes."""
    if isinstance(cfg, CcxtConnectorSettings):
        from services.venues.ccxt.credentials import CredentialsError
        from services.venues.ccxt.execution import CcxtExecutionClient

        try:
            return CcxtExecutionClient(cfg, runtime, events)
        except CredentialsError as exc:
            exit_bad_settings("exchange_manager", [f"exchange_manager.connectors[{cfg.name}]: {exc}"])
    return VenueSimExecutionClient(cfg, runtime, events)


def data_client(settings: Settings, runtime: ServiceRuntime, on_update: OnUpdate) -> DataClient:
    """The feed ``settings.data_router`` names."""
    cfg = settings.data_router
    if cfg.feed == "ccxt":
        from services.venues.ccxt.data import CcxtDataClient

        connector = settings.ccxt_connector(cfg.feed_connector)
        return CcxtDataClient(connector, runtime.reactor, cfg.symbols, on_update)
    return VenueSimDataClient(runtime, cfg.feed_venue, cfg.symbols, on_update)
