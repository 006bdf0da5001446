"""services.safety.monitor: every detector on the session clock. Events carry the session time of
their detection; the same data gives the same events however fast it comes (the replay speed) and
whenever the periodic check runs; the holding list is exact and clears by itself; a reset hides
nothing."""

from __future__ import annotations

import random

import proto
from proto import SafetyEventType, Side
from services.safety.monitor import SafetyMonitor
from services.safety.settings import SafetySettings
from services.session_clock import SessionClock
from unit_support import ManualClock

T0 = 1_641_543_000.0  # 2022-01-07 08:10 UTC



def quote(symbol: str, mid: float, t: float) -> proto.Quote:
    return proto.Quote(symbol=symbol, bid=mid - 0.5, ask=mid + 0.5, bid_size=1.0, ask_size=1.0, ts_ns=int(t * 1e9))


def replay_data() -> list[proto.Quote]:
    """BTC every 15 s (bars) with a 3 % jump at 08:20:15; ETH every 5 s until 08:25, then silent."""
    quotes = []
    for i in range(0, 30 * 60, 5):
        t = T0 + i
        if i % 15 == 0:
            quotes.append(quote("BTC", 40_000.0 * (1.03 if i >= 615 else 1.0) + (i % 30), t))
        if i < 15 * 60:
            quotes.append(quote("ETH", 3_000.0 + (i % 10), t))
    return quotes


def run(speed: float, periodic_every: int, seed: int) -> list[tuple[str, str, int, str]]:
    """The data fed as a replay at ``speed`` (wall seconds between quotes = data seconds / speed),
    with the periodic check run after every ``periodic_every`` quotes and at random extra moments."""
    wall = ManualClock(0.0)
    monitor = SafetyMonitor(SafetySettings(), SessionClock("data", monotonic=wall), monotonic=wall)
    rng = random.Random(seed)
    out = []
    last = None
    for n, q in enumerate(replay_data()):
        if last is not None:
            wall.t += (q.ts_ns - last) / 1e9 / speed
        last = q.ts_ns
        out += monitor.on_quote(q)
        if n % periodic_every == 0 or rng.random() < 0.1:
            out += monitor.check_stale()
    return [(d, ev.event_type.value, ev.ts_ns, ev.symbol) for d, ev in out]


def test_the_same_data_gives_the_same_events_at_any_speed() -> None:
    slow, fast, other = run(60.0, 3, 1), run(6_000.0, 50, 2), run(600.0, 1, 3)
    assert slow == fast == other
    kinds = {(d, s) for d, _, _, s in slow}
    assert kinds == {("price_jump", "BTC"), ("stale_feed", "ETH")}, slow
    jump = next(e for e in slow if e[0] == "price_jump")
    assert jump[2] == int((T0 + 615) * 1e9)  # stamped with the data's own time
    stale = next(e for e in slow if e[0] == "stale_feed")
    # ETH quoted every 5 s (threshold max(5, 2 x 5) = 10 s) and last at 08:24:55: due at 08:25:05,
    # seen at the first BTC quote at or after it, 08:25:15 (the session clock only moves with data)
    assert stale[2] == int((T0 + 15 * 60 + 15) * 1e9)


def test_holding_is_empty_when_healthy_and_each_entry_clears_by_itself() -> None:
    wall = ManualClock(0.0)
    cfg = SafetySettings(price_jump_hold_s=120.0, anomaly_hold_s=60.0)
    m = SafetyMonitor(cfg, SessionClock("data", monotonic=wall), monotonic=wall)
    m.on_quote(quote("BTC", 40_000.0, T0))
    m.on_quote(quote("BTC", 40_010.0, T0 + 15))
    assert m.holding() == []
    (published,) = m.on_quote(quote("BTC", 41_500.0, T0 + 30))
    assert published[0] == "price_jump" and published[1].ts_ns == int((T0 + 30) * 1e9)
    (held,) = m.holding()
    assert (held.detector, held.event_type, held.symbol, held.since) == ("price_jump", SafetyEventType.DATA_ANOMALY,
                                                                         "BTC", T0 + 30)
    assert held.to_dict()["event_type"] == "data_anomaly" and held.reason == "Price jump 3.8% from 40000.00 to 41500.00"
    # a limit fill worse than its limit: a one-shot execution anomaly, held for anomaly_hold_s
    m.on_order(proto.OrderUpdate(client_order_id="b1", symbol="BTC", side=Side.BUY, qty=1.0, order_type="limit",
                                 limit_price=41_000.0, status=proto.OrderStatus.NEW, filled_qty=0.0,
                                 avg_fill_price=0.0))
    (bad,) = m.on_fill(proto.Fill(fill_id="f1", client_order_id="b1", symbol="BTC", side=Side.BUY, qty=1.0,
                                  price=41_100.0, fee=0.0, ts_ns=1, strategy="mm"))
    assert bad[0] == "execution"
    assert [c.detector for c in m.holding()] == ["execution", "price_jump"]
    for i in range(1, 8):  # the market goes on quietly for 105 s of session time
        m.on_quote(quote("BTC", 41_500.0 + i, T0 + 30 + 15 * i))
    assert [c.detector for c in m.holding()] == ["price_jump"]  # 60 s of anomaly hold over
    m.on_quote(quote("BTC", 41_510.0, T0 + 150))
    assert m.holding() == []  # 120 s of price-jump hold over


def test_a_stale_symbol_holds_until_it_updates_and_only_while_trading() -> None:
    wall = ManualClock(0.0)
    trading = [True]
    m = SafetyMonitor(SafetySettings(), SessionClock("data", monotonic=wall), trading=lambda: trading[0],
                      monotonic=wall)
    for i in range(10):
        m.on_quote(quote("A", 100.0, T0 + i))
        m.on_quote(quote("B", 200.0, T0 + i))
    out = []
    for i in range(10, 40):
        out += m.on_quote(quote("A", 100.0, T0 + i))
    assert [(d, ev.symbol, ev.ts_ns) for d, ev in out] == [("stale_feed", "B", int((T0 + 14) * 1e9))]
    assert [c.symbol for c in m.holding()] == ["B"]
    trading[0] = False
    assert m.holding() == []
    trading[0] = True
    m.on_quote(quote("B", 200.0, T0 + 40))
    assert m.holding() == []


def test_a_reset_reports_again_at_once_what_still_holds() -> None:
    """The orchestrator resets safety when the session recovers: a feed still silent must not pass
    for a healthy one, and a jump still within its hold time is said again."""
    wall = ManualClock(0.0)
    m = SafetyMonitor(SafetySettings(), SessionClock("data", monotonic=wall), monotonic=wall)
    m.on_quote(quote("A", 100.0, T0))
    m.on_quote(quote("A", 110.0, T0 + 1))  # a 10 % jump
    for i in range(2, 30):
        m.on_quote(quote("A", 110.0, T0 + i))
    wall.t += 10.0  # then the whole feed falls silent (wall clock)
    (silent,) = m.check_stale()
    assert silent[1].symbol == "*"
    assert m.check_stale() == []  # the cool-down: one incident, one event
    again = m.reset()
    assert sorted((d, ev.symbol) for d, ev in again) == [("price_jump", "A"), ("stale_feed", "*")]
    assert all(ev.message.startswith("Still holding after a safety reset: ") for _, ev in again)
    assert {c.detector for c in m.holding()} == {"price_jump", "stale_feed"}  # the reset hid nothing
    m.on_quote(quote("A", 110.0, T0 + 30))  # the feed is back
    assert [c.detector for c in m.holding()] == ["price_jump"]
