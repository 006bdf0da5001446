"""The ccxt connector's one path for reports, whichever of polling and streams brings them first:
trades numbered once each (``services.venues.ccxt.fills.FillNumbering``), a read moving a symbol's
cursor and a stream not (a stream can lose a trade; polling must still find it), streamed trades
held while a mass status is read and numbered after its own; an order's reports only moving forward
(``CcxtExecutionClient._take_order``); an amount snapped to the lot grid before ccxt truncates it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import proto
from bus.reactor import Reactor
from services.venues.ccxt.execution import CcxtExecutionClient
from services.venues.ccxt.fills import FillNumbering
from services.venues.settings import CcxtConnectorSettings


def trade(trade_id: int, ms: int, qty: float = 1.0) -> tuple[dict[str, Any], str]:
    return ({"id": str(trade_id), "timestamp": ms, "symbol": "BTC/USD", "side": "buy", "amount": qty,
             "price": 100.0, "fee": {"cost": 0.1, "currency": "USD"}}, f"c{trade_id}")


def numbering() -> tuple[FillNumbering, list[proto.Fill]]:
    fills: list[proto.Fill] = []
    return FillNumbering("ccxt", lambda unified: ("BTC-USD", "USD") if unified == "BTC/USD" else None,
                         fills.append), fills


def test_a_trade_is_numbered_once_whichever_path_brings_it() -> None:
    n, fills = numbering()
    assert [f.venue_seq for f in n.take([trade(2, 1002), trade(1, 1001)], cursor=False)] == [1, 2]  # oldest first
    assert n.take([trade(1, 1001), trade(2, 1002), trade(3, 1003)]) == fills[2:]  # a poll: only the new one
    assert [(f.fill_id, f.venue_seq) for f in fills] == [("1", 1), ("2", 2), ("3", 3)]


def test_only_a_read_moves_the_cursor() -> None:
    n, _ = numbering()
    n.take([trade(5, 5000)], cursor=False)  # streamed: trade 4 (at 4000) may have been lost
    assert n.since_ms.get("BTC-USD") is None
    n.take([trade(4, 4000), trade(5, 5000)])  # a read from the cursor finds it
    assert n.since_ms["BTC-USD"] == 5000 and n.seq == 2


def test_streamed_trades_wait_for_the_mass_status_to_number_its_own() -> None:
    n, _ = numbering()
    n.take([trade(1, 1000)])
    n.hold([trade(3, 1009), trade(2, 1004)])  # streamed while the mass status reads
    # its reads: trade 2 before the balances' time (1005), trade 3 after it
    assert n.number_snapshot([trade(1, 1000)], [trade(1, 1000), trade(2, 1004), trade(3, 1009)], 1005) == 2
    # trade 3, after the balances, waits with the streamed ones until the run has its verdict
    assert n.seq == 2 and [f.venue_seq for f in n.release()] == [3]
    n.hold([trade(4, 1010)])
    assert [f.venue_seq for f in n.release()] == [4]


def test_a_mass_status_that_cannot_tell_asks_again() -> None:
    n, _ = numbering()
    assert n.number_snapshot([], [trade(1, 1005)], 1005) is None  # a trade in the balances' very millisecond
    assert n.number_snapshot([], [trade(1, 1005)], 1005) == 1  # read again: nothing new, the answer stands


class Events:
    def __init__(self) -> None:
        self.updates: list[proto.OrderUpdate] = []

    def on_order_update(self, update: proto.OrderUpdate) -> None:
        self.updates.append(update)

    def on_fill(self, fill: proto.Fill) -> None: ...

    def on_connected(self, connector: Any) -> None: ...

    def on_in_doubt(self, connector: Any, client_order_id: str) -> None: ...


def connector() -> tuple[CcxtExecutionClient, Events]:
    events = Events()
    cfg = CcxtConnectorSettings(name="ccxt", kind="ccxt", exchange="binance")
    client = CcxtExecutionClient(cfg, SimpleNamespace(reactor=Reactor()), events)  # type: ignore[arg-type]
    client._map_markets({"BTC/USD": {"spot": True, "base": "BTC", "quote": "USD", "precision": {"amount": 0.00001}}})
    return client, events


def order(status: str, filled: float) -> dict[str, Any]:
    return {"clientOrderId": "o1", "id": "9", "symbol": "BTC/USD", "side": "buy", "type": "limit", "amount": 1.0,
            "price": 100.0, "status": status, "filled": filled, "average": 100.0}


def test_an_orders_reports_only_move_forward() -> None:
    client, events = connector()
    for status, filled in [("open", 0.0), ("open", 0.5), ("open", 0.0), ("open", 0.5), ("closed", 1.0),
                           ("open", 0.5), ("closed", 1.0)]:
        client._take_order(order(status, filled))  # a stream and a poll, in any order
    assert [(u.status.value, u.filled_qty) for u in events.updates] == [
        ("acknowledged", 0.0), ("partially_filled", 0.5), ("filled", 1.0)]


def test_an_amount_is_snapped_to_the_lot_grid_before_ccxt_truncates_it() -> None:
    client, _ = connector()
    assert client._on_lot_grid("BTC-USD", 0.01 + 0.001 - 0.001) == 0.01  # 0.009999999999999998
    assert client._on_lot_grid("BTC-USD", 0.012345) == 0.012345  # off the grid: the venue's to refuse
