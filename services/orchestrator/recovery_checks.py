"""Whether the cause of a degradation is gone: ``recover`` and the automatic recovery ask here
before going back to LIVE, and are refused with every reason this finds.

The safety process says in each heartbeat which of its conditions still hold (``holding``: a feed
still silent, a price jump or an execution anomaly inside its hold time, a reject ratio still over
its threshold, a position that still disagrees). Its word must be fresh: a safety process not heard
from for a few heartbeats, or one that does not say, is a reason to wait (fail closed), not a
clean bill of health.
"""

from __future__ import annotations

from proto.summaries import SafetySummary
from services.orchestrator.components import Component

# A heartbeat older than this many intervals is too old to vouch that nothing holds.
FRESH_HEARTBEATS = 4


def safety_holding(safety: Component, heartbeat_interval_s: float, now_monotonic: float) -> list[str]:
    """What the safety process says still holds, one reason each; empty only on a fresh, explicit
    "nothing holds"."""
    if safety.stats_at is None:
        return ["the safety process has not reported yet"]
    age = now_monotonic - safety.stats_at
    if age > FRESH_HEARTBEATS * heartbeat_interval_s:
        return [f"the safety process has not reported for {age:.1f}s"]
    if not isinstance(safety.stats, SafetySummary) or safety.stats.holding is None:
        return ["the safety process does not say which conditions hold"]
    return [f"{c.detector} {c.symbol}: {c.reason[:200]}".rstrip(": ") for c in safety.stats.holding]
