"""Rate-limited logging for bad input: one line per kind per interval, with the count suppressed.

What a peer sent reaches the line escaped and cut short (``escape``): no newline or control
character of its own can forge a line, and no size of its own can fill the log. The kinds are
bounded too: a key a peer controls (a publisher's name) cannot grow the table without limit.
"""

from __future__ import annotations

import logging
import time

# Longest text written per line; the rest is counted, not written.
MAX_LOGGED_CHARS = 300
# Kinds remembered; further kinds share one entry (``OTHER``), still one line per interval.
MAX_KINDS = 256
OTHER = "(other)"


def escape(text: str, limit: int = MAX_LOGGED_CHARS) -> str:
    """``text`` on one line: control and separator characters as ``\\xNN``/``\\uNNNN``, cut at
    ``limit`` characters with the number left out."""
    cut = text[:limit]
    # str.isprintable is False for every control, format and separator character but the space.
    out = "".join(ch if ch.isprintable() else _escaped(ch) for ch in cut)
    if len(text) > limit:
        out += f"... ({len(text) - limit} more characters)"
    return out


def _escaped(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, interval_s: float = 5.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str) -> None:
        """Log ``message`` (escaped) unless a line of this ``key`` went out within the interval."""
        if key not in self._last and len(self._last) >= MAX_KINDS:
            key = OTHER
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        suffix = f" ({suppressed} more like it suppressed)" if suppressed else ""
        # its kind named for the program log's storm filter (services/log_storm.py), which would
        # otherwise take every rate-limited line, sharing one format, for one kind
        self._logger.warning("%s%s", escape(message), suffix, extra={"storm_key": ("rate_limited", key)})
