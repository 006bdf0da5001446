"""One of ccxt.pro's streams (a ``watch_*`` call), kept up on the session's loop and handed to the
process's reactor.

ccxt.pro's ``watch_*`` answers with what came since it was last called (or the latest state), once
something came; so a stream is that call made again and again. Each answer is *picked* on the ccxt
thread (what of it is news, in the adapter's terms) and the items go to the reactor through one
bounded queue (``MAX_PENDING``; past it the oldest is dropped and counted: polling catches up), with
at most one wake-up of the reactor pending however fast they come.

A failed call (the connection closed or refused, a ping unanswered within ccxt's ``keepAlive``
twice, the venue's refusal, a sequence gap in a book) is counted and the call made again after the
connector's backoff (``reconnect_initial_s`` doubling to ``reconnect_max_s``, with jitter): ccxt
dials a new connection and subscribes again on it. A stream with a ``quiet_s`` (market data) that
brings nothing that long is given up the same way (``on_quiet`` closes its connections first). A
stream is *live* from its first answer after a (re)subscription until its next failure: the
adapter trusts it (and slows its polling) only then.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from bus.reactor import Reactor
from services.backoff import Backoff
from services.venues.ccxt import translate
from services.venues.ccxt.session import CcxtSession
from services.venues.settings import CcxtConnectorSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_PENDING = 10_000  # items picked and not yet taken by the reactor


class Stream(Generic[T]):
    def __init__(self, name: str, cfg: CcxtConnectorSettings, session: CcxtSession, reactor: Reactor,
                 watch: Callable[[], Awaitable[Any]], pick: Callable[[Any], list[T]],
                 on_items: Callable[[list[T]], None], *, quiet_s: float | None = None,
                 on_quiet: Callable[[], Awaitable[Any]] | None = None) -> None:
        """``watch``: the ccxt call; ``pick`` (ccxt thread): an answer's items; ``on_items`` (reactor):
        takes them, oldest first."""
        self.name = name
        self._cfg = cfg
        self._session = session
        self._reactor = reactor
        self._watch, self._pick, self._on_items = watch, pick, on_items
        self._quiet_s, self._on_quiet = quiet_s, on_quiet
        self._pending: deque[T] = deque()
        self._scheduled = False
        self._task: concurrent.futures.Future[None] | None = None
        self.live = False
        self.live_at = 0.0  # time.monotonic() of its first answer since its last (re)subscription
        self.heard = 0.0  # time.monotonic() of its latest answer
        self.messages = 0  # answers
        self.items = 0
        self.dropped = 0
        self.errors = 0
        self.reconnects = 0

    def start(self) -> None:
        if self._task is None:
            self._task = self._session.spawn(self._run())
            log.info("stream %s: watching", self.name)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.live = False

    # -- on the ccxt loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff(self._cfg.reconnect_initial_s, self._cfg.reconnect_max_s, jitter=self._cfg.reconnect_jitter)
        while True:
            try:
                answer = await (asyncio.wait_for(self._watch(), self._quiet_s) if self._quiet_s else self._watch())
                items = self._pick(answer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # whatever ccxt raised: counted, and the stream dialled again
                await self._failed(exc, backoff)
                continue
            self.heard = time.monotonic()
            if not self.live:
                self.live, self.live_at = True, self.heard
            self.messages += 1
            backoff.reset()
            self._hand(items)

    async def _failed(self, exc: Exception, backoff: Backoff) -> None:
        self.live = False
        self.errors += 1
        quiet = isinstance(exc, asyncio.TimeoutError)
        why = f"nothing for {self._quiet_s:g}s" if quiet else translate.reason(exc)
        delay = backoff.next()
        self.reconnects += 1
        log.warning("stream %s: %s; subscribing again in %.2fs (attempt %d)", self.name, why, delay, backoff.attempts)
        if quiet and self._on_quiet is not None:
            try:
                await self._on_quiet()  # its connection may look open yet carry nothing: a new one
            except Exception as close_error:  # closing a dead connection: nothing to do but say so
                log.info("stream %s: closing its connection failed: %s", self.name, close_error)
        await asyncio.sleep(delay)

    def _hand(self, items: list[T]) -> None:
        if not items:
            return
        for item in items:
            if len(self._pending) >= MAX_PENDING:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append(item)
        if not self._scheduled:
            self._scheduled = True
            self._reactor.call_soon_threadsafe(self._drain)

    # -- on the reactor ----------------------------------------------------------------------------

    def _drain(self) -> None:
        self._scheduled = False  # first: an item handed from now on schedules another drain
        batch: list[T] = []
        while True:
            try:
                batch.append(self._pending.popleft())
            except IndexError:
                break
        if batch:
            self.items += len(batch)
            self._on_items(batch)

    def stats(self) -> dict[str, Any]:
        return {"live": self.live, "messages": self.messages, "items": self.items, "dropped": self.dropped,
                "errors": self.errors, "reconnects": self.reconnects}
