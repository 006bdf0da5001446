"""services.orchestrator.sequence_runner: sequences driven by a real Reactor over real ipc sockets.

The peer that answers is a CommandServer on its own reactor thread; the hung peer is a bound
ROUTER that nobody reads (connected, never answering: a SIGSTOPped process, as seen from here).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest
import zmq

import proto
from bus import BusSettings, CommandChannel, CommandClient, CommandServer, Reactor, make_socket
from services.orchestrator.sequence_runner import Answer, Pause, Peer, Sequence, SequenceRunner, ask
from unit_support import wait_until

BUS = BusSettings()
T = TypeVar("T")
OK = Peer("ok", timeout_s=1.0, retries=0)
HUNG = Peer("hung", timeout_s=0.1, retries=1)


class Loop:
    """A runner on a reactor in a thread of its own, with a ticker showing that the loop turns."""

    def __init__(self, ctx: zmq.Context, endpoints: dict[str, str]) -> None:
        self.reactor = Reactor()
        self.ticks: list[float] = []
        self.reactor.call_every(0.01, lambda: self.ticks.append(time.monotonic()))
        self._sockets: list[Any] = []

        channels = {peer: CommandChannel(ctx, endpoint, BUS, "orchestrator", timeout_s=60.0)
                    for peer, endpoint in endpoints.items()}
        for made in channels.values():
            self.reactor.add_reader(made.sock, made.drain)
            self._sockets.append(made)

        def client(peer: str) -> CommandClient:
            made = CommandClient(ctx, endpoints[peer], BUS, "orchestrator")
            self._sockets.append(made)
            return made

        self.runner = SequenceRunner(self.reactor, channels, client, "orch")
        self.thread = threading.Thread(target=self.reactor.run, name="test-runner", daemon=True)
        self.thread.start()
        wait_until(lambda: self.reactor.running)

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the loop thread (the runner is only ever used there)."""
        done: Future[T] = Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        self.reactor.call_soon_threadsafe(run)
        return done.result(timeout=5)

    def close(self) -> None:
        self.reactor.stop()
        self.thread.join(5)
        for made in self._sockets:
            made.close()
        self.reactor.close()


@pytest.fixture
def loop(ctx: zmq.Context, ipc_dir: Path) -> Iterator[Loop]:
    server_sock = make_socket(ctx, zmq.ROUTER, BUS)
    server_sock.bind(f"ipc://{ipc_dir}/ok.cmd")
    def refuse(_args: proto.Args) -> dict[str, Any]:
        raise proto.CommandError("session is live; open needs ready")

    server = CommandServer(server_sock, "ok", time.time_ns(), {"status": lambda _args: {"service": "ok"},
                                                               "open": refuse})
    server_reactor = Reactor()
    server_reactor.add_reader(server_sock, server.drain)
    server_thread = threading.Thread(target=server_reactor.run, name="test-peer", daemon=True)
    server_thread.start()
    hung = make_socket(ctx, zmq.ROUTER, BUS)
    hung.bind(f"ipc://{ipc_dir}/hung.cmd")
    running = Loop(ctx, {"ok": f"ipc://{ipc_dir}/ok.cmd", "hung": f"ipc://{ipc_dir}/hung.cmd"})
    yield running
    running.close()
    server_reactor.stop()
    server_thread.join(5)
    server_sock.close(linger=0)
    server_reactor.close()
    hung.close(linger=0)


def test_a_sequence_asks_and_pauses_while_the_loop_keeps_turning(loop: Loop) -> None:
    def sequence() -> Sequence[tuple[Answer, Answer, bool, Answer]]:
        answered = yield from ask(OK, "status")
        refused = yield from ask(OK, "open", {"reason": "x"})
        woken = yield Pause(0.05)
        unanswered = yield from ask(HUNG, "status")
        return answered, refused, woken, unanswered

    t0 = time.monotonic()
    outcome = loop.call(lambda: loop.runner.start("seq", sequence()))
    answered, refused, woken, unanswered = outcome.result(timeout=5)
    elapsed = time.monotonic() - t0
    assert answered == Answer(True, "done", {"service": "ok"})
    assert refused == Answer(False, "session is live; open needs ready", {})
    assert woken is False
    assert unanswered == Answer(False, "no reply from hung to 'status' after 2 attempt(s) of 0.1s", {}, False)
    assert 0.25 <= elapsed < 2.0, elapsed
    # the loop turned all along: no gap between ticks near the time the hung peer was waited for
    ticks = [t for t in loop.ticks if t0 <= t <= t0 + elapsed]
    assert max(b - a for a, b in zip(ticks, ticks[1:])) < 0.1
    assert not loop.call(lambda: loop.runner.running("seq"))


