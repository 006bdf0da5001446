"""What bus/ keeps per peer is bounded: a subscriber's streams and publishers, a message's frames,
the rate-limited log's kinds and line length; a publisher says when it publishes an undeclared topic."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

import proto
from bus import BusSettings, Publisher, Subscriber, make_socket
from bus.ratelimit import MAX_KINDS, MAX_LOGGED_CHARS, OTHER, RateLimitedLog, escape
from unit_support import Collector, handshake, wait_until

BUS = BusSettings()


@pytest.fixture
def pub_and(ctx: zmq.Context, ipc_dir: Path) -> Iterator[tuple[zmq.Socket, zmq.Socket]]:
    endpoint = f"ipc://{ipc_dir}/bounds.pub"
    pub = make_socket(ctx, zmq.PUB, BUS)
    sub = make_socket(ctx, zmq.SUB, BUS)
    pub.bind(endpoint)
    sub.connect(endpoint)
    try:
        yield pub, sub
    finally:
        sub.close(linger=0)
        pub.close(linger=0)


def connected(pub: zmq.Socket, sub: Subscriber) -> Collector:
    sub.subscribe("")
    collector = Collector(sub)
    handshake(pub, collector)
    collector.messages.clear()
    return collector


def send(pub: zmq.Socket, topic: str, source: str, seq: int = 1) -> None:
    pub.send_multipart([topic.encode(), proto.encode(source, 1, seq, time.time_ns(),
                                                     proto.Heartbeat(pid=1, interval_s=1.0))])


def test_a_subscriber_tracks_at_most_max_streams(pub_and: tuple[zmq.Socket, zmq.Socket]) -> None:
    pub, sock = pub_and
    sub = Subscriber(sock, max_streams=100)
    collector = connected(pub, sub)  # the probe's stream is one
    for i in range(150):
        send(pub, f"md.S{i}", "venue_sim")
    collector.wait_for(lambda c: sum(sub.rejected.values()) + len(c.messages) == 150)
    assert len(collector.messages) == 99 and sub.rejected == {"streams": 51}
    send(pub, "md.S0", "venue_sim", seq=2)  # a stream already tracked goes on
    collector.wait_for(lambda c: len(c.messages) == 100)
    assert sub.received == 101  # the probe, 99 streams' first and one more; refused ones not


def test_a_subscriber_tracks_at_most_max_publishers(pub_and: tuple[zmq.Socket, zmq.Socket]) -> None:
    pub, sock = pub_and
    sub = Subscriber(sock, max_publishers=16)
    collector = connected(pub, sub)  # the probe is one publisher
    for i in range(20):
        send(pub, proto.topics.heartbeat(f"source{i}"), f"source{i}")
    collector.wait_for(lambda c: sum(sub.rejected.values()) + len(c.messages) == 20)
    assert len(sub.peers) == 16 and sub.rejected == {"publishers": 5}


def test_a_message_of_many_frames_is_dropped_part_by_part(pub_and: tuple[zmq.Socket, zmq.Socket]) -> None:
    pub, sock = pub_and
    sub = Subscriber(sock)
    collector = connected(pub, sub)
    pub.send_multipart([b"x"] * 10_000)
    send(pub, "state", "orchestrator")
    collector.wait_for(lambda c: len(c.messages) == 1)
    assert sub.rejected == {"frames": 1}


def test_a_publisher_reports_a_topic_it_is_not_declared_to_publish(
        pub_and: tuple[zmq.Socket, zmq.Socket], caplog: pytest.LogCaptureFixture) -> None:
    pub, _ = pub_and
    publisher = Publisher(pub, "orchestrator", 1, declared=lambda t: proto.topics.publishes("orchestrator", t))
    with caplog.at_level(logging.ERROR, logger="bus.publisher"):
        for _ in range(3):
            publisher.publish("state", proto.Heartbeat(pid=1, interval_s=1.0))
            publisher.publish("orders", proto.Heartbeat(pid=1, interval_s=1.0))
    assert publisher.undeclared_topics == 1
    assert [r.getMessage() for r in caplog.records] == [
        "publishing on 'orders', which orchestrator is not declared to publish (proto.topics.PUBLISHED): "
        "subscriptions to it are refused"]
    assert publisher.stats()["undeclared_topics"] == 1 and publisher.sent == 6


def test_escape_keeps_a_line_one_line_and_short() -> None:
    forged = "x\n2026-01-19 14:30:45,123 - LiveTradingOrchestrator - CRITICAL - forged\r\x00\x1b[31m\u2028"
    out = escape(forged)
    assert "\n" not in out and "\r" not in out and "\x00" not in out and "\x1b" not in out and "\u2028" not in out
    assert out.startswith("x\\x0a2026-01-19") and out.endswith("\\x0d\\x00\\x1b[31m\\u2028")
    assert escape("é ü 中 ok") == "é ü 中 ok"
    long = escape("y" * 1_000)
    assert long == "y" * MAX_LOGGED_CHARS + f"... ({1_000 - MAX_LOGGED_CHARS} more characters)"


def test_the_rate_limited_log_escapes_and_bounds_its_kinds(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.ratelimit")
    limited = RateLimitedLog(logger)
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        for i in range(MAX_KINDS + 500):
            limited.warning(f"kind{i}", f"bad\nline {i}")
        limited.warning("kind0", "again")  # within the interval: suppressed
    assert len(limited._last) == MAX_KINDS + 1  # noqa: SLF001 (the bound is the point)
    assert OTHER in limited._last  # noqa: SLF001
    assert len(caplog.records) == MAX_KINDS + 1  # every kind once, the overflow once
    assert all("\n" not in r.getMessage() for r in caplog.records)


def test_the_longest_symbols_market_data_can_be_subscribed_to(pub_and: tuple[zmq.Socket, zmq.Socket]) -> None:
    """``md.`` and a symbol of the longest length the wire accepts fit the publishers' subscription
    limit (a prefix over it makes a PUB drop the connection: nothing would arrive, on any topic)."""
    pub, sock = pub_and
    longest = proto.topics.market_data("S" * proto.fields.SYMBOL_MAX)
    assert BUS.max_subscription_bytes >= len(longest) == 67
    sub = Subscriber(sock)
    sub.subscribe(longest)
    collector = Collector(sub)
    wait_until(lambda: send(pub, longest, "venue_sim") or collector.pump() and collector.messages, 5.0,
               interval=0.0, what="the longest symbol's market data")
    assert collector.messages[0][0] == longest


def test_a_subscription_over_the_limit_is_refused_with_a_clear_error(pub_and: tuple[zmq.Socket, zmq.Socket]) -> None:
    _, sock = pub_and
    sub = Subscriber(sock)
    too_long = "md." + "S" * (proto.fields.SYMBOL_MAX + 1)
    with pytest.raises(ValueError, match=r"subscription prefix 'md\.S+' is 68 bytes, over "
                                         r"bus\.max_subscription_bytes \(67\): publishers would drop the connection"):
        sub.subscribe(too_long)
    limited = Subscriber(sock, max_subscription_bytes=100)
    limited.subscribe(too_long)  # a configured longer limit is honoured
    # settings cannot make the limit shorter than the longest market-data topic
    with pytest.raises(ValueError, match="greater than or equal to 67"):
        BusSettings(max_subscription_bytes=64)


def test_a_topic_its_source_does_not_publish_opens_no_stream(pub_and: tuple[zmq.Socket, zmq.Socket]) -> None:
    """A peer sending topics its claimed source never publishes (``proto.topics.PUBLISHED``) cannot
    fill the stream or publisher caps and lock out the real streams: each is refused and counted."""
    pub, sock = pub_and
    sub = Subscriber(sock, max_streams=100, max_publishers=16)
    collector = connected(pub, sub)
    streams, peers = len(sub._last_seq), set(sub.peers)  # noqa: SLF001 (the probe's)
    probes = sub.received  # one or more: probes go out until one has come back
    for i in range(150):
        send(pub, f"md.S{i}", "engine")  # the engine publishes no market data
        send(pub, f"junk.{i}", "venue_sim")  # nor the venue this
        send(pub, "orders", f"nobody{i}")  # a source that publishes nothing but its hb. and audit.
    send(pub, "md.REAL", "venue_sim")
    collector.wait_for(lambda c: len(c.messages) == 1)
    assert [(t, e.source) for t, e in collector.messages] == [("md.REAL", "venue_sim")]
    assert sub.rejected == {"undeclared": 450}
    assert len(sub._last_seq) == streams + 1 and set(sub.peers) == peers | {"venue_sim"}  # noqa: SLF001
    assert sub.received == probes + 1  # md.REAL: a refused message is not received
