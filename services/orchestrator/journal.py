"""The orchestrator's durable journal: every transition and the session counters, in SQLite (WAL).

``synchronous=FULL`` in WAL mode fsyncs the log on every commit, so when ``record`` returns the
transition survives a kill -9 or a power cut, and only then is it acknowledged or published.

``SessionJournal`` is the policy on top when the disk fails (full, read-only, gone): a transition
toward safety (DEGRADED, FAILSAFE, SHUTDOWN) is never refused for it. It takes effect at once and
its write is kept in memory and retried until it lands; a transition toward risk (READY, LIVE)
needs its write to land, and nothing unwritten before it, or it is refused.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from proto import OrchestratorState
from services.orchestrator.state_machine import Transition


@dataclass
class SessionCounters:
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started_at: float = field(default_factory=time.time)
    failsafe_activations: int = 0
    degradations: list[float] = field(default_factory=list)  # wall-clock times, for the window
    orchestrator_restarts: int = 0
    # Set while a FAILSAFE sequence has begun but not finished, so a restart finishes it.
    failsafe_pending: str | None = None
    # True until the first READY: the automatic open applies at start-up only.
    auto_open_pending: bool = True
    # The settings the session runs under (session_fingerprint.py); "" in a journal older than it.
    fingerprint: str = ""
    # Decisions the engine's earlier processes made in this session, and the latest process's
    # epoch and count (session_counters.py).
    engine_decisions_base: int = 0
    engine_epoch: int | None = None
    engine_decisions_last: int = 0


@dataclass(frozen=True)
class Restored:
    state: OrchestratorState
    transitions_done: int
    counters: SessionCounters


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS transitions (
                session_id TEXT NOT NULL, no INTEGER NOT NULL, ts REAL NOT NULL,
                old TEXT NOT NULL, new TEXT NOT NULL, reason TEXT NOT NULL,
                PRIMARY KEY (session_id, no));
            CREATE TABLE IF NOT EXISTS sessions (
                session_id TEXT PRIMARY KEY, counters TEXT NOT NULL, updated REAL NOT NULL);
        """)

    def restore(self) -> Restored | None:
        """The latest session's state and counters, or None when there is none to resume (no
        journal yet, or the last session was shut down: the next start is a new session)."""
        row = self._db.execute("SELECT session_id, counters FROM sessions ORDER BY updated DESC LIMIT 1").fetchone()
        if row is None:
            return None
        session_id, counters_json = row
        last = self._db.execute(
            "SELECT no, new FROM transitions WHERE session_id = ? ORDER BY no DESC LIMIT 1", (session_id,)
        ).fetchone()
        no, state = (0, OrchestratorState.STARTUP.value) if last is None else last
        if state == OrchestratorState.SHUTDOWN.value:
            return None
        return Restored(OrchestratorState(state), no, SessionCounters(**json.loads(counters_json)))

    def ended_in(self) -> OrchestratorState | None:
        """The state the latest session ended from (None: it has not ended, or there is none)."""
        row = self._db.execute("SELECT session_id FROM sessions ORDER BY updated DESC LIMIT 1").fetchone()
        last = None if row is None else self._db.execute(
            "SELECT old, new FROM transitions WHERE session_id = ? ORDER BY no DESC LIMIT 1", row).fetchone()
        if last is None or last[1] != OrchestratorState.SHUTDOWN.value:
            return None
        return OrchestratorState(last[0])

    def record(self, transition: Transition, counters: SessionCounters) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT INTO transitions VALUES (?, ?, ?, ?, ?, ?)",
                (counters.session_id, transition.no, transition.ts, transition.old.value,
                 transition.new.value, transition.reason),
            )
            self._save(counters)

    def save_counters(self, counters: SessionCounters) -> None:
        with self._transaction():
            self._save(counters)

    def record_all(self, transitions: list[Transition], counters: SessionCounters) -> None:
        """Several transitions and the latest counters in one transaction (the writes a failing
        disk held back)."""
        with self._transaction():
            self._db.executemany("INSERT OR IGNORE INTO transitions VALUES (?, ?, ?, ?, ?, ?)", [
                (counters.session_id, t.no, t.ts, t.old.value, t.new.value, t.reason) for t in transitions])
            self._save(counters)

    def transitions(self, session_id: str, last: int = 50) -> list[Transition]:
        rows = self._db.execute(
            "SELECT no, ts, old, new, reason FROM transitions WHERE session_id = ? ORDER BY no DESC LIMIT ?",
            (session_id, last),
        ).fetchall()
        return [Transition(no, ts, OrchestratorState(old), OrchestratorState(new), reason)
                for no, ts, old, new, reason in reversed(rows)]

    def _save(self, counters: SessionCounters) -> None:
        self._db.execute(
            "INSERT INTO sessions VALUES (?, ?, ?) ON CONFLICT(session_id) "
            "DO UPDATE SET counters = excluded.counters, updated = excluded.updated",
            (counters.session_id, json.dumps(asdict(counters)), time.time()),
        )

    def _transaction(self) -> "_Tx":
        return _Tx(self._db)

    def close(self) -> None:
        self._db.close()


TOWARD_SAFETY = frozenset({OrchestratorState.DEGRADED, OrchestratorState.FAILSAFE, OrchestratorState.SHUTDOWN})
WRITE_ERRORS = (sqlite3.Error, OSError)


class JournalUnavailable(Exception):
    """A transition toward risk that could not be made durable; it did not happen."""


class SessionJournal:
    """The journal, failing closed: see the module docstring."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.error: str | None = None  # the latest write failure, while writes are held back
        self.failures = 0
        self._held: list[Transition] = []
        self._counters: SessionCounters | None = None  # the latest counters not yet written

    @property
    def held(self) -> int:
        """Writes held back: transitions, plus one for the counters (kept with every held write)."""
        return len(self._held) + (self._counters is not None)

    def record(self, transition: Transition, counters: SessionCounters) -> bool:
        """Journal a transition; True once durable. A transition toward safety that could not be
        written is held for ``retry`` (False); one toward risk raises ``JournalUnavailable``."""
        safe = transition.new in TOWARD_SAFETY
        if self.held and not safe and not self.retry():
            raise JournalUnavailable(f"the journal cannot be written ({self.error}); "
                                     f"{self.held} write(s) still held back")
        try:
            if self.held:
                self.journal.record_all([*self._held, transition], counters)
            else:
                self.journal.record(transition, counters)
        except WRITE_ERRORS as exc:
            self._failed(exc)
            if not safe:
                raise JournalUnavailable(f"the journal cannot be written: {exc}") from None
            self._held.append(transition)
            self._counters = counters
            return False
        self._written()
        return True

    def save_counters(self, counters: SessionCounters) -> bool:
        try:
            if self.held:
                self.journal.record_all(self._held, counters)
            else:
                self.journal.save_counters(counters)
        except WRITE_ERRORS as exc:
            self._failed(exc)
            self._counters = counters
            return False
        self._written()
        return True

    def retry(self) -> bool:
        """Write what was held back; True when nothing is held any more."""
        if self._counters is None:  # set with every held write: nothing is held
            return True
        try:
            self.journal.record_all(self._held, self._counters)
        except WRITE_ERRORS as exc:
            self._failed(exc)
            return False
        self._written()
        return True

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.error = f"{type(exc).__name__}: {exc}"

    def _written(self) -> None:
        self._held.clear()
        self._counters = None
        self.error = None


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
