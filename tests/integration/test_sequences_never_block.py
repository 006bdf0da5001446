"""The orchestrator's loop never waits on a peer (issue 13): while a sequence (a failsafe, a close)
waits on a hung process, ``status`` answers within 50 ms (every turn of its loop; 99 % of the
round trips, the host's scheduling being in the rest) and the orchestrator's heartbeat keeps
flowing; once the process is continued the sequence completes.

A real daemon; the peer is hung with SIGSTOP (and always continued, in ``finally``). Before,
``close`` polled positions with ``time.sleep`` on the loop and ``recover`` called the safety
process synchronously: the loop answered nothing and sent no heartbeat for seconds.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import zmq

import proto
from bus import CommandClient

from .daemon import Daemon, wait_until
from .e2e import Collector

STATUS_BOUND_S = 0.050  # the bound for one `status` round trip during a sequence
HUNG_S = 3.0  # how long the peer stays stopped: several of the sequence's command timeouts
HEARTBEAT_GAP_S = 0.75  # three heartbeat intervals (0.25 s): the loop turned all along
# The event listener must not kill the stopped peer as hung meanwhile; the orchestrator's commands
# wait longer than the peer is stopped, so a close's flatten is answered once it is continued.
CONFIG = {"supervision": {"hung_restart_after_s": 30.0}, "orchestrator": {"command_timeout_s": 2.0}}
# A bound on one round trip is a bound on the host too: beside another test's daemon (two daemons,
# 14 processes on 2 cores) one call in 200 waited 80-420 ms, and once 90 ms even alone, while the
# orchestrator's loop never turned longer than 7 ms. So the bound is asserted on every turn of the
# loop (its own measure: the time in its callbacks, which is where waiting on a peer would show)
# and on the 99th percentile of the round trips; the worst round trip is printed.
pytestmark = pytest.mark.alone


@contextmanager
def stopped(d: Daemon, program: str) -> Iterator[None]:
    pid = d.pid_of(program)
    assert pid > 0, f"{program} is not running"
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def watch_status(d: Daemon, seconds: float) -> tuple[list[float], list[dict[str, Any]]]:
    """Ask ``status`` back to back for ``seconds``: each round trip's time and each answer."""
    latencies: list[float] = []
    answers: list[dict[str, Any]] = []
    client = d.client("orchestrator")
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        t0 = time.perf_counter()
        reply = client.call("status", {}, timeout_s=1.0, retries=0)
        latencies.append(time.perf_counter() - t0)
        assert reply.ok, reply.error
        answers.append(reply.result)
        time.sleep(0.01)
    return latencies, answers


def heartbeat_gaps(beats: Collector, since_ns: int, until_ns: int) -> list[float]:
    """The gaps between the orchestrator's heartbeats sent in [since, until] (sender's clock),
    including the gaps to both ends of the window."""
    sent = sorted(env.ts_ns for topic, env in beats.snapshot()
                  if topic == proto.topics.heartbeat("orchestrator") and since_ns <= env.ts_ns <= until_ns)
    edges = [since_ns, *sent, until_ns]
    return [(b - a) / 1e9 for a, b in zip(edges, edges[1:])]


