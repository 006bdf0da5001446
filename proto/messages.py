"""Every message body that travels on the bus, defined once.

Each body is a ``msgspec.Struct`` with a ``TYPE`` class variable: that string is the envelope's
``type`` field and the key under which the decoder finds the schema. A field of the wrong type is a
protocol error; a field this build does not know is ignored (a newer peer's optional addition),
except in a ``Command``, whose unknown parts are refused.

Adding a message or an optional field: define it here (a new struct goes in ``MESSAGE_TYPES`` at
the bottom). Changing the meaning or shape of an existing field: bump
``proto.envelope.SCHEMA_VERSION`` (docs/protocol.md, Compatibility).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

import msgspec

from proto.fields import (Amount, Count, MarketName, MarketSymbol, Name, OptionalId, OrderId, Price, PriceOrZero,
                          Quantity, QuantityOrZero, Symbol, SymbolOrAll, check_market_names)
from proto.limits import MAX_ARGS_KEYS, Id
from proto.limits import Name as BoundedName
from proto.session import OrchestratorState, OrderStatus, SafetyEventType, Severity, Side
from proto.summaries import ServiceSummary

R = TypeVar("R")


class Message(msgspec.Struct, kw_only=True):
    """Base of every body. A field this build does not know is ignored (docs/protocol.md,
    Compatibility): a peer restarted on a build that adds an optional field keeps being understood.
    A known field of the wrong type is still a protocol error, never a guess."""

    TYPE: ClassVar[str]


# --- liveness and session state --------------------------------------------------------------


class Heartbeat(Message):
    """Published by every service every ``bus.heartbeat_interval_s`` on topic ``hb.<service>``.

    Any message from a publisher counts as liveness; the heartbeat guarantees one arrives even when
    a service has nothing else to say. ``stats`` is the service's own small summary.
    """

    TYPE: ClassVar[str] = "heartbeat"
    pid: int
    interval_s: float
    stats: ServiceSummary | None = None  # proto/summaries.py
    # The session state as the sender knows it: authoritative only from the orchestrator.
    state: OrchestratorState | None = None
    trading_enabled: bool = False


class StateChanged(Message):
    """Published by the orchestrator on topic ``state`` after the transition is journalled."""

    TYPE: ClassVar[str] = "state_changed"
    old: OrchestratorState
    new: OrchestratorState
    reason: str
    transition_no: int
    session_id: str = ""  # the session it belongs to ("" from an orchestrator of an older version)


# --- commands and replies ----------------------------------------------------------------------


class Command(Message, forbid_unknown_fields=True):
    """A request on a service's command socket. ``id`` is unique per request: a server that sees an
    ``id`` again answers with the reply it already gave and does not run the command twice.

    Bounded (``proto.limits``): the server keeps ``id`` with its reply for retries, so a peer must
    not choose its size; the encoded body as a whole is at most ``MAX_COMMAND_BYTES``.

    ``args`` decodes as a map, which the server checks against the command's argument struct
    (``proto.commands.parse_args``); a sender may put that struct itself in ``args``
    (``bus.CommandChannel.send``): it encodes as the same map."""

    TYPE: ClassVar[str] = "command"
    id: Id
    name: BoundedName  # an unknown name is answered as such: bounded, not patterned
    args: Annotated[dict[str, Any], msgspec.Meta(max_length=MAX_ARGS_KEYS)] = {}


class Reply(Message):
    """The one reply shape: ``ok`` with a ``result``, or not ``ok`` with an ``error`` reason."""

    TYPE: ClassVar[str] = "reply"
    id: str
    ok: bool
    result: dict[str, Any] = {}
    error: str = ""


class TypedReply(msgspec.Struct, Generic[R], kw_only=True):
    """A ``Reply`` as the client that asked reads it (``proto.decode_reply``): its ``result``
    decoded straight into the command's declared result struct, in the same pass as the reply's
    other fields, no map in between. Not a message type of its own: the wire carries a ``Reply``."""

    id: str
    ok: bool
    result: R | None = None
    error: str = ""


class CommandAudit(Message):
    """What a command server did with one request, published on topic ``audit.<service>``.

    The command sockets are point to point, invisible to a subscriber; these records let
    ``tradectl bus calls`` pair requests with replies and time them. ``phase`` is ``request`` when
    the request is read (before its handler runs, so a stuck handler shows as a pending call) and
    ``reply`` once the reply is sent; ``sent_ns`` is the requester's own send time (its envelope's
    ``ts_ns``), so request-to-reply time includes the queueing before the server read it.
    """

    TYPE: ClassVar[str] = "command_audit"
    id: str
    name: str
    caller: str
    phase: Literal["request", "reply"]
    sent_ns: int = 0
    ok: bool = True
    error: str = ""
    duplicate: bool = False  # a replayed id, answered from the cache without running the handler


# --- health and safety (names kept from the original specification) ---------------------------


class SafetyEvent(Message):
    """An anomaly a detector saw (safety), or the exchange manager's reconciliation or disk, on topic ``safety``."""

    TYPE: ClassVar[str] = "safety_event"
    event_type: SafetyEventType
    severity: Severity
    symbol: SymbolOrAll  # "*": the whole feed
    message: str
    evidence: dict[str, float] = {}
    # Session time of the detection (ns since the epoch, ``services/session_clock.py``): the
    # data's own time in a replay, wall time live; 0 from a sender that does not know it.
    ts_ns: int = 0


