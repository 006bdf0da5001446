"""The venue simulator's exchange API, driven by ccxt's own ``binance`` class, unmodified but for its
URLs: what ccxt calls for spot trading is served by the simulator's matching engine, signed
requests are verified, and errors come back as the exceptions ccxt raises against Binance.

One real venue simulator under a real supervisord (the other programs are not needed), its API on a
free loopback port; the native ``proto`` face is asked too, to show both faces hold one book.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import ccxt
import pytest
from integration.daemon import Daemon, wait_until
from integration.e2e import ask

KEY, SECRET = "itest-api-key", "itest-api-secret"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def venue() -> Iterator[tuple[Daemon, str]]:
    port = _free_port()
    d = Daemon(config={"venue_sim": {"exchange_api": {"enabled": True, "port": port, "api_key": KEY},
                                     "quotes_per_s": 20.0, "jump_probability_per_s": 0.0}},
               environment={"TRADING_VENUE_SIM__EXCHANGE_API__API_SECRET": SECRET}, only=["venue_sim"])
    try:
        d.start()
        # every symbol quoted (its touch known) before an order
        wait_until(lambda: d.request("venue_sim", "status")["stats"]["quotes_published"] >= 6, 15)
        yield d, f"http://127.0.0.1:{port}/api/v3"
    finally:
        d.close()
    assert not d.leftover_processes(), "processes left behind"


def binance(url: str, secret: str = SECRET, key: str = KEY) -> ccxt.binance:
    """ccxt's Binance class pointed at the simulator: its URLs, and the spot markets only."""
    exchange = ccxt.binance({"apiKey": key, "secret": secret, "enableRateLimit": False,
                             "options": {"fetchMarkets": ["spot"], "fetchCurrencies": False, "fetchMargins": False,
                                         "warnOnFetchOpenOrdersWithoutSymbol": False}})
    exchange.urls["api"] = {**exchange.urls["api"], "public": url, "private": url}
    return exchange


def test_markets_quotes_and_book_are_the_simulators(venue: tuple[Daemon, str]) -> None:
    d, url = venue
    ex = binance(url)
    markets = ex.load_markets()
    assert {"BTC/USD", "ETH/USD", "SOL/USD"} <= set(markets)
    btc = markets["BTC/USD"]
    assert btc["spot"] and btc["active"] and btc["id"] == "BTCUSD"
    ours = {i["symbol"]: i for i in ask(d, "venue_sim", "instruments")["instruments"]}["BTC-USD"]
    assert btc["precision"]["price"] == ours["tick_size"] and btc["precision"]["amount"] == ours["lot_size"]
    assert btc["limits"]["cost"]["min"] == ours["min_notional"]
    book = ex.fetch_order_book("BTC/USD")
    bid, ask_ = book["bids"][0][0], book["asks"][0][0]
    assert 0 < bid < ask_
    tickers = ex.fetch_bids_asks(["BTC/USD"])
    assert 0 < tickers["BTC/USD"]["bid"] < tickers["BTC/USD"]["ask"]


