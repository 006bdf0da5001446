"""Degradations are counted: the ``failsafe_degradation_count``-th (3, the default) within the
window escalates to FAILSAFE, even when each earlier one was recovered from.

Each degradation is a stale feed: the venue stops publishing market data (``fault stop_feed``),
the safety process reports STALE_FEED after ``stale_feed_s`` (1 s here), the session degrades; the
feed is resumed and the operator recovers (``tradectl recover``).
"""

from __future__ import annotations

import json
from pathlib import Path

import proto
from bus import CommandTimeout
from integration.daemon import Daemon, wait_until
from integration.e2e import (
    Collector,
    ask,
    incident_files,
    orchestrator_status,
    venue_open_orders,
    venue_positions,
)

MODULE_CONFIG = {
    "safety": {"stale_feed_s": 1.0},
    "orchestrator": {"failsafe_degradation_count": 3},
}


def _fresh_feed(d: Daemon) -> bool:
    symbols = ask(d, "data_router", "status")["stats"]["symbols"]
    return bool(symbols) and all(s["age_s"] < 0.3 for s in symbols.values())


def _routed(d: Daemon) -> dict[str, int]:
    return {s: v["routed"] for s, v in ask(d, "data_router", "status")["stats"]["symbols"].items()}


def _quotes_flowed_since(d: Daemon, before: dict[str, int], n: int = 3) -> bool:
    """Every symbol has had ``n`` more quotes routed (and so seen by the safety process) since."""
    now = _routed(d)
    return bool(before) and all(now.get(s, 0) >= count + n for s, count in before.items())


def test_the_third_degradation_escalates_to_failsafe(module_daemon: Daemon) -> None:
    d = module_daemon
    d.wait_state("live", timeout=30)
    wait_until(lambda: _fresh_feed(d), 10, ignore=(CommandTimeout,))
    with Collector(d, "safety", [proto.topics.SAFETY]) as safety:
        for n in (1, 2, 3):
            assert ask(d, "venue_sim", "fault", fault="stop_feed") == {"fault": "stop_feed"}
            if n < 3:
                d.wait_state("degraded", timeout=10)
                stats = d.stats_json()
                assert stats["degradations"] == n and stats["failsafe_activations"] == 0, stats
                stale = [e for e in safety.bodies(proto.SafetyEvent) if e.event_type is proto.SafetyEventType.STALE_FEED]
                assert stale and all(e.severity is proto.Severity.WARNING for e in stale), stale
                assert ask(d, "venue_sim", "fault", fault="resume_feed") == {"fault": "resume_feed"}
                wait_until(lambda: _fresh_feed(d), 10, ignore=(CommandTimeout,))
                # the safety process has seen it too (it may lag the router on a loaded host)
                wait_until(lambda: ask(d, "safety", "status")["stats"]["holding"] == [], 10, ignore=(CommandTimeout,))
                res = d.tradectl("recover")
                assert res.returncode == 0, (n, res.stderr)
                assert d.state() == "live"
                # The feed flows again before the next stop: the next silence is a new incident.
                routed = _routed(d)
                wait_until(lambda: _quotes_flowed_since(d, routed), 5, ignore=(CommandTimeout,))
            else:
                d.wait_state("failsafe", timeout=10)
    stats = d.stats_json()
    assert stats["degradations"] == 3 and stats["failsafe_activations"] == 1, stats
    log = Path(orchestrator_status(d)["session_logs"]["live_trading"]).read_text(encoding="utf-8")
    assert log.count("State transition: LIVE → DEGRADED (safety: stale_feed") == 3, log
    assert ("State transition: DEGRADED → FAILSAFE (3 degradations within 3600s "
            "(failsafe_degradation_count=3))") in log, log
    # and the failsafe sequence ran as for any other cause
    wait_until(lambda: orchestrator_status(d)["failsafe_pending"] is None, 15)
    (report_path,), _ = incident_files(d)
    report = json.loads(report_path.read_text())
    assert report["trigger"] == "3 degradations within 3600s (failsafe_degradation_count=3)"
    assert report["ok"] is True, report["steps"]
    assert venue_positions(d) == {} and venue_open_orders(d) == []
