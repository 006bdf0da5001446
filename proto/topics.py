"""Topic names. A subscriber filters on prefixes, so each family shares a prefix."""

from __future__ import annotations

HEARTBEAT_PREFIX = "hb."
STATE = "state"
SAFETY = "safety"
HEALTH_PREFIX = "health."
PROCESS_ALERT = "alert.process"  # supervisord's event listener: a program exited, backed off, FATAL
AUDIT_PREFIX = "audit."  # command requests and replies, one topic per serving process


def heartbeat(service: str) -> str:
    return HEARTBEAT_PREFIX + service

MARKET_DATA_PREFIX = "md."
BAD_MARKET_DATA = "bad_md"
ORDERS = "orders"
FILLS = "fills"
GOVERNANCE = "governance"


def market_data(symbol: str) -> str:
    return MARKET_DATA_PREFIX + symbol


def audit(service: str) -> str:
    return AUDIT_PREFIX + service
