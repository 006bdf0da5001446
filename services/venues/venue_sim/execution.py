"""The venue simulator's execution client: its order-entry session (our ``proto`` commands on its
command socket) and its execution reports (``orders`` and ``fills`` on its PUB)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

import proto
from bus import CommandChannel, NotConnected, Subscriber
from proto.commands import NewOrderArgs
from services.backoff import Backoff
from services.runtime import ServiceRuntime
from services.venues.base import ExecutionEvents
from services.venues.settings import VenueSimConnectorSettings

log = logging.getLogger(__name__)
R = TypeVar("R", bound=msgspec.Struct)  # a venue report, or its instrument list


class VenueSimExecutionClient:
    """The venue simulator's order-entry (command socket) and execution-report (PUB) sessions."""

    def __init__(self, cfg: VenueSimConnectorSettings, runtime: ServiceRuntime, events: ExecutionEvents) -> None:
        self.name = cfg.name
        self._cfg = cfg
        self._runtime = runtime
        self._events = events
        self._channel: CommandChannel | None = None
        self._sub: Subscriber | None = None
        self._connected = False
        self._heard: float | None = None
        self._venue_epoch: int | None = None
        self._since = 0.0
        self._reconnect = Backoff(cfg.reconnect_initial_s, cfg.reconnect_max_s, jitter=cfg.reconnect_jitter)
        self.reconnects = 0
        self.errors = 0
        self.received = 0
        self._dropped_before = 0
        self._latency_ms = 0.0
        self.last_reply_bytes = 0
        runtime.reactor.call_every(0.25, self._watch)

    # -- the link --------------------------------------------------------------------------------

    def connect(self) -> None:
        if self._sub is not None:
            return
        venue = self._cfg.venue
        self._sub = self._runtime.subscribe(
            [venue], [proto.topics.ORDERS, proto.topics.FILLS, proto.topics.heartbeat(venue)], self._on_message)
        self._channel = self._runtime.channel(venue, timeout_s=self._cfg.request_timeout_s)
        self._since = time.monotonic()
        log.info("connector %s: connecting to %s", self.name, venue)

    def disconnect(self, reason: str) -> None:
        if self._sub is not None:
            self._dropped_before += self._lost()
            self._runtime.unsubscribe(self._sub)
            self._sub = None
        # Forget the channel before closing it: closing reports its requests as timed out, and what
        # they trigger must find the link down (NotConnected), not send on a closed socket.
        channel, self._channel = self._channel, None
        if channel is not None:
            self._runtime.close_channel(channel)
        if self._connected:
            log.warning("connector %s: disconnected: %s", self.name, reason)
        self._connected = False

    @property
    def venue_session(self) -> int | None:
        """The simulator numbers its fills per process: its session is its publisher's epoch."""
        return self._venue_epoch

    def is_connected_check(self) -> bool:
        return self._connected and self._heard is not None and time.monotonic() - self._heard < self._cfg.heartbeat_timeout_s

    def _watch(self) -> None:
        if self._sub is None:
            return  # a reconnect is scheduled
        now = time.monotonic()
        last = self._heard if self._connected else self._since
        if now - (last or now) < self._cfg.heartbeat_timeout_s:
            return
        self.errors += 1
        self.disconnect(f"nothing from {self._cfg.venue} for {now - (last or now):.1f}s")
        delay = self._reconnect.next()
        self.reconnects += 1
        log.info("connector %s: reconnect attempt %d in %.2fs", self.name, self._reconnect.attempts, delay)
        self._runtime.reactor.call_later(delay, self.connect)

    def _on_message(self, _topic: str, env: proto.Envelope) -> None:
        self._heard = time.monotonic()
        self.received += 1
        restarted = self._venue_epoch is not None and env.epoch > self._venue_epoch
        self._venue_epoch = env.epoch if self._venue_epoch is None else max(self._venue_epoch, env.epoch)
        if not self._connected:
            self._connected = True
            self._reconnect.reset()
            log.info("connector %s: connected to %s", self.name, self._cfg.venue)
            self._events.on_connected(self)
        elif restarted:
            # A venue back within heartbeat_timeout_s never looked disconnected, but it is a new
            # session there: what it holds must be reconciled as after any reconnection.
            self.reconnects += 1
            log.warning("connector %s: %s restarted (new epoch): reconciling", self.name, self._cfg.venue)
            self._events.on_connected(self)
        body = env.body
        if isinstance(body, (proto.Fill, proto.OrderUpdate)):
            body.connector = self.name  # the venue names itself; the book names its connector
            if isinstance(body, proto.Fill):
                self._events.on_fill(body)
            else:
                self._events.on_order_update(body)

    # -- requests --------------------------------------------------------------------------------

    def submit(self, order: NewOrderArgs) -> None:
        """Send a new order, the book's own struct as it is; raises ``NotConnected`` if it could not
        leave."""
        cid = order.client_order_id

        def on_reply(reply: proto.Reply) -> None:
            self._track_latency()
            if not reply.ok:
                self.errors += 1
                self._events.on_order_update(proto.OrderUpdate(
                    client_order_id=cid, symbol=order.symbol, side=order.side, qty=order.qty,
                    order_type=order.order_type, limit_price=order.limit_price,
                    status=proto.OrderStatus.REJECTED, filled_qty=0.0, avg_fill_price=0.0,
                    reason=f"venue: {reply.error}", connector=self.name, ts_ns=time.time_ns()))
            elif reply.result.get("order"):
                update = proto.from_builtins(reply.result["order"], proto.OrderUpdate)
                update.connector = self.name  # the venue names itself; the book names its connector
                self._events.on_order_update(update)

        self._send("new_order", order, on_reply, lambda _id: self._events.on_in_doubt(self, cid))

    def cancel(self, client_order_id: str) -> None:
        self._send("cancel_order", {"client_order_id": client_order_id}, lambda _r: self._track_latency(), None)

    def cancel_all(self, symbol: str | None) -> None:
        self._send("cancel_all", {"symbol": symbol}, lambda _r: self._track_latency(), None)

    def mass_status(self, on_result: Callable[[proto.MassStatus | None], None]) -> None:
        self._query("mass_status", {}, proto.MassStatus, on_result)

    def fills_since(self, after_seq: int, limit: int, on_result: Callable[[proto.FillPage | None], None]) -> None:
        self._query("fills_since", {"after_seq": after_seq, "limit": limit}, proto.FillPage, on_result)

    def order_status(self, client_order_ids: list[str],
                     on_result: Callable[[proto.OrderStatusReports | None], None]) -> None:
        self._query("order_status", {"client_order_ids": client_order_ids}, proto.OrderStatusReports, on_result)

    def instruments(self, on_result: Callable[[proto.InstrumentList | None], None]) -> None:
        self._query("instruments", {}, proto.InstrumentList, on_result)

    def _query(self, name: str, args: dict[str, Any], report_type: type[R], on_result: Callable[[R | None], None]) -> None:
        """Ask the venue for one report; ``on_result(None)`` on a refusal, a timeout or a bad answer."""
        def on_reply(reply: proto.Reply) -> None:
            self._track_latency()
            self.last_reply_bytes = self._channel.last_reply_bytes if self._channel is not None else 0
            if not reply.ok:
                on_result(None)
                return
            try:
                report = proto.parse_result(reply.result, report_type)
            except proto.ProtocolError as exc:
                self.errors += 1
                log.warning("connector %s: bad %s answer: %s", self.name, name, exc)
                on_result(None)
                return
            for message in _messages(report):
                message.connector = self.name
            on_result(report)

        try:
            self._send(name, args, on_reply, lambda _id: on_result(None))
        except NotConnected:
            on_result(None)

    def _send(self, name: str, args: dict[str, Any] | proto.Args, on_reply: Callable[[proto.Reply], None],
              on_timeout: Callable[[str], None] | None) -> None:
        if self._channel is None:
            self.errors += 1
            raise NotConnected(f"connector {self.name} is not connected")
        try:
            self._channel.send(name, args, on_reply, on_timeout)
        except NotConnected:
            self.errors += 1
            raise

    def _track_latency(self) -> None:
        if self._channel is not None and self._channel.last_rtt_s is not None:
            sample = self._channel.last_rtt_s * 1000
            self._latency_ms = sample if not self._latency_ms else 0.8 * self._latency_ms + 0.2 * sample

    def _lost(self) -> int:
        peer = self._sub.peers.get(self._cfg.venue) if self._sub is not None else None
        return peer.lost if peer else 0

    def get_stats(self) -> dict[str, Any]:
        return {
            "connected": self.is_connected_check(),
            "latency_ms": round(self._latency_ms, 3),
            "messages_received": self.received,
            "messages_dropped": self._dropped_before + self._lost(),
            "error_count": self.errors + (self._channel.timeouts if self._channel else 0),
            "reconnects": self.reconnects,
        }


def _messages(report: proto.venue_reports.Report) -> list[proto.Fill | proto.OrderUpdate]:
    """The fills and orders a report carries."""
    if isinstance(report, proto.FillPage):
        return list(report.fills)
    if isinstance(report, proto.MassStatus):
        return list(report.open_orders)
    if isinstance(report, proto.OrderStatusReports):
        return [r.order for r in report.reports if r.order is not None]
    return []
