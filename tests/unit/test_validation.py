"""services.data_router.validation.Validator: every refusal reason, and what passes."""

from __future__ import annotations

import math
import time

import pytest

import proto
from proto import Side
from services.data_router.validation import Validator

NOW = time.time_ns()


def quote(bid: float = 100.0, ask: float = 100.5, bid_size: float = 1.0, ask_size: float = 1.0,
          ts_ns: int | None = None, symbol: str = "BTC-USD") -> proto.Quote:
    return proto.Quote(symbol=symbol, bid=bid, ask=ask, bid_size=bid_size, ask_size=ask_size,
                       ts_ns=NOW if ts_ns is None else ts_ns)


def trade(price: float = 100.0, size: float = 1.0, ts_ns: int | None = None, symbol: str = "BTC-USD") -> proto.Trade:
    return proto.Trade(symbol=symbol, price=price, size=size, side=Side.BUY, ts_ns=NOW if ts_ns is None else ts_ns)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 0.0, -1.0])
@pytest.mark.parametrize("side", ["bid", "ask"])
def test_bad_quote_prices(bad: float, side: str) -> None:
    kw = {"bid": 100.0, "ask": 100.5, side: bad}
    assert Validator(1.0).refusal(quote(**kw)) == "bad_price"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 0.0, -5.0])
def test_bad_trade_prices(bad: float) -> None:
    assert Validator(1.0).refusal(trade(price=bad)) == "bad_price"


@pytest.mark.parametrize(("bid_size", "ask_size"), [(math.nan, 1.0), (1.0, math.inf), (-1.0, 1.0), (1.0, -0.1)])
def test_bad_quote_sizes(bid_size: float, ask_size: float) -> None:
    assert Validator(1.0).refusal(quote(bid_size=bid_size, ask_size=ask_size)) == "bad_size"


def test_a_quote_with_an_empty_side_is_not_refused() -> None:
    assert Validator(1.0).refusal(quote(bid_size=0.0)) is None


@pytest.mark.parametrize("bad", [math.nan, math.inf, 0.0, -1.0])
def test_bad_trade_sizes(bad: float) -> None:
    assert Validator(1.0).refusal(trade(size=bad)) == "bad_size"


def test_crossed_is_refused_and_locked_passes() -> None:
    v = Validator(1.0)
    assert v.refusal(quote(bid=101.0, ask=100.0)) == "crossed"
    assert v.refusal(quote(bid=100.0, ask=100.0)) is None  # locked: passed on for the safety layer


def test_future_timestamps_beyond_the_skew() -> None:
    v = Validator(max_future_skew_s=1.0)
    assert v.refusal(quote(ts_ns=time.time_ns() + 5_000_000_000)) == "future_timestamp"
    assert v.refusal(trade(ts_ns=time.time_ns() + 5_000_000_000)) == "future_timestamp"
    assert v.refusal(quote(ts_ns=time.time_ns() + 200_000_000)) is None  # within the skew


def test_out_of_order_per_symbol() -> None:
    v = Validator(1.0)
    assert v.refusal(quote(ts_ns=NOW)) is None
    assert v.refusal(quote(ts_ns=NOW - 1)) == "out_of_order"
    assert v.refusal(trade(ts_ns=NOW - 1)) == "out_of_order"  # quotes and trades share the symbol's clock
    assert v.refusal(quote(ts_ns=NOW - 1, symbol="ETH-USD")) is None  # another symbol has its own
    assert v.refusal(quote(ts_ns=NOW)) is None  # the same time again is not out of order
    assert v.refusal(quote(ts_ns=NOW + 1)) is None


def test_a_refused_update_does_not_move_the_clock() -> None:
    v = Validator(1.0)
    assert v.refusal(quote(ts_ns=NOW)) is None
    assert v.refusal(quote(bid=math.nan, ts_ns=NOW + 10)) == "bad_price"
    assert v.refusal(quote(ts_ns=time.time_ns() + 10_000_000_000)) == "future_timestamp"
    assert v.refusal(quote(ts_ns=NOW + 5)) is None


def test_a_valid_stream_passes() -> None:
    v = Validator(1.0)
    start = time.time_ns() - 10_000_000_000
    for i in range(500):
        symbol = ("BTC-USD", "ETH-USD")[i % 2]
        mid = 100.0 + math.sin(i / 10)
        ts = start + i * 1_000_000
        assert v.refusal(quote(mid - 0.05, mid + 0.05, 2.0, 3.0, ts, symbol)) is None
        assert v.refusal(trade(mid, 0.5, ts, symbol)) is None
