"""Every command's request: its arguments, strictly typed, and its wire name (``NAME``).

Shapes that several commands share are bases (``NoArgs``, ``ReasonArgs``, ``SymbolArgs``); each
command has its own class, so a request names its command (``client.call(Failsafe(reason=...))``).
The first paragraph of each command's docstring is its line in ``docs/protocol.md`` and ``tradectl
call --list``.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec

from proto.commands.base import Args
from proto.fields import Name, OptionalId, OrderId, Price, Quantity, Symbol
from proto.limits import MAX_LIST_ITEMS
from proto.session import Side
from proto.venue_reports import MAX_FILL_PAGE, MAX_ORDER_ID_PAGE, MAX_ORDER_STATUS_IDS


class NoArgs(Args):
    pass


class ReasonArgs(Args):
    reason: str = "operator request"  # cut to proto.limits.MAX_TEXT_CHARS (parse_args)


class Failsafe(Args):
    """Stop trading now: LIVE/DEGRADED -> FAILSAFE and the failsafe sequence; in FAILSAFE, a round of it now."""

    NAME: ClassVar[str] = "failsafe"
    reason: str  # cut to proto.limits.MAX_TEXT_CHARS (parse_args)


class OrderArgs(Args):
    """An order intent, as the engine (or an operator) asks the exchange manager for it
    (``submit_order``). The engine sends this struct as it is; the exchange manager's book keeps
    it, under its client order id, as ``NewOrderArgs``: one shape from the strategy to the venue."""

    NAME: ClassVar[str] = "submit_order"

    symbol: Symbol
    side: Side
    qty: Quantity
    order_type: Literal["market", "limit"] = "market"
    limit_price: Price | None = None
    strategy: Name = ""
    # Only what reduces the position: the gate refuses the order if it would open or increase one,
    # and the venue executes only what reduces it at execution time, rejecting it if nothing would
    # and cancelling the rest once the position is closed (as venues' reduce-only flag does), so a
    # flatten racing a fill never reverses a position.
    reduce_only: bool = False
    connector: Name = ""  # "" = the default connector
    # The venue timestamp of the market data that triggered this order (0: none), carried to the
    # venue so tick-to-order latency is measured on every order.
    origin_ts_ns: int = 0


class NewOrderArgs(OrderArgs, kw_only=True):
    """An order as the exchange manager sends it to a venue (``new_order``): the intent, with its
    connector chosen and its unique client order id. The same struct is the book of record's
    ``OrderRecord.order``, journalled and sent as it is; a venue ignores ``strategy`` and
    ``connector`` (ours, not its)."""

    NAME: ClassVar[str] = "new_order"
    client_order_id: OrderId

    @classmethod
    def of(cls, intent: OrderArgs, client_order_id: str, connector: str) -> "NewOrderArgs":
        # Field by field: five times faster than through ``msgspec.structs.asdict`` on the hot path
        # (tests/unit/test_order_book.py checks that every field of the intent is carried).
        i = intent
        return cls(client_order_id=client_order_id, symbol=i.symbol, side=i.side, qty=i.qty, order_type=i.order_type,
                   limit_price=i.limit_price, strategy=i.strategy, reduce_only=i.reduce_only, connector=connector,
                   origin_ts_ns=i.origin_ts_ns)


class CancelArgs(Args):
    """Cancel one open order by its client order id."""

    NAME: ClassVar[str] = "cancel_order"
    client_order_id: OrderId


class SymbolArgs(Args):
    symbol: Symbol | None = None  # None = every symbol


class SymbolsArgs(Args):
    symbols: Annotated[list[Symbol], msgspec.Meta(max_length=MAX_LIST_ITEMS)]


class ModeArgs(Args):
    """The operator's mode for the gate: normal, reduce_only or halt (the stricter of it and the session's applies)."""

    NAME: ClassVar[str] = "set_mode"
    mode: Literal["normal", "reduce_only", "halt"]
    reason: str = ""


class FaultArgs(Args):
    """Venue simulator fault injection, for tests and demos."""

    NAME: ClassVar[str] = "fault"

    fault: Literal["drop_connection", "stop_feed", "resume_feed", "latency", "reject_all", "jump_price", "clear",
                   "rate_limit"]
    symbol: Symbol | None = None
    value: float = 0.0  # latency in ms, jump in percent
    # drop_connection: how long the venue stays away; rate_limit: how long its exchange API answers
    # 429 (the CLI's default too)
    duration_s: float = 5.0


class FillsSinceArgs(Args):
    """A venue's fills after the number ``after_seq`` (``proto.venue_reports.FillPage``)."""

    NAME: ClassVar[str] = "fills_since"

    after_seq: Annotated[int, msgspec.Meta(ge=0)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_FILL_PAGE)] = 500


class OrderStatusArgs(Args):
    """The fate of these client order ids at a venue (``proto.venue_reports.OrderStatusReports``)."""

    NAME: ClassVar[str] = "order_status"

    client_order_ids: Annotated[list[str], msgspec.Meta(max_length=MAX_ORDER_STATUS_IDS)]


