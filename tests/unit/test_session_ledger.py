"""The exchange manager's per-session counters (services/exchange_manager/session_ledger.py) and their
journal (services/exchange_manager/journal.py): totals are the sums of the rows, a carried position
counts from its opening mark, and a restart finds the session's counts as they were."""

from __future__ import annotations

from pathlib import Path

import pytest

import proto
from services.exchange_manager.journal import OrderJournal
from services.exchange_manager.order_book import OrderBook
from services.exchange_manager.session_ledger import AVERAGE_PRICE, FIRST_MARK, MARK_AT_START, SessionLedger
from services.positions import Position
from proto.commands import OrderArgs
from unit_support import enter


def test_totals_are_the_sums_of_the_rows() -> None:
    ledger = SessionLedger("s1")
    fills = [("BTC-USD", 1, 0.02, 40_000.0, 0.08), ("BTC-USD", -1, 0.01, 40_100.0, 0.04),
             ("ETH-USD", 1, 0.3, 3_000.0, 0.09), ("ETH-USD", -1, 0.3, 2_990.0, 0.09), ("SOL-USD", 1, 2.0, 150.0, 0.03)]
    for symbol, sign, qty, price, fee in fills:
        ledger.order(symbol)
        ledger.fill(symbol, sign, qty, price, fee, 0.0)
    ledger.rejected("SOL-USD")
    report = ledger.report({"BTC-USD": 40_050.0, "SOL-USD": 151.0})
    rows, totals = report["symbols"], report["totals"]
    for key in ("orders", "rejected", "fills", "volume", "fees", "realized_pnl", "unrealized_pnl"):
        assert totals[key] == pytest.approx(sum(row[key] for row in rows.values())), key
    assert (totals["orders"], totals["rejected"], totals["fills"]) == (5, 1, 5)
    # BTC: bought 0.02 at 40,000, sold 0.01 at 40,100: +1.00 realized less 0.12 of fees
    assert rows["BTC-USD"]["realized_pnl"] == pytest.approx(1.0 - 0.12)
    assert rows["BTC-USD"]["unrealized_pnl"] == pytest.approx(0.01 * 50.0)
    assert rows["ETH-USD"]["realized_pnl"] == pytest.approx(-3.0 - 0.18) and rows["ETH-USD"]["final_qty"] == 0


def test_a_carried_position_counts_from_its_mark_at_the_session_start() -> None:
    held = {"BTC-USD": Position(qty=0.01, avg_price=39_000.0, realized_pnl=123.0, fees=5.0, volume=9e5),
            "ETH-USD": Position(qty=-0.5, avg_price=3_100.0), "SOL-USD": Position()}
    ledger = SessionLedger.open("s2", held, {"BTC-USD": 40_000.0})
    rows = ledger.report({})["symbols"]
    assert set(rows) == {"BTC-USD", "ETH-USD"}  # a flat symbol opens no row
    btc = rows["BTC-USD"]
    assert (btc["opening_qty"], btc["opening_mark"], btc["opening_mark_source"]) == (0.01, 40_000.0, MARK_AT_START)
    # nothing of the earlier sessions: no realized PnL, fees or volume carried over
    assert (btc["realized_pnl"], btc["fees"], btc["volume"], btc["orders"], btc["fills"]) == (0, 0, 0, 0, 0)
    assert ledger.report({"BTC-USD": 40_200.0})["symbols"]["BTC-USD"]["unrealized_pnl"] == pytest.approx(2.0)
    # ETH had no mark at the start: the first one heard is its opening mark
    ledger.mark("ETH-USD", 3_050.0)
    ledger.mark("ETH-USD", 3_000.0)
    eth = ledger.report({"ETH-USD": 3_000.0})["symbols"]["ETH-USD"]
    assert (eth["opening_mark"], eth["opening_mark_source"]) == (3_050.0, FIRST_MARK)
    assert eth["unrealized_pnl"] == pytest.approx(-0.5 * (3_000.0 - 3_050.0))
    # closing the carried BTC realizes against the opening mark, not the old average price
    ledger.fill("BTC-USD", -1, 0.01, 40_100.0, 0.04, 39_000.0)
    assert ledger.report({})["symbols"]["BTC-USD"]["realized_pnl"] == pytest.approx(1.0 - 0.04)


def test_a_fill_before_any_mark_opens_at_the_average_price() -> None:
    ledger = SessionLedger.open("s3", {"SOL-USD": Position(qty=2.0, avg_price=148.0)}, {})
    ledger.fill("SOL-USD", -1, 2.0, 150.0, 0.0, 148.0)
    row = ledger.report({})["symbols"]["SOL-USD"]
    assert (row["opening_mark"], row["opening_mark_source"]) == (148.0, AVERAGE_PRICE)
    assert row["realized_pnl"] == pytest.approx(4.0) and row["final_qty"] == 0


def test_a_reconciliation_correction_moves_the_session_position() -> None:
    ledger = SessionLedger.open("s4", {"BTC-USD": Position(qty=0.01, avg_price=40_000.0)}, {"BTC-USD": 40_000.0})
    ledger.corrected("BTC-USD", 0.0)
    row = ledger.report({"BTC-USD": 41_000.0})["symbols"]["BTC-USD"]
    assert (row["final_qty"], row["unrealized_pnl"], row["corrections"]) == (0.0, 0.0, 1)


def test_the_journal_keeps_the_session_with_its_fills_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "em.sqlite"
    journal = OrderJournal(path, fsync_per_order=False)
    book = OrderBook("t")
    ledger = SessionLedger("s5")
    record = enter(book, OrderArgs(symbol="BTC-USD", side=proto.Side.BUY, qty=0.01))
    ledger.order("BTC-USD")
    journal.save_order(record, ledger)
    fill = proto.Fill(fill_id="f1", client_order_id=record.client_order_id, symbol="BTC-USD", side=proto.Side.BUY,
                      qty=0.01, price=40_000.0, fee=0.04, ts_ns=1)
    position = Position()
    ledger.fill("BTC-USD", 1, 0.01, 40_000.0, 0.04, position.avg_price)
    position.apply_fill(1, 0.01, 40_000.0, 0.04)
    journal.save_fill(fill, book.apply_fill(fill), position, ledger=ledger)
    journal.close()
    again = OrderJournal(path, fsync_per_order=False)
    restored = again.load_ledger()
    assert restored is not None and restored.session_id == "s5"
    assert restored.report({}) == ledger.report({})
    assert again.load_ledger("s5") is not None and again.load_ledger("other") is None
    again.close()
