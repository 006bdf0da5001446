"""Anomaly detectors. Each takes what it watches and returns the anomalies it sees, as
``SafetyEvent``s; ``monitor.SafetyMonitor`` runs them all, de-duplicates (one incident, one event)
and says what still holds; the safety process publishes.

Detectors are plain objects with no I/O, so each can be tested with crafted input. The larger ones
have their own modules (``price_jump``, ``stale_feed``, ``execution``); here the small ones and
the de-duplication.
"""

from __future__ import annotations

import proto
from proto import SafetyEvent, SafetyEventType, Severity


def price_text(x: float) -> str:
    """At least two decimals and about six significant digits: 40000.00, 86.6550, 1.12120."""
    digits = len(str(int(abs(x)))) if abs(x) >= 1 else 1
    return f"{x:.{max(2, 6 - digits)}f}"


def event(kind: SafetyEventType, severity: Severity, symbol: str, message: str, **evidence: float) -> SafetyEvent:
    return SafetyEvent(event_type=kind, severity=severity, symbol=symbol, message=message, evidence=evidence)


class CrossedBook:
    """A locked quote (bid equal to ask), or a crossed one the data router refused."""

    name = "crossed_book"

    def on_quote(self, quote: proto.Quote) -> list[SafetyEvent]:
        if quote.bid == quote.ask:
            return [event(SafetyEventType.CROSSED_BOOK, Severity.WARNING, quote.symbol,
                          f"Locked book: bid {quote.bid:.2f} = ask {quote.ask:.2f}", bid=quote.bid, ask=quote.ask)]
        return []

    def on_bad_data(self, bad: proto.BadMarketData) -> list[SafetyEvent]:
        if bad.reason == "crossed":
            return [event(SafetyEventType.CROSSED_BOOK, Severity.WARNING, bad.symbol,
                          f"Crossed book refused by the data router: {bad.detail[:120]}")]
        return [event(SafetyEventType.DATA_ANOMALY, Severity.WARNING, bad.symbol,
                      f"Bad market data refused by the data router ({bad.reason})")]

class Dedup:
    """One incident, one event: per (detector, event type, symbol), quiet for ``cooldown_s`` after
    a warning and ``critical_cooldown_s`` after a critical event; a critical event is never held
    back by an earlier warning."""

    def __init__(self, cooldown_s: float, critical_cooldown_s: float) -> None:
        self._cooldown_s = cooldown_s
        self._critical_cooldown_s = critical_cooldown_s
        self._last: dict[tuple[str, str, str], tuple[float, Severity]] = {}
        self.suppressed = 0

    def admit(self, detector: str, ev: SafetyEvent, now: float) -> bool:
        key = (detector, ev.event_type.value, ev.symbol)
        last = self._last.get(key)
        quiet = self._critical_cooldown_s if ev.severity is Severity.CRITICAL else self._cooldown_s
        if last is not None and now - last[0] < quiet and not (
                ev.severity is Severity.CRITICAL and last[1] is Severity.WARNING):
            self.suppressed += 1
            return False
        self._last[key] = (now, ev.severity)
        return True

    def reset(self) -> None:
        self._last.clear()
