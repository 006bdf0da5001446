"""services.venue_sim.replay (reading recorded files) and services.venue_sim.prices (the venue's
price sources), driven with explicit ``now`` values: nothing here sleeps.

Small files in each format are written to tmp_path (plain and gzipped); the real recorded files in
../shared/data are loaded too when that folder is present.
"""

from __future__ import annotations

import gzip
import math
from datetime import datetime, timezone
from pathlib import Path

import pytest

from services.venue_sim.prices import ReplayPrices, SyntheticPrices, make_source
from services.venue_sim.replay import ReplayEvent, ReplayFormatError, detect_format, load
from services.venue_sim.settings import ReplayFile, VenueSimSettings

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED_DATA.exists(),
                                  reason=f"recorded market data not present at {SHARED_DATA} (../shared/data)")

BARS = """timestamp,open,high,low,close,volume
2022-01-07 08:26:00.000000,100.0,102.0,99.5,101.0,10
2022-01-07 08:27:00.000000,101.0,101.2,98.0,99.0,5
"""
QUOTES = """timestamp,bid,ask
2013-01-01 22:00:00.295000+00:00,86.655,86.728
2013-01-01 22:02:35.907000+00:00,86.657,86.728
2013-01-01 23:02:36.000000+01:00,86.600,86.700
2013-01-01 22:02:37.000000,86.601,86.701
"""
HISTDATA = """20200101 170000065,1.121200,1.121720,0
20200101 170010447,1.121200,1.121920,0
"""
TARDIS = """exchange,symbol,timestamp,local_timestamp,id,side,price,amount
bitmex,XBTUSD,1583020803145000,1583020803307160,ccc3c1fa,sell,8531.5,2152
bitmex,XBTUSD,1583020803276000,1583020803336743,b46c84da,Buy,8532.0,1
"""
CONTENT = {"bars": BARS, "quotes": QUOTES, "histdata": HISTDATA, "tardis": TARDIS}


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def mids(events: list[ReplayEvent]) -> list[float]:
    return [(e.bid + e.ask) / 2 for e in events]


@pytest.fixture(params=[".csv", ".csv.gz"])
def suffix(request: pytest.FixtureRequest) -> str:
    return request.param


def test_bars_become_four_quotes_along_open_nearer_extreme_other_close(tmp_path: Path, suffix: str) -> None:
    events = load(write(tmp_path, "bars" + suffix, BARS), spread_bps=2.0)
    assert len(events) == 8 and all(e.kind == "quote" for e in events)
    # bar 1: low (0.5 away) is nearer the open than the high (2 away); bar 2: the high is nearer
    assert mids(events) == pytest.approx([100.0, 99.5, 102.0, 101.0, 101.0, 101.2, 98.0, 99.0])
    t0 = utc("2022-01-07 08:26:00")
    assert [e.ts for e in events] == [t0, t0 + 15, t0 + 30, t0 + 45, t0 + 60, t0 + 75, t0 + 90, t0 + 105]
    for e in events:
        mid = (e.bid + e.ask) / 2
        assert e.bid < e.ask
        assert (e.ask - e.bid) / mid == pytest.approx(2.0 / 1e4)


def test_bars_with_equal_distances_go_to_the_high_first(tmp_path: Path) -> None:
    text = "timestamp,open,high,low,close,volume\n2022-01-01 00:00:00,100,101,99,100.5,1\n"
    assert mids(load(write(tmp_path, "b.csv", text))) == pytest.approx([100.0, 101.0, 99.0, 100.5])


def test_quotes_with_iso_offsets_and_naive_utc(tmp_path: Path, suffix: str) -> None:
    events = load(write(tmp_path, "q" + suffix, QUOTES))
    assert [(e.bid, e.ask) for e in events] == [(86.655, 86.728), (86.657, 86.728), (86.6, 86.7), (86.601, 86.701)]
    assert [e.ts for e in events] == pytest.approx([
        utc("2013-01-01 22:00:00.295"), utc("2013-01-01 22:02:35.907"),
        utc("2013-01-01 22:02:36"),  # 23:02:36+01:00
        utc("2013-01-01 22:02:37"),  # naive: UTC
    ])
    assert all(e.kind == "quote" for e in events)


