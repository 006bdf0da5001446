"""Proxies of the services a ``LiveTradingOrchestrator`` works with: each call is a typed command
to that service's process (``proto/commands/registry.py``)."""

from __future__ import annotations

from typing import Any

import zmq

import proto
from bus import CommandClient, Endpoints, security
from proto import commands as rq
from proto.session import OPEN_ORDER_STATUSES
from services.orchestrator.client import IDENTITY
from services.settings import Settings, load_settings


class ServiceProxy:
    """One service's command API. ``settings``: the daemon's (default: read as the daemon does)."""

    service = ""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self._ctx = zmq.Context()
        self._client = CommandClient(self._ctx, Endpoints(self.settings.bus, self.settings.paths.run_dir).cmd(self.service),
                                     self.settings.bus, IDENTITY, service=self.service,
                                     security=security(self.settings.bus, self.settings.paths.keys, IDENTITY))

    def request(self, request: proto.Args) -> Any:
        """The typed result; ``bus.CommandRefused`` / ``bus.CommandTimeout`` otherwise."""
        return self._client.request(request)

    def status(self) -> proto.commands.results.ProcessStatus:
        return self.request(rq.Status())

    def close(self) -> None:
        self._client.close()
        self._ctx.term()


class ExchangeManager(ServiceProxy):
    """The exchange manager: connectors, the book of record, positions and PnL, the risk gate."""

    service = "exchange_manager"

    def get_positions(self) -> dict[str, dict[str, Any]]:
        return self.request(rq.Positions()).positions

    def get_open_orders(self) -> list[dict[str, Any]]:
        return [o for o in self.request(rq.Orders()).orders if o["status"] in OPEN_ORDER_STATUSES]

    def get_connector_status(self) -> dict[str, Any]:
        return proto.to_builtins(self.status().stats.connectors)

    def cancel_all(self, symbol: str | None = None) -> int:
        return self.request(rq.CancelAll(symbol=symbol)).venues

    def flatten(self, symbol: str | None = None) -> list[str]:
        return self.request(rq.Flatten(symbol=symbol)).orders


class RealTimeEngineLoop(ServiceProxy):
    """The engine: strategies and decisions."""

    service = "engine"

    def get_stats(self) -> dict[str, Any]:
        """``decisions_made``, ``latency_p50_ms``, ``latency_p99_ms``, ``error_count``, ...
        (``proto.summaries.EngineSummary``)."""
        return proto.to_builtins(self.status().stats)


class DataFeedRouter(ServiceProxy):
    """The data router: market data in, validated, fanned out."""

    service = "data_router"

    def subscribe(self, symbols: list[str]) -> list[str]:
        return self.request(rq.Subscribe(symbols=symbols)).subscribed

    def unsubscribe(self, symbols: list[str]) -> list[str]:
        return self.request(rq.Unsubscribe(symbols=symbols)).unsubscribed


class SafetyLayer(ServiceProxy):
    """The safety process: its detectors and what holds now."""

    service = "safety"

    def conditions(self) -> list[dict[str, Any]]:
        return self.request(rq.Conditions()).holding
