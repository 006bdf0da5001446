"""``LiveTradingOrchestrator`` as the specification's user holds it: a proxy over the bus to the
running daemon's orchestrator, with the components it works with."""

from __future__ import annotations

from typing import Any

from realtime.components import DataFeedRouter, ExchangeManager, RealTimeEngineLoop, SafetyLayer
from services.orchestrator.client import RemoteOrchestrator
from services.settings import Settings, load_settings


class DaemonNotRunning(RuntimeError):
    """No orchestrator answers where the settings say it serves."""


class LiveTradingOrchestrator(RemoteOrchestrator):
    """The session's orchestrator, driven from this process (``get_state``, ``get_stats``,
    ``recover_from_degraded``, ``register_*_callback``, context manager).

    The components and the specification's settings (``health_check_interval_s``,
    ``failsafe_degradation_count``, any ``[orchestrator]`` setting) describe the daemon this
    attaches to; they do not configure it. A setting that differs from what the daemon runs under
    raises ``ValueError`` naming the TOML key, rather than being silently ignored. ``stop()``
    detaches; the session itself ends with ``tradectl close`` / ``shutdown`` or supervisord.
    """

    def __init__(self, exchange_manager: ExchangeManager | None = None, engine: RealTimeEngineLoop | None = None,
                 data_router: DataFeedRouter | None = None, safety_layer: SafetyLayer | None = None,
                 settings: Settings | None = None, **orchestrator_settings: Any) -> None:
        settings = settings or load_settings()
        _check_matches(settings, orchestrator_settings)
        super().__init__(settings)
        self.exchange_manager = exchange_manager or ExchangeManager(settings)
        self.engine = engine or RealTimeEngineLoop(settings)
        self.data_router = data_router or DataFeedRouter(settings)
        self.safety_layer = safety_layer or SafetyLayer(settings)

    def start(self) -> None:
        if not self.is_running():
            self.stop()
            raise DaemonNotRunning(f"no trading daemon answers at {self._client.endpoint}: start one with `make run` "
                                   "(or point TRADING_CONFIG at the settings of the one you run)")
        super().start()

    def stop(self) -> None:
        super().stop()
        for component in (self.exchange_manager, self.engine, self.data_router, self.safety_layer):
            component.close()


def _check_matches(settings: Settings, given: dict[str, Any]) -> None:
    orchestrator = settings.orchestrator
    for name, value in given.items():
        if name not in type(orchestrator).model_fields:
            raise TypeError(f"LiveTradingOrchestrator() got an unexpected setting {name!r}")
        running = getattr(orchestrator, name)
        if running != value:
            raise ValueError(f"{name}={value!r}, but the daemon runs with {running!r}: set [orchestrator] {name} in "
                             "its TOML settings (TRADING_CONFIG) and restart it")
