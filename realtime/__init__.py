"""The specification's Python API, importable as it prints it::

    from realtime import LiveTradingOrchestrator, ExchangeManager, RealTimeEngineLoop, DataFeedRouter, SafetyLayer

Each name is a proxy over the bus to the running daemon (``make run``): the objects a user holds
talk to the service processes that supervisord runs, through the same command registry and rights
as ``tradectl`` (docs/python_api.md). Settings are read as the daemon reads them (``TRADING_CONFIG``,
``TRADING_*``). With no daemon running, ``start()`` (or entering the context manager) raises
``DaemonNotRunning`` saying how to start one.
"""

from proto import OrchestratorState, SafetyEvent, SafetyEventType
from realtime.components import DataFeedRouter, ExchangeManager, RealTimeEngineLoop, SafetyLayer
from realtime.orchestrator import DaemonNotRunning, LiveTradingOrchestrator

__all__ = ["DaemonNotRunning", "DataFeedRouter", "ExchangeManager", "LiveTradingOrchestrator", "OrchestratorState",
           "RealTimeEngineLoop", "SafetyEvent", "SafetyEventType", "SafetyLayer"]
