"""Every multi-step sequence of the orchestrator (failsafe, close, recover, flatten), run by its
event loop without ever blocking it.

A sequence is a generator that reads top to bottom like blocking code: it yields what it waits
for, an ``Ask`` (a command to a peer; resumed with its ``Answer``) or a ``Pause`` (resumed with
True if woken early), and returns its outcome. ``SequenceRunner`` drives it on the reactor:
commands go out on pipelined channels (``bus/command_channel.py``) with the ask's own deadline and
retries (the same command id, as ``CommandClient`` does), pauses are timers. So while one waits
on a hung peer for seconds, the loop goes on answering ``status``, publishing heartbeats and
telling restarted processes not to trade. Each sequence runs under a name, at most one per name;
``start`` returns a future of its outcome, completed on the loop thread (a command's handler may
return it: the command server answers when it is done).

Once the loop has stopped (``close``), a sequence started on the way out (the end-of-day report
of a daemon stop) is run to its end at once with blocking clients (``drive``): nothing else is
left for the process to do.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Generator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import proto
from bus import CommandChannel, CommandClient, CommandTimeout, NotConnected
from bus.reactor import Reactor

T = TypeVar("T")
RESEND_S = 0.01  # a peer not connected (restarting): the request is sent as soon as it is


@dataclass(frozen=True)
class Peer:
    """Who to ask, and how patiently: each try waits ``timeout_s``; ``retries`` more tries follow."""

    name: str
    timeout_s: float
    retries: int


@dataclass(frozen=True)
class Ask:
    peer: Peer
    command: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    ok: bool
    detail: str  # "done", the peer's refusal, or why there was no answer
    result: dict[str, Any]
    answered: bool = True  # False: no reply after every try


@dataclass(frozen=True)
class Pause:
    seconds: float


Sequence = Generator["Ask | Pause", Any, T]


def ask(peer: Peer, command: str, args: dict[str, Any] | None = None) -> Generator[Ask, Any, Answer]:
    """``answer = yield from ask(peer, "positions")``: one command, its answer."""
    answer: Answer = yield Ask(peer, command, args or {})
    return answer


@dataclass(eq=False)
class _Run:
    name: str
    sequence: Sequence[Any]
    future: Future[Any]
    waiting: "_Wait | None" = None


@dataclass(eq=False)
class _Wait:
    run: _Run
    wakeable: bool
    over: bool = False


class SequenceRunner:
    def __init__(self, reactor: Reactor, channels: dict[str, CommandChannel],
                 client: Callable[[str], CommandClient], source: str) -> None:
        """``channels``: a pipelined channel per peer, made at start-up (connected by the time a
        sequence needs it); ``client(peer)``: a blocking client, for the way out."""
        self._reactor = reactor
        self._channels = channels
        self._make_client = client
        self._clients: dict[str, CommandClient] = {}
        self._closed = False
        self._runs: dict[str, _Run] = {}
        self._ids = itertools.count(1)
        self._source = f"{source}:seq:{time.time_ns()}"

    def running(self, name: str) -> bool:
        return name in self._runs

    def start(self, name: str, sequence: Sequence[T]) -> Future[T]:
        """Run ``sequence`` under ``name`` (on the loop thread); its outcome, or its exception, in
        the future. Refused (RuntimeError) while one of that name still runs."""
        if name in self._runs:
            sequence.close()
            raise RuntimeError(f"sequence {name} is already running")
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()
        if self._closed:
            try:
                future.set_result(drive(sequence, self._client))
            except Exception as exc:
                future.set_exception(exc)
            return future
        run = _Run(name, sequence, future)
        self._runs[name] = run
        self._resume(run, None)
        return future

    def wake(self, name: str) -> bool:
        """End the pause of sequence ``name`` (it resumes with True); False if not pausing. It
        resumes on the loop's next turn, after what the caller is doing (a transition under way)."""
        run = self._runs.get(name)
        wait = run.waiting if run is not None else None
        if wait is None or not wait.wakeable or wait.over:
            return False
        self._reactor.call_later(0.0, lambda: self._resume_after(wait, True))
        return True

    def close(self) -> None:
        """The loop has stopped: every sequence ends where it is (their futures say so)."""
        self._closed = True
        for run in list(self._runs.values()):
            run.sequence.close()
            self._finish(run, error=RuntimeError(f"{run.name}: the orchestrator stopped before it ended"))

    def _resume(self, run: _Run, value: Any) -> None:
        run.waiting = None
        try:
            wanted = run.sequence.send(value)
        except StopIteration as stop:
            self._finish(run, result=stop.value)
            return
        except Exception as exc:  # a refusal (the future carries it) or a bug (logged by its owner)
            self._finish(run, error=exc)
            return
        wait = run.waiting = _Wait(run, wakeable=isinstance(wanted, Pause))
        if isinstance(wanted, Pause):
            self._reactor.call_later(max(0.0, wanted.seconds), lambda: self._resume_after(wait, False))
        else:
            self._send(wait, wanted, f"{self._source}:{next(self._ids)}", tries_left=wanted.peer.retries)

    def _resume_after(self, wait: _Wait, value: Any) -> None:
        if not wait.over:
            wait.over = True
            self._resume(wait.run, value)

    def _send(self, wait: _Wait, wanted: Ask, command_id: str, tries_left: int) -> None:
        """One try of ``wanted``; on its deadline the next try (same id) or the failed answer."""
        peer = wanted.peer
        channel = self._channels[peer.name]
        deadline = time.monotonic() + peer.timeout_s

        def on_reply(reply: proto.Reply) -> None:
            self._resume_after(wait, Answer(reply.ok, reply.error or "done", reply.result if reply.ok else {}))

        def on_deadline() -> None:
            if wait.over:
                return
            if tries_left > 0:
                self._send(wait, wanted, command_id, tries_left - 1)
                return
            self._resume_after(wait, Answer(False, f"no reply from {peer.name} to {wanted.command!r} after "
                                                   f"{peer.retries + 1} attempt(s) of {peer.timeout_s:g}s", {}, False))

        def send() -> None:
            if wait.over:
                return
            try:
                channel.send(wanted.command, wanted.args, on_reply, command_id=command_id)
            except NotConnected:  # sent once connected, within the try, as CommandClient does
                if time.monotonic() + RESEND_S < deadline:
                    self._reactor.call_later(RESEND_S, send)

        send()
        self._reactor.call_later(peer.timeout_s, on_deadline)

    def _client(self, peer: str) -> CommandClient:
        if peer not in self._clients:
            self._clients[peer] = self._make_client(peer)
        return self._clients[peer]

    def _finish(self, run: _Run, result: Any = None, error: BaseException | None = None) -> None:
        if self._runs.get(run.name) is run:
            del self._runs[run.name]
        if run.future.done():
            return
        if error is not None:
            run.future.set_exception(error)
        else:
            run.future.set_result(result)


def drive(sequence: Sequence[T], client: Callable[[str], CommandClient]) -> T:
    """Run ``sequence`` to its end here, blocking: only once the loop has stopped."""
    value: Any = None
    while True:
        try:
            wanted = sequence.send(value)
        except StopIteration as stop:
            return stop.value
        if isinstance(wanted, Pause):
            time.sleep(wanted.seconds)
            value = False
            continue
        peer = wanted.peer
        try:
            reply = client(peer.name).call(wanted.command, wanted.args, timeout_s=peer.timeout_s,
                                            retries=peer.retries)
            value = Answer(reply.ok, reply.error or "done", reply.result if reply.ok else {})
        except CommandTimeout as exc:
            value = Answer(False, str(exc), {}, False)
