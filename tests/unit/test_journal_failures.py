"""Persistence failures fail closed (issue 11, item 1), on real SQLite files.

The operating system is made to refuse every file write, as a full disk does: ``RLIMIT_FSIZE`` at
0 (with SIGXFSZ ignored) makes each write to a regular file fail (EFBIG), so SQLite's commits fail
for real; lifting it is the disk being freed. (The daemon-level tests fill a real tmpfs.)
"""

from __future__ import annotations

import resource
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from unit_support import enter

import proto
from proto import OrchestratorState as S
from proto import Side
from proto.commands import OrderArgs
from services.exchange_manager.fill_cursor import FillCursor
from services.exchange_manager.journal import OrderJournal
from services.exchange_manager.journal_writes import JournalWrites
from services.exchange_manager.order_book import OrderBook
from services.orchestrator.journal import Journal, JournalUnavailable, SessionCounters, SessionJournal
from services.positions import Position
from services.orchestrator.state_machine import Transition


class Disk:
    """This process's file writes refused (``full``) or allowed again (``free``)."""

    def __init__(self) -> None:
        self._limits = resource.getrlimit(resource.RLIMIT_FSIZE)
        self._handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def full(self) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, self._limits[1]))

    def free(self) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, self._limits)

    def restore(self) -> None:
        self.free()
        signal.signal(signal.SIGXFSZ, self._handler)


@pytest.fixture
def disk() -> Iterator[Disk]:
    d = Disk()
    try:
        yield d
    finally:
        d.restore()


def transition(no: int, old: S, new: S) -> Transition:
    return Transition(no, float(no), old, new, f"test {no}")


def test_a_transition_toward_safety_is_never_refused_by_a_full_disk(tmp_path: Path, disk: Disk) -> None:
    raw = Journal(tmp_path / "o.sqlite")
    journal = SessionJournal(raw)
    counters = SessionCounters()
    assert journal.record(transition(1, S.STARTUP, S.READY), counters)
    assert journal.record(transition(2, S.READY, S.LIVE), counters)
    disk.full()
    # toward safety: takes effect, held in memory
    assert journal.record(transition(3, S.LIVE, S.DEGRADED), counters) is False
    counters.failsafe_pending = "disk full"
    assert journal.record(transition(4, S.DEGRADED, S.FAILSAFE), counters) is False
    assert journal.held == 3 and "OperationalError" in (journal.error or "") and journal.failures == 2
    # toward risk: refused while anything is held, and when its own write fails
    with pytest.raises(JournalUnavailable, match="held back"):
        journal.record(transition(5, S.FAILSAFE, S.READY), counters)
    assert journal.retry() is False
    disk.free()
    assert journal.retry() is True and journal.held == 0 and journal.error is None
    restored = Journal(tmp_path / "o.sqlite").restore()
    assert restored is not None and restored.state is S.FAILSAFE and restored.transitions_done == 4
    assert restored.counters.failsafe_pending == "disk full"


def test_a_transition_toward_risk_needs_its_write(tmp_path: Path, disk: Disk) -> None:
    raw = Journal(tmp_path / "o.sqlite")
    journal = SessionJournal(raw)
    disk.full()
    with pytest.raises(JournalUnavailable, match="cannot be written"):
        journal.record(transition(1, S.STARTUP, S.READY), SessionCounters())
    assert journal.held == 0  # nothing of a refused transition is kept
    assert journal.save_counters(SessionCounters()) is False and journal.held == 1
    disk.free()
    assert journal.record(transition(1, S.STARTUP, S.READY), SessionCounters())


def test_the_book_of_record_refuses_nothing_toward_safety_and_loses_nothing(tmp_path: Path, disk: Disk) -> None:
    """As the exchange manager uses it: an order goes out before its write (the opening one whose
    write fails first is cancelled by its caller, and stays in the book); while writes are held the
    caller refuses opening orders (``failing``), and reducing ones go, their writes held behind."""
    journal = OrderJournal(tmp_path / "em.sqlite", fsync_per_order=False)
    failures: list[str] = []
    recoveries: list[int] = []
    writes = JournalWrites(failures.append, recoveries.append)
    book = OrderBook("t")
    disk.full()
    opening = enter(book, OrderArgs(symbol="BTC-USD", side=Side.BUY, qty=1.0), "sim")
    assert not writes.failing
    assert writes.write(("order", opening.client_order_id), lambda: journal.save_order(opening)) is False
    assert writes.failing and failures and writes.held == 1  # held: the sent order is not forgotten
    flatten = enter(book, OrderArgs(symbol="BTC-USD", side=Side.SELL, qty=1.0, reduce_only=True), "sim")
    assert writes.write(("order", flatten.client_order_id), lambda: journal.save_order(flatten)) is False
    assert writes.held == 2 and len(failures) == 1  # one alert per episode
    disk.free()
    assert writes.retry() is True and recoveries == [2] and not writes.failing and writes.error is None
    orders, _, _ = OrderJournal(tmp_path / "em.sqlite", fsync_per_order=False).load()
    assert [o.client_order_id for o in orders] == [opening.client_order_id, flatten.client_order_id]


