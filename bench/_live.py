"""The whole daemon under a real supervisord, driven over the bus: shared by the live benchmarks
(``tick_to_order``, ``throughput``, ``soak``, ``failsafe``).

``LiveDaemon`` extends ``bench.daemon_idle.Daemon`` (``deploy.temp_daemon``: the tests' supervisord
template, start and always-clean stop; a TOML of the benchmark's own after the temp ``[paths]``,
validated with ``services.settings.Settings`` before anything starts) with: command clients to every service's
command socket (``bus.CommandClient`` to ``bus.Endpoints(settings.bus, run_dir).cmd(name)``), and
waits on the session state. Use it as a context manager: supervisord is shut down, any program
left behind killed and the temp dir removed, also on error or Ctrl-C.
"""

from __future__ import annotations

import time
from typing import Any

import zmq

import proto
from bench.daemon_idle import Daemon, _status_kb, _ticks
from bus import CommandClient, CommandTimeout, Endpoints, security
from deploy.temp_daemon import HARNESS


class LiveDaemon(Daemon):
    def __init__(self, toml: str, prefix: str = "bench-live-") -> None:
        super().__init__(toml, prefix)
        self.endpoints = Endpoints(self.settings.bus, self.run_dir)
        # the benchmark's own key (an operator's, made by TempDaemon); in the clear if bus.curve is off
        self.security = security(self.settings.bus, self.keys_dir, HARNESS)
        self.ctx = zmq.Context()
        self._clients: dict[str, CommandClient] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self, *, keep: bool | None = None) -> None:
        """supervisord down (programs and all), temp dir gone, then every socket of ours closed
        (``destroy``, not ``term``: a socket a caller left open must not hang the clean-up)."""
        if self._closed:
            return
        try:
            super().close(keep=keep)
        finally:
            self._clients.clear()
            self.ctx.destroy(linger=0)

    # -- the bus ---------------------------------------------------------------------------------

    def client(self, service: str) -> CommandClient:
        if service not in self._clients:
            self._clients[service] = CommandClient(self.ctx, self.endpoints.cmd(service), self.settings.bus,
                                                   HARNESS, timeout_s=2.0, retries=0, service=service,
                                                   security=self.security)
        return self._clients[service]

    def call(self, service: str, command: str, *, timeout_s: float = 2.0, **args: Any) -> proto.Reply:
        return self.client(service).call(command, args, timeout_s=timeout_s, retries=0)

    def request(self, service: str, command: str, *, timeout_s: float = 2.0, **args: Any) -> dict[str, Any]:
        reply = self.call(service, command, timeout_s=timeout_s, **args)
        if not reply.ok:
            raise RuntimeError(f"{service} refused {command} {args}: {reply.error}")
        return reply.result

    def state(self) -> str:
        return self.request("orchestrator", "state")["state"]

    def wait_state(self, *states: str, timeout_s: float = 60.0) -> str:
        """Wait until the session is in one of ``states``; supervisord dying or a timeout raise."""
        deadline = time.monotonic() + timeout_s
        last = "?"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"supervisord exited with {self.proc.returncode}; see {self.root}")
            try:
                last = self.state()
                if last in states:
                    return last
            except CommandTimeout:
                last = "(orchestrator not answering)"
            time.sleep(0.1)
        raise RuntimeError(f"session not {'/'.join(states)} after {timeout_s:g}s; last: {last}")

    def wait_until(self, predicate, timeout_s: float, what: str, interval_s: float = 0.05) -> Any:
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
                if last:
                    return last
            except CommandTimeout as exc:
                last = exc
            time.sleep(interval_s)
        raise RuntimeError(f"timed out after {timeout_s:g}s waiting for {what} (last: {last!r})")

    def running_pids(self, timeout_s: float = 30.0) -> dict[str, int]:
        """{program: pid} once supervisord shows every program RUNNING (which it does only after
        ``startsecs``, possibly after the session is already LIVE)."""
        from deploy.supervisord_conf import PROGRAMS, VENUE

        names = {p.name for p in (*PROGRAMS, VENUE)}
        return self.wait_until(lambda: (p := self.pids()) and names <= set(p) and p, timeout_s,
                               "every program RUNNING", interval_s=0.2)

    def status(self, service: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """A service's ``status`` (a busy service answers late: a generous timeout)."""
        return self.request(service, "status", timeout_s=timeout_s)

    def program_log_tail(self, program: str, lines: int = 20) -> str:
        path = self.log_dir / f"{program}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# -- reading what the processes say --------------------------------------------------------------

def subscription_rows(service: str, status: dict[str, Any], peers: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """One row per (subscription, publisher) of a ``status`` result: received, gaps, lost."""
    rows = []
    for name, sub in status.get("bus", {}).get("subscriptions", {}).items():
        for source, p in sub.get("peers", {}).items():
            if peers is None or source in peers:
                rows.append({"service": service, "subscription": name, "peer": source,
                             "received": p["received"], "gaps": p["gaps"], "lost": p["lost"],
                             "restarts": p["restarts"], "stale": p["stale"]})
    return rows


def md_peer(status: dict[str, Any], source: str) -> dict[str, int]:
    """The market-data subscription's counters for publisher ``source`` (zeros if none yet)."""
    for name, sub in status.get("bus", {}).get("subscriptions", {}).items():
        if "md." in name and source in sub.get("peers", {}):
            return sub["peers"][source]
    return {"received": 0, "gaps": 0, "lost": 0, "restarts": 0, "stale": 0}


def cpu_ticks(pids: dict[str, int]) -> dict[str, int]:
    out = {}
    for name, pid in pids.items():
        try:
            out[name] = _ticks(pid)
        except OSError:
            out[name] = 0
    return out


def rss_mb(pid: int) -> float:
    try:
        return _status_kb(pid, "VmRSS") / 1024
    except OSError:
        return float("nan")
