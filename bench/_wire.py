"""What the failsafe benchmark sees of the daemon from outside: its own sockets (``Wire``:
pipelined pollers and SUBs in one poller) and the venue's book rebuilt from the venue's own
execution reports (``Book``). Every timestamp is the sender's wall-clock ``time_ns``."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import zmq

import proto
from bench._live import LiveDaemon
from deploy.temp_daemon import HARNESS
from bus import make_socket


class Wire:
    """The benchmark's own sockets: pipelined pollers (DEALER, one request in flight each) and SUBs,
    all in one ``zmq.Poller``; every timestamp is a wall-clock ``time_ns`` of the message's sender."""

    def __init__(self, d: LiveDaemon) -> None:
        self.d = d
        self.poller = zmq.Poller()
        self._epoch = time.time_ns()
        self._ids = itertools.count(1)
        self.subs: dict[str, zmq.Socket] = {}
        self.pollers: dict[str, dict[str, Any]] = {}

    def sub(self, name: str, service: str, topics: list[str]) -> None:
        sock = make_socket(self.d.ctx, zmq.SUB, self.d.settings.bus)
        for t in topics:
            sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        self.d.security.connect(sock, self.d.endpoints.pub(service), service)
        self.subs[name] = sock
        self.poller.register(sock, zmq.POLLIN)

    def poll_target(self, name: str, service: str, command: str, done: Callable[[dict[str, Any]], bool]) -> None:
        sock = make_socket(self.d.ctx, zmq.DEALER, self.d.settings.bus)
        self.d.security.connect(sock, self.d.endpoints.cmd(service), service)
        self.pollers[name] = {"sock": sock, "command": command, "done": done}
        self.poller.register(sock, zmq.POLLIN)

    def send(self, sock: zmq.Socket, command: str, args: dict[str, Any] | None = None) -> None:
        sock.send(proto.encode(HARNESS, self._epoch, next(self._ids), time.time_ns(), proto.Command(
            id=f"bench:{self._epoch}:{next(self._ids)}", name=command, args=args or {})))

    def drain_subs(self) -> None:
        for sock in self.subs.values():
            while sock.poll(0):
                sock.recv_multipart()

    def watch(self, trigger: Callable[[], None], until: Callable[[dict[str, Any]], bool], timeout_s: float,
              use_pollers: bool = True, gap_s: float = 0.0005) -> dict[str, Any]:
        """Poll every target (if ``use_pollers``) with one request in flight; call ``trigger()`` once
        each target has answered once (and not yet done); collect sub messages until ``until(seen)``
        or timeout. Returns ``seen``: {"events": [(sub name, env)], "<target>": ts_ns of the first
        done answer, "<target>_before": the last not-done answer's ts_ns, "polls": {target: n}}."""
        pollers = self.pollers if use_pollers else {}
        seen: dict[str, Any] = {"events": [], "polls": {n: 0 for n in pollers}, "triggered_ns": None}
        due = {n: 0.0 for n in pollers}
        in_flight = dict.fromkeys(pollers, False)
        answered_false: set[str] = set()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            now = time.monotonic()
            for n, p in pollers.items():
                if not in_flight[n] and n not in seen and now >= due[n]:
                    try:
                        self.send(p["sock"], p["command"])
                        in_flight[n] = True
                    except zmq.Again:
                        due[n] = now + 0.01
            if seen["triggered_ns"] is None and answered_false >= set(pollers):
                seen["triggered_ns"] = time.time_ns()
                trigger()
            pending = [due[n] for n in pollers if not in_flight[n] and n not in seen]
            wait_ms = max(0, int((min(pending) - time.monotonic()) * 1000)) if pending else 10
            for sock, _ in self.poller.poll(min(wait_ms, 10)):
                for sname, s in self.subs.items():
                    if s is sock:
                        while sock.poll(0):
                            _topic, data = sock.recv_multipart()
                            seen["events"].append((sname, proto.decode(data)))
                for n, p in pollers.items():
                    if p["sock"] is sock:
                        env = proto.decode(sock.recv())
                        in_flight[n] = False
                        due[n] = time.monotonic() + gap_s
                        seen["polls"][n] += 1
                        reply = env.body
                        if not reply.ok:
                            raise RuntimeError(f"{p['command']} refused: {reply.error}")
                        if p["done"](reply.result):
                            if seen["triggered_ns"] is not None:
                                seen[n] = env.ts_ns
                        else:
                            answered_false.add(n)
                            seen[f"{n}_before"] = env.ts_ns
            if seen["triggered_ns"] is not None and until(seen):
                break
        # let the answers still in flight arrive, so the next watch starts clean
        for n, p in pollers.items():
            if in_flight[n] and p["sock"].poll(1000):
                p["sock"].recv()
        return seen

    def close(self) -> None:
        for sock in [*self.subs.values(), *(p["sock"] for p in self.pollers.values())]:
            self.poller.unregister(sock)
            sock.close(linger=0)


class Book:
    """The venue's book rebuilt from its own execution reports (PUB ``orders``/``fills``), so (b)
    and (c) are timed without asking anything: the last cancel of a resting order, and the fill
    that leaves every position flat, each stamped by the venue as it publishes."""

    def __init__(self, resting: set[str], positions: dict[str, float]) -> None:
        self.open = set(resting)
        self.positions = dict(positions)
        self.cancelled_ns: int | None = None
        self.flat_ns: int | None = None

    def apply(self, env: proto.Envelope) -> None:
        body = env.body
        if isinstance(body, proto.OrderUpdate) and body.client_order_id in self.open and not body.status.is_open:
            self.open.discard(body.client_order_id)
            if not self.open:
                self.cancelled_ns = env.ts_ns
        elif isinstance(body, proto.Fill):
            self.positions[body.symbol] = self.positions.get(body.symbol, 0.0) + body.side.sign * body.qty
            if self.flat_ns is None and all(abs(q) < 1e-7 for q in self.positions.values()):
                self.flat_ns = env.ts_ns
