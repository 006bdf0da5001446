"""The orchestrator: the authoritative session state machine, its journal and control API.

``from services.orchestrator import LiveTradingOrchestrator`` works (and ``RemoteOrchestrator``,
the same API for a running daemon from another process); the import is deferred
because the settings model (``services.settings``) imports this package's ``settings`` module.
"""

from typing import Any

__all__ = ["LiveTradingOrchestrator", "Refused", "RemoteOrchestrator"]


def __getattr__(name: str) -> Any:
    if name == "RemoteOrchestrator":
        from services.orchestrator import client

        return client.RemoteOrchestrator
    if name in __all__:
        from services.orchestrator import orchestrator

        return getattr(orchestrator, name)
    raise AttributeError(name)
