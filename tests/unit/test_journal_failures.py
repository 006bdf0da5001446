"""Persistence failures fail closed (issue 11, item 1), on real SQLite files.

The operating system is made to refuse every file write, as a full disk does: ``RLIMIT_FSIZE`` at
0 (with SIGXFSZ ignored) makes each write to a regular file fail (EFBIG), so SQLite's commits fail
for real; lifting it is the disk being freed. (The daemon-level tests fill a real tmpfs.)
"""

from __future__ import annotations

import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from proto import OrchestratorState as S
from proto import Side
from proto.commands import OrderArgs
from services.exchange_manager.journal import OrderJournal
from services.exchange_manager.journal_writes import JournalWrites
from services.exchange_manager.order_book import OrderBook
from services.orchestrator.journal import Journal, JournalUnavailable, SessionCounters, SessionJournal
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


def test_the_book_of_record_refuses_nothing_toward_safety_and_leaves_no_phantom(tmp_path: Path, disk: Disk) -> None:
    journal = OrderJournal(tmp_path / "em.sqlite", fsync_per_order=False)
    failures: list[str] = []
    recoveries: list[int] = []
    writes = JournalWrites(journal.probe, failures.append, recoveries.append)
    book = OrderBook("t")
    disk.full()
    opening = book.make(OrderArgs(symbol="BTC-USD", side=Side.BUY, qty=1.0), "sim")
    key = ("order", opening.client_order_id)
    assert writes.write(key, lambda: journal.save_order(opening)) is False
    writes.discard(key)  # the caller refuses the opening order: it never enters the book
    assert opening.client_order_id not in book.orders and failures and writes.held == 0
    flatten = book.make(OrderArgs(symbol="BTC-USD", side=Side.SELL, qty=1.0, reduce_only=True), "sim")
    assert writes.write(("order", flatten.client_order_id), lambda: journal.save_order(flatten)) is False
    book.add(flatten)  # a reducing order goes anyway; its write is held
    assert writes.failing and writes.held == 1 and len(failures) == 1  # one alert per episode
    disk.free()
    assert writes.retry() is True and recoveries == [1] and not writes.failing and writes.error is None
    # an episode whose only failed write was refused (discarded) ends with a probe write
    disk.full()
    assert writes.write(key, lambda: journal.save_order(opening)) is False
    writes.discard(key)
    assert writes.error is not None and not writes.failing
    disk.free()
    assert writes.retry() is True and writes.error is None and recoveries == [1, 1]
    orders, _, _ = OrderJournal(tmp_path / "em.sqlite", fsync_per_order=False).load()
    assert [o.client_order_id for o in orders] == [flatten.client_order_id]
