"""Session control: what an operator (``handlers.py``), the schedule or the health watch asks of
the session, and the conditions under which each is done.

A step toward risk (``open``, ``recover``, ``reset``) needs every check to pass, and is refused
(``Refused``) naming every one that does not (an operator fixes them all at once, not one per try); a step toward safety (``failsafe``, ``shutdown``,
``close``, ``flatten``) is never refused for a peer that does not answer. What waits on a peer
(``close`` flattening, ``recover`` resetting the safety process, ``flatten``) runs as a sequence
in the runner and returns the future of its outcome, which the command server answers when done.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from proto import OrchestratorState as S
from services.orchestrator.components import ComponentTracker
from services.orchestrator.end_of_day import flatten_for_close, write_session_end
from services.orchestrator.failsafe import run_step
from services.orchestrator.failsafe_control import FailsafeControl
from services.orchestrator.health import HealthMonitor
from services.orchestrator.journal import SessionCounters
from services.orchestrator.recovery_checks import safety_holding
from services.orchestrator.sequence_runner import Peer, Sequence, SequenceRunner
from services.orchestrator.session_lifecycle import stop_verdict
from services.orchestrator.session_state import Refused, Session
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.storage_watch import StorageWatch
from proto.summaries import ExchangeSummary

log = logging.getLogger("orchestrator")


class SessionControl:
    def __init__(self, session: Session, settings: OrchestratorSettings, *, components: ComponentTracker,
                 health: HealthMonitor, failsafe: FailsafeControl, storage: StorageWatch, runner: SequenceRunner,
                 peers: dict[str, Peer], log_dir: Path, heartbeat_interval_s: float, resume_after_stop: bool,
                 stats: Callable[[], dict[str, Any]], ended_at_start: tuple[SessionCounters, str] | None) -> None:
        self._session = session
        self._cfg = settings
        self._components = components
        self._health = health
        self._failsafe = failsafe
        self._storage = storage
        self._runner = runner
        self._peers = peers
        self._log_dir = log_dir
        self._heartbeat_interval_s = heartbeat_interval_s
        self._resume_after_stop = resume_after_stop
        self._stats = stats
        self._ended_at_start = ended_at_start

    @property
    def session(self) -> Session:
        return self._session

    # -- toward risk: every check must pass ------------------------------------------------------

    def open_market(self, reason: str = "market open") -> None:
        self._session.require(S.READY, "open")
        missing = self._components.not_alive()
        self._refuse_unless("open: ", [f"not healthy: missing {', '.join(missing)}"] if missing else [],
                            self._reconciliation_problems(), self._foreign_problems(), self._storage.problems(retry=True))
        self._session.transition(S.LIVE, reason)

    def reset(self, reason: str = "operator reset") -> None:
        """FAILSAFE → READY, only once the sequence has finished and the venue holds nothing."""
        self._session.require(S.FAILSAFE, "reset")
        if self._session.counters.failsafe_pending is not None or self._failsafe.running:
            raise Refused("the failsafe sequence has not finished (the venue is not verified flat yet); reset once "
                          "it has (tradectl status: failsafe_pending; tradectl flatten tries again now)")
        holdings = self._failsafe.venue_holdings()
        self._refuse_unless("reset: ", [f"the venue still holds {holdings}; flatten first (tradectl flatten)"]
                            if holdings is not None else [],
                            self._reconciliation_problems(), self._storage.problems(retry=True))
        self._session.transition(S.READY, reason)

    def recover(self, reason: str = "operator recover") -> Future[dict[str, Any]]:
        """DEGRADED → LIVE when: in DEGRADED, every process alive, at least one connector healthy,
        no safety condition still holding (``recovery_checks.py``), and the safety process's reset
        succeeds. Otherwise refused with every unmet condition. The checks are made again
        once the safety process has answered, just before the transition."""
        self._check_recovery()
        return self._start("recover", self._recover(reason))

    def recovering(self) -> bool:
        return self._runner.running("recover")

    def _recover(self, reason: str) -> Sequence[dict[str, Any]]:
        step, result = yield from run_step(None, "reset safety", self._peers["safety"], "reset", {"reason": reason})
        if not step.ok:
            raise Refused(f"safety reset failed: {step.detail}")
        safety = self._components.components["safety"]
        if safety.epoch is not None and isinstance(published := result.get("published"), int) and published:
            # Its events up to here were raised before the reset: one still on its way (events and
            # replies travel on different sockets) is not a new incident after the recovery.
            safety.reset_mark = (safety.epoch, published)
        if holding := result.get("holding"):
            # Its answer is fresher than its last heartbeat: what still holds refuses the recovery.
            raise Refused("the cause is not gone: " + "; ".join(
                f"{c.get('detector')} {c.get('symbol')}: {str(c.get('reason'))[:200]}" for c in holding))
        self._check_recovery()
        self._session.transition(S.LIVE, f"recovered from degraded ({reason})")
        return {}

    def _check_recovery(self) -> None:
        self._session.require(S.DEGRADED, "recover")
        problems = []
        missing = self._components.not_alive()
        if missing:
            problems.append(f"not healthy: missing {', '.join(missing)}")
        if self._health.assess(self._components).healthy_connectors == 0:
            problems.append("no connector is healthy")
        holding = safety_holding(self._components.components["safety"], self._heartbeat_interval_s,
                                 time.monotonic())
        if holding:
            problems.append(f"the cause is not gone: {'; '.join(holding)}")
        # its messages read "refused: not healthy: ..." since the first release: no action prefix
        self._refuse_unless("", problems, self._reconciliation_problems(), self._storage.problems(retry=True))

    def reconciled(self) -> bool:
        """The exchange manager's book agrees with its venues (its latest reconciliation passed)."""
        stats = self._components.components["exchange_manager"].summary(ExchangeSummary)
        # ... and counts this session's orders and PnL (it took up the session: session_ledger.py)
        return stats.reconciled and stats.session_id == self._session.session_id

    def _reconciliation_problems(self) -> list[str]:
        return [] if self.reconciled() else ["the exchange manager has not reconciled with its venues yet"]

    def _foreign_problems(self) -> list[str]:
        """The venue holds nothing this system did not send (an order placed behind its back)."""
        unknown = self._components.components["exchange_manager"].summary(ExchangeSummary).venue_unknown
        if unknown.orders or unknown.positions:
            return [f"the venue holds what this system did not send: {unknown.orders} order(s), positions "
                    f"{unknown.positions}; cancel and flatten first"]
        return []

    @staticmethod
    def _refuse_unless(prefix: str, *problem_lists: list[str]) -> None:
        """Refused naming every problem of every check (a step toward risk needs them all to pass);
        the storage checks (``StorageWatch.problems``: our journal, the book of record's, disk space)
        are among them."""
        problems = [p for found in problem_lists for p in found]
        if problems:
            raise Refused(prefix + "; ".join(problems))

    # -- toward safety: never refused for a peer -------------------------------------------------

    def trigger_failsafe(self, reason: str) -> None:
        state = self._session.state
        if state == S.FAILSAFE:
            self._failsafe.again(f"failsafe again: {reason}")  # try again now: never refused
            return
        if state not in (S.LIVE, S.DEGRADED):
            raise Refused(f"session is {state.value}: nothing is trading; failsafe applies in live or degraded")
        if state == S.LIVE:
            self._session.transition(S.DEGRADED, f"failsafe requested: {reason}")
        self._session.transition(S.FAILSAFE, reason)

    def flatten(self, symbol: str | None) -> dict[str, Any] | Future[dict[str, Any]]:
        """In FAILSAFE: a round of the failsafe sequence now (stop new orders, cancel, flatten,
        verify), whether its retries are pausing or it had finished. Otherwise: the exchange
        manager flattens (cancel, then reduce-only market orders); strategies keep running."""
        if self._session.state == S.FAILSAFE:
            self._failsafe.again("operator flatten")
            return {"failsafe_round": True}
        return self._start("flatten", self._flatten(symbol))

    def _flatten(self, symbol: str | None) -> Sequence[dict[str, Any]]:
        step, result = yield from run_step(None, "flatten", self._peers["exchange_manager"], "flatten",
                                           {"symbol": symbol})
        if not step.ok:
            raise Refused(f"flatten: {step.detail}")
        return {"orders": result.get("orders", [])}

    def closing(self) -> bool:
        return self._runner.running("close")

    def close_market(self, reason: str = "market close") -> Future[dict[str, Any]]:
        """Market close: flatten (if set), end the session, write the end-of-day report, archive
        the session's logs. Its outcome: where the report and archive are."""
        state = self._session.state
        if not self._session.machine.can(S.SHUTDOWN):
            raise Refused(f"session is {state.value}; nothing to close")
        return self._start("close", self._close(reason))

    def _close(self, reason: str) -> Sequence[dict[str, Any]]:
        flatten = "not requested"
        state = self._session.state
        # In FAILSAFE a close flattens whatever the sequence has not got flat yet (its own rounds
        # and this flatten are both sized from what is still working: together they never reverse).
        if state in (S.LIVE, S.DEGRADED, S.FAILSAFE) and (self._cfg.close_flatten or state == S.FAILSAFE):
            flatten = yield from flatten_for_close(self._peers["engine"], self._peers["exchange_manager"],
                                                   self._cfg.close_flatten_timeout_s)
        self._failsafe.end_rounds()
        self._session.transition(S.SHUTDOWN, f"{reason} (flatten: {flatten})")
        return (yield from self._write_end_of_day(f"{reason} (flatten: {flatten})", self._session.counters))

    def shutdown(self, reason: str = "operator shutdown") -> Future[dict[str, Any]]:
        """End the session. Never refused for a FAILSAFE sequence under way: its current round
        (cancel, flatten, verify) still finishes, no round follows, and the reason says so. The
        session has ended when this returns; the future is done once its end-of-day report is
        written (the exchange manager asked for its counters)."""
        if self._session.state != S.SHUTDOWN and self._failsafe.end_rounds():
            reason += (" (failsafe sequence stopped before the venue was verified flat: "
                       f"{self._failsafe.venue_holdings() or 'book flat'})")
        self._session.transition_or_refuse(S.SHUTDOWN, reason, "shutdown")
        return self.end_of_day(reason)

    def end_if_daemon_stops(self) -> None:
        """On the way out: a graceful stop of the whole daemon ends the session
        (``session_lifecycle.py``); a restart of the orchestrator alone leaves it open."""
        verdict = stop_verdict(os.environ, self._resume_after_stop)
        self._session.logs.live(verdict.line, event="orchestrator_stop", data={"ends_session": verdict.end})
        if verdict.end and self._session.state != S.SHUTDOWN:
            self.shutdown(verdict.reason)

    # -- the end of a session --------------------------------------------------------------------

    def end_of_day(self, reason: str, counters: SessionCounters | None = None) -> Future[dict[str, Any]]:
        """Write the ended session's report and log archive (``end_of_day.py``); ``counters``: a
        session ended at start, not the current one. Where they are, in the future."""
        counters = counters or self._session.counters
        return self._start(f"end of day {counters.session_id}", self._write_end_of_day(reason, counters))

    def report_ended_at_start(self) -> None:
        """The end-of-day report of a session ended at start, once the exchange manager is up."""
        if self._ended_at_start is None or not self._components.alive("exchange_manager"):
            return
        counters, reason = self._ended_at_start
        self._ended_at_start = None
        self.end_of_day(reason, counters)

    def _write_end_of_day(self, reason: str, counters: SessionCounters) -> Sequence[dict[str, Any]]:
        """Never fails: the session has ended whatever its report (a full disk is said in it)."""
        current = counters is self._session.counters
        try:
            return (yield from write_session_end(self._log_dir, self._session.logs, self._session.journal, counters,
                                                 reason, self._stats() if current else {},
                                                 self._peers["exchange_manager"],
                                                 self._components.components["exchange_manager"]))
        except Exception as exc:
            log.exception("end-of-day report of session %s failed", counters.session_id)
            return {"report": None, "error": f"end-of-day report not written: {exc!r}"}

    def _start(self, name: str, sequence: Sequence[dict[str, Any]]) -> Future[dict[str, Any]]:
        if self._runner.running(name):
            sequence.close()
            raise Refused(f"{name}: already under way")
        return self._runner.start(name, sequence)

