"""Invariant 10 end to end: the same recorded minutes replayed through the real daemon at 60x, 600x
and 6,000x raise the same safety events (type, severity, symbol, session time, message).

The file: 16 real one-minute BTC bars around the sharpest minute of the shared data (2022-01-07
08:27, +2.66 %), or, without ../shared/data, 16 synthetic bars with a 3 % minute. The safety
layer's warm-up is shortened to 5 minutes (``price_jump_min_samples``) so the volatility-scaled
threshold is in force for most of the file, not only the warm-up's cap. The engine runs no
strategy: orders would depend on wall timing, and this is about the market-data detectors.

The start of a replay is a race (the venue begins when the data router subscribes; the safety
process and this test's subscriber connect meanwhile), so each file begins with one quote of
another symbol (``PACER``), one a wall second for eight wall seconds before the bars at either speed;
the test checks that the safety process had seen one of them after the test's own subscriber
connected (so both saw everything from the bars' start), and compares the BTC events only (PACER
goes stale, at a time that depends on when the session opened, and so may the whole feed at the end).
A second symbol stops quoting half-way: its staleness, judged on session time against its own
cadence, must come at the same market time at every speed.
The three daemons run at once: about 40 s in all.
"""

from __future__ import annotations

import csv
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import proto
from bus import CommandTimeout
from integration.daemon import Daemon, wait_until
from integration.e2e import SHARED_DATA, Collector, ask, merged, open_daemon

from .conftest import BASE_CONFIG

BARS = SHARED_DATA / "btc-perp_2021-12-31_2022-01-15_1m.csv"
FIRST_BAR, N_BARS = "2022-01-07 08:18", 16
LEAD_WALL_S = 8.0
SYMBOL = "BTC-USD"
SPEEDS = (60.0, 600.0, 6_000.0)
# A second symbol quoting every 15 s for the first 8 minutes, then silent: stale on session time
# (2 x its 15 s cadence after its last quote), while the bars move the clock on.
SLOW, SLOW_QUOTES = "SLOW-USD", 32


def _bar_rows() -> list[str]:
    """The one-minute bars (``timestamp,open,high,low,close,volume`` lines), real or synthetic."""
    if BARS.exists():
        with BARS.open(newline="") as handle:
            rows = [r for r in csv.reader(handle)]
        start = next(i for i, r in enumerate(rows) if r[0].startswith(FIRST_BAR))
        return [",".join(r) for r in rows[start:start + N_BARS]]
    t0, price, out = datetime(2022, 1, 7, 8, 18, tzinfo=timezone.utc), 41_750.0, []
    for i in range(N_BARS):
        close = price * (1.03 if i == 9 else 1 + 0.0005 * math.sin(i))
        high, low = max(price, close) * 1.0003, min(price, close) * 0.9997
        out.append(f"{(t0 + timedelta(minutes=i)):%Y-%m-%d %H:%M:%S}.000000,{price},{high},{low},{close},1.0")
        price = close
    return out


