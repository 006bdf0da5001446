"""services.safety.stale_feed with an injected wall clock: a symbol judged on session time against
its own cadence, the whole feed's silence on the wall clock, only while trading, and the holding
list clearing with the next update."""

from __future__ import annotations

import pytest

from proto import SafetyEventType, Severity
from services.safety.settings import SafetySettings
from services.safety.stale_feed import StaleFeed
from unit_support import ManualClock



def test_a_slow_symbol_is_judged_on_its_own_cadence_while_a_fast_one_moves_the_clock() -> None:
    """Bars give a quote every 15 s of market time; another symbol quotes every second. With a 5 s
    floor and a factor of 2, the bars' threshold is 30 s: they are never stale between two of their
    own quotes, and are stale once 30 s pass without one."""
    sf = StaleFeed(SafetySettings(stale_feed_s=5.0, stale_cadence_factor=2.0), ManualClock(1000.0))
    for t in range(0, 300):
        if t % 15 == 0:
            sf.on_update("BARS", float(t))
        sf.on_update("FAST", float(t))
        assert sf.check(float(t), trading=True) == [], t
    # BARS' last quote at 285 s; its threshold is 2 x 15 = 30 s
    for t in range(300, 315):
        sf.on_update("FAST", float(t))
        assert sf.check(float(t), trading=True) == [], t
    sf.on_update("FAST", 315.0)
    (ev,) = sf.check(315.0, trading=True)
    assert ev.event_type is SafetyEventType.STALE_FEED and ev.severity is Severity.WARNING and ev.symbol == "BARS"
    assert ev.message == "Stale feed: no update for BARS for 30.0s (threshold 30.0s)"
    assert ev.evidence == pytest.approx({"age_s": 30.0, "threshold_s": 30.0})
    (held,) = sf.holding(319.0, trading=True)  # (FAST is due at 320)
    assert (held.symbol, held.since, held.detector) == ("BARS", 315.0, "stale_feed")
    sf.on_update("FAST", 321.0)
    sf.on_update("BARS", 321.0)  # it speaks again: nothing holds
    assert sf.holding(321.0, trading=True) == [] and sf.check(321.0, trading=True) == []


def test_a_bursty_symbol_is_not_stale_within_its_usual_pauses() -> None:
    """Recorded FX ticks: bursts of quotes 50 ms apart, then nothing for 20 s. The longest recent
    interval sets the threshold (2 x 20 s), not the median (50 ms, which the 5 s floor would replace)."""
    sf = StaleFeed(SafetySettings(stale_feed_s=5.0, stale_cadence_factor=2.0), ManualClock(1000.0))
    t = 0.0
    for _burst in range(5):
        for _ in range(10):
            sf.on_update("FX", t)
            t += 0.05
        t += 20.0
    last = t - 20.05  # the last tick; the pauses were 20.05 s, so its threshold is 40.1 s
    sf.on_update("CLOCK", last + 40.05)
    assert sf.check(last + 40.05, trading=True) == []
    sf.on_update("CLOCK", last + 40.15)
    assert [e.symbol for e in sf.check(last + 40.15, trading=True)] == ["FX"]


def test_the_floor_applies_to_a_fast_symbol_and_one_seen_once_has_its_own_allowance() -> None:
    sf = StaleFeed(SafetySettings(stale_feed_s=5.0, stale_unknown_cadence_s=60.0), ManualClock(1000.0))
    sf.on_update("A", 0.0)  # one update: its cadence unknown
    sf.on_update("B", 59.9)
    assert sf.check(59.9, trading=True) == []
    sf.on_update("B", 60.0)
    (ev,) = sf.check(60.0, trading=True)
    assert ev.symbol == "A" and ev.evidence["threshold_s"] == 60.0
    sf.on_update("A", 5.0)  # an update stamped before the last one seen moves nothing back
    sf.on_update("A", 60.0)
    for i in range(1, 200):  # A quotes every 0.1 s: 2 x 0.1 is under the 5 s floor
        sf.on_update("A", 60.0 + i / 10)
    sf.on_update("B", 79.9 + 4.9)
    assert sf.check(79.9 + 4.9, trading=True) == []
    sf.on_update("B", 79.9 + 5.0)
    assert [e.symbol for e in sf.check(79.9 + 5.0, trading=True)] == ["A"]


def test_a_symbol_whose_cadence_quickens_is_still_watched() -> None:
    """Its threshold shrinks once its long intervals leave the window: the next check must come no
    later than its new due time."""
    sf = StaleFeed(SafetySettings(stale_feed_s=1.0, stale_cadence_factor=2.0), ManualClock(1000.0))
    for t in (0.0, 30.0, 60.0):  # threshold 60 s
        sf.on_update("A", t)
        sf.on_update("B", t)
        sf.check(t, trading=True)
    for i in range(1, 131):  # both quicken to 0.5 s: after 128 of them the 30 s intervals are forgotten
        sf.on_update("B", 60.0 + i / 2)
        sf.on_update("A", 60.0 + i / 2)
        sf.check(60.0 + i / 2, trading=True)
    assert sf.symbols["A"].threshold == 1.0  # max(1, 2 x 0.5)
    # A stops after 125 s; B goes on
    sf.on_update("B", 125.5)
    assert sf.check(125.5, trading=True) == []
    sf.on_update("B", 126.0)
    assert [e.symbol for e in sf.check(126.0, trading=True)] == ["A"]


