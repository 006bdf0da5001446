"""bus.Publisher → bus.Subscriber over real ipc sockets: delivery, sequence gaps, restarts, stale
messages, rejected frames, liveness."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

import proto
from bus import BusSettings, Publisher, Subscriber, make_socket
from unit_support import Collector, handshake, wait_until

BUS = BusSettings()
# The publisher of these tests: a subscriber opens a stream only for a topic its source declares
# (proto.topics.publishes), and the venue simulator declares these.
SRC, TOPIC, OTHER_TOPIC = "venue_sim", proto.topics.ORDERS, proto.topics.FILLS


def hb(pid: int = 1) -> proto.Heartbeat:
    return proto.Heartbeat(pid=pid, interval_s=0.2)


def send_raw(sock: zmq.Socket, topic: str, source: str, epoch: int, seq: int, body: proto.Message | None = None) -> None:
    """Publish one message with exactly this envelope (epoch and sequence under the test's control)."""
    sock.send_multipart([topic.encode(), proto.encode(source, epoch, seq, time.time_ns(), body or hb(seq))])


@pytest.fixture
def link(ctx: zmq.Context, ipc_dir: Path) -> Iterator[tuple[zmq.Socket, Collector]]:
    """A bound PUB socket and a connected, subscribed-to-everything Subscriber, past the slow joiner."""
    endpoint = f"ipc://{ipc_dir}/svc.pub"
    pub_sock = make_socket(ctx, zmq.PUB, BUS)
    sub_sock = make_socket(ctx, zmq.SUB, BUS)
    try:
        pub_sock.bind(endpoint)
        sub = Subscriber(sub_sock, BUS.max_message_bytes)
        sub.connect(endpoint)
        sub.subscribe("")
        collector = Collector(sub)
        handshake(pub_sock, collector)
        yield pub_sock, collector
    finally:
        sub_sock.close(linger=0)
        pub_sock.close(linger=0)


def test_messages_arrive_in_order_with_increasing_seq(link: tuple[zmq.Socket, Collector]) -> None:
    pub_sock, col = link
    epoch = time.time_ns()
    pub = Publisher(pub_sock, SRC, epoch)
    bodies = [hb(i) for i in range(1, 6)] + [proto.StateChanged(old=proto.OrchestratorState.READY,
                                                                 new=proto.OrchestratorState.LIVE,
                                                                 reason="open", transition_no=2)]
    for body in bodies:
        pub.publish(TOPIC, body)

    col.wait_for(lambda c: len(c.from_source(SRC)) == len(bodies))

    got = [(topic, env) for topic, env in col.messages if env.source == SRC]
    assert [topic for topic, _ in got] == [TOPIC] * len(bodies)
    assert [env.seq for _, env in got] == list(range(1, len(bodies) + 1))
    assert [env.body for _, env in got] == bodies
    assert all(env.epoch == epoch and env.v == proto.SCHEMA_VERSION for _, env in got)
    assert pub.sent == len(bodies) and pub.send_errors == 0
    peer = col.sub.peers[SRC]
    assert (peer.epoch, peer.received) == (epoch, len(bodies))
    assert (peer.gaps, peer.lost, peer.restarts, peer.stale) == (0, 0, 0, 0)
    assert col.sub.rejected == {}


def test_subscriber_filters_by_topic_prefix(ctx: zmq.Context, ipc_dir: Path) -> None:
    endpoint = f"ipc://{ipc_dir}/f.pub"
    pub_sock = make_socket(ctx, zmq.PUB, BUS)
    sub_sock = make_socket(ctx, zmq.SUB, BUS)
    try:
        pub_sock.bind(endpoint)
        sub = Subscriber(sub_sock)
        sub.connect(endpoint)
        sub.subscribe("hb.")
        col = Collector(sub)
        handshake(pub_sock, col)
        pub = Publisher(pub_sock, SRC, 1)
        pub.publish("md.BTC", hb(1))
        pub.publish("hb.venue_sim", hb(2))
        col.wait_for(lambda c: c.from_source(SRC))
        assert [(t, e.body.pid) for t, e in col.messages if e.source == SRC] == [("hb.venue_sim", 2)]
    finally:
        sub_sock.close(linger=0)
        pub_sock.close(linger=0)


def test_gap_is_detected_and_lost_messages_counted(link: tuple[zmq.Socket, Collector]) -> None:
    pub_sock, col = link
    pub = Publisher(pub_sock, SRC, 100)
    pub.publish(TOPIC, hb())
    pub.attach(None)  # offline: five messages are numbered but never sent
    for _ in range(5):
        pub.publish(TOPIC, hb())
    pub.attach(pub_sock)
    pub.publish(TOPIC, hb())
    pub.publish(TOPIC, hb())

    col.wait_for(lambda c: len(c.from_source(SRC)) == 3)

    peer = col.sub.peers[SRC]
    assert [e.seq for e in col.from_source(SRC)] == [1, 7, 8]
    assert peer.gaps == 1 and peer.lost == 5
    assert peer.restarts == 0 and peer.stale == 0
    assert col.sub.stats()["gaps"] == 1 and col.sub.stats()["lost"] == 5


def test_gap_in_raw_sequence(link: tuple[zmq.Socket, Collector]) -> None:
    pub_sock, col = link
    for seq in (1, 2, 8, 9, 12):  # 5 lost, then 2 lost
        send_raw(pub_sock, TOPIC, SRC, 100, seq)
    col.wait_for(lambda c: len(c.from_source(SRC)) == 5)
    peer = col.sub.peers[SRC]
    assert (peer.gaps, peer.lost, peer.stale) == (2, 7, 0)


def test_sequences_count_per_topic(link: tuple[zmq.Socket, Collector]) -> None:
    """Interleaved topics each have their own sequence: no gap is seen on either."""
    pub_sock, col = link
    pub = Publisher(pub_sock, SRC, 100)
    for _ in range(3):
        pub.publish("md.A", hb())
        pub.publish("md.B", hb())
        pub.publish("md.B", hb())
    col.wait_for(lambda c: len(c.from_source(SRC)) == 9)
    by_topic: dict[str, list[int]] = {}
    for topic, env in col.messages:
        if env.source == SRC:
            by_topic.setdefault(topic, []).append(env.seq)
    assert by_topic == {"md.A": [1, 2, 3], "md.B": [1, 2, 3, 4, 5, 6]}
    peer = col.sub.peers[SRC]
    assert (peer.gaps, peer.lost, peer.stale) == (0, 0, 0)


def test_filtered_topics_are_not_gaps(ctx: zmq.Context, ipc_dir: Path) -> None:
    """A subscriber that filters out some of a publisher's topics sees no gap in the others."""
    endpoint = f"ipc://{ipc_dir}/g.pub"
    pub_sock = make_socket(ctx, zmq.PUB, BUS)
    sub_sock = make_socket(ctx, zmq.SUB, BUS)
    try:
        pub_sock.bind(endpoint)
        sub = Subscriber(sub_sock)
        sub.connect(endpoint)
        # md.A before the probe's hb.probe: subscriptions reach the PUB in order, so once a probe
        # arrives md.A is in force too (the other way round the first md.A could be dropped, a false
        # gap under load)
        sub.subscribe("md.A")
        sub.subscribe("hb.probe")
        col = Collector(sub)
        handshake(pub_sock, col)
        pub = Publisher(pub_sock, SRC, 1)
        for _ in range(4):
            pub.publish("md.A", hb())
            pub.publish("md.B", hb())
        col.wait_for(lambda c: len(c.from_source(SRC)) == 4)
        peer = sub.peers[SRC]
        assert (peer.gaps, peer.lost) == (0, 0)
    finally:
        sub_sock.close(linger=0)
        pub_sock.close(linger=0)


def test_new_epoch_is_a_restart_not_a_gap(link: tuple[zmq.Socket, Collector]) -> None:
    pub_sock, col = link
    first = Publisher(pub_sock, SRC, 1_000)
    for _ in range(4):
        first.publish(TOPIC, hb())
    col.wait_for(lambda c: len(c.from_source(SRC)) == 4)

    restarted = Publisher(pub_sock, SRC, 2_000)  # the same source after a restart: seq from 1
    restarted.publish(TOPIC, hb())
    restarted.publish(TOPIC, hb())
    col.wait_for(lambda c: len(c.from_source(SRC)) == 6)

    peer = col.sub.peers[SRC]
    assert peer.epoch == 2_000
    assert [e.seq for e in col.from_source(SRC)] == [1, 2, 3, 4, 1, 2]
    assert peer.restarts == 1
    assert peer.gaps == 0 and peer.lost == 0 and peer.stale == 0


def test_older_epoch_and_repeated_seq_are_stale(link: tuple[zmq.Socket, Collector]) -> None:
    pub_sock, col = link
    send_raw(pub_sock, TOPIC, SRC, 1_000, 1)
    send_raw(pub_sock, TOPIC, SRC, 2_000, 1)  # restart
    send_raw(pub_sock, TOPIC, SRC, 1_000, 2)  # the old incarnation again: stale
    send_raw(pub_sock, TOPIC, SRC, 2_000, 2)  # in order
    send_raw(pub_sock, TOPIC, SRC, 2_000, 2)  # repeated: stale
    send_raw(pub_sock, TOPIC, SRC, 2_000, 1)  # older: stale
    send_raw(pub_sock, TOPIC, SRC, 2_000, 3)  # in order

    col.wait_for(lambda c: SRC in c.sub.peers and c.sub.peers[SRC].received == 7)

    peer = col.sub.peers[SRC]
    assert peer.stale == 3
    assert peer.restarts == 1
    assert peer.epoch == 2_000
    assert peer.gaps == 0 and peer.lost == 0


def test_bad_frames_are_counted_and_never_raise(link: tuple[zmq.Socket, Collector]) -> None:
    pub_sock, col = link
    valid = proto.encode("bad", 1, 1, 1, hb())
    unknown = proto.encode("bad", 1, 1, 1, hb()).replace(b"heartbeat", b"heartbeaX")
    pub_sock.send_multipart([b"t"])  # one frame
    pub_sock.send_multipart([b"t", valid, b"extra"])  # three frames
    pub_sock.send_multipart([b"t", b"\xc1 garbage \xff\x00"])  # not MessagePack
    pub_sock.send_multipart([b"\xff\xfe\xfd", valid])  # topic not UTF-8
    pub_sock.send_multipart([b"t", unknown])  # a type nobody defined
    pub_sock.send_multipart([b"t", b""])  # empty payload
    good = Publisher(pub_sock, SRC, 5)
    good.publish(TOPIC, hb(99))

    col.wait_for(lambda c: c.from_source(SRC))

    assert col.sub.rejected == {"frames": 2, "malformed": 2, "topic": 1, "unknown_type": 1}
    assert "bad" not in col.sub.peers  # nothing rejected was tracked or delivered
    assert col.from_source("bad") == []
    assert [(t, e.body.pid) for t, e in col.messages if e.source == SRC] == [(TOPIC, 99)]
    assert col.sub.stats()["rejected"] == col.sub.rejected


def test_subscriber_max_bytes_rejects_oversized_payload(ctx: zmq.Context, ipc_dir: Path) -> None:
    """The decoder's own limit (independent of the socket's MAXMSGSIZE) counts 'oversized'."""
    endpoint = f"ipc://{ipc_dir}/o.pub"
    pub_sock = make_socket(ctx, zmq.PUB, BUS)
    sub_sock = make_socket(ctx, zmq.SUB, BUS)
    try:
        pub_sock.bind(endpoint)
        sub = Subscriber(sub_sock, max_bytes=200)
        sub.connect(endpoint)
        sub.subscribe("")
        col = Collector(sub)
        handshake(pub_sock, col)
        pub = Publisher(pub_sock, SRC, 1)
        pub.publish(TOPIC, proto.Heartbeat(pid=1, interval_s=0.2, stats=proto.summaries.EngineSummary(book_sync={"blob": "x" * 500})))
        pub.publish(TOPIC, hb())
        col.wait_for(lambda c: c.from_source(SRC))
        assert sub.rejected == {"oversized": 1}
        assert [e.seq for e in col.from_source(SRC)] == [2]
        assert sub.peers[SRC].received == 1
    finally:
        sub_sock.close(linger=0)
        pub_sock.close(linger=0)


def test_liveness_last_seen_updates_on_any_message(link: tuple[zmq.Socket, Collector]) -> None:
    pub_sock, col = link
    pub = Publisher(pub_sock, SRC, 10)
    pub.publish(TOPIC, hb())
    col.wait_for(lambda c: len(c.from_source(SRC)) == 1)
    first_seen = col.sub.peers[SRC].last_seen
    assert first_seen <= time.monotonic()

    def after(t0: float) -> bool:
        return time.monotonic() > t0

    # A stale message (older epoch) is not delivered, but it still proves the peer is alive.
    kinds = [
        ("event", lambda: pub.publish(OTHER_TOPIC, proto.SafetyEvent(event_type=proto.SafetyEventType.STALE_FEED,
                                                             severity=proto.Severity.WARNING, symbol="S",
                                                             message="m")),
         lambda c: len(c.from_source(SRC)) == 2),
        ("stale", lambda: send_raw(pub_sock, TOPIC, SRC, 1, 1), lambda c: c.sub.peers[SRC].stale == 1),
    ]
    seen = first_seen
    for _what, send, arrived in kinds:
        wait_until(lambda: after(seen))
        send()
        col.wait_for(arrived)
        now_seen = col.sub.peers[SRC].last_seen
        assert now_seen > seen, _what
        seen = now_seen
    assert col.sub.peers[SRC].stale == 1


def test_drain_respects_limit(link: tuple[zmq.Socket, Collector]) -> None:
    pub_sock, col = link
    pub = Publisher(pub_sock, SRC, 1)
    for _ in range(10):
        pub.publish(TOPIC, hb())
    got: list[proto.Envelope] = []

    def drained_all() -> bool:
        col.sub.socket.poll(10)
        n = col.sub.drain(lambda _t, env: got.append(env), limit=3)
        assert n <= 3
        return sum(1 for e in got if e.source == SRC) == 10

    wait_until(drained_all, interval=0.0)
    assert [e.seq for e in got if e.source == SRC] == list(range(1, 11))


def test_publisher_stats_and_topic_encoding(link: tuple[zmq.Socket, Collector]) -> None:
    pub_sock, col = link
    pub = Publisher(pub_sock, SRC, 3)
    pub.publish("md.ÄÖÜ", hb())
    col.wait_for(lambda c: c.from_source(SRC))
    assert [t for t, e in col.messages if e.source == SRC] == ["md.ÄÖÜ"]
    stats = pub.stats()
    assert stats["sent"] == 1 and stats["send_errors"] == 0


def test_offline_publisher_counts_drops(link: tuple[zmq.Socket, Collector]) -> None:
    pub_sock, col = link
    pub = Publisher(pub_sock, SRC, 3)
    pub.attach(None)
    pub.publish(TOPIC, hb())
    pub.publish(TOPIC, hb())
    assert pub.stats()["offline_drops"] == 2 and pub.sent == 0


def test_heartbeater_publishes_pid_interval_state_and_stats(link: tuple[zmq.Socket, Collector]) -> None:
    import os

    from bus import Heartbeater

    pub_sock, col = link
    pub = Publisher(pub_sock, "engine", 42)
    beats = {"n": 0}

    def stats() -> proto.summaries.EngineSummary:
        beats["n"] += 1
        return proto.summaries.EngineSummary(decisions_made=beats["n"])

    hb_ = Heartbeater(pub, "engine", 0.2, stats, state=lambda: proto.OrchestratorState.DEGRADED,
                      trading_enabled=lambda: True)
    hb_.beat()
    hb_.beat()
    col.wait_for(lambda c: len(c.from_source("engine")) == 2)
    got = [(t, e) for t, e in col.messages if e.source == "engine"]
    assert [t for t, _ in got] == ["hb.engine", "hb.engine"]
    assert [e.body for _, e in got] == [
        proto.Heartbeat(pid=os.getpid(), interval_s=0.2, stats=proto.summaries.EngineSummary(decisions_made=i),
                        state=proto.OrchestratorState.DEGRADED,
                        trading_enabled=True)
        for i in (1, 2)
    ]
    assert [e.seq for _, e in got] == [1, 2]


def test_a_restart_counts_what_a_followed_stream_missed_and_baselines_a_new_one() -> None:
    """After a publisher's restart (new epoch) a stream we were following continues from 0, so its
    first messages, sent before we reconnected, are lost; a topic first seen in the new epoch (a
    subscription made later) starts its baseline: nothing was lost from a stream nobody followed."""
    sub = Subscriber(zmq.Context.instance().socket(zmq.SUB))

    def feed(epoch: int, topic: str, seq: int) -> bool:
        env = proto.decode(proto.encode("exchange_manager", epoch, seq, time.time_ns(),
                                        proto.Heartbeat(pid=1, interval_s=1.0)))
        return sub._track(topic, env)  # noqa: SLF001 (the accounting alone, no sockets)

    assert feed(100, "fills", 1) and feed(100, "fills", 2)
    assert feed(200, "fills", 4)  # epoch 200's fills 1..3 went out before we reconnected
    assert feed(200, "orders", 7)  # first heard in epoch 200: a baseline, not a loss
    peer = sub.peers["exchange_manager"]
    assert (peer.restarts, peer.gaps, peer.lost) == (1, 1, 3)
    assert peer.lost_by_topic == {"fills": 3}
    assert not feed(100, "fills", 3)  # the old epoch is stale now
    sub.socket.close(linger=0)
