"""Driving the failsafe benchmark's session: back to LIVE between trials, the book each trial
starts from (a position and resting orders on every symbol), and where a trial's figures are read
afterwards (the incident report, the programs' log stamps)."""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

from bench._live import LiveDaemon

SYMBOLS = {"BTC-USD": 40_000.0, "ETH-USD": 3_000.0, "SOL-USD": 150.0, "XRP-USD": 0.6, "ADA-USD": 0.45,
           "DOGE-USD": 0.08, "AVAX-USD": 35.0, "DOT-USD": 7.0, "LINK-USD": 15.0, "LTC-USD": 70.0}
RESTING_PER_SYMBOL = 5
EPS = 1e-9


def open_session(d: LiveDaemon) -> None:
    """From wherever the session is (FAILSAFE after a trial) to LIVE with both trading processes
    allowed to trade."""
    state = d.state()
    if state == "failsafe":
        d.wait_until(lambda: d.status("orchestrator")["failsafe_pending"] is None, 30, "the failsafe sequence to end")
        d.request("orchestrator", "reset", reason="bench: next trial")
        state = d.wait_state("ready", timeout_s=10)
    if state == "degraded":
        refusals: list[str] = []

        def recovered() -> bool:
            reply = d.call("orchestrator", "recover")
            refusals.append(reply.error)
            return reply.ok

        try:
            d.wait_until(recovered, 30, "recover", interval_s=0.3)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; refused: {refusals[-1] if refusals else '-'}") from None
    if d.state() == "ready":
        d.request("orchestrator", "open", reason="bench: next trial")
    d.wait_state("live", timeout_s=10)
    d.wait_until(lambda: all(d.status(s)["stats"]["trading_allowed"] for s in ("engine", "exchange_manager")),
                 10, "engine and exchange manager to allow trading")


def build_book(d: LiveDaemon) -> tuple[set[str], dict[str, float]]:
    """A position on every symbol (market buys) and RESTING_PER_SYMBOL resting limit buys on each.
    Returns the venue's open order ids and positions once it holds them all."""
    for symbol, price in SYMBOLS.items():
        qty = round(1_000.0 / price, 6)
        d.request("exchange_manager", "submit_order", symbol=symbol, side="buy", qty=qty, order_type="market",
                  strategy="bench")
    # the limit prices come from the current marks (the exchange manager's position table)
    marks = d.wait_until(lambda: (t := d.request("exchange_manager", "positions")["positions"]) and
                         all(t.get(s, {}).get("mark") and abs(t[s]["qty"]) > EPS for s in SYMBOLS) and t,
                         10, "the exchange manager to hold every position")
    for symbol in SYMBOLS:
        mark = marks[symbol]["mark"]
        qty = round(1_000.0 / mark, 6)
        for i in range(RESTING_PER_SYMBOL):
            d.request("exchange_manager", "submit_order", symbol=symbol, side="buy", qty=qty, order_type="limit",
                      limit_price=round(mark * (0.5 - 0.01 * i), 8), strategy="bench")
    want = len(SYMBOLS) * RESTING_PER_SYMBOL

    def venue_book() -> tuple[set[str], dict[str, float]] | None:
        orders = d.request("venue_sim", "open_orders")["orders"]
        positions = {s: p["qty"] for s, p in d.request("venue_sim", "positions")["positions"].items()}
        held = sum(abs(q) > EPS for q in positions.values())
        return ({o["client_order_id"] for o in orders}, positions) if len(orders) == want and held == len(SYMBOLS) else None

    d.wait_until(venue_book, 10, f"the venue to hold {want} open orders and {len(SYMBOLS)} positions")
    d.wait_until(lambda: d.status("exchange_manager")["stats"]["open_orders"] == want, 10,
                 "the exchange manager's book to show every resting order")
    time.sleep(0.3)  # let the fills' and orders' echoes settle (safety follows them)
    book = venue_book()
    if book is None:
        raise RuntimeError("the venue's book changed before the trigger")
    return book


def latest_incident(d: LiveDaemon, after: float) -> dict[str, Any] | None:
    directory = d.log_dir / "incidents"
    if not directory.is_dir():
        return None
    for path in sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        data = json.loads(path.read_text())
        if data.get("started_at", 0) >= after:
            return data
    return None


def log_times(d: LiveDaemon, program: str, needle: str, after_ns: int) -> list[float]:
    """Wall-clock times (ns, +0.5 ms: the log's stamp is truncated to the millisecond) of the
    program's log lines containing ``needle`` stamped at or after ``after_ns`` - 1 ms."""
    path = d.log_dir / f"{program}.log"
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 256_000))
        lines = f.read().decode(errors="replace").splitlines()
    out = []
    for line in lines:
        if needle not in line:
            continue
        try:
            stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
        except ValueError:
            continue
        ns = int(stamp.timestamp() * 1e9) + 500_000
        if ns >= after_ns - 1_500_000:
            out.append(ns)
    return out
