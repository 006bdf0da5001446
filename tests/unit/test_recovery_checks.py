"""Recovery waits until the safety process says, freshly, that nothing holds."""

from __future__ import annotations

from proto.summaries import Condition, SafetySummary
from services.orchestrator.components import Component
from services.orchestrator.recovery_checks import safety_holding


def test_nothing_heard_is_a_reason_to_wait() -> None:
    assert safety_holding(Component("safety"), 0.25, 100.0) == ["the safety process has not reported yet"]


def test_an_old_report_does_not_vouch() -> None:
    safety = Component("safety", stats=SafetySummary(holding=[]), stats_at=90.0)
    (reason,) = safety_holding(safety, 0.25, 100.0)
    assert "not reported for 10.0s" in reason


def test_a_report_without_the_list_is_a_reason_to_wait() -> None:
    safety = Component("safety", stats=SafetySummary(events={}), stats_at=99.9)
    assert safety_holding(safety, 0.25, 100.0) == ["the safety process does not say which conditions hold"]


def test_each_holding_condition_is_named_and_a_fresh_empty_list_clears() -> None:
    holding = [Condition(detector="stale_feed", event_type="stale_feed", symbol="*", reason="no market data for 37.0s",
                         since=60.0),
               Condition(detector="execution", event_type="execution_anomaly", symbol="SOL-PERP",
                         reason="fill worse than its limit", since=70.0)]
    safety = Component("safety", stats=SafetySummary(holding=holding), stats_at=99.9)
    assert safety_holding(safety, 0.25, 100.0) == ["stale_feed *: no market data for 37.0s",
                                                   "execution SOL-PERP: fill worse than its limit"]
    safety.stats = SafetySummary(holding=[])
    assert safety_holding(safety, 0.25, 100.0) == []
