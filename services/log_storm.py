"""Log storms: a burst of records of one kind becomes a few lines and an exact count, in every log.

A strategy looping on a refused order once wrote 41,442 of a session log's 41,557 lines as the
same refusal, the same again in the governance log and the JSON lines (44 MB of logs in four
minutes), and 10,000 refusals held the orchestrator's loop 3.5 s writing them (every peer's
dead-man switch tripped). So, per kind of record (its *key*, below):

* the first ``logs.storm_full_lines`` records of a key within ``logs.storm_interval_s`` are
  written in full;
* the rest are held back and counted; when the interval ends one summary line says exactly how
  many, at the level of the records it stands for, e.g.
  ``... governance order_refused.max_orders_per_s BTC-USD: 1,234 more in the last 10 s (first
  12:00:00,001, last 12:00:09,998)``, and another interval starts; an interval that ends with
  nothing held back ends the storm, and the next record of that key is written in full again;
* summaries come out on the next record of any key after their interval, on ``flush()`` (each
  writer calls it from a timer every second) and at ``close()``: nothing pending is lost at shutdown;
* a record of a *stream* (one connector's health) whose key differs from its stream's previous
  record ends that key's interval at once, so a change (healthy → unhealthy → healthy) is always
  written in full, in order;
* the key table is bounded (``logs.storm_max_keys``): the least recently seen key is evicted,
  its summary written first.

**Never aggregated** (written in full whatever the rate): a record at ERROR or above (a critical
safety event, a failed failsafe step, an alert that could not be sent, an uncaught exception); a
record whose event is in ``MUST_KEEP`` or starts with ``failsafe_`` (state transitions, failsafe
steps, alerts, process alerts, operator commands, session start and end); a program's record marked
``keep()`` (a process learning the session state, its trading switched on or off). Only lines
are aggregated: every counter and metric still counts every event.

Keys: in the session logs (``services/orchestrator/session_logs.py``) the log, the event name and
the fields that name the event (governance: kind and symbol; a safety event: type, symbol,
severity and message; ...); in a program's own log (``StormFilter`` on the handler that
``services.runtime.configure_logging`` sets up) the logger's name, the level and the message's
format string before its arguments, or the ``storm_key`` a record names itself (``kind()``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Events written in full whatever the rate (the session logs' event names; see the module docstring).
MUST_KEEP = frozenset({"state_transition", "process_alert", "operator_command", "alert", "incident",
                       "session_start", "session_restored", "end_of_day", "supervisor_lost"})
MUST_KEEP_PREFIXES = ("failsafe_",)
# Attributes of a program's log record (``logging`` ``extra``) that this module reads.
KEEP_ATTR = "storm_keep"
KEY_ATTR = "storm_key"
SUMMARY_ATTR = "storm_summary"


class LogStormSettings(BaseModel):
    """Section ``[logs]`` (env ``TRADING_LOGS__<FIELD>``): how every log aggregates a storm."""

    model_config = ConfigDict(extra="forbid")

    # Records of one kind written in full per interval; the rest are counted into one summary line.
    storm_full_lines: int = Field(default=5, ge=1)
    # Length of an interval: at most one summary line per kind per interval.
    storm_interval_s: float = Field(default=10.0, gt=0, le=3600)
    # Kinds remembered at once per log (least recently seen evicted, its summary written first).
    storm_max_keys: int = Field(default=1_000, ge=1)


def never_aggregated(level: int, event: str = "") -> bool:
    """The rule: what is safety-relevant is always written in full (see the module docstring)."""
    return level >= logging.ERROR or event in MUST_KEEP or event.startswith(MUST_KEEP_PREFIXES)


def keep() -> dict[str, Any]:
    """``extra`` for a program's log record that must never be aggregated."""
    return {KEEP_ATTR: True}


def kind(key: Hashable) -> dict[str, Any]:
    """``extra`` naming a program's log record's kind, when its format string does not (several
    kinds logged through one format)."""
    return {KEY_ATTR: key}


@dataclass(frozen=True)
class Summary:
    """Records of one key held back in one interval: ``count`` of them, the first and last at
    ``first`` and ``last`` (the clock's time), over ``window_s``; ``context`` is the writer's (what
    it needs to write the line: the level, which files, ...), from the key's latest record."""

    key: Hashable
    count: int
    first: float
    last: float
    window_s: float
    context: Any

    def text(self, label: str) -> str:
        return (f"... {label}: {self.count:,} more in the last {round(self.window_s, 3):g} s "
                f"(first {clock_time(self.first)}, last {clock_time(self.last)})")


def clock_time(ts: float) -> str:
    """``HH:MM:SS,mmm`` local time, as ``logging`` stamps its lines."""
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f",{int(ts % 1 * 1000):03d}"


@dataclass
class _Key:
    started: float  # the current interval's start
    stream: Hashable | None
    context: Any
    written: int = 1
    held: int = 0
    first: float = 0.0
    last: float = 0.0


