"""The four session logs of the specification, one set per orchestrator start.

    logs/live/live_trading_<ts>.log        every transition and event
    logs/live/safety_events_<ts>.log       safety events
    logs/live/connector_health_<ts>.log    connector and process health events
    logs/live/governance_events_<ts>.log   governance: limits, refusals, operator commands

Format: ``2026-01-19 14:30:45,123 - LiveTradingOrchestrator - INFO - State transition: LIVE → DEGRADED``.
Every line written to one of the specific logs is also written to the live_trading log.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

LOGGER_NAME = "LiveTradingOrchestrator"
FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
KINDS = ("live_trading", "safety_events", "connector_health", "governance_events")


class SessionLogs:
    def __init__(self, log_dir: Path, started: float | None = None) -> None:
        self.dir = log_dir / "live"
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(started or time.time()))
        formatter = logging.Formatter(FORMAT)
        self.paths: dict[str, Path] = {}
        self._loggers: dict[str, logging.Logger] = {}
        for kind in KINDS:
            # Loggers made directly, not via getLogger: each orchestrator instance owns its own
            # files, and nothing else in the process can write into them by accident.
            logger = logging.Logger(LOGGER_NAME, logging.INFO)
            path = self.dir / f"{kind}_{stamp}.log"
            handler = logging.FileHandler(path, encoding="utf-8")
            handler.setFormatter(formatter)
            logger.addHandler(handler)
            self.paths[kind] = path
            self._loggers[kind] = logger

    def live(self, message: str, level: int = logging.INFO) -> None:
        self._loggers["live_trading"].log(level, message)

    def safety(self, message: str, level: int = logging.WARNING) -> None:
        self._write("safety_events", message, level)

    def health(self, message: str, level: int = logging.INFO) -> None:
        self._write("connector_health", message, level)

    def governance(self, message: str, level: int = logging.INFO) -> None:
        self._write("governance_events", message, level)

    def _write(self, kind: str, message: str, level: int) -> None:
        self._loggers[kind].log(level, message)
        self._loggers["live_trading"].log(level, message)

    def close(self) -> None:
        for logger in self._loggers.values():
            for handler in list(logger.handlers):
                handler.close()
                logger.removeHandler(handler)
