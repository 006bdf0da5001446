"""The venue simulator's order entry and fault injection commands: the native face, which trades
the venue's ``NATIVE`` account (its queries show that account alone)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import proto
from bus.command_server import Handler
from proto.commands import (
    CancelArgs,
    FaultArgs,
    FillsSinceArgs,
    LatencyArgs,
    NewOrderArgs,
    NoArgs,
    OrdersReceivedArgs,
    OrderStatusArgs,
    SymbolArgs,
)
from proto.commands.results import VenueCancel, VenueOrder
from proto.venue_reports import MAX_OPEN_ORDERS
from services.venue_sim.matching import NATIVE

if TYPE_CHECKING:
    from services.venue_sim.main import Venue


def build_handlers(venue: "Venue") -> dict[str, Handler]:
    def new_order(args: NewOrderArgs) -> dict[str, Any]:
        """``new_order``: place an order under the caller's unique client order id.

        Wire: ``Command(name="new_order", args=NewOrderArgs{client_order_id, symbol, side, qty,
        order_type="market", limit_price=None, reduce_only=False, origin_ts_ns=0, strategy="",
        connector=""})`` (``strategy`` and ``connector`` are the sender's, ignored here) →
        ``ok(order=OrderUpdate | None)``: the order's state after matching, or None while a latency
        is applied (the outcome then comes on the ``orders``/``fills`` topics). Resending a known id
        executes nothing and reports the known order.
        """
        return VenueOrder(order=venue.submit(args))  # the hot path: a struct, no check

    def cancel_order(args: CancelArgs) -> dict[str, Any]:
        """``cancel_order``: cancel one open order → ``ok(cancelled=bool)``, or ``cancelled=None``
        while a latency is applied (the outcome then comes on the ``orders`` topic)."""
        return VenueCancel(cancelled=venue.cancel(args.client_order_id))

    def cancel_all(args: SymbolArgs) -> dict[str, Any]:
        """``cancel_all``: cancel every open order (of one symbol) → ``ok(cancelled=[ids])``, or
        ``cancelled=None`` while a latency is applied."""
        return {"cancelled": venue.cancel_all(args.symbol)}

    def open_orders(_: NoArgs) -> dict[str, Any]:
        """``open_orders`` → ``ok(orders=[OrderUpdate], fill_seq)``: what the venue holds open
        (tests and benchmarks read it; reconciliation asks ``mass_status``)."""
        m = venue.matcher
        return {"orders": [proto.to_builtins(o.update(m.venue)) for o in m.open_orders()], "fill_seq": len(m.native.fills)}

    def positions(_: NoArgs) -> dict[str, Any]:
        """``positions`` → ``ok(positions={symbol: {qty, avg_price, realized_pnl, fees, volume}}, fill_seq)``:
        the positions include exactly the fills up to ``fill_seq``."""
        account = venue.matcher.native
        return {"positions": {s: p.to_dict() for s, p in account.positions.items()}, "fill_seq": len(account.fills)}

    def mass_status(_: NoArgs) -> dict[str, Any]:
        """``mass_status`` → ``ok(MassStatus)``: open orders (at most ``MAX_OPEN_ORDERS``, with their
        total) and positions in one snapshot, with ``fill_seq``, the number of the last fill the
        positions include. Its size follows what is open now, never the session's history."""
        m = venue.matcher
        open_orders = m.open_orders()
        return proto.result_of(proto.MassStatus(
            session=m.session, fill_seq=len(m.native.fills),
            open_orders=[o.update(m.venue) for o in open_orders[:MAX_OPEN_ORDERS]],
            open_orders_total=len(open_orders),
            positions=[proto.PositionReport(symbol=s, **p.to_dict()) for s, p in m.native.positions.items()]))

    def fills_since(args: FillsSinceArgs) -> dict[str, Any]:
        """``fills_since`` → ``ok(FillPage)``: at most ``limit`` fills numbered after ``after_seq``,
        in order; ``more`` when others follow.

        Wire: ``Command(name="fills_since", args={after_seq=0, limit=500})``.
        """
        m, fills = venue.matcher, venue.matcher.native.fills
        page = fills[args.after_seq:args.after_seq + args.limit]  # fill n is fills[n - 1]
        return proto.result_of(proto.FillPage(session=m.session, fills=page, last_seq=len(fills),
                                              more=args.after_seq + len(page) < len(fills)))

    def order_status(args: OrderStatusArgs) -> dict[str, Any]:
        """``order_status`` → ``ok(OrderStatusReports)``: each given client order id's order as the
        venue holds it, or ``known=False`` if it never received that id.

        Wire: ``Command(name="order_status", args={client_order_ids=[...] (at most 1,000)})``.
        """
        m = venue.matcher
        reports = []
        for cid in args.client_order_ids:
            order = m.owned(cid, NATIVE)
            reports.append(proto.OrderStatusReport(client_order_id=cid, known=order is not None,
                                                   order=order.update(m.venue) if order is not None else None))
        return proto.result_of(proto.OrderStatusReports(session=m.session, reports=reports))

    def orders_received(args: OrdersReceivedArgs) -> dict[str, Any]:
        """``orders_received`` → ``ok(OrderIdPage)``: the client order ids received after arrival
        index ``after``, oldest first, a page at a time (an audit: the tests' record of what reached
        the venue; with ``status``'s ``duplicate_ids``, proof that no id was sent twice)."""
        received = venue.matcher.received
        ids = received[args.after:args.after + args.limit]
        return proto.result_of(proto.OrderIdPage(ids=ids, next_after=args.after + len(ids),
                                                 more=args.after + len(ids) < len(received)))

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

    return {"instruments": instruments, "latency": latency, "new_order": new_order, "cancel_order": cancel_order,
            "cancel_all": cancel_all, "open_orders": open_orders, "positions": positions, "mass_status": mass_status,
            "fills_since": fills_since, "order_status": order_status, "orders_received": orders_received,
            "fault": fault}
