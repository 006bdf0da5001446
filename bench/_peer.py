"""The other end of ``bench.bus_latency``: a child process that publishes or serves.

    python -m bench._peer MODE ENDPOINT

Modes:
  pub-raw    plain pyzmq PUB; sends ``[topic, <t0 int64><index int32><padding>]`` (as big as ours)
  pub-ours   a ``bus.Publisher`` on a ``bus.make_socket`` XPUB whose subscriptions a
             ``bus.SubscriptionGuard`` applies, as every service's PUB; publishes a ``proto.Heartbeat``
             whose ``stats`` carry ``t`` (perf_counter_ns taken just before the message is built) and ``i``
  rep-raw    plain pyzmq ROUTER, blocking recv, echoes every request
  rep-poll   plain pyzmq ROUTER waited on in a ``zmq.Poller`` loop, echoes every request
  rep-ours   a ``bus.CommandServer`` (trivial ``status`` handler) on a ``bus.make_socket`` ROUTER,
             driven by a ``bus.Reactor``, exactly as a service runs it

The child prints ``ready`` once bound. Publishers then read ``run N RATE`` lines on stdin, send N
messages paced at RATE per second and print ``done``. Every mode exits when stdin closes (so a
killed parent never leaves a child behind) or on SIGTERM.

``time.perf_counter_ns`` is CLOCK_MONOTONIC on Linux, one clock for every process on the machine,
so a timestamp taken here can be subtracted from one taken in the parent.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

import zmq

# The publisher's own heartbeat topic: a Subscriber opens a stream only for a topic its source
# declares (proto.topics.publishes), and every source publishes ``hb.<itself>``.
TOPIC = "hb.data_router"
RAW_HEADER = struct.Struct("<qi")
# The size of the encoded Heartbeat that pub-ours sends (checked by bus_latency at start-up).
PAYLOAD_BYTES = 267


def ours_heartbeat(t0: int, index: int) -> "proto.Heartbeat":
    """The data router's heartbeat as pub-ours sends it: its typed summary carries the send time
    (``refused["t"]``, an exact int) and the index (``routed``)."""
    import proto
    from proto.summaries import RouterSummary

    return proto.Heartbeat(pid=4242, interval_s=0.2, state=proto.OrchestratorState.READY,
                           stats=RouterSummary(uptime_s=12.345, routed=index, refused={"t": t0}))


def raw_payload(t0: int, index: int) -> bytes:
    return RAW_HEADER.pack(t0, index) + b"\0" * (PAYLOAD_BYTES - RAW_HEADER.size)


def _ready() -> None:
    print("ready", flush=True)


def _exit_when_stdin_closes() -> None:
    def watch() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _paced(n: int, rate: float, send) -> None:
    start = time.perf_counter() + 0.005
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        send(i)


def _publisher_loop(send, before_run=lambda: None) -> None:
    _ready()
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "run":
            before_run()
            _paced(int(parts[1]), float(parts[2]), send)
            print("done", flush=True)
        elif parts[0] == "quit":
            break


def pub_raw(endpoint: str) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    topic = TOPIC.encode()
    _publisher_loop(lambda i: sock.send_multipart([topic, raw_payload(time.perf_counter_ns(), i)]))


def curve_of(endpoint: str, name: str) -> Any:
    """``name``'s CURVE credentials from the key directory beside an ``ours+curve`` endpoint."""
    from bus import Curve, KeyStore

    return Curve(KeyStore(Path(endpoint.removeprefix("ipc://")).parent / "keys"), name)


def pub_ours(endpoint: str, curve: bool = False) -> None:
    import proto
    from bus import BusSettings, Publisher, Reactor, SubscriptionGuard, make_socket

    ctx = zmq.Context()
    bus = BusSettings()
    sock = make_socket(ctx, zmq.XPUB, bus)
    if curve:
        server = curve_of(endpoint, "data_router")
        server.start(ctx)
        server.serve(sock)
    # The guard's reader is called by hand before each run (this loop waits on stdin, not in a
    # reactor): the subscriber's subscription has come in by then.
    guard = SubscriptionGuard(sock, Reactor(), bus, name="bench", accepts=lambda prefix: TOPIC.encode().startswith(prefix))
    sock.bind(endpoint)
    publisher = Publisher(sock, "data_router", time.time_ns())

    def send(i: int) -> None:
        publisher.publish(TOPIC, ours_heartbeat(time.perf_counter_ns(), i))

    _publisher_loop(send, guard.drain)


def rep_raw(endpoint: str) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    _exit_when_stdin_closes()
    _ready()
    while True:
        sock.send_multipart(sock.recv_multipart())


def rep_poll(endpoint: str) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    _exit_when_stdin_closes()
    _ready()
    while True:
        for _sock, _event in poller.poll(None):
            sock.send_multipart(sock.recv_multipart(flags=zmq.NOBLOCK), flags=zmq.NOBLOCK)


def rep_ours(endpoint: str, curve: bool = False) -> None:
    from bus import BusSettings, CommandServer, NoCurve, Reactor, make_socket

    bus = BusSettings()
    ctx = zmq.Context()
    sock = make_socket(ctx, zmq.ROUTER, bus)
    security = curve_of(endpoint, "engine") if curve else NoCurve()
    security.start(ctx)
    security.serve(sock)
    sock.bind(endpoint)
    status = {"service": "engine", "pid": os.getpid(), "epoch": 1, "stats": None, "bus": {}}  # a ProcessStatus
    server = CommandServer(sock, "engine", time.time_ns(), {"status": lambda _args: status},
                           cache_size=bus.command_cache_size, max_bytes=bus.max_message_bytes, security=security)
    reactor = Reactor()
    reactor.add_reader(sock, server.drain)
    _exit_when_stdin_closes()
    _ready()
    reactor.run()


MODES = {
    "pub-raw": pub_raw,
    "pub-ours": pub_ours,
    "rep-raw": rep_raw,
    "rep-poll": rep_poll,
    "rep-ours": rep_ours,
    "pub-ours-curve": lambda endpoint: pub_ours(endpoint, curve=True),
    "rep-ours-curve": lambda endpoint: rep_ours(endpoint, curve=True),
}


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] not in MODES:
        raise SystemExit(f"usage: python -m bench._peer {{{'|'.join(MODES)}}} ENDPOINT")
    MODES[argv[0]](argv[1])


if __name__ == "__main__":
    main(sys.argv[1:])