def test_histdata_without_header_in_est(tmp_path: Path, suffix: str) -> None:
    events = load(write(tmp_path, "h" + suffix, HISTDATA))
    assert len(events) == 2  # the first line is data, not a header
    # 17:00:00.065 EST (UTC-5, no daylight saving) is 22:00:00.065 UTC
    assert events[0].ts == pytest.approx(utc("2020-01-01 22:00:00.065"))
    assert events[1].ts == pytest.approx(utc("2020-01-01 22:00:10.447"))
    assert (events[0].bid, events[0].ask) == (1.1212, 1.12172)


def test_tardis_trades_set_the_touch_and_trade(tmp_path: Path, suffix: str) -> None:
    events = load(write(tmp_path, "t" + suffix, TARDIS), spread_bps=4.0)
    assert [e.kind for e in events] == ["quote", "trade", "quote", "trade"]
    q, t = events[0], events[1]
    assert q.ts == t.ts == pytest.approx(1583020803.145)
    assert (q.bid + q.ask) / 2 == pytest.approx(8531.5) and (q.ask - q.bid) / 8531.5 == pytest.approx(4.0 / 1e4)
    assert (t.price, t.size, t.side) == (8531.5, 2152.0, "sell")
    assert (events[3].price, events[3].size, events[3].side) == (8532.0, 1.0, "buy")


@pytest.mark.parametrize("fmt", ["bars", "quotes", "histdata", "tardis"])
def test_format_detection_and_explicit_format_agree(tmp_path: Path, fmt: str) -> None:
    path = write(tmp_path, f"{fmt}.csv", CONTENT[fmt])
    assert detect_format(CONTENT[fmt].splitlines()[0]) == fmt
    assert load(path) == load(path, fmt)


@pytest.mark.parametrize("fmt", ["bars", "quotes", "histdata", "tardis"])
def test_blank_lines_are_skipped(tmp_path: Path, fmt: str) -> None:
    """A trailing blank line (common in hand-edited or concatenated CSVs) is not a data row."""
    plain = load(write(tmp_path, "plain.csv", CONTENT[fmt]))
    assert load(write(tmp_path, "blank.csv", CONTENT[fmt] + "\n\n")) == plain


@pytest.mark.parametrize("text", [
    "",
    "hello,world\n1,2\n",
    "time,price\n2022-01-01,1\n",
    "\x00\x01\x02 binary junk\n",
    "2020010 170000065,1.1,1.2,0\n",  # almost histdata
])
def test_garbage_is_a_clear_format_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(ReplayFormatError, match="unrecognised replay file header"):
        load(write(tmp_path, "garbage.csv", text))


@pytest.mark.parametrize(("fmt", "text"), [
    ("bars", "timestamp,open,high,low,close,volume\nnot-a-time,1,2,0.5,1.5,1\n"),
    ("bars", "timestamp,open,high,low,close,volume\n2022-01-01 00:00:00,1,2\n"),
    ("quotes", "timestamp,bid,ask\n2013-01-01 22:00:00,abc,1.0\n"),
    ("histdata", "20200101 170000065,1.1,1.2,0\n20200101 17xx00065,1.1,1.2,0\n"),
    ("histdata", "20200101 170000065,1.1,1.2,0\n20200101 170000066,1.1\n"),
    ("tardis", "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\nbitmex,XBTUSD,soon,1,x,buy,1,1\n"),
])
def test_a_bad_row_is_a_format_error_naming_the_file(tmp_path: Path, fmt: str, text: str) -> None:
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(ReplayFormatError, match="bad.csv"):
        load(path)


def test_a_gzip_file_that_is_not_gzip_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "fake.csv.gz"
    path.write_text(BARS)
    with pytest.raises(OSError):  # gzip.BadGzipFile: the name says gzip, the bytes do not
        load(path)


