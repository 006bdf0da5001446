"""The session state machine with the real SQLite journal: exactly the allowed transitions happen,
each journalled before it counts; the journal restores the session after a restart or a kill -9."""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from proto import OrchestratorState as S
from services.orchestrator.journal import Journal, Restored, SessionCounters
from services.orchestrator.state_machine import IllegalTransition, StateMachine, Transition

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# The specification, written out independently of services.orchestrator.state_machine.ALLOWED.
EXPECTED_ALLOWED = {
    (S.STARTUP, S.READY), (S.STARTUP, S.SHUTDOWN),
    (S.READY, S.LIVE), (S.READY, S.SHUTDOWN),
    (S.LIVE, S.DEGRADED), (S.LIVE, S.SHUTDOWN),
    (S.DEGRADED, S.LIVE), (S.DEGRADED, S.FAILSAFE), (S.DEGRADED, S.SHUTDOWN),
    (S.FAILSAFE, S.READY), (S.FAILSAFE, S.SHUTDOWN),
}
ALL_PAIRS = list(itertools.product(S, S))
ALLOWED_PAIRS = [p for p in ALL_PAIRS if p in EXPECTED_ALLOWED]
ILLEGAL_PAIRS = [p for p in ALL_PAIRS if p not in EXPECTED_ALLOWED]


def pair_id(pair: tuple[S, S]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "state" / "orchestrator.sqlite")
    try:
        yield j
    finally:
        j.close()


class Session:
    """A state machine wired to the journal the way the orchestrator wires it."""

    def __init__(self, journal: Journal, state: S = S.STARTUP, done: int = 0,
                 counters: SessionCounters | None = None) -> None:
        self.journal = journal
        self.counters = counters or SessionCounters()
        journal.save_counters(self.counters)
        self.machine = StateMachine(state, done, self.record)
        self.recorded: list[Transition] = []

    def record(self, transition: Transition) -> None:
        self.journal.record(transition, self.counters)
        self.recorded.append(transition)

    def rows(self) -> list[Transition]:
        return self.journal.transitions(self.counters.session_id)


def test_expected_table_covers_all_six_states() -> None:
    assert len(S) == 6 and len(ALL_PAIRS) == 36
    assert len(ALLOWED_PAIRS) == 11 and len(ILLEGAL_PAIRS) == 25


@pytest.mark.parametrize("pair", ALLOWED_PAIRS, ids=pair_id)
def test_allowed_transition_succeeds_and_is_journalled(journal: Journal, pair: tuple[S, S]) -> None:
    old, new = pair
    session = Session(journal, old, done=4)
    calls: list[tuple[S, S, str]] = []
    session.machine.add_callback(lambda o, n, r: calls.append((o, n, r)))
    assert session.machine.can(new)

    t = session.machine.transition(new, "because")

    assert (t.no, t.old, t.new, t.reason) == (5, old, new, "because")
    assert session.machine.state == new
    assert session.machine.transitions_done == 5
    assert session.rows() == [t]
    assert calls == [(old, new, "because")]


@pytest.mark.parametrize("pair", ILLEGAL_PAIRS, ids=pair_id)
def test_illegal_transition_is_refused_and_changes_nothing(journal: Journal, pair: tuple[S, S]) -> None:
    old, new = pair
    session = Session(journal, old, done=4)
    calls: list[tuple[S, S, str]] = []
    session.machine.add_callback(lambda o, n, r: calls.append((o, n, r)))
    assert not session.machine.can(new)

    with pytest.raises(IllegalTransition) as info:
        session.machine.transition(new, "because")

    assert old.value in str(info.value) and new.value in str(info.value)
    assert session.machine.state == old
    assert session.machine.transitions_done == 4
    assert session.recorded == []
    assert session.rows() == []
    assert calls == []


def test_shutdown_is_final(journal: Journal) -> None:
    session = Session(journal, S.STARTUP)
    session.machine.transition(S.SHUTDOWN, "bye")
    for new in S:
        with pytest.raises(IllegalTransition):
            session.machine.transition(new, "again")
    assert session.machine.state == S.SHUTDOWN and len(session.rows()) == 1


