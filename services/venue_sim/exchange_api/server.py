"""The HTTP server of the simulator's exchange API: Binance's spot REST paths, its API-key header
and HMAC-SHA256 request signatures, its request-rate limit, and its error answers; and, on the same
port, its WebSocket faces (``streams.py``): the market streams at ``/ws`` and ``/stream``, the
WebSocket API (its user data stream) at ``/ws-api/v3``, as Binance serves them on its own hosts.

It runs on its own thread and asyncio loop (aiohttp), beside the venue's zmq loop. A request is
checked here (key, signature, timestamp, rate) and then handed to the venue's loop, where
``BinanceSpot`` reads and moves the one matcher; the answer comes back through a future. Quotes and
the account's events go the other way, from the venue's loop to the streams, through the hub's
bounded queue. The venue's latency fault delays each order-entry call before it is handed over, as
a slow venue would; ``drop`` closes the listening socket for a while (connections refused) and cuts
every open connection, WebSocket ones included, as an outage would.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from bus.reactor import Reactor
from services.venue_sim.exchange_api import user_data
from services.venue_sim.exchange_api.auth import Signatures
from services.venue_sim.exchange_api.binance import ApiError, BinanceSpot, venue_symbol
from services.venue_sim.exchange_api.streams import StreamHub
from services.venue_sim.matching import Event
from services.venue_sim.settings import ExchangeApiSettings

log = logging.getLogger("venue_sim.exchange_api")

PREFIX = "/api/v3/"
# path -> (method, BinanceSpot method name, signed, order entry: delayed by the latency fault)
ROUTES: dict[tuple[str, str], tuple[str, bool, bool]] = {
    ("GET", "ping"): ("ping", False, False),
    ("GET", "time"): ("server_time", False, False),
    ("GET", "exchangeInfo"): ("exchange_info", False, False),
    ("GET", "ticker/bookTicker"): ("book_ticker", False, False),
    ("GET", "depth"): ("depth", False, False),
    ("POST", "order"): ("new_order", True, True),
    ("DELETE", "order"): ("cancel_order", True, True),
    ("DELETE", "openOrders"): ("cancel_open_orders", True, True),
    ("GET", "order"): ("get_order", True, False),
    ("GET", "openOrders"): ("open_orders", True, False),
    ("GET", "myTrades"): ("my_trades", True, False),
    ("GET", "account"): ("account", True, False),
}
MAX_BODY_BYTES = 16_384


class ExchangeApiServer:
    def __init__(self, cfg: ExchangeApiSettings, api: BinanceSpot, reactor: Reactor,
                 latency_ms: Callable[[], float]) -> None:
        self._cfg = cfg
        self._api = api
        self._reactor = reactor
        self._latency_ms = latency_ms
        self._signatures = Signatures(cfg.api_key, cfg.api_secret.get_secret_value(), cfg.recv_window_ms,
                                      self._count)
        self.streams = StreamHub([venue_symbol(s) for s in api.symbols()], self._signatures, self._check_rate)
        api.on_touch = self.streams.quote
        api.on_account = self._on_account
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._thread: threading.Thread | None = None
        self._window = (0, 0)  # (second, requests in it)
        self.rate_limited_until = 0.0  # monotonic: the rate_limit fault
        self.requests = 0
        self.refused: dict[str, int] = {}  # by reason: bad_key, bad_signature, stale, rate_limited, error

    @property
    def url(self) -> str:
        return f"http://{self._cfg.host}:{self._cfg.port}{PREFIX.rstrip('/')}"

    # -- life ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Serve on ``host:port`` from now on; raises ``OSError`` when the port cannot be bound."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="exchange-api", daemon=True)
        self._thread.start()
        ready.result(timeout=30)
        log.info("exchange API (Binance spot subset) serving on %s, streams on ws://%s:%d/ws and /ws-api/v3",
                 self.url, self._cfg.host, self._cfg.port)

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._open())
        except BaseException as exc:  # the port taken, say: the venue's start reports it
            ready.set_exception(exc)
            return
        ready.set_result(None)
        loop.run_forever()

    async def _open(self) -> None:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", PREFIX + "{path:.+}", self._handle)
        for path in ("/ws", "/ws/{name}", "/stream"):
            app.router.add_get(path, self.streams.market)
        app.router.add_get("/ws-api/v3", self.streams.ws_api)
        self.streams.attach(asyncio.get_running_loop())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self._cfg.host, self._cfg.port, reuse_address=True)
        await self._site.start()

    def stop(self) -> None:
        loop = self._loop
        if loop is None or not loop.is_running():
            return
        asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)

    async def _close(self) -> None:
        await self.streams.close()  # connections cut first: the runner's clean-up would wait for each WebSocket
        if self._runner is not None:
            await self._runner.cleanup()

    # -- faults ----------------------------------------------------------------------------------

    def drop(self, duration_s: float) -> None:
        """Refuse connections for ``duration_s`` (the listening socket closed, open ones cut)."""
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._drop(duration_s), self._loop)

    async def _drop(self, duration_s: float) -> None:
        if self._site is not None:
            await self._site.stop()
        if self._runner is not None and self._runner.server is not None:
            for connection in self._runner.server.connections:  # kept-alive ones too: an outage cuts them
                connection.force_close()
        await self.streams.drop_all()
        log.warning("exchange API dropped for %.1fs (fault injection)", duration_s)
        await asyncio.sleep(duration_s)
        await self._listen()

    def rate_limit(self, duration_s: float) -> None:
        """Answer every request 429 for ``duration_s``, as Binance does past its weight limit."""
        self.rate_limited_until = time.monotonic() + duration_s

    # -- one request -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        route = ROUTES.get((request.method, request.match_info["path"]))
        if route is None:
            return _answer(ApiError(-1100 if request.method == "GET" else -1101, "Not found.", http=404).body(), 404)
        name, signed, order_entry = route
        try:
            self._check_rate()
            if signed:
                raw = await request.text() if request.method == "POST" else request.query_string
                params = self._verified(request, raw)
            else:
                params = dict(request.query)
            if order_entry and (latency := self._latency_ms()) > 0:
                await asyncio.sleep(latency / 1000)
            result = await asyncio.wrap_future(self._on_venue_loop(name, params))
        except ApiError as exc:
            return _answer(exc.body(), exc.http)
        return _answer(result, 200)

    def _check_rate(self) -> None:
        now = time.monotonic()
        second = int(now)
        count = self._window[1] + 1 if self._window[0] == second else 1
        self._window = (second, count)
        if now < self.rate_limited_until or count > self._cfg.max_requests_per_s:
            self._count("rate_limited")
            raise ApiError(-1003, f"Too many requests; current limit is {int(self._cfg.max_requests_per_s)} "
                                  f"requests per SECOND.", http=429)

    def _verified(self, request: web.Request, raw: str) -> dict[str, str]:
        payload, _, signature = raw.rpartition("&signature=")
        params = dict(parse_qsl(payload, keep_blank_values=True))
        self._signatures.check(request.headers.get("X-MBX-APIKEY", ""), payload, signature, params)
        return params

    def _on_account(self, events: list[Event]) -> None:
        """The account's events (on the venue's loop) to its user data subscribers, if any."""
        if self.streams.has_users:
            self.streams.user_events(user_data.user_events(self._api, events, time.time_ns() // 1_000_000))

    def _on_venue_loop(self, name: str, params: dict[str, str]) -> concurrent.futures.Future[Any]:
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def call() -> None:
            try:
                done.set_result(getattr(self, name)(params) if name in ("ping", "server_time")
                                else getattr(self._api, name)(params))
            except ApiError as exc:
                done.set_exception(exc)
            except Exception as exc:  # a bug of ours: Binance's "unknown error", logged with its cause
                log.exception("exchange API %s failed", name)
                self._count("error")
                done.set_exception(ApiError(-1000, f"An unknown error occurred while processing the request: "
                                                   f"{type(exc).__name__}", http=500))

        self._reactor.call_soon_threadsafe(call)
        return done

    @staticmethod
    def ping(_params: dict[str, str]) -> dict[str, Any]:
        return {}

    @staticmethod
    def server_time(_params: dict[str, str]) -> dict[str, Any]:
        return {"serverTime": time.time_ns() // 1_000_000}

    def _count(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def stats(self) -> dict[str, Any]:
        return {"url": self.url, "requests": self.requests, "refused": dict(self.refused),
                "streams": self.streams.stats()}


def _answer(body: Any, status: int) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")
