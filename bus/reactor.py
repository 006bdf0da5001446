"""A poller-driven event loop: sockets, timers, thread-safe calls and a clean stop on SIGTERM.

One loop per process, readable top to bottom: wait in ``zmq.Poller`` until a socket is readable
or the next timer is due, dispatch, repeat. SIGTERM/SIGINT (when the loop runs in the main thread)
and ``stop()`` from any thread wake the poller at once through a self-pipe, so a graceful stop
never waits for a timeout.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

import zmq

log = logging.getLogger(__name__)


class Reactor:
    def __init__(self) -> None:
        self._poller = zmq.Poller()
        self._readers: dict[zmq.Socket, Callable[[], object]] = {}
        self._timers: list[tuple[float, int, float | None, Callable[[], object]]] = []
        self._order = itertools.count()
        self._calls: deque[Callable[[], object]] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_fd = self._wake_r.fileno()
        self._poller.register(self._wake_fd, zmq.POLLIN)
        self._running = False
        self._stopping = False
        self.callback_errors = 0
        # Loop stalls (see on_stall): hooks, and when the last poll returned.
        self._stall_hooks: list[tuple[float, Callable[[float], object]]] = []
        self._turned_at: float | None = None
        self._stall_floor_s = float("inf")
        self.longest_stall_s = 0.0
        self.turn_callbacks = 0  # callbacks run in the turn now ending (what a stall hook may report)

    def add_reader(self, sock: zmq.Socket, callback: Callable[[], object]) -> None:
        self._readers[sock] = callback
        self._poller.register(sock, zmq.POLLIN)

    def remove_reader(self, sock: zmq.Socket) -> None:
        if self._readers.pop(sock, None) is not None:
            self._poller.unregister(sock)

    def call_every(self, interval_s: float, callback: Callable[[], object], *, first_in_s: float = 0.0) -> None:
        """Call ``callback`` every ``interval_s``, first at ``first_in_s`` from now rounded up to the
        interval's grid on CLOCK_MONOTONIC. The clock is the machine's, so every timer of one period
        fires at the same instants in every process: a process's housekeeping takes one wake-up
        instead of one per timer, and its peers' heartbeats arrive together (issue 16: idle CPU)."""
        if interval_s <= 0:
            raise ValueError(f"a periodic timer needs an interval > 0, not {interval_s}")
        due = math.ceil((time.monotonic() + first_in_s) / interval_s) * interval_s
        heapq.heappush(self._timers, (due, next(self._order), interval_s, callback))

    def call_later(self, delay_s: float, callback: Callable[[], object]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay_s, next(self._order), None, callback))

    def on_stall(self, threshold_s: float, callback: Callable[[float], object]) -> None:
        """Call ``callback(seconds)`` when the loop could not turn for longer than ``threshold_s``:
        the process was stopped (SIGSTOP) or starved, or a callback blocked. It runs as soon as the
        loop turns again, before any socket, call or timer is handled, so a process learns that it
        was away before it acts on what queued up meanwhile."""
        self._stall_hooks.append((threshold_s, callback))
        self._stall_floor_s = min(threshold_s for threshold_s, _ in self._stall_hooks)

    def call_soon_threadsafe(self, callback: Callable[[], object]) -> None:
        self._calls.append(callback)
        self._wake()

    def stop(self) -> None:
        """Ask the loop to return; safe from any thread and from signal handlers."""
        self._stopping = True
        self._wake()

    @property
    def running(self) -> bool:
        return self._running

    def run(self) -> None:
        in_main = threading.current_thread() is threading.main_thread()
        previous = {}
        if in_main:
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, lambda *_: self.stop())
        self._running = True
        try:
            while not self._stopping:
                self._poll_once()
        finally:
            self._running = False
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _poll_once(self) -> None:
        timeout_ms: int | None = None
        if self._timers:
            # Round up: zmq.Poller truncates to whole milliseconds, and a truncated 0 would spin
            # the loop until the timer is due.
            timeout_ms = max(0, math.ceil((self._timers[0][0] - time.monotonic()) * 1000))
        if self._calls:
            timeout_ms = 0
        polled_at = time.monotonic() if self._stall_hooks else 0.0
        events = self._poller.poll(timeout_ms)
        if self._stall_hooks:
            self._measure_stall(polled_at, timeout_ms)
        for sock, _event in events:
            if sock == self._wake_fd:
                self._drain_wake()
                continue
            self._guard(self._readers[sock])
        # The calls queued when the turn began, not those queued meanwhile: another thread that
        # keeps handing calls over must not keep the loop from its sockets and timers (heartbeats).
        for _ in range(len(self._calls)):
            self._guard(self._calls.popleft())
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now and not self._stopping:
            due, order, interval, callback = heapq.heappop(self._timers)
            if interval is not None:
                # Schedule from the due time, not from now, so periodic timers stay on their grid,
                # but never try to catch up a backlog of missed ticks after a stall.
                next_due = due + interval
                if next_due < now:  # missed ticks: the next point of the grid
                    next_due += math.ceil((now - next_due) / interval) * interval
                heapq.heappush(self._timers, (next_due, order, interval, callback))
            self._guard(callback)

    def _measure_stall(self, polled_at: float, timeout_ms: int | None) -> None:
        """How long the loop did not turn: time in the previous turn's callbacks, and time in the
        poll beyond its timeout (a process stopped while it waited in the poll)."""
        now = time.monotonic()
        busy = 0.0 if self._turned_at is None else polled_at - self._turned_at
        overdue = 0.0 if timeout_ms is None else now - polled_at - timeout_ms / 1000
        self._turned_at = now
        stalled = max(busy, overdue)
        self.longest_stall_s = max(self.longest_stall_s, stalled)
        if stalled >= self._stall_floor_s:
            for threshold_s, callback in self._stall_hooks:
                if stalled >= threshold_s:
                    self._guard(lambda: callback(stalled))
        self.turn_callbacks = 0

    def _guard(self, callback: Callable[[], object]) -> None:
        self.turn_callbacks += 1
        try:
            callback()
        except Exception:  # one failing callback must not end the process's loop
            self.callback_errors += 1
            log.exception("event loop callback failed")

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full: the loop is already going to wake

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        self._poller.unregister(self._wake_fd)
        self._wake_r.close()
        self._wake_w.close()
