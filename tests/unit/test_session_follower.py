"""services.session_follower: fail closed. A trading process trades only while the orchestrator's
last word (heartbeat, state change or snapshot) says LIVE/DEGRADED and is younger than the dead-man
timeout, and not after it was told to disable trading.

A real ServiceRuntime (its reactor in a thread) follows a stand-in orchestrator: a Publisher bound
on the orchestrator's PUB endpoint, and for the snapshot a CommandServer on its command endpoint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zmq

import proto
from bus import BusSettings, CommandClient, CommandServer, Curve, KeyStore, Publisher, Reactor, make_socket
from proto import OrchestratorState as S
from services.runtime import ServiceRuntime
from services.parent_watch import ParentWatch
from services.session_follower import SessionFollower, trading_handlers
from services.settings import Settings
from unit_support import never, reactor_thread, wait_until
from proto.summaries import EngineSummary


@dataclass
class Rig:
    runtime: ServiceRuntime
    follower: SessionFollower
    orchestrator: Publisher
    pub_sock: zmq.Socket
    ctx: zmq.Context
    deadman_timeout_s: float
    clients: list[CommandClient]
    safety: Publisher | None = None

    def safety_event(self, severity: proto.Severity, ts_ns: int | None = None) -> None:
        assert self.safety is not None
        event = proto.SafetyEvent(event_type=proto.SafetyEventType.DATA_ANOMALY, severity=severity, symbol="BTC-USD",
                                  message="a 30 % jump")
        if ts_ns is None:
            self.safety.publish(proto.topics.SAFETY, event)
        else:  # an event published long ago (as a stalled follower reads it)
            seq = self.safety._seqs[proto.topics.SAFETY] = self.safety._seqs.get(proto.topics.SAFETY, 0) + 1
            self.safety._sock.send_multipart([proto.topics.SAFETY.encode(),
                                              proto.encode("safety", self.safety.epoch, seq, ts_ns, event)])

    def heartbeat(self, state: S | None) -> None:
        self.orchestrator.publish(proto.topics.heartbeat("orchestrator"),
                                  proto.Heartbeat(pid=1, interval_s=0.05, state=state,
                                                  trading_enabled=state in (S.LIVE, S.DEGRADED)))

    def state_changed(self, old: S, new: S) -> None:
        self.orchestrator.publish(proto.topics.STATE,
                                  proto.StateChanged(old=old, new=new, reason="test", transition_no=1))

    def heard_since(self, t0: float) -> bool:
        """The follower has heard from the orchestrator after monotonic time ``t0``."""
        age = self.follower.orchestrator_age_s()
        return age != float("inf") and time.monotonic() - age > t0

    def pump_until(self, predicate: Callable[[], bool], state: S | None = S.LIVE, timeout: float = 5.0) -> None:
        """Keep heartbeating ``state`` (every ~10 ms) until ``predicate`` holds."""
        def beat_and_check() -> bool:
            self.heartbeat(state)
            return predicate()

        wait_until(beat_and_check, timeout)

    def engine_client(self) -> CommandClient:
        client = CommandClient(self.ctx, self.runtime.endpoints.cmd("engine"), BusSettings(), "tradectl",
                               timeout_s=2.0, retries=0, service="engine",
                               security=Curve(KeyStore(self.runtime.settings.paths.keys), "tradectl"))
        self.clients.append(client)
        return client


@pytest.fixture
def make_rig(ctx: zmq.Context, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Rig]]:
    cleanups: list[Callable[[], None]] = []

    def make(deadman_timeout_s: float = 0.4, snapshot_state: S | None = None,
             parent_watch: ParentWatch | None = None, halt_on_critical: bool = False) -> Rig:
        base = tmp_path_factory.mktemp("sf")
        settings = Settings(paths={"run_dir": base / "run", "log_dir": base / "logs", "state_dir": base / "state"},
                            bus={"heartbeat_interval_s": 0.05})
        runtime = ServiceRuntime("engine", settings, stats=EngineSummary)
        started = False

        def close_runtime() -> None:
            if started:
                runtime.reactor.stop()
                thread.join(5)
                assert not thread.is_alive(), "engine runtime did not stop"
            else:
                runtime.close()

        cleanups.append(close_runtime)
        if parent_watch is not None:  # as supervisord's child (without the runtime's own reaction)
            runtime.supervisor = parent_watch
        follower = SessionFollower(runtime, deadman_timeout_s, halt_on_critical=halt_on_critical)
        runtime.add_handlers(trading_handlers(follower))
        def stand_in_publisher(name: str, context: zmq.Context) -> tuple[Curve, zmq.Socket, Publisher]:
            """A stand-in for ``name``'s PUB, with its key (the follower pins it)."""
            curve = Curve(KeyStore(settings.paths.keys), name)
            curve.start(context)
            cleanups.append(curve.stop)
            sock = make_socket(context, zmq.PUB, settings.bus)
            cleanups.append(lambda: sock.close(linger=0))
            curve.serve(sock)
            sock.bind(runtime.endpoints.pub(name))
            return curve, sock, Publisher(sock, name, time.time_ns())

        safety = None
        if halt_on_critical:  # a stand-in safety process, in a context of its own (one ZAP handler each)
            safety_ctx = zmq.Context()
            cleanups.append(lambda: safety_ctx.term())
            safety = stand_in_publisher("safety", safety_ctx)[2]
        stand_in, pub_sock, orchestrator = stand_in_publisher("orchestrator", ctx)

        if snapshot_state is not None:  # a stand-in orchestrator that answers "state"
            cmd_sock = make_socket(ctx, zmq.ROUTER, settings.bus)
            cleanups.append(lambda: cmd_sock.close(linger=0))
            stand_in.serve(cmd_sock)
            cmd_sock.bind(runtime.endpoints.cmd("orchestrator"))
            server = CommandServer(cmd_sock, "orchestrator", 1,
                                   {"state": lambda _a: {"state": snapshot_state.value}}, security=stand_in)
            reactor = Reactor()
            reactor.add_reader(cmd_sock, server.drain)
            cm = reactor_thread(reactor)
            cm.__enter__()
            cleanups.append(lambda: (cm.__exit__(None, None, None), reactor.close()))

        thread = threading.Thread(target=runtime.run, name="engine-runtime", daemon=True)
        thread.start()
        started = True
        wait_until(lambda: runtime.reactor.running)
        rig = Rig(runtime, follower, orchestrator, pub_sock, ctx, deadman_timeout_s, [], safety)
        cleanups.append(lambda: [c.close() for c in rig.clients])
        return rig

    yield make
    errors: list[BaseException] = []
    for cleanup in reversed(cleanups):
        try:
            cleanup()
        except BaseException as exc:  # run every cleanup, then report
            errors.append(exc)
    if errors:
        raise errors[0]


