"""Raw pyzmq baselines for the live benchmarks, one role per child process:

    python -m bench._chain ROLE ARG...

The four-hop tick-to-order floor (``bench.tick_to_order``), the same topology as the daemon's path
built from bare sockets, blocking receives, no codec:

  venue    QUOTES_EP ORDERS_EP RATE QUOTE_BYTES  PUB of quotes ``[b"md.BTC-USD", <ts_ns int64>
           <seq int64><padding>]`` at RATE per second, ticking like the simulator (every
           max(1 ms, 1/RATE), publishing what is due, each stamped ``time.time_ns()`` as it is sent),
           and a ROUTER for orders; on each order it records ``time.time_ns()`` minus the quote's
           timestamp the order carries. Waited on in a ``zmq.Poller`` (it has two jobs).
  router   IN_EP OUT_EP                           SUB → PUB, blocking receive, forwards every frame
  engine   IN_EP ORDERS_EP EVERY_N ORDER_BYTES    SUB; every EVERY_N-th quote → a DEALER message
           ``<ts_ns of that quote><padding>`` to the exchange manager
  exchange IN_EP VENUE_EP                         ROUTER in → DEALER out to the venue's ROUTER

The venue reads ``run WARMUP_S SECONDS`` on stdin, publishes for WARMUP_S + SECONDS, then prints
``result {json}``: the latencies (ns) of the orders that arrived after the warm-up, when each
arrived, and counts.

The single-pair PUB/SUB rate (``bench.throughput``):

  blast    EP QUOTE_BYTES                         PUB; ``blast SECONDS`` sends as fast as it can,
           ``paced RATE SECONDS`` at RATE per second ticking like the simulator; every message
           ``<seq int64><padding>``; then ``sent N``
  count    EP                                     SUB (blocking receive); counts messages and
           sequence gaps; ``report`` on stdin prints ``counts {json}`` (cumulative)

Default high-water marks (1,000) unless ``HWM=<n>`` is in the environment. Every role prints
``ready`` once its sockets are set up and exits when stdin closes (so a dead parent leaves no
child behind) or on SIGTERM.
"""

from __future__ import annotations

import json
import math
import os
import queue
import struct
import sys
import threading
import time

import zmq

from bench._peer_process import StdioChild

TOPIC = b"md.BTC-USD"
TS = struct.Struct("<q")
TS_SEQ = struct.Struct("<qq")


def _ready() -> None:
    print("ready", flush=True)


def _exit_when_stdin_closes() -> None:
    def watch() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _socket(ctx: zmq.Context, kind: int) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    hwm = os.environ.get("HWM")
    if hwm:
        sock.setsockopt(zmq.SNDHWM, int(hwm))
        sock.setsockopt(zmq.RCVHWM, int(hwm))
    return sock


def venue(quotes_ep: str, orders_ep: str, rate: str, quote_bytes: str) -> None:
    r = float(rate)
    pad = b"\0" * max(0, int(quote_bytes) - TS_SEQ.size)
    ctx = zmq.Context()
    pub = _socket(ctx, zmq.PUB)
    pub.bind(quotes_ep)
    orders = _socket(ctx, zmq.ROUTER)
    orders.bind(orders_ep)
    poller = zmq.Poller()
    poller.register(orders, zmq.POLLIN)
    _ready()
    line = sys.stdin.readline().split()
    if not line or line[0] != "run":
        return
    warmup_s, seconds = float(line[1]), float(line[2])
    tick = min(0.2, max(0.001, 1.0 / r))
    start = time.monotonic()
    measure_from = time.time_ns() + int(warmup_s * 1e9)
    end = start + warmup_s + seconds
    next_tick = start
    last, carry, seq = start, 0.0, 0
    samples: list[int] = []
    arrivals: list[float] = []  # seconds after the warm-up, per sample
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now >= next_tick:
            carry += (now - last) * r
            last = now
            steps = int(carry)
            carry -= steps
            for _ in range(steps):
                seq += 1
                pub.send_multipart((TOPIC, TS_SEQ.pack(time.time_ns(), seq) + pad))
            next_tick = max(next_tick + tick, now)
        timeout_ms = max(0, math.ceil((next_tick - time.monotonic()) * 1000))
        if poller.poll(timeout_ms):
            while orders.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                _ident, payload = orders.recv_multipart(flags=zmq.NOBLOCK)
                arrived = time.time_ns()
                (ts,) = TS.unpack_from(payload)
                if arrived >= measure_from:
                    samples.append(arrived - ts)
                    arrivals.append((arrived - measure_from) / 1e9)
    print("result " + json.dumps({"latency_ns": samples, "arrival_s": arrivals, "quotes": seq,
                                  "elapsed_s": time.monotonic() - start}), flush=True)
    sys.stdin.read()


