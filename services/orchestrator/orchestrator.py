"""``LiveTradingOrchestrator``: the authoritative session, its journal, and its control API.

The object owns one event loop (its own thread after ``start()``, or the caller's thread in
``run()``). Everything that changes the session runs on that loop; the public methods may be
called from any thread and hand their work to the loop. The other processes are reached through
the bus: the orchestrator hears their heartbeats and commands them over their command sockets.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import proto
from bus import CommandClient, CommandTimeout
from bus.endpoints import VENUE_NAMES
from proto import OrchestratorState as S
from services.orchestrator.alerts import Alerter
from services.orchestrator.components import ComponentTracker
from services.orchestrator.disk_watch import MIB, DiskWatch
from services.orchestrator.end_of_day import flatten_for_close, write_session_end
from services.orchestrator.handlers import build_handlers
from services.orchestrator.failsafe import FailsafeSequence, run_step
from services.orchestrator.failsafe_runner import FailsafeRunner
from services.orchestrator.health import Assessment, HealthMonitor, publish_health
from services.orchestrator.incident import IncidentReport
from services.orchestrator.journal import Journal, JournalUnavailable, SessionCounters, SessionJournal
from services.orchestrator.market_calendar import market_schedule
from services.orchestrator.metrics import MetricsServer
from services.orchestrator.recovery_checks import safety_holding
from services.orchestrator.session_counters import engine_decisions, trading_counters
from services.orchestrator.session_fingerprint import fingerprint
from services.orchestrator.session_lifecycle import announce_session, begin_session, stop_verdict
from services.orchestrator.session_logs import SessionLogs
from services.orchestrator.state_machine import IllegalTransition, StateCallback, StateMachine, Transition
from services.orchestrator.supervision import Supervision, tracked_supervisor
from services.runtime import ServiceRuntime
from services.session_clock import SessionClock
from services.settings import Settings, load_settings

log = logging.getLogger("orchestrator")

PEERS = ("exchange_manager", "engine", "data_router", "safety")
FAILSAFE_JOIN_S = 3.0
SUPERVISOR = "supervisor"  # the source name of supervisord's event listener (deploy/event_listener.py)
TRADING_PEERS = ("engine", "exchange_manager")
T = TypeVar("T")


class Refused(Exception):
    """A control request that the session's current state does not allow; the reason says why."""


