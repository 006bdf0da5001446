"""``LiveTradingOrchestrator``: the session for a user who runs it inside their own process.

The object runs one orchestrator (``main.Orchestrator``: the session, its journal and its control
API) on one event loop: its own thread after ``start()``, or the caller's thread in ``run()``.
Everything that changes the session runs on that loop; the methods here may be called from any
thread and hand their work to it. The other processes are reached through the bus.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import proto
from proto import OrchestratorState as S
from services.orchestrator.callbacks import Callbacks
from services.orchestrator.main import Orchestrator
from services.orchestrator.session_state import Refused
from services.orchestrator.state_machine import StateCallback
from services.settings import Settings, load_settings

__all__ = ["LiveTradingOrchestrator", "Refused"]
RECOVER_WAIT_S = 30.0  # recover_from_degraded waits this long at most for the safety process's reset


class LiveTradingOrchestrator:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self._callbacks = Callbacks()
        self._service: Orchestrator | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the sockets and run the loop in a background thread; returns once serving."""
        if self.is_running():
            return
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            try:
                self._service = Orchestrator(self.settings, self._callbacks)
            except BaseException as exc:  # hand start-up failures to the caller of start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._service.run()

        self._thread = threading.Thread(target=serve, name="orchestrator-loop", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]

    def run(self) -> None:
        """Serve in the calling thread until ``stop()`` or SIGTERM."""
        self._service = Orchestrator(self.settings, self._callbacks)
        self._service.run()

    def stop(self) -> None:
        """Stop serving. The session state is left as journalled: a restarted orchestrator
        resumes it. (To end the session itself, use ``shutdown()``.)"""
        if self._service is not None:
            self._service.runtime.reactor.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
            self._thread = None

    def is_running(self) -> bool:
        return self._service is not None and self._service.runtime.reactor.running

    def __enter__(self) -> "LiveTradingOrchestrator":
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- the session (any thread) ----------------------------------------------------------------

    def get_state(self) -> S:
        return S.STARTUP if self._service is None else self._service.session.state

    @property
    def session_id(self) -> str:
        return self._running().session.session_id

    def get_stats(self) -> dict[str, Any]:
        service = self._running()
        return service.in_loop(service.snapshots.stats)

    def get_status(self) -> dict[str, Any]:
        service = self._running()
        return service.in_loop(service.snapshots.status)

    def get_connector_status(self) -> dict[str, Any]:
        service = self._running()
        return service.in_loop(service.snapshots.connectors)

    def recover_from_degraded(self) -> bool:
        """DEGRADED → LIVE under the conditions of ``recover``; False (and the reason logged) if
        not. Called from another thread than the loop's: it waits for the safety process's answer."""
        service = self._running()
        try:
            service.in_loop(service.control.recover).result(timeout=RECOVER_WAIT_S)
        except Refused as exc:
            service.runtime.log.warning("recover refused: %s", exc)
            return False
        return True

    def shutdown(self, reason: str = "operator shutdown") -> None:
        """End the session (→ SHUTDOWN); its end-of-day report follows."""
        service = self._running()
        service.in_loop(lambda: service.control.shutdown(reason))

    # -- callbacks (called on the loop thread) ---------------------------------------------------

    def register_state_change_callback(self, callback: StateCallback) -> None:
        """``callback(old, new, reason)`` after each journalled transition."""
        self._callbacks.state.append(callback)
        if self._service is not None:
            self._service.session.machine.add_callback(callback)

    def register_connector_callback(self, callback: Callable[[proto.ConnectorHealthEvent], None]) -> None:
        self._callbacks.connector.append(callback)

    def register_health_callback(self, callback: Callable[[proto.Message], None]) -> None:
        self._callbacks.health.append(callback)

    def register_safety_callback(self, callback: Callable[[proto.SafetyEvent], None]) -> None:
        self._callbacks.safety.append(callback)

    register_safety_event_callback = register_safety_callback

    def _running(self) -> Orchestrator:
        if self._service is None:
            raise RuntimeError("the orchestrator is not started (start() or run())")
        return self._service