def test_orders_trades_and_balances_through_ccxt(venue: tuple[Daemon, str]) -> None:
    d, url = venue
    ex = binance(url)
    ex.load_markets()
    before = ex.fetch_balance()
    touch = ex.fetch_order_book("ETH/USD")
    bid = touch["bids"][0][0]
    # a limit buy away from the touch rests: ccxt's client order id is the venue's
    resting = ex.create_order("ETH/USD", "limit", "buy", 0.5, round(bid * 0.95, 2), {"clientOrderId": "itest-rest-1"})
    assert resting["status"] == "open" and resting["clientOrderId"] == "itest-rest-1"
    assert [o["clientOrderId"] for o in ex.fetch_open_orders("ETH/USD")] == ["itest-rest-1"]
    # the native face trades another account of the same venue: it does not see this one's orders
    assert "itest-rest-1" not in {o["client_order_id"] for o in ask(d, "venue_sim", "open_orders")["orders"]}
    locked = ex.fetch_balance()["USD"]
    assert locked["used"] == pytest.approx(0.5 * round(bid * 0.95, 2))
    cancelled = ex.cancel_order(resting["id"], "ETH/USD")
    assert cancelled["status"] == "canceled" and ex.fetch_open_orders("ETH/USD") == []
    # a market buy fills at once, with its trades, and moves the balances
    filled = ex.create_order("ETH/USD", "market", "buy", 0.25, None, {"clientOrderId": "itest-mkt-1"})
    assert filled["status"] == "closed" and filled["filled"] == pytest.approx(0.25) and filled["trades"]
    trades = ex.fetch_my_trades("ETH/USD")
    mine = [t for t in trades if t["order"] == filled["id"]]
    assert mine and sum(t["amount"] for t in mine) == pytest.approx(0.25)
    # fetch_my_trades from a trade id (the cursor an adapter keeps): that one and what follows
    assert [t["id"] for t in ex.fetch_my_trades("ETH/USD", params={"fromId": mine[0]["id"]})][:1] == [mine[0]["id"]]
    after = ex.fetch_balance()
    assert after["ETH"]["total"] == pytest.approx(before["ETH"]["total"] + 0.25)
    cost = sum(t["cost"] + t["fee"]["cost"] for t in mine)
    assert after["USD"]["total"] == pytest.approx(before["USD"]["total"] - cost)
    assert ex.fetch_order(filled["id"], "ETH/USD")["status"] == "closed"
    # cancel everything of a symbol
    for n in range(2):
        ex.create_order("SOL/USD", "limit", "sell", 1.0, round(ex.fetch_order_book("SOL/USD")["asks"][0][0] * 1.05, 2),
                        {"clientOrderId": f"itest-sol-{n}"})
    assert len(ex.cancel_all_orders("SOL/USD")) == 2 and ex.fetch_open_orders("SOL/USD") == []


def test_venue_refusals_are_the_exceptions_ccxt_raises_against_binance(venue: tuple[Daemon, str]) -> None:
    d, url = venue
    ex = binance(url)
    ex.load_markets()
    with pytest.raises(ccxt.InsufficientFunds):  # more BTC than the account holds
        ex.create_order("BTC/USD", "market", "sell", 500.0)
    bid = round(ex.fetch_order_book("BTC/USD")["bids"][0][0], 2)
    # filter failures, as Binance words them and ccxt reads them: NOTIONAL is a BadRequest to ccxt,
    # LOT_SIZE an InvalidOrder (both ExchangeErrors: "rejected" to an adapter)
    with pytest.raises(ccxt.BadRequest, match="Filter failure: NOTIONAL"):
        ex.create_order("BTC/USD", "limit", "buy", 0.00001, bid)
    with pytest.raises(ccxt.InvalidOrder, match="LOT_SIZE"):
        ex.create_order("BTC/USD", "limit", "buy", 0.012345, bid, {"quantity": "0.0123456"})
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order("999", "BTC/USD")
    with pytest.raises(ccxt.ExchangeError):  # nothing to cancel
        ex.cancel_order("999", "BTC/USD")
    with pytest.raises(ccxt.AuthenticationError):  # a request signed with another secret
        binance(url, secret="not-the-secret").fetch_balance()
    with pytest.raises(ccxt.AuthenticationError):
        binance(url, key="not-the-key-at-all").fetch_balance()
    assert ask(d, "venue_sim", "fault", fault="rate_limit", duration_s=1.0) == {"fault": "rate_limit"}
    with pytest.raises(ccxt.DDoSProtection):  # ccxt's RateLimitExceeded is one
        ex.fetch_balance()
    wait_until(lambda: _serves(ex), 5)  # the 429s end with the fault's second
    refused: dict[str, Any] = d.request("venue_sim", "status")["stats"]["exchange_api"]["refused"]
    assert refused["bad_signature"] >= 1 and refused["bad_key"] >= 1 and refused["rate_limited"] >= 1, refused


def test_an_outage_refuses_connections_then_serves_again(venue: tuple[Daemon, str]) -> None:
    d, url = venue
    ex = binance(url)
    ex.load_markets()
    assert ask(d, "venue_sim", "fault", fault="drop_connection", duration_s=1.5) == {"fault": "drop_connection"}
    wait_until(lambda: _refused(ex), 3)
    assert wait_until(lambda: _serves(ex), 5)


def _refused(ex: ccxt.binance) -> bool:
    try:
        ex.fetch_balance()
    except ccxt.NetworkError:
        return True
    return False


def _serves(ex: ccxt.binance) -> bool:
    try:
        return ex.fetch_balance()["USD"]["total"] > 0
    except ccxt.NetworkError:
        return False
