"""Fills applied in the venue's order.

A venue numbers its fills (``Fill.venue_seq``) and computes its positions in that order. The book's
average price and realised PnL depend on the order too: a sell applied before the buy that preceded
it at the venue leaves another average. The venue's stream delivers fills in order unless one is
lost (a reconnection, a link that went quiet), and the lost one comes back later, from a
reconciliation's page, after fills numbered above it. So a fill above a hole is held: the fills
after the last number applied are asked for at once (one page, as a reconciliation asks), and the
held fills are applied in order as soon as the hole is filled, by that page or by the stream.

A hole is never allowed to hide fills for long: after ``hold_s`` (a venue that does not answer, or
leaves the fill out) the held fills are applied anyway, in their own order, and that is logged; a
hole still open then is asked for again by the next fill held above it.
Quantities are right either way; only the average price and realised PnL may then differ from the
venue's. While a fill is held its order stays open in the book, so the gate still counts its
quantity against the position limit (a held fill hides no risk).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import proto
from services.exchange_manager.fill_cursor import FillCursor

log = logging.getLogger(__name__)

HOLD_S = 2.0  # how long a hole may hold the fills above it
MAX_HELD = 10_000  # held fills per venue beyond which they are applied at once (bounded memory)


@dataclass
class _Held:
    fills: dict[int, proto.Fill] = field(default_factory=dict)  # by venue number
    generation: int = 0  # which hold a timer belongs to
    asked_after: int = -1  # the number after which fills were last asked for


class FillOrder:
    """Applies each venue's numbered fills in its order (``arrive``), holding those above a hole."""

    def __init__(self, cursor: Callable[[str], FillCursor], apply: Callable[[proto.Fill], None],
                 ask_after: Callable[[str, int], None], call_later: Callable[[float, Callable[[], None]], object],
                 hold_s: float = HOLD_S, max_held: int = MAX_HELD) -> None:
        self._cursor = cursor
        self._apply = apply
        self._ask_after = ask_after  # (connector, last number applied): ask for the fills after it
        self._call_later = call_later
        self._hold_s = hold_s
        self._max_held = max_held
        self._held: dict[str, _Held] = {}
        self.held_total = 0  # fills that waited for a hole to be filled
        self.applied_out_of_order = 0  # fills applied above a hole that stayed open past hold_s

    def held(self, connector: str) -> int:
        held = self._held.get(connector)
        return len(held.fills) if held else 0

    def arrive(self, fill: proto.Fill, session: int | None) -> None:
        """A fill of ``fill.connector``'s venue session ``session``, from its stream or a page."""
        cursor = self._cursor(fill.connector)
        if fill.venue_seq and session is not None and cursor.session != session:
            cursor.reset(session)  # the venue restarted: its numbering starts again
            if fill.connector in self._held:  # numbers of the session before mean nothing now
                self._held[fill.connector].fills.clear()
        if not fill.venue_seq or session is None or fill.venue_seq <= cursor.applied + 1:
            # Unnumbered, the next in order, or one the book already has: nothing to wait for.
            self._apply(fill)
            self._release(fill.connector, cursor)
            return
        held = self._held.setdefault(fill.connector, _Held())
        if fill.venue_seq in held.fills:
            return
        if not held.fills:
            self._start_hold(fill.connector, held)
        held.fills[fill.venue_seq] = fill
        self.held_total += 1
        if len(held.fills) >= self._max_held:
            self._flush(fill.connector, f"{len(held.fills)} fills held, the most kept")
            return
        self._ask(fill.connector, held, cursor)

    def _start_hold(self, connector: str, held: _Held) -> None:
        held.generation += 1
        generation = held.generation
        self._call_later(self._hold_s, lambda: self._expire(connector, generation))

    def _ask(self, connector: str, held: _Held, cursor: FillCursor) -> None:
        """Ask for the fills after the last number applied, once per hole."""
        if held.asked_after != cursor.applied:
            held.asked_after = cursor.applied
            self._ask_after(connector, cursor.applied)

    def answered(self, connector: str) -> None:
        """A page asked for has been applied: a hole longer than a page is asked on from there."""
        held = self._held.get(connector)
        if held is not None and held.fills:
            self._ask(connector, held, self._cursor(connector))

    def _release(self, connector: str, cursor: FillCursor) -> None:
        """Apply the held fills that are next in order now."""
        held = self._held.get(connector)
        released = 0
        while held is not None and held.fills:
            nxt = min(held.fills)
            if nxt > cursor.applied + 1:
                if released:  # progress, and another hole further up: a new hold for it
                    self._start_hold(connector, held)
                    self._ask(connector, held, cursor)
                return
            self._apply(held.fills.pop(nxt))
            released += 1

    def _expire(self, connector: str, generation: int) -> None:
        held = self._held.get(connector)
        if held is not None and held.generation == generation and held.fills:
            self._flush(connector, f"the fills before number {min(held.fills)} did not come within {self._hold_s:g}s")

    def _flush(self, connector: str, why: str) -> None:
        # The same _Held stays: its generation keeps counting, so a timer of this hold finds it stale.
        # The hole may still be open (the question went unanswered): the next fill above it asks again.
        held = self._held[connector]
        fills, held.fills = held.fills, {}
        held.asked_after = -1
        cursor = self._cursor(connector)
        log.warning("connector %s: applying %d fill(s) (numbers %d-%d) after the hole at %d, out of the venue's "
                    "order: %s; the average price and realised PnL may differ from the venue's",
                    connector, len(fills), min(fills), max(fills), cursor.applied + 1, why)
        for _seq, fill in sorted(fills.items()):
            self.applied_out_of_order += 1
            self._apply(fill)
