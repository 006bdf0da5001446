"""ccxt's async exchange on its own thread and asyncio loop, beside the process's zmq loop.

Each call is a coroutine run on that loop; its outcome is handed back to the process's reactor
(``on_done(result, error)``), so the adapter's callers, and the exchange manager's book, only ever
run on the reactor's thread. ccxt's own rate limiter is on: a burst waits in ccxt rather than
earning the venue's ban. With ``streams`` on, the exchange is ccxt.pro's class (the same REST calls,
and its ``watch_*`` websocket streams, which run on this loop too: ``streams.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro

from bus.reactor import Reactor
from services.venues.ccxt.credentials import Credentials
from services.venues.settings import CcxtConnectorSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


def make_exchange(cfg: CcxtConnectorSettings, credentials: Credentials) -> Any:
    """ccxt's class for ``cfg.exchange`` (ccxt.pro's, with its streams, when they are on and ccxt.pro has
    it), unmodified but for the URLs ``cfg.urls`` replaces (entry by entry, nested ones too)."""
    streams = cfg.streams and cfg.streams_off_why() is None
    kind = (getattr(ccxt_pro, cfg.exchange, None) if streams else None) or getattr(ccxt_async, cfg.exchange, None)
    if kind is None:
        raise ValueError(f"ccxt has no exchange {cfg.exchange!r}")
    exchange = kind({**credentials.as_ccxt(), "enableRateLimit": True,
                     "timeout": int(cfg.request_timeout_s * 1000), "options": dict(cfg.options),
                     **({"rateLimit": cfg.rate_limit_ms} if cfg.rate_limit_ms is not None else {})})
    if cfg.urls:
        exchange.urls["api"] = exchange.deep_extend(exchange.urls.get("api", {}), cfg.urls)
    if streams:
        # ccxt pings a websocket this often and gives it up after two unanswered pings: a dead link
        # is noticed within heartbeat_timeout_s (ccxt's default for Binance is three minutes)
        exchange.streaming = {**exchange.streaming, "keepAlive": int(cfg.heartbeat_timeout_s * 500)}
    return exchange


class CcxtSession:
    def __init__(self, cfg: CcxtConnectorSettings, credentials: Credentials, reactor: Reactor) -> None:
        self._reactor = reactor
        self.exchange = make_exchange(cfg, credentials)
        self.requests = 0
        self.latency_ms = 0.0  # the venue's round trip, smoothed: one HTTP request, not ccxt's rate-limit wait
        self.largest_response_bytes = 0  # since the caller last reset it (reconciliation's answer sizes)
        self.last_answer: float | None = None  # time.monotonic() of the venue's latest HTTP answer
        self._time_requests()
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_quiet_ccxt_leftovers)
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"ccxt-{cfg.name}", daemon=True)
        self._thread.start()

    def _time_requests(self) -> None:
        """Time each HTTP request the exchange makes (its ``fetch``, after ccxt's throttle), on this
        instance: the venue's latency, which a call's own time (throttle waits included) is not."""
        request = self.exchange.fetch

        async def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                response = await request(*args, **kwargs)
                self.last_answer = time.monotonic()
                return response
            except ccxt_async.ExchangeError:  # an answer, if a refusal: the venue is there
                self.last_answer = time.monotonic()
                raise
            finally:
                sample = (time.perf_counter() - t0) * 1000
                self.largest_response_bytes = max(self.largest_response_bytes,
                                                  len(self.exchange.last_http_response or ""))
                self.requests += 1
                self.latency_ms = sample if self.requests == 1 else 0.8 * self.latency_ms + 0.2 * sample

        self.exchange.fetch = timed

    def run(self, coro: Awaitable[T], on_done: Callable[[T | None, BaseException | None], None]) -> None:
        """Run ``coro`` on the ccxt loop; ``on_done(result, None)`` or ``on_done(None, error)`` on the reactor."""
        async def call() -> T:
            return await coro

        future = asyncio.run_coroutine_threadsafe(call(), self._loop)

        def done(f: concurrent.futures.Future[T]) -> None:
            try:
                result, error = f.result(), None
            except BaseException as exc:  # handed to the caller, who maps it to a reason
                result, error = None, exc
            self._reactor.call_soon_threadsafe(lambda: on_done(result, error))

        future.add_done_callback(done)

    def spawn(self, coro: Awaitable[None]) -> concurrent.futures.Future[None]:
        """Run ``coro`` on the ccxt loop for as long as it runs (a stream); cancel it with the future."""
        async def call() -> None:
            await coro

        return asyncio.run_coroutine_threadsafe(call(), self._loop)

    def close(self) -> None:
        if not self._loop.is_running():
            return
        try:
            asyncio.run_coroutine_threadsafe(self.exchange.close(), self._loop).result(timeout=5)
        except Exception as exc:  # closing: nothing to do about it but say so
            log.warning("ccxt %s: close failed: %s", self.exchange.id, exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def _quiet_ccxt_leftovers(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """ccxt.pro leaves some futures it rejected unawaited (the user data subscription's, when a
    connection fails): asyncio would log each as an ERROR with its traceback when it is collected.
    The failure itself reached the stream that waited on it (counted and logged there): these are
    debug lines. Anything else is asyncio's to report."""
    error = context.get("exception")
    if context.get("message", "").startswith("Future exception was never retrieved") and isinstance(
            error, ccxt_async.BaseError):
        log.debug("ccxt: a future left with %s: %s", type(error).__name__, error)
        return
    loop.default_exception_handler(context)
