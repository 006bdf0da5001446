"""DEGRADED and the way back: an anomaly below the critical threshold degrades the session (trading
restricted to reducing orders); ``tradectl recover`` is refused with its reason while it must be
(nothing to recover from, a process missing) and brings the session back to LIVE once it may.

One daemon for the module, with the critical price-jump threshold raised above the 25% jump that
the tests inject, a 1 s stale-feed threshold, a degradation count that these few degradations
cannot reach, and a price jump that holds for no time (these tests recover right after one; how a
jump holds off a recovery is tests/safety/test_holding.py's). Each test starts from LIVE.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import proto
from bus import CommandTimeout
from integration.daemon import Daemon, wait_until
from integration.e2e import (
    Collector,
    ask,
    em_positions,
    em_stats,
    ensure_live,
    orchestrator_status,
    submit,
    wait_routed,
)

MODULE_CONFIG = {
    "safety": {"price_jump_critical_pct": 30.0, "stale_feed_s": 1.0, "price_jump_hold_s": 0.0},
    "orchestrator": {"failsafe_degradation_count": 10},
}


@pytest.fixture
def live(module_daemon: Daemon) -> Daemon:
    ensure_live(module_daemon)
    module_daemon.wait_components_alive()
    return module_daemon


def test_recover_while_live_is_refused_with_the_reason(live: Daemon) -> None:
    d = live
    before = d.stats_json()
    res = d.tradectl("recover")
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    assert res.stdout == ""
    assert "refused: session is live; recover needs degraded" in res.stderr, res.stderr
    assert d.state() == "live"
    after = d.stats_json()
    assert after["transitions"] == before["transitions"] and after["degradations"] == before["degradations"]


def test_a_jump_below_the_raised_critical_threshold_degrades_instead_of_failsafe(live: Daemon) -> None:
    d = live
    before = d.stats_json()
    with Collector(d, "safety", [proto.topics.SAFETY]) as safety:
        assert ask(d, "venue_sim", "fault", fault="jump_price", symbol="BTC-USD", value=25.0)
        d.wait_state("degraded", timeout=10)
        jumps = wait_until(lambda: [e for e in safety.bodies(proto.SafetyEvent) if e.symbol == "BTC-USD"], 5)
    event = jumps[0]
    assert event.event_type is proto.SafetyEventType.DATA_ANOMALY
    assert event.severity is proto.Severity.WARNING, event
    assert 24.0 <= event.evidence["move_pct"] < 30.0, event
    # it stays DEGRADED: a warning never escalates to FAILSAFE by itself
    time.sleep(1.5)
    assert d.state() == "degraded"
    stats = d.stats_json()
    assert stats["failsafe_activations"] == before["failsafe_activations"] == 0
    assert stats["degradations"] == before["degradations"] + 1
    assert stats["safety_events"] > before["safety_events"]
    # DEGRADED restricts trading to orders that reduce a position (degraded_mode = reduce_only)
    wait_until(lambda: em_stats(d)["gate"]["mode"] == "reduce_only", 5)
    wait_routed(d, "SOL-USD")
    assert abs(em_positions(d).get("SOL-USD", {}).get("qty", 0.0)) < 1e-9  # no strategy trades SOL-USD
    refused = submit(d, "SOL-USD", "buy", 0.1)
    assert not refused.ok and "reduce-only" in refused.error, refused
    log = Path(orchestrator_status(d)["session_logs"]["live_trading"]).read_text(encoding="utf-8")
    assert "State transition: LIVE → DEGRADED (safety: data_anomaly BTC-USD: Price jump" in log, log

    res = d.tradectl("recover")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "recover: done; session is live"
    assert d.state() == "live"
    wait_until(lambda: em_stats(d)["gate"]["mode"] == "normal", 5)


def test_recover_is_refused_while_a_process_is_missing_then_succeeds(live: Daemon) -> None:
    d = live
    program = "data_router"
    res = d.supervisorctl("stop", d.qualified(program))
    assert res.returncode == 0, res.stdout + res.stderr
    try:
        d.wait_state("degraded", timeout=10)
        reason = orchestrator_status(d)["components"][program]
        assert reason["alive"] is False, reason
        res = d.tradectl("recover")
        assert res.returncode == 1, (res.stdout, res.stderr)
        assert "refused: not healthy: missing data_router" in res.stderr, res.stderr
        assert d.state() == "degraded"
        log = Path(orchestrator_status(d)["session_logs"]["live_trading"]).read_text(encoding="utf-8")
        assert "process missing: data_router" in log, log
    finally:
        d.start_programs(program)
    d.wait_components_alive()
    wait_until(lambda: ask(d, program, "status")["stats"]["routed"] > 0, 10, ignore=(CommandTimeout,))
    res = d.tradectl("recover")
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert d.state() == "live"
    # and it stays live: the restarted router's feed is fresh, nothing is missing
    time.sleep(1.5)
    assert d.state() == "live", orchestrator_status(d)


def test_recover_is_refused_while_the_feed_is_still_silent_then_succeeds(live: Daemon) -> None:
    """The feed stops, the session degrades (STALE_FEED); the operator recovers while the feed is
    still silent: refused, naming the silent feed (the safety process says the condition holds),
    however long the operator waits. Once the feed is back, the same command recovers."""
    d = live
    assert ask(d, "venue_sim", "fault", fault="stop_feed") == {"fault": "stop_feed"}
    try:
        d.wait_state("degraded", timeout=10)
        time.sleep(1.5)  # longer than stale_feed_s: the old cool-down/reset timing no longer matters
        res = d.tradectl("recover")
        assert res.returncode == 1, (res.stdout, res.stderr)
        assert "refused: the cause is not gone: stale_feed" in res.stderr, res.stderr
        assert d.state() == "degraded"
        holding = ask(d, "safety", "status")["stats"]["holding"]
        assert holding and all(h["detector"] == "stale_feed" for h in holding), holding
    finally:
        assert ask(d, "venue_sim", "fault", fault="resume_feed") == {"fault": "resume_feed"}
    wait_until(lambda: ask(d, "safety", "status")["stats"]["holding"] == [], 10)
    res = d.tradectl("recover")
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert d.state() == "live"
