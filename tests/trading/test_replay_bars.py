"""Recorded BTC perpetual 1-minute bars replayed through the whole chain: venue (replay) → data
router → engine (both demo strategies on the replayed symbol) → exchange manager → venue.

The replay turns each bar into four quotes along open → nearer of high/low → the other → close
(``services/venue_sim/replay.py``); this test rebuilds that path from the file itself and checks
the routed quotes follow it, then that the strategies trade on those prices.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

import pytest

import proto
from integration.daemon import Daemon, wait_until
from integration.e2e import SHARED_DATA, Collector, ask, em_positions, merged, open_daemon, venue_fills

from .conftest import BASE_CONFIG

BARS = SHARED_DATA / "btc-perp_2021-12-31_2022-01-15_1m.csv"
SYMBOL = "BTC-PERP"
SPEED = 600.0  # one bar every 0.1 s
SPREAD_BPS = 2.0

pytestmark = pytest.mark.skipif(not BARS.exists(), reason=f"recorded data not found at {BARS} (../shared/data is absent)")


def _bar_path(limit: int) -> tuple[list[float], float, float]:
    """The mids the replay must produce for the first ``limit`` bars, and their lowest and highest."""
    mids: list[float] = []
    low_all, high_all = float("inf"), 0.0
    with BARS.open() as handle:
        rows = csv.DictReader(handle)
        for i, row in enumerate(rows):
            if i >= limit:
                break
            o, h, low, c = (float(row[k]) for k in ("open", "high", "low", "close"))
            nearer, other = (h, low) if abs(h - o) <= abs(o - low) else (low, h)
            mids += [o, nearer, other, c]
            low_all, high_all = min(low_all, low), max(high_all, h)
    return mids, low_all, high_all


@pytest.fixture(scope="module")
def bars_daemon() -> Iterator[Daemon]:
    config = merged(BASE_CONFIG, {
        "venue_sim": {"source": "replay", "replay_files": [{"path": str(BARS), "symbol": SYMBOL}],
                      "replay_speed": SPEED, "spread_bps": SPREAD_BPS},
        "engine": {"strategies": [
            {"kind": "mean_reversion", "name": "meanrev", "symbol": SYMBOL, "window": 8, "entry_bps": 2.0,
             "min_interval_s": 0.2, "qty": 0.001, "max_position": 0.005},
            {"kind": "market_maker", "name": "mm", "symbol": SYMBOL, "half_spread_bps": 1.0,
             "requote_bps": 2.0, "qty": 0.001, "max_position": 0.005},
        ]},
    })
    d = open_daemon(config)
    try:
        yield d
    finally:
        d.close()
    assert not d.leftover_processes()


def test_replayed_bars_follow_the_files_path_through_the_router(bars_daemon: Daemon) -> None:
    d = bars_daemon
    path, _, _ = _bar_path(3000)  # 300 s of replay: far more than this test runs
    with Collector(d, "data_router", [proto.topics.market_data(SYMBOL)]) as collector:
        wait_until(lambda: len(collector.bodies(proto.Quote)) >= 100, 30, interval=0.1)
    quotes = collector.bodies(proto.Quote)
    mids = [(q.bid + q.ask) / 2 for q in quotes]
    for q in quotes:
        assert q.ask - q.bid == pytest.approx((q.bid + q.ask) / 2 * SPREAD_BPS / 1e4, rel=1e-6)

    def matches_at(start: int) -> bool:
        return all(abs(mids[j] - path[start + j]) <= 1e-6 * path[start + j] for j in range(len(mids)))

    starts = [i for i in range(len(path) - len(mids)) if matches_at(i)]
    assert starts, f"routed mids {mids[:8]} ... are not a contiguous run of the file's bar path"


def test_the_engine_trades_on_the_replayed_bars(bars_daemon: Daemon) -> None:
    d = bars_daemon
    d.wait_state("live", timeout=30)
    wait_until(lambda: d.stats_json()["fills"] >= 4, 45, interval=0.25, message=lambda: str(d.stats_json()))
    stats = d.stats_json()
    assert stats["decisions_made"] > 0 and stats["orders_submitted"] > 0, stats
    assert set(stats["positions"]) == {SYMBOL}, stats
    fills = venue_fills(d)["fills"]
    assert fills and {f["symbol"] for f in fills} == {SYMBOL}
    # every fill is at a replayed price: within the bars' range (so far), give or take spread and slippage
    _, low, high = _bar_path(3000)
    for fill in fills:
        assert low * 0.999 <= fill["price"] <= high * 1.001, (fill, low, high)
    strategies = {o["strategy"] for o in ask(d, "exchange_manager", "orders")["orders"]}
    assert strategies <= {"meanrev", "mm"} and strategies, strategies
    mark = em_positions(d)[SYMBOL]["mark"]
    assert low * 0.999 <= mark <= high * 1.001, (mark, low, high)
