"""What each service says about itself in its heartbeat (``Heartbeat.stats``) and its ``status``:
one typed summary per service, a tagged union on ``service``.

The orchestrator assesses health, gates READY/LIVE and counts the session from these fields: a
field renamed or mistyped on one side is a decoding error counted on the other, never a silent 0.
Tables that grow with the session stay in the commands that ask for them (``positions``,
``orders``, ``reconciliation``, ``session_stats``); what a heartbeat carries stays small.
"""

from __future__ import annotations

from typing import Any

import msgspec

from proto.errors import ProtocolError
from proto.fields import Name


class BusTotals(msgspec.Struct, kw_only=True):
    """This process's bus counters (the metrics' source)."""

    published: int = 0
    received: int = 0
    rejected: int = 0
    gaps: int = 0
    lost: int = 0
    commands: int = 0


class Summary(msgspec.Struct, kw_only=True, tag_field="service"):
    uptime_s: float = 0.0
    bus: BusTotals = msgspec.field(default_factory=BusTotals)


class FollowerSummary(Summary, kw_only=True):
    """A trading process's view of the session (``services/session_follower.py``)."""

    session_state: str | None = None
    trading_allowed: bool = False
    disabled_reason: str | None = None
    halted: str | None = None  # a critical safety event stopped it until the orchestrator acts
    halts: int = 0
    orphaned: str | None = None
    orchestrator_age_s: float | None = None
    deadman_trips: int = 0
    stalls: int = 0
    orchestrator_session: str | None = None  # None: no session heard of yet


class OrchestratorSummary(Summary, tag="orchestrator", kw_only=True):
    session_id: str = ""
    transitions: int = 0


class ConnectorStats(msgspec.Struct, kw_only=True):
    """A venue connector's health, as its exchange manager measures it."""

    connected: bool
    latency_ms: float = 0.0
    messages_received: int = 0
    messages_dropped: int = 0
    error_count: int = 0
    reconnects: int = 0


class BookJournal(msgspec.Struct, kw_only=True):
    """The book of record's journal: a step toward risk needs it writable."""

    ok: bool = True
    error: str | None = None
    held_writes: int = 0
    failures: int = 0
    refused_orders: int = 0


class VenueUnknown(msgspec.Struct, kw_only=True):
    """What a venue holds that this system did not send (the orchestrator refuses open/reset meanwhile)."""

    orders: int = 0
    positions: dict[str, float] = {}


class ExchangeSummary(FollowerSummary, tag="exchange_manager", kw_only=True):
    session_id: str | None = None  # the session its counters count (session_ledger.py); None: none yet
    orders_submitted: int = 0
    orders_rejected: int = 0
    fills: int = 0
    volume: float = 0.0
    realized_pnl: float = 0.0
    unrealized_pnl: float = 0.0
    fees: float = 0.0
    # The session's per-symbol rows: what the end-of-day report falls back on when the exchange
    # manager stops with the daemon (bounded by the symbols traded).
    session_symbols: dict[str, dict[str, Any]] = {}
    foreign_rejects: int = 0
    duplicate_reports: int = 0  # venue reports that changed nothing: dropped, not journalled or published
    # Fills that arrived above a hole in their venue's numbers and waited for it (fill_order.py), and
    # those applied before the hole was filled because it stayed open too long.
    fills_held: int = 0
    fills_out_of_order: int = 0
    open_orders: int = 0
    positions: dict[str, float] = {}
    gate: dict[str, Any] = {}
    connectors: dict[Name, ConnectorStats] = {}
    reconciliations: int = 0
    stale_reconciliation_answers: int = 0
    unasked_reconciliation_answers: int = 0
    journal: BookJournal = msgspec.field(default_factory=BookJournal)
    reconciled: bool = False  # the book agrees with every venue and every instrument list is loaded
    instruments: dict[str, Any] = {}
    reconciliation: dict[str, Any] = {}
    venue_unknown: VenueUnknown = msgspec.field(default_factory=VenueUnknown)
    tick_to_order: dict[str, Any] = {}  # a latency histogram (services/latency.py)


class EngineSummary(FollowerSummary, tag="engine", kw_only=True):
    session_id: str | None = None  # None: no session heard of yet
    decisions_made: int = 0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    decision_latency: dict[str, Any] = {}  # a latency histogram (services/latency.py)
    error_count: int = 0
    orders_refused: int = 0
    suppressed: int = 0
    quotes_conflated: int = 0  # quotes the strategies never saw: a later one of the symbol was waiting
    book_sync: dict[str, Any] = {}
    instruments: dict[str, Any] = {}
    strategies: dict[str, dict[str, Any]] = {}


class Condition(msgspec.Struct, kw_only=True):
    """A safety condition that holds now: the session does not recover while any does."""

    detector: str
    event_type: str
    symbol: str
    reason: str
    since: float  # session time, seconds since the epoch


class SafetySummary(FollowerSummary, tag="safety", kw_only=True):
    events: dict[str, int] = {}
    suppressed: int = 0
    clock: str = "wall"
    session_time: float | None = None
    symbols: int = 0
    # None: it does not say (an older build), which keeps the session from recovering (fail closed).
    holding: list[Condition] | None = None


class RouterSummary(Summary, tag="data_router", kw_only=True):
    clock: str = "wall"
    session_time: float | None = None
    routed: int = 0
    refused: dict[str, int] = {}
    symbols: dict[str, dict[str, float]] = {}


class VenueSummary(Summary, tag="venue_sim", kw_only=True):
    quotes_published: int = 0
    feed_on: bool = True
    open_orders: int = 0
    fills: int = 0
    rejected: int = 0
    duplicate_ids: int = 0
    replay_finished: bool = False
    exchange_api: dict[str, Any] = {}  # its exchange API, when served: url, requests, refused by reason


class HungOrchestrator(msgspec.Struct, kw_only=True):
    pid: int
    silent_s: float
    at: float
    detail: str = ""
    successor_pid: int | None = None


class SupervisorSummary(Summary, tag="supervisor", kw_only=True):
    """supervisord's event listener (``deploy/event_listener.py``)."""

    events: int = 0
    alerts: int = 0
    alert_log_errors: int = 0
    hung_killed: int = 0
    rpc_errors: int = 0
    hung_orchestrator: HungOrchestrator | None = None  # the orchestrator it killed as hung, for its successor


ServiceSummary = (OrchestratorSummary | ExchangeSummary | EngineSummary | SafetySummary | RouterSummary | VenueSummary
                  | SupervisorSummary)

_ENCODER = msgspec.msgpack.Encoder()


def checked(summary: Summary) -> Summary:
    """``summary`` if it reads back as its own type, as every peer decodes it; otherwise
    ``ProtocolError``. A struct is built without checking its fields' types, so a None where a str
    is declared would otherwise be found only by the peers, each rejecting every heartbeat: this
    names the bug at the sender (``ServiceRuntime.summary``). About 20 µs, ten times a second."""
    try:
        msgspec.msgpack.decode(_ENCODER.encode(summary), type=type(summary))
    except msgspec.ValidationError as exc:
        raise ProtocolError("invalid", f"{type(summary).__name__}: {exc}") from None
    return summary
