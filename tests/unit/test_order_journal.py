"""services/exchange_manager/journal.py: the book of record survives a restart and a kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from unit_support import enter

import proto
from proto import OrderStatus, Side
from proto.commands import OrderArgs
from services.exchange_manager.journal import OrderJournal
from services.exchange_manager.order_book import OrderBook
from services.positions import Position

REPO = Path(__file__).resolve().parents[2]


def fill(cid: str, fill_id: str, qty: float, price: float) -> proto.Fill:
    return proto.Fill(fill_id=fill_id, client_order_id=cid, symbol="BTC-USD", side=Side.BUY, qty=qty,
                      price=price, fee=0.1, ts_ns=1)


def test_orders_positions_and_fill_ids_come_back(tmp_path: Path) -> None:
    path = tmp_path / "em.sqlite"
    journal = OrderJournal(path, fsync_per_order=False)
    book = OrderBook("a")
    filled = enter(book, OrderArgs(symbol="BTC-USD", side=Side.BUY, qty=2.0), "sim")
    journal.save_order(filled)
    resting = enter(book, OrderArgs(symbol="BTC-USD", side=Side.SELL, qty=1.0, order_type="limit",
                                 limit_price=50_000.0), "sim")
    journal.save_order(resting)
    position = Position()
    f = fill(filled.client_order_id, "F1", 2.0, 40_000.0)
    record = book.apply_fill(f)
    assert record is not None
    position.apply_fill(1, 2.0, 40_000.0, 0.1)
    journal.save_fill(f, record, position)
    journal.close()

    orders, positions, fill_ids = OrderJournal(path, fsync_per_order=False).load()
    restored = OrderBook("b")
    restored.restore(orders, fill_ids)
    assert {o.client_order_id: o.status for o in orders} == {
        filled.client_order_id: OrderStatus.FILLED, resting.client_order_id: OrderStatus.NEW}
    assert [o.client_order_id for o in restored.open_orders()] == [resting.client_order_id]
    assert positions["BTC-USD"] == position
    assert restored.apply_fill(f) is None  # the fill id is known: never applied twice
    assert restored.submitted == 2 and restored.fills == 1
    # a new book (new process) never reuses an id of the old one
    assert enter(restored, OrderArgs(symbol="BTC-USD", side=Side.BUY, qty=1.0), "sim").client_order_id not in {
        o.client_order_id for o in orders}


def test_an_order_saved_before_sending_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "em.sqlite"
    child = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from proto import Side
        from proto.commands import OrderArgs
        from services.exchange_manager.journal import OrderJournal
        from services.exchange_manager.order_book import OrderBook
        journal = OrderJournal(Path({str(path)!r}), fsync_per_order=False)
        record = OrderBook("k").make(OrderArgs(symbol="ETH-USD", side=Side.BUY, qty=1.0), "sim")  # saved before it enters the book
        journal.save_order(record)
        print(record.client_order_id, flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        cid = proc.stdout.readline().strip()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    orders, _, _ = OrderJournal(path, fsync_per_order=False).load()
    assert [(o.client_order_id, o.status) for o in orders] == [(cid, OrderStatus.NEW)]


def test_the_fill_cursor_is_journalled_with_each_fill(tmp_path: Path) -> None:
    """The venue fill number up to which every fill was applied is written in the same transaction
    as the fill itself: after a kill -9 the book and the number agree, and a reconciliation asks the
    venue only for the fills after it."""
    from services.exchange_manager.fill_cursor import FillCursor

    path = tmp_path / "em.sqlite"
    journal = OrderJournal(path, fsync_per_order=False)
    book = OrderBook("a")
    record = enter(book, OrderArgs(symbol="BTC-USD", side=Side.BUY, qty=2.0), "sim")
    journal.save_order(record)
    cursor = FillCursor(session=42)
    position = Position()
    for n in (1, 2):
        f = proto.Fill(fill_id=f"F{n}", client_order_id=record.client_order_id, symbol="BTC-USD", side=Side.BUY,
                       qty=1.0, price=100.0, fee=0.0, ts_ns=1, venue_seq=n)
        applied = book.apply_fill(f)
        assert applied is not None
        cursor.advance(n, f.fill_id)
        position.apply_fill(1, 1.0, 100.0, 0.0)
        journal.save_fill(f, applied, position, cursor=("sim", cursor.session, cursor.applied))
    journal.save_cursor("other", 5, 9)
    journal.close()

    cursors = OrderJournal(path, fsync_per_order=False).load_cursors()
    assert {name: (c.session, c.applied) for name, c in cursors.items()} == {"sim": (42, 2), "other": (5, 9)}


def test_the_record_comes_back_as_it_was_sent_and_an_older_flat_row_is_read(tmp_path: Path) -> None:
    """The journal keeps the record itself (its order, the struct sent to the venue, and what became
    of it); a row written by the previous version (every field at the top) is read as well, so an
    upgrade restarts with the orders it had open."""
    import json
    import sqlite3

    path = tmp_path / "em.sqlite"
    journal = OrderJournal(path, fsync_per_order=False)
    record = enter(OrderBook("a"), OrderArgs(symbol="BTC-USD", side=Side.SELL, qty=0.5, order_type="limit",
                                             limit_price=41_000.0, strategy="mm", reduce_only=True,
                                             origin_ts_ns=77), "sim")
    record.cancel_requested, record.venue_order_id = True, "v-9"
    journal.save_order(record)
    journal.close()
    legacy = {"client_order_id": "old-1", "symbol": "ETH-USD", "side": "buy", "qty": 1.0, "order_type": "market",
              "limit_price": None, "strategy": "mr", "connector": "sim", "status": "acknowledged",
              "filled_qty": 0.0, "avg_fill_price": 0.0, "venue_order_id": "v-1", "reason": "", "created_ns": 5,
              "updated_ns": 6, "cancel_requested": False, "reduce_only": False}
    db = sqlite3.connect(path)
    db.execute("INSERT INTO orders VALUES (?, 1, 6, ?)", ("old-1", json.dumps(legacy)))
    db.commit()
    db.close()

    orders, _, _ = OrderJournal(path, fsync_per_order=False).load()
    by_id = {o.client_order_id: o for o in orders}
    assert by_id[record.client_order_id] == record
    old = by_id["old-1"]
    assert (old.symbol, old.side, old.qty, old.strategy, old.connector, old.status, old.venue_order_id,
            old.created_ns) == ("ETH-USD", Side.BUY, 1.0, "mr", "sim", OrderStatus.ACKNOWLEDGED, "v-1", 5)
    assert old.to_dict() == {**legacy, "side": "buy", "origin_ts_ns": 0, "fills_missing": False}
