"""Health assessment: connectors, the engine and every process, judged against thresholds.

Each assessment returns the health events to publish and log, and the problems that call for
DEGRADED (a process missing, every connector down or unhealthy, one of several connectors down, an
engine error storm) or FAILSAFE (the daily loss limit; every connector down, or one of several, for
longer than ``connector_down_escalate_after_s``: no venue to trade with or to flatten at, or
positions at a venue nothing can reach, which people must hear of). The orchestrator decides the
transition; this module only judges.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from collections.abc import Callable

import proto
from proto.summaries import ConnectorStats, EngineSummary, ExchangeSummary
from services.orchestrator.components import ComponentTracker
from bus import Publisher
from services.orchestrator.session_logs import SessionLogs
from services.orchestrator.settings import HealthSettings
from services.orchestrator.supervision import SUPERVISOR

MISSING_SUPERVISOR = ("supervisor missing (supervisord's event listener is silent: supervisord is dead or hung, "
                      "and nothing restarts a process that dies)")


@dataclass
class Assessment:
    events: list[proto.Message] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # each one calls for DEGRADED
    # Calls for FAILSAFE: the daily loss limit, or every connector down for connector_down_escalate_after_s.
    critical: str | None = None
    healthy_connectors: int = 0

    @property
    def healthy(self) -> bool:
        return not self.problems and self.critical is None


class HealthMonitor:
    def __init__(self, cfg: HealthSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._cfg = cfg
        self._clock = clock
        self._connector_errors: dict[str, int] = {}
        self._engine_errors: int | None = None
        self._all_down_since: float | None = None  # time.monotonic()
        self._down_since: dict[str, float] = {}  # per connector, while disconnected

    def assess(self, components: ComponentTracker) -> Assessment:
        out = Assessment()
        for name in components.missing():
            out.problems.append(MISSING_SUPERVISOR if name == SUPERVISOR else f"process {name} missing (no heartbeat)")
        for name, comp in components.components.items():
            age = components.age_s(name)
            out.events.append(proto.ProcessHealthEvent(
                service=name, alive=components.alive(name), heartbeat_age_s=-1.0 if age is None else age,
                restarts=comp.restarts, reason="" if components.alive(name) else "no heartbeat"))
        exchange = components.components["exchange_manager"]
        if components.alive("exchange_manager"):
            summary = exchange.summary(ExchangeSummary)
            self._connectors(summary.connectors, out)
            self._loss(summary, out)
        if components.alive("engine") and components.components["engine"].stats is not None:
            self._engine(components.components["engine"].summary(EngineSummary), out)
        return out

    def _connectors(self, connectors: dict[str, ConnectorStats], out: Assessment) -> None:
        cfg = self._cfg
        for name, st in connectors.items():
            errors = st.error_count
            new_errors = errors - self._connector_errors.get(name, errors)
            self._connector_errors[name] = errors
            reasons = []
            if not st.connected:
                reasons.append("disconnected")
            if st.latency_ms > cfg.connector_max_latency_ms:
                reasons.append(f"latency {st.latency_ms:.1f}ms over {cfg.connector_max_latency_ms:g}ms")
            if new_errors > cfg.connector_max_new_errors:
                reasons.append(f"{new_errors} new errors")
            healthy = not reasons
            out.healthy_connectors += healthy
            out.events.append(proto.ConnectorHealthEvent(
                connector=name, connected=st.connected, latency_ms=st.latency_ms,
                messages_received=st.messages_received, messages_dropped=st.messages_dropped, error_count=errors,
                healthy=healthy, reason="; ".join(reasons)))
        now = self._clock()
        after = cfg.connector_down_escalate_after_s
        self._each_down(connectors, now, after, out)
        if not connectors or out.healthy_connectors:
            self._all_down_since = None
            return
        out.problems.append("every connector is down or unhealthy")
        if self._all_down_since is None:
            self._all_down_since = now
        if after is not None and now - self._all_down_since >= after and out.critical is None:
            out.critical = f"every connector down or unhealthy for {now - self._all_down_since:.0f}s"

    def _each_down(self, connectors: dict[str, ConnectorStats], now: float, after: float | None,
                   out: Assessment) -> None:
        """One of several connectors down while another is up: its symbols can be neither traded nor
        flattened while the others trade on (DEGRADED); down for ``after``, it escalates as they all
        would. (Every one down is the rule after this one.)"""
        for name in [n for n in self._down_since if n not in connectors or connectors[n].connected]:
            del self._down_since[name]
        others_up = any(st.connected for st in connectors.values())
        for name, st in connectors.items():
            if st.connected:
                continue
            since = self._down_since.setdefault(name, now)
            if not others_up:
                continue
            out.problems.append(f"connector {name} is down: its symbols can be neither traded nor flattened")
            if after is not None and now - since >= after and out.critical is None:
                out.critical = f"connector {name} down for {now - since:.0f}s"

    def _engine(self, st: EngineSummary, out: Assessment) -> None:
        cfg = self._cfg
        errors = st.error_count
        new_errors = 0 if self._engine_errors is None else errors - self._engine_errors
        self._engine_errors = errors
        reasons = []
        if st.latency_p99_ms > cfg.engine_max_p99_ms:
            reasons.append(f"decision p99 {st.latency_p99_ms:.2f}ms over {cfg.engine_max_p99_ms:g}ms")
        if new_errors >= cfg.engine_error_storm:
            reasons.append(f"error storm: {new_errors} new errors")
            out.problems.append(f"engine error storm ({new_errors} new errors)")
        out.events.append(proto.EngineHealthEvent(
            decisions_made=st.decisions_made, latency_p50_ms=st.latency_p50_ms,
            latency_p99_ms=st.latency_p99_ms, error_count=errors,
            healthy=not reasons, reason="; ".join(reasons)))

    def _loss(self, st: ExchangeSummary, out: Assessment) -> None:
        pnl = st.realized_pnl + st.unrealized_pnl
        if pnl < -self._cfg.max_daily_loss:
            out.critical = f"loss limit: PnL {pnl:,.2f} beyond -{self._cfg.max_daily_loss:,.2f}"


def publish_health(ev: proto.Message, publisher: Publisher, logs: SessionLogs) -> None:
    """Publish a health event on ``health.<kind>`` and log what an operator must see."""
    if isinstance(ev, proto.ConnectorHealthEvent):
        publisher.publish(proto.topics.HEALTH_PREFIX + "connector", ev)
        logs.health(f"Connector {ev.connector}: {'healthy' if ev.healthy else 'UNHEALTHY'} "
                    f"connected={ev.connected} latency_ms={ev.latency_ms:.2f} "
                    f"received={ev.messages_received} dropped={ev.messages_dropped} "
                    f"errors={ev.error_count} {ev.reason}".rstrip(),
                    logging.INFO if ev.healthy else logging.WARNING,
                    event="connector_health", data=proto.to_builtins(ev))
    elif isinstance(ev, proto.EngineHealthEvent):
        publisher.publish(proto.topics.HEALTH_PREFIX + "engine", ev)
        if not ev.healthy:
            logs.live(f"Engine unhealthy: {ev.reason}", logging.WARNING, event="engine_health",
                      data=proto.to_builtins(ev))
    elif isinstance(ev, proto.ProcessHealthEvent):
        publisher.publish(proto.topics.HEALTH_PREFIX + "process", ev)
        if not ev.alive:
            logs.health(f"Process {ev.service}: missing (heartbeat age {ev.heartbeat_age_s:.1f}s)",
                        logging.WARNING, event="process_health", data=proto.to_builtins(ev))
