"""The book of record on disk: orders, positions (the account's and each strategy's), the latest
sessions' ledgers (``session_ledger.py``), applied fill ids and, per connector, the venue fill number up to which every fill was applied (the fill
cursor: a reconciliation asks the venue only for what follows), in SQLite (WAL).

Every order is written before it leaves for a venue, and every change after. A commit in WAL mode
hands the data to the operating system, so a kill -9 of the exchange manager loses nothing;
``fsync_per_order`` adds an fsync per commit (``synchronous=FULL``) so a power cut loses nothing
either, at a latency cost measured in ``bench/``. On restart the book, the positions and the fill
ids are loaded, and the orders that were in flight are resolved against the venue by the
reconciliation that follows the (re)connection.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path

import msgspec

import proto
from proto.commands import NewOrderArgs
from services.exchange_manager.fill_cursor import FillCursor
from services.exchange_manager.order_book import OrderRecord
from services.exchange_manager.session_ledger import SessionLedger
from services.positions import Position

_RECORD = msgspec.json.Encoder()
_ORDER_FIELDS = frozenset(NewOrderArgs.__struct_fields__)
KEEP_FILL_IDS = 100_000
KEEP_CLOSED_ORDERS = 10_000
KEEP_SESSION_LEDGERS = 20  # the latest sessions' counters, for their end-of-day reports


class OrderJournal:
    def __init__(self, path: Path, fsync_per_order: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if fsync_per_order else 'NORMAL'}")
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS orders (
                client_order_id TEXT PRIMARY KEY, open INTEGER NOT NULL, updated_ns INTEGER NOT NULL,
                record TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS positions (symbol TEXT PRIMARY KEY, position TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS fills (seq INTEGER PRIMARY KEY AUTOINCREMENT, fill_id TEXT UNIQUE NOT NULL);
            CREATE TABLE IF NOT EXISTS strategy_positions (
                strategy TEXT NOT NULL, symbol TEXT NOT NULL, qty REAL NOT NULL, PRIMARY KEY (strategy, symbol));
            CREATE TABLE IF NOT EXISTS fill_cursors (
                connector TEXT PRIMARY KEY, session INTEGER NOT NULL, applied INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS session_ledgers (
                session_id TEXT PRIMARY KEY, updated_ns INTEGER NOT NULL, ledger TEXT NOT NULL);
        """)

    def save_order(self, record: OrderRecord, ledger: SessionLedger | None = None) -> None:
        """The order, and the session's ledger (``session_ledger.py``) in the same transaction."""
        if ledger is not None:
            with self._db:
                self._db.execute("BEGIN")
                self._save_order(record)
                self.save_ledger(ledger)
            return
        self._save_order(record)

    def _save_order(self, record: OrderRecord) -> None:
        self._db.execute(
            "INSERT INTO orders VALUES (?, ?, ?, ?) ON CONFLICT(client_order_id) DO UPDATE SET "
            "open = excluded.open, updated_ns = excluded.updated_ns, record = excluded.record",
            (record.client_order_id, int(record.status.is_open), record.updated_ns, _RECORD.encode(record).decode()))

    def save_fill(self, fill: proto.Fill, record: OrderRecord, position: Position,
                  strategies: Mapping[tuple[str, str], float] | None = None,
                  cursor: tuple[str, int, int] | None = None, ledger: SessionLedger | None = None) -> None:
        """The fill's id, its order, the position and the strategies' positions it changed, its
        connector's fill cursor (connector, session, applied: as they were when the fill was
        applied, never later) and the session's ledger, in one transaction: a restart never finds
        the fill applied without its PnL in the session, or the other way round."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR IGNORE INTO fills (fill_id) VALUES (?)", (fill.fill_id,))
            if cursor is not None:
                self.save_cursor(*cursor)
            self._save_order(record)
            if ledger is not None:
                self.save_ledger(ledger)
            self.save_positions({fill.symbol: position})
            self._db.executemany(
                "INSERT INTO strategy_positions VALUES (?, ?, ?) ON CONFLICT(strategy, symbol) DO UPDATE SET "
                "qty = excluded.qty", [(strategy, symbol, qty) for (strategy, symbol), qty in (strategies or {}).items()])

    def save_positions(self, positions: dict[str, Position]) -> None:
        self._db.executemany(
            "INSERT INTO positions VALUES (?, ?) ON CONFLICT(symbol) DO UPDATE SET position = excluded.position",
            [(symbol, json.dumps(p.to_dict())) for symbol, p in positions.items()])

    def save_cursor(self, connector: str, session: int, applied: int) -> None:
        """Numbers, not the live ``FillCursor``: a held write must save the cursor as it was then."""
        self._db.execute(
            "INSERT INTO fill_cursors VALUES (?, ?, ?) ON CONFLICT(connector) DO UPDATE SET "
            "session = excluded.session, applied = excluded.applied", (connector, session, applied))

    def save_ledger(self, ledger: SessionLedger) -> None:
        self._db.execute(
            "INSERT INTO session_ledgers VALUES (?, ?, ?) ON CONFLICT(session_id) DO UPDATE SET "
            "updated_ns = excluded.updated_ns, ledger = excluded.ledger",
            (ledger.session_id or "", time.time_ns(), json.dumps(ledger.to_dict())))

    def load_ledger(self, session_id: str | None = None) -> SessionLedger | None:
        """The ledger of ``session_id``, or the latest one written (None: none)."""
        row = self._db.execute(
            "SELECT ledger FROM session_ledgers ORDER BY updated_ns DESC LIMIT 1" if session_id is None else
            "SELECT ledger FROM session_ledgers WHERE session_id = ?", () if session_id is None else (session_id,)
        ).fetchone()
        return None if row is None else SessionLedger.from_dict(json.loads(row[0]))

    def load_cursors(self) -> dict[str, FillCursor]:
        return {connector: FillCursor(session, applied)
                for connector, session, applied in self._db.execute("SELECT connector, session, applied FROM fill_cursors")}

    def load(self) -> tuple[list[OrderRecord], dict[str, Position], list[str]]:
        """Orders (open ones and the latest closed), positions, and the applied fill ids."""
        self._prune()
        orders = [_decode_record(row[0]) for row in self._db.execute("SELECT record FROM orders ORDER BY updated_ns")]
        positions = {symbol: Position(**json.loads(data))
                     for symbol, data in self._db.execute("SELECT symbol, position FROM positions")}
        fill_ids = [row[0] for row in self._db.execute("SELECT fill_id FROM fills ORDER BY seq")]
        return orders, positions, fill_ids

    def load_strategy_positions(self) -> dict[str, dict[str, float]]:
        held: dict[str, dict[str, float]] = {}
        for strategy, symbol, qty in self._db.execute("SELECT strategy, symbol, qty FROM strategy_positions"):
            held.setdefault(strategy, {})[symbol] = qty
        return held

    def _prune(self) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "DELETE FROM orders WHERE open = 0 AND client_order_id NOT IN (SELECT client_order_id FROM "
                "orders WHERE open = 0 ORDER BY updated_ns DESC LIMIT ?)", (KEEP_CLOSED_ORDERS,))
            self._db.execute("DELETE FROM fills WHERE seq <= (SELECT MAX(seq) FROM fills) - ?", (KEEP_FILL_IDS,))
            self._db.execute(
                "DELETE FROM session_ledgers WHERE session_id NOT IN (SELECT session_id FROM session_ledgers "
                "ORDER BY updated_ns DESC LIMIT ?)", (KEEP_SESSION_LEDGERS,))

    def close(self) -> None:
        self._db.close()


def _decode_record(text: str) -> OrderRecord:
    """A journalled order; one written before the record embedded its order (flat: every field at
    the top) is read as well, so an upgrade restarts with the orders it had open."""
    data = msgspec.json.decode(text)
    if "order" not in data:
        data = {"order": {k: v for k, v in data.items() if k in _ORDER_FIELDS},
                **{k: v for k, v in data.items() if k not in _ORDER_FIELDS}}
    return msgspec.convert(data, OrderRecord)
