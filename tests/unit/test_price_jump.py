"""services.safety.price_jump: the move over one minute of session time, judged against the symbol's
own one-minute volatility (the rule is in the module's docstring and docs/safety.md), with crafted
series: a quiet one and a volatile one, the warm-up, the floor and the cap, the one-minute
reference, one event per jump, critical moves."""

from __future__ import annotations

import math

import pytest

from proto import SafetyEventType, Severity
from services.safety.price_jump import PriceJump
from services.safety.settings import SafetySettings


def alternating(pj: PriceJump, low: float, high: float, minutes: int, symbol: str = "X",
                every_s: float = 20.0) -> list[float]:
    """Quotes every ``every_s`` for ``minutes`` minutes, the mid ``low`` in even minutes and
    ``high`` in odd ones (no quote's move reaches the cap); returns the mid of each minute."""
    mids = []
    for minute in range(minutes):
        mid = low if minute % 2 == 0 else high
        mids.append(mid)
        t = minute * 60.0
        while t < (minute + 1) * 60.0:
            assert pj.on_quote(symbol, mid - 0.001, mid + 0.001, t) == []
            t += every_s
    return mids


def rms_pct(mids: list[float]) -> float:
    """The rule's sigma over these minute mids: each sample is the previous minute's mid."""
    returns = [b / a - 1 for a, b in zip(mids, mids[1:])]
    return math.sqrt(sum(r * r for r in returns) / len(returns)) * 100


def test_a_quiet_symbol_is_judged_at_the_floor() -> None:
    """sigma ~0.02 %: k x sigma is ~0.2 %, under the 0.5 % floor, so the floor is the threshold."""
    pj = PriceJump(SafetySettings())  # k 10, floor 0.5 %, cap 2.5 %, 30 samples
    mids = alternating(pj, 100.0, 100.02, minutes=40)
    threshold, sigma = pj.threshold_pct("X")
    assert sigma == pytest.approx(rms_pct(mids[:-1]))  # the last minute is not sampled yet
    assert 0.01 < sigma < 0.03 and threshold == 0.5
    ref = mids[-1]  # the reference a minute before t = 40 min + 30 s: the quote at 39 min + 20 s
    assert pj.on_quote("X", ref * 1.004, ref * 1.004, 40 * 60.0 + 30) == []  # 0.4 %: under the floor
    (ev,) = pj.on_quote("X", ref * 1.006, ref * 1.006, 40 * 60.0 + 31)  # 0.6 % of a quiet instrument
    assert ev.event_type is SafetyEventType.DATA_ANOMALY and ev.severity is Severity.WARNING
    assert ev.evidence["move_pct"] == pytest.approx(0.6) and ev.evidence["threshold_pct"] == 0.5
    # the jump's quote crossed the 40th minute: one more return (the 39th minute's) is in the window
    assert ev.evidence["reference"] == pytest.approx(ref) and ev.evidence["sigma_pct"] == pytest.approx(rms_pct(mids))


def test_a_volatile_symbol_is_judged_at_k_sigma() -> None:
    """sigma ~0.2 %: the threshold is 10 x sigma ~2 %; 1.5 % is its normal noise, 2.2 % is a jump."""
    pj = PriceJump(SafetySettings())
    mids = alternating(pj, 100.0, 100.2, minutes=40)
    threshold, sigma = pj.threshold_pct("X")
    assert sigma == pytest.approx(rms_pct(mids[:-1]))
    assert threshold == pytest.approx(10 * sigma) and 1.9 < threshold < 2.1
    ref = mids[-1]
    assert pj.on_quote("X", ref * 1.015, ref * 1.015, 40 * 60.0 + 30) == []
    (ev,) = pj.on_quote("X", ref * 1.022, ref * 1.022, 40 * 60.0 + 31)
    assert ev.evidence["threshold_pct"] == pytest.approx(10 * rms_pct(mids))
    assert ev.message == f"Price jump 2.2% from {ref:.3f} to {ref * 1.022:.3f}"


def test_the_cap_bounds_a_very_volatile_symbol_and_a_symbol_can_have_its_own() -> None:
    cfg = SafetySettings(price_jump_cap_pct_by_symbol={"Y": 4.0})
    pj = PriceJump(cfg)
    alternating(pj, 100.0, 101.0, minutes=40, symbol="X")  # sigma ~1 %: 10 sigma would be 10 %
    alternating(pj, 100.0, 101.0, minutes=40, symbol="Y")
    assert pj.threshold_pct("X")[0] == 2.5 and pj.threshold_pct("Y")[0] == 4.0
    (ev,) = pj.on_quote("X", 101 * 1.03, 101 * 1.03, 40 * 60.0 + 30)
    assert ev.evidence["threshold_pct"] == 2.5
    assert pj.on_quote("Y", 101 * 1.03, 101 * 1.03, 40 * 60.0 + 30) == []


