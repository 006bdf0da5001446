"""Every command of every service, each in one line: the one place a command is declared.

Servers refuse to serve a command that is not here (``CommandServer``); clients type their replies
with it (``bus.CommandClient.request``); ``tradectl call`` and ``docs/protocol.md`` list it. A new
command is a request class (``requests.py``), a result class (``results.py``) if none fits, one
line here and its handler.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from proto.commands import requests as rq
from proto.commands import results as rs
from proto.commands.base import ANYONE, CONTROL, ENGINE, EXCHANGE_MANAGER, OPERATOR, ORCHESTRATOR, Args, CommandSpec
from proto.errors import ProtocolError
from proto.instruments import InstrumentBook, InstrumentList
from proto.limits import clip
from proto.venue_reports import FillPage, MassStatus, OrderIdPage, OrderStatusReports

SERVICES = ("orchestrator", "exchange_manager", "engine", "data_router", "safety", "venue_sim")
# The venue takes orders from the exchange manager alone (through its gate); cancels, steps toward
# safety, from operators and the orchestrator too.
_VENUE_ORDERS = frozenset({EXCHANGE_MANAGER})
_VENUE_CANCELS = frozenset({EXCHANGE_MANAGER, OPERATOR, ORCHESTRATOR})


def _spec(service: str, request: type[Args], result: type[Any], *, query: bool = False,
          callers: frozenset[str] = CONTROL, cli: str = "") -> CommandSpec:
    return CommandSpec(service, request, result, query=query, callers=callers, cli=cli)


def _queries(service: str, *pairs: tuple[type[Args], type[Any], str]) -> list[CommandSpec]:
    return [_spec(service, request, result, query=True, callers=ANYONE, cli=cli) for request, result, cli in pairs]


SPECS: tuple[CommandSpec, ...] = (
    # every service answers status
    *(_spec(s, rq.Status, rs.ProcessStatus, query=True, callers=ANYONE) for s in SERVICES if s != "orchestrator"),
    # orchestrator: the operators' control API
    *_queries("orchestrator",
              (rq.Status, rs.OrchestratorStatus, "tradectl status [--json]"),
              (rq.State, rs.SessionState, "tradectl state [--json]"),
              (rq.Stats, rs.SessionStatsResult, "tradectl stats [--json]")),
    _spec("orchestrator", rq.Open, rs.Transition, cli="tradectl open"),
    _spec("orchestrator", rq.Close, rs.CloseResult, cli="tradectl close"),
    _spec("orchestrator", rq.Recover, rs.Transition, cli="tradectl recover"),
    _spec("orchestrator", rq.Failsafe, rs.Transition, cli="tradectl failsafe --reason TEXT [--wait]"),
    _spec("orchestrator", rq.Reset, rs.Transition, cli="tradectl reset"),
    _spec("orchestrator", rq.Shutdown, rs.CloseResult, cli="tradectl shutdown"),
    _spec("orchestrator", rq.Flatten, rs.FlattenResult, cli="tradectl flatten [--symbol S]"),
    # the trading processes' switch, thrown by the orchestrator
    *(_spec(s, request, rs.TradingSwitch, callers=CONTROL)
      for s in ("engine", "exchange_manager") for request in (rq.EnableTrading, rq.DisableTrading)),
    # exchange manager: orders, positions, the gate's mode
    _spec("exchange_manager", rq.OrderArgs, rs.OrderAccepted, callers=frozenset({OPERATOR, ENGINE})),
    _spec("exchange_manager", rq.CancelArgs, rs.OrderAccepted, callers=frozenset({OPERATOR, ENGINE, ORCHESTRATOR})),
    _spec("exchange_manager", rq.CancelAll, rs.CancelsSent, callers=frozenset({OPERATOR, ENGINE, ORCHESTRATOR}),
          cli="tradectl cancel-all [--symbol S]"),
    _spec("exchange_manager", rq.Flatten, rs.OrdersSent, callers=frozenset({OPERATOR, ENGINE, ORCHESTRATOR})),
    _spec("exchange_manager", rq.ModeArgs, rs.GateMode, cli="tradectl set-mode MODE [--reason TEXT]"),
    _spec("exchange_manager", rq.Reconcile, rs.ReconcileRuns, cli="tradectl reconcile"),
    *_queries("exchange_manager",
              (rq.Positions, rs.PositionTable, "tradectl positions [--json]"),
              (rq.Orders, rs.OrderTable, "tradectl orders [--all] [--json]"),
              (rq.StrategyBook, rs.StrategyBookResult, ""),
              (rq.Reconciliation, rs.ReconciliationOutcomes, "tradectl reconcile --show"),
              (rq.SessionArgs, rs.SessionCounters, ""),
              (rq.Instruments, InstrumentBook, "tradectl instruments [--json]")),
    # venue (simulator): order entry, reports for reconciliation, fault injection
    _spec("venue_sim", rq.NewOrderArgs, rs.VenueOrder, callers=_VENUE_ORDERS),
    _spec("venue_sim", rq.CancelArgs, rs.VenueCancel, callers=_VENUE_CANCELS),
    _spec("venue_sim", rq.CancelAll, rs.VenueCancelAll, callers=_VENUE_CANCELS),
    _spec("venue_sim", rq.FaultArgs, rs.FaultInjected, callers=frozenset({OPERATOR}),
          cli="tradectl venue fault FAULT [--symbol S] [--value X] [--duration S]"),
    *_queries("venue_sim",
              (rq.OpenOrders, rs.VenueOpenOrders, ""),
              (rq.Positions, rs.VenuePositions, ""),
              (rq.MassStatusQuery, MassStatus, ""),
              (rq.FillsSinceArgs, FillPage, ""),
              (rq.OrderStatusArgs, OrderStatusReports, ""),
              (rq.OrdersReceivedArgs, OrderIdPage, ""),
              (rq.Instruments, InstrumentList, "")),
    # latency reads and may clear the samples: not a query (a retry must not clear twice)
    _spec("venue_sim", rq.LatencyArgs, rs.LatencyFigures, callers=frozenset({OPERATOR})),
    # data router
    _spec("data_router", rq.Subscribe, rs.Subscribed, callers=frozenset({OPERATOR, ENGINE, ORCHESTRATOR})),
    _spec("data_router", rq.Unsubscribe, rs.Unsubscribed, callers=frozenset({OPERATOR, ENGINE, ORCHESTRATOR})),
    # safety
    _spec("safety", rq.Reset, rs.SafetyReset),
    *_queries("safety", (rq.Conditions, rs.HeldConditions, "tradectl safety status")),
)


def _index(specs: Iterable[CommandSpec]) -> dict[tuple[str, str], CommandSpec]:
    index: dict[tuple[str, str], CommandSpec] = {}
    requests: dict[str, type[Args]] = {}
    for spec in specs:
        if (spec.service, spec.name) in index:
            raise RuntimeError(f"command {spec.name!r} of {spec.service} declared twice")
        # One name, one request shape, whichever service serves it: a caller's arguments never
        # depend on where they go.
        if requests.setdefault(spec.name, spec.request) is not spec.request:
            raise RuntimeError(f"command {spec.name!r} has two request classes")
        index[(spec.service, spec.name)] = spec
    return index


BY_SERVICE = _index(SPECS)
ARG_SCHEMAS: dict[str, type[Args]] = {spec.name: spec.request for spec in SPECS}
# Commands that change nothing: a repeated query is simply run again (a fresh answer), so servers
# keep no reply of theirs for retries. Every other command runs at most once per command id.
QUERIES: frozenset[str] = frozenset(spec.name for spec in SPECS if spec.query)
# A name is a query everywhere or nowhere (the server's cache decision reads the name).
assert not QUERIES & {spec.name for spec in SPECS if not spec.query}

# Free-text fields, cut to proto.limits.MAX_TEXT_CHARS rather than refused (see there).
_TEXT_FIELDS: dict[type[Args], tuple[str, ...]] = {
    schema: tuple(f for f in schema.__struct_fields__ if f == "reason") for schema in ARG_SCHEMAS.values()}


def spec_of(service: str, name: str) -> CommandSpec | None:
    return BY_SERVICE.get((service, name))


def served_by(service: str) -> list[CommandSpec]:
    return [spec for spec in SPECS if spec.service == service]


def parse_args(name: str, args: dict[str, Any]) -> Args:
    """``args`` validated into the command's request; ``ProtocolError`` if they are not one."""
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


