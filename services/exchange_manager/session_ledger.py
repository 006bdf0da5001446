"""What the book of record did in one session: orders, rejects, fills, volume, fees and PnL per symbol.

The book's positions are the account's holdings: they live as long as its journal and carry over
from one session to the next. These counters are the session's own. The exchange manager learns
the session from the orchestrator (``SessionFollower.session_id``) and opens a new ledger when it
changes, once its book is reconciled with the venues (so the opening positions are the venue's).

A position carried into a session opens its symbol's row: the opening quantity, and the mark at
the session's start (the first mark heard after it if none was known yet; the position's average
price if a fill in that symbol comes before any mark). The session's PnL in that symbol counts
from there: realized on what the session closes, unrealized against the current mark. So a
session's realized plus unrealized PnL is what its holdings and trades earned while it ran, and
the totals are the sums of the rows by construction. A reconciliation that corrects a position
(the venue holds something else) moves the row's quantity to the venue's, counted in
``corrections``.

The ledger is journalled with every order and fill write of the book (``journal.py``), in the
same transaction as a fill, so a restarted exchange manager goes on with the session's counts:
realized PnL is neither lost nor counted twice across a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.positions import EPSILON, Position

MARK_AT_START = "mark at session start"
FIRST_MARK = "first mark after session start"
AVERAGE_PRICE = "average price (no mark before the first fill)"
# A symbol's instrument grid: (tick size, lot size), None where the instrument is not known.
Steps = Callable[[str], tuple[float | None, float | None]]
MONEY = ("volume", "fees", "realized_pnl", "unrealized_pnl")
COUNTS = ("orders", "rejected", "fills")


@dataclass
class SymbolRow:
    opening_qty: float = 0.0
    opening_mark: float | None = None
    opening_mark_source: str = ""
    orders: int = 0
    rejected: int = 0
    fills: int = 0
    corrections: int = 0
    # The session's own position: it opens at ``opening_qty`` priced at the opening mark, then
    # takes every fill, so its realized PnL, fees and volume are the session's.
    position: Position = field(default_factory=Position)

    def to_dict(self) -> dict[str, Any]:
        return {"opening_qty": self.opening_qty, "opening_mark": self.opening_mark,
                "opening_mark_source": self.opening_mark_source, "orders": self.orders,
                "rejected": self.rejected, "fills": self.fills, "corrections": self.corrections,
                "position": self.position.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SymbolRow":
        return cls(**{**data, "position": Position(**data["position"])})

    def report(self, mark: float | None) -> dict[str, Any]:
        pos = self.position
        return {"opening_qty": self.opening_qty, "opening_mark": self.opening_mark,
                "opening_mark_source": self.opening_mark_source, "orders": self.orders,
                "rejected": self.rejected, "fills": self.fills, "volume": pos.volume, "fees": pos.fees,
                "realized_pnl": pos.realized_pnl, "unrealized_pnl": pos.unrealized(mark),
                "final_qty": pos.qty, "mark": mark, "corrections": self.corrections}


class SessionLedger:
    def __init__(self, session_id: str | None, started_ns: int | None = None,
                 rows: dict[str, SymbolRow] | None = None) -> None:
        self.session_id = session_id  # None: no session heard of yet (counts until the first one)
        self.started_ns = time.time_ns() if started_ns is None else started_ns
        self.rows: dict[str, SymbolRow] = rows or {}

    @classmethod
    def open(cls, session_id: str, positions: Mapping[str, Position], marks: Mapping[str, float]) -> "SessionLedger":
        """A new session's ledger: every position held is an opening position at its current mark."""
        ledger = cls(session_id)
        for symbol, held in positions.items():
            if abs(held.qty) < EPSILON:
                continue
            mark = marks.get(symbol)
            row = SymbolRow(opening_qty=held.qty, opening_mark=mark,
                            opening_mark_source=MARK_AT_START if mark is not None else "")
            row.position = Position(qty=held.qty, avg_price=mark or 0.0)
            ledger.rows[symbol] = row
        return ledger

    def row(self, symbol: str) -> SymbolRow:
        return self.rows.setdefault(symbol, SymbolRow())

    # -- what happened -----------------------------------------------------------------------------

    def order(self, symbol: str, count: int = 1) -> None:
        """An order entered the book (``count`` -1: it did not after all, its write was refused)."""
        self.row(symbol).orders += count

    def rejected(self, symbol: str) -> None:
        self.row(symbol).rejected += 1

    def fill(self, symbol: str, sign: int, qty: float, price: float, fee: float, average_price: float) -> None:
        """A fill; ``average_price`` is the account's before it, the opening price of a carried
        position if no mark has been heard yet."""
        row = self.row(symbol)
        if self._mark_pending(row):
            self._set_opening(row, average_price, AVERAGE_PRICE)
        row.fills += 1
        row.position.apply_fill(sign, qty, price, fee)

    def mark(self, symbol: str, price: float) -> None:
        """A mark for ``symbol``: the opening mark of a carried position still waiting for one."""
        row = self.rows.get(symbol)
        if row is not None and self._mark_pending(row):
            self._set_opening(row, price, FIRST_MARK)

    def corrected(self, symbol: str, qty: float) -> None:
        """A reconciliation set the account's position to the venue's ``qty``."""
        row = self.row(symbol)
        row.corrections += 1
        row.position.qty = qty
        if abs(qty) < EPSILON:
            row.position.qty, row.position.avg_price = 0.0, 0.0

    @staticmethod
    def _mark_pending(row: SymbolRow) -> bool:
        return row.opening_mark is None and abs(row.opening_qty) >= EPSILON and row.fills == 0

    @staticmethod
    def _set_opening(row: SymbolRow, price: float, source: str) -> None:
        row.opening_mark, row.opening_mark_source = price, source
        row.position.avg_price = price

    # -- reporting ---------------------------------------------------------------------------------

    def table(self, marks: Mapping[str, float], steps: Steps | None = None) -> dict[str, dict[str, Any]]:
        """Each symbol's row, with its instrument's tick and lot size (``steps``) for the reports."""
        out = {}
        for symbol, row in sorted(self.rows.items()):
            tick, lot = steps(symbol) if steps is not None else (None, None)
            out[symbol] = {**row.report(marks.get(symbol)), "tick_size": tick, "lot_size": lot}
        return out

    def report(self, marks: Mapping[str, float], steps: Steps | None = None) -> dict[str, Any]:
        """The session's rows and their totals (each total is the sum of its column)."""
        table = self.table(marks, steps)
        totals: dict[str, Any] = {key: sum(row[key] for row in table.values()) for key in (*COUNTS, *MONEY)}
        return {"session_id": self.session_id, "started_ns": self.started_ns, "symbols": table, "totals": totals}

    def to_dict(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "started_ns": self.started_ns,
                "rows": {symbol: row.to_dict() for symbol, row in self.rows.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SessionLedger":
        return cls(data["session_id"], data["started_ns"],
                   {symbol: SymbolRow.from_dict(row) for symbol, row in data["rows"].items()})