# -- the real recorded files ---------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize(("name", "rows", "per_row", "first", "last"), [
    ("btc-perp_2021-12-31_2022-01-15_1m.csv", 21_659, 4, "2021-12-31 23:01:00", "2022-01-15 23:59:45"),
    ("truefx_usdjpy_2013-01-01_quotes.csv", 1_000, 1, "2013-01-01 22:00:00", "2013-01-01 22:35:59"),
    # 17:00 to 23:00 EST is 22:00 to 04:00 UTC
    ("histdata_eurusd_2020-01-01_quotes.csv", 9_500, 1, "2020-01-01 22:00:00", "2020-01-02 04:00:59"),
    ("tardis_bitmex_XBTUSD_2020-03-01_trades.csv", 10, 2, "2020-03-01 00:00:00", "2020-03-01 00:00:59"),
])
def test_shared_files_load_with_the_documented_row_counts(name: str, rows: int, per_row: int, first: str,
                                                          last: str) -> None:
    events = load(SHARED_DATA / name)
    assert len(events) == rows * per_row
    stamps = [e.ts for e in events]
    assert stamps == sorted(stamps), "events in recorded order"
    assert utc(first) <= stamps[0] < utc(first) + 60
    assert utc(last) - 60 < stamps[-1] <= utc(last)
    quotes = [e for e in events if e.kind == "quote"]
    # real books are sometimes locked (bid == ask: one such TrueFX quote), never crossed
    assert all(0 < e.bid <= e.ask and math.isfinite(e.ask) for e in quotes)


# -- price sources -------------------------------------------------------------------------------


def synthetic(**kw: object) -> VenueSimSettings:
    base: dict[str, object] = {"symbols": {"AAA": 100.0, "BBB": 50.0}, "quotes_per_s": 20.0, "seed": 7,
                               "spread_bps": 4.0}
    base.update(kw)
    return VenueSimSettings(**base)  # type: ignore[arg-type]


def test_synthetic_is_deterministic_with_a_seed() -> None:
    a, b = SyntheticPrices(synthetic(), start=0.0), SyntheticPrices(synthetic(), start=0.0)
    other = SyntheticPrices(synthetic(seed=8), start=0.0)
    ticks_a, ticks_b, ticks_o = a.due(5.0), b.due(5.0), other.due(5.0)
    assert ticks_a == ticks_b
    assert [t.bid for t in ticks_a] != [t.bid for t in ticks_o]


def test_synthetic_rate_per_symbol_over_simulated_time() -> None:
    # times in binary fractions so the expected counts are exact (16 quotes/s: one per 1/16 s)
    src = SyntheticPrices(synthetic(quotes_per_s=16.0), start=1024.0)
    assert src.due(1024.0) == []
    assert src.due(1024.03125) == []  # half a step carried over
    assert [t.symbol for t in src.due(1024.0625)] == ["AAA", "BBB"]
    assert len(src.due(1025.0625)) == 2 * 16  # one more simulated second
    total = 0
    now = 1025.0625
    for _ in range(1000):  # ten seconds in 10 ms steps (not binary: allow a step of rounding)
        now += 0.01
        total += len(src.due(now))
    assert abs(total - 2 * 16 * 10) <= 2
    assert not src.finished


def test_synthetic_quotes_have_the_configured_spread() -> None:
    src = SyntheticPrices(synthetic(jump_probability_per_s=0.5), start=0.0)
    ticks = src.due(30.0)
    assert {t.symbol for t in ticks} == {"AAA", "BBB"}
    for t in ticks:
        mid = (t.bid + t.ask) / 2
        assert 0 < t.bid < t.ask and t.kind == "quote" and t.size >= 1
        assert (t.ask - t.bid) / mid == pytest.approx(4.0 / 1e4)


