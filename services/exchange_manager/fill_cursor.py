"""How far the book of record has applied one venue's numbered fills (``Fill.venue_seq``).

A venue numbers its fills from 1 in each of its sessions. The exchange manager keeps, per
connector, the number up to which it has applied every fill (``applied``, journalled with each
fill), so a reconciliation asks the venue only for the fills after it, however long the session.
Fills usually arrive on the venue's stream in order; one lost or overtaken leaves a hole, and the
numbers applied above the hole are kept until it is filled (by the stream or a reconciliation's
pages). ``newer_than`` tells whether the book knows of fills newer than a venue's answer.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

# Numbers applied above a hole, kept until the hole is filled: beyond this many the set is dropped
# (a reconciliation asks for everything after ``applied`` again and the book applies each fill once).
MAX_ABOVE = 100_000
RECENT = 64  # the latest (number, fill id) pairs, to name the fills a stale answer lacks


@dataclass
class FillCursor:
    session: int = 0
    applied: int = 0  # every fill numbered up to this one has been applied
    _above: set[int] = field(default_factory=set)
    _recent: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=RECENT))

    def reset(self, session: int) -> None:
        """A new venue session: its numbering starts again and the book has applied none of it."""
        self.session, self.applied = session, 0
        self._above.clear()
        self._recent.clear()

    def advance(self, seq: int, fill_id: str) -> None:
        """The book has applied (or already had) fill number ``seq``."""
        if seq <= self.applied or seq in self._above:
            return
        self._recent.append((seq, fill_id))
        if seq != self.applied + 1:
            if len(self._above) >= MAX_ABOVE:
                self._above.clear()
            self._above.add(seq)
            return
        self.applied = seq
        while self.applied + 1 in self._above:
            self.applied += 1
            self._above.discard(self.applied)

    def newer_than(self, seq: int) -> tuple[int, list[str]]:
        """How many fills numbered after ``seq`` the book has applied, and the ids of the latest."""
        count = max(0, self.applied - seq) + sum(1 for n in self._above if n > seq)
        return count, [fill_id for n, fill_id in self._recent if n > seq]
