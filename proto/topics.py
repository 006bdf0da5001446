"""Topic names. A subscriber filters on prefixes, so each family shares a prefix."""

from __future__ import annotations

HEARTBEAT_PREFIX = "hb."
STATE = "state"
SAFETY = "safety"
HEALTH_PREFIX = "health."


def heartbeat(service: str) -> str:
    return HEARTBEAT_PREFIX + service
