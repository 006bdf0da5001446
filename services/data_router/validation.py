"""Market-data validation: what the router refuses to pass on, and why.

Refused (counted per reason and published as ``BadMarketData``, never dropped silently):
non-positive or non-finite prices or sizes, crossed quotes (bid above ask), updates older than the
last one for the symbol (out of order), and updates stamped in the future beyond the allowed skew.
A locked quote (bid equal to ask) is passed on: it is a state of the book the safety layer judges.
"""

from __future__ import annotations

import math
import time

import proto

MarketData = proto.Quote | proto.Trade


class Validator:
    def __init__(self, max_future_skew_s: float) -> None:
        self._max_skew_ns = int(max_future_skew_s * 1e9)
        self._last_ts: dict[str, int] = {}

    def refusal(self, update: MarketData) -> str | None:
        if isinstance(update, proto.Quote):
            values = (update.bid, update.ask)
            if not all(math.isfinite(v) and v > 0 for v in values):
                return "bad_price"
            if not (math.isfinite(update.bid_size) and math.isfinite(update.ask_size)) or min(update.bid_size, update.ask_size) < 0:
                return "bad_size"
            if update.bid > update.ask:
                return "crossed"
        else:
            if not (math.isfinite(update.price) and update.price > 0):
                return "bad_price"
            if not (math.isfinite(update.size) and update.size > 0):
                return "bad_size"
        if update.ts_ns > time.time_ns() + self._max_skew_ns:
            return "future_timestamp"
        last = self._last_ts.get(update.symbol)
        if last is not None and update.ts_ns < last:
            return "out_of_order"
        self._last_ts[update.symbol] = update.ts_ns
        return None
