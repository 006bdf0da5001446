"""The HTTP server of the simulator's exchange API: Binance's spot REST paths, its API-key header
and HMAC-SHA256 request signatures, its request-rate limit, and its error answers.

It runs on its own thread and asyncio loop (aiohttp), beside the venue's zmq loop. A request is
checked here (key, signature, timestamp, rate) and then handed to the venue's loop, where
``BinanceSpot`` reads and moves the one matcher; the answer comes back through a future. The
venue's latency fault delays each order-entry call before it is handed over, as a slow venue
would; ``drop`` closes the listening socket for a while (connections refused), as an outage would.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from bus.reactor import Reactor
from services.venue_sim.exchange_api.binance import ApiError, BinanceSpot
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
BAD_KEY = ApiError(-2015, "Invalid API-key, IP, or permissions for action.", http=401)
BAD_SIGNATURE = ApiError(-1022, "Signature for this request is not valid.")
STALE = ApiError(-1021, "Timestamp for this request is outside of the recvWindow.")
MAX_BODY_BYTES = 16_384


def sign(query: str, secret: str) -> str:
    """The signature Binance expects of ``query`` (what a client appends as ``&signature=``)."""
    return hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()


class ExchangeApiServer:
    def __init__(self, cfg: ExchangeApiSettings, api: BinanceSpot, reactor: Reactor,
                 latency_ms: Callable[[], float]) -> None:
        self._cfg = cfg
        self._api = api
        self._reactor = reactor
        self._latency_ms = latency_ms
        self._secret = cfg.api_secret.get_secret_value()
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
        log.info("exchange API (Binance spot subset) serving on %s", self.url)

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
        key = request.headers.get("X-MBX-APIKEY", "")
        if not hmac.compare_digest(key.encode(), self._cfg.api_key.encode()):
            self._count("bad_key")
            raise BAD_KEY
        payload, _, signature = raw.rpartition("&signature=")
        if not payload or not hmac.compare_digest(signature.encode(), sign(payload, self._secret).encode()):
            self._count("bad_signature")
            raise BAD_SIGNATURE
        params = dict(parse_qsl(payload, keep_blank_values=True))
        try:
            stamp = int(params.get("timestamp", ""))
            window = int(params.get("recvWindow", self._cfg.recv_window_ms))
        except ValueError:
            self._count("stale")
            raise STALE from None
        now = time.time_ns() // 1_000_000
        if stamp > now + 1000 or now - stamp > min(window, 60_000):
            self._count("stale")
            raise STALE
        return params

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
        return {"url": self.url, "requests": self.requests, "refused": dict(self.refused)}


def _answer(body: Any, status: int) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")
