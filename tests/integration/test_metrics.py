"""The orchestrator's Prometheus endpoint, scraped over HTTP from a trading daemon, and the Grafana
dashboard in deploy/ charting only metrics the endpoint serves."""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bus import CommandTimeout
from bus.endpoints import SERVICE_NAMES

from .daemon import REPO_ROOT, Daemon, wait_until
from .e2e import FAST_STRATEGIES

DASHBOARD = REPO_ROOT / "deploy" / "grafana_dashboard.json"


@pytest.fixture(scope="module")
def daemon() -> Daemon:
    config = {"bus": {"heartbeat_interval_s": 0.1}, "engine": {"strategies": FAST_STRATEGIES},
              "venue_sim": {"jump_probability_per_s": 0.0}}
    with Daemon(config) as d:
        yield d


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.read().decode()


def served_names(url: str) -> set[str]:
    """Every series name the endpoint declares, with or without samples yet (a labelled counter
    has none until its first label appears)."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    return {family.name + suffix for family in text_string_to_metric_families(_get(url))
            for suffix in suffixes.get(family.type, [""])}


def scrape(url: str) -> dict[str, list[Any]]:
    """{sample name: [(labels, value), ...]} of one scrape."""
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(_get(url)):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    [found] = [v for got, v in samples[name] if all(got.get(k) == want for k, want in labels.items())]
    return found


def test_status_json_names_the_endpoint_and_it_serves_the_session(daemon: Daemon) -> None:
    d = daemon
    wait_until(lambda: d.state() == "live", 30, ignore=(CommandTimeout,), message=d.diagnostics)
    url = d.status_json()["metrics_url"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", url), url

    def traded() -> dict[str, list[Any]] | None:
        samples = scrape(url)
        return samples if value(samples, "trading_fills_total") > 0 and \
            value(samples, "trading_tick_to_order_latency_seconds_count") > 0 else None

    samples = wait_until(traded, 30, message=d.diagnostics)
    assert value(samples, "trading_orchestrator_up") == 1
    assert value(samples, "trading_session_state", state="live") == 1
    assert value(samples, "trading_session_state", state="failsafe") == 0
    for service in SERVICE_NAMES:
        assert value(samples, "trading_process_up", service=service) == 1, service
        assert value(samples, "trading_process_restarts_total", service=service) == 0, service
        assert value(samples, "trading_bus_published_total", service=service) > 0, service
    assert value(samples, "trading_orders_submitted_total") >= value(samples, "trading_fills_total") > 0
    assert value(samples, "trading_decisions_total") > 0
    assert value(samples, "trading_decision_latency_seconds_count") > 0
    buckets = [(labels["le"], v) for labels, v in samples["trading_tick_to_order_latency_seconds_bucket"]]
    assert buckets[-1][0] == "+Inf"
    assert buckets[-1][1] == value(samples, "trading_tick_to_order_latency_seconds_count")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert {labels["symbol"] for labels, _ in samples["trading_position"]} <= {"BTC-USD", "ETH-USD"}
    assert {labels["kind"] for labels, _ in samples["trading_pnl"]} == {"realized", "unrealized"}
    # The endpoint agrees with tradectl stats.
    stats = d.stats_json()
    assert value(scrape(url), "trading_session_transitions_total") == stats["transitions"]


def test_a_failsafe_and_a_restart_show_in_the_metrics(daemon: Daemon) -> None:
    d = daemon
    url = d.status_json()["metrics_url"]
    # RUNNING first: a kill within startsecs is a BACKOFF to supervisord, not the EXITED counted below
    d.wait_running(["data_router"])
    old = d.kill9("data_router")
    d.wait_respawned("data_router", old)
    wait_until(lambda: value(scrape(url), "trading_process_restarts_total", service="data_router") == 1, 20,
               message=d.diagnostics)
    wait_until(lambda: value(scrape(url), "trading_process_alerts_total", event="exited") >= 1, 10)
    if d.state() != "failsafe":
        assert d.tradectl("failsafe", "--reason", "metrics test").returncode == 0
    samples = wait_until(lambda: (s := scrape(url)) and value(s, "trading_session_state", state="failsafe") == 1
                         and s, 20)
    assert value(samples, "trading_failsafe_activations_total") == 1


def test_the_dashboard_charts_only_served_metrics(daemon: Daemon) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    served = served_names(daemon.status_json()["metrics_url"])
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert exprs
    functions = {"rate", "increase", "histogram_quantile", "max", "by", "sum", "le"}
    for expr in exprs:
        names = {n for n in re.findall(r"[a-z_][a-z0-9_]*", expr) if n.startswith("trading_")} - functions
        assert names, expr
        assert names <= served, (expr, names - served)