def test_not_allowed_before_anything_is_heard(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    assert rig.follower.trading_allowed() is False
    assert rig.follower.state is None
    assert rig.follower.summary()["session_state"] is None
    assert rig.follower.summary()["orchestrator_age_s"] is None


def test_not_allowed_while_the_session_is_not_live(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    for state in (S.STARTUP, S.READY, S.FAILSAFE, S.SHUTDOWN):
        rig.pump_until(lambda state=state: rig.follower.state == state, state=state)
        assert rig.follower.trading_allowed() is False, state


def test_allowed_after_live_heartbeats(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.pump_until(rig.follower.trading_allowed)
    assert rig.follower.state == S.LIVE
    summary = rig.follower.summary()
    assert summary["trading_allowed"] is True and summary["session_state"] == "live"
    assert summary["orchestrator_age_s"] < rig.deadman_timeout_s


def test_dead_man_switch_trips_without_heartbeats(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(deadman_timeout_s=0.3)
    rig.pump_until(rig.follower.trading_allowed)
    last_beat = time.monotonic()

    wait_until(lambda: not rig.follower.trading_allowed(), timeout=3.0)
    silent_for = time.monotonic() - last_beat

    assert silent_for >= 0.3 * 0.9
    assert silent_for < 0.3 + 1.0
    assert rig.follower.state == S.LIVE  # it still believes LIVE, but will not trade on old news
    wait_until(lambda: rig.follower.deadman_trips == 1, timeout=2.0)
    assert rig.follower.summary()["trading_allowed"] is False

    # heartbeats again: trading resumes
    rig.pump_until(rig.follower.trading_allowed)
    assert rig.follower.deadman_trips == 1


def test_disable_holds_until_enable(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(deadman_timeout_s=1.0)
    rig.pump_until(rig.follower.trading_allowed)
    done = threading.Event()
    rig.runtime.reactor.call_soon_threadsafe(lambda: (rig.follower.disable("failsafe: test"), done.set()))
    assert done.wait(2.0)
    assert rig.follower.trading_allowed() is False
    assert rig.follower.summary()["disabled_reason"] == "failsafe: test"

    # LIVE heartbeats keep arriving (and are processed) but do not lift the disable
    t0 = time.monotonic()
    rig.pump_until(lambda: rig.heard_since(t0))
    assert rig.follower.trading_allowed() is False

    done.clear()
    rig.runtime.reactor.call_soon_threadsafe(lambda: (rig.follower.enable(), done.set()))
    assert done.wait(2.0)
    rig.pump_until(rig.follower.trading_allowed)
    assert rig.follower.summary()["disabled_reason"] is None


def test_enable_and_disable_trading_commands(make_rig: Callable[..., Rig]) -> None:
    """The orchestrator's switch over the wire: disable_trading / enable_trading on the engine."""
    rig = make_rig(deadman_timeout_s=1.0)
    client = rig.engine_client()
    rig.pump_until(rig.follower.trading_allowed)

    reply = client.call("disable_trading", {"reason": "failsafe: drill"})
    assert reply.ok and reply.result == {"trading_allowed": False}
    t0 = time.monotonic()
    rig.pump_until(lambda: rig.heard_since(t0))
    assert not rig.follower.trading_allowed()

    rig.heartbeat(S.LIVE)
    reply = client.call("enable_trading", {"reason": "session is live"})
    assert reply.ok
    rig.pump_until(rig.follower.trading_allowed)


def test_enable_without_a_live_session_does_not_allow_trading(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    reply = rig.engine_client().call("enable_trading", {"reason": "premature"})
    assert reply.ok and reply.result == {"trading_allowed": False}
    assert not rig.follower.trading_allowed()


def test_state_changes_are_followed(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(deadman_timeout_s=1.0)
    rig.pump_until(rig.follower.trading_allowed)

    def after_change(old: S, new: S) -> Callable[[], bool]:
        rig.state_changed(old, new)
        return lambda: rig.follower.state == new

    wait_until(after_change(S.LIVE, S.DEGRADED), timeout=2.0)
    assert rig.follower.trading_allowed()  # DEGRADED still trades (as its mode allows)
    wait_until(after_change(S.DEGRADED, S.FAILSAFE), timeout=2.0)
    assert not rig.follower.trading_allowed()


def test_late_joiner_learns_state_from_snapshot(make_rig: Callable[..., Rig]) -> None:
    """A (re)started process asks the orchestrator for the state instead of waiting for a change."""
    rig = make_rig(deadman_timeout_s=1.0, snapshot_state=S.LIVE)
    wait_until(rig.follower.trading_allowed, timeout=3.0)  # no heartbeat was ever published
    assert rig.follower.state == S.LIVE
    # a snapshot is news like any other: without further word the dead-man switch still applies
    wait_until(lambda: not rig.follower.trading_allowed(), timeout=3.0)


def test_snapshot_of_a_non_trading_state_does_not_allow(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(snapshot_state=S.FAILSAFE)
    wait_until(lambda: rig.follower.state == S.FAILSAFE, timeout=3.0)
    assert not rig.follower.trading_allowed()


def test_state_changes_are_told_with_the_state_before(make_rig: Callable[..., Rig]) -> None:
    """``on_state``: each change once, with what was known before (None: nothing, as at a start:
    the exchange manager cancels its orders when the first word it hears is FAILSAFE)."""
    rig = make_rig(deadman_timeout_s=1.0)
    told: list[tuple[S, S | None]] = []
    rig.follower.on_state(lambda state, before: told.append((state, before)))
    rig.pump_until(lambda: rig.follower.state == S.FAILSAFE, state=S.FAILSAFE)
    rig.pump_until(lambda: rig.follower.state == S.READY, state=S.READY)
    rig.heartbeat(S.READY)
    assert told == [(S.FAILSAFE, None), (S.READY, S.FAILSAFE)]



def test_stale_message_from_an_older_orchestrator_epoch_does_not_reenable_trading(
        make_rig: Callable[..., Rig]) -> None:
    """After a restarted orchestrator (new epoch) said FAILSAFE, a delayed LIVE heartbeat from its
    previous incarnation (older epoch, which the subscriber itself counts as stale) must not be
    believed: it would re-enable trading in FAILSAFE."""
    rig = make_rig(deadman_timeout_s=1.0)
    rig.pump_until(rig.follower.trading_allowed)
    old_epoch = rig.orchestrator.epoch
    rig.orchestrator = Publisher(rig.pub_sock, "orchestrator", old_epoch + 1)  # the restarted one
    rig.pump_until(lambda: rig.follower.state == S.FAILSAFE, state=S.FAILSAFE)
    assert not rig.follower.trading_allowed()

    old_incarnation = Publisher(rig.pub_sock, "orchestrator", old_epoch)

    def stale_live_believed() -> bool:
        old_incarnation.publish(proto.topics.heartbeat("orchestrator"),
                                proto.Heartbeat(pid=1, interval_s=0.05, state=S.LIVE, trading_enabled=True))
        return rig.follower.trading_allowed()

    assert never(stale_live_believed, for_s=0.5), "a stale LIVE heartbeat from the old epoch re-enabled trading"
    # (the link works: the current incarnation is still heard)
    t0 = time.monotonic()
    rig.pump_until(lambda: rig.heard_since(t0), state=S.FAILSAFE)
    assert not rig.follower.trading_allowed()


def test_runtime_answers_status(make_rig: Callable[..., Rig]) -> None:
    import os

    rig = make_rig()
    reply = rig.engine_client().call("status")
    assert reply.ok
    assert reply.result["service"] == "engine" and reply.result["pid"] == os.getpid()
    assert reply.result["epoch"] == rig.runtime.epoch
    assert "commands" in reply.result["bus"]


def _in_loop(rig: Rig, fn: Callable[[], object]) -> None:
    done = threading.Event()
    rig.runtime.reactor.call_soon_threadsafe(lambda: (fn(), done.set()))
    assert done.wait(5.0)


def test_words_older_than_the_dead_man_timeout_do_not_count(make_rig: Callable[..., Rig]) -> None:
    """A process that resumes after a stall reads what queued up meanwhile: the state is learned,
    but an old word is no sign of a live orchestrator. The age is the publish time's."""
    rig = make_rig(deadman_timeout_s=0.4)
    epoch = rig.orchestrator.epoch + 1  # a stand-in that stamps its own publish times
    seq = [0]

    def word(state: S, age_s: float) -> None:
        seq[0] += 1
        body = proto.Heartbeat(pid=1, interval_s=0.05, state=state, trading_enabled=True)
        rig.pub_sock.send_multipart([proto.topics.heartbeat("orchestrator").encode(),
                                     proto.encode("orchestrator", epoch, seq[0], time.time_ns() - int(age_s * 1e9), body)])

    def old_live() -> bool:
        word(S.LIVE, 5.0)
        return rig.follower.state == S.LIVE

    wait_until(old_live)
    assert never(lambda: (word(S.LIVE, 5.0), rig.follower.trading_allowed())[1], for_s=0.5)
    assert rig.follower.orchestrator_age_s() >= 4.0

    def fresh_live() -> bool:
        word(S.LIVE, 0.01)
        return rig.follower.trading_allowed()

    wait_until(fresh_live)


def test_an_orphan_never_trades_again(make_rig: Callable[..., Rig]) -> None:
    """supervisord gone: trading stops for good, whatever the orchestrator says; reducing orders
    are the gate's business (it still lets them through)."""
    ppid = [4242]
    watch = ParentWatch({"SUPERVISOR_ENABLED": "1"}, getppid=lambda: ppid[0])
    rig = make_rig(deadman_timeout_s=1.0, parent_watch=watch)
    rig.pump_until(rig.follower.trading_allowed)
    ppid[0] = 1
    _in_loop(rig, watch.check)
    assert not rig.follower.trading_allowed()
    assert "supervisord (pid 4242" in rig.follower.summary()["orphaned"]
    _in_loop(rig, rig.follower.enable)
    t0 = time.monotonic()
    rig.pump_until(lambda: rig.heard_since(t0))  # LIVE heartbeats keep coming and are read
    assert not rig.follower.trading_allowed() and rig.follower.state == S.LIVE


def test_a_stall_as_long_as_the_dead_man_timeout_forgets_the_state_and_learns_it_again(
        make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(deadman_timeout_s=0.3)
    rig.pump_until(rig.follower.trading_allowed)
    openings = rig.follower.openings
    rig.runtime.reactor.call_soon_threadsafe(lambda: time.sleep(0.1))  # shorter: nothing forgotten
    rig.runtime.reactor.call_soon_threadsafe(lambda: time.sleep(0.5))  # the loop stands still
    wait_until(lambda: rig.follower.stalls == 1, timeout=3.0)
    assert rig.follower.summary()["stalls"] == 1
    rig.pump_until(rig.follower.trading_allowed)
    assert rig.follower.openings == openings + 1  # a new opening: the engine resyncs its strategies


def test_a_follower_that_has_heard_no_session_yet_sends_a_summary_its_peers_read(make_rig: Callable[..., Rig]) -> None:
    """Before the first session its session fields are None: the summary still decodes (it did
    not: every peer rejected the engine's and exchange manager's heartbeats until a session began)."""
    rig = make_rig()
    summary = EngineSummary(**rig.follower.summary())
    assert summary.orchestrator_session is None
    assert proto.summaries.checked(summary) is summary
    beat = proto.decode(proto.encode("engine", 1, 1, 1, proto.Heartbeat(pid=1, interval_s=0.1, stats=summary)))
    assert beat.body.stats == summary


def test_a_summary_of_the_wrong_type_is_named_at_the_sender_and_sent_as_none(tmp_path: Path) -> None:
    settings = Settings(paths={"run_dir": tmp_path / "run", "log_dir": tmp_path / "logs", "state_dir": tmp_path / "state"})
    runtime = ServiceRuntime("engine", settings, stats=lambda: EngineSummary(session_id=7))  # type: ignore[arg-type]
    try:
        for _ in range(3):
            status = proto.check_result(proto.spec_of("engine", "status"), runtime.process_status())
            assert status.stats is None
        assert status.summary_errors == 3 and "session_id" in status.summary_error, status
    finally:
        runtime.close()


def _hears_safety(rig: Rig) -> bool:
    """A warning from the stand-in safety process has reached the follower's subscription."""
    rig.safety_event(proto.Severity.WARNING)
    return any("safety" in sub.peers for _name, sub in rig.runtime._subscribers)


def test_a_critical_safety_event_stops_trading_at_once_until_the_orchestrator_acts(
        make_rig: Callable[..., Rig]) -> None:
    """The orchestrator answers it with FAILSAFE (two journal commits later); the follower stops on
    the event itself. A warning does not stop it; FAILSAFE clears the halt (the orchestrator rules)."""
    rig = make_rig(halt_on_critical=True, deadman_timeout_s=1.0)
    rig.pump_until(lambda: rig.follower.trading_allowed() and _hears_safety(rig))
    assert rig.follower.trading_allowed() and rig.follower.summary()["halts"] == 0  # warnings do not halt
    rig.safety_event(proto.Severity.CRITICAL)
    rig.pump_until(lambda: not rig.follower.trading_allowed())
    assert rig.follower.summary()["halted"].startswith("critical safety event (data_anomaly BTC-USD)")
    assert never(lambda: rig.heartbeat(S.LIVE) or rig.follower.trading_allowed(), 0.3)  # LIVE does not lift it
    rig.state_changed(S.LIVE, S.FAILSAFE)
    wait_until(lambda: rig.follower.state == S.FAILSAFE and rig.follower.summary()["halted"] is None)
    assert not rig.follower.trading_allowed()


def test_a_halt_the_orchestrator_does_not_follow_lasts_a_dead_man_timeout(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(halt_on_critical=True, deadman_timeout_s=0.5)
    rig.pump_until(lambda: rig.follower.trading_allowed() and _hears_safety(rig))
    rig.safety_event(proto.Severity.CRITICAL)
    rig.pump_until(lambda: not rig.follower.trading_allowed())
    halted_at = time.monotonic()
    rig.pump_until(rig.follower.trading_allowed)  # the orchestrator kept saying LIVE: its call
    assert time.monotonic() - halted_at >= 0.5 - 0.05


def test_an_old_critical_event_read_late_does_not_halt(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(halt_on_critical=True, deadman_timeout_s=0.5)
    rig.pump_until(lambda: rig.follower.trading_allowed() and _hears_safety(rig))
    old = time.time_ns() - 2_000_000_000
    assert never(lambda: rig.safety_event(proto.Severity.CRITICAL, ts_ns=old) or rig.heartbeat(S.LIVE)
                 or not rig.follower.trading_allowed(), 0.3)
    assert rig.follower.summary()["halts"] == 0