def test_warm_up_the_cap_until_enough_returns() -> None:
    pj = PriceJump(SafetySettings(price_jump_min_samples=5))
    # 6 minutes: 4 one-minute returns so far (the first boundary only takes a sample)
    alternating(pj, 100.0, 100.02, minutes=6)
    assert pj.threshold_pct("X") == (2.5, None)
    (ev,) = pj.on_quote("X", 101.0, 101.0, 6 * 60.0 + 30)  # the 5th return; the window is warm now
    assert "sigma_pct" in ev.evidence and ev.evidence["threshold_pct"] == 0.5 and ev.evidence["samples"] == 5
    pj2 = PriceJump(SafetySettings(price_jump_min_samples=5))
    alternating(pj2, 100.0, 100.02, minutes=5)
    # still warming up (4 returns with this quote's): 2 % is under the cap, so not a jump yet ...
    assert pj2.on_quote("X", 102.0, 102.0, 5 * 60.0 + 30) == []
    # ... and the cap itself is
    (ev,) = pj2.on_quote("X", 102.0 * 1.026, 102.0 * 1.026, 5 * 60.0 + 40)
    assert ev.evidence["threshold_pct"] == 2.5 and "sigma_pct" not in ev.evidence


def test_the_move_is_over_one_minute_a_slow_drift_is_not_a_jump() -> None:
    pj = PriceJump(SafetySettings())
    for i in range(20):  # +0.5 % every 30 s: 1 % a minute, 10 % in ten minutes, never 2.5 % in one
        assert pj.on_quote("X", 100 * 1.005 ** i, 100 * 1.005 ** i, 30.0 * i) == []
    # in steps within one minute: 1 %, 2 %, 3 %, each judged against the mid a minute earlier (the
    # last quote at 570 s is the latest at or before each step's time less a minute)
    base = 100 * 1.005 ** 19
    assert pj.on_quote("X", base * 1.01, base * 1.01, 640.0) == []
    assert pj.on_quote("X", base * 1.02, base * 1.02, 660.0) == []
    (ev,) = pj.on_quote("X", base * 1.03, base * 1.03, 680.0)
    assert ev.evidence["reference"] == pytest.approx(base) and ev.evidence["move_pct"] == pytest.approx(3.0)
    assert ev.evidence["over_s"] == pytest.approx(110.0)


def test_one_jump_one_event_then_the_new_level_is_the_reference() -> None:
    pj = PriceJump(SafetySettings())
    pj.on_quote("X", 100.0, 100.0, 0.0)
    (ev,) = pj.on_quote("X", 103.0, 103.0, 15.0)
    assert ev.evidence["reference"] == 100.0
    assert pj.on_quote("X", 103.5, 103.5, 30.0) == []  # 3.5 % from 100, but 100 is gone
    assert pj.on_quote("X", 103.2, 103.2, 100.0) == []


def test_critical_at_the_critical_percent_and_a_first_quote_has_no_reference() -> None:
    pj = PriceJump(SafetySettings())  # critical at 15 %
    assert pj.on_quote("X", 39_999.0, 40_001.0, 0.0) == []
    (ev,) = pj.on_quote("X", 49_999.0, 50_001.0, 0.5)
    assert ev.severity is Severity.CRITICAL and ev.message == "Price jump 25.0% from 40000.00 to 50000.00"
    pj = PriceJump(SafetySettings(price_jump_critical_pct=30.0))
    pj.on_quote("X", 40_000.0, 40_000.0, 0.0)
    (ev,) = pj.on_quote("X", 50_000.0, 50_000.0, 0.5)
    assert ev.severity is Severity.WARNING


def test_minutes_without_an_update_are_zero_returns() -> None:
    pj = PriceJump(SafetySettings(price_jump_min_samples=3))
    for minute in range(5):
        pj.on_quote("X", 100.0 + minute, 100.0 + minute, minute * 60.0)
    assert pj.threshold_pct("X")[1] == pytest.approx(rms_pct([100.0, 101.0, 102.0, 103.0]))
    pj.on_quote("X", 104.0, 104.0, 10 * 60.0)  # five minutes with no update: the mid stood still
    sigma = pj.threshold_pct("X")[1]
    returns = [1 / 100, 1 / 101, 1 / 102, 1 / 103] + [0.0] * 5
    assert sigma == pytest.approx(math.sqrt(sum(r * r for r in returns) / len(returns)) * 100)


def test_symbols_are_independent() -> None:
    pj = PriceJump(SafetySettings())
    pj.on_quote("A", 100.0, 100.0, 0.0)
    assert pj.on_quote("B", 200.0, 200.0, 0.1) == []  # B's first quote
    assert pj.on_quote("A", 101.0, 101.0, 0.2) == []


def test_a_fast_feed_keeps_a_bounded_history() -> None:
    pj = PriceJump(SafetySettings())
    for i in range(60_000):  # 1,000 quotes a second for a minute
        pj.on_quote("X", 100.0, 100.0, i / 1000)
    assert len(pj._symbols["X"].history) <= 650  # about one a tenth of a second, not 60,000


def test_removed_settings_name_their_replacement() -> None:
    for key, value in (("price_jump_pct", 5.0), ("rolling_window_s", 5.0), ("price_jump_pct_by_symbol", {})):
        with pytest.raises(ValueError, match=f"{key} was removed: .*price_jump"):
            SafetySettings(**{key: value})
    with pytest.raises(ValueError, match="price_jump_critical_pct=2 must be at least price_jump_cap_pct=2.5"):
        SafetySettings(price_jump_critical_pct=2.0)
    with pytest.raises(ValueError, match="price_jump_floor_pct=3 is above price_jump_cap_pct=2.5"):
        SafetySettings(price_jump_floor_pct=3.0)