class LogStorm:
    """The aggregation itself, for one log or set of logs written together; thread-safe.

    ``admit(key, context)`` says whether to write a record; summaries due go to ``emit`` (called
    outside the lock, before ``admit`` returns, so a key's summary precedes its next full line).
    ``clock`` is wall time (the summaries quote it); injectable for tests.
    """

    def __init__(self, emit: Callable[[Summary], None], settings: LogStormSettings | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        settings = settings or LogStormSettings()
        self._emit = emit
        self._full = settings.storm_full_lines
        self._interval = settings.storm_interval_s
        self._max_keys = settings.storm_max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: OrderedDict[Hashable, _Key] = OrderedDict()  # least recently seen first
        self._streams: dict[Hashable, Hashable] = {}  # stream -> its latest key
        self._next_scan = 0.0
        self.held_total = 0  # records held back since the start (each in exactly one summary)

    def admit(self, key: Hashable, context: Any = None, *, stream: Hashable | None = None) -> bool:
        """Whether the record of ``key`` is to be written in full (else it is counted)."""
        now = self._clock()
        with self._lock:
            due = self._scan(now) if now >= self._next_scan else []
            if stream is not None:
                previous = self._streams.get(stream)
                if previous is not None and previous != key:
                    due += self._drop(previous, now)
                self._streams[stream] = key
            entry = self._keys.get(key)
            if entry is not None and not self._current(entry, now):
                due += self._end_interval(key, entry, now)
                entry = self._keys.get(key)
            if entry is None:
                while len(self._keys) >= self._max_keys:
                    due += self._drop(next(iter(self._keys)), now)
                self._keys[key] = _Key(now, stream, context)
                write = True
            else:
                self._keys.move_to_end(key)
                entry.context = context
                if entry.written < self._full:
                    entry.written += 1
                    write = True
                else:
                    if not entry.held:
                        entry.first = now
                    entry.held += 1
                    entry.last = now
                    self.held_total += 1
                    write = False
        self._send(due)
        return write

    def flush(self, *, final: bool = False) -> None:
        """Write the summaries of intervals that have ended (with ``final``: every pending one, and
        forget every key, as at close)."""
        now = self._clock()
        with self._lock:
            if final:
                due = []
                for key in list(self._keys):
                    due += self._drop(key, now)
            else:
                due = self._scan(now)
        self._send(due)

    def close(self) -> None:
        self.flush(final=True)

    @property
    def pending(self) -> int:
        """Records held back and not yet in a written summary."""
        with self._lock:
            return sum(entry.held for entry in self._keys.values())

    # -- under the lock -------------------------------------------------------------------------

    def _current(self, entry: _Key, now: float) -> bool:
        # a clock stepped back ends the interval too, rather than stretching it
        return entry.started <= now < entry.started + self._interval

    def _scan(self, now: float) -> list[Summary]:
        # every key, at most once a second: bounded by max_keys, and cheaper than a timer per key
        self._next_scan = now + min(1.0, self._interval)
        due: list[Summary] = []
        for key, entry in list(self._keys.items()):
            if not self._current(entry, now):
                due += self._end_interval(key, entry, now)
        return due

    def _end_interval(self, key: Hashable, entry: _Key, now: float) -> list[Summary]:
        """A storm goes on into a new interval (its records still held); a quiet one is over."""
        if not entry.held:
            self._forget(key, entry)
            return []
        summary = self._summary(key, entry, now)
        entry.started, entry.held = now, 0
        return [summary]

    def _drop(self, key: Hashable, now: float) -> list[Summary]:
        entry = self._keys.get(key)
        if entry is None:
            return []
        self._forget(key, entry)
        return [self._summary(key, entry, now)] if entry.held else []

    def _forget(self, key: Hashable, entry: _Key) -> None:
        del self._keys[key]
        if entry.stream is not None and self._streams.get(entry.stream) == key:
            del self._streams[entry.stream]

    @staticmethod
    def _summary(key: Hashable, entry: _Key, now: float) -> Summary:
        return Summary(key, entry.held, entry.first, entry.last, max(0.0, now - entry.started), entry.context)

    def _send(self, due: Iterable[Summary]) -> None:
        for summary in due:
            self._emit(summary)


class StormFilter(logging.Filter):
    """Aggregates a program's log on its handler (``configure_logging``): key = logger name, level
    and format string (or the record's ``storm_key``). A summary is a record of the same logger and
    level, handled by the same handler."""

    def __init__(self, handler: logging.Handler, settings: LogStormSettings | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._handler = handler
        self.storm = LogStorm(self._write_summary, settings, clock=clock)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, SUMMARY_ATTR, False):
            return True
        if never_aggregated(record.levelno) or getattr(record, KEEP_ATTR, False):
            return True
        named = getattr(record, KEY_ATTR, None)
        msg = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        return self.storm.admit((record.name, record.levelno, msg if named is None else named),
                                (record.name, record.levelno, repr(msg) if named is None else str(named)))

    def _write_summary(self, summary: Summary) -> None:
        name, level, label = summary.context
        record = logging.LogRecord(name, level, __file__, 0, "%s", (summary.text(label),), None)
        setattr(record, SUMMARY_ATTR, True)
        self._handler.handle(record)

    def close(self) -> None:
        self.storm.close()


def storm_filters(logger: logging.Logger | None = None) -> list[StormFilter]:
    """The ``StormFilter`` of each handler of ``logger`` (the root logger: a program's log)."""
    handlers = (logger or logging.getLogger()).handlers
    return [f for handler in handlers for f in handler.filters if isinstance(f, StormFilter)]
