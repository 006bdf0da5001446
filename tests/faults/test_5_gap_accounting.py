"""Gap accounting at a publisher's restart, as the fault matrix meets it.

A kill -9 (or restart) of the exchange manager: the new process binds its PUB socket and, within
milliseconds, publishes what its reconciliation with the venue found (the fills it missed while it
was down, the orders they closed). A subscriber reconnects to the new socket only on its next
reconnect attempt (ZeroMQ's ``RECONNECT_IVL``, 100 ms), so it misses those first messages. The
publisher numbers every topic from 1 in each epoch, so a subscriber that first hears sequence
number N > 1 of a new epoch knows N - 1 messages were lost. The design (``../shared/design.md``):
"Subscribers detect and count gaps; a restarted publisher (new epoch) is not a gap" — the restart
itself is not, but messages of the new epoch that never arrived are: they must be counted.

The matrix meets this in practice (a restarted exchange manager's first fills, missed by the
test's subscriber, must show in its gap count); these tests pin it down deterministically on
``bus.Subscriber``. A stream first seen in a new epoch (a subscription made after the restart) sets
its baseline instead: nothing was lost from a stream nobody followed.
"""

from __future__ import annotations

import time

import zmq

import proto
from bus import BusSettings, Subscriber, make_socket

SOURCE = "exchange_manager"


def _fill(n: int) -> proto.Fill:
    return proto.Fill(fill_id=f"F{n}", client_order_id=f"C{n}", symbol="SOL-USD", side=proto.Side.BUY, qty=1.0,
                      price=150.0, fee=0.0, ts_ns=time.time_ns())


def _feed(messages: list[tuple[int, int]]) -> Subscriber:
    """A Subscriber fed ``(epoch, seq)`` fills on topic ``fills`` over inproc, all delivered."""
    ctx = zmq.Context.instance()
    bus = BusSettings()
    pub = make_socket(ctx, zmq.PUB, bus)
    sub_sock = make_socket(ctx, zmq.SUB, bus)
    endpoint = f"inproc://faults-gaps-{time.monotonic_ns()}"
    pub.bind(endpoint)
    sub = Subscriber(sub_sock)
    sub.subscribe("")
    sub.connect(endpoint)
    try:
        # the subscription must have reached the PUB before anything is sent
        deadline = time.monotonic() + 5
        probe = proto.encode(SOURCE, 1, 0, time.time_ns(), proto.Heartbeat(pid=1, interval_s=1.0))
        while time.monotonic() < deadline:
            pub.send_multipart([b"probe", probe])
            if sub_sock.poll(20):
                sub_sock.recv_multipart()
                break
        while sub_sock.poll(50):
            sub_sock.recv_multipart()
        sub.peers.clear()
        sub._last_seq.clear()  # noqa: SLF001 (start the accounting after the probe)
        for epoch, seq in messages:
            pub.send_multipart([proto.topics.FILLS.encode(), proto.encode(SOURCE, epoch, seq, time.time_ns(),
                                                                          _fill(seq))])
        got = 0
        while got < len(messages) and sub_sock.poll(1000):
            got += sub.drain(lambda _t, _e: None)
        assert got == len(messages), f"delivered {got} of {len(messages)}"
        return sub
    finally:
        pub.close(linger=0)
        sub_sock.close(linger=0)


def test_a_gap_within_one_epoch_is_counted() -> None:
    sub = _feed([(100, 1), (100, 2), (100, 5)])
    peer = sub.peers[SOURCE]
    assert (peer.gaps, peer.lost) == (1, 2)


def test_messages_a_restarted_publisher_sent_before_the_subscriber_reconnected_are_counted_lost() -> None:
    """Epoch 100 sends 1..3 (all received); the publisher restarts as epoch 200 and sends 1..3
    before the subscriber has reconnected (lost), then 4 and 5 (received). Three messages never
    arrived: they must show as a gap, not vanish."""
    sub = _feed([(100, 1), (100, 2), (100, 3), (200, 4), (200, 5)])
    peer = sub.peers[SOURCE]
    assert peer.restarts == 1
    assert peer.lost == 3 and peer.gaps == 1, (
        f"a restarted publisher's first 3 messages were never received, but the subscriber counted "
        f"gaps={peer.gaps} lost={peer.lost} (restarts={peer.restarts})")