def _files(root: Path, speed: float) -> tuple[Path, Path, Path, float, float]:
    """The bars file, the pacer's and the slow symbol's quote files, the first and last BTC quote times."""
    rows = _bar_rows()
    bars = root / f"bars-{speed:g}.csv"
    bars.write_text("timestamp,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    first = datetime.fromisoformat(rows[0].split(",")[0]).replace(tzinfo=timezone.utc)
    last = datetime.fromisoformat(rows[-1].split(",")[0]).replace(tzinfo=timezone.utc) + timedelta(seconds=45)
    pacer = root / f"pacer-{speed:g}.csv"
    lines = ["timestamp,bid,ask"]
    for i in range(int(LEAD_WALL_S), 0, -1):  # one a wall second, the last one a wall second before the bars
        lines.append(f"{(first - timedelta(seconds=i * speed)).isoformat(sep=' ')},99.99,100.01")
    pacer.write_text("\n".join(lines) + "\n")
    slow = root / f"slow-{speed:g}.csv"
    slow.write_text("timestamp,bid,ask\n" + "\n".join(
        f"{(first + timedelta(seconds=15 * i)).isoformat(sep=' ')},2999.5,3000.5" for i in range(SLOW_QUOTES)) + "\n")
    return bars, pacer, slow, first.timestamp(), last.timestamp()


def _config(bars: Path, pacer: Path, slow: Path, speed: float) -> dict[str, Any]:
    return merged(BASE_CONFIG, {
        "venue_sim": {"source": "replay", "replay_speed": speed, "spread_bps": 2.0,
                      "replay_files": [{"path": str(pacer), "symbol": "PACER"}, {"path": str(bars), "symbol": SYMBOL},
                                       {"path": str(slow), "symbol": SLOW}]},
        "engine": {"strategies": []},
        "safety": {"price_jump_min_samples": 5},
    })


def _session_time(d: Daemon) -> float | None:
    return ask(d, "safety", "status")["stats"]["session_time"]


@pytest.mark.alone  # three daemons at once: beside another test's daemon they starve both
def test_the_same_replay_at_60x_600x_and_6000x_raises_the_same_safety_events(tmp_path: Path) -> None:
    runs: list[tuple[Daemon, float, float, float]] = []
    try:
        for speed in SPEEDS:
            bars, pacer, slow, first, last = _files(tmp_path, speed)
            d = open_daemon(_config(bars, pacer, slow, speed), start=False)
            runs.append((d, speed, first, last))
            d.start(wait=False)
        for d, *_ in runs:
            wait_until(lambda: d.call("safety", "status").ok, 20, ignore=(CommandTimeout, OSError),
                       message=lambda: d.diagnostics())
        collectors = [Collector(d, "safety", [proto.topics.SAFETY]).start() for d, *_ in runs]
        for d, speed, first, _ in runs:
            # The safety process has seen a pacer quote after this test's subscriber connected, and
            # before the bars began: both were connected (and so see everything) from the bars' start.
            seen = wait_until(lambda: _session_time(d), 20, interval=0.05, ignore=(CommandTimeout,))
            assert seen < first, (f"{speed:g}x: the bars began ({first}) before the safety process or this test's "
                                  f"subscriber was seen connected ({seen}): the run cannot be compared")
        for d, speed, first, _ in runs:
            # stale feeds are judged while the session trades: it must be open before the bars begin
            d.wait_state("live", timeout=10)
            assert (_session_time(d) or 0.0) < first, f"{speed:g}x: the session opened after the bars began"
        for (d, speed, _, last), collector in zip(runs, collectors):
            wait_until(lambda: abs((_session_time(d) or 0.0) - last) < 1e-3, 60, interval=0.2, ignore=(CommandTimeout,),
                       message=lambda: f"{speed:g}x: the replay did not reach its end ({_session_time(d)})")
        for collector in collectors:
            collector.stop()
        events = []
        for (_, speed, first, last), collector in zip(runs, collectors):
            got = [(e.event_type.value, e.severity.value, e.symbol, e.ts_ns, e.message)
                   for e in collector.bodies(proto.SafetyEvent) if e.symbol in (SYMBOL, SLOW)]
            assert all(first * 1e9 <= e[3] <= last * 1e9 for e in got), got  # stamped with the data's time
            events.append(got)
        reference = events[0]
        for speed, other in zip(SPEEDS[1:], events[1:]):
            assert other == reference, f"{speed:g}x differs from {SPEEDS[0]:g}x"
        jumps = [e for e in reference if e[0] == "data_anomaly"]
        assert jumps, reference
        stale = [e for e in reference if e[0] == "stale_feed"]
        # SLOW's last quote 15 x 31 s after the first bar; stale 2 x 15 s later (a bar quote's time),
        # and reported again each cool-down (30 s of session time) while it stays silent
        stale_at = runs[0][2] + 15 * (SLOW_QUOTES - 1) + 30
        assert stale and {e[2] for e in stale} == {SLOW}, stale
        assert [e[3] for e in stale] == [int((stale_at + 30 * i) * 1e9) for i in range(len(stale))], stale
        stamp = datetime(2022, 1, 7, 8, 27, tzinfo=timezone.utc).timestamp()
        assert any(stamp * 1e9 <= e[3] < (stamp + 60) * 1e9 for e in jumps), jumps  # the 08:27 minute
        print(f"\nsame events at {', '.join(f'{s:g}x' for s in SPEEDS)} ({'real' if BARS.exists() else 'synthetic'} bars):")
        for kind, severity, symbol, ts_ns, message in reference:
            print(f"  {datetime.fromtimestamp(ts_ns / 1e9, timezone.utc):%Y-%m-%d %H:%M:%S} UTC {severity} {kind} "
                  f"{symbol}: {message}")
    finally:
        for d, *_ in runs:
            d.close()
    for d, *_ in runs:
        assert not d.leftover_processes()

