"""``tradectl safety replay``: the real CLI over recorded files, checked against the price-jump rule
written again here, independently, in plain Python over the CSV rows (the rule as docs/safety.md
and services/safety/price_jump.py state it):

  * bars become four quotes 15 s apart: open, the nearer of high/low, the other, close;
  * sigma is the root mean square of the one-minute returns of the mid sampled at each minute
    boundary (the last mid before it; a minute without a quote repeats it), over the last
    ``vol_window_s / 60`` returns;
  * the move is the mid versus the latest mid at or before one minute earlier (else the oldest
    since the last event); the threshold is ``k`` x sigma clamped to [floor, cap], the cap while
    fewer than ``min_samples`` returns; ``|move| >= threshold`` is an event (critical from
    ``critical_pct``), after which the history restarts;
  * one incident, one event: the same symbol stays quiet ``cooldown_s`` after a warning.

On the shared BTC file (skipped when ../shared/data is absent), on a synthetic file written here,
and on a bus recording; and the one-line exit 78 on a file or settings it cannot use.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import proto
from services.tradectl.cli import cli
from services.tradectl.sniffer.recording import Writer
from proto.summaries import ExchangeSummary, VenueUnknown

BTC_BARS = Path(__file__).resolve().parents[3] / "shared" / "data" / "btc-perp_2021-12-31_2022-01-15_1m.csv"
TRADECTL = [sys.executable, "-c", "from services.tradectl.cli import main; main()"]
DEFAULTS = {"k": 10.0, "floor": 0.5, "cap": 2.5, "window_min": 240, "min_samples": 30, "critical": 15.0,
            "cooldown": 30.0, "critical_cooldown": 1.0}


def bar_quotes(path: Path) -> list[tuple[float, float]]:
    out = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            t = datetime.fromisoformat(row["timestamp"]).replace(tzinfo=timezone.utc).timestamp()
            o, h, low, c = (float(row[k]) for k in ("open", "high", "low", "close"))
            path_ = [o, h, low, c] if abs(h - o) <= abs(o - low) else [o, low, h, c]
            out += [(t + 15.0 * i, p) for i, p in enumerate(path_)]
    return out


def expected_jumps(quotes: list[tuple[float, float]], k: float, floor: float, cap: float, window_min: int,
                   min_samples: int, critical: float, cooldown: float, critical_cooldown: float
                   ) -> list[tuple[float, float, str]]:
    """(time, move %, severity) of every price-jump event published, by the rule above."""
    returns: list[float] = []
    sigma = None
    minute = None
    last_mid = sample = None
    history: list[tuple[float, float]] = []
    published: list[tuple[float, float, str]] = []
    last: tuple[float, str] | None = None
    for t, mid in quotes:
        m = math.floor(t / 60)
        if minute is not None and m > minute:
            if sample is not None:
                returns = (returns + [last_mid / sample - 1] + [0.0] * min(m - minute - 1, window_min))[-window_min:]
                sigma = math.sqrt(sum(r * r for r in returns) / len(returns)) * 100
            sample = last_mid
        minute = m if minute is None else max(minute, m)
        while len(history) >= 2 and history[1][0] <= t - 60:
            history.pop(0)
        if history:
            move = (mid / history[0][1] - 1) * 100
            threshold = cap if len(returns) < min_samples else min(max(k * sigma, floor), cap)
            if abs(move) >= threshold:
                severity = "critical" if abs(move) >= critical else "warning"
                quiet = critical_cooldown if severity == "critical" else cooldown
                if last is None or t - last[0] >= quiet or (severity == "critical" and last[1] == "warning"):
                    published.append((t, move, severity))
                    last = (t, severity)
                history = []
        history.append((t, mid))
        last_mid = mid
    return published


def tradectl(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command line in a process of its own (its exit code, its streams)."""
    return subprocess.run([*TRADECTL, *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})


def invoke(*args: str) -> Result:
    """The same command line in this process (a second of start-up less per call)."""
    return CliRunner().invoke(cli, list(args), env={k: None for k in os.environ if k.startswith("TRADING_")})


def replay_json(*args: str) -> dict:
    res = invoke("safety", "replay", *args, "--json")
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def jumps_of(report: dict) -> list[tuple[int, float, str]]:
    return [(e["ts_ns"], e["evidence"]["move_pct"], e["severity"]) for e in report["events"]
            if e["detector"] == "price_jump"]


def assert_same(got: list[tuple[int, float, str]], want: list[tuple[float, float, str]]) -> None:
    assert [g[0] for g in got] == [int(t * 1e9) for t, _, _ in want]
    assert [g[1] for g in got] == pytest.approx([m for _, m, _ in want], rel=1e-9)
    assert [g[2] for g in got] == [s for _, _, s in want]


