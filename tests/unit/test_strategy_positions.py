"""services.exchange_manager.strategy_positions: how the book attributes fills to strategies, and
that the attribution survives a restart (the journal)."""

from __future__ import annotations

from pathlib import Path

import pytest
from unit_support import enter

import proto
from proto import Side
from proto.commands import OrderArgs
from services.exchange_manager.journal import OrderJournal
from services.exchange_manager.order_book import OrderBook
from services.exchange_manager.strategy_positions import FLATTEN, StrategyPositions
from services.positions import Position


def test_a_fill_counts_for_its_orders_strategy() -> None:
    book = StrategyPositions()
    assert book.apply("mm", "ETH-USD", 0.3) == {("mm", "ETH-USD"): 0.3}
    assert book.apply("meanrev", "ETH-USD", -0.1) == {("meanrev", "ETH-USD"): -0.1}
    assert book.apply("mm", "ETH-USD", -0.3) == {("mm", "ETH-USD"): 0.0}
    assert book.of("mm") == {} and book.of("meanrev") == {"ETH-USD": -0.1} and book.of("nobody") == {}


def test_a_flatten_closes_the_strategies_positions_largest_first_and_flat_means_everyone() -> None:
    book = StrategyPositions({"a": {"BTC-USD": 0.2}, "b": {"BTC-USD": 0.5}, "c": {"BTC-USD": -0.1},
                              "d": {"ETH-USD": 1.0}})
    # the account is long 0.6 BTC: the flatten sells 0.6 in two fills
    assert book.apply(FLATTEN, "BTC-USD", -0.4, account_after=0.2) == {("b", "BTC-USD"): pytest.approx(0.1)}
    assert book.of("c") == {"BTC-USD": -0.1}, "a position on the flatten's own side is not the flatten's to close"
    # the last fill leaves the account flat: b's long and c's short netted out in it
    changed = book.apply(FLATTEN, "BTC-USD", -0.2, account_after=0.0)
    assert changed == {("a", "BTC-USD"): 0.0, ("b", "BTC-USD"): 0.0, ("c", "BTC-USD"): 0.0}
    assert book.of("a") == book.of("b") == book.of("c") == book.of(FLATTEN) == {}
    assert book.of("d") == {"ETH-USD": 1.0}


def test_what_a_flatten_takes_beyond_the_strategies_stays_with_it() -> None:
    book = StrategyPositions({"a": {"BTC-USD": 0.1}})
    assert book.apply(FLATTEN, "BTC-USD", -0.3) == {("a", "BTC-USD"): 0.0, (FLATTEN, "BTC-USD"): pytest.approx(-0.2)}


def test_strategy_positions_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "em.sqlite"
    journal = OrderJournal(path, fsync_per_order=False)
    book, held = OrderBook("a"), StrategyPositions()
    record = enter(book, OrderArgs(symbol="BTC-USD", side=Side.BUY, qty=0.5, strategy="mm"), "sim")
    fill = proto.Fill(fill_id="F1", client_order_id=record.client_order_id, symbol="BTC-USD", side=Side.BUY,
                      qty=0.5, price=100.0, fee=0.0, ts_ns=1)
    book.apply_fill(fill)
    position = Position()
    position.apply_fill(1, 0.5, 100.0, 0.0)
    journal.save_fill(fill, record, position, held.apply("mm", "BTC-USD", 0.5))
    journal.close()
    assert OrderJournal(path, fsync_per_order=False).load_strategy_positions() == {"mm": {"BTC-USD": 0.5}}
