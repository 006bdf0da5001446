"""bus.CommandServer (driven by a real Reactor thread) and bus.CommandClient over real ipc sockets."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import zmq

import proto
from bus import BusSettings, CommandClient, CommandRefused, CommandServer, CommandTimeout, Reactor, make_socket
from bus import command_server
from bus.command_server import Handler
from proto.commands.requests import Failsafe, Open
from proto.commands.results import Transition
from unit_support import wait_until

BUS = BusSettings()

StartServer = Callable[..., tuple[CommandServer, str]]


@pytest.fixture
def serve(ctx: zmq.Context, ipc_dir: Path) -> Iterator[StartServer]:
    """Start a CommandServer on a bound ROUTER, driven by a Reactor in a background thread.

    May be called from any thread; everything started is stopped, joined and closed at teardown.
    """
    started: list[tuple[Reactor, threading.Thread, zmq.Socket]] = []

    def start(handlers: Mapping[str, Handler], *, endpoint: str | None = None, bus: BusSettings = BUS,
              **kwargs: Any) -> tuple[CommandServer, str]:
        endpoint = endpoint or f"ipc://{ipc_dir}/srv.cmd"
        sock = make_socket(ctx, zmq.ROUTER, bus)
        sock.bind(endpoint)
        server = CommandServer(sock, "srv", time.time_ns(), handlers, **kwargs)
        reactor = Reactor()
        reactor.add_reader(sock, server.drain)
        thread = threading.Thread(target=reactor.run, name="test-server", daemon=True)
        started.append((reactor, thread, sock))
        thread.start()
        wait_until(lambda: reactor.running)
        return server, endpoint

    yield start
    for reactor, thread, sock in started:
        reactor.stop()
        thread.join(5)
        assert not thread.is_alive()
        sock.close(linger=0)
        reactor.close()


@pytest.fixture
def make_client(ctx: zmq.Context) -> Iterator[Callable[..., CommandClient]]:
    clients: list[CommandClient] = []

    def make(endpoint: str, **kwargs: Any) -> CommandClient:
        client = CommandClient(ctx, endpoint, kwargs.pop("bus", BUS), "tradectl", **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


class Recorder:
    """Handlers that record their calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, proto.Args]] = []

    def handlers(self) -> dict[str, Handler]:
        def status(args: proto.Args) -> dict[str, Any]:
            self.calls.append(("status", args))
            return {"service": "srv", "n": len(self.calls)}

        def open_(args: proto.Args) -> dict[str, Any]:
            self.calls.append(("open", args))
            return {"state": "live", "reason": args.reason}

        def failsafe(args: proto.Args) -> dict[str, Any]:
            self.calls.append(("failsafe", args))
            raise proto.CommandError(f"session is ready: cannot fail safe ({args.reason})")

        def reset(args: proto.Args) -> dict[str, Any]:
            self.calls.append(("reset", args))
            raise RuntimeError("handler bug")

        return {"status": status, "open": open_, "failsafe": failsafe, "reset": reset}


