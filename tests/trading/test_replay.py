"""File replay through the venue simulator and the data router: prices come out as recorded, in
order, and bad records are refused, counted and published, never passed on.

One daemon for the module. The venue replays, merged by timestamp and looped:
  * ``RP-GOOD``: a small quotes file written by the test (every row valid, every row distinct);
  * ``RP-BAD``: a small quotes file with a crossed quote (bid above ask) and non-positive prices
    among valid rows;
  * ``USDJPY``: the recorded TrueFX file (1,000 quotes, 2013-01-01 22:00 to 22:35), when
    ``../shared/data`` is there.
The test files are stamped at the start of the TrueFX file, so one loop of the whole replay takes
about 2 s at the speed factor used. The replay loops because it starts as soon as the venue starts,
before this test's subscriber can be connected: a complete loop is what the tests look for.
The engine runs no strategy (nothing but market data is under test here).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import pytest

import proto
from integration.daemon import Daemon, WaitTimeout, wait_until
from integration.e2e import (
    SHARED_DATA,
    Collector,
    ask,
    merged,
    open_daemon,
    read_quotes_csv,
    write_quotes_csv,
)

from .conftest import BASE_CONFIG

TRUEFX = SHARED_DATA / "truefx_usdjpy_2013-01-01_quotes.csv"
SPEED = 1000.0  # 2,113 s of TrueFX quotes in about 2.1 s

# Distinct valid quotes, not monotonic (so order matters): bid 100.00 .. 100.39, spread 0.02.
GOOD_ROWS = [(round(100 + 0.01 * ((i * 7) % 40), 2), round(100.02 + 0.01 * ((i * 7) % 40), 2)) for i in range(40)]
BAD_ROWS: list[tuple[float, float]] = [
    (50.00, 50.02), (50.01, 50.03),
    (50.10, 50.00),  # crossed: bid above ask
    (50.02, 50.04),
    (0.0, 50.02),  # non-positive bid
    (50.03, 50.05),
    (50.01, -1.0),  # negative ask
    (50.02, 50.04),
]
BAD_REASONS = {2: "crossed", 4: "bad_price", 6: "bad_price"}


@pytest.fixture(scope="module")
def replay_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    data = tmp_path_factory.mktemp("replay")
    files = [
        {"path": str(write_quotes_csv(data / "good.csv", GOOD_ROWS)), "symbol": "RP-GOOD"},
        {"path": str(write_quotes_csv(data / "bad.csv", BAD_ROWS)), "symbol": "RP-BAD"},
    ]
    if TRUEFX.exists():
        files.append({"path": str(TRUEFX), "symbol": "USDJPY"})
    config = merged(BASE_CONFIG, {
        "engine": {"strategies": []},
        "venue_sim": {"source": "replay", "replay_files": files, "replay_speed": SPEED, "replay_loop": True,
                      "quotes_per_s": 200.0},
    })
    d = open_daemon(config)
    try:
        yield d
    finally:
        d.close()
    assert not d.leftover_processes()


def _quotes(collector: Collector, symbol: str) -> list[proto.Quote]:
    return [q for q in collector.bodies(proto.Quote) if q.symbol == symbol]


def _is_cyclic_run(seen: Sequence[tuple[float, float]], rows: Sequence[tuple[float, float]]) -> int | None:
    """The offset o such that seen[j] == rows[(o + j) % len(rows)] for every j, or None."""
    n = len(rows)
    for offset in (o for o in range(n) if rows[o] == seen[0]):
        if all(seen[j] == rows[(offset + j) % n] for j in range(len(seen))):
            return offset
    return None


def _assert_replayed_in_order(collector: Collector, symbol: str, rows: list[tuple[float, float]],
                              timeout: float) -> None:
    n = len(rows)

    def one_whole_loop() -> bool:
        """At least the rest of the loop the subscription started in, then one complete loop."""
        seen = [(q.bid, q.ask) for q in _quotes(collector, symbol)]
        if len(seen) < n + 1:
            return False
        offset = _is_cyclic_run(seen, rows)
        if offset is None:
            return True  # not in order: stop waiting, the assertion below says what is wrong
        return len(seen) - (n - offset) % n >= n

    wait_until(one_whole_loop, timeout, interval=0.2,
               message=lambda: f"{len(_quotes(collector, symbol))} {symbol} quotes")
    quotes = _quotes(collector, symbol)
    seen = [(q.bid, q.ask) for q in quotes]
    offset = _is_cyclic_run(seen, rows)
    assert offset is not None, (
        f"{symbol}: the routed quotes are not the file's rows in order; first routed {seen[:5]}, "
        f"file {rows[:5]}; not in the file: {[s for s in seen if s not in rows][:5]}")
    assert len(seen) - (n - offset) % n >= n  # one loop from the file's first row to its last
    assert [q.ts_ns for q in quotes] == sorted(q.ts_ns for q in quotes)


def test_replay_reproduces_the_files_prices_in_order(replay_daemon: Daemon) -> None:
    d = replay_daemon
    with Collector(d, "data_router", [proto.topics.market_data("RP-GOOD")]) as collector:
        _assert_replayed_in_order(collector, "RP-GOOD", GOOD_ROWS, timeout=20)
    assert collector.subscriber_stats["gaps"] == 0, collector.subscriber_stats


def test_bad_market_data_is_refused_counted_and_published(replay_daemon: Daemon) -> None:
    d = replay_daemon
    with Collector(d, "data_router", [proto.topics.BAD_MARKET_DATA, proto.topics.market_data("RP-BAD")]) as collector:
        wait_until(lambda: len(collector.bodies(proto.BadMarketData)) >= 2 * len(BAD_REASONS), 20, interval=0.1,
                   message=lambda: str(collector.bodies(proto.BadMarketData)))
        refused = ask(d, "data_router", "status")["stats"]["refused"]
    bad = collector.bodies(proto.BadMarketData)
    assert {b.symbol for b in bad} == {"RP-BAD"}, bad
    assert {b.reason for b in bad} == {"crossed", "bad_price"}, bad
    # every bad row of the file, for the reason it is bad (each loop refuses the same rows)
    for index, reason in BAD_REASONS.items():
        bid_price, ask_price = BAD_ROWS[index]
        assert any(b.reason == reason and f"bid={bid_price!r}" in b.detail and f"ask={ask_price!r}" in b.detail
                   for b in bad), (index, bad)
    # counted per reason in the router's status: one crossed and two bad prices per loop
    assert refused.get("crossed", 0) >= 1 and refused.get("bad_price", 0) >= 2, refused
    assert abs(refused["bad_price"] - 2 * refused["crossed"]) <= 2, refused
    # nothing bad was passed on, and the valid rows of the same file were
    routed = [(q.bid, q.ask) for q in collector.bodies(proto.Quote)]
    assert routed, "no valid RP-BAD quote routed"
    assert all(0 < bid <= ask and math.isfinite(bid) and math.isfinite(ask) for bid, ask in routed), routed
    valid = {row for i, row in enumerate(BAD_ROWS) if i not in BAD_REASONS}
    assert set(routed) <= valid, set(routed) - valid


@pytest.mark.skipif(not TRUEFX.exists(), reason=f"recorded data not found at {TRUEFX} (../shared/data is absent)")
def test_recorded_truefx_quotes_all_come_through_in_order(replay_daemon: Daemon) -> None:
    d = replay_daemon
    rows = read_quotes_csv(TRUEFX)
    assert len(rows) == 1000
    with Collector(d, "data_router", [proto.topics.market_data("USDJPY")]) as collector:
        _assert_replayed_in_order(collector, "USDJPY", rows, timeout=30)
    assert collector.subscriber_stats["gaps"] == 0, collector.subscriber_stats
    assert ask(d, "data_router", "status")["stats"]["refused"].keys() <= {"crossed", "bad_price"}


@pytest.mark.skipif(not TRUEFX.exists(), reason=f"recorded data not found at {TRUEFX} (../shared/data is absent)")
def test_a_one_shot_replay_routes_every_recorded_quote(make_daemon) -> None:
    """Without looping, the file is replayed once from the venue's start: every one of its quotes
    must reach the data router (which counts what it routes per symbol)."""
    d = make_daemon({
        "engine": {"strategies": []},
        "venue_sim": {"source": "replay", "replay_files": [{"path": str(TRUEFX), "symbol": "USDJPY"}],
                      "replay_speed": SPEED, "quotes_per_s": 200.0},
    })
    wait_until(lambda: ask(d, "venue_sim", "status")["stats"]["replay_finished"], 30, interval=0.1)
    venue = ask(d, "venue_sim", "status")["stats"]
    assert venue["quotes_published"] == 1000, venue
    try:  # the last quotes' way through the router
        wait_until(lambda: ask(d, "data_router", "status")["stats"]["routed"] >= 1000, 2.0)
    except WaitTimeout:
        pass
    router = ask(d, "data_router", "status")["stats"]
    assert router["refused"] == {}, router
    assert router["symbols"]["USDJPY"]["routed"] == 1000, (
        f"the venue published all 1000 recorded quotes but the data router routed "
        f"{router['symbols']['USDJPY']['routed']}: the replay starts with the venue process, before the "
        f"router's subscription is connected, and what is published before that is lost unnoticed "
        f"(no gap is counted: the first message a subscriber sees sets its sequence baseline)")
