"""The session clock: wall time live, the data's own time in a replay."""

from __future__ import annotations

from pathlib import Path

from services.session_clock import SessionClock
from services.settings import Settings
from services.venue_sim.prices import ReplayPrices
from services.venue_sim.settings import VenueSimSettings
from unit_support import ManualClock



def test_live_clock_is_the_wall_clock() -> None:
    wall = ManualClock(100.0)
    clock = SessionClock("wall", wall=wall)
    clock.observe(1_600_000_000_000_000_000)  # data time does not move a live clock
    assert clock.now() == 100.0 and clock.started and not clock.replaying
    wall.t = 250.0
    assert clock.now() == 250.0 and clock.wall_idle_s() == 0.0


def test_replay_clock_follows_the_data_forward_only() -> None:
    mono = ManualClock(100.0)
    clock = SessionClock("data", monotonic=mono)
    assert not clock.started and clock.now() == 0.0
    clock.observe(1_641_540_000_000_000_000)
    assert clock.started and clock.now() == 1_641_540_000.0
    mono.t = 103.0
    assert clock.wall_idle_s() == 3.0
    clock.observe(1_641_539_000_000_000_000)  # an older update (a slower stream) does not turn it back
    assert clock.now() == 1_641_540_000.0 and clock.wall_idle_s() == 3.0
    clock.observe(1_641_540_060_000_000_000)
    assert clock.now() == 1_641_540_060.0 and clock.wall_idle_s() == 0.0


def test_auto_mode_reads_the_data_when_replaying(tmp_path: Path) -> None:
    assert Settings().clock_mode() == "wall"
    bars = tmp_path / "bars.csv"
    bars.write_text("timestamp,open,high,low,close,volume\n2022-01-07 08:27:00,100,101,99,100.5,1\n")
    replay = Settings(engine={"strategies": []},
                      venue_sim={"source": "replay", "replay_files": [{"path": str(bars), "symbol": "BTC-PERP"}]})
    assert replay.clock_mode() == "data"
    assert Settings(session={"clock": "wall"}, engine={"strategies": []},
                    venue_sim=replay.venue_sim).clock_mode() == "wall"


def test_replayed_quotes_carry_the_recorded_time_and_loops_move_forward(tmp_path: Path) -> None:
    bars = tmp_path / "bars.csv"
    bars.write_text("timestamp,open,high,low,close,volume\n"
                    "2022-01-07 08:27:00,100,101,99,100.5,1\n2022-01-07 08:28:00,100.5,101,100,100.8,1\n")
    cfg = VenueSimSettings(source="replay", replay_loop=True, replay_speed=1e9, replay_wait_for_subscriber=False,
                           replay_files=[{"path": str(bars), "symbol": "BTC-PERP"}])
    prices = ReplayPrices(cfg, start=0.0)
    first = [t.ts_ns for t in prices.due(1.0)]
    assert first[0] == 1_641_544_020_000_000_000  # 2022-01-07 08:27:00 UTC
    assert first == sorted(first) and len(first) == 8
    second = [t.ts_ns for t in prices.due(2.0)]
    assert second[0] > first[-1], "a looped replay's time must keep moving forward"
