"""The whole daemon on deploy/ccxt-sim.toml: the exchange manager's connector and the data router's
feed reach the venue through ccxt.pro's Binance class, and the venue simulator serves Binance's spot
REST API and WebSocket streams for them (on a free port here). Nothing else differs from ``make
run``'s session.

Shown: LIVE and the demo strategies trading through ccxt, quotes on the bookTicker stream and the
account's orders and fills on the user data stream (the exchange manager receives more messages than
the venue answers REST requests); the book of record agreeing with the venue (positions = balances
beyond the inventory); an outage cutting REST and streams, both back after it; a failsafe that
flattens through ccxt and verifies flat with ccxt's fetch calls; missing credentials refused at
start in one line.
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
from bus import CommandTimeout
from integration.e2e import ask, em_positions, em_stats, submit, wait_routed

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "ccxt-sim.toml"
CREDENTIALS = {"SIM_API_KEY": "sim-test-key", "SIM_API_SECRET": "sim-test-secret"}


def ccxt_sim_config(port: int) -> dict[str, Any]:
    """deploy/ccxt-sim.toml, its venue on ``port``; the account with less cash than the gate allows
    an order (so the venue's own refusal shows), and the session back to LIVE by itself after an
    outage."""
    config = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    config["venue_sim"]["exchange_api"]["port"] = port
    config["venue_sim"]["exchange_api"]["balances"] = {"USD": 150_000.0, "BTC": 10.0, "ETH": 100.0, "SOL": 1000.0}
    # outages on purpose: each degrades the session, none of them is a reason to fail safe
    config.setdefault("orchestrator", {}).update(health={"auto_recover_after_s": 2.0}, failsafe_degradation_count=100)
    config["exchange_manager"]["connectors"][0]["urls"] = venue_urls(port)
    return config


def venue_urls(port: int) -> dict[str, Any]:
    """ccxt's Binance URLs on the simulator's port: REST, the market streams, the WebSocket API."""
    url = f"http://127.0.0.1:{port}/api/v3"
    return {"public": url, "private": url,
            "ws": {"spot": f"ws://127.0.0.1:{port}/ws", "ws-api": {"spot": f"ws://127.0.0.1:{port}/ws-api/v3"}}}


@pytest.fixture(scope="module")
def ccxt_daemon() -> Iterator[Daemon]:
    d = Daemon(config=ccxt_sim_config(free_port()), environment=CREDENTIALS)
    try:
        d.start()
        yield d
    finally:
        d.close()
    assert not d.leftover_processes(), "processes left behind"


_exchanges: dict[int, ccxt.binance] = {}


def _ccxt_connector(d: Daemon) -> dict[str, Any]:
    """The daemon's ccxt connector settings (the only one of kind ccxt)."""
    return next(c for c in d.config["exchange_manager"]["connectors"] if c.get("kind") == "ccxt")


def _exchange(d: Daemon) -> ccxt.binance:
    """ccxt's Binance class on the daemon's venue, with the test account's key, its markets loaded
    once: the venue as the outside world sees it (the native face trades another account)."""
    if id(d) not in _exchanges:
        connector = _ccxt_connector(d)
        exchange = ccxt.binance({"apiKey": CREDENTIALS["SIM_API_KEY"], "secret": CREDENTIALS["SIM_API_SECRET"],
                                 "options": connector["options"]})
        exchange.urls["api"] = {**exchange.urls["api"], **connector["urls"]}
        exchange.load_markets()
        _exchanges[id(d)] = exchange
    return _exchanges[id(d)]


def _venue_positions(d: Daemon) -> dict[str, float]:
    """The account's holdings beyond the inventory, read with ``fetch_balance`` (to 1e-9: balances
    are sums of fills): what the ccxt connector's positions must equal."""
    inventory = _ccxt_connector(d)["inventory"]
    totals = _exchange(d).fetch_balance()["total"]
    held = {f"{asset}-USD": round(totals.get(asset, 0.0) - qty, 9) for asset, qty in inventory.items()}
    return {s: qty for s, qty in held.items() if qty}


def test_live_and_trading_through_ccxt(ccxt_daemon: Daemon) -> None:
    d = ccxt_daemon
    d.wait_state("live", timeout=40)
    stats = em_stats(d)
    connector = stats["connectors"]["binance-sim"]
    assert connector["connected"] and connector["messages_received"] > 0, connector
    instruments = ask(d, "exchange_manager", "instruments")["connectors"]["binance-sim"]
    assert {i["symbol"] for i in instruments["instruments"]} >= {"BTC-USD", "ETH-USD"}
    # quotes come through ccxt's feed, and the demo strategies' orders go out through ccxt
    wait_until(lambda: ask(d, "data_router", "status")["stats"]["routed"] > 5, 20)
    wait_until(lambda: em_stats(d)["fills"] > 0, 60, message=lambda: d.diagnostics())
    venue = ask(d, "venue_sim", "status")["stats"]
    assert venue["exchange_api"]["requests"] > 0 and venue["fills"] > 0, venue
    # the book of record and the venue agree, after every fill has been polled
    wait_until(lambda: _em_qty(d) == _venue_positions(d), 15, interval=0.5,
               message=lambda: f"{em_positions(d)} vs {_venue_positions(d)}")


def test_quotes_orders_and_fills_come_on_the_streams(ccxt_daemon: Daemon) -> None:
    d = ccxt_daemon
    d.wait_trading()
    # the data router's feed on each symbol's bookTicker, the connector on the account's user data stream
    wait_until(lambda: _streams_up(d), 20, message=lambda: str(_venue(d)["exchange_api"]["streams"]))
    # Orders through ccxt: the exchange manager receives more messages than the venue answers REST
    # requests meanwhile (to anyone): the difference is the stream's.
    before, requests = em_stats(d)["connectors"]["binance-sim"], _venue(d)["exchange_api"]["requests"]
    for side in ("buy", "sell"):
        reply = submit(d, "BTC-USD", side, 0.001, strategy="itest")
        assert reply.ok, reply.error
        cid = reply.result["client_order_id"]
        wait_until(lambda: _order(d, cid)["status"] == "filled", 10, message=lambda: str(_order(d, cid)))
    wait_until(lambda: em_stats(d)["connectors"]["binance-sim"]["messages_received"] - before["messages_received"]
               > _venue(d)["exchange_api"]["requests"] - requests, 10,
               message=lambda: f"{em_stats(d)['connectors']} {_venue(d)['exchange_api']['requests'] - requests}")
    streams = _venue(d)["exchange_api"]["streams"]
    assert streams["sent"] > 0 and streams["slow_cut"] == 0 and streams["bad_requests"] == 0, streams
    wait_until(lambda: _em_qty(d) == _venue_positions(d), 15, interval=0.5,
               message=lambda: f"{em_positions(d)} vs {_venue_positions(d)}")


def _venue(d: Daemon) -> dict[str, Any]:
    return ask(d, "venue_sim", "status")["stats"]


def _streams_up(d: Daemon) -> bool:
    """The venue serves the session's streams: a bookTicker subscriber per symbol, and the user data
    stream subscribed (with the account's key and signature)."""
    streams = _venue(d)["exchange_api"]["streams"]
    tickers = {f"{s}@bookTicker" for s in ("btcusd", "ethusd", "solusd")}
    return streams["user_data_subscriptions"] == 1 and tickers <= set(streams["streams"])


def test_an_outage_is_reconnected_with_backoff_and_nothing_is_doubled(ccxt_daemon: Daemon) -> None:
    d = ccxt_daemon
    d.wait_trading()
    before = em_stats(d)["connectors"]["binance-sim"]
    accepted = _venue(d)["exchange_api"]["streams"]["accepted"]
    # longer than the connector's heartbeat_timeout_s (3 s), shorter than supervision.hung_restart_after_s
    # (5 s: the venue's heartbeats stop too, and it would be killed as hung)
    assert ask(d, "venue_sim", "fault", fault="drop_connection", duration_s=4.0) == {"fault": "drop_connection"}
    wait_until(lambda: not em_stats(d)["connectors"]["binance-sim"]["connected"], 10)
    wait_until(lambda: em_stats(d)["connectors"]["binance-sim"]["connected"], 20, message=lambda: d.diagnostics())
    after = em_stats(d)["connectors"]["binance-sim"]
    assert after["reconnects"] > before["reconnects"] and after["error_count"] > before["error_count"], after
    d.wait_state("live", timeout=20)
    # the streams were cut too, and the feed and the connector subscribed again, on new connections
    wait_until(lambda: _streams_up(d) and _venue(d)["exchange_api"]["streams"]["accepted"] >= accepted + 2, 30,
               message=lambda: str(_venue(d)["exchange_api"]["streams"]))
    # the book of record holds each fill once: it agrees with the venue
    wait_until(lambda: em_stats(d)["reconciled"], 20)
    wait_until(lambda: _em_qty(d) == _venue_positions(d), 15, interval=0.5,
               message=lambda: f"{_em_qty(d)} vs {_venue_positions(d)}")


def test_a_killed_exchange_manager_reconciles_through_ccxt(ccxt_daemon: Daemon) -> None:
    d = ccxt_daemon
    d.wait_trading()
    wait_until(lambda: em_stats(d)["fills"] > 0, 30)
    old = d.kill9("exchange_manager")
    d.wait_respawned("exchange_manager", old)
    # its journal and ccxt's trades since fills_lookback_s: each fill applied once
    wait_until(lambda: em_stats(d)["reconciled"], 30, ignore=(CommandTimeout,), message=lambda: d.diagnostics())
    wait_until(lambda: _em_qty(d) == _venue_positions(d), 15, interval=0.5, ignore=(CommandTimeout,),
               message=lambda: f"{_em_qty(d)} vs {_venue_positions(d)}")
    d.wait_state("live", timeout=20)


def test_venue_refusals_are_the_systems_reasons(ccxt_daemon: Daemon) -> None:
    """The venue refuses an order the gate passed (more than the account's cash: ccxt's
    InsufficientFunds), and one sent while it answers 429 (ccxt's DDoSProtection): each is a
    rejected order in the book with the system's reason. (The strategies' orders refused meanwhile
    may degrade the session: a reject ratio, as it should.)"""
    d = ccxt_daemon
    d.wait_trading()
    wait_routed(d, "BTC-USD")
    reply = submit(d, "BTC-USD", "buy", 4.0, strategy="itest")  # ~160,000 USD: the gate's limits allow it
    assert reply.ok, reply.error
    cid = reply.result["client_order_id"]
    order = wait_until(lambda: _order(d, cid) if _order(d, cid)["status"] == "rejected" else None, 10)
    assert order["reason"].startswith("venue: insufficient funds: binance "), order
    assert ask(d, "venue_sim", "fault", fault="rate_limit", duration_s=2.0) == {"fault": "rate_limit"}
    reply = submit(d, "BTC-USD", "buy", 0.001, strategy="itest")
    assert reply.ok, reply.error
    limited = wait_until(lambda: (o := _order(d, reply.result["client_order_id"]))["status"] == "rejected" and o, 10)
    assert limited["reason"].startswith("venue: rate limited: "), limited
    assert em_stats(d)["connectors"]["binance-sim"]["error_count"] >= 2


def test_a_failsafe_flattens_through_ccxt(ccxt_daemon: Daemon) -> None:
    d = ccxt_daemon  # LIVE, or DEGRADED by the rejections just before (a reject ratio): either fails safe
    # something to flatten (the rate-limit fault of the test before may still answer 429)
    wait_until(lambda: _venue_positions(d), 60, ignore=(ccxt.DDoSProtection,), message=lambda: d.diagnostics())
    res = d.tradectl("failsafe", "--reason", "ccxt test")
    assert res.returncode == 0, res.stderr
    wait_until(lambda: d.status()["failsafe_pending"] is None, 40, message=lambda: d.diagnostics())
    exchange = _exchange(d)
    assert _venue_positions(d) == {} and all(exchange.fetch_open_orders(s) == [] for s in exchange.symbols)
    assert all(abs(p["qty"]) < 1e-9 for p in em_positions(d).values()), em_positions(d)


def _order(d: Daemon, cid: str) -> dict[str, Any]:
    return next((o for o in ask(d, "exchange_manager", "orders")["orders"] if o["client_order_id"] == cid),
                {"status": "unknown"})


def _em_qty(d: Daemon) -> dict[str, float]:
    return {s: round(p["qty"], 9) for s, p in em_positions(d).items() if abs(p["qty"]) > 1e-9}


def test_missing_credentials_stop_the_exchange_manager_with_one_line(tmp_path: Path) -> None:
    d = Daemon(config=ccxt_sim_config(free_port()), startretries=0)
    try:
        d.start(wait=False)
        info = wait_until(lambda: (i := d.process_info("exchange_manager"))["statename"] in ("FATAL", "EXITED") and i,
                          40)
        log = d.program_log("exchange_manager").read_text(errors="replace")
        sup_log = d.supervisord_log.read_text()
    finally:
        d.close()
    # FATAL, or EXITED when a start slowed past startsecs on a loaded host counted as RUNNING first
    assert info["statename"] in ("FATAL", "EXITED"), info
    assert "exited: exchange_manager (exit status 78; not expected)" in sup_log, sup_log
    assert ("exchange_manager: invalid settings: exchange_manager.connectors[binance-sim]: connector binance-sim: "
            "set both api_key_env and secret_env") in log, log
    assert "Traceback" not in log
