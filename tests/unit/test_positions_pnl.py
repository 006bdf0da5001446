"""services.positions.Position: quantity, average price and PnL against an independent recomputation.

The independent reference is the cash-flow method: whatever the path (adds, partial closes, flips
through zero), the total PnL at a mark is

    -sum(signed_qty * price) - sum(fees) + final_qty * mark

and the position is the signed sum of the fills. ``realized_pnl + unrealized(mark)`` must equal it.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.positions import EPSILON, Position

fills_strategy = st.lists(
    st.tuples(
        st.sampled_from([1, -1]),
        st.floats(min_value=0.001, max_value=100.0, allow_nan=False, allow_infinity=False),
        st.floats(min_value=0.5, max_value=100_000.0, allow_nan=False, allow_infinity=False),
        st.floats(min_value=0.0, max_value=25.0, allow_nan=False, allow_infinity=False),
    ),
    min_size=1,
    max_size=40,
)


def cash_flow_pnl(fills: list[tuple[int, float, float, float]], mark: float) -> tuple[float, float]:
    """(final signed qty, total PnL at ``mark``) by the cash-flow method, without any average price."""
    qty = sum(sign * q for sign, q, _p, _f in fills)
    cash = -sum(sign * q * p for sign, q, p, _f in fills) - sum(f for *_rest, f in fills)
    return qty, cash + qty * mark


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fills=fills_strategy, mark=st.floats(min_value=0.5, max_value=100_000.0))
def test_pnl_matches_cash_flow_recomputation(fills: list[tuple[int, float, float, float]], mark: float) -> None:
    pos = Position()
    for sign, qty, price, fee in fills:
        pos.apply_fill(sign, qty, price, fee)
    want_qty, want_pnl = cash_flow_pnl(fills, mark)
    volume = sum(q * p for _s, q, p, _f in fills)
    # float tolerance scaled by the notional that went through (and a position's dust at the mark)
    tol = 1e-9 * (volume + abs(want_qty) * mark) + 1e-6
    assert math.isclose(pos.qty, want_qty, abs_tol=1e-9 * sum(q for _s, q, _p, _f in fills) + EPSILON)
    dust = EPSILON * (mark + max(p for _s, _q, p, _f in fills))  # a zeroed sub-EPSILON remainder's value
    assert math.isclose(pos.realized_pnl + pos.unrealized(mark), want_pnl, abs_tol=tol + dust)
    assert math.isclose(pos.fees, sum(f for *_r, f in fills), abs_tol=1e-9)
    assert math.isclose(pos.volume, volume, rel_tol=1e-12, abs_tol=1e-9)
    if abs(pos.qty) < EPSILON:
        assert pos.qty == 0.0 and pos.avg_price == 0.0 and pos.unrealized(mark) == 0.0
    else:
        assert pos.avg_price > 0


@settings(max_examples=200, deadline=None)
@given(fills=fills_strategy)
def test_realized_pnl_is_the_total_once_flat(fills: list[tuple[int, float, float, float]]) -> None:
    """Close whatever is left at some price: then realized alone equals the cash-flow PnL."""
    pos = Position()
    for sign, qty, price, fee in fills:
        pos.apply_fill(sign, qty, price, fee)
    if abs(pos.qty) >= EPSILON:
        closing = (-1 if pos.qty > 0 else 1, abs(pos.qty), 1234.5, 0.0)
        pos.apply_fill(*closing)
        fills = [*fills, closing]
    _qty, want = cash_flow_pnl(fills, mark=1.0)  # flat: the mark does not matter
    volume = sum(q * p for _s, q, p, _f in fills)
    assert pos.qty == 0.0
    assert math.isclose(pos.realized_pnl, want, abs_tol=1e-9 * volume + 1e-6)


def test_average_price_after_adds_and_partial_close() -> None:
    pos = Position()
    pos.apply_fill(1, 1.0, 100.0, 0.0)
    pos.apply_fill(1, 3.0, 110.0, 0.0)
    assert pos.qty == 4.0
    assert pos.avg_price == pytest.approx(107.5)  # (1*100 + 3*110) / 4
    pos.apply_fill(-1, 1.0, 120.0, 0.5)  # partial close: average unchanged, realized = 1 * (120 - 107.5) - fee
    assert pos.qty == 3.0
    assert pos.avg_price == pytest.approx(107.5)
    assert pos.realized_pnl == pytest.approx(12.5 - 0.5)
    assert pos.unrealized(100.0) == pytest.approx(3 * (100.0 - 107.5))


def test_flip_through_zero_opens_the_remainder_at_the_fill_price() -> None:
    pos = Position()
    pos.apply_fill(1, 2.0, 100.0, 0.0)
    pos.apply_fill(-1, 5.0, 90.0, 1.0)  # closes 2 at 90 (-20), opens short 3 at 90
    assert pos.qty == pytest.approx(-3.0)
    assert pos.avg_price == pytest.approx(90.0)
    assert pos.realized_pnl == pytest.approx(-20.0 - 1.0)
    assert pos.unrealized(80.0) == pytest.approx(30.0)  # short 3 from 90 marked at 80
    pos.apply_fill(1, 3.0, 85.0, 0.0)  # exactly flat
    assert pos.qty == 0.0 and pos.avg_price == 0.0
    assert pos.realized_pnl == pytest.approx(-21.0 + 15.0)
    assert pos.unrealized(1e6) == 0.0


def test_short_average_and_unrealized_sign() -> None:
    pos = Position()
    pos.apply_fill(-1, 1.0, 200.0, 0.0)
    pos.apply_fill(-1, 1.0, 100.0, 0.0)
    assert pos.qty == -2.0 and pos.avg_price == pytest.approx(150.0)
    assert pos.unrealized(140.0) == pytest.approx(20.0)
    assert pos.unrealized(None) == 0.0


def test_float_dust_after_partial_closes_is_flat() -> None:
    pos = Position()
    pos.apply_fill(1, 0.3, 100.0, 0.0)
    pos.apply_fill(-1, 0.1, 100.0, 0.0)
    pos.apply_fill(-1, 0.2, 100.0, 0.0)  # 0.3 - 0.1 - 0.2 is 2.8e-17 in floats
    assert pos.qty == 0.0 and pos.avg_price == 0.0
    pos.apply_fill(-1, 1.0, 50.0, 0.0)  # a fresh short, not a "reduction" of dust
    assert pos.qty == -1.0 and pos.avg_price == 50.0