def raw_dealer(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def recv(sock: zmq.Socket, timeout_s: float = 5.0) -> list[bytes]:
    assert sock.poll(int(timeout_s * 1000)), "no reply"
    return sock.recv_multipart()


def command_frame(cid: str, name: str, args: dict[str, Any] | None = None, seq: int = 1) -> bytes:
    return proto.encode("tradectl", 1, seq, time.time_ns(), proto.Command(id=cid, name=name, args=args or {}))


def reply_of(frames: list[bytes]) -> proto.Reply:
    env = proto.decode(frames[-1])
    assert isinstance(env.body, proto.Reply)
    return env.body


# --- replies ---------------------------------------------------------------------------------------


def test_ok_reply(serve: StartServer, make_client: Callable[..., CommandClient]) -> None:
    rec = Recorder()
    server, endpoint = serve(rec.handlers())
    client = make_client(endpoint, timeout_s=2.0, retries=0)

    reply = client.call("open", {"reason": "bell rang"})

    assert reply.ok and reply.error == ""
    assert reply.result == {"state": "live", "reason": "bell rang"}
    assert reply.id.startswith("tradectl:")
    assert [(name, type(args).__name__) for name, args in rec.calls] == [("open", "Open")]
    assert server.handled == 1 and server.rejected == {}
    # the next call has a new id and runs the handler again
    second = client.call("status")
    assert second.ok and second.id != reply.id and second.result == {"service": "srv", "n": 2}


def test_command_error_is_an_error_reply_with_the_reason(serve: StartServer,
                                                         make_client: Callable[..., CommandClient]) -> None:
    rec = Recorder()
    server, endpoint = serve(rec.handlers())
    reply = make_client(endpoint, timeout_s=2.0, retries=0).call("failsafe", {"reason": "test"})
    assert not reply.ok and reply.result == {}
    assert reply.error == "session is ready: cannot fail safe (test)"
    assert server.refused == 1 and server.handled == 0


def test_unknown_command_is_an_error_reply(serve: StartServer, make_client: Callable[..., CommandClient]) -> None:
    rec = Recorder()
    server, endpoint = serve(rec.handlers())
    client = make_client(endpoint, timeout_s=2.0, retries=0)
    for name in ("shutdown", "no_such_command"):  # a known schema not served here, and nonsense
        reply = client.call(name)
        assert not reply.ok
        assert f"unknown command {name!r}" in reply.error
        assert "status" in reply.error  # says what is served
    assert rec.calls == []
    assert server.rejected == {"unknown_command": 2}


def test_invalid_args_are_an_error_reply(serve: StartServer, make_client: Callable[..., CommandClient]) -> None:
    rec = Recorder()
    server, endpoint = serve(rec.handlers())
    client = make_client(endpoint, timeout_s=2.0, retries=0)
    for args in ({"reason": 5}, {"surprise": "x"}):
        reply = client.call("open", args)
        assert not reply.ok and "open" in reply.error
    missing = client.call("failsafe", {})
    assert not missing.ok and "reason" in missing.error
    assert rec.calls == []
    assert server.rejected == {"invalid": 3}


def test_handler_exception_is_an_error_reply_and_server_keeps_serving(
        serve: StartServer, make_client: Callable[..., CommandClient]) -> None:
    rec = Recorder()
    server, endpoint = serve(rec.handlers())
    client = make_client(endpoint, timeout_s=2.0, retries=0)

    reply = client.call("reset")

    assert not reply.ok and "handler bug" in reply.error and "reset" in reply.error
    assert server.handler_errors == 1
    assert client.call("status").ok
    assert server.handled == 1


def test_result_key_named_like_oks_own_parameter_is_an_ordinary_result(
        serve: StartServer, make_client: Callable[..., CommandClient]) -> None:
    """``proto.ok`` takes the command id positionally, so any result key is allowed."""
    server, endpoint = serve({"status": lambda _args: {"command_id": "clash"}})
    reply = make_client(endpoint, timeout_s=0.5, retries=0).call("status")
    assert reply.ok and reply.result == {"command_id": "clash"}
    assert server.handled == 1


@pytest.mark.parametrize(
    "result",
    [
        pytest.param(lambda: None, id="returns-None"),
        pytest.param(lambda: {"value": object()}, id="result-not-encodable"),
    ],
)
def test_handler_returning_a_bad_result_still_gets_one_error_reply(
        serve: StartServer, make_client: Callable[..., CommandClient], result: Callable[[], Any]) -> None:
    """Every command gets a reply, and a retry never runs the handler twice, even when the handler's
    result cannot be turned into a reply (a handler bug, like raising)."""
    calls: list[int] = []

    def status(_args: proto.Args) -> Any:
        calls.append(1)
        return result()

    server, endpoint = serve({"status": status})
    client = make_client(endpoint, timeout_s=0.2, retries=1)

    try:
        reply = client.call("status")
    except CommandTimeout:
        reply = None

    assert reply is not None, "no reply at all to a command whose handler returned a bad result"
    assert not reply.ok and reply.error
    assert calls == [1], "the handler ran again on the retry"


# --- idempotency -------------------------------------------------------------------------------------


def test_same_command_id_twice_runs_handler_once_and_replies_identically(
        ctx: zmq.Context, serve: StartServer) -> None:
    rec = Recorder()
    server, endpoint = serve(rec.handlers())
    dealer = raw_dealer(ctx, endpoint)
    try:
        data = command_frame("dup-1", "open", {"reason": "once"})
        dealer.send(data)
        first = recv(dealer)
        dealer.send(command_frame("dup-1", "open", {"reason": "once"}, seq=2))  # same id, resent
        second = recv(dealer)
    finally:
        dealer.close(linger=0)

    assert first == second  # byte-identical: the cached reply
    assert reply_of(first).ok and reply_of(first).id == "dup-1"
    assert [name for name, _ in rec.calls] == ["open"]
    assert server.duplicates == 1 and server.handled == 1


def test_errors_are_cached_too(ctx: zmq.Context, serve: StartServer) -> None:
    rec = Recorder()
    server, endpoint = serve(rec.handlers())
    dealer = raw_dealer(ctx, endpoint)
    try:
        replies = []
        for _ in range(3):
            dealer.send(command_frame("err-1", "failsafe", {"reason": "x"}))
            replies.append(recv(dealer))
    finally:
        dealer.close(linger=0)
    assert replies[0] == replies[1] == replies[2]
    assert not reply_of(replies[0]).ok
    assert len(rec.calls) == 1 and server.refused == 1 and server.duplicates == 2


def test_idempotency_cache_is_bounded(ctx: zmq.Context, serve: StartServer) -> None:
    rec = Recorder()
    server, endpoint = serve(rec.handlers(), cache_size=100)
    dealer = raw_dealer(ctx, endpoint)
    try:
        for i in range(101):
            dealer.send(command_frame(f"id-{i}", "open", {"reason": "x"}))
            recv(dealer)
        dealer.send(command_frame("id-100", "open", {"reason": "x"}))  # still remembered
        recv(dealer)
        dealer.send(command_frame("id-0", "open", {"reason": "x"}))  # evicted: runs again
        recv(dealer)
    finally:
        dealer.close(linger=0)
    assert server.duplicates == 1
    assert len(rec.calls) == 102


def test_queries_and_rejected_requests_never_push_a_command_out_of_the_cache(
        ctx: zmq.Context, serve: StartServer) -> None:
    """A flood of status polls or of bad requests, each with a fresh id, larger than the cache:
    the order-like command before it is still answered from the cache on its retry."""
    rec = Recorder()
    server, endpoint = serve(rec.handlers(), cache_size=100)
    dealer = raw_dealer(ctx, endpoint)
    try:
        dealer.send(command_frame("the-order", "open", {"reason": "x"}))
        first = recv(dealer)
        for i in range(150):
            dealer.send(command_frame(f"poll-{i}", "status"))
            recv(dealer)
            dealer.send(command_frame(f"bad-{i}", "open", {"reason": 1}))  # wrong type: rejected
            recv(dealer)
            dealer.send(command_frame(f"unknown-{i}", "no_such_command"))
            recv(dealer)
        dealer.send(command_frame("poll-0", "status"))  # a repeated query runs again
        assert reply_of(recv(dealer)).result["n"] == 152
        dealer.send(command_frame("the-order", "open", {"reason": "x"}))
        again = recv(dealer)
    finally:
        dealer.close(linger=0)
    assert again == first
    assert [name for name, _ in rec.calls].count("open") == 1
    assert server.duplicates == 1
    assert server.rejected == {"invalid": 150, "unknown_command": 150}


def test_req_clients_are_answered_on_their_route(ctx: zmq.Context, serve: StartServer) -> None:
    rec = Recorder()
    _server, endpoint = serve(rec.handlers())
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    try:
        req.connect(endpoint)
        req.send(command_frame("req-1", "status"))
        frames = recv(req)
    finally:
        req.close(linger=0)
    assert len(frames) == 1
    assert reply_of(frames).ok and reply_of(frames).id == "req-1"


# --- garbage -----------------------------------------------------------------------------------------


def test_garbage_frames_get_error_replies_and_server_keeps_serving(
        ctx: zmq.Context, serve: StartServer, make_client: Callable[..., CommandClient]) -> None:
    rec = Recorder()
    server, endpoint = serve(rec.handlers())
    dealer = raw_dealer(ctx, endpoint)
    rng = random.Random(20260119)
    heartbeat = proto.encode("raw", 1, 1, 1, proto.Heartbeat(pid=1, interval_s=0.2))
    try:
        cases: list[tuple[list[bytes], list[bytes]]] = [
            ([b"\xc1" + rng.randbytes(63)], []),  # random bytes
            ([b""], []),  # an empty frame
            ([b"a", b"b", b"c", rng.randbytes(40)], [b"a", b"b", b"c"]),  # many frames
            ([heartbeat], []),  # a valid message that is not a command
            ([proto.encode("tradectl", 1, 1, 1, proto.Command(id="x", name="status")).replace(b"command", b"commanX")],
             []),  # unknown type
        ]
        for frames, route in cases:
            dealer.send_multipart(frames)
            reply_frames = recv(dealer)
            assert reply_frames[:-1] == route
            reply = reply_of(reply_frames)
            assert not reply.ok and reply.id == "" and reply.error.startswith("bad request")
        for n in (50, 200):  # a long multipart message gets its answer on its identity alone: the
            dealer.send_multipart([b"x%d" % i for i in range(n)])  # server never gathers its parts
            reply_frames = recv(dealer)
            assert len(reply_frames) == 1 and reply_of(reply_frames).error == "bad request: a command is one frame"
    finally:
        dealer.close(linger=0)

    assert sum(server.rejected.values()) == 7
    assert server.rejected["frames"] == 2
    assert server.rejected["not_a_command"] == 1
    assert server.rejected["unknown_type"] == 1
    assert rec.calls == []
    assert make_client(endpoint, timeout_s=2.0, retries=0).call("status").ok


# --- the client: timeouts, retries, late replies -----------------------------------------------------


def test_client_succeeds_when_server_comes_up_during_retries(
        serve: StartServer, make_client: Callable[..., CommandClient], ipc_dir: Path) -> None:
    endpoint = f"ipc://{ipc_dir}/late.cmd"
    client = make_client(endpoint, timeout_s=0.25, retries=8)
    rec = Recorder()
    failure: list[BaseException] = []

    def bring_up_after_first_timeout() -> None:
        try:
            wait_until(lambda: client.timeouts >= 1)
            serve(rec.handlers(), endpoint=endpoint)
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    helper = threading.Thread(target=bring_up_after_first_timeout, daemon=True)
    helper.start()
    try:
        reply = client.call("status")
    finally:
        helper.join(5)
    assert not failure
    assert reply.ok
    assert client.timeouts >= 1 and client.replaced_sockets == client.timeouts
    assert [name for name, _ in rec.calls] == ["status"]


def test_client_against_no_server_raises_timeout_within_bound(
        make_client: Callable[..., CommandClient], ipc_dir: Path) -> None:
    timeout_s, retries = 0.15, 2
    client = make_client(f"ipc://{ipc_dir}/nobody.cmd", timeout_s=timeout_s, retries=retries)
    budget = (retries + 1) * timeout_s

    t0 = time.monotonic()
    with pytest.raises(CommandTimeout) as info:
        client.call("status")
    elapsed = time.monotonic() - t0

    assert elapsed >= budget * 0.9
    assert elapsed <= 2 * budget + 0.1
    assert client.timeouts == retries + 1
    assert client.replaced_sockets == retries + 1
    assert "status" in str(info.value) and "3 attempt" in str(info.value)


def test_per_call_timeout_and_retries_override(make_client: Callable[..., CommandClient], ipc_dir: Path) -> None:
    client = make_client(f"ipc://{ipc_dir}/nobody.cmd", timeout_s=5.0, retries=5)
    t0 = time.monotonic()
    with pytest.raises(CommandTimeout):
        client.call("status", timeout_s=0.1, retries=0)
    assert time.monotonic() - t0 < 1.0
    assert client.timeouts == 1 and client.replaced_sockets == 1


def test_slow_first_attempt_is_retried_and_answered_from_cache(
        serve: StartServer, make_client: Callable[..., CommandClient], ipc_dir: Path) -> None:
    """The server is still busy with attempt 1 when the client gives up on it; the retry (same id)
    is answered from the idempotency cache, the handler runs once, and the late reply to attempt 1
    never reaches the caller."""
    endpoint = f"ipc://{ipc_dir}/slow.cmd"
    client = make_client(endpoint, timeout_s=0.2, retries=2)
    calls: list[int] = []

    def open_(_args: proto.Args) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:  # the first time, take longer than the client waits
            wait_until(lambda: client.timeouts >= 1, timeout=5.0)
        return {"call_no": len(calls)}

    server, _ = serve({"open": open_}, endpoint=endpoint)

    reply = client.call("open", {"reason": "x"})

    assert reply.ok and reply.result == {"call_no": 1}
    assert calls == [1]
    assert client.timeouts == 1
    wait_until(lambda: server.duplicates == 1)
    assert server.handled == 1


def test_late_reply_to_an_earlier_request_is_discarded(
        ctx: zmq.Context, make_client: Callable[..., CommandClient], ipc_dir: Path) -> None:
    """A reply whose id is not the current request's (a late answer to an earlier one) is dropped
    and the client keeps waiting for its own."""
    endpoint = f"ipc://{ipc_dir}/raw.cmd"
    router = make_socket(ctx, zmq.ROUTER, BUS)
    router.bind(endpoint)
    seen: list[str] = []
    failure: list[BaseException] = []

    def fake_server() -> None:
        try:
            assert router.poll(5000)
            route_and_data = router.recv_multipart()
            route, data = route_and_data[:-1], route_and_data[-1]
            cmd = proto.decode(data).body
            seen.append(cmd.id)
            late = proto.encode("raw", 1, 1, 1, proto.ok("tester:earlier-call", which="late"))
            junk = b"\xc1 not a message"
            mine = proto.encode("raw", 1, 2, 1, proto.ok(cmd.id, which="mine"))
            router.send_multipart([*route, late])
            router.send_multipart([*route, junk])
            router.send_multipart([*route, mine])
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=fake_server, daemon=True)
    thread.start()
    try:
        reply = make_client(endpoint, timeout_s=2.0, retries=0).call("status")
    finally:
        thread.join(5)
        router.close(linger=0)
    assert not failure
    assert reply.ok and reply.result == {"which": "mine"} and reply.id == seen[0]