@pytest.mark.skipif(not BTC_BARS.exists(), reason=f"recorded market data not present at {BTC_BARS} (../shared/data)")
def test_the_btc_file_gives_exactly_the_events_the_rule_says() -> None:
    report = replay_json(str(BTC_BARS), "--symbol", "BTC-PERP")
    want = expected_jumps(bar_quotes(BTC_BARS), **DEFAULTS)
    assert_same(jumps_of(report), want)
    assert report["format"] == "bars" and report["updates"] == 4 * 21_659
    times = {e["time"][:16] for e in report["events"] if e["detector"] == "price_jump"}
    # the sharpest real minute, +2.66 % from the previous close, and the -2.01 % one, are caught
    assert {"2022-01-07 08:27", "2022-01-07 13:39"} <= times, times
    per_day = report["per_day"]
    assert len(per_day) == 16 and sum(d.get("price_jump", 0) for d in per_day.values()) == len(want)
    assert max(d.get("price_jump", 0) for d in per_day.values()) <= 8  # a few a day, not dozens
    assert all(e["symbol"] == "BTC-PERP" and e["time"].endswith(" UTC") for e in report["events"])


def synthetic_bars(path: Path) -> Path:
    """Four hours of one-minute bars: a random walk (0.1 % a minute), a quiet hour (0.01 %), with a
    1.5 % jump in the noisy part and a 0.6 % one in the quiet hour."""
    rng = random.Random(7)
    start = datetime(2024, 3, 1, 0, 0, tzinfo=timezone.utc)
    price = 100.0
    lines = ["timestamp,open,high,low,close,volume"]
    for i in range(240):
        sigma = 0.001 if i < 180 else 0.0001
        o = price
        c = o * math.exp(rng.gauss(0.0, sigma)) * (1.015 if i == 120 else 1.0) * (1.006 if i == 220 else 1.0)
        h, low = max(o, c) * (1 + abs(rng.gauss(0.0, sigma / 2))), min(o, c) * (1 - abs(rng.gauss(0.0, sigma / 2)))
        stamp = (start + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S.000000")
        lines.append(f"{stamp},{o!r},{h!r},{low!r},{c!r},1.0")
        price = c
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_synthetic_file_gives_exactly_the_events_the_rule_says(tmp_path: Path) -> None:
    bars = synthetic_bars(tmp_path / "bars.csv")
    report = replay_json(str(bars))
    want = expected_jumps(bar_quotes(bars), **DEFAULTS)
    assert_same(jumps_of(report), want)
    assert any(abs(m) > 1.4 and t >= datetime(2024, 3, 1, 2, 0, tzinfo=timezone.utc).timestamp() for t, m, _ in want)
    # other settings from a TOML file: a shorter warm-up, a lower k
    settings = tmp_path / "safety.toml"
    settings.write_text("[safety]\nprice_jump_k = 6.0\nprice_jump_min_samples = 5\nprice_jump_vol_window_s = 3600\n")
    report = replay_json(str(bars), "--settings", str(settings))
    want = expected_jumps(bar_quotes(bars), **{**DEFAULTS, "k": 6.0, "min_samples": 5, "window_min": 60})
    assert_same(jumps_of(report), want)
    # the quiet hour's 0.6 % is over its floor once the window has forgotten the noise
    assert any(t >= datetime(2024, 3, 1, 3, 40, tzinfo=timezone.utc).timestamp() for t, _, _ in want), want
    assert report["events"][0]["symbol"] == "REPLAY"
    text = tradectl("safety", "replay", str(bars), "--settings", str(settings))  # and from a shell
    assert text.returncode == 0 and "price_jump: " in text.stdout and "2024-03-01" in text.stdout, text.stdout
    assert [line for line in text.stdout.splitlines() if line.startswith("2024-03-01")] == [
        f"2024-03-01  {len(want):>10}  {0:>10}  {0:>12}  {0:>9}  {0:>12}  {len(want):>5}"]


def test_a_bus_recording_replays_market_data_and_execution(tmp_path: Path) -> None:
    """Quotes with a jump, a limit order filled at its limit far from the touch (no event), one filled
    worse than its limit (an event), and a fill of an order the system did not send (an event that
    holds until the exchange manager's heartbeat says the venue holds nothing foreign), as the data
    router and the exchange manager published them."""
    path = tmp_path / "day.tdbus"
    t0 = int(datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc).timestamp() * 1e9)
    writer = Writer(path, {"tool": "test"}, created_ns=t0)
    seq = 0

    def put(topic: str, source: str, ts_ns: int, body: proto.Message) -> None:
        nonlocal seq
        seq += 1
        writer.write(ts_ns, topic.encode(), proto.encode(source, 1, seq, ts_ns, body))

    def order(cid: str, limit: float, status: proto.OrderStatus) -> proto.OrderUpdate:
        return proto.OrderUpdate(client_order_id=cid, symbol="BTC-USD", side=proto.Side.SELL, qty=1.0,
                                 order_type="limit", limit_price=limit, status=status, filled_qty=0.0,
                                 avg_fill_price=0.0, strategy="mm")

    for i in range(20):
        ts = t0 + i * 1_000_000_000
        mid = 40_000.0 if i < 10 else 41_600.0  # +4 % at 12:00:10
        put("md.BTC-USD", "data_router", ts, proto.Quote(symbol="BTC-USD", bid=mid - 1, ask=mid + 1, bid_size=1.0,
                                                         ask_size=1.0, ts_ns=ts))
        put("md.ETH-USD", "data_router", ts, proto.Quote(symbol="ETH-USD", bid=2999.0, ask=3001.0, bid_size=1.0,
                                                         ask_size=1.0, ts_ns=ts))
        if i == 5:
            put("orders", "exchange_manager", ts, order("s1", 40_100.0, proto.OrderStatus.NEW))
            put("orders", "exchange_manager", ts, order("s2", 40_100.0, proto.OrderStatus.NEW))
        if i == 10:
            for cid, price in (("s1", 40_100.0), ("s2", 40_050.0)):
                put("fills", "exchange_manager", ts, proto.Fill(
                    fill_id=f"f-{cid}", client_order_id=cid, symbol="BTC-USD", side=proto.Side.SELL, qty=1.0,
                    price=price, fee=0.0, ts_ns=ts, strategy="mm"))
        if i == 12:  # an order placed at the venue behind the system's back fills
            put("fills", "exchange_manager", ts, proto.Fill(
                fill_id="f-x", client_order_id="outsider-1", symbol="ETH-USD", side=proto.Side.BUY, qty=1.0,
                price=3001.0, fee=0.0, ts_ns=ts, strategy="foreign"))
        if i in (15, 19):  # the exchange manager's word on it: held at 15, flattened by 19
            unknown = {"orders": 0, "positions": {"ETH-USD": 1.0} if i == 15 else {}}
            put("hb.exchange_manager", "exchange_manager", ts, proto.Heartbeat(
                pid=1, interval_s=0.5, stats=ExchangeSummary(venue_unknown=VenueUnknown(**unknown))))
            put("hb.engine", "engine", ts, proto.Heartbeat(pid=2, interval_s=0.5))
    writer.close()

    report = replay_json(str(path))
    assert report["format"] == "recording" and report["skipped"] == {"heartbeat": 2}  # the engine's
    got = [(e["detector"], e["symbol"], e["ts_ns"], e["message"]) for e in report["events"]]
    assert got == [
        ("price_jump", "BTC-USD", t0 + 10 * 10**9, "Price jump 4.0% from 40000.00 to 41600.00"),
        ("execution", "BTC-USD", t0 + 10 * 10**9,
         "Fill sell 1 BTC-USD at 40050.00 is 12.5 bps worse than its limit 40100.00"),
        ("execution", "ETH-USD", t0 + 12 * 10**9,
         "Fill buy 1 ETH-USD at 3001.00: an order the book of record did not send (outsider-1)"),
    ], got
    # at the end the jump and the bad fill still hold (session time moved on 9 s); the outsider's
    # fill no longer does: the exchange manager said the venue holds nothing foreign any more
    assert [(c["detector"], c["symbol"]) for c in report["holding_at_end"]] == [("execution", "BTC-USD"),
                                                                                 ("price_jump", "BTC-USD")]
    assert [e["detector"] for e in replay_json(str(path), "--symbol", "ETH-USD")["events"]] == ["execution"]
    assert [e["detector"] for e in replay_json(str(path), "--symbol", "BTC-USD")["events"]] == ["price_jump",
                                                                                              "execution"]


