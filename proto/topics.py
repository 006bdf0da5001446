"""Topic names, and which publisher publishes which. A subscriber filters on prefixes, so each
family shares a prefix."""

from __future__ import annotations

from functools import cache

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
CLOCK = "clock"  # the session clock of a replay (proto.SessionTime), from the data router
ORDERS = "orders"
FILLS = "fills"
GOVERNANCE = "governance"


def market_data(symbol: str) -> str:
    return MARKET_DATA_PREFIX + symbol


def audit(service: str) -> str:
    return AUDIT_PREFIX + service


# What each publisher publishes besides its own ``hb.<name>`` and ``audit.<name>``: exact topics,
# and families (ending in ``*``: any topic starting with what comes before it). A PUB socket
# accepts a subscription only to a prefix of one of these (``bus.subscription_guard``): a peer
# cannot make a publisher hold subscriptions to topics it never sends. A publisher that publishes
# a topic missing here logs an error at its first message on it (``bus.Publisher``), because
# subscriptions to that topic are refused: add a new topic here with its publisher.
PUBLISHED: dict[str, tuple[str, ...]] = {
    # every service under supervisord also says on PROCESS_ALERT that it was orphaned (supervisord
    # gone), and every command server on GOVERNANCE that it refused an unauthorised caller
    "orchestrator": (STATE, HEALTH_PREFIX + "*", SAFETY, PROCESS_ALERT, GOVERNANCE),  # SAFETY: its disk's state
    "exchange_manager": (ORDERS, FILLS, GOVERNANCE, SAFETY, PROCESS_ALERT),  # SAFETY: reconciliation, its disk
    "engine": (PROCESS_ALERT, GOVERNANCE),
    "data_router": (MARKET_DATA_PREFIX + "*", BAD_MARKET_DATA, CLOCK, PROCESS_ALERT, GOVERNANCE),
    "safety": (SAFETY, PROCESS_ALERT, GOVERNANCE),
    "venue_sim": (MARKET_DATA_PREFIX + "*", ORDERS, FILLS, PROCESS_ALERT, GOVERNANCE),
    "supervisor": (PROCESS_ALERT,),
}


@cache
def _patterns(service: str) -> tuple[tuple[bytes, bool], ...]:
    """(topic or family prefix as bytes, is a family) for everything ``service`` publishes."""
    names = (heartbeat(service), audit(service), *PUBLISHED.get(service, ()))
    return tuple((name.rstrip("*").encode(), name.endswith("*")) for name in names)


def publishes(service: str, topic: str) -> bool:
    """Whether ``topic`` is one that ``service`` is declared to publish."""
    data = topic.encode()
    return any(data.startswith(p) if family else data == p for p, family in _patterns(service))


def subscribable(service: str, prefix: bytes) -> bool:
    """Whether a subscription to ``prefix`` on ``service``'s PUB can match anything it publishes:
    the empty prefix (everything, as ``tradectl bus`` subscribes), a prefix of one of its topics
    or families, or a topic within one of its families."""
    return any(p.startswith(prefix) or (family and prefix.startswith(p)) for p, family in _patterns(service))


def known(prefix: bytes) -> bool:
    """Whether ``prefix`` can match a topic of any publisher: a subscriber connected to several
    publishers sends each of them all of its prefixes, so a PUB sees prefixes of its peers' topics
    as a matter of course (not applied, but no sign of a misbehaving peer)."""
    return any(subscribable(service, prefix) for service in PUBLISHED)


# The message types each topic (or family) carries, for the written contract (docs/protocol.md).
CARRIES: dict[str, tuple[str, ...]] = {
    HEARTBEAT_PREFIX + "<service>": ("heartbeat",),
    AUDIT_PREFIX + "<service>": ("command_audit",),
    STATE: ("state_changed",),
    HEALTH_PREFIX + "*": ("connector_health", "engine_health", "process_health"),
    SAFETY: ("safety_event",),
    PROCESS_ALERT: ("process_alert",),
    MARKET_DATA_PREFIX + "<symbol>": ("quote", "trade"),
    BAD_MARKET_DATA: ("bad_market_data",),
    CLOCK: ("session_time",),
    ORDERS: ("order_update",),
    FILLS: ("fill",),
    GOVERNANCE: ("governance_event",),
}