def args_of(request: Args) -> dict[str, Any]:
    """A request's arguments as the ``Command``'s ``args`` map."""
    return {name: getattr(request, name) for name in request.__struct_fields__}


def check_result(spec: CommandSpec, result: Any) -> Any:
    """A handler's result as its spec's result type, strictly: a field the type lacks, a missing
    one or a wrong type is the handler's bug (``ProtocolError``), caught before it reaches a peer
    who would read a renamed key as 0."""
    if isinstance(result, spec.result):
        return result
    if isinstance(result, dict):
        unknown = result.keys() - set(spec.result.__struct_fields__)
        if unknown:
            raise ProtocolError("invalid", f"{spec.name} result: fields {sorted(unknown)} not in {spec.result.__name__}")
    try:
        return msgspec.convert(result, spec.result, from_attributes=not isinstance(result, dict))
    except msgspec.ValidationError as exc:
        raise ProtocolError("invalid", f"{spec.name} result: {exc}") from None


def read_result(spec: CommandSpec, result: dict[str, Any]) -> Any:
    """A reply's result read into its spec's type (unknown fields ignored); ``ProtocolError`` if not one."""
    try:
        return msgspec.convert(result, spec.result)
    except msgspec.ValidationError as exc:
        raise ProtocolError("invalid", f"{spec.name} result: {exc}") from None
