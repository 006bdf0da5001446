"""``bus.Subscriber`` on a real SUB socket, fed by a real PUB socket (ipc, in this process) with
garbage interleaved with a genuine stream: 1, 2, 3+ frames, random bytes, truncated and mutated
messages, wrong versions and types, non-UTF-8 topics, oversized frames, and replays of genuine
messages.

Required: every genuine message delivered exactly once and in order (a replay is never delivered
twice, and no garbage is taken for a gap), every bad frame counted under its kind, the log
rate-limited (one line per kind per interval, not one per frame).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import zmq

import proto
from bus import BusSettings, Subscriber, make_socket
from bus.sockets import bind

from . import figures, garbage

SEED = 0x5B5C_0001
BUS = BusSettings()
LOG_INTERVAL_S = 5.0  # bus.ratelimit.RateLimitedLog's default


@pytest.fixture
def pubsub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[zmq.Socket, Subscriber]]:
    run = tmp_path_factory.mktemp("fz")
    endpoint = f"ipc://{run / 'pub'}"
    assert len(endpoint) < 100
    ctx = zmq.Context()
    pub = make_socket(ctx, zmq.PUB, BUS)
    bind(pub, endpoint)
    sock = make_socket(ctx, zmq.SUB, BUS)
    sub = Subscriber(sock, BUS.max_message_bytes)
    sub.subscribe("")
    sub.connect(endpoint)
    try:
        yield pub, sub
    finally:
        pub.close(linger=0)
        sock.close(linger=0)
        ctx.term()


class Stream:
    """A genuine publisher's stream on one topic: source, epoch, consecutive sequence numbers."""

    def __init__(self, source: str, topic: str, epoch: int) -> None:
        self.source, self.topic, self.epoch, self.seq = source, topic, epoch, 0
        self.sent: list[bytes] = []

    def next(self) -> list[bytes]:
        self.seq += 1
        body = proto.Quote(symbol="FZ", bid=1.0, ask=1.5, bid_size=1.0, ask_size=1.0, ts_ns=self.seq, venue="fz")
        data = proto.encode(self.source, self.epoch, self.seq, time.time_ns(), body)
        self.sent.append(data)
        return [self.topic.encode(), data]


def _sync(pub: zmq.Socket, sub: Subscriber) -> None:
    """Wait until the subscription has reached the PUB (it drops what it sends before that)."""
    probe = [b"hb.sync", proto.encode("sync", 1, 1, 1, proto.Heartbeat(pid=1, interval_s=1.0))]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pub.send_multipart(probe)
        if sub.socket.poll(50):
            sub.drain(lambda topic, env: None)
            return
    raise AssertionError("the SUB never received anything")


def _drain_until(sub: Subscriber, handler, done, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not everything arrived: {sub.stats()}"
        if sub.socket.poll(100):
            sub.drain(handler)


def _run(pub: zmq.Socket, sub: Subscriber, n: int, seed: int, caplog: pytest.LogCaptureFixture) -> None:
    _sync(pub, sub)
    base_received, base_rejected = sub.received, Counter(sub.rejected)
    rng = random.Random(seed)
    epoch = time.time_ns()  # one per publisher: its streams (topics) share it
    # two publishers that declare market data (a subscriber opens no stream for an undeclared topic)
    streams = [Stream("venue_sim", "md.A", epoch), Stream("venue_sim", "md.B", epoch),
               Stream("data_router", "md.A", epoch + 1)]
    delivered: list[tuple[str, str, int]] = []
    expected: Counter[str] = Counter()
    replays = 0
    categories: Counter[str] = Counter()

    def keep(topic: str, env: proto.Envelope) -> None:
        delivered.append((env.source, topic, env.seq))

    caplog.set_level(logging.WARNING, logger="bus.subscriber")
    caplog.clear()
    t0 = time.monotonic()
    garbage_frames = garbage.event_inputs(rng, 10 * n, BUS.max_message_bytes)
    sent = 0
    while sent < n:
        r = rng.random()
        if r < 0.25:
            stream = rng.choice(streams)
            pub.send_multipart(stream.next())
            categories["genuine"] += 1
        elif r < 0.30 and any(s.sent for s in streams):
            stream = rng.choice([s for s in streams if s.sent])
            pub.send_multipart([stream.topic.encode(), rng.choice(stream.sent)])  # a replay
            replays += 1
            categories["replay"] += 1
        elif r < 0.3005:
            big = b"\x97" + rng.randbytes(BUS.max_message_bytes)
            pub.send_multipart([b"md.A", big])
            expected["oversized"] += 1
            categories["oversized"] += 1
        else:
            category, frames, kind = next(garbage_frames)
            pub.send_multipart(frames)
            expected[kind] += 1
            categories[category] += 1
        sent += 1
        if sent % 500 == 0:  # keep the queues short: a PUB drops at its HWM, which is not this test
            sub.drain(keep)
    genuine = sum(len(s.sent) for s in streams)
    _drain_until(sub, keep, lambda: sub.received - base_received + sum(sub.rejected.values())
                 - sum(base_rejected.values()) >= genuine + replays + sum(expected.values()))
    duration = time.monotonic() - t0

    observed = Counter(sub.rejected) - base_rejected
    figures.record("bus.Subscriber (SUB <- PUB)", sent, expected=expected, observed=dict(observed),
                   note=f"seed {seed:#x}: {sent} frames ({genuine} genuine, {replays} replays) in {duration:.1f}s")
    # every bad frame counted under its kind, nothing else counted
    assert observed == expected, (observed, expected)
    # every genuine message exactly once, in order, per stream; replays never delivered
    for stream in streams:
        got = [seq for source, topic, seq in delivered if (source, topic) == (stream.source, stream.topic)]
        assert got == list(range(1, stream.seq + 1)), (stream.source, stream.topic, got[:20])
    stats = sub.stats()
    assert stats["gaps"] == 0 and stats["lost"] == 0, stats
    assert sum(p.stale for s, p in sub.peers.items() if s in {"venue_sim", "data_router"}) == replays
    # logged, rate-limited: per kind at most one line per interval (plus the first)
    lines = [r.getMessage() for r in caplog.records if "rejected bus message" in r.getMessage()]
    bound = len(expected) * (math.ceil(duration / LOG_INTERVAL_S) + 1)
    assert 1 <= len(lines) <= bound, (len(lines), bound, lines[:5])
    assert len(lines) < sum(expected.values()) / 10


def test_subscriber_survives_garbage_and_counts_it(pubsub, caplog: pytest.LogCaptureFixture) -> None:
    _run(*pubsub, 8_000, SEED, caplog)


@pytest.mark.slow
def test_subscriber_survives_garbage_and_counts_it_full(pubsub, caplog: pytest.LogCaptureFixture) -> None:
    _run(*pubsub, 40_000, SEED + 1, caplog)