def test_synthetic_jump_moves_the_mid() -> None:
    src = SyntheticPrices(synthetic(volatility_bps_per_sqrt_s=0.0, jump_probability_per_s=0.0), start=0.0)
    before = {t.symbol: (t.bid + t.ask) / 2 for t in src.due(0.05)}
    assert before == pytest.approx({"AAA": 100.0, "BBB": 50.0})
    src.jump("AAA", 10.0)
    src.jump("NOPE", 10.0)  # an unknown symbol is ignored
    after = {t.symbol: (t.bid + t.ask) / 2 for t in src.due(0.10)}
    assert after == pytest.approx({"AAA": 110.0, "BBB": 50.0})


def test_synthetic_after_a_stall_does_not_flood() -> None:
    src = SyntheticPrices(synthetic(), start=0.0)
    assert len(src.due(1e6)) == 10_000 * 2  # capped backlog
    assert len(src.due(1e6 + 1.0)) == 2 * 20  # and then back to the normal pace


def replay_settings(tmp_path: Path, loop: bool = False, speed: float = 10.0, wait: bool = False) -> VenueSimSettings:
    a = write(tmp_path, "a.csv", "timestamp,bid,ask\n"
              "2024-01-01 00:00:00,10,11\n2024-01-01 00:00:01,12,13\n2024-01-01 00:00:10,14,15\n")
    b = write(tmp_path, "b.csv.gz", "timestamp,bid,ask\n2024-01-01 00:00:02,100,101\n")
    return VenueSimSettings(source="replay", replay_speed=speed, replay_loop=loop, replay_wait_for_subscriber=wait,
                            replay_files=[ReplayFile(path=a, symbol="A"), ReplayFile(path=b, symbol="B")])


def test_replay_waits_for_its_first_subscriber(tmp_path: Path) -> None:
    """By default the replay clock starts at ``begin`` (the first market-data subscriber)."""
    src = make_source(replay_settings(tmp_path, wait=True), start=0.0)
    assert src.due(100.0) == []  # nobody listening yet: nothing is lost, nothing is sent
    src.begin(100.0)
    assert [(t.symbol, t.bid) for t in src.due(100.0)] == [("A", 10.0)]
    src.begin(200.0)  # only the first subscriber starts the clock
    assert [(t.symbol, t.bid) for t in src.due(100.1)] == [("A", 12.0)]


def test_replay_emits_in_order_at_the_speed_factor(tmp_path: Path) -> None:
    src = make_source(replay_settings(tmp_path, speed=10.0), start=500.0)
    assert isinstance(src, ReplayPrices)
    assert [(t.symbol, t.bid) for t in src.due(500.0)] == [("A", 10.0)]  # the first event at once
    assert src.due(500.05) == []  # 0.5 s of recorded time
    assert [(t.symbol, t.bid) for t in src.due(500.1)] == [("A", 12.0)]  # 1 s recorded = 0.1 s here
    assert [(t.symbol, t.bid) for t in src.due(500.25)] == [("B", 100.0)]  # merged across files by time
    assert not src.finished
    assert src.due(500.99) == []
    assert [(t.symbol, t.bid, t.ask) for t in src.due(501.0)] == [("A", 14.0, 15.0)]
    assert src.finished
    assert src.due(10_000.0) == []


def test_replay_jump_scales_later_prices(tmp_path: Path) -> None:
    src = ReplayPrices(replay_settings(tmp_path), start=0.0)
    src.due(0.0)
    src.jump("A", 50.0)
    (tick,) = src.due(0.1)
    assert (tick.bid, tick.ask) == pytest.approx((18.0, 19.5))


def test_replay_loop_restarts(tmp_path: Path) -> None:
    src = ReplayPrices(replay_settings(tmp_path, loop=True, speed=10.0), start=0.0)
    assert len(src.due(1.0)) == 4  # the whole recording
    assert not src.finished  # looping never finishes
    assert [(t.symbol, t.bid) for t in src.due(1.0)] == [("A", 10.0)]  # starts over from now
    assert [(t.symbol, t.bid) for t in src.due(1.1)] == [("A", 12.0)]
    assert len(src.due(2.0)) == 2


def test_synthetic_is_the_default_source() -> None:
    assert isinstance(make_source(VenueSimSettings(), start=0.0), SyntheticPrices)
