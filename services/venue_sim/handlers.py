"""The venue simulator's order entry and fault injection commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import proto
from bus.command_server import Handler
from proto.commands import CancelArgs, FaultArgs, LatencyArgs, NewOrderArgs, NoArgs, SymbolArgs

if TYPE_CHECKING:
    from services.venue_sim.main import Venue


def build_handlers(venue: "Venue") -> dict[str, Handler]:
    def new_order(args: NewOrderArgs) -> dict[str, Any]:
        """``new_order``: place an order under the caller's unique client order id.

        Wire: ``Command(name="new_order", args={client_order_id, symbol, side, qty, order_type,
        limit_price})`` → ``ok(order=OrderUpdate | None)``: the order's state after matching, or
        None while a latency is applied (the outcome then comes on the ``orders``/``fills`` topics).
        Resending a known id executes nothing and reports the known order.
        """
        return {"order": venue.submit(args)}

    def cancel_order(args: CancelArgs) -> dict[str, Any]:
        """``cancel_order``: cancel one open order → ``ok(cancelled=bool)``, or ``cancelled=None``
        while a latency is applied (the outcome then comes on the ``orders`` topic)."""
        return {"cancelled": venue.cancel(args.client_order_id)}

    def cancel_all(args: SymbolArgs) -> dict[str, Any]:
        """``cancel_all``: cancel every open order (of one symbol) → ``ok(cancelled=[ids])``, or
        ``cancelled=None`` while a latency is applied."""
        return {"cancelled": venue.cancel_all(args.symbol)}

    def open_orders(_: NoArgs) -> dict[str, Any]:
        """``open_orders`` → ``ok(orders=[OrderUpdate])``: what the venue holds open, for reconciliation."""
        return {"orders": [proto.to_builtins(o.update(venue.matcher.venue)) for o in venue.matcher.open_orders()]}

    def positions(_: NoArgs) -> dict[str, Any]:
        """``positions`` → ``ok(positions={symbol: {qty, avg_price, realized_pnl, fees, volume}})``."""
        return {"positions": {s: p.to_dict() for s, p in venue.matcher.positions.items()}}

    def fills(_: NoArgs) -> dict[str, Any]:
        """``fills`` → ``ok(fills=[Fill], client_order_ids=[every id ever received], duplicate_ids=int,
        positions={symbol: {...}})``: the positions those very fills add up to, in the same reply,
        so a reconciliation can take them as the truth without a fill falling between two answers."""
        m = venue.matcher
        return {"fills": [proto.to_builtins(f) for f in m.fills[-10_000:]],
                "client_order_ids": list(m.orders), "duplicate_ids": m.duplicate_ids,
                "positions": {s: p.to_dict() for s, p in m.positions.items()}}

    def instruments(_: NoArgs) -> dict[str, Any]:
        """``instruments`` → ``ok(**InstrumentList)``: ``venue`` and ``instruments=[Instrument]``, the
        specification of every symbol it trades (``proto/instruments.py``), which its matching
        enforces. The exchange manager loads it on every connection."""
        m = venue.matcher
        return proto.to_builtins(proto.InstrumentList(venue=m.venue, instruments=list(m.instruments.values())))

    def fault(args: FaultArgs) -> dict[str, Any]:
        """``fault``: inject a fault (tests, demos). CLI: ``tradectl venue fault FAULT [...]``.

        drop_connection(duration_s): close both sockets, rebind after duration_s.
        stop_feed / resume_feed: stop and resume market data (orders still work).
        latency(value=ms): add latency to order handling. reject_all: reject every order.
        jump_price(symbol, value=percent): move a price at once. clear: undo latency and reject_all.
        """
        return venue.inject(args)

    def latency(args: LatencyArgs) -> dict[str, Any]:
        """``latency`` → ``ok(count, p50_us, p99_us, p999_us)``: tick-to-order over the orders that
        carried ``origin_ts_ns`` (the benchmark reads it); ``ok(count=0)`` before any.
        ``args={"reset": true}`` clears the samples after reading them."""
        result = venue.tick_to_order()
        if args.reset:
            venue.tick_to_order_ns.clear()
        return result

    return {"instruments": instruments, "latency": latency, "new_order": new_order, "cancel_order": cancel_order, "cancel_all": cancel_all,
            "open_orders": open_orders, "positions": positions, "fills": fills, "fault": fault}