class LiveTradingOrchestrator:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self._state_callbacks: list[StateCallback] = []
        self._connector_callbacks: list[Callable[[proto.ConnectorHealthEvent], None]] = []
        self._health_callbacks: list[Callable[[proto.Message], None]] = []
        self._safety_callbacks: list[Callable[[proto.SafetyEvent], None]] = []
        self._thread: threading.Thread | None = None
        self._loop_thread: int | None = None
        self._runtime: ServiceRuntime | None = None
        self._machine: StateMachine | None = None
        self._timeline: deque[dict[str, Any]] = deque(maxlen=200)
        self._safety_events = 0
        self._safety_by_type: dict[tuple[str, str], int] = {}
        self._metrics: MetricsServer | None = None
        self._process_alerts: dict[str, int] = {}
        self._last_trading_command: dict[str, float] = {}
        self._disk_problems: list[str] = []
        self._last_disk_check = 0.0
        self._journal_alerted = False
        self._holdings_since: float | None = None
        # Market time: the degradation window, the automatic recovery and the schedule read it.
        self._clock = SessionClock(self.settings.clock_mode())
        self._schedule = market_schedule(self.settings.orchestrator.schedule,  # raises UnknownCalendar
                                         self._market_time())
        self._flat_verified_at: float | None = None  # time.monotonic() of the latest flat verify

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the sockets and run the loop in a background thread; returns once serving."""
        if self.is_running():
            return
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            try:
                self._build()
            except BaseException as exc:  # hand start-up failures to the caller of start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._serve()

        self._thread = threading.Thread(target=serve, name="orchestrator-loop", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]

    def run(self) -> None:
        """Serve in the calling thread until ``stop()`` or SIGTERM."""
        self._build()
        self._serve()

    def stop(self) -> None:
        """Stop serving. The session state is left as journalled: a restarted orchestrator
        resumes it. (To end the session itself, use ``shutdown()``.)"""
        if self._runtime is not None:
            self._runtime.reactor.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
            self._thread = None

    def is_running(self) -> bool:
        return self._runtime is not None and self._runtime.reactor.running

    def __enter__(self) -> "LiveTradingOrchestrator":
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- the public API (any thread) -------------------------------------------------------------

    def get_state(self) -> S:
        return S.STARTUP if self._machine is None else self._machine.state

    @property
    def session_id(self) -> str:
        return self._counters.session_id

    def get_stats(self) -> dict[str, Any]:
        return self._in_loop(self._stats)

    def get_status(self) -> dict[str, Any]:
        return self._in_loop(self._status)

    def get_connector_status(self) -> dict[str, Any]:
        return self._in_loop(lambda: dict(self._components.components["exchange_manager"].stats.get("connectors", {})))

    def recover_from_degraded(self) -> bool:
        """DEGRADED → LIVE under the conditions of ``recover``; False (and the reason logged) if not."""
        try:
            self._in_loop(self.recover)
        except Refused as exc:
            log.warning("recover refused: %s", exc)
            return False
        return True

    def register_state_change_callback(self, callback: StateCallback) -> None:
        """``callback(old, new, reason)`` after each journalled transition, on the loop thread."""
        self._state_callbacks.append(callback)
        if self._machine is not None:
            self._machine.add_callback(callback)

    def register_connector_callback(self, callback: Callable[[proto.ConnectorHealthEvent], None]) -> None:
        self._connector_callbacks.append(callback)

    def register_health_callback(self, callback: Callable[[proto.Message], None]) -> None:
        self._health_callbacks.append(callback)

    def register_safety_callback(self, callback: Callable[[proto.SafetyEvent], None]) -> None:
        self._safety_callbacks.append(callback)

    register_safety_event_callback = register_safety_callback

    # -- session control (loop thread; the command handlers call these) --------------------------

    def open_market(self, reason: str = "market open") -> None:
        self._require(S.READY, "open")
        missing = self._components.not_alive()
        if missing:
            raise Refused(f"open: not healthy: missing {', '.join(missing)}")
        self._require_reconciled("open")
        self._require_nothing_foreign("open")
        self._require_storage("open")
        self._transition(S.LIVE, reason)

    def _reconciled(self) -> bool:
        """The exchange manager's book agrees with its venues (its latest reconciliation passed)."""
        stats = self._components.components["exchange_manager"].stats
        # ... and counts this session's orders and PnL (it took up the session: session_ledger.py)
        return bool(stats.get("reconciled")) and stats.get("session_id") == self._counters.session_id

    def _require_reconciled(self, action: str) -> None:
        if not self._reconciled():
            raise Refused(f"{action}: the exchange manager has not reconciled with its venues yet")

    def _require_nothing_foreign(self, action: str) -> None:
        """The venue holds nothing this system did not send (an order placed behind its back)."""
        unknown = self._components.components["exchange_manager"].stats.get("venue_unknown", {})
        if unknown.get("orders") or unknown.get("positions"):
            raise Refused(f"{action}: the venue holds what this system did not send: {unknown.get('orders', 0)} "
                          f"order(s), positions {unknown.get('positions', {})}; cancel and flatten first")

    def _require_storage(self, action: str) -> None:
        """A step toward risk needs durable journals: ours, the book of record's, and disk space."""
        problems = self._storage_problems(retry=True)
        if problems:
            raise Refused(f"{action}: {'; '.join(problems)}")

    def _storage_problems(self, retry: bool = False) -> list[str]:
        problems = list(self._disk_problems)
        if self._session_journal.held and not (retry and self._session_journal.retry()):
            problems.append(f"the session journal cannot be written ({self._session_journal.error})")
        book = self._components.components["exchange_manager"].stats.get("journal", {})
        if book.get("error"):
            problems.append(f"the exchange manager's book of record cannot be written ({book['error']})")
        return problems

    def _venue_holdings(self) -> str | None:
        """What the book of record (reconciled with the venues) still holds, or None when flat. A
        heartbeat older than the failsafe's latest "venue verified flat" says nothing newer than it."""
        em = self._components.components["exchange_manager"]
        if self._flat_verified_at is not None and (em.stats_at or 0.0) <= self._flat_verified_at:
            return None
        stats = em.stats
        positions = {s: q for s, q in stats.get("positions", {}).items() if abs(q) > 1e-9}
        open_orders = stats.get("open_orders", 0)
        unknown = stats.get("venue_unknown", {})
        foreign = (f" (not sent by this system: {unknown.get('orders', 0)} order(s), positions "
                   f"{unknown.get('positions', {})})" if unknown.get("orders") or unknown.get("positions") else "")
        if not positions and not open_orders and not foreign:
            return None
        return f"positions {positions} and {open_orders} open order(s){foreign}"

    def close_market(self, reason: str = "market close") -> dict[str, Any]:
        """Market close: flatten (if set), end the session, write the end-of-day report, archive
        the session's logs. Returns where the report and archive are."""
        state = self.get_state()
        if not self._machine or not self._machine.can(S.SHUTDOWN):
            raise Refused(f"session is {state.value}; nothing to close")
        flatten = "not requested"
        # In FAILSAFE a close flattens whatever the sequence has not got flat yet (its own rounds
        # and this flatten are both sized from what is still working: together they never reverse).
        if state in (S.LIVE, S.DEGRADED, S.FAILSAFE) and (self.settings.orchestrator.close_flatten
                                                           or state == S.FAILSAFE):
            flatten = flatten_for_close(self._peers["engine"], self._peers["exchange_manager"],
                                        self.settings.orchestrator.close_flatten_timeout_s)
        self._end_failsafe_rounds()
        self._transition(S.SHUTDOWN, f"{reason} (flatten: {flatten})")
        return self._end_of_day(f"{reason} (flatten: {flatten})")

    def _end_of_day(self, reason: str, counters: SessionCounters | None = None) -> dict[str, Any]:
        """The ended session's report and log archive (``end_of_day.py``); ``counters``: a session
        ended at start, not the current one."""
        counters = counters or self._counters
        return write_session_end(self.settings.paths.log_dir, self._logs, self._journal, counters, reason,
                                 self._stats() if counters is self._counters else {},
                                 self._peers["exchange_manager"], self._components.components["exchange_manager"])

    def shutdown(self, reason: str = "operator shutdown") -> None:
        """End the session. Never refused for a FAILSAFE sequence under way: its current round
        (cancel, flatten, verify) still finishes, no round follows, and the reason says so."""
        if self.get_state() != S.SHUTDOWN and self._end_failsafe_rounds():
            reason += f" (failsafe sequence stopped before the venue was verified flat: {self._venue_holdings() or 'book flat'})"
        self._transition_or_refuse(S.SHUTDOWN, reason, "shutdown")
        self._end_of_day(reason)

    def _end_if_daemon_stops(self) -> None:
        """On the way out: a graceful stop of the whole daemon ends the session
        (``session_lifecycle.py``); a restart of the orchestrator alone leaves it open."""
        verdict = stop_verdict(os.environ, self.settings.session.resume_after_stop)
        self._logs.live(verdict.line, event="orchestrator_stop", data={"ends_session": verdict.end})
        if verdict.end and self.get_state() != S.SHUTDOWN:
            self.shutdown(verdict.reason)

    def _end_failsafe_rounds(self) -> bool:
        """No further failsafe round (the session is ending); True if one was still going on."""
        running = self._runner.running
        self._runner.stop()
        return running

    def flatten(self, symbol: str | None) -> dict[str, Any]:
        """In FAILSAFE: a round of the failsafe sequence now (stop new orders, cancel, flatten,
        verify), whether its retries are pausing or it had finished. Otherwise: the exchange
        manager flattens (cancel, then reduce-only market orders); strategies keep running."""
        if self.get_state() == S.FAILSAFE:
            self._failsafe_again("operator flatten")
            return {"failsafe_round": True}
        step, result = run_step(None, "flatten", self._peers["exchange_manager"], "flatten", {"symbol": symbol})
        if not step.ok:
            raise Refused(f"flatten: {step.detail}")
        return {"orders": result.get("orders", [])}

    def trigger_failsafe(self, reason: str) -> None:
        state = self.get_state()
        if state == S.FAILSAFE:
            self._failsafe_again(f"failsafe again: {reason}")  # try again now: never refused
            return
        if state not in (S.LIVE, S.DEGRADED):
            raise Refused(f"session is {state.value}: nothing is trading; failsafe applies in live or degraded")
        if state == S.LIVE:
            self._transition(S.DEGRADED, f"failsafe requested: {reason}")
        self._transition(S.FAILSAFE, reason)

    def reset(self, reason: str = "operator reset") -> None:
        """FAILSAFE → READY, only once the sequence has finished and the venue holds nothing."""
        self._require(S.FAILSAFE, "reset")
        if self._counters.failsafe_pending is not None or self._runner.running:
            raise Refused("the failsafe sequence has not finished (the venue is not verified flat yet); reset once "
                          "it has (tradectl status: failsafe_pending; tradectl flatten tries again now)")
        holdings = self._venue_holdings()
        if holdings is not None:
            raise Refused(f"reset: the venue still holds {holdings}; flatten first (tradectl flatten)")
        self._require_reconciled("reset")
        self._require_storage("reset")
        self._transition(S.READY, reason)

    def recover(self, reason: str = "operator recover") -> None:
        """DEGRADED → LIVE when: in DEGRADED, every process alive, at least one connector healthy,
        no safety condition still holding (``recovery_checks.py``), and the safety process's reset
        succeeds. Otherwise refused with the first unmet condition."""
        self._require(S.DEGRADED, "recover")
        missing = self._components.not_alive()
        if missing:
            raise Refused(f"not healthy: missing {', '.join(missing)}")
        assessment = self._health.assess(self._components)
        if assessment.healthy_connectors == 0:
            raise Refused("no connector is healthy")
        holding = safety_holding(self._components.components["safety"], self.settings.bus.heartbeat_interval_s,
                                 time.monotonic())
        if holding:
            raise Refused(f"the cause is not gone: {'; '.join(holding)}")
        self._require_reconciled("recover")
        self._require_storage("recover")
        step, _ = run_step(None, "reset safety", self._safety, "reset", {"reason": reason})
        if not step.ok:
            raise Refused(f"safety reset failed: {step.detail}")
        self._transition(S.LIVE, f"recovered from degraded ({reason})")

    # -- inside the loop -------------------------------------------------------------------------

    def _build(self) -> None:
        settings = self.settings
        self._journal = Journal(settings.paths.state_dir / settings.orchestrator.journal_file)
        self._session_journal = SessionJournal(self._journal)
        self._logs = SessionLogs(settings.paths.log_dir, max_bytes=settings.orchestrator.session_log_max_bytes,
                                 backups=settings.orchestrator.session_log_backups,
                                 budget_bytes=settings.orchestrator.session_log_budget_bytes, storm=settings.logs)
        # resume the unfinished session, or begin a new one (session_lifecycle.py)
        begun = begin_session(self._journal, self._logs, fingerprint(settings))
        state, done, counters = begun.state, begun.transitions_done, begun.counters
        self._ended_at_start = begun.ended_at_start
        self._counters = counters
        self._machine = StateMachine(state, done, self._record)
        self._machine.add_callback(self._on_transition)
        for callback in self._state_callbacks:
            self._machine.add_callback(callback)
        missing_after = settings.bus.heartbeat_interval_s * settings.bus.missed_heartbeats
        self._components = ComponentTracker(PEERS + tracked_supervisor(os.environ), missing_after)
        self._runtime = ServiceRuntime(
            "orchestrator", settings,
            stats=self._heartbeat_stats, state=lambda: self.get_state(),
            trading_enabled=lambda: self.get_state() in (S.LIVE, S.DEGRADED),
        )
        self._runtime.add_handlers(build_handlers(self))
        self._runtime.subscribe(PEERS, [proto.topics.HEARTBEAT_PREFIX, proto.topics.SAFETY,
                                        proto.topics.GOVERNANCE], self._on_message)
        self._runtime.subscribe([SUPERVISOR], [proto.topics.PROCESS_ALERT, proto.topics.heartbeat(SUPERVISOR)],
                                self._on_process_alert)
        if self._clock.replaying:
            self._runtime.subscribe(["data_router"], [proto.topics.CLOCK], self._on_clock)
        oset = settings.orchestrator
        self._peers: dict[str, CommandClient] = {
            name: self._runtime.client(name, timeout_s=oset.command_timeout_s, retries=oset.command_retries)
            for name in TRADING_PEERS
        }
        self._safety = self._runtime.client("safety", timeout_s=oset.command_timeout_s, retries=oset.command_retries)
        fs = oset.failsafe
        failsafe_clients = {name: self._runtime.client(name, timeout_s=fs.step_timeout_s, retries=2)
                            for name in TRADING_PEERS}
        self._runner = FailsafeRunner(
            FailsafeSequence(fs, failsafe_clients["engine"], failsafe_clients["exchange_manager"]), fs, self._post)
        self._runtime.before_close(self._end_if_daemon_stops)
        # Stopping in the middle of the sequence: give its round a moment before its sockets close;
        # the journal still holds the trigger and the next start goes on with it.
        self._runtime.before_close(self._stop_failsafe_for_exit)
        self._alerter = Alerter(fs)
        self._save_counters()
        self._disk = DiskWatch({"state": settings.paths.state_dir, "log": settings.paths.log_dir},
                               int(oset.min_free_disk_mb * MIB))
        self._runtime.reactor.call_every(1.0, self._retry_journal)
        self._runtime.reactor.call_every(1.0, self._logs.flush)  # a storm's summary once it is over
        self._watch_supervision()
        self._health = HealthMonitor(oset.health)
        self._last_assessment = 0.0
        self._healthy_since: float | None = None
        self._runtime.reactor.call_every(settings.bus.heartbeat_interval_s, self._tick)
        if oset.metrics_port is not None:
            try:
                self._metrics = MetricsServer(oset.metrics_host, oset.metrics_port,
                                              lambda: self._in_loop(self._metrics_snapshot, timeout_s=2.0))
            except OSError as exc:
                self._runtime.close()
                raise SystemExit(f"orchestrator: cannot serve metrics on {oset.metrics_host}:{oset.metrics_port}: "
                                 f"{exc.strerror or exc} (set orchestrator.metrics_port, 0 for any free port)") from None
        announce_session(self._logs, begun)
        self._note(f"orchestrator {'restored' if begun.resumed else 'started'} in {state.name}")

    def _report_ended_at_start(self) -> None:
        """The end-of-day report of a session ended at start, once the exchange manager is up."""
        if self._ended_at_start is None or not self._components.alive("exchange_manager"):
            return
        counters, reason = self._ended_at_start
        self._ended_at_start = None
        self._end_of_day(reason, counters)

    def _serve(self) -> None:
        assert self._runtime is not None
        self._loop_thread = threading.get_ident()
        try:
            self._runtime.run()
        finally:
            self._loop_thread = None
            if self._metrics is not None:
                self._metrics.close()
            self._journal.close()
            self._logs.close()

    def _in_loop(self, fn: Callable[[], T], timeout_s: float = 30.0) -> T:
        """Run ``fn`` on the loop thread and return its result (or raise its exception)."""
        if self._runtime is None or not self._runtime.reactor.running or threading.get_ident() == self._loop_thread:
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self._runtime.reactor.call_soon_threadsafe(call)
        return future.result(timeout=timeout_s)

    def _require(self, state: S, action: str) -> None:
        if self.get_state() != state:
            raise Refused(f"session is {self.get_state().value}; {action} needs {state.value}")

    def _transition_or_refuse(self, new: S, reason: str, action: str) -> None:
        try:
            self._transition(new, reason)
        except IllegalTransition as exc:
            raise Refused(f"{action}: {exc}") from None

    def _transition(self, new: S, reason: str) -> Transition:
        assert self._machine is not None
        return self._machine.transition(new, reason)

    def _record(self, transition: Transition) -> None:
        """Journal the transition with the counters it changes, fsynced, before it takes effect.
        A transition toward safety takes effect even when the disk refuses it (written later)."""
        counters = dataclasses.replace(self._counters, degradations=list(self._counters.degradations))
        if transition.new == S.FAILSAFE:
            counters.failsafe_activations += 1
            counters.failsafe_pending = transition.reason
        elif transition.new == S.DEGRADED:
            counters.degradations.append(self._clock.now())
        elif transition.new == S.READY:
            if transition.old == S.FAILSAFE:
                counters.degradations = []  # an operator reset starts the count afresh
        elif transition.new == S.LIVE:
            counters.auto_open_pending = False
        try:
            written = self._session_journal.record(transition, counters)
        except JournalUnavailable as exc:
            raise Refused(f"{transition.old.value} → {transition.new.value} refused: {exc}") from None
        self._counters = counters
        if not written:
            self._journal_failed()

    def _save_counters(self) -> None:
        if not self._session_journal.save_counters(self._counters):
            self._journal_failed()

    def _journal_failed(self) -> None:
        """The journal cannot be written: a critical STATE_DISK event (→ FAILSAFE, whose own
        transitions are held in memory too) and an alert, once per episode; writes are retried."""
        if self._journal_alerted:
            return
        self._journal_alerted = True
        error = self._session_journal.error
        self._alerter.send({"event": "state_disk", "session_id": self._counters.session_id,
                            "detail": f"the session journal cannot be written: {error}"})
        # On the next loop turn: this may run inside a transition that is still being made.
        self._post(lambda: self._raise_disk_event(proto.Severity.CRITICAL,
                                                  f"the session journal cannot be written: {error}"))

    def _retry_journal(self) -> None:
        held = self._session_journal.held
        if held and self._session_journal.retry():
            self._journal_alerted = False
            self._logs.safety(f"Session journal written again ({held} held write(s) now on disk)", logging.WARNING,
                              event="state_disk_recovered", data={"held": held})

    def _check_disk(self) -> None:
        """Free space on the state and log directories: low → a STATE_DISK warning (DEGRADED)."""
        interval = self.settings.orchestrator.disk_check_interval_s
        if time.monotonic() - self._last_disk_check < interval:
            return
        self._last_disk_check = time.monotonic()
        problems, before = self._disk.problems(), self._disk_problems
        self._disk_problems = problems
        if problems and not before:
            self._alerter.send({"event": "disk_space", "session_id": self._counters.session_id, "detail": problems})
            self._raise_disk_event(proto.Severity.WARNING, "; ".join(problems))
        elif before and not problems:
            self._logs.safety("Disk space back above orchestrator.min_free_disk_mb", logging.WARNING,
                              event="disk_space_recovered")

    def _raise_disk_event(self, severity: proto.Severity, message: str) -> None:
        """Published on ``safety`` like any detector's event, and handled here as one."""
        assert self._runtime is not None
        ev = proto.SafetyEvent(event_type=proto.SafetyEventType.STATE_DISK, severity=severity, symbol="*",
                               message=message)
        self._runtime.publisher.publish(proto.topics.SAFETY, ev)
        self._on_safety_event(ev)

    def _post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop's next turn (from any thread); dropped once the loop has stopped."""
        if self._runtime is not None and self._runtime.reactor.running:
            self._runtime.reactor.call_soon_threadsafe(fn)

    def _on_transition(self, old: S, new: S, reason: str) -> None:
        assert self._runtime is not None and self._machine is not None
        self._runtime.publisher.publish(proto.topics.STATE, proto.StateChanged(
            old=old, new=new, reason=reason, transition_no=self._machine.transitions_done,
            session_id=self._counters.session_id))
        self._logs.live(f"State transition: {old.name} → {new.name} ({reason})", event="state_transition",
                        data={"old": old.value, "new": new.value, "reason": reason})
        self._note(f"{old.name} → {new.name}: {reason}")
        # Follow-up work runs on the next loop turn, after every callback of this transition.
        if new == S.FAILSAFE:
            self._runtime.reactor.call_soon_threadsafe(self._run_failsafe)
        elif new == S.DEGRADED:
            self._runtime.reactor.call_soon_threadsafe(self._check_escalation)
        else:
            self._runtime.reactor.call_soon_threadsafe(lambda: self._command_trading(force=True))

    def _check_escalation(self) -> None:
        if self.get_state() != S.DEGRADED:
            return
        oset = self.settings.orchestrator
        horizon = self._clock.now() - oset.degradation_window_s
        recent = [ts for ts in self._counters.degradations if ts >= horizon]
        if len(recent) >= oset.failsafe_degradation_count:
            self._transition(S.FAILSAFE, f"{len(recent)} degradations within {oset.degradation_window_s:g}s "
                                         f"(failsafe_degradation_count={oset.failsafe_degradation_count})")

    def _run_failsafe(self) -> None:
        """Start the FAILSAFE sequence (``failsafe.py``, run by ``failsafe_runner.py`` beside the
        loop) for the journalled trigger. The trigger stays journalled as pending until the venue
        is verified flat, so an orchestrator killed in the middle goes on with it after its restart."""
        trigger = self._counters.failsafe_pending
        if trigger is None or self._runner.running:
            return
        report = IncidentReport(self._counters.session_id, trigger, time.time(), timeline=list(self._timeline)[-50:],
                                storage=self._storage_problems())
        self._runner.start(report, self._failsafe_round)

    def _failsafe_again(self, reason: str) -> None:
        """A round now: wake the running sequence, or begin a new one (a new incident report)."""
        self._note(f"failsafe round requested: {reason}")
        if self._runner.running:
            self._runner.wake()
            return
        self._counters.failsafe_pending = reason
        self._save_counters()
        self._run_failsafe()

    def _failsafe_round(self, report: IncidentReport, flat: bool, round_no: int, last: bool) -> None:
        """A round of the sequence has ended (on the loop): write the incident report, log, alert
        on the first round and at the end; clear the pending trigger once flat."""
        if last:
            report.finished_at = time.time()
        try:
            json_path, md_path = report.write(self.settings.paths.log_dir / "incidents")
        except OSError as exc:  # a full log disk: the alert below still carries the outcome
            json_path = md_path = f"not written: {exc}"
        if flat:
            self._flat_verified_at = time.monotonic()
        if flat or (last and self.get_state() != S.FAILSAFE):
            self._counters.failsafe_pending = None
            self._save_counters()
        steps = report.steps[-1].detail if report.steps else ""
        if round_no > 1 and not last:
            self._logs.safety(f"FAILSAFE retry {round_no - 1}: the venue is still not flat ({steps}); trying again",
                              logging.ERROR, event="failsafe_retry", data={"round": round_no, "detail": steps})
            return
        outcome = ("flat at the venue" if flat else "NOT VERIFIED FLAT, retrying until it is" if not last
                   else f"NOT VERIFIED FLAT, stopped: the session is {self.get_state().value}")
        summary = (f"FAILSAFE sequence {'completed' if report.ok else 'INCOMPLETE'}: {report.trigger}; {outcome}"
                   f"{f' after {round_no - 1} retry round(s)' if round_no > 1 else ''}; incident report {json_path}")
        self._logs.safety(summary, logging.INFO if report.ok else logging.ERROR, event="failsafe_sequence",
                          data={"trigger": report.trigger, "ok": report.ok, "flat": flat, "round": round_no,
                                "retrying": not last, "incident_report": str(json_path)})
        self._note(summary)
        self._alerter.send({"event": "failsafe", "session_id": self._counters.session_id, "trigger": report.trigger,
                            "flat": flat, "ok": report.ok, "retrying": not last, "retry_rounds": round_no - 1,
                            "incident_report": str(json_path), "incident_report_md": str(md_path),
                            "steps": [{"name": st.name, "ok": st.ok, "ms": round(st.duration_ms, 3)}
                                      for st in report.steps[-20:]]})

    def _stop_failsafe_for_exit(self) -> None:
        self._runner.stop()
        self._runner.join(FAILSAFE_JOIN_S)

    def _tick(self) -> None:
        self._check_disk()
        self._report_ended_at_start()
        state = self.get_state()
        risk_ok = not self._session_journal.held and not self._disk_problems
        if state == S.STARTUP and not self._components.not_alive() and risk_ok:
            self._automatic(S.READY, "all processes heard from")
        elif state == S.READY and self._counters.auto_open_pending:
            if not self.settings.orchestrator.auto_open:
                self._counters.auto_open_pending = False
                self._save_counters()
            elif self._market_open() and self._reconciled() and risk_ok:
                self._automatic(S.LIVE, "market open (auto_open at start-up)")
        elif state in (S.LIVE, S.DEGRADED) and not self._market_open():
            self.close_market("scheduled market close")
        elif state == S.FAILSAFE:
            self._watch_failsafe()
        elif state == S.LIVE and self._components.missing():
            # The heartbeat watchdog runs on every tick, not only at the (slower) assessment.
            self._degrade(f"process missing: {', '.join(self._components.missing())}")
        elif state == S.DEGRADED:
            gone = self._components.gone_for_good(self.settings.orchestrator.health.missing_escalate_after_s)
            if gone:
                self._escalate(f"process missing for good: {', '.join(gone)}")
        self._command_trading()
        interval = (self.settings.orchestrator.health.degraded_check_interval_s if self.get_state() == S.DEGRADED
                    else self.settings.orchestrator.health_check_interval_s)
        if time.monotonic() - self._last_assessment >= interval:
            self._assess()

    def _automatic(self, new: S, reason: str) -> None:
        """A transition toward risk the loop makes by itself; refused (a journal write failing at
        that moment) it is simply tried again on a later tick."""
        try:
            self._transition(new, reason)
        except Refused as exc:
            log.warning("%s not yet: %s", new.value, exc)

    def _watch_failsafe(self) -> None:
        """In FAILSAFE the venue must end flat: a sequence pending after a restart goes on, and the
        book of record holding anything again (an order placed behind our back, a late fill) for
        longer than ``holdings_grace_s`` (heartbeats lag a fresh flat by a moment) starts a round."""
        if self._runner.running:
            self._holdings_since = None
            return
        if self._counters.failsafe_pending is not None:
            self._run_failsafe()  # resumed after a restart in the middle of the sequence
            return
        holdings = self._venue_holdings()
        if holdings is None:
            self._holdings_since = None
            return
        now = time.monotonic()
        if self._holdings_since is None:
            self._holdings_since = now
        elif now - self._holdings_since >= self.settings.orchestrator.failsafe.holdings_grace_s:
            self._holdings_since = None
            self._failsafe_again(f"in FAILSAFE the venue holds {holdings}")

    def _assess(self) -> None:
        """The overall health assessment: publish and log health events, then react."""
        self._last_assessment = time.monotonic()
        assessment = self._health.assess(self._components)
        for ev in assessment.events:
            self._publish_health(ev)
        state = self.get_state()
        if state not in (S.LIVE, S.DEGRADED):
            return
        if assessment.critical:
            self._escalate(assessment.critical)
            return
        if assessment.problems:
            self._healthy_since = None
            if state == S.LIVE:
                self._degrade("; ".join(assessment.problems))
            return
        self._maybe_auto_recover(assessment)

    def _maybe_auto_recover(self, assessment: Assessment) -> None:
        now = self._clock.now()
        if self.get_state() != S.DEGRADED:
            self._healthy_since = None
            return
        if self._healthy_since is None:
            self._healthy_since = now
        settle = self.settings.orchestrator.health.auto_recover_after_s
        if settle is not None and now - self._healthy_since >= settle:
            try:
                self.recover(f"healthy for {settle:g}s (auto_recover_after_s)")
            except Refused as exc:
                log.info("automatic recovery not yet: %s", exc)
                self._healthy_since = None

    def _degrade(self, reason: str) -> None:
        self._healthy_since = None
        if self.get_state() == S.LIVE:
            self._transition(S.DEGRADED, reason)

    def _escalate(self, reason: str) -> None:
        """A critical condition: LIVE → DEGRADED → FAILSAFE at once."""
        state = self.get_state()
        if state == S.LIVE:
            self._transition(S.DEGRADED, f"critical: {reason}")
        if self.get_state() == S.DEGRADED:
            self._transition(S.FAILSAFE, reason)

    def _publish_health(self, ev: proto.Message) -> None:
        assert self._runtime is not None
        publish_health(ev, self._runtime.publisher, self._logs)
        if isinstance(ev, proto.ConnectorHealthEvent):
            self._fan_out(self._connector_callbacks, ev)
        self._fan_out(self._health_callbacks, ev)

    def _market_open(self) -> bool:
        return self._schedule.is_open(self._market_time())

    def _market_time(self) -> float | None:
        """The session time the schedule reads; None in a replay before its first data."""
        return self._clock.now() if self._clock.started else None

    def _command_trading(self, force: bool = False) -> None:
        """Bring each trading process's flag to what the session wants; repeat (at most once a
        second) until its heartbeat agrees, so a restarted process is told again."""
        wanted = self.get_state() in (S.LIVE, S.DEGRADED)
        now = time.monotonic()
        for service in TRADING_PEERS:
            comp = self._components.components[service]
            if not self._components.alive(service) or (comp.trading_enabled == wanted and not force):
                continue
            if not force and now - self._last_trading_command.get(service, 0.0) < 1.0:
                continue
            self._last_trading_command[service] = now
            command = "enable_trading" if wanted else "disable_trading"
            try:
                self._peers[service].call(command, {"reason": f"session is {self.get_state().value}"},
                                          timeout_s=0.2, retries=0)
            except CommandTimeout:
                log.warning("%s did not answer %s; will repeat", service, command)

    def _on_message(self, _topic: str, env: proto.Envelope) -> None:
        self._components.heard(env)
        body = env.body
        if isinstance(body, proto.SafetyEvent):
            self._on_safety_event(body)
        elif isinstance(body, proto.GovernanceEvent):
            detail = f" {body.detail}" if body.detail else ""
            self._logs.governance(f"{env.source}: {body.kind} {body.symbol}: {body.reason}{detail}".replace("  ", " "),
                                  logging.WARNING if body.kind.startswith("order_refused") else logging.INFO,
                                  event="governance",
                                  data={"source": env.source, **proto.to_builtins(body)})

    def _watch_supervision(self) -> None:
        """supervisord gone, a peer orphaned or hung, this loop stalled (``supervision.py``)."""
        runtime, settings = self._runtime, self.settings
        assert runtime is not None
        self._supervision = Supervision(
            self._logs, state=self.get_state, degrade=self._degrade, note=self._note,
            alert=lambda alert: self._alerter.send({**alert, "session_id": self._counters.session_id}),
            missing_after_s=settings.bus.heartbeat_interval_s * settings.bus.missed_heartbeats,
            deadman_s=min(settings.engine.deadman_timeout_s, settings.exchange_manager.deadman_timeout_s))
        # peers' own alerts (orphaned) come from their PUB sockets
        runtime.subscribe(list(PEERS), [proto.topics.PROCESS_ALERT], self._on_process_alert)
        runtime.supervisor.on_lost(self._supervision.supervisor_lost)
        runtime.reactor.on_stall(settings.bus.heartbeat_interval_s * settings.bus.missed_heartbeats,
                                 self._supervision.loop_stalled)

    def _on_process_alert(self, _topic: str, env: proto.Envelope) -> None:
        """supervisord's word on a program (or a program's own, ``orphaned``): logged; a FATAL
        trading service fails the session safe, because nothing will restart it and trading on
        without it is trading blind; an orphaned one degrades it (``supervision.py``)."""
        self._components.heard(env)  # the listener's heartbeat: the supervisor is a component
        alert = env.body
        if isinstance(alert, proto.Heartbeat) and env.source == SUPERVISOR:
            self._supervision.listener_heartbeat(alert.stats)
        if not isinstance(alert, proto.ProcessAlert):
            return
        self._process_alerts[alert.event] = self._process_alerts.get(alert.event, 0) + 1
        level = logging.CRITICAL if alert.event in ("fatal", "hung", "orphaned") else logging.WARNING
        detail = f": {alert.detail}" if alert.detail else ""
        self._logs.health(f"Process {alert.program}: {alert.event.upper()} under supervisord "
                          f"(from {alert.from_state}, pid {alert.pid}){detail}", level, event="process_alert",
                          data=proto.to_builtins(alert))
        self._note(f"supervisord: {alert.program} {alert.event}")
        self._fan_out(self._health_callbacks, alert)
        if alert.event == "orphaned":
            self._supervision.peer_orphaned(alert)
        if alert.event != "fatal":
            return
        ours = self._components.mark_fatal(alert.program)  # so `open` is refused while it is down
        if self.get_state() not in (S.LIVE, S.DEGRADED):
            return
        if ours:
            self._escalate(f"{alert.program} is FATAL under supervisord: missing for good")
        elif alert.program in VENUE_NAMES:
            self._escalate(f"venue {alert.program} is FATAL under supervisord: nothing to trade with or flatten at")

    def record_command(self, name: str, accepted: bool, detail: str) -> None:
        """Every operator command, accepted or refused, goes to the governance log."""
        self._logs.governance(f"Operator command {name}: {'accepted' if accepted else 'REFUSED'}: {detail}",
                              logging.INFO if accepted else logging.WARNING, event="operator_command",
                              data={"command": name, "accepted": accepted, "detail": detail})

    def _on_clock(self, _topic: str, env: proto.Envelope) -> None:
        if isinstance(env.body, proto.SessionTime):
            self._clock.observe(env.body.ts_ns)

    def _on_safety_event(self, ev: proto.SafetyEvent) -> None:
        """Critical → FAILSAFE; any other anomaly → DEGRADED (and no automatic recovery yet)."""
        self._clock.observe(ev.ts_ns)  # the event's market time, however late the clock topic is
        self._safety_events += 1
        key = (ev.event_type.value, ev.severity.value)
        self._safety_by_type[key] = self._safety_by_type.get(key, 0) + 1
        level = logging.CRITICAL if ev.severity is proto.Severity.CRITICAL else logging.WARNING
        self._logs.safety(f"{ev.severity.value.upper()} {ev.event_type.value} {ev.symbol}: {ev.message}", level,
                          event="safety_event", data=proto.to_builtins(ev))
        self._note(f"safety {ev.severity.value} {ev.event_type.value} {ev.symbol}: {ev.message}")
        self._fan_out(self._safety_callbacks, ev)
        self._healthy_since = None
        if self.get_state() == S.FAILSAFE and ev.event_type is proto.SafetyEventType.EXECUTION_ANOMALY:
            # The venue holds or did something the book did not send: get flat again at once.
            self._failsafe_again(f"in FAILSAFE: {ev.message}")
            return
        if self.get_state() not in (S.LIVE, S.DEGRADED):
            return
        if ev.severity is proto.Severity.CRITICAL:
            self._escalate(f"critical safety event: {ev.message}")
        else:
            self._degrade(f"safety: {ev.event_type.value} {ev.symbol}: {ev.message}")

    @staticmethod
    def _fan_out(callbacks: list[Callable[[Any], None]], event: Any) -> None:
        for callback in list(callbacks):
            try:
                callback(event)
            except Exception:
                log.exception("callback failed for %s", type(event).__name__)

    def _note(self, what: str) -> None:
        self._timeline.append({"ts": time.time(), "what": what})

    def _stats(self) -> dict[str, Any]:
        comps = self._components.components
        engine = comps["engine"].stats
        horizon = self._clock.now() - self.settings.orchestrator.degradation_window_s
        return {
            "session_id": self._counters.session_id,
            "state": self.get_state().value,
            "session_duration": round(time.time() - self._counters.started_at, 3),
            "transitions": self._machine.transitions_done if self._machine else 0,
            "degradations": len([ts for ts in self._counters.degradations if ts >= horizon]),
            "failsafe_activations": self._counters.failsafe_activations,
            "orchestrator_restarts": self._counters.orchestrator_restarts,
            "safety_events": self._safety_events,
            "process_alerts": dict(self._process_alerts),
            **self._supervision.stats(),
            "engine_latency_p50_ms": engine.get("latency_p50_ms", 0.0),
            "engine_latency_p99_ms": engine.get("latency_p99_ms", 0.0),
            "engine_errors": engine.get("error_count", 0),
            # this session's: session_counters.py
            **trading_counters(comps["exchange_manager"], self._decisions(), self._counters.session_id),
        }

    def _decisions(self) -> int:
        decisions, changed = engine_decisions(self._components.components["engine"], self._counters)
        if changed:
            self._save_counters()
        return decisions

    def _metrics_snapshot(self) -> dict[str, Any]:
        assert self._runtime is not None
        return {
            "stats": self._stats(),
            "components": self._components_snapshot(),
            "process_alerts": dict(self._process_alerts),
            "safety_events_by_type": dict(self._safety_by_type),
        }

    def _components_snapshot(self) -> dict[str, dict[str, Any]]:
        """Every process as the orchestrator knows it, itself included."""
        assert self._runtime is not None
        return {"orchestrator": {
            "alive": True, "pid": os.getpid(), "heartbeat_age_s": 0.0,
            "restarts": self._counters.orchestrator_restarts, "trading_enabled": self.get_state() in (S.LIVE, S.DEGRADED),
            "fatal": False, "stats": {**self._heartbeat_stats(), "bus": self._runtime.bus_totals()},
        }, **self._components.snapshot()}

    def _heartbeat_stats(self) -> dict[str, Any]:
        return {"session_id": self._counters.session_id, "transitions": self._machine.transitions_done if self._machine else 0}

    def _status(self) -> dict[str, Any]:
        assert self._runtime is not None
        return {
            **self._runtime.process_status(),
            "state": self.get_state().value,
            "session_id": self._counters.session_id,
            "session_fingerprint": self._counters.fingerprint,
            "session_started_at": self._counters.started_at,
            "failsafe_pending": self._counters.failsafe_pending,
            "failsafe_running": self._runner.running,
            "journal": {"ok": not self._session_journal.held, "error": self._session_journal.error,
                        "held_writes": self._session_journal.held, "failures": self._session_journal.failures},
            "disk": self._disk_problems,
            "alerts": list(self._alerter.outcomes),
            "session_logs": {kind: str(path) for kind, path in self._logs.paths.items()},
            "components": self._components_snapshot(),
            "metrics_url": None if self._metrics is None else self._metrics.url,
            "market": self._schedule.status(self._market_time()),
        }
