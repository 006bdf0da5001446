"""The four session logs of the specification and a structured event log, one set per orchestrator start.

    logs/live/live_trading_<ts>.log        every transition and event
    logs/live/safety_events_<ts>.log       safety events
    logs/live/connector_health_<ts>.log    connector and process health events
    logs/live/governance_events_<ts>.log   governance: limits, refusals, operator commands
    logs/live/events_<ts>.jsonl            every line of the above as one JSON object, with fields

Format of the four: ``2026-01-19 14:30:45,123 - LiveTradingOrchestrator - INFO - State transition: LIVE → DEGRADED``.
Every line written to one of the specific logs is also written to the live_trading log. The JSON
lines carry ``ts`` (epoch seconds), ``time``, ``level``, ``log`` (which of the four), ``event`` (a
stable name: ``state_transition``, ``safety_event``, ``process_alert``, ...), ``message`` and
``data``, the event's own fields, so an incident review can filter with ``jq`` instead of parsing
prose (``jq 'select(.event == "safety_event") | .data.symbol'``).

Each file rotates at ``max_bytes`` (``<name>.1`` is the previous part); ``files()`` lists every part.

Every line is escaped where it is made, for all five files (``services/log_escape.py``): a symbol,
a reason or any other value holding a newline or a control character stays inside its own line, so
no peer or operator can write a line that looks like the orchestrator's.
"""

from __future__ import annotations

import logging
import logging.handlers
import time
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from services.log_escape import EscapingFormatter, json_line

LOGGER_NAME = "LiveTradingOrchestrator"
FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
KINDS = ("live_trading", "safety_events", "connector_health", "governance_events")
EVENTS = "events"


class SessionLogs:
    def __init__(self, log_dir: Path, started: float | None = None, *, max_bytes: int = 50 << 20,
                 backups: int = 10) -> None:
        self.dir = log_dir / "live"
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(started or time.time()))
        formatter = EscapingFormatter(FORMAT)
        self.paths: dict[str, Path] = {}
        self._loggers: dict[str, logging.Logger] = {}
        for kind in KINDS:
            self._loggers[kind] = self._logger(self.dir / f"{kind}_{stamp}.log", kind, formatter, max_bytes, backups)
        self._events = self._logger(self.dir / f"{EVENTS}_{stamp}.jsonl", EVENTS, EscapingFormatter("%(message)s"),
                                    max_bytes, backups)

    def _logger(self, path: Path, kind: str, formatter: logging.Formatter, max_bytes: int,
                backups: int) -> logging.Logger:
        # Loggers made directly, not via getLogger: each orchestrator instance owns its own
        # files, and nothing else in the process can write into them by accident.
        logger = logging.Logger(LOGGER_NAME, logging.INFO)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                                       encoding="utf-8")
        handler.setFormatter(formatter)
        logger.addHandler(handler)
        self.paths[kind] = path
        return logger

    def live(self, message: str, level: int = logging.INFO, event: str = "", data: Mapping[str, Any] | None = None) -> None:
        self._loggers["live_trading"].log(level, message)
        self._event("live_trading", message, level, event, data)

    def safety(self, message: str, level: int = logging.WARNING, event: str = "", data: Mapping[str, Any] | None = None) -> None:
        self._write("safety_events", message, level, event, data)

    def health(self, message: str, level: int = logging.INFO, event: str = "", data: Mapping[str, Any] | None = None) -> None:
        self._write("connector_health", message, level, event, data)

    def governance(self, message: str, level: int = logging.INFO, event: str = "", data: Mapping[str, Any] | None = None) -> None:
        self._write("governance_events", message, level, event, data)

    def _write(self, kind: str, message: str, level: int, event: str, data: Mapping[str, Any] | None) -> None:
        self._loggers[kind].log(level, message)
        self._loggers["live_trading"].log(level, message)
        self._event(kind, message, level, event, data)

    def _event(self, kind: str, message: str, level: int, event: str, data: Mapping[str, Any] | None) -> None:
        now = time.time()
        record = {"ts": round(now, 6), "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
                  + f".{int(now % 1 * 1000):03d}Z", "level": logging.getLevelName(level), "log": kind,
                  "event": event or kind, "message": message, "data": dict(data or {})}
        self._events.info(json_line(record))

    def files(self) -> list[Path]:
        """Every file of this session, rotated parts included (oldest part last)."""
        out = []
        for path in self.paths.values():
            out += [path, *sorted(path.parent.glob(path.name + ".*"), key=lambda p: int(p.suffix[1:]))]
        return [p for p in out if p.exists()]

    def close(self) -> None:
        for logger in [*self._loggers.values(), self._events]:
            for handler in list(logger.handlers):
                handler.close()
                logger.removeHandler(handler)
