"""Serving commands on a ROUTER socket: every request answered, idempotent on the command id.

Accepts requests from DEALER clients (``[identity, message]``) and REQ clients
(``[identity, b"", message]``) and answers on the same route. A request that cannot be decoded is
answered with an error (id ``""``), counted and logged; a request whose id was seen before gets
the reply it already got, and its handler does not run again.

Only replies of commands whose handler ran and that change something are kept for retries: a
query (``proto.QUERIES``) is simply run again, and a request refused before its handler (unknown
command, bad arguments, over a size limit of ``proto.limits``) would be refused again. So no flood of
bad requests or of status polls can push out the reply of an order that really went, and be re-run
on its retry.

The cache is bounded in entries and in bytes (ids, replies and a fixed overhead per entry), oldest
first out: a peer's command id is at most ``proto.limits.MAX_ID_CHARS`` and its reply is ours, so
neither bound can be bypassed by what a peer chooses to send. A retry finds its reply as long as
fewer than that many entries or bytes of other cached replies came in between (at 10,000 entries
and 16 MiB: minutes of a busy session, against a client's retry window of seconds).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import zmq

import proto
from bus.ratelimit import RateLimitedLog
from bus.sockets import drain

log = logging.getLogger(__name__)

Handler = Callable[[proto.Args], dict[str, Any]]
# The identity the ROUTER adds, REQ's empty delimiter or a route through proxies, the command: no
# request of ours has more than 3; more than this is garbage, read and dropped part by part.
MAX_REQUEST_FRAMES = 16
Audit = Callable[[proto.CommandAudit], None]


class CommandServer:
    def __init__(
        self,
        sock: zmq.Socket,
        source: str,
        epoch: int,
        handlers: Mapping[str, Handler],
        *,
        cache_size: int = 10_000,
        cache_bytes: int = 16 << 20,
        max_bytes: int = proto.MAX_MESSAGE_BYTES,
        audit: Audit | None = None,
    ) -> None:
        """``audit``, if given, is told of every decoded request when it is read and again when its
        reply is sent (the service publishes these on ``audit.<service>``)."""
        self._sock = sock
        self._audit = audit
        self._source = source
        self._epoch = epoch
        self._handlers = dict(handlers)
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = cache_size
        self._cache_bytes_max = cache_bytes
        self._cache_bytes = 0
        self.cache_evictions = 0
        self._max_bytes = max_bytes
        self._seq = 0
        self._bad_log = RateLimitedLog(log)
        self.handled = 0
        self.duplicates = 0
        self.refused = 0
        self.handler_errors = 0
        self.unroutable = 0
        self.rejected: dict[str, int] = {}

    @property
    def socket(self) -> zmq.Socket:
        return self._sock

    def attach(self, sock: zmq.Socket) -> None:
        """Serve on a new socket (after the old one was closed); the idempotency cache is kept."""
        self._sock = sock

    def add_handlers(self, handlers: Mapping[str, Handler], *, replace: frozenset[str] = frozenset()) -> None:
        clash = (set(handlers) & set(self._handlers)) - replace
        if clash:
            raise ValueError(f"commands already served: {', '.join(sorted(clash))}")
        self._handlers.update(handlers)

    def drain(self, limit: int = 1_000) -> int:
        return drain(self._sock, MAX_REQUEST_FRAMES, self._serve, limit)

    def _serve(self, frames: list[bytes]) -> None:
        if len(frames) < 2:  # a ROUTER always prepends the identity; this cannot be answered
            self._reject("frames", f"{len(frames)} frame(s)")
            return
        if len(frames) > MAX_REQUEST_FRAMES:
            self._reject("frames", f"more than {MAX_REQUEST_FRAMES} frames")
            self._send(frames[:1], self._encode(proto.error("", "bad request: a command is one frame")))
            return
        route, data = frames[:-1], frames[-1]
        try:
            env = proto.decode(data, self._max_bytes)
        except proto.ProtocolError as exc:
            self._reject(exc.kind, str(exc))
            self._send(route, self._encode(proto.error("", f"bad request: {exc}")))
            return
        cmd = env.body
        if not isinstance(cmd, proto.Command):
            self._reject("not_a_command", env.type)
            self._send(route, self._encode(proto.error("", f"bad request: {env.type} is not a command")))
            return
        audit = self._audit
        cached = self._cache.get(cmd.id)
        if cached is not None:
            self.duplicates += 1
            self._send(route, cached)
            if audit is not None:
                audit(proto.CommandAudit(id=cmd.id, name=cmd.name, caller=env.source, phase="reply",
                                         sent_ns=env.ts_ns, duplicate=True))
            return
        if audit is not None:
            audit(proto.CommandAudit(id=cmd.id, name=cmd.name, caller=env.source, phase="request",
                                     sent_ns=env.ts_ns))
        reply, ran = self._run(cmd)
        try:
            data = self._encode(reply)
        except Exception as exc:  # a handler's result that cannot be encoded is its bug: answer it
            self.handler_errors += 1
            log.error("command %s: result cannot be encoded: %r", cmd.name, exc)
            data = self._encode(proto.error(cmd.id, f"internal error in {cmd.name}: result cannot be encoded"))
        if ran and cmd.name not in proto.QUERIES:
            self._remember(cmd.id, data)
        self._send(route, data)
        if audit is not None:
            audit(proto.CommandAudit(id=cmd.id, name=cmd.name, caller=env.source, phase="reply",
                                     sent_ns=env.ts_ns, ok=reply.ok, error=reply.error))

    def _remember(self, command_id: str, data: bytes) -> None:
        """Keep a reply for retries, evicting the oldest beyond either bound (never the newest)."""
        self._cache[command_id] = data
        self._cache_bytes += _entry_bytes(command_id, data)
        while len(self._cache) > 1 and (len(self._cache) > self._cache_size
                                        or self._cache_bytes > self._cache_bytes_max):
            old_id, old = self._cache.popitem(last=False)
            self._cache_bytes -= _entry_bytes(old_id, old)
            self.cache_evictions += 1

    def _run(self, cmd: proto.Command) -> tuple[proto.Reply, bool]:
        """The reply, and whether the handler ran (a refusal by the handler counts: it decided)."""
        handler = self._handlers.get(cmd.name)
        if handler is None:
            self._reject("unknown_command", cmd.name)
            return proto.error(cmd.id, f"unknown command {cmd.name!r}; this service serves: "
                               + ", ".join(sorted(self._handlers))), False
        try:
            args = proto.parse_args(cmd.name, cmd.args)
        except proto.ProtocolError as exc:
            self._reject(exc.kind, str(exc))
            return proto.error(cmd.id, str(exc)), False
        try:
            reply = proto.ok(cmd.id, **handler(args))
        except proto.CommandError as exc:
            self.refused += 1
            return proto.error(cmd.id, str(exc)), True
        except Exception as exc:  # a handler bug must not take the service down; it is an error reply
            self.handler_errors += 1
            log.exception("command %s failed", cmd.name)
            return proto.error(cmd.id, f"internal error in {cmd.name}: {exc!r}"), True
        self.handled += 1
        return reply, True

    def _encode(self, reply: proto.Reply) -> bytes:
        self._seq += 1
        return proto.encode(self._source, self._epoch, self._seq, time.time_ns(), reply)

    def _send(self, route: list[bytes], data: bytes) -> None:
        try:
            self._sock.send_multipart([*route, data], flags=zmq.NOBLOCK)
        except (zmq.Again, zmq.ZMQError):  # the caller went away (ROUTER_MANDATORY) or is not reading
            self.unroutable += 1

    def _reject(self, kind: str, detail: str) -> None:
        self.rejected[kind] = self.rejected.get(kind, 0) + 1
        self._bad_log.warning(kind, f"bad command request ({kind}): {detail}")

    def stats(self) -> dict[str, Any]:
        return {
            "handled": self.handled,
            "duplicates": self.duplicates,
            "refused": self.refused,
            "handler_errors": self.handler_errors,
            "unroutable": self.unroutable,
            "rejected": dict(self.rejected),
            "cache": {"entries": len(self._cache), "bytes": self._cache_bytes, "evictions": self.cache_evictions},
        }


# What one cache entry costs besides its id and reply: the str and bytes objects' headers and the
# ordered dict's slot and link (measured with tracemalloc: about 170 bytes on CPython 3.11).
ENTRY_OVERHEAD_BYTES = 200


def _entry_bytes(command_id: str, data: bytes) -> int:
    return len(command_id) + len(data) + ENTRY_OVERHEAD_BYTES
