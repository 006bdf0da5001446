"""services.orchestrator.health.HealthMonitor.assess, over a real ComponentTracker fed real
heartbeat envelopes (encoded and decoded as they travel on the bus)."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

import proto
from services.orchestrator.components import ComponentTracker
from services.orchestrator.health import Assessment, HealthMonitor
from services.orchestrator.components import PEERS
from services.orchestrator.settings import HealthSettings
from unit_support import wait_until
import msgspec
from proto.summaries import ConnectorStats

EPOCH = time.time_ns()


def heartbeat(source: str, stats: dict[str, Any] | None = None, epoch: int = EPOCH, seq: int = 1) -> proto.Envelope:
    summary = msgspec.convert({**(stats or {}), "service": source}, proto.summaries.ServiceSummary)
    body = proto.Heartbeat(pid=os.getpid(), interval_s=0.2, stats=summary, trading_enabled=True)
    return proto.decode(proto.encode(source, epoch, seq, time.time_ns(), body))


def connector(connected: bool = True, latency_ms: float = 1.0, errors: int = 0) -> dict[str, Any]:
    return {"connected": connected, "latency_ms": latency_ms, "messages_received": 10, "messages_dropped": 0,
            "error_count": errors, "reconnects": 0}


def exchange_stats(connectors: dict[str, dict[str, Any]] | None = None, realized: float = 0.0,
                   unrealized: float = 0.0) -> dict[str, Any]:
    return {"connectors": {"sim": connector()} if connectors is None else connectors,
            "realized_pnl": realized, "unrealized_pnl": unrealized}


def engine_stats(errors: int = 0, p99: float = 0.5) -> dict[str, Any]:
    return {"decisions_made": 42, "latency_p50_ms": 0.1, "latency_p99_ms": p99, "error_count": errors}


def tracker(missing_after_s: float = 5.0, skip: tuple[str, ...] = (), **stats: dict[str, Any]) -> ComponentTracker:
    t = ComponentTracker(PEERS, missing_after_s)
    defaults = {"exchange_manager": exchange_stats(), "engine": engine_stats()}
    for name in PEERS:
        if name not in skip:
            t.heard(heartbeat(name, stats.get(name, defaults.get(name, {}))))
    return t


def of_type(assessment: Any, cls: type) -> list:
    return [e for e in assessment.events if isinstance(e, cls)]


def test_all_healthy() -> None:
    out = HealthMonitor(HealthSettings()).assess(tracker())
    assert out.healthy and out.problems == [] and out.critical is None
    procs = of_type(out, proto.ProcessHealthEvent)
    assert {p.service for p in procs} == set(PEERS) and all(p.alive and p.reason == "" for p in procs)
    assert all(0 <= p.heartbeat_age_s < 5.0 for p in procs)
    (conn,) = of_type(out, proto.ConnectorHealthEvent)
    assert conn.connector == "sim" and conn.healthy and conn.connected and conn.messages_received == 10
    (eng,) = of_type(out, proto.EngineHealthEvent)
    assert eng.healthy and eng.decisions_made == 42 and eng.latency_p99_ms == 0.5
    assert out.healthy_connectors == 1


def test_a_process_never_heard_is_missing_only_after_the_grace() -> None:
    """A (re)started orchestrator gives its peers one heartbeat timeout to be heard first."""
    t = tracker(missing_after_s=0.3, skip=("safety",))
    monitor = HealthMonitor(HealthSettings())
    assert monitor.assess(t).problems == []
    assert t.not_alive() == ["safety"]  # but it does not count as heard (no READY without it)
    wait_until(lambda: "safety" in t.missing(), timeout=3.0, what="the grace runs out")


def test_a_missing_process_is_a_problem() -> None:
    t = tracker(missing_after_s=0.2, skip=("safety",))
    wait_until(lambda: "safety" in t.missing(), timeout=3.0, what="the grace runs out")
    for name in PEERS:  # the others keep beating
        if name != "safety":
            t.heard(heartbeat(name, {"exchange_manager": exchange_stats(), "engine": engine_stats()}.get(name, {}),
                              seq=2))
    out = HealthMonitor(HealthSettings()).assess(t)
    assert out.problems == ["process safety missing (no heartbeat)"]
    (safety,) = [e for e in of_type(out, proto.ProcessHealthEvent) if e.service == "safety"]
    assert not safety.alive and safety.heartbeat_age_s == -1.0 and safety.reason == "no heartbeat"
    assert not out.healthy


def test_a_process_goes_missing_when_its_heartbeats_stop() -> None:
    t = tracker(missing_after_s=0.2)
    monitor = HealthMonitor(HealthSettings())
    assert monitor.assess(t).healthy
    wait_until(lambda: t.missing() == list(PEERS), timeout=3.0, what="heartbeats age out")
    out = monitor.assess(t)
    assert len(out.problems) == len(PEERS)
    # with the exchange manager and engine gone, their stats are not judged (they are stale)
    assert of_type(out, proto.ConnectorHealthEvent) == [] and of_type(out, proto.EngineHealthEvent) == []
    t.heard(heartbeat("engine", engine_stats(), seq=2))
    assert "process engine missing (no heartbeat)" not in monitor.assess(t).problems


def test_every_connector_down_is_a_problem_and_so_is_one_of_several() -> None:
    monitor = HealthMonitor(HealthSettings())
    down = tracker(exchange_manager=exchange_stats({"a": connector(False), "b": connector(False)}))
    out = monitor.assess(down)
    assert out.problems == ["every connector is down or unhealthy"]
    assert [(c.connector, c.healthy, c.reason) for c in of_type(out, proto.ConnectorHealthEvent)] == [
        ("a", False, "disconnected"), ("b", False, "disconnected")]
    # one of two down: its symbols can be neither traded nor flattened (DEGRADED), the other trades on
    one_up = tracker(exchange_manager=exchange_stats({"a": connector(False), "b": connector(True)}))
    out = HealthMonitor(HealthSettings()).assess(one_up)
    assert out.problems == ["connector a is down: its symbols can be neither traded nor flattened"]
    assert out.healthy_connectors == 1 and out.critical is None
    # one up but unhealthy (slow, erring) is not a problem while another is healthy
    slow = tracker(exchange_manager=exchange_stats({"a": connector(latency_ms=1e6), "b": connector(True)}))
    assert HealthMonitor(HealthSettings()).assess(slow).problems == []


def test_connector_latency_over_the_threshold_is_unhealthy() -> None:
    monitor = HealthMonitor(HealthSettings(connector_max_latency_ms=250.0))
    t = tracker(exchange_manager=exchange_stats({"slow": connector(latency_ms=300.0), "fast": connector()}))
    out = monitor.assess(t)
    events = {c.connector: c for c in of_type(out, proto.ConnectorHealthEvent)}
    assert not events["slow"].healthy and events["slow"].connected
    assert events["slow"].reason == "latency 300.0ms over 250ms" and events["slow"].latency_ms == 300.0
    assert events["fast"].healthy
    assert out.problems == []  # one healthy connector is enough to trade
    only_slow = tracker(exchange_manager=exchange_stats({"slow": connector(latency_ms=300.0)}))
    assert HealthMonitor(HealthSettings()).assess(only_slow).problems == ["every connector is down or unhealthy"]


def test_connector_new_errors_between_assessments() -> None:
    monitor = HealthMonitor(HealthSettings(connector_max_new_errors=20))
    t = tracker(exchange_manager=exchange_stats({"sim": connector(errors=100)}))
    assert of_type(monitor.assess(t), proto.ConnectorHealthEvent)[0].healthy  # the first count is a baseline
    t.heard(heartbeat("exchange_manager", exchange_stats({"sim": connector(errors=110)}), seq=2))
    assert of_type(monitor.assess(t), proto.ConnectorHealthEvent)[0].healthy  # 10 new
    t.heard(heartbeat("exchange_manager", exchange_stats({"sim": connector(errors=131)}), seq=3))
    (event,) = of_type(monitor.assess(t), proto.ConnectorHealthEvent)
    assert not event.healthy and event.reason == "21 new errors" and event.error_count == 131


def test_engine_error_storm() -> None:
    monitor = HealthMonitor(HealthSettings(engine_error_storm=10))
    t = tracker(engine=engine_stats(errors=3))
    assert monitor.assess(t).healthy  # the first count is a baseline
    t.heard(heartbeat("engine", engine_stats(errors=12), seq=2))
    assert monitor.assess(t).healthy  # 9 new errors
    t.heard(heartbeat("engine", engine_stats(errors=22), seq=3))
    out = monitor.assess(t)
    assert out.problems == ["engine error storm (10 new errors)"]
    (eng,) = of_type(out, proto.EngineHealthEvent)
    assert not eng.healthy and eng.reason == "error storm: 10 new errors" and eng.error_count == 22


def test_engine_slow_decisions_are_unhealthy_but_not_a_problem() -> None:
    out = HealthMonitor(HealthSettings(engine_max_p99_ms=50.0)).assess(tracker(engine=engine_stats(p99=75.0)))
    (eng,) = of_type(out, proto.EngineHealthEvent)
    assert not eng.healthy and eng.reason == "decision p99 75.00ms over 50ms"
    assert out.problems == []


@pytest.mark.parametrize(("realized", "unrealized", "breach"), [
    (-4000.0, -1500.0, "loss limit: PnL -5,500.00 beyond -5,000.00"),
    (-6000.0, 2000.0, None),
    (-5000.0, 0.0, None),  # at the limit, not beyond it
    (0.0, -5000.01, "loss limit: PnL -5,000.01 beyond -5,000.00"),
])
def test_loss_limit(realized: float, unrealized: float, breach: str | None) -> None:
    t = tracker(exchange_manager=exchange_stats(realized=realized, unrealized=unrealized))
    out = HealthMonitor(HealthSettings(max_daily_loss=5000.0)).assess(t)
    assert out.critical == breach
    assert out.healthy == (breach is None)
    assert out.problems == []


def test_a_restarted_process_is_counted() -> None:
    t = tracker()
    t.heard(heartbeat("data_router", epoch=EPOCH + 1_000_000_000))
    t.heard(heartbeat("data_router", epoch=EPOCH))  # a late message of the old incarnation
    out = HealthMonitor(HealthSettings()).assess(t)
    (router,) = [e for e in of_type(out, proto.ProcessHealthEvent) if e.service == "data_router"]
    assert router.restarts == 1 and router.alive


def test_every_connector_down_too_long_calls_for_failsafe() -> None:
    """Down for less than connector_down_escalate_after_s: DEGRADED only; past it: FAILSAFE; a
    connector back resets the clock."""
    now = [1000.0]
    monitor = HealthMonitor(HealthSettings(connector_down_escalate_after_s=30.0), clock=lambda: now[0])
    down = {"sim": ConnectorStats(connected=False, latency_ms=0.0, error_count=0)}
    up = {"sim": ConnectorStats(connected=True, latency_ms=1.0, error_count=0)}

    def assess(connectors: dict) -> Assessment:
        out = Assessment()
        monitor._connectors(connectors, out)
        return out

    assert assess(down).critical is None
    now[0] += 29.0
    out = assess(down)
    assert out.problems == ["every connector is down or unhealthy"] and out.critical is None
    now[0] += 2.0
    assert assess(down).critical == "every connector down or unhealthy for 31s"
    assert assess(up).critical is None and assess(up).healthy
    now[0] += 40.0
    assert assess(down).critical is None  # the clock started again


def test_one_of_several_connectors_down_too_long_calls_for_failsafe() -> None:
    """Its positions sit at a venue nothing can reach: past connector_down_escalate_after_s it
    escalates as every connector down would; back up, its clock starts again."""
    now = [1000.0]
    monitor = HealthMonitor(HealthSettings(connector_down_escalate_after_s=30.0), clock=lambda: now[0])
    up = ConnectorStats(connected=True, latency_ms=1.0, error_count=0)
    down = ConnectorStats(connected=False, latency_ms=0.0, error_count=0)

    def assess(connectors: dict) -> Assessment:
        out = Assessment()
        monitor._connectors(connectors, out)
        return out

    assert assess({"sim": up, "ccxt": down}).critical is None
    now[0] += 31.0
    out = assess({"sim": up, "ccxt": down})
    assert out.critical == "connector ccxt down for 31s" and out.healthy_connectors == 1
    assert assess({"sim": up, "ccxt": up}).healthy
    now[0] += 40.0
    assert assess({"sim": up, "ccxt": down}).critical is None  # the clock started again
