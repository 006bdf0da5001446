"""services.safety.detectors: each detector with crafted input, and PriceJump over real recorded data.

PriceJump's rule, as stated by its settings and checked here: on each quote, the mid's move is
measured against the previous quote's mid and against the oldest mid still inside
``rolling_window_s`` (quotes older than that are forgotten), and the larger of the two (in absolute
value) counts. A move of at least the symbol's threshold (``price_jump_pct_by_symbol`` or
``price_jump_pct``) is an event: critical at ``price_jump_critical_pct`` or more, a warning below.
After an event the new level is the only reference (the history is cleared).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

import proto
from proto import OrderStatus, SafetyEventType, Severity, Side
from services.safety.detectors import CrossedBook, Dedup, ExecutionAnomalies, PriceJump, StaleFeed
from services.safety.settings import SafetySettings
from services.venue_sim.replay import load

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BTC_BARS = SHARED_DATA / "btc-perp_2021-12-31_2022-01-15_1m.csv"


def q(mid: float, symbol: str = "BTC-USD", half: float = 0.5) -> proto.Quote:
    return proto.Quote(symbol=symbol, bid=mid - half, ask=mid + half, bid_size=1.0, ask_size=1.0,
                       ts_ns=time.time_ns())


# -- PriceJump -----------------------------------------------------------------------------------


def test_price_jump_message_and_critical_severity() -> None:
    pj = PriceJump(SafetySettings())  # 5% warning, 15% critical
    assert pj.on_quote(q(450.0), now=0.0) == []
    (ev,) = pj.on_quote(q(562.5), now=1.0)
    assert ev.message == "Price jump 25.0% from 450.00 to 562.50"
    assert ev.event_type is SafetyEventType.DATA_ANOMALY and ev.severity is Severity.CRITICAL
    assert ev.symbol == "BTC-USD"
    assert ev.evidence == pytest.approx({"move_pct": 25.0, "reference": 450.0, "price": 562.5, "threshold_pct": 5.0})


def test_price_jump_warning_between_the_thresholds_and_nothing_below() -> None:
    pj = PriceJump(SafetySettings(price_jump_pct=5.0, price_jump_critical_pct=15.0))
    pj.on_quote(q(100.0), 0.0)
    assert pj.on_quote(q(104.9), 0.1) == []
    pj.reset()
    pj.on_quote(q(100.0), 10.0)
    (ev,) = pj.on_quote(q(94.0), 10.1)  # down 6%
    assert ev.severity is Severity.WARNING
    assert ev.message == "Price jump 6.0% from 100.00 to 94.00"
    assert ev.evidence["move_pct"] == pytest.approx(-6.0)
    pj.on_quote(q(100.0), 20.0)
    (ev,) = pj.on_quote(q(116.0), 20.1)  # over the critical threshold
    assert ev.severity is Severity.CRITICAL


def test_price_jump_in_small_steps_within_the_window() -> None:
    pj = PriceJump(SafetySettings(price_jump_pct=5.0, rolling_window_s=5.0))
    assert pj.on_quote(q(100.0), 0.0) == []
    assert pj.on_quote(q(103.0), 2.0) == []  # 3% from the previous
    (ev,) = pj.on_quote(q(106.0), 4.0)  # 2.9% from the previous, 6% from the oldest in the window
    assert ev.message == "Price jump 6.0% from 100.00 to 106.00"
    assert ev.evidence["reference"] == 100.0
    # after the event the new level is the reference: a small step is not an event
    assert pj.on_quote(q(107.0), 4.5) == []


def test_price_jump_forgets_quotes_older_than_the_window() -> None:
    pj = PriceJump(SafetySettings(price_jump_pct=5.0, rolling_window_s=5.0))
    pj.on_quote(q(100.0), 0.0)
    pj.on_quote(q(103.0), 3.0)
    assert pj.on_quote(q(106.0), 6.0) == []  # 100 (6 s old) has left the window; 106/103 is 2.9%
    assert pj.on_quote(q(200.0), 100.0) == []  # nothing inside the window to compare with


def test_price_jump_per_symbol_thresholds() -> None:
    pj = PriceJump(SafetySettings(price_jump_pct=5.0, price_jump_critical_pct=15.0,
                                  price_jump_pct_by_symbol={"SOL-USD": 10.0}))
    for symbol in ("BTC-USD", "SOL-USD"):
        pj.on_quote(q(100.0, symbol), 0.0)
    (btc,) = pj.on_quote(q(107.0, "BTC-USD"), 0.5)
    assert btc.evidence["threshold_pct"] == 5.0
    assert pj.on_quote(q(107.0, "SOL-USD"), 0.5) == []  # 7% is under SOL's own 10%
    (sol,) = pj.on_quote(q(112.0, "SOL-USD"), 1.0)  # 4.7% from 107, 12% from 100 (the window's oldest)
    assert sol.symbol == "SOL-USD" and sol.severity is Severity.WARNING
    assert sol.evidence == pytest.approx({"move_pct": 12.0, "reference": 100.0, "price": 112.0, "threshold_pct": 10.0})


def test_price_jump_symbols_are_independent() -> None:
    pj = PriceJump(SafetySettings(price_jump_pct=5.0))
    pj.on_quote(q(100.0, "A"), 0.0)
    assert pj.on_quote(q(200.0, "B"), 0.1) == []  # B's first quote
    assert pj.on_quote(q(101.0, "A"), 0.2) == []


# -- PriceJump over real data --------------------------------------------------------------------


def expected_jumps(quotes: list[tuple[float, float, float]], pct: float, window_s: float) -> list[tuple[float, float]]:
    """The rule above, written again: (time, signed move %) of every event."""
    history: list[tuple[float, float]] = []
    found = []
    for t, bid, ask in quotes:
        mid = (bid + ask) / 2
        history = [(ht, hm) for ht, hm in history if t - ht <= window_s]
        if history:
            moves = [(mid / history[-1][1] - 1) * 100, (mid / history[0][1] - 1) * 100]
            move = max(moves, key=abs)
            if abs(move) >= pct:
                found.append((t, move))
                history = []
        history.append((t, mid))
    return found


def minute(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M")


# The README's sharp moves (previous close to the bar's extreme), by bar minute (UTC).
README_MOVES = {"2022-01-07 08:27", "2022-01-07 13:39", "2022-01-10 14:19", "2022-01-10 14:42",
                "2022-01-10 16:19", "2022-01-10 17:27", "2022-01-10 17:48", "2022-01-12 13:31"}


@pytest.mark.skipif(not BTC_BARS.exists(), reason=f"recorded market data not present at {BTC_BARS} (../shared/data)")
@pytest.mark.parametrize("window_s", [15.0, 60.0])
def test_price_jump_over_recorded_btc_bars(window_s: float) -> None:
    """Bars replayed as quotes (open → nearer extreme → other extreme → close, 15 s apart), fed to
    PriceJump at 1.5% with ``now`` from the events' timestamps. With a 15 s window the only
    reference is the previous quote ("vs previous"); with 60 s it reaches back a whole bar."""
    events = [e for e in load(BTC_BARS) if e.kind == "quote"]
    pj = PriceJump(SafetySettings(price_jump_pct=1.5, rolling_window_s=window_s))
    got = []
    for e in events:
        quote = proto.Quote(symbol="BTC-PERP", bid=e.bid, ask=e.ask, bid_size=1.0, ask_size=1.0, ts_ns=int(e.ts * 1e9))
        for ev in pj.on_quote(quote, now=e.ts):
            assert ev.severity is Severity.WARNING  # nothing in the file comes near 15%
            assert ev.message == f"Price jump {abs(ev.evidence['move_pct']):.1f}% from " \
                                 f"{ev.evidence['reference']:.2f} to {ev.evidence['price']:.2f}"
            got.append((e.ts, ev.evidence["move_pct"]))
    want = expected_jumps([(e.ts, e.bid, e.ask) for e in events], pct=1.5, window_s=window_s)
    assert [t for t, _ in got] == [t for t, _ in want]
    assert [m for _, m in got] == pytest.approx([m for _, m in want])
    assert 5 <= len(got) <= 30
    by_minute = {minute(t): m for t, m in got}
    assert by_minute["2022-01-07 08:27"] > 2.5  # the README's +2.66% bar: up 2.7% from its low to its high
    if window_s == 15.0:
        # every move the README lists shows up under the "vs previous quote" rule
        assert README_MOVES <= set(by_minute)


# -- StaleFeed -----------------------------------------------------------------------------------


def test_stale_feed_only_while_trading() -> None:
    sf = StaleFeed(SafetySettings(stale_feed_s=5.0), now=99.0)
    sf.on_update("BTC-USD", 100.0)
    sf.on_update("ETH-USD", 103.0)
    assert sf.check(104.9, trading=True) == []
    (ev,) = sf.check(105.0, trading=True)
    assert ev.event_type is SafetyEventType.STALE_FEED and ev.severity is Severity.WARNING
    assert ev.symbol == "BTC-USD" and ev.message == "Stale feed: no update for BTC-USD for 5.0s"
    assert ev.evidence == pytest.approx({"age_s": 5.0, "threshold_s": 5.0})
    assert sf.check(1000.0, trading=False) == []  # a closed session has no stale feeds
    assert {e.symbol for e in sf.check(1000.0, trading=True)} == {"BTC-USD", "ETH-USD"}
    sf.on_update("BTC-USD", 1000.0)
    assert [e.symbol for e in sf.check(1001.0, trading=True)] == ["ETH-USD"]
    # a reset starts the clocks again but keeps the symbols: a feed still silent is reported again
    sf.reset(now=5000.0)
    assert sf.check(5004.9, trading=True) == []
    assert {e.symbol for e in sf.check(5005.0, trading=True)} == {"BTC-USD", "ETH-USD"}


def test_no_market_data_at_all_is_a_stale_feed() -> None:
    """A safety process that starts while the feed is already dead has no symbol to watch."""
    sf = StaleFeed(SafetySettings(stale_feed_s=5.0), now=10.0)
    assert sf.check(10.0, trading=True) == []  # restarted into a live session
    assert sf.check(14.9, trading=True) == []
    (ev,) = sf.check(15.0, trading=True)
    assert ev.symbol == "*" and ev.message == "Stale feed: no market data at all for 5.0s"
    assert sf.check(100.0, trading=False) == []


def test_no_market_data_at_all_counts_from_the_opening() -> None:
    """Before the first quote ever arrives, the silence counts from when trading began: a process
    started long before the opening does not call a feed still being subscribed to dead."""
    sf = StaleFeed(SafetySettings(stale_feed_s=5.0), now=0.0)
    assert sf.check(50.0, trading=False) == []
    assert sf.check(100.0, trading=True) == []
    assert sf.check(104.9, trading=True) == []
    (ev,) = sf.check(105.0, trading=True)
    assert ev.symbol == "*" and ev.message == "Stale feed: no market data at all for 5.0s"
    # closed and opened again: the watch starts again at the new opening
    assert sf.check(200.0, trading=False) == []
    assert sf.check(300.0, trading=True) == []
    assert sf.check(304.9, trading=True) == []
    assert len(sf.check(305.0, trading=True)) == 1


# -- CrossedBook ---------------------------------------------------------------------------------


def test_crossed_book_locked_quote_and_refused_crossed_quote() -> None:
    cb = CrossedBook()
    assert cb.on_quote(q(100.0)) == []
    (locked,) = cb.on_quote(proto.Quote(symbol="ETH-USD", bid=10.0, ask=10.0, bid_size=1, ask_size=1, ts_ns=1))
    assert locked.event_type is SafetyEventType.CROSSED_BOOK and locked.severity is Severity.WARNING
    assert locked.message == "Locked book: bid 10.00 = ask 10.00" and locked.symbol == "ETH-USD"
    (crossed,) = cb.on_bad_data(proto.BadMarketData(symbol="BTC-USD", reason="crossed", detail="bid 101 > ask 100"))
    assert crossed.event_type is SafetyEventType.CROSSED_BOOK
    assert crossed.message == "Crossed book refused by the data router: bid 101 > ask 100"
    (other,) = cb.on_bad_data(proto.BadMarketData(symbol="BTC-USD", reason="bad_price", detail="nan"))
    assert other.event_type is SafetyEventType.DATA_ANOMALY
    assert other.message == "Bad market data refused by the data router (bad_price)"


# -- ExecutionAnomalies --------------------------------------------------------------------------


def order_update(cid: str, status: OrderStatus, symbol: str = "BTC-USD") -> proto.OrderUpdate:
    return proto.OrderUpdate(client_order_id=cid, symbol=symbol, side=Side.BUY, qty=1.0, order_type="market",
                             limit_price=None, status=status, filled_qty=0.0, avg_fill_price=0.0)


def a_fill(side: Side, qty: float, price: float, symbol: str = "BTC-USD") -> proto.Fill:
    return proto.Fill(fill_id="f", client_order_id="c", symbol=symbol, side=side, qty=qty, price=price, fee=0.0,
                      ts_ns=1)


def test_reject_ratio_over_the_window_after_enough_orders() -> None:
    ex = ExecutionAnomalies(SafetySettings(reject_ratio=0.5, reject_window_s=30.0, reject_min_orders=4))
    for i in range(3):  # three rejects: not yet enough orders to judge
        assert ex.on_order(order_update(f"r{i}", OrderStatus.REJECTED), now=float(i)) == []
    (ev,) = ex.on_order(order_update("f0", OrderStatus.FILLED), now=3.0)
    assert ev.event_type is SafetyEventType.EXECUTION_ANOMALY and ev.severity is Severity.WARNING
    assert ev.message == "Reject ratio 3/4 over 30s"
    assert ev.evidence == pytest.approx({"rejected": 3, "orders": 4, "ratio": 0.75})
    # later, the rejects have left the window: four fills and no reject is fine
    for i in range(4):
        assert ex.on_order(order_update(f"g{i}", OrderStatus.FILLED), now=100.0 + i) == []
    # open statuses are not outcomes
    assert ex.on_order(order_update("x", OrderStatus.ACKNOWLEDGED), now=104.0) == []


def test_reject_ratio_below_the_threshold_is_quiet() -> None:
    ex = ExecutionAnomalies(SafetySettings(reject_ratio=0.5, reject_min_orders=4))
    outcomes = [OrderStatus.REJECTED, OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.FILLED,
                OrderStatus.FILLED]
    assert all(ex.on_order(order_update(f"o{i}", s), now=float(i)) == [] for i, s in enumerate(outcomes))


def test_fill_far_from_the_touch() -> None:
    ex = ExecutionAnomalies(SafetySettings(fill_far_bps=10.0))
    assert ex.on_fill(a_fill(Side.BUY, 1.0, 500.0)) == []  # no touch known yet: nothing to judge
    ex.on_quote(proto.Quote(symbol="BTC-USD", bid=100.0, ask=101.0, bid_size=1, ask_size=1, ts_ns=1))
    (ev,) = ex.on_fill(a_fill(Side.BUY, 2.0, 101.202))  # 20 bps above the ask
    assert ev.event_type is SafetyEventType.EXECUTION_ANOMALY
    assert ev.message == "Fill buy 2 at 101.20 is 20 bps from the touch 101.00"
    assert ev.evidence["bps"] == pytest.approx(20.0) and ev.evidence["touch"] == 101.0
    assert ex.on_fill(a_fill(Side.BUY, 1.0, 101.05)) == []  # 5 bps: fine
    assert ex.on_fill(a_fill(Side.BUY, 1.0, 95.0)) == []  # better than the touch is never an anomaly
    (ev,) = ex.on_fill(a_fill(Side.SELL, 1.0, 99.8))  # 20 bps below the bid
    assert ev.evidence["bps"] == pytest.approx(20.0) and ev.evidence["touch"] == 100.0
    assert ex.on_fill(a_fill(Side.SELL, 1.0, 105.0)) == []
    assert ex.fill_position["BTC-USD"] == pytest.approx(1.0 + 2.0 + 1.0 + 1.0 - 1.0 - 1.0)  # every fill counts


def test_order_rate_spike() -> None:
    ex = ExecutionAnomalies(SafetySettings(order_rate_per_s=5.0))
    for i in range(5):
        assert ex.on_order(order_update(f"n{i}", OrderStatus.NEW), now=10.0 + i * 0.1) == []
    assert ex.on_order(order_update("n0", OrderStatus.NEW), now=10.55) == []  # the same order again: not counted
    (ev,) = ex.on_order(order_update("n5", OrderStatus.NEW), now=10.6)
    assert ev.message == "Order rate spike: 6 orders in the last second"
    assert ev.evidence == pytest.approx({"orders_per_s": 6, "threshold": 5.0})
    assert ex.on_order(order_update("n6", OrderStatus.NEW), now=12.0) == []  # a second later: calm again


def test_position_mismatch_needs_two_quiet_checks_in_a_row() -> None:
    ex = ExecutionAnomalies(SafetySettings())
    ex.on_fill(a_fill(Side.BUY, 1.0, 100.0))
    assert ex.check_positions({"BTC-USD": 1.0}, fills_quiet=True) == []  # agree
    assert ex.check_positions({"BTC-USD": 2.0}, fills_quiet=True) == []  # one check could be mid-update
    assert ex.check_positions({"BTC-USD": 2.0}, fills_quiet=False) == []  # a fill in between: start over
    assert ex.check_positions({"BTC-USD": 2.0}, fills_quiet=True) == []
    (ev,) = ex.check_positions({"BTC-USD": 2.0}, fills_quiet=True)
    assert ev.event_type is SafetyEventType.EXECUTION_ANOMALY and ev.symbol == "BTC-USD"
    assert ev.message == "Position mismatch: exchange manager holds 2, fills sum to 1"
    assert ev.evidence == pytest.approx({"exchange_manager": 2.0, "sum_of_fills": 1.0})
    assert ex.check_positions({"BTC-USD": 2.0}, fills_quiet=True) == []  # one event per incident
    assert ex.check_positions({"BTC-USD": 1.0}, fills_quiet=True) == []  # resolved
    # a symbol only the exchange manager holds is a mismatch too
    ex.check_positions({"BTC-USD": 1.0, "ETH-USD": 3.0}, fills_quiet=True)
    (ev,) = ex.check_positions({"BTC-USD": 1.0, "ETH-USD": 3.0}, fills_quiet=True)
    assert ev.symbol == "ETH-USD"
    ex.adopt_positions({"BTC-USD": 1.0, "ETH-USD": 3.0})
    assert ex.check_positions({"BTC-USD": 1.0, "ETH-USD": 3.0}, fills_quiet=True) == []
    assert ex.check_positions({"BTC-USD": 1.0, "ETH-USD": 3.0}, fills_quiet=True) == []


# -- Dedup ---------------------------------------------------------------------------------------


def sev(severity: Severity, symbol: str = "BTC-USD", kind: SafetyEventType = SafetyEventType.DATA_ANOMALY
        ) -> proto.SafetyEvent:
    return proto.SafetyEvent(event_type=kind, severity=severity, symbol=symbol, message="m")


def test_dedup_one_event_per_incident_within_the_cooldown() -> None:
    d = Dedup(cooldown_s=30.0, critical_cooldown_s=1.0)
    W, C = Severity.WARNING, Severity.CRITICAL
    assert d.admit("price_jump", sev(W), 0.0)
    assert not d.admit("price_jump", sev(W), 10.0)
    assert not d.admit("price_jump", sev(W), 29.9)
    assert d.suppressed == 2
    # other detectors, types and symbols are other incidents
    assert d.admit("stale_feed", sev(W), 10.0)
    assert d.admit("price_jump", sev(W, symbol="ETH-USD"), 10.0)
    assert d.admit("price_jump", sev(W, kind=SafetyEventType.STALE_FEED), 10.0)
    assert d.admit("price_jump", sev(W), 30.0)  # the cool-down is over
    # a critical after a warning is never held back
    assert d.admit("price_jump", sev(C), 31.0)
    assert not d.admit("price_jump", sev(C), 31.5)  # within critical_cooldown_s
    assert not d.admit("price_jump", sev(W), 31.6)  # a warning after a critical waits the cool-down
    assert d.admit("price_jump", sev(C), 32.0)  # a second critical incident waits 1 s only
    assert d.suppressed == 4
    d.reset()
    assert d.admit("price_jump", sev(W), 32.1)
