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

A storm of one kind of event is aggregated (``services/log_storm.py``): the first few lines in
full, then one summary line per interval with the exact count held back, in each file the events
would have gone to (the JSON line's event is ``storm_summary``, with ``count``, ``first``, ``last``
and the key's fields in ``data``). The key is the log, the event and the fields of ``KEY_FIELDS``
(governance: kind and symbol, not the reason, which carries the order's numbers; a safety event's
message is part of it, since it names its evidence); an event not
listed there is keyed by its whole message. State transitions, failsafe steps, alerts, process
alerts, operator commands and anything at ERROR or above are never aggregated.

Size: each file rotates (``<name>.1`` is the previous part, ``backups`` parts kept); ``files()``
lists every part. With a ``budget_bytes`` the session's files together stay within it: each file
gets a share (``BUDGET_SHARES``: the JSON lines 40 %, the live log 30 %, the three others 10 %
each), split over its ``backups + 1`` parts, and no part is larger than ``max_bytes``. A part goes
over its size by at most one line (a line is never cut in two).

Every line is escaped where it is made, for all five files (``services/log_escape.py``): a symbol,
a reason or any other value holding a newline or a control character stays inside its own line, so
no peer or operator can write a line that looks like the orchestrator's.
"""

from __future__ import annotations

import logging
import logging.handlers
import time
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

from services.log_escape import EscapingFormatter, json_line
from services.log_storm import LogStorm, LogStormSettings, Summary, never_aggregated

LOGGER_NAME = "LiveTradingOrchestrator"
FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
KINDS = ("live_trading", "safety_events", "connector_health", "governance_events")
EVENTS = "events"
# Each file's share of a session's size budget (the live log has every line of the three others;
# a JSON line carries the event's fields besides its message).
BUDGET_SHARES = {EVENTS: 0.4, "live_trading": 0.3, "safety_events": 0.1, "connector_health": 0.1,
                 "governance_events": 0.1}
# The fields of ``data`` that name an event for aggregation; other events: their whole message.
# A governance event's reason is left out (it carries the refused order's numbers); a safety
# event's message is in (it names its evidence, an order id or a price: only the same event
# repeated aggregates, and its sources already rate-limit it).
KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "governance": ("kind", "symbol"),
    "safety_event": ("event_type", "symbol", "severity", "message"),
    "connector_health": ("connector", "healthy"),
    "process_health": ("service",),
    "engine_health": (),
}
# Events whose key is one state of a stream (a connector's health): a change is written at once.
STREAM_FIELDS: dict[str, tuple[str, ...]] = {"connector_health": ("connector",)}
STORM_SUMMARY = "storm_summary"
# Characters of a message or field kept in a storm key: the key table's memory stays bounded.
KEY_CHARS = 200


def part_bytes(max_bytes: int, backups: int, budget_bytes: int | None) -> dict[str, int]:
    """The size at which each file rotates: ``max_bytes``, or less to keep the session in budget."""
    if budget_bytes is None:
        return {kind: max_bytes for kind in BUDGET_SHARES}
    return {kind: min(max_bytes, int(budget_bytes * share) // (backups + 1)) for kind, share in BUDGET_SHARES.items()}


class SessionLogs:
    def __init__(self, log_dir: Path, started: float | None = None, *, max_bytes: int = 50 << 20,
                 backups: int = 10, budget_bytes: int | None = None, storm: LogStormSettings | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.dir = log_dir / "live"
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(started or time.time()))
        formatter = EscapingFormatter(FORMAT)
        sizes = part_bytes(max_bytes, backups, budget_bytes)
        self.paths: dict[str, Path] = {}
        self._loggers: dict[str, logging.Logger] = {}
        for kind in KINDS:
            self._loggers[kind] = self._logger(self.dir / f"{kind}_{stamp}.log", kind, formatter, sizes[kind], backups)
        self._events = self._logger(self.dir / f"{EVENTS}_{stamp}.jsonl", EVENTS, EscapingFormatter("%(message)s"),
                                    sizes[EVENTS], backups)
        self._storm = LogStorm(self._write_summary, storm, clock=clock)

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
        self._write(("live_trading",), message, level, event, data)

    def safety(self, message: str, level: int = logging.WARNING, event: str = "", data: Mapping[str, Any] | None = None) -> None:
        self._write(("safety_events", "live_trading"), message, level, event, data)

    def health(self, message: str, level: int = logging.INFO, event: str = "", data: Mapping[str, Any] | None = None) -> None:
        self._write(("connector_health", "live_trading"), message, level, event, data)

    def governance(self, message: str, level: int = logging.INFO, event: str = "", data: Mapping[str, Any] | None = None) -> None:
        self._write(("governance_events", "live_trading"), message, level, event, data)

    def _write(self, kinds: tuple[str, ...], message: str, level: int, event: str,
               data: Mapping[str, Any] | None) -> None:
        event = event or kinds[0]
        if not never_aggregated(level, event):
            key, stream, context = _storm_key(kinds, message, level, event, data or {})
            if not self._storm.admit(key, context, stream=stream):
                return
        for kind in kinds:
            self._loggers[kind].log(level, message)
        self._event(kinds[0], message, level, event, data)

    def _write_summary(self, summary: Summary) -> None:
        kinds, level, event, label, named = summary.context
        line = summary.text(label)
        for kind in kinds:
            self._loggers[kind].log(level, line)
        self._event(kinds[0], line, level, STORM_SUMMARY,
                    {"of": event, **(named or {}), "count": summary.count, "first": round(summary.first, 6),
                     "last": round(summary.last, 6), "window_s": round(summary.window_s, 3)})

    def _event(self, kind: str, message: str, level: int, event: str, data: Mapping[str, Any] | None) -> None:
        now = time.time()
        record = {"ts": round(now, 6), "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
                  + f".{int(now % 1 * 1000):03d}Z", "level": logging.getLevelName(level), "log": kind,
                  "event": event, "message": message, "data": dict(data or {})}
        self._events.info(json_line(record))

    def flush(self) -> None:
        """Write the summaries of storms whose interval has ended (the orchestrator's timer)."""
        self._storm.flush()

    def files(self) -> list[Path]:
        """Every file of this session, rotated parts included (oldest part last), every pending
        storm summary written first: a copy of them (the end-of-day archive) misses no count."""
        self._storm.flush(final=True)
        out = []
        for path in self.paths.values():
            out += [path, *sorted(path.parent.glob(path.name + ".*"), key=lambda p: int(p.suffix[1:]))]
        return [p for p in out if p.exists()]

    def close(self) -> None:
        self._storm.close()  # the last pending summaries, before the files close
        for logger in [*self._loggers.values(), self._events]:
            for handler in list(logger.handlers):
                handler.close()
                logger.removeHandler(handler)


def _storm_key(kinds: tuple[str, ...], message: str, level: int, event: str,
               data: Mapping[str, Any]) -> tuple[Hashable, Hashable | None, tuple[Any, ...]]:
    """(key, stream, context for the summary) of a line: see ``KEY_FIELDS`` and ``STREAM_FIELDS``."""
    fields = KEY_FIELDS.get(event)
    if fields is None:
        text = message[:KEY_CHARS]
        return (kinds, level, event, text), None, (kinds, level, event, repr(text), None)
    named = {field: _plain(data.get(field, "")) for field in fields}
    label = " ".join([event, *(str(v) for v in named.values() if v != "")])
    stream_fields = STREAM_FIELDS.get(event)
    stream = None if stream_fields is None else (kinds, event, *(named[f] for f in stream_fields))
    return (kinds, level, event, *named.values()), stream, (kinds, level, event, label, named)


def _plain(value: Any) -> Hashable:
    """A key field's value as something hashable and short (the fields come from a peer's message)."""
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return (value if isinstance(value, str) else repr(value))[:KEY_CHARS]