def test_wake_ends_a_pause_one_sequence_per_name_and_close_ends_what_runs(loop: Loop) -> None:
    resumed: list[bool] = []

    def pausing() -> Sequence[str]:
        resumed.append((yield Pause(30.0)))
        yield Pause(30.0)
        return "never"

    outcome = loop.call(lambda: loop.runner.start("pausing", pausing()))
    assert loop.call(lambda: loop.runner.running("pausing"))
    with pytest.raises(RuntimeError, match="already running"):
        loop.call(lambda: loop.runner.start("pausing", pausing()))
    assert loop.call(lambda: loop.runner.wake("pausing")) is True
    wait_until(lambda: resumed == [True])  # woken at once, not after 30 s; now in its second pause
    assert not outcome.done()
    loop.call(loop.runner.close)
    with pytest.raises(RuntimeError, match="stopped before it ended"):
        outcome.result(timeout=1)

    # once the loop has stopped, a sequence runs to its end at once with blocking clients
    def on_the_way_out() -> Sequence[Answer]:
        return (yield from ask(OK, "status"))

    done = loop.call(lambda: loop.runner.start("report", on_the_way_out()))
    assert done.result(timeout=0) == Answer(True, "done", {"service": "ok"})


def test_a_long_wait_reaches_a_peer_restarted_meanwhile(ctx: zmq.Context, ipc_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The failsafe's verify waits long for ``reconcile`` (a run over REST takes seconds). Sent to
    an exchange manager killed before it answered, the request is lost with it: one try as long as
    the verify waited the whole verify out (10 s) while its successor was up and never asked. The
    wait is tries of at most ``RESEND_LONG_WAIT_S``, the same command again: the restarted peer
    hears it and answers long before the wait is over."""
    from services.orchestrator import failsafe

    monkeypatch.setattr(failsafe, "RESEND_LONG_WAIT_S", 0.2)
    endpoint = f"ipc://{ipc_dir}/em.cmd"
    killed = make_socket(ctx, zmq.ROUTER, BUS)  # takes the request and never answers
    killed.bind(endpoint)
    loop = Loop(ctx, {"em": endpoint})
    server_sock = None
    server_reactor = Reactor()
    server_thread = threading.Thread(target=server_reactor.run, name="test-restarted", daemon=True)
    try:
        t0 = time.monotonic()
        step = failsafe.run_step(None, "verify", Peer("em", timeout_s=0.5, retries=3), "reconcile", wait_s=5.0)
        outcome = loop.call(lambda: loop.runner.start("verify", step))
        wait_until(lambda: killed.poll(0))  # the first try reached the process that is then killed
        killed.close(linger=0)
        server_sock = make_socket(ctx, zmq.ROUTER, BUS)  # its successor, on the same endpoint
        server_sock.bind(endpoint)
        server = CommandServer(server_sock, "em", time.time_ns(),
                               {"reconcile": lambda _args: {"runs": {"sim": 1}, "outcomes": {}}})
        server_reactor.add_reader(server_sock, server.drain)
        server_thread.start()
        answered, result = outcome.result(timeout=5)
        assert answered.ok and result == {"runs": {"sim": 1}, "outcomes": {}}
        assert time.monotonic() - t0 < 2.5  # not the 5 s of one try
    finally:
        loop.close()
        if server_thread.is_alive():
            server_reactor.stop()
            server_thread.join(5)
        if server_sock is not None:
            server_sock.close(linger=0)
        server_reactor.close()
