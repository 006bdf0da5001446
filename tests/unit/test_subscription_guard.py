"""bus.SubscriptionGuard on a real XPUB over ipc, with real subscribers (in this process, or in
child processes where a test needs peers that are different processes)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import zmq

import proto
from bus import BusSettings, Reactor, SubscriptionGuard, make_socket
from unit_support import never, reactor_thread, wait_until

T = TypeVar("T")
PUBLISHER = "orchestrator"  # the topics the guarded socket accepts: state, health.*, hb.orchestrator, ...
BUS = BusSettings(subscriptions_per_peer=16, subscriptions_per_socket=32)


@dataclass
class Guarded:
    guard: SubscriptionGuard
    reactor: Reactor
    sock: zmq.Socket
    endpoint: str
    applied: list[str]

    def on_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the reactor's thread (the socket's and the guard's) and return its result."""
        done = threading.Event()
        box: list[Any] = []
        self.reactor.call_soon_threadsafe(lambda: (box.append(fn()), done.set()))
        assert done.wait(5), "the reactor did not run the call"
        return box[0]

    def stats(self) -> dict[str, Any]:
        return self.on_loop(self.guard.stats)

    def publish(self, *topics: str) -> None:
        self.on_loop(lambda: [self.sock.send_multipart([t.encode(), b"x"]) for t in topics])


@pytest.fixture
def guarded(ctx: zmq.Context, ipc_dir: Path) -> Iterator[Callable[..., Guarded]]:
    made: list[tuple[Guarded, Any]] = []

    def make(bus: BusSettings = BUS, cut_off_s: float = 0.5) -> Guarded:
        reactor = Reactor()
        sock = make_socket(ctx, zmq.XPUB, bus)
        applied: list[str] = []
        guard = SubscriptionGuard(sock, reactor, bus, name=PUBLISHER,
                                  accepts=lambda prefix: proto.topics.subscribable(PUBLISHER, prefix),
                                  known=proto.topics.known, on_subscribe=applied.append, cut_off_s=cut_off_s)
        endpoint = f"ipc://{ipc_dir}/guarded.pub"
        sock.bind(endpoint)
        runner = reactor_thread(reactor)
        runner.__enter__()
        g = Guarded(guard, reactor, sock, endpoint, applied)
        made.append((g, runner))
        return g

    yield make
    for g, runner in made:
        runner.__exit__(None, None, None)
        g.guard.close()
        g.sock.close(linger=0)
        g.reactor.close()


def subscriber(ctx: zmq.Context, endpoint: str, *prefixes: bytes, kind: int = zmq.SUB) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    for prefix in prefixes:
        if kind == zmq.SUB:
            sock.setsockopt(zmq.SUBSCRIBE, prefix)
        else:
            sock.send(b"\x01" + prefix)
    return sock


def received(sock: zmq.Socket, g: Guarded, probe: str, timeout: float = 5.0) -> list[bytes]:
    """Publish ``probe`` until it arrives, then everything published meanwhile that arrived too."""
    topics: list[bytes] = []

    def check() -> bool:
        g.publish(probe)
        while sock.poll(5):
            topics.append(sock.recv_multipart()[0])
        return probe.encode() in topics

    wait_until(check, timeout, interval=0.02, what=f"{probe} delivered")
    return topics


def test_a_prefix_of_this_publisher_is_applied_others_are_not(ctx: zmq.Context, guarded: Callable[..., Guarded]) -> None:
    g = guarded()
    sub = subscriber(ctx, g.endpoint, b"state", b"md.BTC", b"no-such-topic")
    try:
        wait_until(lambda: g.stats()["accepted"] + g.stats()["elsewhere"] + sum(g.stats()["refused"].values()) == 3)
        g.publish("md.BTC-USD", "no-such-topic.1")
        topics = received(sub, g, "state")
        stats = g.stats()  # while the peer is connected: its disconnect releases what it held
    finally:
        sub.close()
    assert set(topics) == {b"state"}
    # md.* is a topic of other publishers (a subscriber connected to several sends each all its
    # prefixes): not applied, not a refusal; a prefix of no topic at all is refused and counted
    assert (stats["accepted"], stats["elsewhere"], stats["refused"]) == (1, 1, {"unknown_topic": 1})
    assert g.applied == ["state"]  # on_subscribe: applied prefixes only
    assert stats["held"] == 3  # libzmq holds all three for the peer: each counts against its cap


def test_the_empty_prefix_subscribes_to_everything(ctx: zmq.Context, guarded: Callable[..., Guarded]) -> None:
    """``tradectl bus`` subscribes to "" on every publisher."""
    g = guarded()
    sub = subscriber(ctx, g.endpoint, b"")
    try:
        wait_until(lambda: g.stats()["accepted"] == 1)
        g.publish("health.process")
        assert set(received(sub, g, "state")) == {b"health.process", b"state"}
    finally:
        sub.close()


def test_a_prefix_over_the_limit_ends_the_connection_before_anything_is_held(
        ctx: zmq.Context, guarded: Callable[..., Guarded]) -> None:
    g = guarded()
    good = subscriber(ctx, g.endpoint, b"state")
    long = subscriber(ctx, g.endpoint, b"health." + b"x" * BUS.max_subscription_bytes)
    try:
        wait_until(lambda: g.stats()["disconnects"] >= 1, what="the transport drops the long subscription's peer")
        assert received(good, g, "state")
        stats = g.stats()
    finally:
        long.close()
        good.close()
    assert stats["accepted"] == 1 and stats["held"] == 1 and stats["refused"] == {}


