"""The exchange manager's commands: orders, positions, the gate's mode and trading switch."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import proto
from bus.command_server import Deferred, Handler
from proto.commands import CancelArgs, Flatten, ModeArgs, NoArgs, OrderArgs, SessionArgs, SymbolArgs
from proto.commands.results import OrderAccepted
from services.session_follower import trading_handlers

if TYPE_CHECKING:
    from services.exchange_manager.main import ExchangeManager


def build_handlers(em: "ExchangeManager") -> dict[str, Handler]:
    from services.exchange_manager.main import Refused

    def submit_order(args: OrderArgs) -> dict[str, Any]:
        """``submit_order``: check an order at the pre-trade gate and send it to its venue.

        Wire: ``Command(name="submit_order", args={symbol, side, qty, order_type="market",
        limit_price=None, strategy="", reduce_only=False, connector=""})`` →
        ``ok(client_order_id)`` or ``error(reason)`` (the refusal is also a governance event).
        """
        try:
            record = em.submit(args)
        except Refused as exc:
            raise proto.CommandError(str(exc)) from None
        return OrderAccepted(client_order_id=record.client_order_id)  # the hot path: a struct, no check

    def cancel_order(args: CancelArgs) -> dict[str, Any]:
        """``cancel_order``: ask the venue to cancel one open order → ``ok(client_order_id)``."""
        try:
            em.cancel(args.client_order_id)
        except Refused as exc:
            raise proto.CommandError(str(exc)) from None
        return OrderAccepted(client_order_id=args.client_order_id)

    def cancel_all(args: SymbolArgs) -> dict[str, Any]:
        """``cancel_all``: cancel every open order (of one symbol) at every connected venue."""
        return {"venues": em.cancel_all(args.symbol)}

    def flatten(args: Flatten) -> dict[str, Any]:
        """``flatten``: cancel open orders, then reduce-only market orders against every position.

        Wire: ``Command(name="flatten", args={"symbol": str | None, "cancel_first": bool = True})``
        → ``ok(orders=[client ids])``; ``cancel_first=False`` when the caller has just cancelled
        (the failsafe's round: one ``cancel_all`` per round). CLI: ``tradectl flatten [--symbol S]``
        (through the orchestrator).
        """
        try:
            return {"orders": em.flatten(args.symbol, cancel_first=args.cancel_first)}
        except Refused as exc:
            raise proto.CommandError(str(exc)) from None

    def positions(_: NoArgs) -> dict[str, Any]:
        """``positions`` → ``ok(positions={symbol: {qty, avg_price, realized_pnl, unrealized_pnl,
        fees, volume, mark}})``.  CLI: ``tradectl positions [--json]``."""
        return {"positions": em.position_table()}

    def session_stats(args: SessionArgs) -> dict[str, Any]:
        """``session_stats``: the session's counters per symbol and their totals
        (``session_ledger.py``): what the end-of-day report and the incident report show.

        Wire: ``Command(name="session_stats", args={"session_id": str = ""})`` → ``ok(session_id,
        started_ns, symbols={symbol: {opening_qty, opening_mark, opening_mark_source, orders,
        rejected, fills, volume, fees, realized_pnl, unrealized_pnl, final_qty, mark, corrections}},
        totals={orders, rejected, fills, volume, fees, realized_pnl, unrealized_pnl})`` for the
        current session ("") or an ended one the journal still holds, else ``error``.
        CLI: ``tradectl stats`` shows the current session's totals.
        """
        report = em.session_report(args.session_id)
        if report is None:
            raise proto.CommandError(f"no counters for session {args.session_id!r}")
        return report

    def orders(_: NoArgs) -> dict[str, Any]:
        """``orders`` → ``ok(orders=[...])``: open orders first, then the latest closed ones.
        CLI: ``tradectl orders [--json]``."""
        records = sorted(em.book.orders.values(), key=lambda o: (not o.status.is_open, -o.updated_ns))
        return {"orders": [o.to_dict() for o in records[:500]]}

    def strategy_book(_: NoArgs) -> dict[str, Any]:
        """``strategy_book``: what a (re)starting engine takes as its strategies' state (the Clone
        pattern: it subscribes first, then asks this, then applies the streams after it).

        Wire: ``Command(name="strategy_book")`` → ``ok(epoch, seqs={"orders": int, "fills": int},
        strategies={name: {"positions": {symbol: qty}, "open_orders": [OrderUpdate]}})``: each strategy's
        positions as the book attributes its fills (``strategy_positions.py``), its open orders, and
        the last sequence number of the ``orders`` and ``fills`` streams in this ``epoch``: the
        answer contains every message up to those.
        """
        books: dict[str, dict[str, Any]] = {name: {"positions": em.strategy_positions.of(name), "open_orders": []}
                                            for name in em.strategy_positions.held}
        for record in em.book.open_orders():
            books.setdefault(record.strategy, {"positions": em.strategy_positions.of(record.strategy),
                                               "open_orders": []})["open_orders"].append(
                proto.to_builtins(record.message()))
        publisher = em.runtime.publisher
        return {"epoch": publisher.epoch, "strategies": books,
                "seqs": {topic: publisher.last_seq(topic) for topic in (proto.topics.ORDERS, proto.topics.FILLS)}}

    def set_mode(args: ModeArgs) -> dict[str, Any]:
        """``set_mode``: the operator's mode for the gate: ``normal``, ``reduce_only`` or ``halt``.
        The stricter of this and the session's (``reduce_only`` while DEGRADED by default) applies."""
        em.gate.operator_mode = args.mode
        em.runtime.publisher.publish(proto.topics.GOVERNANCE, proto.GovernanceEvent(
            kind="gate_mode", reason=args.reason or f"mode set to {args.mode}", detail={"mode": args.mode}))
        return {"mode": em.gate.mode}

    def instruments(_: NoArgs) -> dict[str, Any]:
        """``instruments``: each venue's instrument specifications as last loaded (on every
        connection), what the gate checks orders against. The engine asks it to check and round
        its strategies' orders. CLI: ``tradectl instruments [--json]``.

        Wire: ``Command(name="instruments")`` → ``ok(**InstrumentBook)``: ``default_connector``,
        ``connectors={name: InstrumentList(venue, instruments=[Instrument])}``, ``pending=[names
        whose list is not loaded since their latest connection]`` (``proto/instruments.py``).
        """
        return proto.to_builtins(em.instruments.book())

    def reconcile(_: NoArgs) -> Deferred:
        """``reconcile``: reconcile with every connected venue; the reply comes once those runs
        have ended → ``ok(runs={connector: run}, outcomes={connector: outcome})``: the run whose
        outcome answers this request (one already out is not started twice: the request joins the
        next run) and that outcome (as ``reconciliation`` gives it); ``error`` if a run has not ended
        within ``venue_watch.REPLY_WITHIN_S``. No venue connected: ``ok(runs={}, outcomes={})`` at once.
        """
        return em.venue_watch.when_done({name: em.venue_watch.request(connector)
                                         for name, connector in em.connectors.items()
                                         if connector.is_connected_check()})

    def reconciliation(_: NoArgs) -> dict[str, Any]:
        """``reconciliation`` → ``ok(outcomes={connector: {run, ok, stale, venue_positions,
        venue_open_orders, in_flight, adopted, resolved, position_mismatches, error, duration_ms,
        fill_pages, fills_fetched, largest_reply_bytes}})``: the latest outcome per connector."""
        return {"outcomes": {name: asdict(o) for name, o in em.reconciler.outcomes.items()}}

    return {"instruments": instruments, "reconcile": reconcile, "reconciliation": reconciliation, "submit_order": submit_order, "cancel_order": cancel_order, "cancel_all": cancel_all,
            "flatten": flatten, "positions": positions, "orders": orders, "session_stats": session_stats, "strategy_book": strategy_book,
            "set_mode": set_mode,
            **trading_handlers(em.session)}
