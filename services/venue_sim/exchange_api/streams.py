"""The simulator's Binance WebSocket faces, on the exchange API's aiohttp server: the market streams
and the WebSocket API's user data stream, as ccxt.pro's ``binance`` class uses them for spot.

* **Market streams** (``/ws``, ``/ws/<stream>``, ``/stream?streams=a/b``; Binance's
  https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams): ``SUBSCRIBE``,
  ``UNSUBSCRIBE`` and ``LIST_SUBSCRIPTIONS`` requests, and two streams per symbol:
  ``<symbol>@bookTicker`` (every change of the touch, ``u`` its order book update id: ccxt's
  ``watch_bids_asks``) and ``<symbol>@depth`` / ``@depth@100ms`` (``depthUpdate`` diffs batched per
  second or per 100 ms, ``U``..``u`` the update ids they cover: ccxt's ``watch_order_book``, which
  fetches ``GET /api/v3/depth`` for the book at ``lastUpdateId`` and applies the diffs after it).
  Update ids count each symbol's quotes (``BinanceSpot.on_quote``), so the REST book and the diffs
  agree; a diff lists every level that changed in its span (0: gone), as Binance's do.
* **WebSocket API** (``/ws-api/v3``; https://developers.binance.com/docs/binance-spot-api-docs/websocket-api):
  ``userDataStream.subscribe.signature`` (signed as Binance signs a WebSocket API request: the
  account's key among the parameters, its timestamp within ``recvWindow``), ``userDataStream.unsubscribe``,
  ``ping`` and ``time``. A subscription receives the account's ``executionReport`` and
  ``outboundAccountPosition`` events (``user_data.py``) as ``{"subscriptionId", "event"}``.

Threads: quotes and account events are made on the venue's loop and handed here through one bounded
queue (``MAX_PENDING`` records; the oldest is dropped and counted past it) with at most one wake-up
of this loop pending, so the venue's loop never waits on a client. Each connection has its own
bounded queue of outgoing messages: a client that does not read (``MAX_QUEUED`` behind) is cut, as
Binance cuts a slow client, and counted. A client that sends more than ``MAX_CONTROL_PER_S`` control
messages a second is cut too (Binance's limit); a bad request is answered with Binance's error,
counted and logged (escaped, one line), and the connection stays.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from services.venue_sim.exchange_api.auth import Signatures, ws_payload
from services.venue_sim.exchange_api.binance import ApiError, num

log = logging.getLogger("venue_sim.exchange_api")

MAX_PENDING = 50_000  # records from the venue's loop not yet handled here
MAX_QUEUED = 2_000  # messages one connection may have waiting; past it the client is cut
MAX_CONNECTIONS = 64
MAX_STREAMS = 1024  # per connection (Binance's limit)
MAX_CONTROL_PER_S = 5  # control messages a connection may send per second (Binance's limit)
MAX_MESSAGE_BYTES = 16_384
PING_S = 20.0  # the server pings this often; a client that does not answer is cut (Binance: 20 s)
INTERVALS = {"depth": 1000, "depth@1000ms": 1000, "depth@100ms": 100}  # a depth stream's batching (ms)
FLUSH_S = 0.1
ALREADY_SUBSCRIBED = ApiError(-2035, "User Data Stream subscription already active.")
NOT_SUPPORTED = ApiError(-1020, "This operation is not supported.")
MALFORMED = ApiError(-1102, "Malformed request: expected a JSON object with 'id', 'method' and 'params'.")
encode = msgspec.json.Encoder().encode


@dataclass(eq=False)  # compared and hashed by identity: one per connection
class _Peer:
    """One WebSocket connection: its subscriptions and its bounded queue of outgoing messages."""

    ws: web.WebSocketResponse
    request: web.Request
    combined: bool = False  # /stream: each event wrapped as {"stream", "data"}
    streams: set[str] = field(default_factory=set)
    user_sid: int | None = None  # its user data subscription (WebSocket API)
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(MAX_QUEUED))
    closed: bool = False
    window: tuple[int, int] = (0, 0)  # (second, control messages in it)
    told_bad: bool = False

    def cut(self) -> None:
        """Close the connection now, whatever it has unsent (an outage, a slow client)."""
        self.closed = True
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def write(self) -> None:
        try:
            while not self.closed:
                await self.ws.send_str(await self.queue.get())
        except (ConnectionError, RuntimeError):  # the peer went away meanwhile: its handler ends it
            self.closed = True


@dataclass
class _Batch:
    """A depth stream's diff being gathered: the update ids it spans and each changed level."""

    first: int | None = None
    last: int = 0
    bids: dict[float, float] = field(default_factory=dict)
    asks: dict[float, float] = field(default_factory=dict)


