"""The session state machine: exactly the allowed transitions, journalled before they count."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from proto import OrchestratorState as S

log = logging.getLogger(__name__)

ALLOWED: dict[S, frozenset[S]] = {
    S.STARTUP: frozenset({S.READY, S.SHUTDOWN}),
    S.READY: frozenset({S.LIVE, S.SHUTDOWN}),
    S.LIVE: frozenset({S.DEGRADED, S.SHUTDOWN}),
    S.DEGRADED: frozenset({S.LIVE, S.FAILSAFE, S.SHUTDOWN}),
    S.FAILSAFE: frozenset({S.READY, S.SHUTDOWN}),
    S.SHUTDOWN: frozenset(),
}


class IllegalTransition(Exception):
    """A transition the state machine does not allow; nothing was changed."""


@dataclass(frozen=True)
class Transition:
    no: int
    ts: float  # wall-clock seconds
    old: S
    new: S
    reason: str


StateCallback = Callable[[S, S, str], None]


class StateMachine:
    """Holds the current state. ``transition`` checks the move, hands it to ``record`` (which must
    make it durable, or raise), then updates the state, then runs the callbacks: a transition that
    could not be journalled did not happen."""

    def __init__(self, state: S, transitions_done: int, record: Callable[[Transition], None]) -> None:
        self._state = state
        self._no = transitions_done
        self._record = record
        self._callbacks: list[StateCallback] = []
        self.callback_errors = 0

    @property
    def state(self) -> S:
        return self._state

    @property
    def transitions_done(self) -> int:
        return self._no

    def can(self, new: S) -> bool:
        return new in ALLOWED[self._state]

    def add_callback(self, callback: StateCallback) -> None:
        self._callbacks.append(callback)

    def transition(self, new: S, reason: str) -> Transition:
        old = self._state
        if new not in ALLOWED[old]:
            allowed = ", ".join(s.value for s in sorted(ALLOWED[old], key=list(S).index)) or "nothing"
            raise IllegalTransition(f"{old.value} → {new.value} is not allowed (from {old.value}: {allowed})")
        transition = Transition(self._no + 1, time.time(), old, new, reason)
        self._record(transition)
        self._no = transition.no
        self._state = new
        for callback in list(self._callbacks):
            try:
                callback(old, new, reason)
            except Exception:  # a user's callback must not undo or block a journalled transition
                self.callback_errors += 1
                log.exception("state change callback failed for %s → %s", old.value, new.value)
        return transition
