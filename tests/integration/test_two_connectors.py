"""Two connectors in one session (deploy/sim-and-ccxt.toml), orders routed by instrument: BTC-USD
through the simulator's native connector, ETH-USD through ccxt's Binance class against the
simulator's Binance API (another account of the same venue).

Shown: both connectors connected and reported; each strategy's orders reach its symbol's venue and
no other; each venue's account holds exactly the book's position in its own symbols; an order that
names the other connector is refused; a failsafe flattens both venues and verifies them flat.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ccxt
import pytest
from deploy.temp_daemon import free_port
from integration.daemon import Daemon, wait_until
from integration.e2e import ask, em_stats, submit, wait_routed
from integration.test_ccxt_venue import CREDENTIALS, _em_qty as _book, _exchange

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "sim-and-ccxt.toml"
CCXT = "binance-sim"


def two_venues_config(port: int) -> dict[str, Any]:
    config = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    config["venue_sim"]["exchange_api"]["port"] = port
    url = f"http://127.0.0.1:{port}/api/v3"
    connector = next(c for c in config["exchange_manager"]["connectors"] if c["name"] == CCXT)
    connector["urls"] = {"public": url, "private": url}
    return config


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    d = Daemon(config=two_venues_config(free_port()), environment=CREDENTIALS)
    try:
        d.start()
        yield d
    finally:
        d.close()
    assert not d.leftover_processes(), "processes left behind"


def _venues(d: Daemon, exchange: ccxt.binance) -> dict[str, float]:
    """Each venue's own account, asked on its own face: BTC-USD at the native one, ETH-USD held beyond
    the inventory at the Binance one (ccxt's fetch_balance), to 1e-9."""
    native = ask(d, "venue_sim", "positions")["positions"]
    held = {"BTC-USD": native.get("BTC-USD", {}).get("qty", 0.0),
            "ETH-USD": exchange.fetch_balance()["total"].get("ETH", 0.0) - 100.0}
    return {s: round(q, 9) for s, q in held.items() if round(q, 9)}


def test_each_symbol_trades_at_its_venue_and_the_book_agrees_with_both(daemon: Daemon) -> None:
    d = daemon
    d.wait_state("live", timeout=45)
    connectors = em_stats(d)["connectors"]
    assert set(connectors) == {"sim", CCXT} and all(c["connected"] for c in connectors.values()), connectors
    # both strategies trade, each through its symbol's connector and no other
    wait_until(lambda: {o["symbol"] for o in _filled(d)} >= {"BTC-USD", "ETH-USD"}, 90, message=lambda: d.diagnostics())
    routes = {(o["symbol"], o["connector"]) for o in ask(d, "exchange_manager", "orders")["orders"]}
    assert routes <= {("BTC-USD", "sim"), ("ETH-USD", CCXT)}, routes
    exchange = _exchange(d)
    wait_until(lambda: _book(d) == _venues(d, exchange), 20, interval=0.5,
               message=lambda: f"book {_book(d)} vs venues {_venues(d, exchange)}")
    assert ask(d, "exchange_manager", "instruments")["routes"] == {"ETH-USD": CCXT}


def test_an_order_naming_the_other_connector_is_refused(daemon: Daemon) -> None:
    d = daemon
    wait_routed(d, "ETH-USD")
    reply = submit(d, "ETH-USD", "buy", 0.01, strategy="itest", connector="sim")
    assert not reply.ok and "ETH-USD trades through connector 'binance-sim', not 'sim'" in reply.error, reply.error


def test_a_failsafe_flattens_both_venues(daemon: Daemon) -> None:
    d = daemon
    exchange = _exchange(d)
    wait_until(lambda: _venues(d, exchange), 60, message=lambda: d.diagnostics())  # something to flatten
    res = d.tradectl("failsafe", "--reason", "two venues test")
    assert res.returncode == 0, res.stderr
    wait_until(lambda: d.status()["failsafe_pending"] is None, 40, message=lambda: d.diagnostics())
    assert _venues(d, exchange) == {} and _book(d) == {}
    assert ask(d, "venue_sim", "open_orders")["orders"] == [] and exchange.fetch_open_orders("ETH/USD") == []


def _filled(d: Daemon) -> list[dict[str, Any]]:
    return [o for o in ask(d, "exchange_manager", "orders")["orders"] if o["filled_qty"] > 0]