def test_retries_reuse_the_command_id(ctx: zmq.Context, make_client: Callable[..., CommandClient],
                                      ipc_dir: Path) -> None:
    """A retry is the same request (same id), so the server's idempotency makes it safe."""
    endpoint = f"ipc://{ipc_dir}/ids.cmd"
    router = make_socket(ctx, zmq.ROUTER, BUS)
    router.bind(endpoint)
    ids: list[str] = []
    failure: list[BaseException] = []

    def ignore_first_answer_second() -> None:
        try:
            for attempt in range(2):
                assert router.poll(5000)
                frames = router.recv_multipart()
                cmd = proto.decode(frames[-1]).body
                ids.append(cmd.id)
                if attempt == 1:
                    router.send_multipart([*frames[:-1], proto.encode("raw", 1, 1, 1, proto.ok(cmd.id))])
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=ignore_first_answer_second, daemon=True)
    thread.start()
    try:
        reply = make_client(endpoint, timeout_s=0.2, retries=3).call("status")
    finally:
        thread.join(5)
        router.close(linger=0)
    assert not failure
    assert reply.ok
    assert len(ids) == 2 and ids[0] == ids[1] == reply.id


def test_a_deferred_reply_goes_out_when_resolved_to_the_request_and_its_retries(
        ctx: zmq.Context, serve: StartServer, make_client: Callable[..., CommandClient],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler whose answer waits on other work of the loop returns a ``Deferred``: the server
    goes on serving; the reply goes out when resolved, to the request and to a retry of its id that
    came meanwhile (from another socket, as a client's retry does), and the handler runs once."""
    from bus.command_server import Deferred
    waiting: list[Deferred] = []
    calls: list[str] = []

    def reconcile(_: proto.Args) -> Deferred:
        calls.append("reconcile")
        waiting.append(Deferred())
        return waiting[-1]

    def open_(args: proto.Args) -> dict[str, Any]:  # the loop's other work, ending the wait
        deferred = waiting.pop(0)
        if args.reason == "refuse":
            deferred.refuse("the venue went away")
        else:
            deferred.resolve({"done": args.reason})
        return {}

    monkeypatch.setattr(command_server, "MAX_WAITING", 2)
    server, endpoint = serve({"reconcile": reconcile, "open": open_})
    client = make_client(endpoint, timeout_s=2.0, retries=0)
    first, retry = raw_dealer(ctx, endpoint), raw_dealer(ctx, endpoint)
    try:
        first.send(command_frame("w-1", "reconcile"))
        wait_until(lambda: calls == ["reconcile"], 5)
        retry.send(command_frame("w-1", "reconcile", seq=2))
        assert not first.poll(200), "no reply before the work is done"
        assert client.call("open", {"reason": "x"}).ok  # served meanwhile; it ends w-1's wait
        a, b = recv(first), recv(retry)
        assert a == b and reply_of(a).ok and reply_of(a).result == {"done": "x"}
        assert calls == ["reconcile"] and server.duplicates == 1
        first.send(command_frame("w-1", "reconcile", seq=3))  # later: the cached reply
        assert recv(first) == a and calls == ["reconcile"]
        # refused: an error reply with the reason
        first.send(command_frame("w-2", "reconcile", seq=4))
        wait_until(lambda: len(calls) == 2, 5)
        assert client.call("open", {"reason": "refuse"}).ok
        refused = reply_of(recv(first))
        assert not refused.ok and refused.error == "the venue went away"
        # bounded: beyond MAX_WAITING waiting requests, one is refused at once with the reason
        for i in range(3):
            first.send(command_frame(f"w-{3 + i}", "reconcile", seq=5 + i))
        over = reply_of(recv(first))
        assert over.id == "w-5" and not over.ok and "2 requests already waiting" in over.error
        assert not first.poll(200), "the two within the bound still wait"
    finally:
        first.close(linger=0)
        retry.close(linger=0)


# --- deferred replies ------------------------------------------------------------------------------


def test_a_handler_may_answer_later_with_a_future_and_the_server_serves_meanwhile(
        ctx: zmq.Context, serve: StartServer) -> None:
    """A handler that waits on a peer returns a Future: other requests are answered meanwhile, a
    retry of the same id is answered once it is done (on the retry's route, the handler not run
    again), and a refusal set on the future is an error reply. The futures are completed on the
    server's loop thread, as a service's sequences complete them (here by other commands)."""
    pending: list[Future[dict[str, Any]]] = []
    calls: list[str] = []

    def close(_args: proto.Args) -> Future[dict[str, Any]]:
        calls.append("close")
        pending.append(Future())
        return pending[-1]

    def open_(_args: proto.Args) -> dict[str, Any]:  # "the peer answered": the close is done
        pending[-1].set_result({"report": "eod.json"})
        return {}

    def reset(_args: proto.Args) -> dict[str, Any]:  # "the peer refused": the close is refused
        pending[-1].set_exception(proto.CommandError("session is shutdown; nothing to close"))
        return {}

    server, endpoint = serve({"close": close, "open": open_, "reset": reset,
                              "status": lambda _args: {"service": "srv"}})
    first, retry, other = raw_dealer(ctx, endpoint), raw_dealer(ctx, endpoint), raw_dealer(ctx, endpoint)
    try:
        first.send(command_frame("close-1", "close", {"reason": "bell"}))
        wait_until(lambda: len(pending) == 1)
        other.send(command_frame("st-1", "status"))
        assert reply_of(recv(other, 2.0)).ok  # answered while close waits
        assert not first.poll(100)
        retry.send(command_frame("close-1", "close", {"reason": "bell"}, seq=2))  # a client's retry
        wait_until(lambda: server.duplicates == 1)
        other.send(command_frame("open-1", "open", {"reason": "x"}, seq=3))
        assert reply_of(recv(other, 2.0)).ok
        done = reply_of(recv(retry, 2.0))
        assert done.ok and done.id == "close-1" and done.result == {"report": "eod.json"}
        assert reply_of(recv(first, 2.0)) == done  # and on the first route too: each asker gets it once
        retry.send(command_frame("close-1", "close", {"reason": "bell"}, seq=4))  # later: from the cache
        assert reply_of(recv(retry, 2.0)) == done
        first.send(command_frame("close-2", "close", {"reason": "again"}, seq=5))
        wait_until(lambda: len(pending) == 2)
        other.send(command_frame("reset-1", "reset", {"reason": "x"}, seq=6))
        assert reply_of(recv(other, 2.0)).ok
        refused = reply_of(recv(first, 2.0))
        assert not refused.ok and refused.error == "session is shutdown; nothing to close"
    finally:
        for sock in (first, retry, other):
            sock.close(linger=0)
    assert calls == ["close", "close"]
    assert server.refused == 1


def test_a_typed_request_reads_its_result_straight_into_the_declared_struct(
        serve: StartServer, make_client: Callable[..., CommandClient]) -> None:
    """``client.request(Open(...))``: the reply's result is decoded into ``Transition`` in one pass
    (``proto.decode_reply``), a field it does not declare ignored; a refusal raises with its reason."""
    rec = Recorder()
    _, endpoint = serve(rec.handlers())
    client = make_client(endpoint, timeout_s=2.0, retries=0, service="orchestrator")
    result = client.request(Open(reason="bell rang"))
    assert type(result) is Transition and result.state == "live"  # "reason" is not Transition's: ignored
    with pytest.raises(CommandRefused, match="cannot fail safe"):
        client.request(Failsafe(reason="test"))


def test_decode_reply_reads_a_result_struct_and_refuses_what_is_not_one() -> None:
    def frame(body: proto.Reply) -> bytes:
        return proto.encode("srv", 1, 1, 1, body)

    typed = proto.decode_reply(frame(proto.Reply(id="a", ok=True, result={"state": "live", "added": 1})), Transition)
    assert typed.result == Transition(state="live") and typed.ok and typed.id == "a"
    for not_it in (proto.Reply(id="a", ok=False, result={}, error="refused"),  # a refusal's empty result
                   proto.Reply(id="a", ok=True, result={"state": 3})):  # the wrong type
        with pytest.raises(proto.ProtocolError):
            proto.decode_reply(frame(not_it), Transition)
    with pytest.raises(proto.ProtocolError):  # not a reply at all
        proto.decode_reply(proto.encode("srv", 1, 1, 1, proto.Command(id="a", name="open", args={})), Transition)
