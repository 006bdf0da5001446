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

A handler whose answer waits on other work of the same loop (a reconciliation with a venue) returns
a ``Deferred`` and the reply goes out when that work calls ``resolve``/``refuse``; meanwhile the
server goes on serving, and a retry of the same id is answered with it, not run again. At most
``MAX_WAITING`` requests wait at a time (memory stays bounded whatever peers send): beyond, a
request is refused with the reason.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

import msgspec
import zmq

import proto
from bus.curve import NoCurve, Security
from bus.ratelimit import RateLimitedLog
from bus.sockets import NOBLOCK, SNDMORE, drain, recv_request

log = logging.getLogger(__name__)

# A handler returns its command's result struct, or its fields as a dict (checked against the
# struct), or a ``Deferred`` that brings one later.
Handler = Callable[[proto.Args], Any]
# The identity the ROUTER adds, REQ's empty delimiter or a route through proxies, the command: no
# request of ours has more than 3; more than this is garbage, read and dropped part by part.
MAX_REQUEST_FRAMES = 16
Audit = Callable[[proto.CommandAudit], None]
MAX_WAITING = 1_000
MAX_RETRY_ROUTES = 8  # a waiting request's retries (each from a new socket) answered with it


class Deferred:
    """A reply a handler gives later: it returns this, and the work its answer waits on calls
    ``resolve(result)`` or ``refuse(reason)`` once, on the loop's thread. The one who creates it
    makes sure it ends (a bound on the wait), or its caller times out."""

    def __init__(self) -> None:
        self._outcome: tuple[dict[str, Any] | None, str] | None = None
        self._done: Callable[[dict[str, Any] | None, str], None] | None = None

    @property
    def done(self) -> bool:
        return self._outcome is not None

    def resolve(self, result: Any) -> None:
        self._finish(result, "")

    def refuse(self, reason: str) -> None:
        self._finish(None, reason)

    def _finish(self, result: Any, reason: str) -> None:
        if self._outcome is not None:
            return
        self._outcome = (result, reason)
        if self._done is not None:
            self._done(result, reason)

    @classmethod
    def of_future(cls, future: Future[Any]) -> "Deferred":
        """The reply to a ``concurrent.futures.Future`` completed on the loop's thread (the
        orchestrator's sequences): its result, or its ``CommandError`` as a refusal."""
        deferred = cls()

        def done(f: Future[Any]) -> None:
            try:
                deferred.resolve(f.result())
            except proto.CommandError as exc:
                deferred.refuse(str(exc))
            except Exception as exc:  # a sequence's bug: answered, never left hanging
                log.exception("deferred command failed")
                deferred.refuse(f"internal error: {exc!r}")

        future.add_done_callback(done)
        return deferred

    def bind(self, done: Callable[[Any, str], None]) -> None:
        """The server's: ``done(result, reason)`` once the reply is known (at once if it is)."""
        self._done = done
        if self._outcome is not None:
            done(*self._outcome)


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
        security: Security | None = None,
        on_unauthorised: Callable[[proto.GovernanceEvent], None] | None = None,
    ) -> None:
        """``audit``, if given, is told of every decoded request when it is read and again when its
        reply is sent (the service publishes these on ``audit.<service>``). ``security`` names each
        caller (its CURVE identity; default ``NoCurve``: its envelope's source) for the rights of
        the registry; ``on_unauthorised`` is told of each refusal (published on ``governance``)."""
        self._sock = sock
        self._audit = audit
        self._security: Security = security or NoCurve()
        self._on_unauthorised = on_unauthorised
        self._source = source
        self._epoch = epoch
        self._handlers: dict[str, Handler] = {}
        self.add_handlers(handlers)
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = cache_size
        self._cache_bytes_max = cache_bytes
        self._cache_bytes = 0
        self.cache_evictions = 0
        self._max_bytes = max_bytes
        self._seq = 0
        self._waiting: dict[str, list[list[bytes]]] = {}  # command id -> routes awaiting its Deferred
        self._bad_log = RateLimitedLog(log)
        self.handled = 0
        self.duplicates = 0
        self.refused = 0
        self.handler_errors = 0
        self.unroutable = 0
        self.rejected: dict[str, int] = {}
        # The authenticated identity of the command being handled ("" between commands): a handler
        # that records who asked (the orchestrator's governance log) reads it while it runs.
        self.caller = ""

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
        # A service of the registry serves only what the registry declares for it: a command
        # without a declared request and result would have no contract to hold its reply to.
        undeclared = [name for name in handlers if proto.spec_of(self._source, name) is None]
        if self._source in proto.commands.registry.SERVICES and undeclared:
            raise ValueError(f"{self._source} serves commands the registry does not declare for it: "
                             f"{', '.join(sorted(undeclared))}")
        self._handlers.update(handlers)

    def drain(self, limit: int = 1_000) -> int:
        return drain(self._sock, MAX_REQUEST_FRAMES, self._serve, limit, recv_request)

    def _serve(self, message: tuple[list[bytes], str | None]) -> None:
        frames, user_id = message
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
        refusal = self._authorise(user_id, env.source, cmd.name)
        if refusal:
            self._refuse_caller(route, cmd, env, refusal)
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
        waiting = self._waiting.get(cmd.id)
        if waiting is not None:  # a retry of a request whose reply is still to come: it gets that one
            self.duplicates += 1
            if len(waiting) < MAX_RETRY_ROUTES:
                waiting.append(route)
            return
        if audit is not None:
            audit(proto.CommandAudit(id=cmd.id, name=cmd.name, caller=env.source, phase="request",
                                     sent_ns=env.ts_ns))
        self.caller = env.source  # authorised above: the envelope's source is the caller's key
        try:
            reply, ran = self._run(cmd)
        finally:
            self.caller = ""
        if isinstance(reply, Deferred):
            self._wait(cmd, env, route, reply)
            return
        self._answer(cmd, env, [route], reply, ran)

    def _authorise(self, user_id: str | None, source: str, name: str) -> str:
        """Why this caller may not call ``name`` here ("" if it may): checked before anything else,
        the cache included (a retry is authorised again: a key revoked since is refused)."""
        caller = self._security.identity(user_id, source)
        if caller is None:
            return (f"not authorised: caller {source!r} is not authenticated (its key is unknown or was revoked)"
                    if self._security.enabled else f"not authorised: unknown caller {source!r}")
        if source != caller.name:
            return f"not authorised: the envelope's source {source!r} is not the caller's identity {caller.name!r}"
        spec = proto.spec_of(self._source, name)
        if spec is not None and caller.role not in spec.callers:
            return (f"not authorised: {caller.name} ({caller.role}) may not call {name} on {self._source}; "
                    f"allowed: {', '.join(sorted(spec.callers))}")
        return ""

    def _refuse_caller(self, route: list[bytes], cmd: proto.Command, env: proto.Envelope, reason: str) -> None:
        self._reject("unauthorised", reason)
        self._send(route, self._encode(proto.error(cmd.id, reason)))
        if self._audit is not None:
            self._audit(proto.CommandAudit(id=cmd.id, name=cmd.name, caller=env.source, phase="reply",
                                           sent_ns=env.ts_ns, ok=False, error=reason))
        if self._on_unauthorised is not None:
            self._on_unauthorised(proto.GovernanceEvent(
                kind="unauthorised", reason=reason,
                detail={"service": self._source, "command": cmd.name, "caller": env.source}))

    def _wait(self, cmd: proto.Command, env: proto.Envelope, route: list[bytes], deferred: Deferred) -> None:
        if len(self._waiting) >= MAX_WAITING:
            self.refused += 1
            deferred.refuse("")  # nobody waits on it any more
            self._answer(cmd, env, [route], proto.error(cmd.id, f"{cmd.name}: {MAX_WAITING} requests already "
                                                                 f"waiting for their answer; ask again later"), True)
            return
        self._waiting[cmd.id] = [route]

        def done(result: Any, reason: str) -> None:
            routes = self._waiting.pop(cmd.id, [route])
            if result is None:
                self.refused += 1
                self._answer(cmd, env, routes, proto.error(cmd.id, reason), True)
            else:
                self._answer(cmd, env, routes, self._ok(cmd, result), True)

        deferred.bind(done)

    def _answer(self, cmd: proto.Command, env: proto.Envelope, routes: list[list[bytes]], reply: proto.Reply,
                ran: bool) -> None:
        audit = self._audit
        try:
            data = self._encode(reply)
        except Exception as exc:  # a handler's result that cannot be encoded is its bug: answer it
            self.handler_errors += 1
            log.error("command %s: result cannot be encoded: %r", cmd.name, exc)
            data = self._encode(proto.error(cmd.id, f"internal error in {cmd.name}: result cannot be encoded"))
        if ran and cmd.name not in proto.QUERIES:
            self._remember(cmd.id, data)
        for route in routes:
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

    def _run(self, cmd: proto.Command) -> tuple[proto.Reply | Deferred, bool]:
        """The reply (or the handler's promise of one), and whether the handler ran (a refusal by
        the handler counts: it decided)."""
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
            result = handler(args)
            if isinstance(result, Future):
                result = Deferred.of_future(result)
            if isinstance(result, Deferred):
                return result, True
        except proto.CommandError as exc:
            self.refused += 1
            return proto.error(cmd.id, str(exc)), True
        except Exception as exc:  # a handler bug must not take the service down; it is an error reply
            self.handler_errors += 1
            log.exception("command %s failed", cmd.name)
            return proto.error(cmd.id, f"internal error in {cmd.name}: {exc!r}"), True
        return self._ok(cmd, result), True

    def _ok(self, cmd: proto.Command, result: Any) -> proto.Reply:
        """The success reply of a handler's ``result``, checked against the registry's declared
        result (an error reply if the handler broke its contract: its bug, answered)."""
        spec = proto.spec_of(self._source, cmd.name)
        try:
            if spec is not None:
                result = proto.check_result(spec, result)
            elif not isinstance(result, (dict, msgspec.Struct)):  # a server outside the registry (tests)
                raise proto.ProtocolError("invalid", f"{cmd.name} result: a {type(result).__name__}, not a map")
        except proto.ProtocolError as exc:
            self.handler_errors += 1
            log.error("command %s: %s", cmd.name, exc)
            return proto.error(cmd.id, f"internal error in {cmd.name}: {exc}")
        self.handled += 1
        return proto.ok(cmd.id, result)

    def _encode(self, reply: proto.Reply) -> bytes:
        self._seq += 1
        return proto.encode(self._source, self._epoch, self._seq, time.time_ns(), reply)

    def _send(self, route: list[bytes], data: bytes) -> None:
        try:
            for frame in route:  # as send_multipart, without its per-call cost (bus/sockets.py)
                self._sock.send(frame, NOBLOCK | SNDMORE)
            self._sock.send(data, NOBLOCK)
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
