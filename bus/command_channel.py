"""Pipelined commands from inside an event loop: send now, get the reply as a callback later.

``CommandClient`` blocks its caller until the reply comes; a process that must keep reading market
data while its orders are in flight uses a ``CommandChannel`` instead. Each request has a deadline;
``expire()`` (called from a timer) fails the overdue ones, so nothing waits forever. With no
connected peer a send fails at once (``NotConnected``): a request is never queued for a server
that may come up after the caller has given up on it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

import proto
from bus.curve import NoCurve, Security
from bus.settings import BusSettings
from bus.sockets import NOBLOCK, drain, make_socket

ReplyCallback = Callable[[proto.Reply], None]
TimeoutCallback = Callable[[str], None]


class NotConnected(Exception):
    """The peer is not connected; the request was not sent."""


@dataclass
class _Pending:
    deadline: float
    sent_at: float
    on_reply: ReplyCallback
    on_timeout: TimeoutCallback | None


class CommandChannel:
    def __init__(self, ctx: zmq.Context, endpoint: str, bus: BusSettings, source: str, *, timeout_s: float,
                 server: str = "", security: Security | None = None) -> None:
        """A channel to ``server`` at ``endpoint``, its key pinned by ``security`` (CURVE)."""
        self._endpoint = endpoint
        self._bus = bus
        self._source = source
        self._epoch = time.time_ns()
        self._timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._seq = 0
        self._pending: dict[str, _Pending] = {}
        self.sock = make_socket(ctx, zmq.DEALER, bus)
        (security or NoCurve()).connect(self.sock, endpoint, server)
        self.sent = 0
        self.timeouts = 0
        self.not_connected = 0
        self.last_rtt_s: float | None = None
        self.last_reply_bytes = 0  # the size of the latest reply, as it came off the socket

    def send(self, name: str, args: dict[str, Any] | proto.Args, on_reply: ReplyCallback,
             on_timeout: TimeoutCallback | None = None, *, command_id: str | None = None) -> str:
        """Send ``name`` with ``args``: a map, or the command's argument struct itself (encoded as
        the same map, with no round trip through a dict: the order path sends its structs so)."""
        command_id = command_id or f"{self._source}:{self._epoch}:{next(self._ids)}"
        self._seq += 1
        now = time.monotonic()
        data = proto.encode(self._source, self._epoch, self._seq, time.time_ns(),
                            proto.Command(id=command_id, name=name, args=args))  # type: ignore[arg-type]
        try:
            self.sock.send(data, NOBLOCK)
        except zmq.Again:
            self.not_connected += 1
            raise NotConnected(f"{self._endpoint} is not connected") from None
        except zmq.ZMQError:  # closed: a request sent while its link is torn down is not connected either
            self.not_connected += 1
            raise NotConnected(f"{self._endpoint}: the channel is closed") from None
        self._pending[command_id] = _Pending(now + self._timeout_s, now, on_reply, on_timeout)
        self.sent += 1
        return command_id

    def drain(self, limit: int = 10_000) -> int:
        # A reply is one frame; a message of more is read part by part and refused by its count.
        return drain(self.sock, 1, self._on_reply, limit)

    def _on_reply(self, frames: list[bytes]) -> None:
        if len(frames) != 1:
            return
        try:
            reply = proto.decode(frames[0], self._bus.max_message_bytes).body
        except proto.ProtocolError:
            return
        if not isinstance(reply, proto.Reply):
            return
        pending = self._pending.pop(reply.id, None)
        if pending is None:
            return  # a reply after its deadline: the timeout already reported it
        self.last_rtt_s = time.monotonic() - pending.sent_at
        self.last_reply_bytes = len(frames[0])
        pending.on_reply(reply)

    def expire(self) -> None:
        now = time.monotonic()
        overdue = [cid for cid, p in self._pending.items() if p.deadline <= now]
        for command_id in overdue:
            pending = self._pending.pop(command_id)
            self.timeouts += 1
            if pending.on_timeout is not None:
                pending.on_timeout(command_id)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        """Close the socket; every request still in flight is reported as timed out."""
        self.sock.close(linger=0)
        pending, self._pending = self._pending, {}
        for command_id, p in pending.items():
            self.timeouts += 1
            if p.on_timeout is not None:
                p.on_timeout(command_id)
