"""A recorded session played through a safety process started on its own, offline: the price jump
in the recording makes that safety process raise the same critical event. This is how a failsafe
is reproduced after the fact (``tradectl bus record`` in production, ``play`` on a desk machine).

Real processes: ``python -m services.safety`` with its own run, log and state dirs (no other
service), the real ``tradectl bus play`` binding the data router's PUB endpoint there, and a SUB on
the safety process's own endpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import zmq

import proto
from bus import BusSettings, Endpoints, Subscriber
from services.tradectl.sniffer.playback import Player
from services.tradectl.sniffer.recording import Reader, Writer

from .support import sniffer

REPO = Path(__file__).resolve().parents[2]


def _recording(path: Path) -> int:
    """BTC-USD quotes from the data router every 20 ms for 1 s around 40,000, then a 30 % jump."""
    t0 = time.time_ns()
    writer = Writer(path, {"tool": "test"}, created_ns=t0)
    n = 60
    for i in range(n):
        mid = 40_000.0 if i < 50 else 52_000.0
        ts = t0 + i * 20_000_000
        data = proto.encode("data_router", 1, i + 1, ts, proto.Quote(symbol="BTC-USD", bid=mid - 1, ask=mid + 1,
                                                                     bid_size=1.0, ask_size=1.0, ts_ns=ts))
        writer.write(ts, b"md.BTC-USD", data)
    writer.close()
    return n


@pytest.mark.integration
def test_a_recorded_price_jump_replayed_offline_makes_a_lone_safety_process_raise_it(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("offline")
    run_dir = root / "run"
    run_dir.mkdir(mode=0o700)
    recording = root / "failsafe.tdbus"
    _recording(recording)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    env.update({"TRADING_PATHS__RUN_DIR": str(run_dir), "TRADING_PATHS__LOG_DIR": str(root / "logs"),
                "TRADING_PATHS__STATE_DIR": str(root / "state"), "PYTHONUNBUFFERED": "1",
                "TRADING_BUS__CURVE": "false"})  # as sniffer() plays it: an offline bus in the clear
    safety = subprocess.Popen([sys.executable, "-m", "services.safety"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, proto.topics.SAFETY.encode())
    sub.setsockopt(zmq.SUBSCRIBE, proto.topics.heartbeat("safety").encode())
    sub.connect(Endpoints(BusSettings(), run_dir).pub("safety"))
    try:
        assert sub.poll(20_000), "the safety process never published a heartbeat"
        # play binds the data router's endpoint in run_dir; --wait lets the safety process connect
        res = sniffer(run_dir, "play", str(recording), "--wait", "1.5")
        assert res.returncode == 0, res.stderr
        events = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not events:
            if sub.poll(200):
                topic, data = sub.recv_multipart()
                if topic == proto.topics.SAFETY.encode():
                    events.append(proto.decode(data).body)
        assert events, "the replayed jump raised no safety event"
        [jump] = events
        assert jump.event_type is proto.SafetyEventType.DATA_ANOMALY, jump
        assert jump.severity is proto.Severity.CRITICAL and jump.symbol == "BTC-USD", jump
        assert jump.message == "Price jump 30.0% from 40000.00 to 52000.00", jump
        assert jump.evidence["reference"] == 40_000.0 and jump.evidence["price"] == 52_000.0
    finally:
        sub.close(linger=0)
        ctx.term()
        safety.terminate()
        try:
            safety.wait(10)
        except subprocess.TimeoutExpired:
            safety.kill()
            safety.wait()


def _drain_until(sock: zmq.Socket, sub: Subscriber, got: list[proto.Envelope], done: Callable[[], bool],
                 timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        if sock.poll(50):
            sub.drain(lambda _topic, env: got.append(env))


def test_each_pass_of_a_looped_play_reaches_a_subscriber_as_a_restarted_publisher(tmp_path: Path) -> None:
    """``play --loop``: each further pass goes out under a newer epoch (the body's bytes unchanged),
    so a subscriber that saw the pass before takes it as a restarted data router, not stale repeats.
    Played at 4x (0.3 s a pass), three passes: the first lets the SUB connect (a PUB drops what it
    sends before), the second and third are judged."""
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    n = _recording(tmp_path / "rec.tdbus")
    bus = BusSettings()
    player = Player(bus, run_dir, {"data_router"})
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sub = Subscriber(sock, bus.max_message_bytes)
    sub.subscribe("md.")
    sub.connect(Endpoints(bus, run_dir).pub("data_router"))
    got: list[proto.Envelope] = []

    def third_pass_in() -> bool:
        return sum(1 for e in got if e.epoch == 3) >= n

    reader = threading.Thread(target=lambda: _drain_until(sock, sub, got, third_pass_in, 15.0), daemon=True)
    try:
        reader.start()
        player.play(Reader(tmp_path / "rec.tdbus"), rate=4, start_s=0, topics=(), loop=True,
                    stop=lambda: player.sent >= 3 * n)
        reader.join(15)
    finally:
        player.close()
        sock.close(linger=0)
        ctx.term()
    passes = {epoch: [e for e in got if e.epoch == epoch] for epoch in (2, 3)}
    for epoch, envs in passes.items():
        assert [e.seq for e in envs] == list(range(1, n + 1)), f"pass {epoch}: {len(envs)} of {n} delivered"
    assert [e.body for e in passes[3]] == [e.body for e in passes[2]]
    assert {e.epoch for e in got} <= {1, 2, 3} and sub.peers["data_router"].restarts >= 1
    assert sub.peers["data_router"].lost == 0
