"""Instrument specifications and the checks against them, in the three places that check:
the venue simulator's matching, the exchange manager's gate (instrument_checks.py through
RiskGate.check) and the engine's guard. Grid arithmetic is checked with hypothesis."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

import proto
from proto import OrderStatus, Side
from proto.commands import NewOrderArgs, OrderArgs
from proto.instruments import Instrument, decimals
from services.exchange_manager.instrument_checks import instrument_refusal
from services.exchange_manager.risk_gate import RiskGate
from services.exchange_manager.settings import RiskLimits
from services.instruments import on_grid, to_grid
from services.venue_sim.instruments import derived, venue_instruments
from services.venue_sim.matching import Matcher
from services.venue_sim.settings import VenueSimSettings

BTC = Instrument(symbol="BTC-USD", tick_size=0.01, lot_size=0.00001, min_qty=0.00001, min_notional=1.0)
SOL = Instrument(symbol="SOL-USD", tick_size=0.01, lot_size=0.001, min_qty=0.001, max_qty=1_000.0, min_notional=1.0)


# -- grid arithmetic ------------------------------------------------------------------------------


def test_on_grid_allows_float_error_but_not_an_offset() -> None:
    assert on_grid(0.1 + 0.2, 0.001) and on_grid(0.3, 0.1) and on_grid(40_000.01, 0.01)
    assert on_grid(1e12, 1e-8)
    assert not on_grid(0.0005, 0.001) and not on_grid(40_000.005, 0.01)
    assert not on_grid(1_000_000.0001, 0.01)  # a real offset on a large value
    for bad in (5e-324, 0.0, -0.01, float("nan"), float("inf")):
        assert not on_grid(bad, 0.01)


@given(st.floats(min_value=1e-6, max_value=1e9), st.sampled_from([1e-8, 1e-5, 0.001, 0.01, 0.5, 1.0, 25.0]))
def test_to_grid_lands_on_the_grid_on_the_asked_side(value: float, step: float) -> None:
    down, up, near = (to_grid(value, step, m) for m in ("down", "up", "nearest"))
    for x in (down, up, near):
        assert x == 0 or on_grid(x, step)
    tol = max(step * 1e-6, value * 1e-12)
    assert down <= value + tol and up >= value - tol
    assert up - down <= step + 2 * tol and abs(near - value) <= step / 2 + tol


def test_decimals_of_a_step() -> None:
    assert [decimals(s) for s in (1.0, 5.0, 0.5, 0.01, 0.00001, 1e-8, 0.25)] == [0, 0, 1, 2, 5, 8, 2]


def test_a_venue_derives_specs_for_symbols_without_settings() -> None:
    settings = VenueSimSettings(symbols={"BTC-USD": 40_000.0, "AAA": 1.08, "DUST": 0.00001})
    specs = venue_instruments(settings, settings.symbols)
    assert specs["BTC-USD"].tick_size == 0.01 and specs["BTC-USD"].lot_size == 0.00001  # from the settings
    assert specs["BTC-USD"].base == "BTC" and specs["BTC-USD"].quote == "USD"
    assert specs["AAA"].tick_size == pytest.approx(1e-6) and specs["AAA"].lot_size == pytest.approx(0.1)
    assert specs["DUST"].tick_size == pytest.approx(1e-11) and specs["DUST"].lot_size == pytest.approx(1e4)
    assert specs["AAA"].min_qty == specs["AAA"].lot_size and specs["AAA"].min_notional == 1.0
    assert derived(150.0).lot_size == pytest.approx(0.001)


# -- the venue ---------------------------------------------------------------------------------------

_n = iter(range(1, 1_000_000))


def venue() -> Matcher:
    m = Matcher(VenueSimSettings(), epoch=time.time_ns())
    m.on_quote("BTC-USD", 40_000.0, 40_001.0)
    m.on_quote("SOL-USD", 150.0, 150.02)
    return m


def place(m: Matcher, symbol: str, side: Side, qty: float, limit: float | None = None,
          order_type: str | None = None, reduce_only: bool = False) -> list[proto.OrderUpdate | proto.Fill]:
    return m.new_order(NewOrderArgs(client_order_id=f"v{next(_n)}", symbol=symbol, side=side, qty=qty,
                                    order_type=order_type or ("limit" if limit is not None else "market"),  # type: ignore[arg-type]
                                    limit_price=limit, reduce_only=reduce_only))


@pytest.mark.parametrize(("symbol", "qty", "limit", "reason"), [
    ("NOPE-USD", 1.0, None, "unknown symbol NOPE-USD"),
    ("BTC-USD", 5e-324, None, "min_qty: quantity 4.94065645841e-324 is below the minimum 1e-05 for BTC-USD"),
    ("BTC-USD", 0.000015, None, "lot_size: quantity 1.5e-05 is not a multiple of the lot size 1e-05 for BTC-USD"),
    ("BTC-USD", 0.01, 5e-324, "tick_size: limit price 4.94065645841e-324 is not a multiple of the tick size 0.01"),
    ("BTC-USD", 0.01, 39_990.005, "tick_size:"),
    ("BTC-USD", 0.01, 60_000.0, "price_band: limit price 60000 is 50.0% from the mark 40000.5 of BTC-USD: outside "
                                "the 20% venue's price band"),
    ("SOL-USD", 0.005, None, "min_notional: notional 0.75"),
    ("SOL-USD", 0.005, 149.0, "min_notional: notional 0.745"),
])
def test_the_venue_rejects_what_its_instrument_does_not_allow(symbol: str, qty: float, limit: float | None,
                                                              reason: str) -> None:
    m = venue()
    (update,) = place(m, symbol, Side.BUY, qty, limit)
    assert update.status is OrderStatus.REJECTED and update.reason.startswith(reason), update.reason
    assert m.rejected == 1 and m.native.fills == [] and m.open_orders() == []


def test_the_venue_lists_its_instruments_and_knows_a_symbol_before_its_market() -> None:
    m = Matcher(VenueSimSettings(), epoch=time.time_ns())
    assert sorted(m.instruments) == ["BTC-USD", "ETH-USD", "SOL-USD"]
    (update,) = place(m, "ETH-USD", Side.BUY, 0.1)
    assert update.reason == "no market in ETH-USD yet"
    m.on_quote("ETH-USD", 3_000.0, 3_000.5)
    (update,) = place(m, "ETH-USD", Side.BUY, 0.1, limit=3_000.0, order_type="market")
    assert update.reason == "market order with a limit price"


def test_a_reduce_only_order_is_held_to_the_grid_not_to_the_minimums() -> None:
    m = venue()
    assert m.native.positions == {} and place(m, "SOL-USD", Side.BUY, 0.007)[-1].status is OrderStatus.FILLED  # 1.05
    # a plain sell of 0.003 (notional 0.45) is below the minimum notional; a reduce-only one is not held to it
    assert place(m, "SOL-USD", Side.SELL, 0.003)[-1].reason.startswith("min_notional")
    assert place(m, "SOL-USD", Side.SELL, 0.003, reduce_only=True)[-1].status is OrderStatus.FILLED
    assert place(m, "SOL-USD", Side.SELL, 0.0035, reduce_only=True)[-1].reason.startswith("lot_size")
    assert place(m, "SOL-USD", Side.SELL, 0.004, reduce_only=True)[-1].status is OrderStatus.FILLED
    assert abs(m.native.positions["SOL-USD"].qty) < 1e-12


# -- the gate -----------------------------------------------------------------------------------------


def check(order: OrderArgs, spec: Instrument | None = BTC, listed: bool = True, mark: float | None = 40_000.0,
          reduces: bool = False) -> tuple[str, str] | None:
    return instrument_refusal(order, spec, listed, mark, reduces, collar_pct=10.0)


def order(qty: float = 0.01, limit: float | None = None, side: Side = Side.BUY, symbol: str = "BTC-USD",
          **kw: object) -> OrderArgs:
    return OrderArgs(symbol=symbol, side=side, qty=qty, order_type="limit" if limit is not None else "market",  # type: ignore[arg-type]
                     limit_price=limit, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("args", "kind", "words"), [
    ({"qty": 5e-324}, "min_qty", "quantity 4.94065645841e-324 is below the minimum 1e-05 for BTC-USD"),
    ({"qty": 0.000015}, "lot_size", "not a multiple of the lot size 1e-05"),
    ({"qty": float("nan")}, "bad_quantity", "quantity nan is not a finite number"),
    ({"qty": float("inf")}, "bad_quantity", "quantity inf is not a finite number"),
    ({"qty": 1e308}, "bad_quantity", "quantity 1e+308 is not a finite number in (0, 1e+12]"),
    ({"qty": -1.0}, "bad_quantity", "quantity -1.0"),
    ({"limit": 1e308}, "bad_price", "limit price 1e+308 is not a finite number"),
    ({"limit": float("nan")}, "bad_price", "limit price nan"),
    ({"limit": 5e-324}, "tick_size", "is not a multiple of the tick size 0.01 for BTC-USD"),
    ({"limit": 40_000.005}, "tick_size", "limit price 40000.005 is not a multiple of the tick size"),
    ({"limit": 45_000.0}, "price_collar", "limit price 45000 is 12.5% from the mark 40000 of BTC-USD: outside the "
                                          "10% price collar"),
    ({"limit": 20_000.0, "side": Side.SELL}, "price_collar", "50.0% from the mark"),
    ({"qty": 0.00002}, "min_notional", "notional 0.8 (2e-05 x 40000) is below the minimum 1 for BTC-USD"),
    ({"symbol": "NOPE-USD"}, "unknown_symbol", "unknown symbol NOPE-USD: the venue does not list it"),
])
def test_each_instrument_refusal_names_its_kind_and_reason(args: dict, kind: str, words: str) -> None:
    o = order(**args)
    spec = BTC if o.symbol == "BTC-USD" else None
    refusal = check(o, spec)
    assert refusal is not None and refusal[0] == kind and words in refusal[1], refusal


def test_a_plain_order_on_the_grid_inside_the_collar_passes() -> None:
    assert check(order(0.01)) is None and check(order(0.01, 39_000.0)) is None
    assert check(order(0.5, 150.0, symbol="SOL-USD"), SOL, mark=150.0) is None


def test_opening_orders_need_a_mark_and_a_loaded_list() -> None:
    assert check(order(), mark=None)[0] == "no_mark"
    assert check(order(0.01, 40_000.0), mark=None)[0] == "no_mark"
    assert check(order(), spec=None, listed=False)[0] == "instruments_not_loaded"
    market_with_price = OrderArgs(symbol="BTC-USD", side=Side.BUY, qty=0.01, order_type="market", limit_price=40_000.0)
    assert check(market_with_price)[0] == "bad_price"


def test_a_reducing_order_is_refused_only_when_meaningless() -> None:
    """The failsafe's flatten: never held back by the lot grid, a minimum or a missing mark."""
    for o, mark in ((order(0.000015, side=Side.SELL), 40_000.0), (order(5e-7, side=Side.SELL), 40_000.0),
                    (order(0.01, side=Side.SELL), None), (order(0.01, 39_000.0, side=Side.SELL), 40_000.0)):
        assert check(o, mark=mark, reduces=True) is None, o
    assert check(order(0.01, side=Side.SELL), spec=None, listed=False, reduces=True) is None  # list still loading
    assert check(order(float("nan"), side=Side.SELL), reduces=True)[0] == "bad_quantity"
    assert check(order(0.01, symbol="NOPE-USD", side=Side.SELL), spec=None, reduces=True)[0] == "unknown_symbol"