class StreamHub:
    def __init__(self, symbols: list[str], signatures: Signatures, check_rate: Callable[[], None]) -> None:
        """``symbols``: the venue's markets as Binance names them (``BTCUSD``); ``check_rate`` raises
        the REST face's 429 when the request rate is over (the two faces share Binance's weights)."""
        self._names = {s.lower(): s for s in symbols}
        self._signatures = signatures
        self._check_rate = check_rate
        self._loop: asyncio.AbstractEventLoop | None = None
        self._records: deque[tuple[Any, ...]] = deque()
        self._scheduled = False
        self._peers: set[_Peer] = set()
        self._subscribers: dict[str, set[_Peer]] = {}  # stream -> its subscribers
        self._users: set[_Peer] = set()
        self._batches: dict[tuple[str, int], _Batch] = {}  # (symbol, interval ms) of a subscribed depth stream
        self._flusher: asyncio.Task[None] | None = None
        self._flushes = 0
        self.counts = {"accepted": 0, "sent": 0, "dropped": 0, "slow_cut": 0, "control_cut": 0, "bad_requests": 0,
                       "refused": 0}

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve on ``loop`` (the server's, from its own thread): start the depth batches' clock."""
        self._loop = loop
        self._flusher = loop.create_task(self._flush_forever())

    # -- from the venue's loop -------------------------------------------------------------------

    def quote(self, symbol: str, update_id: int, bid: float, ask: float, size: float,
              before: tuple[float, float] | None) -> None:
        """A new touch of ``symbol`` (Binance's name), update ``update_id``; ``before``: the touch it replaces."""
        if self._subscribers:
            self._push(("q", symbol, update_id, bid, ask, size, before))

    @property
    def has_users(self) -> bool:
        """Someone subscribed the user data stream (else its events are not even made)."""
        return bool(self._users)

    def user_events(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self._push(("u", event))

    def _push(self, record: tuple[Any, ...]) -> None:
        if len(self._records) >= MAX_PENDING:
            self._records.popleft()
            self.counts["dropped"] += 1
        self._records.append(record)
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the server has stopped
                pass

    # -- on the server's loop --------------------------------------------------------------------

    def _drain(self) -> None:
        self._scheduled = False  # first: a record pushed from now on schedules another drain
        while True:
            try:
                record = self._records.popleft()
            except IndexError:
                return
            if record[0] == "q":
                self._on_quote(*record[1:])
            else:
                self._on_user_event(record[1])

    def _on_quote(self, symbol: str, update_id: int, bid: float, ask: float, size: float,
                  before: tuple[float, float] | None) -> None:
        lower = symbol.lower()
        ticker = f"{lower}@bookTicker"
        if ticker in self._subscribers:
            self._publish(ticker, {"u": update_id, "s": symbol, "b": num(bid), "B": num(size), "a": num(ask),
                                   "A": num(size)})
        for (name, interval), batch in self._batches.items():
            if name != lower:
                continue
            if batch.first is None:
                batch.first = update_id
            batch.last = update_id
            if before is not None and before[0] != bid:
                batch.bids[before[0]] = 0.0
            if before is not None and before[1] != ask:
                batch.asks[before[1]] = 0.0
            batch.bids[bid], batch.asks[ask] = size, size

    def _on_user_event(self, event: dict[str, Any]) -> None:
        text = encode(event).decode()
        for peer in list(self._users):
            self._send(peer, f'{{"subscriptionId":{peer.user_sid},"event":{text}}}')

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            self._flushes += 1
            for (lower, interval), batch in self._batches.items():
                if batch.first is None or (interval == 1000 and self._flushes % 10):
                    continue
                event = {"e": "depthUpdate", "E": time.time_ns() // 1_000_000, "s": self._names[lower],
                         "U": batch.first, "u": batch.last,
                         "b": [[num(p), num(q)] for p, q in batch.bids.items()],
                         "a": [[num(p), num(q)] for p, q in batch.asks.items()]}
                self._batches[(lower, interval)] = _Batch()
                for stream, wanted in INTERVALS.items():
                    if wanted == interval and f"{lower}@{stream}" in self._subscribers:
                        self._publish(f"{lower}@{stream}", event)

    def _publish(self, stream: str, payload: dict[str, Any]) -> None:
        """``payload`` to every subscriber of ``stream``, encoded once per form (raw, combined)."""
        raw: str | None = None
        wrapped: str | None = None
        for peer in list(self._subscribers.get(stream, ())):
            if peer.combined:
                wrapped = wrapped or encode({"stream": stream, "data": payload}).decode()
                self._send(peer, wrapped)
            else:
                raw = raw or encode(payload).decode()
                self._send(peer, raw)

    def _send(self, peer: _Peer, text: str) -> None:
        if peer.closed:
            return
        try:
            peer.queue.put_nowait(text)
            self.counts["sent"] += 1
        except asyncio.QueueFull:
            self.counts["slow_cut"] += 1
            log.warning("exchange API stream: a client %d messages behind was cut (slow reader)", MAX_QUEUED)
            peer.cut()

    # -- connections -----------------------------------------------------------------------------

    async def market(self, request: web.Request) -> web.StreamResponse:
        """``/ws``, ``/ws/<stream>`` or ``/stream?streams=<a>/<b>``: the market streams."""
        combined = request.path.startswith("/stream")
        wanted = request.query.get("streams", "").split("/") if combined else [request.match_info.get("name", "")]
        return await self._serve(request, combined, [s for s in wanted if self._known(s)], self._control)

    async def ws_api(self, request: web.Request) -> web.StreamResponse:
        """``/ws-api/v3``: the WebSocket API (its user data stream)."""
        return await self._serve(request, False, [], self._api_request)

    async def _serve(self, request: web.Request, combined: bool, streams: list[str],
                     on_text: Callable[[_Peer, str], None]) -> web.StreamResponse:
        if len(self._peers) >= MAX_CONNECTIONS:
            self.counts["refused"] += 1
            return web.json_response({"code": -1003, "msg": "Too many connections."}, status=429)
        ws = web.WebSocketResponse(heartbeat=PING_S, max_msg_size=MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        peer = _Peer(ws, request, combined=combined)
        self._peers.add(peer)
        self.counts["accepted"] += 1
        for stream in streams:
            self._subscribe(peer, stream)
        writer = asyncio.ensure_future(peer.write())
        try:
            async for message in ws:
                if peer.closed:
                    break
                if message.type == WSMsgType.TEXT:
                    on_text(peer, message.data)
                elif message.type == WSMsgType.BINARY:  # Binance takes JSON text only: ignored, counted
                    self._bad(peer, "a binary frame", message.data[:200])
                else:  # an error on the connection: it ends
                    break
        finally:
            peer.closed = True
            writer.cancel()
            self._forget(peer)
        return ws

    def _forget(self, peer: _Peer) -> None:
        self._peers.discard(peer)
        self._users.discard(peer)
        for stream in list(peer.streams):
            self._unsubscribe(peer, stream)

    async def drop_all(self) -> None:
        """An outage: every connection cut at once."""
        for peer in list(self._peers):
            peer.cut()

    async def close(self) -> None:
        """The server stops: connections cut, the depth batches' clock stopped."""
        await self.drop_all()
        if self._flusher is not None:
            self._flusher.cancel()

    # -- market streams' control messages ----------------------------------------------------------

    def _known(self, stream: str) -> bool:
        symbol, _, kind = stream.partition("@")
        return symbol in self._names and (kind == "bookTicker" or kind in INTERVALS)

    def _control(self, peer: _Peer, text: str) -> None:
        second = int(time.monotonic())
        count = peer.window[1] + 1 if peer.window[0] == second else 1
        peer.window = (second, count)
        if count > MAX_CONTROL_PER_S:
            self.counts["control_cut"] += 1
            log.warning("exchange API stream: a client sent more than %d messages in a second: cut", MAX_CONTROL_PER_S)
            peer.cut()
            return
        rid: Any = None
        try:
            request = msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            self._refuse(peer, rid, 3, f"Invalid JSON: {exc}", text)
            return
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            self._refuse(peer, rid, 2, "Invalid request: expected method, params and id", text)
            return
        rid, method, params = request.get("id"), request["method"], request.get("params", [])
        if not isinstance(rid, int) or isinstance(rid, bool) or rid < 0:
            self._refuse(peer, None, 2, "Invalid request: request ID must be an unsigned integer", text)
        elif method == "LIST_SUBSCRIPTIONS":
            self._send(peer, encode({"result": sorted(peer.streams), "id": rid}).decode())
        elif method not in ("SUBSCRIBE", "UNSUBSCRIBE") or not isinstance(params, list):
            self._refuse(peer, rid, 2, "Invalid request: unknown method or params", text)
        elif not all(isinstance(s, str) and self._known(s) for s in params):
            self._refuse(peer, rid, 2, "Invalid request: invalid stream", text)
        elif method == "SUBSCRIBE" and len(peer.streams | set(params)) > MAX_STREAMS:
            self._refuse(peer, rid, 2, f"Invalid request: at most {MAX_STREAMS} streams per connection", text)
        else:
            for stream in params:
                (self._subscribe if method == "SUBSCRIBE" else self._unsubscribe)(peer, stream)
            self._send(peer, encode({"result": None, "id": rid}).decode())

    def _refuse(self, peer: _Peer, rid: Any, code: int, msg: str, text: str) -> None:
        """A market stream request the venue cannot take: Binance's error answer, counted and logged."""
        self._bad(peer, msg, text)
        self._send(peer, encode({"error": {"code": code, "msg": msg}, "id": rid}).decode())

    def _subscribe(self, peer: _Peer, stream: str) -> None:
        peer.streams.add(stream)
        self._subscribers.setdefault(stream, set()).add(peer)
        symbol, _, kind = stream.partition("@")
        if kind in INTERVALS:
            self._batches.setdefault((symbol, INTERVALS[kind]), _Batch())

    def _unsubscribe(self, peer: _Peer, stream: str) -> None:
        peer.streams.discard(stream)
        subscribers = self._subscribers.get(stream)
        if subscribers is not None:
            subscribers.discard(peer)
            if not subscribers:
                del self._subscribers[stream]
        symbol, _, kind = stream.partition("@")
        if kind in INTERVALS and not any(f"{symbol}@{k}" in self._subscribers for k, ms in INTERVALS.items()
                                         if ms == INTERVALS[kind]):
            self._batches.pop((symbol, INTERVALS[kind]), None)

    def _bad(self, peer: _Peer, why: str, text: Any) -> None:
        """Count a bad request; log the first of each connection (escaped, one line: the program's
        log handler escapes it, and the log storm filter folds a flood of them)."""
        self.counts["bad_requests"] += 1
        if not peer.told_bad:
            peer.told_bad = True
            log.warning("exchange API stream: bad request (%s): %.200r", why, text)

    # -- the WebSocket API -----------------------------------------------------------------------

    def _api_request(self, peer: _Peer, text: str) -> None:
        rid: Any = None
        try:
            try:
                request = msgspec.json.decode(text)
            except msgspec.DecodeError:
                raise MALFORMED from None
            if not isinstance(request, dict) or not isinstance(request.get("method"), str):
                raise MALFORMED
            rid, params = request.get("id"), request.get("params", {})
            if not isinstance(params, dict) or isinstance(rid, (dict, list)):
                raise MALFORMED
            self._check_rate()
            result = self._api_call(peer, request["method"], {k: _text(v) for k, v in params.items()})
        except ApiError as exc:
            if exc is MALFORMED:
                self._bad(peer, "WebSocket API", text)
            self._send(peer, encode({"id": rid, "status": exc.http, "error": exc.body()}).decode())
            return
        self._send(peer, encode({"id": rid, "status": 200, "result": result}).decode())

    def _api_call(self, peer: _Peer, method: str, params: dict[str, str]) -> dict[str, Any]:
        if method == "ping":
            return {}
        if method == "time":
            return {"serverTime": time.time_ns() // 1_000_000}
        if method == "userDataStream.subscribe.signature":
            self._signatures.check(params.get("apiKey", ""), ws_payload(params), params.get("signature", ""), params)
            if peer.user_sid is not None:
                raise ALREADY_SUBSCRIBED
            peer.user_sid = 0  # the connection's first subscription
            self._users.add(peer)
            return {"subscriptionId": peer.user_sid}
        if method == "userDataStream.unsubscribe":
            self._users.discard(peer)
            peer.user_sid = None
            return {}
        raise NOT_SUPPORTED

    def stats(self) -> dict[str, Any]:
        return {"connections": len(self._peers), "user_data_subscriptions": len(self._users),
                "streams": {s: len(p) for s, p in sorted(self._subscribers.items())}, **self.counts}


def _text(value: Any) -> str:
    """A parameter as the client signed it: JSON's scalars in their JSON spelling."""
    if isinstance(value, str):
        return value
    return encode(value).decode()
