"""The venue simulator's exchange API, driven by ccxt's own ``binance`` class, unmodified but for its
URLs: what ccxt calls for spot trading is served by the simulator's matching engine, signed
requests are verified, and errors come back as the exceptions ccxt raises against Binance. Then
ccxt.pro's ``binance`` on the simulator's WebSocket faces: the market streams (``watch_bids_asks``,
``watch_order_book``) and the user data stream (``watch_orders``, ``watch_my_trades``,
``watch_balance``) of orders placed over REST; a bad key refused; an outage closing the streams and
ccxt subscribing again after it; bad requests answered and counted.

One real venue simulator under a real supervisord (the other programs are not needed), its API on a
free loopback port; the native ``proto`` face is asked too, to show both faces hold one book.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import aiohttp
import ccxt
import ccxt.pro
import pytest
from deploy.temp_daemon import free_port
from integration.daemon import Daemon, wait_until
from integration.e2e import ask

KEY, SECRET = "itest-api-key", "itest-api-secret"
OPTIONS = {"fetchMarkets": ["spot"], "fetchCurrencies": False, "fetchMargins": False,
           "warnOnFetchOpenOrdersWithoutSymbol": False}
T = TypeVar("T")


@pytest.fixture(scope="module")
def venue() -> Iterator[tuple[Daemon, str]]:
    port = free_port()
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
    exchange = ccxt.binance({"apiKey": key, "secret": secret, "enableRateLimit": False, "options": dict(OPTIONS)})
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


# -- the WebSocket faces, through ccxt.pro ---------------------------------------------------------


def pro_binance(url: str, secret: str = SECRET, key: str = KEY) -> Any:
    """ccxt.pro's Binance class on the simulator: its REST URLs, its market streams' and its
    WebSocket API's (all on the simulator's one port), and a ping each second (a dead link shows)."""
    base = url.removesuffix("/api/v3").replace("http://", "ws://")
    exchange = ccxt.pro.binance({"apiKey": key, "secret": secret, "options": dict(OPTIONS)})
    exchange.urls["api"] = exchange.deep_extend(exchange.urls["api"], {
        "public": url, "private": url, "ws": {"spot": f"{base}/ws", "ws-api": {"spot": f"{base}/ws-api/v3"}}})
    exchange.streaming = {**exchange.streaming, "keepAlive": 1000}
    return exchange


def run(coro: Awaitable[T], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def streams_stats(d: Daemon) -> dict[str, Any]:
    return d.request("venue_sim", "status")["stats"]["exchange_api"]["streams"]


def test_market_streams_bids_asks_and_order_book(venue: tuple[Daemon, str]) -> None:
    d, url = venue

    async def watch() -> None:
        ex = pro_binance(url)
        try:
            await ex.load_markets()
            seen: dict[str, Any] = {}
            while set(seen) != {"BTC/USD", "ETH/USD"}:  # bookTicker: each symbol's touch as it moves
                seen.update(await ex.watch_bids_asks(["BTC/USD", "ETH/USD"]))
            btc = seen["BTC/USD"]
            assert 0 < btc["bid"] < btc["ask"] and btc["bidVolume"] > 0 and btc["info"]["u"] > 0
            # depth@100ms: the REST book at lastUpdateId, then the diffs after it (ccxt checks U and u)
            book = await ex.watch_order_book("BTC/USD")
            first = book["nonce"]
            while book["nonce"] <= first:
                book = await ex.watch_order_book("BTC/USD")
            assert len(book["bids"]) == 1 and len(book["asks"]) == 1, book  # a one-level book: old levels gone
            assert 0 < book["bids"][0][0] < book["asks"][0][0] and book["timestamp"]
            stats = streams_stats(d)
            assert {"btcusd@bookTicker", "ethusd@bookTicker", "btcusd@depth@100ms"} <= set(stats["streams"]), stats
        finally:
            await ex.close()

    run(watch())


def test_user_data_stream_reports_orders_and_fills_placed_over_rest(venue: tuple[Daemon, str]) -> None:
    d, url = venue

    async def trade() -> None:
        ex = pro_binance(url)
        orders: dict[str, list[dict[str, Any]]] = {}  # client order id -> its reports, in order
        trades: list[dict[str, Any]] = []
        balances: list[dict[str, Any]] = []

        async def collect(watch: Any, into: Any) -> None:  # ccxt's watch_* brings what came since its last call
            while True:
                into(await watch())

        async def until(check: Any) -> None:
            while not check():
                await asyncio.sleep(0.02)

        try:
            await ex.load_markets()
            watchers = [asyncio.ensure_future(collect(ex.watch_orders, lambda new: [
                            orders.setdefault(o["clientOrderId"], []).append(o) for o in new])),
                        asyncio.ensure_future(collect(ex.watch_my_trades, trades.extend)),
                        asyncio.ensure_future(collect(ex.watch_balance, balances.append))]
            await until(lambda: streams_stats(d)["user_data_subscriptions"] >= 1)  # subscribed with a signature
            bid = (await ex.fetch_order_book("SOL/USD"))["bids"][0][0]
            resting = await ex.create_order("SOL/USD", "limit", "buy", 1.0, round(bid * 0.95, 2),
                                            {"clientOrderId": "itest-ws-rest"})
            await until(lambda: "itest-ws-rest" in orders)
            assert [(o["status"], o["id"], o["amount"]) for o in orders["itest-ws-rest"]] == [("open", resting["id"], 1.0)]
            filled = await ex.create_order("SOL/USD", "market", "buy", 2.0, None, {"clientOrderId": "itest-ws-mkt"})
            await until(lambda: any(o["status"] == "closed" for o in orders.get("itest-ws-mkt", [])))
            await until(lambda: sum(t["amount"] for t in trades if t["order"] == filled["id"]) >= 2.0 - 1e-9)
            assert orders["itest-ws-mkt"][-1]["filled"] == pytest.approx(2.0)
            mine = [t for t in trades if t["order"] == filled["id"]]
            rest = [t for t in await ex.fetch_my_trades("SOL/USD") if t["order"] == filled["id"]]
            # the stream's trades are the REST trades: the same ids, times, amounts, prices and fees
            assert [(t["id"], t["timestamp"], t["amount"], t["price"], t["fee"]["cost"]) for t in mine] == \
                [(t["id"], t["timestamp"], t["amount"], t["price"], t["fee"]["cost"]) for t in rest], (mine, rest)
            total = (await ex.fetch_balance())["SOL"]["total"]
            await until(lambda: balances and balances[-1]["SOL"]["total"] == pytest.approx(total))  # outboundAccountPosition
            await ex.cancel_order(resting["id"], "SOL/USD")
            await until(lambda: orders["itest-ws-rest"][-1]["status"] == "canceled")
        finally:
            for watcher in watchers:
                watcher.cancel()
            await ex.close()

    run(trade())


def test_the_user_data_stream_needs_the_accounts_key_and_signature(venue: tuple[Daemon, str]) -> None:
    d, url = venue
    before = d.request("venue_sim", "status")["stats"]["exchange_api"]["refused"]

    async def refused(key: str, secret: str) -> None:
        ex = pro_binance(url, key=key, secret=secret)
        try:
            await ex.load_markets()
            with pytest.raises(Exception) as raised:
                await ex.watch_orders()
            # the venue's refusal; ccxt.pro 4.5.90 raises a KeyError while handling it (it deletes the
            # subscription twice), the refusal as its context
            refusal = raised.value.__context__ if isinstance(raised.value, KeyError) else raised.value
            assert isinstance(refusal, ccxt.AuthenticationError), repr(raised.value)
        finally:
            await ex.close()

    run(refused(KEY, "not-the-secret"))
    run(refused("not-the-key-at-all", SECRET))
    after = d.request("venue_sim", "status")["stats"]["exchange_api"]["refused"]
    assert after["bad_signature"] > before.get("bad_signature", 0) and after["bad_key"] > before.get("bad_key", 0)


def test_bad_stream_requests_are_answered_counted_and_the_connection_stays(venue: tuple[Daemon, str]) -> None:
    d, url = venue
    base = url.removesuffix("/api/v3").replace("http://", "ws://")
    before = streams_stats(d)["bad_requests"]

    async def talk() -> list[Any]:
        async with aiohttp.ClientSession() as session, session.ws_connect(f"{base}/ws") as ws:
            answers = []
            for text in ("{not json", json.dumps({"method": "SUBSCRIBE", "params": ["nosuch@bookTicker"], "id": 1}),
                         json.dumps({"method": "SUBSCRIBE", "params": ["btcusd@bookTicker"], "id": 2})):
                await ws.send_str(text)
                answers.append(json.loads((await ws.receive()).data))
            await asyncio.sleep(1.1)  # Binance's 5 control messages a second
            await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 3}))
            while "id" not in (answer := json.loads((await ws.receive()).data)):
                pass  # bookTicker events meanwhile
            return [*answers, answer]

    bad_json, bad_stream, ok, listed = run(talk())
    assert bad_json["error"]["code"] == 3 and bad_stream == {"error": {"code": 2, "msg": "Invalid request: invalid stream"},
                                                             "id": 1}
    assert ok == {"result": None, "id": 2} and listed == {"result": ["btcusd@bookTicker"], "id": 3}
    assert streams_stats(d)["bad_requests"] >= before + 2


def test_an_outage_closes_the_streams_and_ccxt_subscribes_again(venue: tuple[Daemon, str]) -> None:
    d, url = venue

    async def outage() -> None:
        ex = pro_binance(url)
        try:
            await ex.load_markets()
            await ex.watch_bids_asks(["BTC/USD"])
            orders = asyncio.ensure_future(ex.watch_orders())
            await asyncio.sleep(0.5)
            accepted = streams_stats(d)["accepted"]
            assert ask(d, "venue_sim", "fault", fault="drop_connection", duration_s=1.5) == {"fault": "drop_connection"}
            with pytest.raises(ccxt.NetworkError):  # the connections cut
                while True:
                    await ex.watch_bids_asks(["BTC/USD"])
            with pytest.raises(ccxt.NetworkError):
                await orders
            while True:  # refused while the venue is away, then served again on a new connection
                try:
                    ticker = await ex.watch_bids_asks(["BTC/USD"])
                    break
                except ccxt.NetworkError:
                    await asyncio.sleep(0.2)
            assert ticker["BTC/USD"]["bid"] > 0
            orders = asyncio.ensure_future(ex.watch_orders())  # subscribed afresh on a new connection
            await asyncio.sleep(0.5)
            placed = await ex.create_order("ETH/USD", "market", "buy", 0.1, None, {"clientOrderId": "itest-ws-back"})
            assert placed["id"] in {o["id"] for o in await orders}
            assert streams_stats(d)["accepted"] >= accepted + 2  # both on new connections
        finally:
            await ex.close()

    run(outage())