def test_the_whole_feed_silent_is_seen_on_the_wall_clock() -> None:
    """In a replay the session clock stands still when no data comes: only wall time shows it."""
    wall = ManualClock(1000.0)
    sf = StaleFeed(SafetySettings(stale_feed_s=5.0), wall)
    assert sf.check(0.0, trading=True) == []  # the session trades
    for i in range(10):
        wall.t += 0.25
        sf.on_update("A", 1_641_543_000.0 + 15 * i)  # data time: 15 s apart, at 60x
    session_now = 1_641_543_000.0 + 135
    wall.t += 4.75
    assert sf.check(session_now, trading=True) == []
    wall.t += 0.25
    (ev,) = sf.check(session_now, trading=True)
    assert ev.symbol == "*" and ev.message == "Stale feed: no update of any symbol for 5.0s (wall clock; threshold 5.0s)"
    (held,) = sf.holding(session_now, trading=True)
    assert held.symbol == "*" and held.since == session_now
    wall.t += 3.0
    (held,) = sf.holding(session_now + 3.0, trading=True)  # live, the session clock moves with the wall
    assert held.since == session_now  # since it was first seen silent, not since it was asked
    wall.t += 0.1
    sf.on_update("A", session_now + 15)
    assert sf.holding(session_now + 15, trading=True) == []


def test_the_whole_feeds_threshold_follows_its_wall_cadence() -> None:
    """A replay at 1x of bars has 15 wall seconds between quotes: 2 x 15 s, not 5 s, is silence."""
    wall = ManualClock(1000.0)
    sf = StaleFeed(SafetySettings(stale_feed_s=5.0, stale_cadence_factor=2.0), wall)
    assert sf.check(0.0, trading=True) == []
    for i in range(5):
        wall.t += 15.0
        sf.on_update("A", 15.0 * i)
    wall.t += 29.75
    assert sf.check(60.0, trading=True) == []
    wall.t += 0.25
    assert [e.symbol for e in sf.check(60.0, trading=True)] == ["*"]


def test_no_market_data_at_all_counts_from_the_opening_and_only_while_trading() -> None:
    wall = ManualClock(1000.0)
    sf = StaleFeed(SafetySettings(stale_feed_s=5.0), wall)
    wall.t += 50
    assert sf.check(0.0, trading=False) == []
    assert sf.check(0.0, trading=True) == []  # the opening: the watch starts now
    wall.t += 4.9
    assert sf.check(0.0, trading=True) == []
    wall.t += 0.1
    (ev,) = sf.check(0.0, trading=True)
    assert ev.symbol == "*" and ev.message == "Stale feed: no market data at all for 5.0s (wall clock; threshold 5.0s)"
    # closed and opened again: the watch starts again at the new opening
    assert sf.check(0.0, trading=False) == [] and sf.holding(0.0, trading=False) == []
    wall.t += 100
    assert sf.check(0.0, trading=True) == []
    wall.t += 5.0
    assert len(sf.check(0.0, trading=True)) == 1


def test_a_closed_session_has_no_stale_symbols() -> None:
    wall = ManualClock(1000.0)
    sf = StaleFeed(SafetySettings(stale_feed_s=5.0), wall)
    sf.on_update("A", 0.0)
    sf.on_update("B", 100.0)
    assert sf.check(100.0, trading=False) == [] and sf.holding(100.0, trading=False) == []
    assert [c.symbol for c in sf.holding(100.0, trading=True)] == ["A"]


def test_an_outage_of_the_whole_feed_is_not_learnt_as_cadence() -> None:
    """Live (session time = wall time), quotes every 0.1 s, stale_feed_s 1: the whole feed stops
    three times for 4 s. Each silence is seen after 1 s, the third as soon as the first: an outage
    teaches no cadence (learnt, the first one set the threshold to 8 s and the third went unseen)."""
    wall = ManualClock(1000.0)
    sf = StaleFeed(SafetySettings(stale_feed_s=1.0, stale_cadence_factor=2.0), wall)
    seen_after = []
    for _outage in range(3):
        for _ in range(50):
            wall.t += 0.1
            sf.on_update("BTC-USD", wall.t)
            sf.on_update("ETH-USD", wall.t)
            assert sf.check(wall.t, trading=True) == []
        stopped = wall.t
        first = None
        while wall.t - stopped < 4.0:
            wall.t += 0.05
            if first is None and sf.check(wall.t, trading=True):
                first = wall.t - stopped
        seen_after.append(first)
    assert seen_after == pytest.approx([1.0, 1.0, 1.0], abs=0.06), seen_after