class InBackground:
    """``command`` sent to the orchestrator from a thread of its own, once started (its reply
    comes later)."""

    def __init__(self, d: Daemon, command: str, **args: Any) -> None:
        self.replies: list[proto.Reply] = []
        self._d, self._command, self._args = d, command, args
        self._thread = threading.Thread(target=self._call, name=f"itest-{command}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def reply(self, timeout_s: float = 20.0) -> proto.Reply:
        self._thread.join(timeout_s)
        assert self.replies, f"no reply to {self._command}"
        return self.replies[0]

    def _call(self) -> None:
        ctx = zmq.Context()
        client = CommandClient(ctx, self._d.endpoints.cmd("orchestrator"), self._d.bus, "itest",
                               timeout_s=20.0, retries=0, service="orchestrator", security=self._d.security())
        try:
            self.replies.append(client.call(self._command, self._args))
        finally:
            client.close()
            ctx.term()


def assert_loop_free(d: Daemon, start: Callable[[], None], busy: Callable[[dict[str, Any]], bool]) -> None:
    """Run ``start`` (which begins a sequence against the hung peer), then check the loop."""
    with Collector(d, "orchestrator", []) as beats:
        start()
        t0_ns = time.time_ns()
        latencies, answers = watch_status(d, HUNG_S - 0.5)
        t1_ns = time.time_ns()
        time.sleep(HEARTBEAT_GAP_S)  # the heartbeats sent up to t1 have arrived
        gaps = heartbeat_gaps(beats, t0_ns, t1_ns)
    longest_turn = d.status()["bus"]["loop_longest_stall_s"]
    ordered = sorted(latencies)
    p99 = ordered[int(0.99 * len(ordered))]
    print(f"FIGURE status during a sequence on a hung peer: {len(latencies)} calls, median "
          f"{ordered[len(ordered) // 2] * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, max {ordered[-1] * 1000:.2f} ms; heartbeat gap max "
          f"{max(gaps):.3f}s; the orchestrator loop's longest turn {longest_turn * 1000:.1f} ms")
    assert all(busy(a) for a in answers), "the sequence ended while the peer was stopped"
    assert len(latencies) >= 50, len(latencies)
    assert p99 < STATUS_BOUND_S, f"status round trips (s), worst 5 of {len(latencies)}: {ordered[-5:]}"
    assert max(gaps) < HEARTBEAT_GAP_S, f"heartbeat gaps (s): {gaps}"
    assert longest_turn < STATUS_BOUND_S, f"the orchestrator's loop turned for {longest_turn:.3f}s (since it started)"


@pytest.mark.daemon(config=CONFIG)
def test_status_and_heartbeat_go_on_while_the_failsafe_waits_on_a_hung_exchange_manager(daemon: Daemon) -> None:
    d = daemon
    d.wait_state("live", timeout=30)
    d.wait_components_alive()
    with stopped(d, "exchange_manager"):
        def start() -> None:
            reply = d.call("orchestrator", "failsafe", reason="test: a sequence against a hung peer")
            assert reply.ok and reply.result["state"] == "failsafe", reply
        # busy: pending from the transition on (the sequence itself starts on the loop's next turn:
        # a status answered in between shows it pending, not yet running), then running
        assert_loop_free(d, start, lambda status: status["failsafe_running"] or status["failsafe_pending"] is not None)
    # continued: the sequence completes, the venue verified flat (the report says INCOMPLETE: the
    # gate's "stop new orders" step went unanswered while the exchange manager was stopped)
    wait_until(lambda: d.status()["failsafe_pending"] is None and not d.status()["failsafe_running"], 30)
    assert d.state() == "failsafe"
    log = Path(d.status()["session_logs"]["safety_events"]).read_text(encoding="utf-8")
    assert "test: a sequence against a hung peer; flat at the venue; incident report" in log, log[-3000:]


@pytest.mark.daemon(config=CONFIG)
def test_status_and_heartbeat_go_on_while_close_waits_on_a_hung_exchange_manager(daemon: Daemon) -> None:
    d = daemon
    d.wait_state("live", timeout=30)
    d.wait_components_alive()
    with stopped(d, "exchange_manager"):
        close = InBackground(d, "close", reason="test: close against a hung peer")
        # the session degrades meanwhile (the exchange manager is missing); it is not closed yet
        assert_loop_free(d, close.start, lambda status: status["state"] in ("live", "degraded"))
    # continued: the flatten is answered, the session ends, the report is written; the reply says so
    reply = close.reply()
    assert reply.ok, reply.error
    assert reply.result["state"] == "shutdown"
    assert Path(reply.result["report"]).is_file(), reply.result
    transitions = Path(d.status()["session_logs"]["live_trading"]).read_text(encoding="utf-8")
    assert "DEGRADED → SHUTDOWN (test: close against a hung peer (flatten: flat))" in transitions, transitions[-2000:]


@pytest.mark.daemon(config=CONFIG)
def test_status_and_heartbeat_go_on_while_recover_waits_on_a_hung_safety_process(daemon: Daemon) -> None:
    d = daemon
    d.wait_state("live", timeout=30)
    d.wait_components_alive()
    with stopped(d, "engine"):  # a cause that is gone once it is continued: the engine missing
        d.wait_state("degraded", timeout=10)
    d.wait_components_alive()
    with stopped(d, "safety"):
        # at once, while the safety process's last word is still fresh: recover passes its checks
        # and waits for the safety process's reset
        recover = InBackground(d, "recover")
        assert_loop_free(d, recover.start, lambda status: status["state"] == "degraded")
    reply = recover.reply()
    # Answered once the safety process is back. The checks are made again before the transition:
    # LIVE if its heartbeat came first, else refused because it has not reported meanwhile (it was
    # stopped: fail closed); then the next recover goes through.
    if not reply.ok:
        assert "the safety process has not reported" in reply.error or "missing safety" in reply.error, reply.error
        assert d.state() == "degraded"
        wait_until(lambda: d.call("orchestrator", "recover", timeout_s=5.0).ok, 10)
    assert d.state() == "live"