def test_a_peer_over_its_cap_is_cut_off_and_what_it_held_released(
        ctx: zmq.Context, guarded: Callable[..., Guarded]) -> None:
    g = guarded(cut_off_s=3.0)
    flood = subscriber(ctx, g.endpoint, *(b"health.%03d" % i for i in range(BUS.subscriptions_per_peer + 1)),
                       kind=zmq.XSUB)
    try:
        wait_until(lambda: g.stats()["cuts"] >= 1, what="the peer over its cap cut off")
        stats = g.stats()
        assert stats["refused"].get("peer_cap") == 1
        assert stats["accepted"] == BUS.subscriptions_per_peer
    finally:
        flood.close()  # (an XSUB resends its subscriptions on reconnecting: it would be cut again)
    wait_until(lambda: g.stats()["peers"] == 0 and g.stats()["held"] == 0, what="the peer forgotten once gone")
    # kept off a while (cut_off_s, 3 s here): a reconnection is ended as it comes; then the same
    # process starts from nothing again
    again = subscriber(ctx, g.endpoint, b"state")
    try:
        wait_until(lambda: g.stats()["kept_off"] >= 1, what="a connection within the cut-off ended")
        assert received(again, g, "state", timeout=15)
    finally:
        again.close()


def test_an_unsubscription_releases_its_prefix(ctx: zmq.Context, guarded: Callable[..., Guarded]) -> None:
    g = guarded()
    sub = subscriber(ctx, g.endpoint)
    try:
        for round_ in range(3):  # 3 x 10 prefixes, each round released: never over the cap of 16
            prefixes = [b"health.%d.%d" % (round_, i) for i in range(10)]
            for prefix in prefixes:
                sub.setsockopt(zmq.SUBSCRIBE, prefix)
            wait_until(lambda: g.stats()["held"] == 10)
            for prefix in prefixes:
                sub.setsockopt(zmq.UNSUBSCRIBE, prefix)
            wait_until(lambda: g.stats()["held"] == 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"state")
        assert received(sub, g, "state")
    finally:
        sub.close()
    assert g.stats()["cuts"] == 0


def test_what_is_not_a_subscription_is_counted_and_dropped(ctx: zmq.Context, guarded: Callable[..., Guarded]) -> None:
    g = guarded()
    raw = subscriber(ctx, g.endpoint, kind=zmq.XSUB)
    try:
        wait_until(lambda: g.stats()["connections"] == 1)
        raw.send(b"")
        raw.send(b"\x05abc")
        raw.send_multipart([b"\x07a", b"\x08b"])
        raw.send_multipart([b"\x09"] * 1_000)  # read and dropped part by part
        wait_until(lambda: g.stats()["not_subscriptions"] == 4)
        raw.send(b"\x01state")
        assert received(raw, g, "state")
    finally:
        raw.close()
    assert g.stats()["accepted"] == 1


PEER = r"""
import sys, zmq
ctx = zmq.Context()
sock = ctx.socket(zmq.SUB)
sock.setsockopt(zmq.LINGER, 0)
sock.setsockopt(zmq.SNDHWM, 0)
monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
sock.connect(sys.argv[1])
for prefix in sys.argv[2:]:
    sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())
print("subscribed", flush=True)
poller = zmq.Poller()
poller.register(monitor, zmq.POLLIN)
poller.register(sys.stdin, zmq.POLLIN)
while True:
    events = dict(poller.poll())
    if monitor in events:
        monitor.recv_multipart()
        print("disconnected", flush=True)
    if sys.stdin.fileno() in events and not sys.stdin.readline():
        break
"""


class PeerProcess:
    """A subscriber in a process of its own (a peer of its own to the guard); prints
    ``disconnected`` whenever its connection ends."""

    def __init__(self, endpoint: str, prefixes: list[str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", PEER, endpoint, *prefixes], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_until(lambda: "subscribed" in self.lines, 10)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def cut(self) -> bool:
        return "disconnected" in self.lines

    def close(self) -> None:
        """End the peer (it exits when its stdin closes); killed if it has not within 10 s, so no
        test leaves a process behind."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)


def test_a_socket_over_its_cap_cuts_the_peer_holding_most(guarded: Callable[..., Guarded]) -> None:
    g = guarded()
    big = PeerProcess(g.endpoint, [f"health.big{i}" for i in range(14)])
    small = PeerProcess(g.endpoint, [f"health.small{i}" for i in range(10)])
    try:
        wait_until(lambda: g.stats()["held"] == 24, what="both peers' prefixes held")
        third = PeerProcess(g.endpoint, [f"health.third{i}" for i in range(9)])  # 24 + 9 > 32
        try:
            wait_until(big.cut, 10, what="the largest holder cut off")
            assert g.stats()["refused"].get("socket_cap") == 1
            assert never(lambda: small.cut() or third.cut(), 1.0), "a peer holding less was cut off"
        finally:
            third.close()
    finally:
        big.close()
        small.close()


def test_the_memory_of_a_peer_that_held_many_goes_back(ctx: zmq.Context, guarded: Callable[..., Guarded]) -> None:
    """A peer that held many prefixes has gone: ``malloc_trim`` hands the freed memory back."""
    g = guarded(BusSettings(subscriptions_per_peer=500, subscriptions_per_socket=500))
    sub = subscriber(ctx, g.endpoint, *(b"health.%04d" % i for i in range(200)))
    try:
        wait_until(lambda: g.stats()["held"] == 200)
    finally:
        sub.close()
    wait_until(lambda: g.stats()["trims"] == 1 and g.stats()["held"] == 0, what="trimmed after the peer left")