def test_a_reducing_limit_order_is_held_to_its_price() -> None:
    """A reducing limit sell at 0.01 reduces the position by giving it away: its price is checked."""
    giveaway = order(0.01, 0.01, side=Side.SELL)
    assert check(giveaway, reduces=True) == (
        "price_collar", "limit price 0.01 is 100.0% from the mark 40000 of BTC-USD: outside the 10% price collar")
    assert check(order(0.01, 80_000.0, side=Side.SELL), reduces=True)[0] == "price_collar"
    assert check(order(0.01, 40_000.005, side=Side.SELL), reduces=True)[0] == "tick_size"
    # without a mark it cannot be checked: refused (a market order reduces without one), list loaded or not
    for spec, listed in ((BTC, True), (None, False)):
        assert check(giveaway, spec=spec, listed=listed, mark=None, reduces=True) == (
            "no_mark", "no market price for BTC-USD yet: a reducing limit order needs one to check its price "
                       "against (a market order reduces without one)")
    # the list still loading: no grid to check, the collar still holds
    assert check(giveaway, spec=None, listed=False, reduces=True)[0] == "price_collar"
    assert check(order(0.01, 39_000.0, side=Side.SELL), spec=None, listed=False, reduces=True) is None


@dataclass
class Session:
    trading: bool = True


