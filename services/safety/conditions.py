"""What holds now: each detector's conditions that are still true, as the safety process reports them
in its heartbeat (``holding``) and answers ``conditions`` with. The orchestrator refuses to recover
while any holds, so the list is exact: empty on a healthy session, and each entry clears by itself
once its cause is gone (a symbol updates again, a hold time passes, a ratio falls back, positions
agree again).

A condition that lasts (a silent feed, a reject ratio, a position mismatch) is judged by its own
detector each time it is asked. A one-shot anomaly (a price jump, a bad fill) has no "still": it
holds for a hold time of session time after it was last seen (``OneShotHolds``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proto import SafetyEvent, SafetyEventType


@dataclass(frozen=True)
class Condition:
    detector: str
    event_type: SafetyEventType
    symbol: str
    reason: str
    since: float  # session time (seconds since the epoch) the condition began

    def to_dict(self) -> dict[str, Any]:
        return {"detector": self.detector, "event_type": self.event_type.value, "symbol": self.symbol,
                "reason": self.reason, "since": self.since}


@dataclass
class _Hold:
    since: float
    until: float
    reason: str
    event_type: SafetyEventType


class OneShotHolds:
    """One-shot anomalies per (detector, event type, symbol): holding from the first one until
    ``hold_s`` after the latest one (a repeat meanwhile extends it, and keeps its beginning)."""

    def __init__(self) -> None:
        self._holds: dict[tuple[str, str, str], _Hold] = {}

    def record(self, detector: str, ev: SafetyEvent, now: float, hold_s: float) -> None:
        key = (detector, ev.event_type.value, ev.symbol)
        held = self._holds.get(key)
        if held is not None and now < held.until:
            held.until, held.reason = max(held.until, now + hold_s), ev.message
        else:
            self._holds[key] = _Hold(since=now, until=now + hold_s, reason=ev.message, event_type=ev.event_type)

    def holding(self, now: float) -> list[Condition]:
        for key in [k for k, h in self._holds.items() if now >= h.until]:
            del self._holds[key]  # bounded: only what holds stays
        return [Condition(detector, h.event_type, symbol, h.reason, h.since)
                for (detector, _, symbol), h in self._holds.items()]
