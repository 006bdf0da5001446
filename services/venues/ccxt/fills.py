"""The account's trades numbered as fills, in the ccxt connector's own session.

A REST venue numbers nothing the system can ask "since" of, so the adapter numbers the trades it
learns (``Fill.venue_seq``), oldest first within each batch, each trade once (by its id, whichever
path brought it: a poll, a stream, a mass status). Reconciliation's ``fills_since`` is answered from
the last ``MAX_FILLS_KEPT`` of them.

Each symbol has a cursor: the time of the latest trade a *read* brought (``fetch_my_trades`` answers
every trade since a time, so a read is complete up to its newest trade). The next read starts there.
A streamed trade does not move it: a stream can lose a message, and a cursor moved past a lost trade
would hide it from the polling that is there to catch it (so a poll reads again, and skips by id,
what the stream already brought).

While a mass status is read, streamed trades are *held* (``hold``), not numbered: its answer numbers
trades in a precise order relative to the balances' time (``execution.CcxtExecutionClient._snapshot``),
and one numbered in the middle would break it. ``release`` numbers them after it (those it did not
read itself); at most ``MAX_HELD`` wait, past it the oldest are dropped and counted (a poll reads them
again: the cursor did not move).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import proto
from services.venues.ccxt import translate

MAX_FILLS_KEPT = 100_000  # numbered fills kept for fills_since (older ones: a new session's numbering)
MAX_HELD = 10_000

# A trade (ccxt's trade structure) and the client order id of its order.
Trades = list[tuple[dict[str, Any], str]]


class FillNumbering:
    def __init__(self, connector: str, resolve: Callable[[str], tuple[str, str] | None],
                 on_fill: Callable[[proto.Fill], None]) -> None:
        """``resolve``: a unified symbol's (our symbol, quote asset), None when not traded here."""
        self._connector = connector
        self._resolve = resolve
        self._on_fill = on_fill
        self.seq = 0
        self.fills: deque[proto.Fill] = deque(maxlen=MAX_FILLS_KEPT)
        self.since_ms: dict[str, int] = {}  # our symbol -> where its next read of trades starts
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()
        self._held: deque[tuple[dict[str, Any], str]] = deque()
        self.dropped = 0  # held trades dropped (read again by a poll)

    def take(self, trades: Trades, *, cursor: bool = True) -> list[proto.Fill]:
        """Number and report the trades not seen yet, oldest first; ``cursor``: they are a read's
        (each symbol's cursor moves to its newest). The new fills."""
        new = []
        for trade, cid in sorted(trades, key=lambda t: (t[0].get("timestamp") or 0, str(t[0].get("id")))):
            found = self._resolve(trade.get("symbol") or "")
            if found is None:
                continue
            ours, quote = found
            stamp = int(trade.get("timestamp") or 0)
            if cursor:
                self.since_ms[ours] = max(self.since_ms.get(ours, 0), stamp)
            trade_id = str(trade["id"])
            if trade_id in self._seen:
                continue
            self._remember(trade_id)
            self.seq += 1
            fill = translate.fill(trade, ours, cid, quote, self.seq, self._connector)
            self.fills.append(fill)
            self._on_fill(fill)
            new.append(fill)
        return new

    def number_snapshot(self, before: Trades, after: Trades, stamp: int | None,
                        server_ms: int | None = None) -> int | None:
        """A mass status's trades (``before`` the balances were read, ``after``), numbered so that
        those the balances hold come first: the number of the last of them (its ``fill_seq``), or
        None when that cannot be told and the second read brought new trades (read again). The
        balances hold every trade of the first read; of the new trades of the second, those before
        the balances' own time ``stamp`` (ms) and not those after (``split``)."""
        self.take(before)
        new = [t for t in after if str(t[0]["id"]) not in self._seen]
        held = split(before, new, stamp, server_ms)
        if held is None:
            return None if self.take(new) else self.seq
        self.take(held[0])
        # Those after the balances are numbered after fill_seq: numbered now, the book would apply
        # fills newer than the answer before its run compares it (a stale run). Held (``release``).
        self.hold(held[1])
        return self.seq

    def _remember(self, trade_id: str) -> None:
        self._seen.add(trade_id)
        self._seen_order.append(trade_id)
        if len(self._seen_order) > MAX_FILLS_KEPT:
            self._seen.discard(self._seen_order.popleft())

    def hold(self, trades: Trades) -> None:
        for trade in trades:
            if len(self._held) >= MAX_HELD:
                self._held.popleft()
                self.dropped += 1
            self._held.append(trade)

    def release(self) -> list[proto.Fill]:
        """Number the held trades (a stream's: the cursor stays)."""
        held, self._held = list(self._held), deque()
        return self.take(held, cursor=False) if held else []

    def page(self, session: int, after_seq: int, limit: int) -> proto.FillPage:
        """The fills numbered after ``after_seq``, at most ``limit`` (``fills_since``)."""
        first = self.seq - len(self.fills) + 1  # the number of the oldest fill kept
        start = max(0, after_seq + 1 - first)
        page = [self.fills[i] for i in range(start, min(len(self.fills), start + limit))]
        return proto.FillPage(session=session, fills=page, last_seq=self.seq, more=start + len(page) < len(self.fills))


def split(before: Trades, new: Trades, stamp: int | None, server_ms: int | None = None
          ) -> tuple[Trades, Trades] | None:
    """The new trades of a snapshot's second read: (those the balances hold, those they do not),
    by the balances' time ``stamp`` (ms, their last change). A trade after the balances were read
    is no earlier than the read, itself no earlier than ``server_ms`` (the venue's clock read just
    before): so when ``stamp`` is earlier than that, a trade of ``stamp``'s very millisecond is one
    the balances hold (the last one they took, as a rule). None when it cannot be told: no time, a
    trade of that millisecond with the read possibly in it too, or a first-read trade after
    ``stamp`` (the time contradicts the reads). One clock is assumed for trades, balances and
    ``server_ms`` (the venue's)."""
    times = [int(t[0].get("timestamp") or 0) for t in new]
    if stamp is None or any(int(t[0].get("timestamp") or 0) > stamp for t in before):
        return None
    if stamp in times and (server_ms is None or stamp >= server_ms):
        return None
    return [t for t, ms in zip(new, times) if ms <= stamp], [t for t, ms in zip(new, times) if ms > stamp]
