"""Where each service's sockets live, derived from settings in one place.

Every service binds two sockets: a PUB for its events and a ROUTER for its commands. With the
default ``ipc`` transport they are files in the run directory (mode 0700, so only this user can
connect); with ``tcp`` they are ports counted from ``bus.tcp_base_port``, on each service's host
(``bus.hosts``, default ``bus.tcp_host``). CURVE secures both (``bus.curve``).
"""

from __future__ import annotations

import os
from pathlib import Path

from bus.settings import BusSettings

# Order matters for tcp port numbering; append, never reorder.
SERVICE_NAMES: tuple[str, ...] = ("orchestrator", "exchange_manager", "engine", "data_router", "safety")
# The venue simulator is not one of ours (it stands in for the outside world) but lives on the same
# machine by default, so its endpoints are named the same way.
VENUE_NAMES: tuple[str, ...] = ("venue_sim",)
# supervisord's event listener (deploy/event_listener.py) publishes process-state alerts as
# ``supervisor``; it has a PUB endpoint and no command socket.
MONITOR_NAMES: tuple[str, ...] = ("supervisor",)
# Every process with a PUB endpoint: what a passive observer (``tradectl bus``) connects to.
PUBLISHERS: tuple[str, ...] = SERVICE_NAMES + VENUE_NAMES + MONITOR_NAMES


class Endpoints:
    def __init__(self, bus: BusSettings, run_dir: Path) -> None:
        self._bus = bus
        self._run_dir = run_dir

    def pub(self, service: str) -> str:
        """Where to reach ``service``'s PUB socket."""
        return self._endpoint(service, "pub", 0)

    def cmd(self, service: str) -> str:
        """Where to reach ``service``'s command socket."""
        return self._endpoint(service, "cmd", 1)

    def bind_pub(self, service: str) -> str:
        """Where ``service`` itself binds its PUB socket (``bus.bind_host`` if set)."""
        return self._endpoint(service, "pub", 0, bind=True)

    def bind_cmd(self, service: str) -> str:
        return self._endpoint(service, "cmd", 1, bind=True)

    def _endpoint(self, service: str, kind: str, offset: int, *, bind: bool = False) -> str:
        if service not in PUBLISHERS:
            raise ValueError(f"unknown service {service!r}; known: {', '.join(PUBLISHERS)}")
        bus = self._bus
        if bus.transport == "tcp":
            port = bus.tcp_base_port + 2 * PUBLISHERS.index(service) + offset
            host = bus.hosts.get(service, bus.tcp_host)
            if bind and bus.bind_host:
                host = bus.bind_host
            return f"tcp://{host}:{port}"
        return f"ipc://{self._run_dir / f'{service}.{kind}'}"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` if needed and make it 0700: ipc sockets inherit no other protection."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path
