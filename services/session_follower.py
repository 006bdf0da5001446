"""What a trading service knows of the session, learned from the orchestrator, failing closed.

A service that (re)starts knows nothing and so may not trade. It subscribes to the orchestrator's
state changes and heartbeats, then asks for a snapshot (the Clone pattern: subscribe first, then
snapshot, so no change falls between the two). Trading is allowed only while all of these hold:
  * the last word from the orchestrator says the session is LIVE (or DEGRADED, as its mode allows);
  * that word is younger than the dead-man timeout, counted from when the orchestrator said it
    (its publish time), not from when it was read: a process that resumes after a stall finds the
    words that queued up meanwhile, and old ones must not count as a live orchestrator;
  * the orchestrator has not told this service to disable trading (FAILSAFE, close) since;
  * supervisord, which started this process, is still there (``ParentWatch``): an orphan that
    nothing would restart or stop never opens a position again (reducing orders still pass);
  * with ``halt_on_critical`` (the engine, the exchange manager's gate): no critical safety event
    has come from the safety process since. The orchestrator answers one with FAILSAFE, after two
    journal commits and a hop; the trading processes stop on the event itself, a hop after it
    (issue 16: the failsafe's "engine and gate disabled" within 5 ms). The halt lasts until the
    follower learns a state in which the session does not trade (FAILSAFE), or, if the orchestrator
    keeps the session trading (its call), for a dead-man timeout.
A loop stall as long as the dead-man timeout makes the follower forget what it knew and ask again,
as a restarted process does: each time trading is allowed again is a new opening (``openings``).

It also learns which session the orchestrator runs (``session_id``, from its heartbeats, state
changes and the snapshot) and tells ``on_session`` callbacks when it changes: a service's session
counters (orders, fills, PnL, decisions) start again from zero in a new session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import proto
from bus import CommandTimeout
from bus.command_server import Handler
from proto.commands import ReasonArgs
from proto.summaries import OrchestratorSummary
from services.log_storm import keep
from services.runtime import ServiceRuntime

log = logging.getLogger(__name__)

TRADING_STATES = frozenset({proto.OrchestratorState.LIVE, proto.OrchestratorState.DEGRADED})


class SessionFollower:
    def __init__(self, runtime: ServiceRuntime, deadman_timeout_s: float, *, halt_on_critical: bool = False) -> None:
        self._deadman_timeout_s = deadman_timeout_s
        self._halted: tuple[str, float] | None = None  # why, and since when (monotonic)
        self.halts = 0
        self.state: proto.OrchestratorState | None = None
        self._heard_at: float | None = None
        self._disabled_reason: str | None = None
        self._orphaned: str | None = None  # supervisord is gone (for good: an orphan is never adopted)
        self._was_allowed = False
        self.deadman_trips = 0
        self.stalls = 0
        self.openings = 0  # times trading became allowed: each is a fresh start for what follows it
        self.session_id: str | None = None  # the orchestrator's session, once heard
        self._session_callbacks: list[Callable[[str], None]] = []
        self._state_callbacks: list[Callable[[proto.OrchestratorState, proto.OrchestratorState | None], None]] = []
        self._orchestrator = runtime.client("orchestrator", timeout_s=0.2, retries=0)
        runtime.subscribe(["orchestrator"], [proto.topics.STATE, proto.topics.heartbeat("orchestrator")],
                          self._on_message)
        if halt_on_critical:
            runtime.subscribe(["safety"], [proto.topics.SAFETY], self._on_safety_event)
        self._reactor = runtime.reactor
        self._reactor.call_later(0.0, self._snapshot)
        runtime.reactor.call_every(0.25, self._watch)
        runtime.reactor.on_stall(deadman_timeout_s, self._stalled)
        runtime.supervisor.on_lost(self._supervisor_lost)

    # -- what the service asks -------------------------------------------------------------------

    def trading_allowed(self) -> bool:
        return (
            self.state in TRADING_STATES
            and self._disabled_reason is None
            and self._halted is None
            and self._orphaned is None
            and self.orchestrator_age_s() < self._deadman_timeout_s
        )

    def orchestrator_age_s(self) -> float:
        return float("inf") if self._heard_at is None else time.monotonic() - self._heard_at

    def disable(self, reason: str) -> None:
        self._disabled_reason = reason
        self._watch()

    def enable(self) -> None:
        self._disabled_reason = None
        self._watch()

    def on_session(self, callback: Callable[[str], None]) -> None:
        """``callback(session_id)`` each time the orchestrator's session changes (the first included)."""
        self._session_callbacks.append(callback)

    def on_state(self, callback: Callable[[proto.OrchestratorState, proto.OrchestratorState | None], None]) -> None:
        """``callback(state, before)`` each time the session state learned changes; ``before`` is None
        when nothing was known (the first word after a start, or after a stall made it forget)."""
        self._state_callbacks.append(callback)

    def summary(self) -> dict[str, object]:
        age = self.orchestrator_age_s()
        return {
            "session_state": None if self.state is None else self.state.value,
            "trading_allowed": self.trading_allowed(),
            "disabled_reason": self._disabled_reason,
            "halted": None if self._halted is None else self._halted[0],
            "halts": self.halts,
            "orphaned": self._orphaned,
            "orchestrator_age_s": None if age == float("inf") else round(age, 3),
            "deadman_trips": self.deadman_trips,
            "stalls": self.stalls,
            "orchestrator_session": self.session_id,
        }

    # -- how it learns ---------------------------------------------------------------------------

    def _on_message(self, _topic: str, env: proto.Envelope) -> None:
        body = env.body
        if isinstance(body, proto.StateChanged):
            self._learn_session(body.session_id)
            self._learn(body.new, env.ts_ns)
        elif isinstance(body, proto.Heartbeat) and body.state is not None:
            summary = body.stats
            self._learn_session(summary.session_id if isinstance(summary, OrchestratorSummary) else "")
            self._learn(body.state, env.ts_ns)

    def _on_safety_event(self, _topic: str, env: proto.Envelope) -> None:
        event = env.body
        if not isinstance(event, proto.SafetyEvent) or event.severity is not proto.Severity.CRITICAL:
            return
        if not self.trading_allowed() or (time.time_ns() - env.ts_ns) / 1e9 >= self._deadman_timeout_s:
            return  # nothing to stop, or old news read after a stall (the orchestrator has had it)
        self.halts += 1
        self._halted = (f"critical safety event ({event.event_type.value} {event.symbol}): {event.message}",
                        time.monotonic())
        self._watch()

    def _learn_session(self, session_id: str) -> None:
        if not session_id or session_id == self.session_id:
            return
        log.info("session is now %s (was %s)", session_id, self.session_id)
        self.session_id = session_id
        for callback in list(self._session_callbacks):
            try:
                callback(session_id)
            except Exception:  # one failing reaction must not keep the others (or the state) from going on
                log.exception("reaction to the new session %s failed", session_id)

    def _learn(self, state: proto.OrchestratorState, said_ns: int | None = None) -> None:
        """``said_ns``: when the orchestrator published it (None: just now, e.g. a snapshot reply).
        A word older than the dead-man timeout (read after a stall, or from a far-off clock) is
        the latest state known but not a sign of a live orchestrator. Ages below the timeout are
        not trusted to the millisecond (clocks of two hosts differ a little): such a word counts
        as heard now."""
        now = time.monotonic()
        age = 0.0 if said_ns is None else (time.time_ns() - said_ns) / 1e9
        heard_at = now - age if age >= self._deadman_timeout_s else now
        if self._heard_at is None or heard_at > self._heard_at:
            self._heard_at = heard_at
        before, changed = self.state, state != self.state
        if changed:
            log.info("session state is now %s", state.value, extra=keep())
            self.state = state
        if self._halted is not None and state not in TRADING_STATES:
            self._halted = None  # the orchestrator has acted on it: its word rules again
        self._watch()
        if changed:
            for callback in list(self._state_callbacks):
                try:
                    callback(state, before)
                except Exception:  # one failing reaction must not keep the others from going on
                    log.exception("reaction to the session state %s failed", state.value)

    def _snapshot(self) -> None:
        if self.state is not None:
            return
        try:
            reply = self._orchestrator.call("state")
        except CommandTimeout:
            reply = None
        try:
            state = proto.OrchestratorState(reply.result["state"]) if reply is not None and reply.ok else None
        except (KeyError, ValueError):
            state = None
        if state is not None:
            session_id = reply.result.get("session_id") if reply is not None else None
            self._learn_session(session_id if isinstance(session_id, str) else "")
            self._learn(state)
        else:
            # Not reachable yet; its heartbeat will tell us too, but ask again shortly anyway.
            self._reactor.call_later(0.5, self._snapshot)

    def _stalled(self, stalled_s: float) -> None:
        """This loop stood still for a dead-man timeout or more: what it knew of the session is
        old news, and what queued up meanwhile is being read now. Forget it and learn it again
        (the words that are fresh, a snapshot), as a restarted process does."""
        self.stalls += 1
        log.warning("loop stalled %.1fs: forgetting the session state (%s) and learning it again", stalled_s,
                    self.state.value if self.state else "unknown")
        self.state = None
        self._heard_at = None
        self._watch()
        self._reactor.call_later(0.0, self._snapshot)

    def _supervisor_lost(self, reason: str) -> None:
        self._orphaned = reason
        self._watch()

    def _watch(self) -> None:
        if self._halted is not None and time.monotonic() - self._halted[1] >= self._deadman_timeout_s:
            log.warning("halted on %s, but the orchestrator kept the session %s for %.1fs: trading follows it again",
                        self._halted[0], self.state.value if self.state else "?", self._deadman_timeout_s,
                        extra=keep())
            self._halted = None
        allowed = self.trading_allowed()
        if allowed == self._was_allowed:
            return
        self._was_allowed = allowed
        if allowed:
            self.openings += 1
            log.info("trading enabled: session is %s", self.state.value if self.state else "?", extra=keep())
            return
        if self._orphaned is not None:
            log.warning("trading disabled for good: %s; only orders that reduce a position pass", self._orphaned,
                        extra=keep())
        elif self.orchestrator_age_s() >= self._deadman_timeout_s and self.state in TRADING_STATES:
            self.deadman_trips += 1
            log.warning("dead-man switch: no word from the orchestrator for %.1fs; trading disabled",
                        self.orchestrator_age_s(), extra=keep())
        else:
            why = self._disabled_reason or (self._halted and self._halted[0])
            log.info("trading disabled: %s", why or f"session is {self.state.value if self.state else 'unknown'}",
                     extra=keep())


def trading_handlers(session: SessionFollower) -> dict[str, Handler]:
    """The orchestrator's switch on a trading process (engine, exchange manager's gate)."""

    def enable_trading(args: ReasonArgs) -> dict[str, object]:
        """``enable_trading``: lift a disable; trading still needs a LIVE session and a live
        orchestrator. Sent by the orchestrator when the session opens."""
        session.enable()
        return {"trading_allowed": session.trading_allowed()}

    def disable_trading(args: ReasonArgs) -> dict[str, object]:
        """``disable_trading``: stop trading now and stay stopped until told to enable again. Sent
        by the orchestrator on FAILSAFE and SHUTDOWN."""
        session.disable(args.reason)
        return {"trading_allowed": session.trading_allowed()}

    return {"enable_trading": enable_trading, "disable_trading": disable_trading}
