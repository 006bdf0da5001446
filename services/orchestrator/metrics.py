"""Prometheus metrics of the session, served over HTTP by the orchestrator (prometheus_client).

Nothing is counted twice: at each scrape the collector takes one snapshot from the orchestrator
(on its loop: its own state and counters, and the latest heartbeat of every process, which carries
that process's counters and latency histograms) and turns it into metric families. So the numbers
are those ``tradectl status``/``stats`` show, and a scrape costs the session one loop hop.

Every metric is prefixed ``trading_``; ``deploy/grafana_dashboard.json`` charts them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from proto import OrchestratorState
from proto.summaries import EngineSummary, ExchangeSummary, RouterSummary, Summary

S = TypeVar("S", bound=Summary)

log = logging.getLogger(__name__)

Snapshot = Callable[[], dict[str, Any]]
# Heartbeat bus counters (services/runtime.py ServiceRuntime.bus_totals) → metric name and help.
BUS_COUNTERS = {
    "published": "Messages published on the bus",
    "received": "Messages received from the bus",
    "gaps": "Sequence gaps seen by the process's subscribers",
    "lost": "Messages lost, by sequence number, as seen by the process's subscribers",
    "rejected": "Bad frames and requests rejected (undecodable, wrong version, oversized, ...)",
    "commands": "Commands handled",
}


class SessionCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        try:
            snap = self._snapshot()
        except Exception:  # the orchestrator is stopping or its loop is stuck: report only that
            log.exception("metrics snapshot failed")
            up = GaugeMetricFamily("trading_orchestrator_up", "1 when the orchestrator answered the scrape")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("trading_orchestrator_up", "1 when the orchestrator answered the scrape")
        up.add_metric([], 1)
        yield up
        yield from _session(snap)
        yield from _processes(snap["components"], snap["process_alerts"])
        yield from _trading(snap["stats"], snap["components"])
        events = CounterMetricFamily("trading_safety_events", "Safety events received, by type and severity",
                                     labels=["type", "severity"])
        for (kind, severity), n in sorted(snap["safety_events_by_type"].items()):
            events.add_metric([kind, severity], n)
        yield events


def _session(snap: dict[str, Any]) -> Iterator[Metric]:
    stats = snap["stats"]
    state = GaugeMetricFamily("trading_session_state", "1 for the session's current state", labels=["state"])
    for s in OrchestratorState:
        state.add_metric([s.value], 1 if s.value == stats["state"] else 0)
    yield state
    for name, key, help_ in (
        ("trading_session_transitions", "transitions", "State transitions in this session"),
        ("trading_failsafe_activations", "failsafe_activations", "FAILSAFE activations in this session"),
        ("trading_orchestrator_restarts", "orchestrator_restarts", "Orchestrator restarts in this session"),
    ):
        counter = CounterMetricFamily(name, help_)
        counter.add_metric([], stats[key])
        yield counter
    degradations = GaugeMetricFamily("trading_degradations", "Degradations within the escalation window")
    degradations.add_metric([], stats["degradations"])
    yield degradations


def _processes(components: dict[str, dict[str, Any]], alerts: dict[str, int]) -> Iterator[Metric]:
    up = GaugeMetricFamily("trading_process_up", "1 while the process is heard from", labels=["service"])
    fatal = GaugeMetricFamily("trading_process_fatal", "1 once supervisord gave up on the process",
                              labels=["service"])
    age = GaugeMetricFamily("trading_process_heartbeat_age_seconds", "Seconds since the process was last heard",
                            labels=["service"])
    restarts = CounterMetricFamily("trading_process_restarts", "Restarts seen (new epochs)", labels=["service"])
    bus = {key: CounterMetricFamily(f"trading_bus_{key}", help_, labels=["service"])
           for key, help_ in BUS_COUNTERS.items()}
    for name, comp in sorted(components.items()):
        up.add_metric([name], 1 if comp["alive"] else 0)
        fatal.add_metric([name], 1 if comp.get("fatal") else 0)
        if comp["heartbeat_age_s"] is not None:
            age.add_metric([name], comp["heartbeat_age_s"])
        restarts.add_metric([name], comp["restarts"])
        summary = comp["stats"]
        if summary is not None:
            for key, family in bus.items():
                family.add_metric([name], getattr(summary.bus, key))
    yield from (up, fatal, age, restarts, *bus.values())
    by_event = CounterMetricFamily("trading_process_alerts", "supervisord alerts (event listener), by event",
                                   labels=["event"])
    for event in ("exited", "backoff", "fatal", "hung", "orphaned"):
        by_event.add_metric([event], alerts.get(event, 0))
    yield by_event


def _trading(stats: dict[str, Any], components: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    for name, key, help_ in (
        ("trading_decisions", "decisions_made", "Strategy decisions sent as orders or cancels"),
        ("trading_orders_submitted", "orders_submitted", "Orders sent to venues"),
        ("trading_orders_rejected", "orders_rejected", "Orders refused by the gate or rejected by a venue"),
        ("trading_fills", "fills", "Fills"),
        ("trading_fees", "fees", "Fees paid"),
        ("trading_engine_errors", "engine_errors", "Strategy errors and order timeouts in the engine"),
    ):
        counter = CounterMetricFamily(name, help_)
        counter.add_metric([], stats.get(key, 0))
        yield counter
    open_orders = GaugeMetricFamily("trading_open_orders", "Orders working at venues")
    open_orders.add_metric([], stats.get("open_orders", 0))
    yield open_orders
    position = GaugeMetricFamily("trading_position", "Net position per symbol", labels=["symbol"])
    for symbol, qty in sorted(stats.get("positions", {}).items()):
        position.add_metric([symbol], qty)
    yield position
    pnl = GaugeMetricFamily("trading_pnl", "Profit and loss", labels=["kind"])
    pnl.add_metric(["realized"], stats.get("realized_pnl", 0.0))
    pnl.add_metric(["unrealized"], stats.get("unrealized_pnl", 0.0))
    yield pnl
    exchange = _summary(components, "exchange_manager", ExchangeSummary)
    refusals = CounterMetricFamily("trading_gate_refusals", "Orders refused by the pre-trade gate, by limit",
                                   labels=["limit"])
    for limit, n in sorted(exchange.gate.get("refusals", {}).items()):
        refusals.add_metric([limit], n)
    yield refusals
    router = _summary(components, "data_router", RouterSummary)
    routed = CounterMetricFamily("trading_market_data_routed", "Market data updates routed to subscribers")
    routed.add_metric([], router.routed)
    yield routed
    refused = CounterMetricFamily("trading_market_data_refused", "Market data refused by validation, by reason",
                                  labels=["reason"])
    for reason, n in sorted(router.refused.items()):
        refused.add_metric([reason], n)
    yield refused
    yield _histogram("trading_decision_latency_seconds", "Strategy decision time per quote",
                     _summary(components, "engine", EngineSummary).decision_latency)
    yield _histogram("trading_tick_to_order_latency_seconds",
                     "Quote published at the venue to its order sent to the venue",
                     exchange.tick_to_order)


def _summary(components: dict[str, dict[str, Any]], name: str, kind: type[S]) -> S:
    """``name``'s latest heartbeat summary, or an empty one (zeros) before the first."""
    summary = components.get(name, {}).get("stats")
    return summary if isinstance(summary, kind) else kind()


def _histogram(name: str, help_: str, snap: dict[str, Any] | None) -> Metric:
    """A ``services.latency.LatencyHistogram`` snapshot (milliseconds) as a histogram in seconds."""
    family = HistogramMetricFamily(name, help_)
    if snap:
        buckets = [(repr(le / 1000), n) for le, n in zip(snap["le_ms"], snap["cumulative"])]
        buckets.append(("+Inf", snap["cumulative"][-1]))
        family.add_metric([], buckets, snap["sum_ms"] / 1000)
    return family


class MetricsServer:
    """The HTTP endpoint (``/metrics``) in a thread of its own, on a private registry."""

    def __init__(self, host: str, port: int, snapshot: Snapshot) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(SessionCollector(snapshot))
        self._server, self._thread = start_http_server(port, addr=host, registry=self._registry)
        self.url = f"http://{host}:{self._server.server_port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
