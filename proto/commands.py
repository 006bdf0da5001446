"""Command names, their argument schemas, and the one reply shape.

A command travels as a ``proto.messages.Command`` (``id``, ``name``, ``args``); its ``args`` map is
validated here against the schema registered for its name, so a handler only ever sees typed,
checked arguments. Every reply is built by ``ok(...)`` or ``error(reason)``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from proto.errors import ProtocolError
from proto.fields import Name, OptionalId, OrderId, Price, Quantity, Symbol
from proto.limits import MAX_LIST_ITEMS, clip
from proto.messages import Reply
from proto.session import Side
from proto.venue_reports import MAX_FILL_PAGE, MAX_ORDER_ID_PAGE, MAX_ORDER_STATUS_IDS


class Args(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every argument schema; a command without arguments uses ``NoArgs``."""


class NoArgs(Args):
    pass


class ReasonArgs(Args):
    reason: str = "operator request"  # cut to proto.limits.MAX_TEXT_CHARS (parse_args)


class FailsafeArgs(Args):
    reason: str  # cut to proto.limits.MAX_TEXT_CHARS (parse_args)


class OrderArgs(Args):
    """An order intent, as the engine (or an operator) asks the exchange manager for it
    (``submit_order``). The engine sends this struct as it is; the exchange manager's book keeps
    it, under its client order id, as ``NewOrderArgs``: one shape from the strategy to the venue."""

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
    client_order_id: OrderId


class SymbolArgs(Args):
    symbol: Symbol | None = None  # None = every symbol


class FlattenArgs(SymbolArgs):
    # The exchange manager cancels the open orders (of the symbol) at every venue before it sizes
    # the flatten; False skips that when the caller has just cancelled them itself (the failsafe's
    # own cancel step: one cancel_all per round). The orchestrator's ``flatten`` ignores it.
    cancel_first: bool = True


class SymbolsArgs(Args):
    symbols: Annotated[list[Symbol], msgspec.Meta(max_length=MAX_LIST_ITEMS)]


class ModeArgs(Args):
    mode: Literal["normal", "reduce_only", "halt"]
    reason: str = ""


class FaultArgs(Args):
    """Venue simulator fault injection, for tests and demos."""

    fault: Literal["drop_connection", "stop_feed", "resume_feed", "latency", "reject_all", "jump_price", "clear"]
    symbol: Symbol | None = None
    value: float = 0.0  # latency in ms, jump in percent
    duration_s: float = 0.0  # drop_connection: how long the venue stays away


class FillsSinceArgs(Args):
    """A venue's fills after the number ``after_seq`` (``proto.venue_reports.FillPage``)."""

    after_seq: Annotated[int, msgspec.Meta(ge=0)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_FILL_PAGE)] = 500


class OrderStatusArgs(Args):
    """The fate of these client order ids at a venue (``proto.venue_reports.OrderStatusReports``)."""

    client_order_ids: Annotated[list[str], msgspec.Meta(max_length=MAX_ORDER_STATUS_IDS)]


class OrdersReceivedArgs(Args):
    """The client order ids a venue received, after arrival index ``after`` (``OrderIdPage``)."""

    after: Annotated[int, msgspec.Meta(ge=0)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_ORDER_ID_PAGE)] = MAX_ORDER_ID_PAGE


class SessionArgs(Args):
    session_id: OptionalId = ""  # "" the current session


class LatencyArgs(Args):
    reset: bool = False  # clear the samples after reading them


ARG_SCHEMAS: dict[str, type[Args]] = {
    # every service
    "status": NoArgs,
    # orchestrator: the operators' control API
    "state": NoArgs,
    "stats": NoArgs,
    "open": ReasonArgs,
    "close": ReasonArgs,
    "recover": NoArgs,
    "failsafe": FailsafeArgs,
    "reset": ReasonArgs,
    "shutdown": ReasonArgs,
    # engine and exchange manager: orders from the orchestrator
    "enable_trading": ReasonArgs,
    "disable_trading": ReasonArgs,
    # exchange manager: orders, positions, the gate's mode
    "submit_order": OrderArgs,
    "cancel_order": CancelArgs,
    "cancel_all": SymbolArgs,
    "flatten": FlattenArgs,
    "positions": NoArgs,
    "orders": NoArgs,
    "strategy_book": NoArgs,
    "set_mode": ModeArgs,
    "reconcile": NoArgs,
    "reconciliation": NoArgs,
    "session_stats": SessionArgs,
    # exchange manager and venue: the instrument specifications (proto.instruments)
    "instruments": NoArgs,
    # venue (simulator): order entry and fault injection
    "new_order": NewOrderArgs,
    "open_orders": NoArgs,
    "mass_status": NoArgs,
    "fills_since": FillsSinceArgs,
    "order_status": OrderStatusArgs,
    "orders_received": OrdersReceivedArgs,
    "fault": FaultArgs,
    "latency": LatencyArgs,
    # data router
    "subscribe": SymbolsArgs,
    "unsubscribe": SymbolsArgs,
    # safety: the conditions that hold now (``reset`` above is shared with the orchestrator)
    "conditions": NoArgs,
}


# Commands that change nothing: a repeated query is simply run again (a fresh answer), so servers
# keep no reply of theirs for retries. Every other command runs at most once per command id.
QUERIES: frozenset[str] = frozenset({
    "status", "state", "stats", "positions", "orders", "strategy_book", "reconciliation", "open_orders",
    "instruments", "session_stats", "mass_status", "fills_since", "order_status", "orders_received", "conditions",
})
assert QUERIES <= ARG_SCHEMAS.keys()


class CommandError(Exception):
    """Raised by a handler to refuse a command; the reason goes back to the caller verbatim."""


# Free-text fields, cut to proto.limits.MAX_TEXT_CHARS rather than refused (see there).
_TEXT_FIELDS: dict[type[Args], tuple[str, ...]] = {
    schema: tuple(f for f in schema.__struct_fields__ if f == "reason") for schema in set(ARG_SCHEMAS.values())}


def parse_args(name: str, args: dict[str, Any]) -> Args:
    schema = ARG_SCHEMAS.get(name)
    if schema is None:
        raise ProtocolError("unknown_command", f"unknown command {name!r}")
    try:
        parsed = msgspec.convert(args, schema)
    except msgspec.ValidationError as exc:
        raise ProtocolError("invalid", f"{name}: {exc}") from None
    for field in _TEXT_FIELDS[schema]:
        setattr(parsed, field, clip(getattr(parsed, field)))
    return parsed


def ok(command_id: str, /, **result: Any) -> Reply:
    return Reply(id=command_id, ok=True, result=result)


def error(command_id: str, reason: str) -> Reply:
    return Reply(id=command_id, ok=False, error=reason)