def test_a_file_or_settings_it_cannot_use_exits_78_with_one_line(tmp_path: Path) -> None:
    unknown = tmp_path / "what.csv"
    unknown.write_text("a,b,c\n1,2,3\n")
    bad_row = tmp_path / "bad.csv"
    bad_row.write_text("timestamp,bid,ask\n2024-01-01 00:00:00,1.0,oops\n")
    settings = tmp_path / "old.toml"
    settings.write_text("[safety]\nprice_jump_pct = 3.0\nrolling_window_s = 10\n")
    broken = tmp_path / "broken.toml"
    broken.write_text("[safety\n")
    cases = [
        ((str(unknown),), "unrecognised replay file header"),
        ((str(bad_row),), "oops"),
        ((str(tmp_path / "missing.csv"),), "No such file"),
        ((str(unknown), "--settings", str(tmp_path / "none.toml")), "no such file"),
        ((str(unknown), "--settings", str(settings)), "price_jump_pct was removed"),
        ((str(unknown), "--settings", str(broken)), "bad settings in"),
    ]
    for args, says in cases:
        res = invoke("safety", "replay", *args)
        assert res.exit_code == 78, (args, res.exit_code, res.stderr)
        assert res.stdout == "" and len(res.stderr.strip().splitlines()) == 1, (args, res.stderr)
        assert says in res.stderr, (args, res.stderr)
    res = invoke("safety", "replay", str(settings), "--settings", str(settings))
    assert "price_jump_k" in res.stderr and "rolling_window_s was removed" in res.stderr  # names the replacement
    assert os.environ.get("TRADING_CONFIG") is None  # --settings leaves the environment as it was
    res = tradectl("safety", "replay", str(unknown))  # a process of its own exits 78 too
    assert res.returncode == 78 and res.stderr.strip() == (
        f"tradectl safety: {unknown}: unrecognised replay file header: 'a,b,c'"), res.stderr