def test_a_whole_session_is_journalled_in_order(journal: Journal) -> None:
    session = Session(journal)
    path = [S.READY, S.LIVE, S.DEGRADED, S.LIVE, S.DEGRADED, S.FAILSAFE, S.READY, S.LIVE, S.SHUTDOWN]
    for i, new in enumerate(path):
        session.machine.transition(new, f"step {i}")
    rows = session.rows()
    assert [r.new for r in rows] == path
    assert [r.old for r in rows] == [S.STARTUP, *path[:-1]]
    assert [r.no for r in rows] == list(range(1, len(path) + 1))
    assert [r.reason for r in rows] == [f"step {i}" for i in range(len(path))]
    assert session.machine.transitions_done == len(path)


def test_failed_journal_write_leaves_state_unchanged(journal: Journal) -> None:
    """A real journal failure: transition number 1 of this session is already journalled (a
    state machine restored with a wrong count), so the INSERT violates the primary key."""
    counters = SessionCounters(failsafe_activations=1)
    first = Session(journal, S.STARTUP, counters=counters)
    first.machine.transition(S.READY, "first")

    changed = dataclasses.replace(counters, failsafe_activations=99)
    machine = StateMachine(S.READY, 0, lambda t: journal.record(t, changed))
    calls: list[object] = []
    machine.add_callback(lambda *a: calls.append(a))

    with pytest.raises(sqlite3.IntegrityError):
        machine.transition(S.LIVE, "second")

    assert machine.state == S.READY and machine.transitions_done == 0
    assert calls == []
    assert [r.reason for r in journal.transitions(counters.session_id)] == ["first"]
    restored = journal.restore()
    assert restored is not None
    assert restored.counters.failsafe_activations == 1  # the counters update was rolled back too
    assert restored.state == S.READY


def test_raising_record_leaves_state_unchanged(journal: Journal) -> None:
    def record(_t: Transition) -> None:
        raise OSError("disk full")

    machine = StateMachine(S.LIVE, 3, record)
    calls: list[object] = []
    machine.add_callback(lambda *a: calls.append(a))
    with pytest.raises(OSError):
        machine.transition(S.DEGRADED, "anomaly")
    assert machine.state == S.LIVE and machine.transitions_done == 3 and calls == []


def test_callbacks_run_after_the_journal_write(journal: Journal) -> None:
    session = Session(journal, S.READY)
    seen: list[tuple[S, S, str, S, list[Transition]]] = []
    session.machine.add_callback(
        lambda old, new, reason: seen.append((old, new, reason, session.machine.state, session.rows())))

    t = session.machine.transition(S.LIVE, "market open")

    assert len(seen) == 1
    old, new, reason, state_during_callback, rows_during_callback = seen[0]
    assert (old, new, reason) == (S.READY, S.LIVE, "market open")
    assert state_during_callback == S.LIVE
    assert rows_during_callback == [t]  # already durable when the callback ran


def test_callbacks_run_in_registration_order(journal: Journal) -> None:
    session = Session(journal, S.STARTUP)
    order: list[int] = []
    for i in range(3):
        session.machine.add_callback(lambda *_a, i=i: order.append(i))
    session.machine.transition(S.READY, "r")
    assert order == [0, 1, 2]


def test_raising_callback_is_counted_and_does_not_undo(journal: Journal) -> None:
    session = Session(journal, S.LIVE)
    after: list[tuple[S, S, str]] = []

    def broken(*_a: object) -> None:
        raise RuntimeError("user callback bug")

    session.machine.add_callback(broken)
    session.machine.add_callback(lambda o, n, r: after.append((o, n, r)))

    t = session.machine.transition(S.DEGRADED, "anomaly")

    assert session.machine.callback_errors == 1
    assert session.machine.state == S.DEGRADED and session.machine.transitions_done == 1
    assert session.rows() == [t]
    assert after == [(S.LIVE, S.DEGRADED, "anomaly")]  # later callbacks still ran
    session.machine.transition(S.LIVE, "recovered")
    assert session.machine.callback_errors == 2


