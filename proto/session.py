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
    # The host's disk: a journal that cannot be written (critical), space running low (warning).
    STATE_DISK = "state_disk"


class Severity(str, enum.Enum):
    WARNING = "warning"
    CRITICAL = "critical"


class Side(str, enum.Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class OrderStatus(str, enum.Enum):
    NEW = "new"  # accepted by the gate, sent, not yet acknowledged by the venue
    ACKNOWLEDGED = "acknowledged"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"

    @property
    def is_open(self) -> bool:
        return self.value in OPEN_ORDER_STATUSES


# The wire values of the open statuses, for readers of a reply's plain dicts (the failsafe, the
# incident report): the one list of what "open" means.
OPEN_ORDER_STATUSES = frozenset({OrderStatus.NEW.value, OrderStatus.ACKNOWLEDGED.value,
                                 OrderStatus.PARTIALLY_FILLED.value})
