"""Writes to the book of record's journal, failing closed when the disk refuses them.

A full, read-only or vanished state disk makes every SQLite write raise. Then:
  * an order that would open or increase a position is refused while writes are held
    (``failing``); the one whose own write fails first has already left (the order goes out before
    its write, docs/architecture.md): its caller cancels it at once;
  * everything on the way to safety still happens: a reducing order (flatten) is sent, a fill or an
    execution report is applied in memory; its write is held here and retried, in order, until the
    disk takes it. A reconciliation after a restart recovers whatever a crash meanwhile lost.

Held writes are keyed (an order's id, a fill's id): a later write of the same thing replaces the
earlier one (each saves the current state), so what is held is bounded by the orders and fills
the book has seen since the disk failed, not by how often they changed. The replacement goes to
the back of the queue, where its write would have been: a fill cursor written after a fill must land
after that fill, or a crash between the two would leave a cursor claiming a fill the journal lacks.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

log = logging.getLogger(__name__)

WRITE_ERRORS = (sqlite3.Error, OSError)
Write = Callable[[], None]


class JournalWrites:
    def __init__(self, on_failure: Callable[[str], None], on_recovery: Callable[[int], None]) -> None:
        """``on_failure(error)`` is called when writes start failing, ``on_recovery(n)`` when the
        ``n`` held writes have all landed."""
        self._on_failure = on_failure
        self._on_recovery = on_recovery
        self._held: dict[tuple[str, str], Write] = {}
        # Set from the first failed write until a write lands again with nothing held: one episode.
        self.error: str | None = None
        self.failures = 0

    @property
    def failing(self) -> bool:
        """Writes are held back (they must land before any other)."""
        return bool(self._held)

    @property
    def held(self) -> int:
        return len(self._held)

    def write(self, key: tuple[str, str], write: Write) -> bool:
        """Run ``write`` now; True if it landed. If not (or if earlier writes are still held, which
        must land first), it is held for ``retry`` and False is returned."""
        if self._held:
            self._hold(key, write)
            return self.retry()
        try:
            write()
        except WRITE_ERRORS as exc:
            self._hold(key, write)
            self._failed(exc)
            return False
        if self.error is not None:
            self._recovered(0)
        return True

    def _hold(self, key: tuple[str, str], write: Write) -> None:
        """Hold ``write`` last in line: the latest write of a key goes after every write before it."""
        self._held.pop(key, None)
        self._held[key] = write

    def retry(self) -> bool:
        """Write what is held, oldest first; True when the disk took them."""
        count = len(self._held)
        while self._held:
            key, write = next(iter(self._held.items()))
            try:
                write()
            except WRITE_ERRORS as exc:
                self._failed(exc)
                return False
            # the same key may have been written again meanwhile (a nested write): only drop this one
            if self._held.get(key) is write:
                del self._held[key]
        if count or self.error is not None:
            self._recovered(count)
        return True

    def _recovered(self, count: int) -> None:
        log.warning("book of record written again: %d held write(s) now on disk (after: %s)", count, self.error)
        self.error = None
        self._on_recovery(count)

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        first = self.error is None
        self.error = f"{type(exc).__name__}: {exc}"
        if first:
            log.critical("book of record cannot be written: %s; opening orders refused, reducing ones still go",
                         self.error)
            self._on_failure(self.error)

    def stats(self) -> dict[str, object]:
        return {"ok": self.error is None, "error": self.error, "held_writes": len(self._held), "failures": self.failures}
