"""The session's watch, every heartbeat interval: what the loop does by itself.

Each tick: storage; the automatic transitions (STARTUP → READY once everyone is heard from,
READY → LIVE at start-up with ``auto_open``, the scheduled close); the FAILSAFE's watch; the
heartbeat watchdog (a process missing degrades LIVE, missing for good fails DEGRADED safe); the
trading flag of each trading process brought to what the session wants; and, every
``health_check_interval_s``, the health assessment and its reactions (degrade, escalate, recover by
itself after ``auto_recover_after_s`` of health). Follow-ups of a transition run here too. Nothing
here waits on a peer: commands go out on pipelined channels, sequences to the runner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import proto
from bus import CommandChannel, NotConnected, Publisher
from proto import OrchestratorState as S
from services.orchestrator.components import TRADING_PEERS, ComponentTracker
from services.orchestrator.callbacks import Callbacks
from services.orchestrator.failsafe_control import FailsafeControl
from services.orchestrator.market_calendar import MarketSchedule
from services.orchestrator.health import HealthMonitor, publish_health
from services.orchestrator.session_control import SessionControl
from services.orchestrator.session_state import Refused, Session
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.storage_watch import StorageWatch

log = logging.getLogger("orchestrator")
TRADING_COMMAND_EVERY_S = 1.0  # a trading process whose flag disagrees is told again this often


class SessionWatch:
    def __init__(self, session: Session, settings: OrchestratorSettings, *, components: ComponentTracker,
                 health: HealthMonitor, control: SessionControl, failsafe: FailsafeControl, storage: StorageWatch,
                 trading_channels: dict[str, CommandChannel], publisher: Publisher, callbacks: Callbacks,
                 later: Callable[[Callable[[], None]], None], schedule: MarketSchedule) -> None:
        """``later``: run on the loop's next turn; ``schedule``: when the market is open."""
        self._schedule = schedule
        self._session = session
        self._cfg = settings
        self._components = components
        self._health = health
        self._control = control
        self._failsafe = failsafe
        self._storage = storage
        self._channels = trading_channels
        self._publisher = publisher
        self._callbacks = callbacks
        self._later = later
        self._last_assessment = 0.0
        self._healthy_since: float | None = None
        self._last_trading_command: dict[str, float] = {}

    def tick(self) -> None:
        self._storage.check_disk()
        self._control.report_ended_at_start()
        session, state = self._session, self._session.state
        risk_ok = self._storage.risk_ok()
        if state == S.STARTUP and not self._components.not_alive() and risk_ok:
            self._automatic(S.READY, "all processes heard from")
        elif state == S.READY and session.counters.auto_open_pending:
            if not self._cfg.auto_open:
                session.counters.auto_open_pending = False
                session.save_counters()
            elif self._market_open() and self._control.reconciled() and risk_ok:
                self._automatic(S.LIVE, "market open (auto_open at start-up)")
        elif state in (S.LIVE, S.DEGRADED) and not self._market_open():
            if not self._control.closing():
                self._control.close_market("scheduled market close").add_done_callback(self._scheduled_close_done)
        elif state == S.FAILSAFE:
            self._failsafe.watch()
        elif state == S.LIVE and self._components.missing():
            # The heartbeat watchdog runs on every tick, not only at the (slower) assessment.
            self.degrade(f"process missing: {', '.join(self._components.missing())}")
        elif state == S.DEGRADED:
            gone = self._components.gone_for_good(self._cfg.health.missing_escalate_after_s)
            if gone:
                self.escalate(f"process missing for good: {', '.join(gone)}")
        self.command_trading()
        interval = (self._cfg.health.degraded_check_interval_s if self._session.state == S.DEGRADED
                    else self._cfg.health_check_interval_s)
        if time.monotonic() - self._last_assessment >= interval:
            self._assess()

    def after_transition(self, _old: S, new: S, _reason: str) -> None:
        """Follow-ups of a transition, on the next loop turn (after every callback of this one)."""
        if new == S.FAILSAFE:
            self._later(self._failsafe.run)
        elif new == S.DEGRADED:
            self._later(self._check_escalation)
        else:
            self._later(lambda: self.command_trading(force=True))

    def degrade(self, reason: str) -> None:
        self._healthy_since = None
        if self._session.state == S.LIVE:
            self._session.transition(S.DEGRADED, reason)

    def escalate(self, reason: str) -> None:
        """A critical condition: LIVE → DEGRADED → FAILSAFE at once (the brief has no LIVE → FAILSAFE)."""
        if self._session.state == S.LIVE:
            self._session.transition(S.DEGRADED, f"critical: {reason}")
        if self._session.state == S.DEGRADED:
            self._session.transition(S.FAILSAFE, reason)

    def unsettle(self) -> None:
        """Something went wrong again: the automatic recovery counts its settle time afresh."""
        self._healthy_since = None

    def command_trading(self, force: bool = False) -> None:
        """Bring each trading process's flag to what the session wants; repeat (at most once a
        second) until its heartbeat agrees, so a restarted process is told again."""
        wanted = self._session.trading()
        now = time.monotonic()
        for service in TRADING_PEERS:
            comp = self._components.components[service]
            if not self._components.alive(service) or (comp.trading_enabled == wanted and not force):
                continue
            if not force and now - self._last_trading_command.get(service, 0.0) < TRADING_COMMAND_EVERY_S:
                continue
            self._last_trading_command[service] = now
            command = "enable_trading" if wanted else "disable_trading"

            def unanswered(_id: str, service: str = service, command: str = command) -> None:
                log.warning("%s did not answer %s; will repeat", service, command)
            try:
                self._channels[service].send(command, {"reason": f"session is {self._session.state.value}"},
                                             lambda _reply: None, unanswered)
            except NotConnected:
                unanswered("")

    def _automatic(self, new: S, reason: str) -> None:
        """A transition toward risk the loop makes by itself; refused (a journal write failing at
        that moment) it is simply tried again on a later tick."""
        try:
            self._session.transition(new, reason)
        except Refused as exc:
            log.warning("%s not yet: %s", new.value, exc)

    def _scheduled_close_done(self, closed: Future[dict[str, Any]]) -> None:
        if closed.exception() is not None:
            log.warning("scheduled close not done: %s", closed.exception())

    def _market_open(self) -> bool:
        return self._schedule.is_open(self._session.market_time())

    def _check_escalation(self) -> None:
        if self._session.state != S.DEGRADED:
            return
        window, count = self._cfg.degradation_window_s, self._cfg.failsafe_degradation_count
        recent = self._session.recent_degradations(window)
        if recent >= count:
            self._session.transition(S.FAILSAFE, f"{recent} degradations within {window:g}s "
                                                 f"(failsafe_degradation_count={count})")

    def _assess(self) -> None:
        """The overall health assessment: publish and log health events, then react."""
        self._last_assessment = time.monotonic()
        assessment = self._health.assess(self._components)
        for ev in assessment.events:
            self._publish_health(ev)
        state = self._session.state
        if state not in (S.LIVE, S.DEGRADED):
            return
        if assessment.critical:
            self.escalate(assessment.critical)
            return
        if assessment.problems:
            self._healthy_since = None
            if state == S.LIVE:
                self.degrade("; ".join(assessment.problems))
            return
        self._maybe_auto_recover()

    def _publish_health(self, ev: proto.Message) -> None:
        publish_health(ev, self._publisher, self._session.logs)
        if isinstance(ev, proto.ConnectorHealthEvent):
            Callbacks.fan_out(self._callbacks.connector, ev)
        Callbacks.fan_out(self._callbacks.health, ev)

    def _maybe_auto_recover(self) -> None:
        now = self._session.clock.now()
        if self._session.state != S.DEGRADED:
            self._healthy_since = None
            return
        if self._healthy_since is None:
            self._healthy_since = now
        settle = self._cfg.health.auto_recover_after_s
        if settle is None or now - self._healthy_since < settle or self._control.recovering():
            return
        try:
            self._control.recover(f"healthy for {settle:g}s (auto_recover_after_s)").add_done_callback(
                self._auto_recover_done)
        except Refused as exc:
            self._auto_recover_done(exc)

    def _auto_recover_done(self, outcome: Future[dict[str, Any]] | Refused) -> None:
        refused = outcome if isinstance(outcome, Refused) else outcome.exception()
        if refused is not None:
            log.info("automatic recovery not yet: %s", refused)
            self._healthy_since = None