def test_a_held_write_replaced_goes_last(tmp_path: Path, disk: Disk) -> None:
    """Writes held by a full disk land in the order they were last made: a key written again goes
    behind the writes made since (its earlier place would put it before them)."""
    journal = OrderJournal(tmp_path / "em.sqlite", fsync_per_order=False)
    writes = JournalWrites(lambda _e: None, lambda _n: None)
    landed: list[str] = []

    def write(name: str) -> Callable[[], None]:
        def run() -> None:
            journal.save_cursor("sim", 1, 1)  # a real write: refused while the disk is full
            landed.append(name)
        return run

    disk.full()
    assert writes.write(("cursor", "sim"), write("cursor@5")) is False
    assert writes.write(("fill", "F6"), write("fill F6")) is False
    assert writes.write(("cursor", "sim"), write("cursor@6")) is False
    assert writes.held == 2 and landed == []
    disk.free()
    assert writes.retry() is True and landed == ["fill F6", "cursor@6"]


def test_a_held_cursor_never_claims_a_fill_the_journal_lacks(tmp_path: Path, disk: Disk) -> None:
    """The exchange manager's writes of fills and of the fill cursor (ExchangeManager.on_fill and
    _save_cursor), held by a full disk; the disk fills again after the first one lands (a crash at
    that point leaves the journal as it is): the journalled cursor counts only fills the journal has."""
    path = tmp_path / "em.sqlite"
    journal = OrderJournal(path, fsync_per_order=False)
    writes = JournalWrites(lambda _e: None, lambda _n: None)
    book = OrderBook("t")
    record = enter(book, OrderArgs(symbol="BTC-USD", side=Side.BUY, qty=2.0), "sim")
    journal.save_order(record)
    cursor, position = FillCursor(session=7), Position()

    def save_cursor() -> None:  # as ExchangeManager._save_cursor: the numbers now
        session, applied = cursor.session, cursor.applied
        writes.write(("cursor", "sim"), lambda: journal.save_cursor("sim", session, applied))

    def on_fill(n: int) -> None:  # as ExchangeManager.on_fill
        fill = proto.Fill(fill_id=f"F{n}", client_order_id=record.client_order_id, symbol="BTC-USD", side=Side.BUY,
                          qty=1.0, price=100.0, fee=0.0, ts_ns=1, venue_seq=n)
        applied = book.apply_fill(fill)
        assert applied is not None
        position.apply_fill(1, 1.0, 100.0, 0.0)
        cursor.advance(n, fill.fill_id)
        numbers = ("sim", cursor.session, cursor.applied)
        writes.write(("fill", fill.fill_id), lambda: journal.save_fill(fill, applied, position, cursor=numbers))

    disk.full()
    save_cursor()  # a reconciliation saves the cursor (applied 0) ...
    on_fill(1)  # ... then two fills arrive (applied 1, 2) ...
    on_fill(2)
    save_cursor()  # ... and the next reconciliation saves the cursor again (applied 2)
    assert list(writes._held) == [("fill", "F1"), ("fill", "F2"), ("cursor", "sim")]
    disk.free()
    first = next(iter(writes._held))
    lands = writes._held[first]

    def then_full() -> None:
        lands()
        disk.full()

    writes._held[first] = then_full
    assert writes.retry() is False  # the first write landed, the next did not
    disk.free()
    journal.close()
    again = OrderJournal(path, fsync_per_order=False)
    _, _, fill_ids = again.load()
    cursors = again.load_cursors()
    assert set(fill_ids) == {"F1"} and (cursors["sim"].session, cursors["sim"].applied) == (7, 1)
