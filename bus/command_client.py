"""Calling a service's command: time out, retry a bounded number of times, never hang.

The client uses a DEALER socket and matches replies to requests by command id, so a late reply to
an earlier attempt is recognised and a stale one is dropped. After a timeout the socket is closed
and replaced (the "lazy pirate" pattern), and the same request, with the same id, is sent again:
the server's idempotency makes the retry safe.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from typing import Any

import zmq

import proto
from bus.curve import NoCurve, Security
from bus.settings import BusSettings
from bus.sockets import make_socket


class CommandTimeout(Exception):
    """No reply within the timeout after every retry: the service is unreachable."""


class CommandRefused(Exception):
    """The service answered ``error(reason)``; the message is its reason."""


class CommandClient:
    def __init__(
        self,
        ctx: zmq.Context,
        endpoint: str,
        bus: BusSettings,
        source: str,
        *,
        timeout_s: float | None = None,
        retries: int | None = None,
        service: str = "",
        security: Security | None = None,
    ) -> None:
        """``service``: the service behind ``endpoint``, which types ``request``'s results and whose
        key ``security`` pins (CURVE; default: in the clear, which a CURVE server refuses)."""
        self._ctx = ctx
        self._security: Security = security or NoCurve()
        self.service = service
        self._endpoint = endpoint
        self._bus = bus
        self._source = source
        self._epoch = time.time_ns()
        self._timeout_s = bus.command_timeout_s if timeout_s is None else timeout_s
        self._retries = bus.command_retries if retries is None else retries
        self._ids = itertools.count(1)
        self._seq = 0
        self._sock: zmq.Socket | None = None
        self.timeouts = 0
        self.replaced_sockets = 0

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def call(
        self,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
        retries: int | None = None,
    ) -> proto.Reply:
        return self._call(name, args, timeout_s, retries, self._read)

    def _call(self, name: str, args: dict[str, Any] | None, timeout_s: float | None, retries: int | None,
              read: Callable[[bytes], proto.Reply | proto.TypedReply | None]) -> Any:
        timeout_s = self._timeout_s if timeout_s is None else timeout_s
        retries = self._retries if retries is None else retries
        command_id = f"{self._source}:{os.getpid()}:{self._epoch}:{next(self._ids)}"
        self._seq += 1
        data = proto.encode(self._source, self._epoch, self._seq, time.time_ns(),
                            proto.Command(id=command_id, name=name, args=args or {}))
        for _attempt in range(retries + 1):
            reply = self._attempt(command_id, data, timeout_s, read)
            if reply is not None:
                return reply
            self.timeouts += 1
            self._replace_socket()
        raise CommandTimeout(
            f"no reply from {self._endpoint} to {name!r} after {retries + 1} attempt(s) of {timeout_s:g}s"
        )

    def request(self, request: proto.Args, *, timeout_s: float | None = None, retries: int | None = None) -> Any:
        """Send a typed request (``client.request(Failsafe(reason="..."))``) and return its typed
        result (``Transition``); ``CommandRefused`` with the reason if the service refuses it,
        ``CommandTimeout`` if it does not answer, ``ProtocolError`` if the result is not what the
        registry declares."""
        spec = proto.spec_of(self.service, request.NAME)
        if spec is None:
            raise ValueError(f"{self.service or 'this client'} does not serve {request.NAME!r} (proto/commands/registry.py)")
        reply = self._call(request.NAME, proto.args_of(request), timeout_s, retries,
                           lambda data: self._read_typed(spec.result, data))
        if not reply.ok:
            raise CommandRefused(reply.error)
        if isinstance(reply, proto.TypedReply):
            return reply.result if reply.result is not None else proto.read_result(spec, {})
        return proto.read_result(spec, reply.result)  # not the declared result: ProtocolError, saying why

    def _read(self, data: bytes) -> proto.Reply | None:
        try:
            reply = proto.decode(data, self._bus.max_message_bytes).body
        except proto.ProtocolError:
            return None
        return reply if isinstance(reply, proto.Reply) else None

    def _read_typed(self, result_type: type, data: bytes) -> proto.Reply | proto.TypedReply | None:
        """The reply with its result decoded into ``result_type`` in one pass; a refusal (its
        result empty) or a result that is not of that type, read as any reply."""
        try:
            return proto.decode_reply(data, result_type, self._bus.max_message_bytes)
        except proto.ProtocolError:
            return self._read(data)

    def _attempt(self, command_id: str, data: bytes, timeout_s: float,
                 read: Callable[[bytes], proto.Reply | proto.TypedReply | None]) -> Any:
        sock = self._socket()
        deadline = time.monotonic() + timeout_s
        try:
            sock.send(data, flags=zmq.NOBLOCK)
        except zmq.Again:
            # IMMEDIATE is set: with no connected server nothing is queued; wait to be writable.
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            if not sock.poll(remaining_ms, zmq.POLLOUT):
                return None
            try:
                sock.send(data, flags=zmq.NOBLOCK)
            except zmq.Again:
                return None
        while True:
            # A blocking receive bounded by RCVTIMEO waits in libzmq itself: no poller per call.
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                return None
            sock.setsockopt(zmq.RCVTIMEO, remaining_ms)
            try:
                frames = sock.recv_multipart()
            except zmq.Again:
                return None
            reply = read(frames[-1])
            if reply is not None and reply.id in (command_id, ""):
                return reply
            # else: a late reply to an earlier call; drop it and keep waiting for ours

    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            self._sock = make_socket(self._ctx, zmq.DEALER, self._bus)
            self._security.connect(self._sock, self._endpoint, self.service)
        return self._sock

    def _replace_socket(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
            self.replaced_sockets += 1

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
