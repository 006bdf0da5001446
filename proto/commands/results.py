"""Every command's result: what a reply's ``result`` holds, typed.

Readers ignore fields they do not know (``Result``), so a newer server can add one. Maps whose
keys are a service's own counters (``stats``, ``bus``) stay maps here: the heartbeat's summary
they come from is typed separately.
"""

from __future__ import annotations

from typing import Any

from proto.commands.base import Result
from proto.messages import OrderUpdate
from proto.summaries import ServiceSummary


# --- every service --------------------------------------------------------------------------------


class ProcessStatus(Result):
    """A service's identity, liveness and counters."""

    service: str
    pid: int
    epoch: int
    stats: ServiceSummary | None  # None: its summary would not decode (summary_error), so peers fail closed
    bus: dict[str, Any]
    supervisor_lost: str | None = None  # why supervisord, its parent, is gone
    summary_error: str | None = None  # the latest reason its summary was invalid (a bug in that service)
    summary_errors: int = 0  # heartbeats sent without a summary since it started


class TradingSwitch(Result):
    """Whether the process may trade now (enabled, the session LIVE and its orchestrator heard)."""

    trading_allowed: bool


# --- orchestrator ---------------------------------------------------------------------------------


class SessionState(Result):
    state: str  # OrchestratorState's lower-case value
    session_id: str = ""


class ComponentStatus(Result):
    """One process as the orchestrator knows it."""

    alive: bool
    pid: int | None
    heartbeat_age_s: float | None
    restarts: int
    trading_enabled: bool
    fatal: bool = False
    stats: ServiceSummary | None = None  # its latest heartbeat's


class JournalStatus(Result):
    ok: bool
    error: str | None = None
    held_writes: int = 0
    failures: int = 0


class MarketStatus(Result):
    """The market schedule: open now, and the next open and close in the venue's local time."""

    schedule: str
    open: bool
    next_open: str | None = None
    next_close: str | None = None


class OrchestratorStatus(ProcessStatus, kw_only=True):
    """The orchestrator's ``status``: its own, the session's and every process's."""

    state: str
    session_id: str
    session_fingerprint: str
    session_started_at: float
    failsafe_pending: str | None  # the reason a FAILSAFE sequence has begun and not finished
    failsafe_running: bool
    journal: JournalStatus
    disk: list[str]
    alerts: list[Any]
    session_logs: dict[str, str]
    components: dict[str, ComponentStatus]
    metrics_url: str | None = None
    market: MarketStatus | None = None


class SessionStatsResult(Result):
    """The orchestrator's ``stats`` (names kept from the specification: ``session_duration``,
    ``safety_events``, ``realized_pnl``, ``failsafe_activations``)."""

    session_id: str
    state: str
    session_duration: float
    transitions: int
    degradations: int
    failsafe_activations: int
    orchestrator_restarts: int
    safety_events: int
    process_alerts: dict[str, int]
    loop_stalls: int
    longest_loop_stall_s: float
    engine_latency_p50_ms: float
    engine_latency_p99_ms: float
    engine_errors: int
    decisions_made: int
    orders_submitted: int
    orders_rejected: int
    fills: int
    volume: float
    fees: float
    realized_pnl: float
    unrealized_pnl: float
    open_orders: int
    positions: dict[str, Any]
    counters_pending: str = ""  # why the trading counters are 0: the exchange manager is on another session


class Transition(Result):
    """A control command's outcome: the session state after it."""

    state: str


class CloseResult(Transition):
    """``close`` and ``shutdown``: where the end-of-day report and the archived session logs are (``report`` None: not written,
    ``error`` says why)."""

    report: str | None = None
    report_md: str | None = None
    archive: Any = None
    error: str = ""


class FlattenResult(Transition):
    failsafe_round: bool = False  # in FAILSAFE: a round of the failsafe sequence ran
    orders: list[str] = []  # otherwise: the reduce-only orders sent


# --- exchange manager ----------------------------------------------------------------------------


class OrderAccepted(Result):
    client_order_id: str


class CancelsSent(Result):
    venues: int  # the connected venues that were asked


class OrdersSent(Result):
    orders: list[str]


class PositionTable(Result):
    positions: dict[str, dict[str, Any]]  # symbol -> qty, avg_price, mark, realized/unrealized PnL, fees


class OrderTable(Result):
    orders: list[dict[str, Any]]  # the book of record's orders (OrderRecord fields)


class StrategyBookResult(Result):
    epoch: int
    seqs: dict[str, int]
    strategies: dict[str, Any]  # name -> {positions: {symbol: qty}, open_orders: [OrderUpdate]}


class GateMode(Result):
    mode: str


class ReconcileRuns(Result):
    """Sent once the runs have ended (or the exchange manager gave up waiting on one)."""

    runs: dict[str, int]  # connector -> the run whose outcome answers this request
    outcomes: dict[str, dict[str, Any]] = {}  # connector -> that run's outcome


class ReconciliationOutcomes(Result):
    outcomes: dict[str, dict[str, Any]]


class SessionCounters(Result):
    session_id: str
    started_ns: int
    symbols: dict[str, dict[str, Any]]
    totals: dict[str, float]


# --- venue ---------------------------------------------------------------------------------------


class VenueOrder(Result):
    order: OrderUpdate | None  # None while a latency is applied: the outcome comes on the streams


class VenueCancel(Result):
    cancelled: bool | None


class VenueCancelAll(Result):
    cancelled: list[str] | None


class VenueOpenOrders(Result):
    orders: list[OrderUpdate]
    fill_seq: int


class VenuePositions(Result):
    positions: dict[str, dict[str, float]]
    fill_seq: int


class FaultInjected(Result):
    fault: str


class LatencyFigures(Result):
    count: int
    p50_us: float | None = None
    p99_us: float | None = None
    p999_us: float | None = None


# --- data router ---------------------------------------------------------------------------------


class Subscribed(Result):
    subscribed: list[str]


class Unsubscribed(Result):
    unsubscribed: list[str]


# --- safety --------------------------------------------------------------------------------------


class HeldConditions(Result):
    holding: list[dict[str, Any]]  # detector, event_type, symbol, reason, since (session time)
    clock: str = ""
    session_time: float | None = None


class SafetyReset(Result):
    events: dict[str, int]
    holding: list[dict[str, Any]]
    # the sequence number of its last event on ``safety`` before the reset (0: none; older peers
    # send nothing)
    published: int = 0
