"""What the orchestrator hears on the bus, and how the session reacts.

Heartbeats and governance events from every peer; safety events (a critical one fails the session
safe, any other degrades it; an execution anomaly in FAILSAFE starts a round at once);
supervisord's word on a program (a FATAL trading service fails the session safe: nothing will
restart it); the data's clock in a replay. The user's callbacks (``Callbacks``) hear of each.
"""

from __future__ import annotations

import logging

import proto
from bus.endpoints import VENUE_NAMES
from bus.publisher import Publisher
from proto import OrchestratorState as S
from services.orchestrator.callbacks import Callbacks
from services.orchestrator.components import ComponentTracker
from services.orchestrator.failsafe_control import FailsafeControl
from services.orchestrator.session_state import Session
from services.orchestrator.session_watch import SessionWatch
from services.orchestrator.supervision import SUPERVISOR, Supervision

log = logging.getLogger("orchestrator")


class EventHandlers:
    def __init__(self, session: Session, components: ComponentTracker, watch: SessionWatch,
                 failsafe: FailsafeControl, supervision: Supervision, callbacks: Callbacks,
                 publisher: Publisher) -> None:
        self._session = session
        self._components = components
        self._watch = watch
        self._failsafe = failsafe
        self._callbacks = callbacks
        self._publisher = publisher
        self._supervision = supervision
        self.safety_events = 0
        self.safety_before_reset = 0  # events read after a recovery's reset that were raised before it
        self.safety_by_type: dict[tuple[str, str], int] = {}
        self.process_alerts: dict[str, int] = {}

    def on_message(self, _topic: str, env: proto.Envelope) -> None:
        self._components.heard(env)
        body = env.body
        if isinstance(body, proto.SafetyEvent):
            safety = self._components.components.get(env.source)
            if safety is not None and safety.before_reset(env) and body.severity is not proto.Severity.CRITICAL:
                # Raised before the reset that a recovery just made, read after it: the recovery's
                # checks already saw what it reports gone (a condition still holding is raised again).
                self.safety_before_reset += 1
                self._session.logs.safety(f"{body.severity.value.upper()} {body.event_type.value} {body.symbol}: "
                                          f"{body.message} (raised before the recovery's reset: not a new incident)",
                                          logging.INFO, event="safety_event_before_reset",
                                          data=proto.to_builtins(body))
                return
            self.on_safety_event(body)
        elif isinstance(body, proto.GovernanceEvent):
            self.on_governance(env.source, body)

    def on_governance(self, source: str, body: proto.GovernanceEvent) -> None:
        """A peer's governance event, or one of the orchestrator's own (a caller it refused)."""
        detail = f" {body.detail}" if body.detail else ""
        self._session.logs.governance(
            f"{source}: {body.kind} {body.symbol}: {body.reason}{detail}".replace("  ", " "),
            logging.WARNING if body.kind.startswith("order_refused") or body.kind == "unauthorised" else logging.INFO,
            event="governance", data={"source": source, **proto.to_builtins(body)})

    def on_clock(self, _topic: str, env: proto.Envelope) -> None:
        if isinstance(env.body, proto.SessionTime):
            self._session.clock.observe(env.body.ts_ns)

    def raise_safety_event(self, ev: proto.SafetyEvent) -> None:
        """One of the orchestrator's own (storage): published on ``safety`` like any detector's."""
        self._publisher.publish(proto.topics.SAFETY, ev)
        self.on_safety_event(ev)

    def on_safety_event(self, ev: proto.SafetyEvent) -> None:
        """Critical → FAILSAFE; any other anomaly → DEGRADED (and no automatic recovery yet)."""
        session = self._session
        session.clock.observe(ev.ts_ns)  # the event's market time, however late the clock topic is
        self.safety_events += 1
        key = (ev.event_type.value, ev.severity.value)
        self.safety_by_type[key] = self.safety_by_type.get(key, 0) + 1
        level = logging.CRITICAL if ev.severity is proto.Severity.CRITICAL else logging.WARNING
        session.logs.safety(f"{ev.severity.value.upper()} {ev.event_type.value} {ev.symbol}: {ev.message}", level,
                            event="safety_event", data=proto.to_builtins(ev))
        session.note(f"safety {ev.severity.value} {ev.event_type.value} {ev.symbol}: {ev.message}")
        Callbacks.fan_out(self._callbacks.safety, ev)
        self._watch.unsettle()
        if session.state == S.FAILSAFE and ev.event_type is proto.SafetyEventType.EXECUTION_ANOMALY:
            # The venue holds or did something the book did not send: get flat again at once.
            self._failsafe.again(f"in FAILSAFE: {ev.message}")
            return
        if session.state not in (S.LIVE, S.DEGRADED):
            return
        if ev.severity is proto.Severity.CRITICAL:
            self._watch.escalate(f"critical safety event: {ev.message}")
        else:
            self._watch.degrade(f"safety: {ev.event_type.value} {ev.symbol}: {ev.message}")

    def on_process_alert(self, _topic: str, env: proto.Envelope) -> None:
        """supervisord's word on a program (or a program's own, ``orphaned``): logged; a FATAL
        trading service fails the session safe, because nothing will restart it and trading on
        without it is trading blind; an orphaned one degrades it (``supervision.py``)."""
        self._components.heard(env)  # the listener's heartbeat: the supervisor is a component
        alert = env.body
        if isinstance(alert, proto.Heartbeat) and env.source == SUPERVISOR:
            self._supervision.listener_heartbeat(alert.stats)
        if not isinstance(alert, proto.ProcessAlert):
            return
        self.process_alerts[alert.event] = self.process_alerts.get(alert.event, 0) + 1
        level = logging.CRITICAL if alert.event in ("fatal", "hung", "orphaned") else logging.WARNING
        detail = f": {alert.detail}" if alert.detail else ""
        self._session.logs.health(f"Process {alert.program}: {alert.event.upper()} under supervisord "
                                  f"(from {alert.from_state}, pid {alert.pid}){detail}", level,
                                  event="process_alert", data=proto.to_builtins(alert))
        self._session.note(f"supervisord: {alert.program} {alert.event}")
        Callbacks.fan_out(self._callbacks.health, alert)
        if alert.event == "orphaned":
            self._supervision.peer_orphaned(alert)
        if alert.event != "fatal":
            return
        ours = self._components.mark_fatal(alert.program)  # so `open` is refused while it is down
        if self._session.state not in (S.LIVE, S.DEGRADED):
            return
        if ours:
            self._watch.escalate(f"{alert.program} is FATAL under supervisord: missing for good")
        elif alert.program in VENUE_NAMES:
            self._watch.escalate(f"venue {alert.program} is FATAL under supervisord: nothing to trade with or "
                                 f"flatten at")
