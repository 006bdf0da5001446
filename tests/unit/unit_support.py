"""Small helpers shared by the unit tests (imported as a plain module: pytest puts this directory
on sys.path because the tests use rootdir-relative discovery without packages)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import zmq

import proto
from bus import Publisher, Reactor, Subscriber
from proto.commands import OrderArgs
from services.exchange_manager.order_book import OrderBook, OrderRecord

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.01, what: str = "") -> T:
    """Poll ``predicate`` every ``interval`` seconds until it returns something truthy; return that.

    Raises AssertionError after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s: {what or predicate}")
        time.sleep(interval)


def never(predicate: Callable[[], object], for_s: float, interval: float = 0.01) -> bool:
    """True if ``predicate`` stayed falsy for ``for_s`` seconds (polled every ``interval``).

    Only for asserting that something does NOT happen, where no event marks the end of the wait.
    """
    deadline = time.monotonic() + for_s
    while time.monotonic() < deadline:
        if predicate():
            return False
        time.sleep(interval)
    return True


@contextmanager
def reactor_thread(reactor: Reactor, join_timeout: float = 5.0) -> Iterator[threading.Thread]:
    """Run ``reactor`` in a background thread for the duration of the block; stop and join after."""
    thread = threading.Thread(target=reactor.run, name="test-reactor", daemon=True)
    thread.start()
    try:
        wait_until(lambda: reactor.running or not thread.is_alive(), what="reactor running")
        yield thread
    finally:
        reactor.stop()
        thread.join(join_timeout)
        assert not thread.is_alive(), "reactor thread did not stop"


class Collector:
    """Drains a Subscriber in the test thread and keeps what it delivered."""

    def __init__(self, sub: Subscriber) -> None:
        self.sub = sub
        self.messages: list[tuple[str, proto.Envelope]] = []

    def _handler(self, topic: str, env: proto.Envelope) -> None:
        self.messages.append((topic, env))

    def pump(self, wait_ms: int = 10) -> int:
        self.sub.socket.poll(wait_ms)
        return self.sub.drain(self._handler)

    def from_source(self, source: str) -> list[proto.Envelope]:
        return [env for _topic, env in self.messages if env.source == source]

    def wait_for(self, predicate: Callable[["Collector"], Any], timeout: float = 5.0, what: str = "") -> Any:
        def check() -> Any:
            self.pump()
            return predicate(self)

        return wait_until(check, timeout, interval=0.0, what=what)


def handshake(pub_sock: zmq.Socket, collector: Collector, timeout: float = 5.0, source: str = "probe") -> None:
    """Wait out ZeroMQ's slow-joiner window: publish probes (from ``source``, on its heartbeat
    topic ``hb.<source>``: a topic every source publishes) until one arrives."""
    probe = Publisher(pub_sock, source, 1)

    def check() -> bool:
        probe.publish(proto.topics.heartbeat(source), proto.Heartbeat(pid=0, interval_s=1.0))
        collector.pump()
        return bool(collector.from_source(source))

    wait_until(check, timeout, interval=0.0, what="subscriber connected")


def enter(book: OrderBook, args: OrderArgs, connector: str = "sim") -> OrderRecord:
    """An order entered into the book as the exchange manager enters one (made, journalled, added),
    minus the journal."""
    record = book.make(args, connector)
    book.add(record)
    return record


class ManualClock:
    """A clock a test sets by hand (``clock.t = ...``): pass it where code takes ``time.time`` or
    ``time.monotonic``."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t
