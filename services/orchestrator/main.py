"""``python -m services.orchestrator``: the authoritative session, its journal and its control API.

Top to bottom: open the journal and the session logs, and resume the unfinished session or begin a
new one (``session_lifecycle.py``); bind sockets; the session's state (``session_state.py``) and
what guards it: storage, the failsafe, session control, the watch on every tick, the handlers of
what it hears; subscribe to every peer's heartbeats, safety and governance events and to
supervisord's alerts; serve the control API (``handlers.py``); run the loop. Whatever waits on a
peer runs in the one sequence runner (``sequence_runner.py``), never on the loop.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

import proto
from services.orchestrator.alerts import Alerter
from services.orchestrator.callbacks import Callbacks
from services.orchestrator.components import PEERS, TRADING_PEERS, ComponentTracker
from services.orchestrator.disk_watch import MIB, DiskWatch
from services.orchestrator.event_handlers import EventHandlers
from services.orchestrator.failsafe import FailsafeSequence
from services.orchestrator.failsafe_control import FailsafeControl
from services.orchestrator.handlers import build_handlers
from services.orchestrator.health import HealthMonitor
from services.orchestrator.journal import Journal
from services.orchestrator.market_calendar import UnknownCalendar, market_schedule
from services.orchestrator.metrics import MetricsServer
from services.orchestrator.sequence_runner import Peer, SequenceRunner
from services.orchestrator.session_control import SessionControl
from services.orchestrator.session_fingerprint import fingerprint
from services.orchestrator.session_lifecycle import announce_session, begin_session
from services.orchestrator.session_logs import SessionLogs
from services.orchestrator.session_state import Session
from services.orchestrator.session_watch import SessionWatch
from services.orchestrator.snapshots import Snapshots
from services.orchestrator.storage_watch import StorageWatch
from services.orchestrator.supervision import SUPERVISOR, Supervision, tracked_supervisor
from services.runtime import ServiceRuntime, configure_logging, exit_bad_settings, load_settings_or_exit
from services.session_clock import SessionClock
from services.settings import Settings

# A reply a sequence is still waiting for after this long is given up by its channel (each try's
# own deadline, much shorter, is kept by the runner): it only bounds what a dead peer leaves behind.
CHANNEL_TIMEOUT_S = 60.0
FAILSAFE_RETRIES = 2  # each failsafe step is tried three times, ``failsafe.step_timeout_s`` each
TRADING_COMMAND_TIMEOUT_S = 0.2  # enable/disable trading: unanswered, it is sent again a second later
T = TypeVar("T")


class Orchestrator:
    def __init__(self, settings: Settings, callbacks: Callbacks) -> None:
        oset, bus = settings.orchestrator, settings.bus
        clock = SessionClock(settings.clock_mode())
        # First: a calendar it cannot find is a bad setting, refused before anything is written.
        schedule = market_schedule(oset.schedule, clock.now() if clock.started else None)  # UnknownCalendar
        self.journal = Journal(settings.paths.state_dir / oset.journal_file)
        self.logs = SessionLogs(settings.paths.log_dir, max_bytes=oset.session_log_max_bytes,
                                backups=oset.session_log_backups, budget_bytes=oset.session_log_budget_bytes,
                                storm=settings.logs)
        begun = begin_session(self.journal, self.logs, fingerprint(settings))
        self.runtime = runtime = ServiceRuntime(
            "orchestrator", settings, stats=lambda: self.snapshots.heartbeat_stats(),
            state=lambda: self.session.state, trading_enabled=lambda: self.session.trading())
        reactor = runtime.reactor
        self.session = session = Session(self.journal, self.logs, begun, clock, runtime.publisher.publish)
        missing_after_s = bus.heartbeat_interval_s * bus.missed_heartbeats
        self.components = components = ComponentTracker(PEERS + tracked_supervisor(os.environ), missing_after_s)
        alerter = Alerter(oset.failsafe)

        # -- what guards the session -------------------------------------------------------------
        asked = (*TRADING_PEERS, "safety")  # the peers the sequences ask
        self.runner = runner = SequenceRunner(
            reactor, {name: runtime.channel(name, timeout_s=CHANNEL_TIMEOUT_S) for name in asked},
            lambda peer: runtime.client(peer), "orchestrator")
        peers = {name: Peer(name, oset.command_timeout_s, oset.command_retries) for name in asked}
        fs = oset.failsafe
        sequence = FailsafeSequence(fs, Peer("engine", fs.step_timeout_s, FAILSAFE_RETRIES),
                                    Peer("exchange_manager", fs.step_timeout_s, FAILSAFE_RETRIES))
        health = HealthMonitor(oset.health)
        disk = DiskWatch({"state": settings.paths.state_dir, "log": settings.paths.log_dir},
                         int(oset.min_free_disk_mb * MIB))
        storage = StorageWatch(session, components, disk, alerter, oset.disk_check_interval_s,
                               lambda ev: self.events.raise_safety_event(ev), reactor.call_soon_threadsafe)
        failsafe = FailsafeControl(session, sequence, fs, runner, components, storage, alerter,
                                   settings.paths.log_dir / "incidents")
        self.control = control = SessionControl(
            session, oset, components=components, health=health, failsafe=failsafe, storage=storage, runner=runner,
            peers=peers, log_dir=settings.paths.log_dir, heartbeat_interval_s=bus.heartbeat_interval_s,
            resume_after_stop=settings.session.resume_after_stop, stats=lambda: self.snapshots.stats(),
            ended_at_start=begun.ended_at_start)
        trading = {name: runtime.channel(name, timeout_s=TRADING_COMMAND_TIMEOUT_S) for name in TRADING_PEERS}
        watch = SessionWatch(session, oset, components=components, health=health, control=control,
                             failsafe=failsafe, storage=storage, trading_channels=trading,
                             publisher=runtime.publisher, callbacks=callbacks, later=reactor.call_soon_threadsafe,
                             schedule=schedule)
        supervision = Supervision(self.logs, state=lambda: session.state, degrade=watch.degrade, note=session.note,
                                  alert=lambda alert: alerter.send({**alert, "session_id": session.session_id}),
                                  missing_after_s=missing_after_s,
                                  deadman_s=min(settings.engine.deadman_timeout_s,
                                                settings.exchange_manager.deadman_timeout_s))
        self.events = events = EventHandlers(session, components, watch, failsafe, supervision, callbacks,
                                             runtime.publisher)
        self.snapshots = Snapshots(session, components, runtime, events=events, supervision=supervision,
                                   failsafe=failsafe, storage=storage, alerter=alerter,
                                   degradation_window_s=oset.degradation_window_s, schedule=schedule)
        session.machine.add_callback(watch.after_transition)
        for callback in callbacks.state:
            session.machine.add_callback(callback)

        # -- what it hears -------------------------------------------------------------------------
        runtime.subscribe(PEERS, [proto.topics.HEARTBEAT_PREFIX, proto.topics.SAFETY, proto.topics.GOVERNANCE],
                          events.on_message)
        runtime.subscribe([SUPERVISOR], [proto.topics.PROCESS_ALERT, proto.topics.heartbeat(SUPERVISOR)],
                          events.on_process_alert)
        runtime.subscribe(list(PEERS), [proto.topics.PROCESS_ALERT], events.on_process_alert)  # orphaned
        if session.clock.replaying:
            runtime.subscribe(["data_router"], [proto.topics.CLOCK], events.on_clock)
        runtime.on_unauthorised(lambda event: events.on_governance("orchestrator", event))
        runtime.supervisor.on_lost(supervision.supervisor_lost)
        reactor.on_stall(missing_after_s, supervision.loop_stalled)

        # -- the control API, the loop's timers, the way out ---------------------------------------
        runtime.add_handlers(build_handlers(control, self.snapshots, lambda: runtime.commands.caller))
        session.save_counters()
        reactor.call_every(1.0, storage.retry_journal)
        reactor.call_every(1.0, self.logs.flush)  # a storm's summary once it is over
        reactor.call_every(bus.heartbeat_interval_s, watch.tick)
        # Stopping in the middle of a sequence: it ends where it is (the journal still holds a
        # failsafe's trigger and the next start goes on with it); then a stop of the whole daemon
        # ends the session, its report written with blocking calls (nothing else is left to do).
        runtime.before_close(runner.close)
        runtime.before_close(control.end_if_daemon_stops)
        self._loop_thread: int | None = None
        self.metrics: MetricsServer | None = None
        if oset.metrics_port is not None:  # scraped from its own thread: each scrape is one snapshot
            try:
                self.metrics = MetricsServer(oset.metrics_host, oset.metrics_port,
                                             lambda: self.in_loop(self.snapshots.metrics, timeout_s=2.0))
            except OSError as exc:
                runtime.close()
                raise SystemExit(
                    f"orchestrator: cannot serve metrics on {oset.metrics_host}:{oset.metrics_port}: "
                    f"{exc.strerror or exc} (set orchestrator.metrics_port, 0 for any free port)") from None
            self.snapshots.metrics_url = self.metrics.url
        announce_session(self.logs, begun)
        session.note(f"orchestrator {'restored' if begun.resumed else 'started'} in {session.state.name}")

    def in_loop(self, fn: Callable[[], T], timeout_s: float = 30.0) -> T:
        """Run ``fn`` on the loop thread and return its result (or raise its exception): the
        session is only ever touched there."""
        if not self.runtime.reactor.running or threading.get_ident() == self._loop_thread:
            return fn()
        future: Future[T] = Future()

        def call() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self.runtime.reactor.call_soon_threadsafe(call)
        return future.result(timeout=timeout_s)

    def run(self) -> None:
        self._loop_thread = threading.get_ident()
        try:
            self.runtime.run()
        finally:
            self._loop_thread = None
            if self.metrics is not None:
                self.metrics.close()
            self.journal.close()
            self.logs.close()


def main() -> None:
    settings = load_settings_or_exit("orchestrator")
    configure_logging(settings.logs)
    try:
        orchestrator = Orchestrator(settings, Callbacks())
    except UnknownCalendar as exc:  # only the orchestrator loads the calendars (with pandas)
        exit_bad_settings("orchestrator", [str(exc)])
    orchestrator.run()