def router(in_ep: str, out_ep: str) -> None:
    ctx = zmq.Context()
    sub = _socket(ctx, zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"md.")
    sub.connect(in_ep)
    pub = _socket(ctx, zmq.PUB)
    pub.bind(out_ep)
    _ready()
    while True:
        pub.send_multipart(sub.recv_multipart())


def engine(in_ep: str, orders_ep: str, every_n: str, order_bytes: str) -> None:
    n = int(every_n)
    pad = b"\0" * max(0, int(order_bytes) - TS.size)
    ctx = zmq.Context()
    sub = _socket(ctx, zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, TOPIC)
    sub.connect(in_ep)
    dealer = _socket(ctx, zmq.DEALER)
    dealer.connect(orders_ep)
    _ready()
    count = 0
    while True:
        _topic, payload = sub.recv_multipart()
        count += 1
        if count % n == 0:
            dealer.send(payload[:TS.size] + pad)


def exchange(in_ep: str, venue_ep: str) -> None:
    ctx = zmq.Context()
    router_sock = _socket(ctx, zmq.ROUTER)
    router_sock.bind(in_ep)
    dealer = _socket(ctx, zmq.DEALER)
    dealer.connect(venue_ep)
    _ready()
    while True:
        _ident, payload = router_sock.recv_multipart()
        dealer.send(payload)


def blast(ep: str, quote_bytes: str) -> None:
    pad = b"\0" * max(0, int(quote_bytes) - TS.size)
    ctx = zmq.Context()
    pub = _socket(ctx, zmq.PUB)
    pub.bind(ep)
    _ready()
    seq = 0
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        start = time.monotonic()
        sent0 = seq
        if parts[0] == "blast":
            end = start + float(parts[1])
            send = pub.send_multipart
            while True:
                for _ in range(256):
                    seq += 1
                    send((TOPIC, TS.pack(seq) + pad))
                if time.monotonic() >= end:
                    break
        elif parts[0] == "paced":
            r, end = float(parts[1]), start + float(parts[2])
            tick = min(0.2, max(0.001, 1.0 / r))
            last, carry = start, 0.0
            while True:
                now = time.monotonic()
                if now >= end:
                    break
                carry += (now - last) * r
                last = now
                steps = int(carry)
                carry -= steps
                for _ in range(steps):
                    seq += 1
                    pub.send_multipart((TOPIC, TS.pack(seq) + pad))
                delay = tick - (time.monotonic() - now)
                if delay > 0:
                    time.sleep(delay)
        else:
            continue
        print(f"sent {seq - sent0} {time.monotonic() - start:.6f}", flush=True)


def count(ep: str) -> None:
    """Counts and gaps; ``report`` on stdin prints ``counts {json}`` (cumulative) within 0.1 s."""
    ctx = zmq.Context()
    sub = _socket(ctx, zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"md.")
    sub.setsockopt(zmq.RCVTIMEO, 100)
    sub.connect(ep)
    asked = threading.Event()

    def watch() -> None:
        for line in sys.stdin:
            if line.strip() == "report":
                asked.set()
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    _ready()
    received = lost = gaps = 0
    last = None
    recv = sub.recv_multipart
    while True:
        try:
            _topic, payload = recv()
        except zmq.Again:
            payload = None
        if payload is not None:
            (seq,) = TS.unpack_from(payload)
            received += 1
            if last is not None and seq > last + 1:
                gaps += 1
                lost += seq - last - 1
            last = seq
            if not asked.is_set():
                continue
        if asked.is_set():
            asked.clear()
            print("counts " + json.dumps({"received": received, "lost": lost, "gaps": gaps}), flush=True)


# -- the parent's side -----------------------------------------------------------------------------



class Child(StdioChild):
    """One ``bench._chain`` role in a child process, talked to over its stdin/stdout."""

    def __init__(self, role: str, *args: object, hwm: int | None = None) -> None:
        super().__init__("bench._chain", role, *args, env={"HWM": str(hwm)} if hwm else None)
        self.role = role
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def expect(self, prefix: str, timeout_s: float = 30.0) -> str:
        """The rest of the next line that starts with ``prefix``."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"raw {self.role}: no {prefix!r} within {timeout_s:g}s") from None
            if line is None:
                raise RuntimeError(f"raw {self.role} exited ({self.proc.poll()}) before {prefix!r}")
            if line.startswith(prefix):
                return line[len(prefix):].strip()


ROLES = {"venue": venue, "router": router, "engine": engine, "exchange": exchange, "blast": blast, "count": count}

if __name__ == "__main__":
    role = ROLES[sys.argv[1]]
    if role in (router, engine, exchange):
        _exit_when_stdin_closes()
    role(*sys.argv[2:])
