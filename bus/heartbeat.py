"""Heartbeats: every service publishes one on ``hb.<service>`` at a fixed short interval."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import proto
from bus.publisher import Publisher


class Heartbeater:
    """Builds and publishes this process's heartbeat: pid, interval, state, trading flag, stats."""

    def __init__(
        self,
        publisher: Publisher,
        service: str,
        interval_s: float,
        stats: Callable[[], dict[str, Any]],
        state: Callable[[], proto.OrchestratorState | None] = lambda: None,
        trading_enabled: Callable[[], bool] = lambda: False,
    ) -> None:
        self._publisher = publisher
        self._topic = proto.topics.heartbeat(service)
        self._interval_s = interval_s
        self._stats = stats
        self._state = state
        self._trading_enabled = trading_enabled
        self._pid = os.getpid()

    def beat(self) -> None:
        self._publisher.publish(self._topic, proto.Heartbeat(
            pid=self._pid,
            interval_s=self._interval_s,
            stats=self._stats(),
            state=self._state(),
            trading_enabled=self._trading_enabled(),
        ))
