"""bus.make_socket (options from settings, size limits) and bus.Endpoints."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import zmq

import proto
from bus import (
    SERVICE_NAMES,
    BusSettings,
    CommandClient,
    CommandServer,
    Endpoints,
    Publisher,
    Reactor,
    Subscriber,
    ensure_private_dir,
    make_socket,
)
from bus import endpoints as endpoints_module
from bus.sockets import SUBSCRIPTION_HWM
from unit_support import Collector, handshake, reactor_thread, wait_until

# Every name that gets endpoints: our services, plus any local stand-ins for the outside world.
ALL_NAMES = SERVICE_NAMES + tuple(getattr(endpoints_module, "VENUE_NAMES", ()))
CUSTOM = BusSettings(linger_ms=7, pub_hwm=11, sub_hwm=13, command_hwm=17, max_message_bytes=4096)


@pytest.mark.parametrize(
    "kind,hwm",
    [(zmq.PUB, 11), (zmq.XPUB, 11), (zmq.SUB, 13), (zmq.ROUTER, 17), (zmq.DEALER, 17), (zmq.REQ, 17)],
    ids=["PUB", "XPUB", "SUB", "ROUTER", "DEALER", "REQ"],
)
def test_make_socket_applies_settings(ctx: zmq.Context, kind: int, hwm: int) -> None:
    sock = make_socket(ctx, kind, CUSTOM)
    publishes = kind in (zmq.PUB, zmq.XPUB)
    try:
        assert sock.getsockopt(zmq.LINGER) == 7
        assert sock.getsockopt(zmq.SNDHWM) == hwm
        # A publisher receives only subscriptions: few queued, none longer than the longest prefix.
        assert sock.getsockopt(zmq.RCVHWM) == (SUBSCRIPTION_HWM if publishes else hwm)
        # SUB: no socket limit (the decoder's limit applies; see bus/sockets.py).
        expected_max = (-1 if kind == zmq.SUB else 10 + CUSTOM.max_subscription_bytes if publishes  # ZMTP 3.1 SUBSCRIBE
                        else 4096)
        assert sock.getsockopt(zmq.MAXMSGSIZE) == expected_max
        assert sock.getsockopt(zmq.RECONNECT_IVL) == 50
        assert sock.getsockopt(zmq.RECONNECT_IVL_MAX) == 1000
        if kind == zmq.DEALER:
            assert sock.getsockopt(zmq.IMMEDIATE) == 1
    finally:
        sock.close(linger=0)


def test_make_socket_hwm_override(ctx: zmq.Context) -> None:
    sock = make_socket(ctx, zmq.DEALER, CUSTOM, hwm=3)
    try:
        assert (sock.getsockopt(zmq.SNDHWM), sock.getsockopt(zmq.RCVHWM)) == (3, 3)
    finally:
        sock.close(linger=0)


def test_make_socket_defaults(ctx: zmq.Context) -> None:
    bus = BusSettings()
    sock = make_socket(ctx, zmq.SUB, bus)
    try:
        assert sock.getsockopt(zmq.LINGER) == bus.linger_ms == 0
        assert sock.getsockopt(zmq.RCVHWM) == bus.sub_hwm
        assert sock.getsockopt(zmq.MAXMSGSIZE) == -1  # the decoder enforces max_message_bytes
    finally:
        sock.close(linger=0)


def test_router_is_mandatory_so_unroutable_replies_raise(ctx: zmq.Context) -> None:
    router = make_socket(ctx, zmq.ROUTER, CUSTOM)
    try:
        with pytest.raises(zmq.ZMQError):
            router.send_multipart([b"nobody", b"reply"], flags=zmq.NOBLOCK)
    finally:
        router.close(linger=0)


@pytest.fixture
def two_publishers(ctx: zmq.Context, ipc_dir: Path):
    """A SUB (max_message_bytes=1024) connected to two PUBs, "bad" and "good", past the slow joiner."""
    limit = 1024
    bad_ep, good_ep = f"ipc://{ipc_dir}/bad.pub", f"ipc://{ipc_dir}/good.pub"
    bad_sock = make_socket(ctx, zmq.PUB, BusSettings())
    good_sock = make_socket(ctx, zmq.PUB, BusSettings())
    sub_sock = make_socket(ctx, zmq.SUB, BusSettings(max_message_bytes=limit))
    try:
        bad_sock.bind(bad_ep)
        good_sock.bind(good_ep)
        # The Subscriber has the same limit: if an oversized frame ever reached Python it would be
        # counted as rejected["oversized"].
        sub = Subscriber(sub_sock, max_bytes=limit)
        sub.connect(bad_ep)
        sub.connect(good_ep)
        sub.subscribe("")
        col = Collector(sub)
        handshake(bad_sock, col, source="probe-bad")
        handshake(good_sock, col, source="probe-good")
        bad = Publisher(bad_sock, "bad", 1)
        good = Publisher(good_sock, "good", 1)
        bad.publish("hb.bad", proto.Heartbeat(pid=1, interval_s=0.2, stats=proto.summaries.EngineSummary(book_sync={"blob": "x" * (4 * limit)})))
        yield bad, good, col
    finally:
        sub_sock.close(linger=0)
        bad_sock.close(linger=0)
        good_sock.close(linger=0)


def test_oversized_frame_to_sub_is_rejected_and_counted(two_publishers) -> None:
    bad, good, col = two_publishers
    good.publish("hb.good", proto.Heartbeat(pid=2, interval_s=0.2))
    col.wait_for(lambda c: c.from_source("good"), what="message from the well-behaved publisher")
    good.publish("hb.good", proto.Heartbeat(pid=3, interval_s=0.2))
    col.wait_for(lambda c: len(c.from_source("good")) == 2)
    bad.publish("hb.bad", proto.Heartbeat(pid=4, interval_s=0.2))  # whether or not this one arrives
    good.publish("hb.good", proto.Heartbeat(pid=5, interval_s=0.2))
    col.wait_for(lambda c: len(c.from_source("good")) == 3)

    # The oversized message (seq 1) reached the decoder and was rejected, counted, never delivered.
    assert col.sub.rejected == {"oversized": 1}
    assert all(e.seq != 1 for e in col.from_source("bad"))
    assert all(len(proto.encode(e.source, e.epoch, e.seq, e.ts_ns, e.body)) <= 1024 for _t, e in col.messages)


def test_one_oversized_message_does_not_cut_a_subscriber_off_for_good(two_publishers) -> None:
    """After an oversized frame, the publisher's later (valid) messages reach the subscriber again.

    libzmq treats a frame over MAXMSGSIZE as a protocol error: the connecting SUB closes that
    connection and does not reconnect (not even after the publisher restarts), so without a
    remedy one oversized event silences that publisher for this subscriber for good.
    """
    bad, good, col = two_publishers

    def bad_publisher_heard_again(c: Collector) -> bool:
        bad.publish("hb.bad", proto.Heartbeat(pid=3, interval_s=0.2))
        return any(e.seq > 1 for e in c.from_source("bad"))

    col.wait_for(bad_publisher_heard_again, timeout=2.0,
                 what="messages from a publisher after it sent one oversized message")


def test_oversized_frame_to_router_never_reaches_python(ctx: zmq.Context, ipc_dir: Path) -> None:
    limit = 1024
    bus = BusSettings(max_message_bytes=limit)
    endpoint = f"ipc://{ipc_dir}/srv.cmd"
    router = make_socket(ctx, zmq.ROUTER, bus)
    router.bind(endpoint)
    calls: list[str] = []
    server = CommandServer(router, "srv", 1, {"status": lambda _a: calls.append("status") or {}},
                           max_bytes=limit)
    reactor = Reactor()
    reactor.add_reader(router, server.drain)
    dealer = make_socket(ctx, zmq.DEALER, BusSettings())  # IMMEDIATE: sends only when connected
    client = CommandClient(ctx, endpoint, bus, "tradectl", timeout_s=2.0, retries=0)
    try:
        with reactor_thread(reactor):
            dealer.connect(endpoint)
            wait_until(lambda: dealer.poll(0, zmq.POLLOUT))
            big = proto.encode("tradectl", 1, 1, 1, proto.Command(id="big", name="status",
                                                             args={"blob": "x" * (4 * limit)}))
            dealer.send(big)
            assert client.call("status").ok  # another client is served meanwhile

            # The same dealer is disconnected by the server's ZeroMQ and reconnects; its next
            # request (sent once connected again) is answered, the big one never was.
            def answered_after_reconnect() -> bool:
                try:
                    dealer.send(proto.encode("tradectl", 1, 2, 1, proto.Command(id="small", name="status")),
                                flags=zmq.NOBLOCK)
                except zmq.Again:
                    return False
                if not dealer.poll(100):
                    return False
                reply = proto.decode(dealer.recv_multipart()[-1]).body
                assert reply.id == "small", f"unexpected reply {reply!r}"
                return True

            wait_until(answered_after_reconnect, timeout=5.0)
    finally:
        client.close()
        dealer.close(linger=0)
        reactor.close()
        router.close(linger=0)
    assert server.rejected == {}
    assert len(calls) >= 2  # the client's status and the small request(s), never "big"


def test_ipc_endpoints_are_in_the_run_dir(tmp_path: Path) -> None:
    eps = Endpoints(BusSettings(), tmp_path)
    seen = set()
    for service in ALL_NAMES:
        for ep in (eps.pub(service), eps.cmd(service)):
            assert ep.startswith("ipc://")
            path = Path(ep[len("ipc://"):])
            assert path.parent == tmp_path
            assert service in path.name
            seen.add(ep)
    assert len(seen) == 2 * len(ALL_NAMES)


def test_tcp_endpoints_use_host_and_distinct_ports(tmp_path: Path) -> None:
    bus = BusSettings(transport="tcp", tcp_host="10.1.2.3", tcp_base_port=50000)
    eps = Endpoints(bus, tmp_path)
    ports = []
    for service in ALL_NAMES:
        for ep in (eps.pub(service), eps.cmd(service)):
            assert ep.startswith("tcp://10.1.2.3:")
            ports.append(int(ep.rsplit(":", 1)[1]))
    assert len(set(ports)) == len(ports) == 2 * len(ALL_NAMES)
    assert min(ports) == 50000
    assert all(50000 <= p < 50000 + 64 for p in ports)
    # the numbering is stable: the orchestrator keeps the first two ports
    assert eps.pub("orchestrator") == "tcp://10.1.2.3:50000"
    assert eps.cmd("orchestrator") == "tcp://10.1.2.3:50001"


def test_unknown_service_has_no_endpoint(tmp_path: Path) -> None:
    eps = Endpoints(BusSettings(), tmp_path)
    with pytest.raises(ValueError, match="unknown service"):
        eps.pub("nobody")
    with pytest.raises(ValueError, match="unknown service"):
        eps.cmd("../../etc/passwd")


def test_ensure_private_dir_creates_with_mode_0700(tmp_path: Path) -> None:
    target = tmp_path / "a" / "run"
    assert ensure_private_dir(target) == target
    assert target.is_dir()
    assert stat.S_IMODE(target.stat().st_mode) == 0o700


def test_ensure_private_dir_tightens_an_existing_dir(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.mkdir(mode=0o755)
    target.chmod(0o777)
    ensure_private_dir(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o700


def test_bus_settings_validation() -> None:
    with pytest.raises(ValueError):
        BusSettings(max_message_bytes=10)
    with pytest.raises(ValueError):
        BusSettings(heartbeat_interval_s=0)
    with pytest.raises(ValueError):
        BusSettings(transport="udp")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        BusSettings(unknown_option=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        BusSettings(tcp_base_port=65001)  # leaves no room for every service's ports
    with pytest.raises(ValueError):
        BusSettings(tcp_base_port=80)
