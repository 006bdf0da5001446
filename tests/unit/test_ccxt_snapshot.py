"""services.venues.ccxt.fills.split: which trades of a mass status's second read the balances hold,
by the balances' own time (Binance's account ``updateTime``)."""

from __future__ import annotations

from typing import Any

from services.venues.ccxt.fills import split as _split


def trade(trade_id: int, ms: int) -> tuple[dict[str, Any], str]:
    return {"id": str(trade_id), "timestamp": ms}, f"c{trade_id}"


def test_trades_before_the_balances_time_are_held_those_after_are_not() -> None:
    before = [trade(1, 1000)]
    new = [trade(2, 1004), trade(3, 1006), trade(4, 1009)]
    assert _split(before, new, 1005) == ([trade(2, 1004)], [trade(3, 1006), trade(4, 1009)])
    assert _split(before, [], 1005) == ([], [])


def test_what_cannot_be_told_is_none() -> None:
    before, new = [trade(1, 1000)], [trade(2, 1004)]
    assert _split(before, new, None) is None  # a venue that gives its balances no time
    assert _split(before, [trade(2, 1005)], 1005) is None  # a trade in the balances' very millisecond
    assert _split([trade(1, 1007)], new, 1005) is None  # seen before the balances were read, yet after their time


def test_a_trade_of_the_balances_millisecond_is_held_when_the_read_came_later() -> None:
    """The venue's clock read before the balances is past their time: nothing after the read can
    share their millisecond, so a trade of it is one they hold (the last they took)."""
    before, new = [trade(1, 1000)], [trade(2, 1004), trade(3, 1005), trade(4, 1009)]
    assert _split(before, new, 1005, server_ms=1006) == ([trade(2, 1004), trade(3, 1005)], [trade(4, 1009)])
    assert _split(before, new, 1005, server_ms=1005) is None  # the read may have been in that millisecond too
    assert _split(before, new, 1005) is None
