"""The session's authoritative state: its state machine, its counters and their journal.

Every transition goes through ``Session.transition``: it is journalled, fsynced, with the
counters it changes before it takes effect (``_record``), then published on ``state`` and written
in the live session log. A transition toward risk that the journal refuses does not happen
(``Refused``); one toward safety takes effect and its write is held for later
(``journal.SessionJournal``), which the storage watch reports and retries.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import proto
from proto import OrchestratorState as S
from services.orchestrator.journal import Journal, JournalUnavailable, SessionCounters, SessionJournal
from services.orchestrator.session_lifecycle import Begun
from services.orchestrator.session_logs import SessionLogs
from services.orchestrator.state_machine import IllegalTransition, StateMachine, Transition
from services.session_clock import SessionClock

TRADING = (S.LIVE, S.DEGRADED)


class Refused(Exception):
    """A control request that the session's current state does not allow; the reason says why."""


class Session:
    def __init__(self, journal: Journal, logs: SessionLogs, begun: Begun, clock: SessionClock,
                 publish: Callable[[str, proto.Message], None]) -> None:
        self.journal = journal
        self.session_journal = SessionJournal(journal)
        self.logs = logs
        self.clock = clock  # market time: the degradation window, the automatic recovery, the schedule
        self.counters: SessionCounters = begun.counters
        self.timeline: deque[dict[str, Any]] = deque(maxlen=200)
        self._publish = publish
        # the journal cannot be written: told once per episode (the storage watch raises it)
        self.on_journal_failed: Callable[[], None] = lambda: None
        self.machine = StateMachine(begun.state, begun.transitions_done, self._record)
        self.machine.add_callback(self._announce)

    @property
    def state(self) -> S:
        return self.machine.state

    @property
    def session_id(self) -> str:
        return self.counters.session_id

    def trading(self) -> bool:
        """The session lets the trading processes trade (LIVE, or DEGRADED under its restrictions)."""
        return self.state in TRADING

    def note(self, what: str) -> None:
        """A line of the timeline the incident report shows."""
        self.timeline.append({"ts": time.time(), "what": what})

    def require(self, state: S, action: str) -> None:
        if self.state != state:
            raise Refused(f"session is {self.state.value}; {action} needs {state.value}")

    def transition(self, new: S, reason: str) -> Transition:
        return self.machine.transition(new, reason)

    def transition_or_refuse(self, new: S, reason: str, action: str) -> None:
        try:
            self.transition(new, reason)
        except IllegalTransition as exc:
            raise Refused(f"{action}: {exc}") from None

    def market_time(self) -> float | None:
        """The session time the market schedule reads; None in a replay before its first data."""
        return self.clock.now() if self.clock.started else None

    def recent_degradations(self, window_s: float) -> int:
        horizon = self.clock.now() - window_s
        return len([ts for ts in self.counters.degradations if ts >= horizon])

    def save_counters(self) -> None:
        if not self.session_journal.save_counters(self.counters):
            self.on_journal_failed()

    def _record(self, transition: Transition) -> None:
        """Journal the transition with the counters it changes, fsynced, before it takes effect.
        A transition toward safety takes effect even when the disk refuses it (written later)."""
        counters = dataclasses.replace(self.counters, degradations=list(self.counters.degradations))
        if transition.new == S.FAILSAFE:
            counters.failsafe_activations += 1
            counters.failsafe_pending = transition.reason
        elif transition.new == S.DEGRADED:
            counters.degradations.append(self.clock.now())
        elif transition.new == S.READY:
            if transition.old == S.FAILSAFE:
                counters.degradations = []  # an operator reset starts the count afresh
        elif transition.new == S.LIVE:
            counters.auto_open_pending = False
        try:
            written = self.session_journal.record(transition, counters)
        except JournalUnavailable as exc:
            raise Refused(f"{transition.old.value} → {transition.new.value} refused: {exc}") from None
        self.counters = counters
        if not written:
            self.on_journal_failed()

    def _announce(self, old: S, new: S, reason: str) -> None:
        self._publish(proto.topics.STATE, proto.StateChanged(
            old=old, new=new, reason=reason, transition_no=self.machine.transitions_done,
            session_id=self.counters.session_id))
        self.logs.live(f"State transition: {old.name} → {new.name} ({reason})", event="state_transition",
                       data={"old": old.value, "new": new.value, "reason": reason})
        self.note(f"{old.name} → {new.name}: {reason}")

