"""What the safety process says still holds (its heartbeat's ``holding``, the ``conditions`` query,
``tradectl safety status``), through the real daemon: nothing on a healthy trading session (the
demo strategies' limit orders fill at their limits as the feed moves through them: no execution
anomaly); a price jump for its hold time; a silent feed until it speaks again; and a recovery
within a jump's hold time does not leave the session LIVE.

One daemon for the module: the critical price-jump threshold raised above the 25 % jump injected, an
8 s price-jump hold (the recovery within it is a tradectl start, seen to take 5 s beside two other
test workers on 2 cores), a 1 s stale-feed threshold, a degradation count these cannot reach.
"""

from __future__ import annotations

import json
import time

import proto
from bus import CommandTimeout
from integration.daemon import Daemon, wait_until
from integration.e2e import Collector, ask, ensure_live

MODULE_CONFIG = {
    "safety": {"price_jump_critical_pct": 30.0, "price_jump_hold_s": 8.0, "stale_feed_s": 1.0},
    "orchestrator": {"failsafe_degradation_count": 10},
}


def holding(d: Daemon) -> list[dict]:
    return ask(d, "safety", "conditions")["holding"]


def safety_status(d: Daemon) -> dict:
    res = d.tradectl("safety", "status", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_a_healthy_trading_session_holds_nothing(module_daemon: Daemon) -> None:
    d = module_daemon
    ensure_live(d)
    wait_until(lambda: d.stats_json()["fills"] >= 4, 30, interval=0.25)
    time.sleep(2.0)
    assert d.state() == "live", d.stats_json()
    status = safety_status(d)
    assert status["holding"] == [] and status["clock"] == "wall"
    assert status["events"]["execution"] == 0, status  # no fill judged an anomaly
    heartbeat = ask(d, "safety", "status")["stats"]
    assert heartbeat["holding"] == [] and heartbeat["symbols"] == 3
    text = d.tradectl("safety", "status")
    assert text.returncode == 0 and "0 condition(s) holding" in text.stdout, text.stdout


def test_a_jump_holds_for_its_hold_time_and_a_recovery_meanwhile_does_not_stay_live(module_daemon: Daemon) -> None:
    d = module_daemon
    ensure_live(d)
    with Collector(d, "safety", [proto.topics.SAFETY]) as safety:
        assert ask(d, "venue_sim", "fault", fault="jump_price", symbol="BTC-USD", value=25.0)
        d.wait_state("degraded", timeout=10)
        (jump,) = wait_until(lambda: [e for e in safety.bodies(proto.SafetyEvent) if e.symbol == "BTC-USD"], 5)
    (held,) = [c for c in holding(d) if c["detector"] == "price_jump"]
    assert held["symbol"] == "BTC-USD" and held["event_type"] == "data_anomaly"
    assert abs(held["since"] - jump.ts_ns / 1e9) < 1e-6  # when it was seen: the event's session time
    assert abs(held["since"] - time.time()) < 5  # live, session time is wall time
    assert held["reason"] == jump.message
    res = d.tradectl("recover")  # within the hold time
    if res.returncode == 0:
        d.wait_state("degraded", timeout=2.0)  # the reset reported the jump again at once
    else:
        assert "refused" in res.stderr, res.stderr
    wait_until(lambda: holding(d) == [], 15, interval=0.2, ignore=(CommandTimeout,))
    res = d.tradectl("recover")
    assert res.returncode == 0, res.stderr
    time.sleep(1.5)
    assert d.state() == "live"


def test_a_silent_feed_holds_until_it_speaks_again(module_daemon: Daemon) -> None:
    d = module_daemon
    ensure_live(d)
    assert ask(d, "venue_sim", "fault", fault="stop_feed") == {"fault": "stop_feed"}
    try:
        d.wait_state("degraded", timeout=10)
        silent = {"BTC-USD", "ETH-USD", "SOL-USD", "*"}  # each symbol, and the whole feed (seen first)
        stale = lambda: {c["symbol"] for c in holding(d) if c["detector"] == "stale_feed"}  # noqa: E731
        held = wait_until(lambda: stale() if stale() == silent else None, 10, message=lambda: str(stale()))
        time.sleep(1.0)
        assert {c["symbol"] for c in safety_status(d)["holding"]} >= held  # still silent: still holding
    finally:
        assert ask(d, "venue_sim", "fault", fault="resume_feed") == {"fault": "resume_feed"}
    wait_until(lambda: holding(d) == [], 5, interval=0.1, ignore=(CommandTimeout,))
    res = d.tradectl("recover")
    assert res.returncode == 0, res.stderr
    time.sleep(1.5)
    assert d.state() == "live"
