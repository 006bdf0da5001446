"""The orchestrator's Python API for a user who drives a running daemon from another process.

``RemoteOrchestrator`` keeps the names of ``LiveTradingOrchestrator`` (``get_state``,
``get_stats``, ``get_connector_status``, ``recover_from_degraded``, ``register_*_callback``,
context manager) and works over the control API and the orchestrator's PUB socket::

    with RemoteOrchestrator() as orch:
        orch.register_state_change_callback(lambda old, new, reason: print(old, "->", new))
        print(orch.get_state(), orch.get_stats()["realized_pnl"])

Callbacks run on a background thread that subscribes to the orchestrator's ``state``,
``health.*`` and the safety process's ``safety`` topics.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import zmq

import proto
from bus import CommandClient, CommandRefused, CommandTimeout, Endpoints, Subscriber, make_socket, security
from proto import OrchestratorState
from proto import commands as rq
from proto.summaries import ExchangeSummary
from services.settings import Settings, load_settings

IDENTITY = "python-api"  # the Python API's key (an operator's rights)


class RemoteError(Exception):
    """The daemon refused the request; the message is its reason."""


class RemoteOrchestrator:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        # The Python API's own key (``python-api``, an operator); MissingKey without it
        self._security = security(self.settings.bus, self.settings.paths.keys, IDENTITY)
        self._ctx = zmq.Context()
        self._endpoints = Endpoints(self.settings.bus, self.settings.paths.run_dir)
        self._client = CommandClient(self._ctx, self._endpoints.cmd("orchestrator"), self.settings.bus,
                                     IDENTITY, service="orchestrator", security=self._security)
        self._callbacks: dict[str, list[Callable[..., None]]] = {"state": [], "connector": [], "health": [],
                                                                 "safety": []}
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self._heard = threading.Event()

    # -- the same names as LiveTradingOrchestrator ----------------------------------------------

    def start(self) -> None:
        """Start delivering callbacks (the daemon itself is started by supervisord)."""
        if self._listener is None:
            self._listener = threading.Thread(target=self._listen, name="orchestrator-events", daemon=True)
            self._listener.start()

    def wait_connected(self, timeout_s: float = 5.0) -> bool:
        """True once the event listener hears the orchestrator (its heartbeat): from then on no
        state change is missed."""
        return self._heard.wait(timeout_s)

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
            self._listener = None
        self._client.close()
        self._ctx.term()

    def is_running(self) -> bool:
        try:
            self._request(rq.State())
        except RemoteError:
            return False
        return True

    def get_state(self) -> OrchestratorState:
        return OrchestratorState(self._request(rq.State()).state)

    def get_stats(self) -> dict[str, Any]:
        """The session's counters (``proto.commands.results.SessionStatsResult``) as a dict."""
        return proto.to_builtins(self._request(rq.Stats()))

    def get_status(self) -> dict[str, Any]:
        return proto.to_builtins(self._request(rq.Status()))

    def get_connector_status(self) -> dict[str, Any]:
        exchange = self._request(rq.Status()).components["exchange_manager"].stats
        return proto.to_builtins(exchange.connectors) if isinstance(exchange, ExchangeSummary) else {}

    def recover_from_degraded(self) -> bool:
        try:
            self._request(rq.Recover())
        except RemoteError:
            return False
        return True

    def register_state_change_callback(self, callback: Callable[[OrchestratorState, OrchestratorState, str], None]) -> None:
        self._callbacks["state"].append(callback)

    def register_connector_callback(self, callback: Callable[[proto.ConnectorHealthEvent], None]) -> None:
        self._callbacks["connector"].append(callback)

    def register_health_callback(self, callback: Callable[[proto.Message], None]) -> None:
        self._callbacks["health"].append(callback)

    def register_safety_callback(self, callback: Callable[[proto.SafetyEvent], None]) -> None:
        self._callbacks["safety"].append(callback)

    register_safety_event_callback = register_safety_callback

    def __enter__(self) -> "RemoteOrchestrator":
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- plumbing ----------------------------------------------------------------------------------

    def _request(self, request: proto.Args) -> Any:
        try:
            return self._client.request(request)
        except (CommandRefused, CommandTimeout, proto.ProtocolError) as exc:  # refused, unreachable, not understood
            raise RemoteError(str(exc)) from None

    def _listen(self) -> None:
        sock = make_socket(self._ctx, zmq.SUB, self.settings.bus)
        sub = Subscriber(sock, self.settings.bus.max_message_bytes)
        for prefix in (proto.topics.STATE, proto.topics.HEALTH_PREFIX, proto.topics.SAFETY,
                       proto.topics.heartbeat("orchestrator")):
            sub.subscribe(prefix)
        for publisher in ("orchestrator", "safety"):
            sub.connect(self._endpoints.pub(publisher), publisher, self._security)
        try:
            while not self._stop.is_set():
                if sock.poll(100):
                    sub.drain(self._dispatch)
        finally:
            sock.close(linger=0)

    def _dispatch(self, _topic: str, env: proto.Envelope) -> None:
        body = env.body
        if isinstance(body, proto.Heartbeat):
            self._heard.set()
        elif isinstance(body, proto.StateChanged):
            self._fire("state", body.old, body.new, body.reason)
        elif isinstance(body, proto.SafetyEvent):
            self._fire("safety", body)
        elif isinstance(body, proto.ConnectorHealthEvent):
            self._fire("connector", body)
            self._fire("health", body)
        elif isinstance(body, (proto.EngineHealthEvent, proto.ProcessHealthEvent)):
            self._fire("health", body)

    def _fire(self, kind: str, *args: Any) -> None:
        for callback in list(self._callbacks[kind]):
            try:
                callback(*args)
            except Exception:  # a user's callback must not end the listener
                pass