class SessionTime(Message):
    """The session clock in a replay: the latest market-data time the data router has passed on.
    Published on ``clock`` (at most every ``data_router.clock_interval_s``) only when the session
    runs on the data's own time; live, every process reads its wall clock."""

    TYPE: ClassVar[str] = "session_time"
    ts_ns: int


class ConnectorHealthEvent(Message):
    """A venue connector's health, from the orchestrator's assessment, on ``health.connector``."""

    TYPE: ClassVar[str] = "connector_health"
    connector: Name
    connected: bool
    latency_ms: float
    messages_received: int
    messages_dropped: int
    error_count: int
    healthy: bool
    reason: str = ""


class EngineHealthEvent(Message):
    """The engine's decision statistics and verdict, on ``health.engine``."""

    TYPE: ClassVar[str] = "engine_health"
    decisions_made: int
    latency_p50_ms: float
    latency_p99_ms: float
    error_count: int
    healthy: bool
    reason: str = ""


class ProcessHealthEvent(Message):
    """The orchestrator's verdict on one process's liveness (missed heartbeats, restarts)."""

    TYPE: ClassVar[str] = "process_health"
    service: str
    alive: bool
    heartbeat_age_s: float
    restarts: int
    reason: str = ""


class ProcessAlert(Message):
    """supervisord saw a program end badly: published by the event listener (``deploy/
    event_listener.py``) on topic ``alert.process``.

    ``event`` is ``exited`` (an exit supervisord did not expect), ``backoff`` (it exited before
    ``startsecs``; supervisord will retry) or ``fatal`` (supervisord gave up: the program stays
    down until an operator starts it); ``hung`` (its pid lived but its heartbeat stopped for
    ``supervision.hung_restart_after_s``: the listener killed it for supervisord to restart).
    ``orphaned`` comes from the program itself, on its own PUB: supervisord, its parent, is gone,
    so nothing will restart it, and it has stopped opening positions. ``detail`` says more in words.
    """

    TYPE: ClassVar[str] = "process_alert"
    program: str
    group: str
    event: Literal["exited", "backoff", "fatal", "hung", "orphaned"]
    from_state: str
    expected: bool = False
    pid: int = 0
    detail: str = ""


# --- market data -------------------------------------------------------------------------------


class Quote(Message):
    """Top of book. ``ts_ns`` is the venue's event time; ``venue_seq`` counts per symbol at the venue."""

    TYPE: ClassVar[str] = "quote"
    symbol: MarketSymbol
    bid: float
    ask: float
    bid_size: float
    ask_size: float
    ts_ns: int
    venue: MarketName = ""

    def __post_init__(self) -> None:
        check_market_names(self.symbol, self.venue)


class Trade(Message):
    """A trade printed at the venue, on ``md.<symbol>``."""

    TYPE: ClassVar[str] = "trade"
    symbol: MarketSymbol
    price: float
    size: float
    side: Side
    ts_ns: int
    venue: MarketName = ""

    def __post_init__(self) -> None:
        check_market_names(self.symbol, self.venue)


class BadMarketData(Message):
    """Published by the data router for every update it refused to pass on, with the reason."""

    TYPE: ClassVar[str] = "bad_market_data"
    symbol: SymbolOrAll
    reason: str
    detail: str


# --- orders and fills ---------------------------------------------------------------------------


class OrderUpdate(Message):
    """One step in an order's life, as the exchange manager's book of record (or a venue) sees it."""

    TYPE: ClassVar[str] = "order_update"
    client_order_id: OrderId
    symbol: Symbol
    side: Side
    qty: Quantity
    order_type: Literal["market", "limit"]
    limit_price: Price | None
    status: OrderStatus
    filled_qty: QuantityOrZero
    avg_fill_price: PriceOrZero
    venue_order_id: OptionalId = ""
    reason: str = ""
    strategy: Name = ""
    connector: Name = ""
    ts_ns: int = 0
    reduce_only: bool = False


class Fill(Message):
    """An execution of one of our orders, on ``fills`` (from the venue and from the exchange manager's book)."""

    TYPE: ClassVar[str] = "fill"
    fill_id: OrderId
    client_order_id: OrderId
    symbol: Symbol
    side: Side
    qty: Quantity
    price: Price
    fee: Amount  # negative: a rebate
    ts_ns: int
    strategy: Name = ""
    connector: Name = ""
    # The venue's number for this fill (from 1 in each venue session; 0: not numbered): the
    # exchange manager asks a venue only for the fills after the last number it has applied.
    venue_seq: Count = 0


class GovernanceEvent(Message):
    """A refusal or limit decision: the pre-trade gate refusing an order, a mode change, ..."""

    TYPE: ClassVar[str] = "governance_event"
    kind: str
    reason: str
    symbol: SymbolOrAll = ""
    detail: dict[str, Any] = {}


MESSAGE_TYPES: tuple[type[Message], ...] = (
    Heartbeat,
    StateChanged,
    Command,
    Reply,
    CommandAudit,
    SafetyEvent,
    ConnectorHealthEvent,
    EngineHealthEvent,
    ProcessHealthEvent,
    ProcessAlert,
    Quote,
    Trade,
    BadMarketData,
    SessionTime,
    OrderUpdate,
    Fill,
    GovernanceEvent,
)
