"""The user's callbacks on the session's events (``LiveTradingOrchestrator.register_*_callback``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import proto
from services.orchestrator.state_machine import StateCallback

log = logging.getLogger("orchestrator")


@dataclass
class Callbacks:
    """The user's callbacks (``register_*_callback``), called on the loop thread; one that raises
    is logged and the others still run."""

    state: list[StateCallback] = field(default_factory=list)  # (old, new, reason) after each transition
    connector: list[Callable[[proto.ConnectorHealthEvent], None]] = field(default_factory=list)
    health: list[Callable[[proto.Message], None]] = field(default_factory=list)
    safety: list[Callable[[proto.SafetyEvent], None]] = field(default_factory=list)

    @staticmethod
    def fan_out(callbacks: list[Callable[[Any], None]], event: Any) -> None:
        for callback in list(callbacks):
            try:
                callback(event)
            except Exception:
                log.exception("callback failed for %s", type(event).__name__)