def test_the_gate_counts_instrument_refusals_and_lets_a_flatten_through() -> None:
    session = Session()
    specs = {"BTC-USD": BTC}
    gate = RiskGate(RiskLimits(max_orders_per_s=1000), lambda: session.trading, lambda: "normal",
                    instruments=lambda o: (specs.get(o.symbol), True))
    assert gate.check(order(5e-324), 0.0, 0.0, 40_000.0, 0.0)[0] == "min_qty"
    assert gate.check(order(0.01, 45_000.0), 0.0, 0.0, 40_000.0, 0.0)[0] == "price_collar"
    # unknown before "trading disabled": the order is nonsense whatever the session
    session.trading = False
    assert gate.check(order(symbol="NOPE-USD"), 0.0, 0.0, None, 0.0)[0] == "unknown_symbol"
    # FAILSAFE: trading disabled, no mark yet (a restarted exchange manager), a position off the
    # minimum notional: the reduce-only flatten passes
    flatten = order(0.00002, side=Side.SELL, reduce_only=True, strategy="flatten")
    assert gate.check(flatten, 0.00002, 0.0, None, 0.0) is None
    assert gate.refusals == {"min_qty": 1, "price_collar": 1, "unknown_symbol": 1} and gate.passed == 1
    # the same step toward safety as a limit sell far below the market is a giveaway: refused
    # (trading disabled or not), though it reduces and skips the gate's limits
    assert gate.check(order(0.00002, 0.01, side=Side.SELL), 0.00002, 0.0, 40_000.0, 0.0)[0] == "price_collar"
    session.trading = True
    assert gate.check(order(0.00002, 0.01, side=Side.SELL), 0.00002, 0.0, 40_000.0, 0.0)[0] == "price_collar"
    assert gate.check(order(0.00002, side=Side.SELL), 0.00002, 0.0, 40_000.0, 0.0) is None
    assert gate.refusals["price_collar"] == 3 and gate.passed == 2


