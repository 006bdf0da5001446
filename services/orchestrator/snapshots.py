"""What the orchestrator tells about the session: ``stats``, ``status``, its heartbeat's stats and
the metrics' snapshot. Read-only (the engine's decision count, journalled when a new engine process
is seen, is the one exception: ``session_counters.engine_decisions``); every figure comes from
what the loop already holds, so a snapshot never waits on a peer.
"""

from __future__ import annotations

import os
import time
from typing import Any

import proto
from services.orchestrator.alerts import Alerter
from services.orchestrator.components import ComponentTracker
from services.orchestrator.event_handlers import EventHandlers
from services.orchestrator.failsafe_control import FailsafeControl
from services.orchestrator.market_calendar import MarketSchedule
from services.orchestrator.session_counters import engine_decisions, trading_counters
from services.orchestrator.session_state import Session
from services.orchestrator.storage_watch import StorageWatch
from services.orchestrator.supervision import Supervision
from services.runtime import ServiceRuntime
from proto.summaries import EngineSummary, ExchangeSummary, OrchestratorSummary


class Snapshots:
    def __init__(self, session: Session, components: ComponentTracker, runtime: ServiceRuntime, *,
                 events: EventHandlers, supervision: Supervision, failsafe: FailsafeControl, storage: StorageWatch,
                 alerter: Alerter, degradation_window_s: float, schedule: MarketSchedule) -> None:
        self._schedule = schedule
        self._session = session
        self._components = components
        self._runtime = runtime
        self._events = events
        self._supervision = supervision
        self._failsafe = failsafe
        self._storage = storage
        self._alerter = alerter
        self._window_s = degradation_window_s
        self.metrics_url: str | None = None

    def stats(self) -> dict[str, Any]:
        session, comps = self._session, self._components.components
        engine = comps["engine"].summary(EngineSummary)
        return {
            "session_id": session.session_id,
            "state": session.state.value,
            "session_duration": round(time.time() - session.counters.started_at, 3),
            "transitions": session.machine.transitions_done,
            "degradations": session.recent_degradations(self._window_s),
            "failsafe_activations": session.counters.failsafe_activations,
            "orchestrator_restarts": session.counters.orchestrator_restarts,
            "safety_events": self._events.safety_events,
            "process_alerts": dict(self._events.process_alerts),
            **self._supervision.stats(),
            "engine_latency_p50_ms": engine.latency_p50_ms,
            "engine_latency_p99_ms": engine.latency_p99_ms,
            "engine_errors": engine.error_count,
            # this session's: session_counters.py
            **trading_counters(comps["exchange_manager"], self._decisions(), session.session_id),
        }

    def _decisions(self) -> int:
        decisions, changed = engine_decisions(self._components.components["engine"], self._session.counters)
        if changed:
            self._session.save_counters()
        return decisions

    def heartbeat_stats(self) -> OrchestratorSummary:
        return OrchestratorSummary(session_id=self._session.session_id,
                                   transitions=self._session.machine.transitions_done)

    def status(self) -> dict[str, Any]:
        session, journal = self._session, self._session.session_journal
        return {
            **self._runtime.process_status(),
            "state": session.state.value,
            "session_id": session.session_id,
            "session_fingerprint": session.counters.fingerprint,
            "session_started_at": session.counters.started_at,
            "failsafe_pending": session.counters.failsafe_pending,
            "failsafe_running": self._failsafe.running,
            "journal": {"ok": not journal.held, "error": journal.error, "held_writes": journal.held,
                        "failures": journal.failures},
            "disk": self._storage.disk_problems,
            "alerts": list(self._alerter.outcomes),
            "session_logs": {kind: str(path) for kind, path in session.logs.paths.items()},
            "components": self.components(),
            "metrics_url": self.metrics_url,
            "market": self._schedule.status(session.market_time()),
        }

    def metrics(self) -> dict[str, Any]:
        return {
            "stats": self.stats(),
            "components": self.components(),
            "process_alerts": dict(self._events.process_alerts),
            "safety_events_by_type": dict(self._events.safety_by_type),
        }

    def components(self) -> dict[str, dict[str, Any]]:
        """Every process as the orchestrator knows it, itself included."""
        return {"orchestrator": {
            "alive": True, "pid": os.getpid(), "heartbeat_age_s": 0.0,
            "restarts": self._session.counters.orchestrator_restarts, "trading_enabled": self._session.trading(),
            "fatal": False, "stats": self._runtime.summary(),
        }, **self._components.snapshot()}

    def connectors(self) -> dict[str, Any]:
        return proto.to_builtins(self._components.components["exchange_manager"].summary(ExchangeSummary).connectors)