# --- the journal across restarts ------------------------------------------------------------------


def test_restore_of_an_empty_journal_is_none(journal: Journal) -> None:
    assert journal.restore() is None


def test_restore_without_transitions_is_startup(journal: Journal) -> None:
    counters = SessionCounters()
    journal.save_counters(counters)
    assert journal.restore() == Restored(S.STARTUP, 0, counters)


def test_restore_returns_last_state_and_counters_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    counters = SessionCounters(failsafe_activations=2, degradations=[1.5, 2.5], orchestrator_restarts=1,
                               failsafe_pending="3 degradations", auto_open_pending=False)
    session = Session(j, counters=counters)
    for new in (S.READY, S.LIVE, S.DEGRADED):
        session.machine.transition(new, "go")
    j.close()

    reopened = Journal(path)
    try:
        restored = reopened.restore()
        assert restored is not None
        assert restored.state == S.DEGRADED
        assert restored.transitions_done == 3
        assert restored.counters == counters
        # a state machine built from it continues the numbering
        machine = StateMachine(restored.state, restored.transitions_done,
                               lambda t: reopened.record(t, restored.counters))
        assert machine.transition(S.LIVE, "recovered").no == 4
        assert [r.no for r in reopened.transitions(counters.session_id)] == [1, 2, 3, 4]
    finally:
        reopened.close()


def test_restore_after_shutdown_is_none_and_the_next_session_is_new(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    old = Session(j)
    old.machine.transition(S.READY, "up")
    old.machine.transition(S.SHUTDOWN, "close")
    j.close()

    j = Journal(path)
    try:
        assert j.restore() is None
        new = Session(j)  # the next start: a new session id
        assert new.counters.session_id != old.counters.session_id
        new.machine.transition(S.READY, "up again")
        restored = j.restore()
        assert restored is not None
        assert restored.counters.session_id == new.counters.session_id
        assert (restored.state, restored.transitions_done) == (S.READY, 1)
    finally:
        j.close()


def test_save_counters_updates_the_restored_counters(journal: Journal) -> None:
    session = Session(journal)
    session.machine.transition(S.READY, "r")
    session.counters.failsafe_pending = None
    session.counters.auto_open_pending = False
    journal.save_counters(session.counters)
    restored = journal.restore()
    assert restored is not None and restored.counters == session.counters


def test_transition_survives_kill_9_once_acknowledged(tmp_path: Path) -> None:
    """A child process journals transitions, says so, and is killed with SIGKILL: what it
    acknowledged is what a restarted orchestrator restores."""
    path = tmp_path / "state" / "orchestrator.sqlite"
    script = textwrap.dedent("""
        import sys
        from pathlib import Path
        from proto import OrchestratorState as S
        from services.orchestrator.journal import Journal, SessionCounters
        from services.orchestrator.state_machine import StateMachine

        journal = Journal(Path(sys.argv[1]))
        counters = SessionCounters(session_id="killed", failsafe_activations=1)
        journal.save_counters(counters)
        machine = StateMachine(S.STARTUP, 0, lambda t: journal.record(t, counters))
        for new in (S.READY, S.LIVE, S.DEGRADED):
            machine.transition(new, "go")
        print("acknowledged", machine.transitions_done, flush=True)
        sys.stdin.read()  # wait here until killed
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], cwd=PROJECT_ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.split() == ["acknowledged", "3"], proc.stderr.read() if not line else line
        proc.kill()
        assert proc.wait(5) == -9
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()

    j = Journal(path)
    try:
        restored = j.restore()
    finally:
        j.close()
    assert restored is not None
    assert (restored.state, restored.transitions_done) == (S.DEGRADED, 3)
    assert restored.counters.session_id == "killed" and restored.counters.failsafe_activations == 1