class OrdersReceivedArgs(Args):
    """The client order ids a venue received, after arrival index ``after`` (``OrderIdPage``)."""

    NAME: ClassVar[str] = "orders_received"

    after: Annotated[int, msgspec.Meta(ge=0)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_ORDER_ID_PAGE)] = MAX_ORDER_ID_PAGE


class SessionArgs(Args):
    """The session's counters per symbol and their totals (the current session, or an ended one the journal holds)."""

    NAME: ClassVar[str] = "session_stats"
    session_id: OptionalId = ""  # "" the current session


class LatencyArgs(Args):
    """Tick-to-order latency over the orders that carried an origin timestamp (p50/p99/p99.9 in microseconds)."""

    NAME: ClassVar[str] = "latency"
    reset: bool = False  # clear the samples after reading them




# --- one class per command whose arguments have a shape another command shares -----------------


class Status(NoArgs):
    """The service's identity, liveness and counters (the orchestrator adds the session and every process)."""

    NAME: ClassVar[str] = "status"


class State(NoArgs):
    """The session state's lower-case name and the session id."""

    NAME: ClassVar[str] = "state"


class Stats(NoArgs):
    """Session counters: duration, transitions, degradations, safety events, failsafe activations, PnL."""

    NAME: ClassVar[str] = "stats"


class Open(ReasonArgs):
    """The market-open signal: READY -> LIVE, refused unless every process is healthy and reconciled."""

    NAME: ClassVar[str] = "open"


class Close(ReasonArgs):
    """Market close: flatten, end the session (-> SHUTDOWN), write the end-of-day report, archive the logs."""

    NAME: ClassVar[str] = "close"


class Recover(NoArgs):
    """DEGRADED -> LIVE once every process is healthy and nothing holds; refused with every reason otherwise."""

    NAME: ClassVar[str] = "recover"


class Reset(ReasonArgs):
    """Orchestrator: FAILSAFE -> READY once the venue is verified flat. Safety: forget cool-downs, report what holds."""

    NAME: ClassVar[str] = "reset"


class Shutdown(ReasonArgs):
    """End the session (-> SHUTDOWN): trading stops everywhere; the processes stay up."""

    NAME: ClassVar[str] = "shutdown"


class EnableTrading(ReasonArgs):
    """Lift a disable; trading still needs a LIVE session and a live orchestrator."""

    NAME: ClassVar[str] = "enable_trading"


class DisableTrading(ReasonArgs):
    """Stop trading now and stay stopped until told to enable again."""

    NAME: ClassVar[str] = "disable_trading"


class CancelAll(SymbolArgs):
    """Cancel every open order (of one symbol, or every symbol)."""

    NAME: ClassVar[str] = "cancel_all"


class Flatten(SymbolArgs):
    """Cancel open orders, then reduce-only market orders against every position (of one symbol)."""

    NAME: ClassVar[str] = "flatten"
    # The exchange manager cancels the open orders (of the symbol) at every venue before it sizes
    # the flatten; False skips that when the caller has just cancelled them itself (the failsafe's
    # own cancel step: one cancel_all per round). The orchestrator's ``flatten`` ignores it.
    cancel_first: bool = True


class Positions(NoArgs):
    """Positions and PnL per symbol."""

    NAME: ClassVar[str] = "positions"


class Orders(NoArgs):
    """The book of record's orders: open ones first, then the latest closed ones (at most 500)."""

    NAME: ClassVar[str] = "orders"


class StrategyBook(NoArgs):
    """Each strategy's positions and open orders, with the stream sequence numbers they include."""

    NAME: ClassVar[str] = "strategy_book"


class Reconcile(NoArgs):
    """Reconcile with every connected venue now; the reply comes when those runs have ended, with their outcomes."""

    NAME: ClassVar[str] = "reconcile"


class Reconciliation(NoArgs):
    """The latest reconciliation outcome per connector."""

    NAME: ClassVar[str] = "reconciliation"


class Instruments(NoArgs):
    """The instrument specifications (tick, lot, minimums) orders are checked against."""

    NAME: ClassVar[str] = "instruments"


class OpenOrders(NoArgs):
    """What the venue holds open, with the number of its last fill."""

    NAME: ClassVar[str] = "open_orders"


class MassStatusQuery(NoArgs):
    """Open orders and positions in one snapshot, with the number of the last fill it includes."""

    NAME: ClassVar[str] = "mass_status"


class Conditions(NoArgs):
    """Every detector's condition that holds now (what keeps the session from recovering)."""

    NAME: ClassVar[str] = "conditions"


class Subscribe(SymbolsArgs):
    """Route these symbols too (refused past data_router.max_symbols)."""

    NAME: ClassVar[str] = "subscribe"


class Unsubscribe(SymbolsArgs):
    """Stop routing these symbols."""

    NAME: ClassVar[str] = "unsubscribe"
