"""Session states as they travel on the wire (the names kept from the original specification)."""

from __future__ import annotations

import enum


class OrchestratorState(str, enum.Enum):
    """The orchestrator's authoritative session state; ``.value`` is the lower-case name."""

    STARTUP = "startup"
    READY = "ready"
    LIVE = "live"
    DEGRADED = "degraded"
    FAILSAFE = "failsafe"
    SHUTDOWN = "shutdown"


class SafetyEventType(str, enum.Enum):
    DATA_ANOMALY = "data_anomaly"
    EXECUTION_ANOMALY = "execution_anomaly"
    STALE_FEED = "stale_feed"
    SEQUENCE_GAP = "sequence_gap"
    CROSSED_BOOK = "crossed_book"


class Severity(str, enum.Enum):
    WARNING = "warning"
    CRITICAL = "critical"