def test_without_instruments_the_gate_skips_only_those_checks() -> None:
    gate = RiskGate(RiskLimits(), lambda: True, lambda: "normal")
    assert gate.check(order(0.01), 0.0, 0.0, 40_000.0, 0.0) is None


def test_a_huge_order_is_refused_before_its_notional_overflows() -> None:
    gate = RiskGate(RiskLimits(), lambda: True, lambda: "normal", instruments=lambda o: (BTC, True))
    kind, reason = gate.check(order(1e308), 0.0, 0.0, 40_000.0, 0.0)
    assert (kind, reason) == ("bad_quantity", "quantity 1e+308 is not a finite number in (0, 1e+12]")
    assert gate.refusals == {"bad_quantity": 1} and gate.passed == 0


def test_with_trading_off_a_missing_mark_is_not_the_reason_given() -> None:
    """In READY the gate may have no mark yet: an opening order is refused because trading is off,
    which is what the operator should read; an order that is wrong in itself still says so."""
    session = Session()
    session.trading = False
    gate = RiskGate(RiskLimits(), lambda: session.trading, lambda: "normal",
                    instruments=lambda o: ({"BTC-USD": BTC}.get(o.symbol), True))
    assert gate.check(order(0.01), 0.0, 0.0, None, 0.0)[0] == "trading_disabled"
    assert gate.check(order(5e-324), 0.0, 0.0, None, 0.0)[0] == "min_qty"
    session.trading = True
    assert gate.check(order(0.01), 0.0, 0.0, None, 0.0)[0] == "no_mark"
