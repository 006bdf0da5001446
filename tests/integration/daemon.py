"""The whole daemon under a real supervisord, in a private temporary directory.

``Daemon`` is what the integration suites share (this one, fault injection, the trading path):

    with Daemon(config={"orchestrator": {"auto_open": False}}) as d:
        d.wait_state("ready")
        assert d.tradectl("open").returncode == 0
        old = d.kill9("engine")
        d.wait_respawned("engine", old)

How a daemon is made, started and always cleaned up (temp dirs, TOML, the rendered supervisord
config, ``deploy/launch.py``, ``close()``) is ``deploy.temp_daemon.TempDaemon``, shared with the
live benchmarks; this ``Daemon`` adds what the tests wait on and ask: ``start()`` returns once every
program with a command socket answers ``status`` as the process supervisord runs, the bus in
process, ``tradectl``, and the logs for a failure's diagnostics.

The program list always comes from the template (``deploy.supervisord_conf``: the ``trading`` group's
``PROGRAMS`` and any program it renders outside the group, such as the venue simulator), read back
from the rendered config; nothing here names a program. Set ``LTD_KEEP=1`` to keep the temp dirs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import xmlrpc.client
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import zmq

import proto
from bus import SERVICE_NAMES, BusSettings, CommandClient, CommandTimeout, Curve, Endpoints, KeyStore, NoCurve, Security, keys
from proto.commands.base import IDENTITIES
from deploy import supervisord_conf
from deploy.temp_daemon import (  # noqa: F401  (re-exported: the suites import them from here)
    HARNESS,
    PYTHON,
    TempDaemon,
    clean_environ,
    deep_merge,
    supervised_programs,
    to_toml,
)
from deploy.temp_daemon import CODE_ROOT as REPO_ROOT
from deploy.temp_daemon import tool as _tool

GROUP = supervisord_conf.GROUP
T = TypeVar("T")


def program_names() -> list[str]:
    """Every supervisord program (the ``trading`` group's and any outside it, e.g. a venue)."""
    return list(supervised_programs())


def group_program_names() -> list[str]:
    """The programs of the ``trading`` group: ``deploy.supervisord_conf.PROGRAMS``."""
    return [program.name for program in supervisord_conf.PROGRAMS]


def command_services() -> list[str]:
    """The programs that serve commands on the bus (every one that has a command endpoint)."""
    endpoints = Endpoints(BusSettings(), Path("/r/run"))
    out = []
    for name in program_names():
        try:
            endpoints.cmd(name)
        except ValueError:
            continue
        out.append(name)
    return out


def orchestrated_services() -> list[str]:
    """The programs the orchestrator tracks as session components (bus.SERVICE_NAMES)."""
    return [name for name in program_names() if name in SERVICE_NAMES]


class WaitTimeout(AssertionError):
    pass


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    *,
    interval: float = 0.03,
    message: str | Callable[[], str] = "",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``predicate`` every ``interval`` s until it returns something truthy; return that.

    Exceptions of the ``ignore`` types count as "not yet". On timeout raise ``WaitTimeout`` naming
    the last value or exception seen, and ``message`` (a string or a callable for costly detail).
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
            if last:
                return last
        except ignore as exc:
            last = exc
        if time.monotonic() >= deadline:
            detail = message() if callable(message) else message
            raise WaitTimeout(f"not true within {timeout:g}s (last: {last!r}) {detail}".rstrip())
        time.sleep(interval)


class Daemon(TempDaemon):
    """One supervisord and its programs in a private temp dir. See the module docstring."""

    def _prepare(self, config: Mapping[str, Any] | None, environment: Mapping[str, str] | None,
                 toml_text: str | None, toml_extra: str, startsecs: int | None, startretries: int) -> None:
        super()._prepare(config, environment, toml_text, toml_extra, startsecs, startretries)
        try:
            self.bus = BusSettings(**self.config.get("bus", {}))
        except ValueError:  # a test of bad settings: the daemon must refuse them, not this helper
            self.bus = BusSettings()
        self.endpoints = Endpoints(self.bus, self.run_dir)
        self._command_services = set(command_services())
        self._ctx = zmq.Context()
        self._clients: dict[tuple[str, str], CommandClient] = {}

    def security(self, identity: str = HARNESS, role: str = "operator") -> Security:
        """The credentials of ``identity`` on this daemon's bus (its key made if missing, with
        ``role``): what a test's own socket needs to be heard (``Security.connect``)."""
        if not self.bus.curve:
            return NoCurve()
        if not (self.keys_dir / f"{identity}{keys.PUBLIC_SUFFIX}").exists():
            keys.generate(self.keys_dir, identity, role if identity not in IDENTITIES else None)
        return Curve(KeyStore(self.keys_dir), identity)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, *, wait: bool = True, timeout: float = 30.0) -> "Daemon":
        """Spawn supervisord; with ``wait``, return once each program with a command socket answers
        ``status`` as the process supervisord runs (``wait_serving``). Not once every program is
        RUNNING: that is ``startsecs`` (5 s) after the spawn whatever the process does, 4 s per
        daemon of the suite's ~10 minutes; a test that needs it calls ``wait_running``."""
        super().start()
        if wait:
            self.wait_serving(timeout=timeout)
        return self

    def close(self, *, keep: bool | None = None) -> None:
        """Stop everything this daemon started and remove the temp dir. Safe to call twice."""
        if self._closed:
            return
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        self._ctx.term()
        super().close(keep=keep)

    # -- supervisord -----------------------------------------------------------------------------

    def process_info(self, program: str) -> dict[str, Any]:
        return self.rpc().getProcessInfo(self.qualified(program))

    def all_process_info(self) -> dict[str, dict[str, Any]]:
        return {info["name"]: info for info in self.rpc().getAllProcessInfo()}

    def statenames(self) -> dict[str, str]:
        return {name: info["statename"] for name, info in self.all_process_info().items()}

    def pid_of(self, program: str) -> int:
        """The program's pid according to supervisord (0 when not running)."""
        return int(self.process_info(program)["pid"])

    def kill9(self, program: str) -> int:
        """SIGKILL the program's process; returns the pid it had."""
        pid = self.pid_of(program)
        assert pid > 0, f"{program} is not running: {self.process_info(program)}"
        os.kill(pid, signal.SIGKILL)
        return pid

    def start_programs(self, *programs: str, timeout: float = 30.0) -> None:
        """Have supervisord start the (stopped) programs, all at once; return when each serves as
        its new process (``wait_serving``). Not ``supervisorctl start``: that starts them one after
        another and waits ``startsecs`` (5 s) for each to be RUNNING."""
        rpc = self.rpc()
        for program in programs:
            assert rpc.startProcess(self.qualified(program), False), program
        self.wait_serving(programs, timeout=timeout)

    def restart(self, *programs: str, timeout: float = 30.0) -> None:
        """Stop the programs, then ``start_programs`` them."""
        res = self.supervisorctl("stop", *(self.qualified(p) for p in programs), timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
        self.start_programs(*programs, timeout=timeout)

    def wait_running(self, programs: Iterable[str] | None = None, timeout: float = 30.0) -> dict[str, int]:
        """Wait until the programs (default: all) are RUNNING; fail at once if one is FATAL.
        Returns {program: pid}."""
        wanted = list(self.programs if programs is None else programs)

        def check() -> dict[str, int] | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"supervisord exited with {self.proc.returncode}\n{self.diagnostics()}")
            infos = self.all_process_info()
            fatal = [p for p in wanted if infos[p]["statename"] == "FATAL"]
            if fatal:
                raise AssertionError(f"FATAL: {fatal}\n{self.diagnostics()}")
            if all(infos[p]["statename"] == "RUNNING" for p in wanted):
                return {p: int(infos[p]["pid"]) for p in wanted}
            return None

        return wait_until(check, timeout, ignore=(OSError, xmlrpc.client.Fault, KeyError),
                          message=lambda: self.diagnostics())

    def wait_serving(self, programs: Iterable[str] | None = None, timeout: float = 30.0) -> None:
        """Wait until each program with a command socket answers ``status`` as the process
        supervisord runs. (RUNNING only means it outlived startsecs: under load a Python service can
        still be importing, and a SIGTERM then is not handled gracefully.)"""
        wanted = [p for p in (self.programs if programs is None else programs) if p in self._command_services]
        for program in wanted:
            wait_until(lambda: self.request(program, "status")["pid"] == self.pid_of(program), timeout,
                       ignore=(CommandTimeout, OSError, xmlrpc.client.Fault),
                       message=lambda: self._stacks_of(program) + self.diagnostics(60))

    def _stacks_of(self, program: str) -> str:
        """Ask a program that does not answer for its threads' stacks (``services.stack_dump``: they
        go to its log, which the diagnostics then show)."""
        try:
            os.kill(self.pid_of(program), signal.SIGUSR1)
        except (OSError, xmlrpc.client.Fault) as exc:
            return f"(no stack of {program}: {exc})"
        time.sleep(0.5)
        return f"(asked {program} for its stacks with SIGUSR1: see its log below)"

    def wait_statename(self, program: str, statename: str, timeout: float = 30.0) -> dict[str, Any]:
        return wait_until(
            lambda: (info := self.process_info(program))["statename"] == statename and info,
            timeout, ignore=(OSError, xmlrpc.client.Fault), message=lambda: self.diagnostics(),
        )

    def wait_respawned(self, program: str, old_pid: int, timeout: float = 20.0) -> int:
        """Wait until supervisord runs the program again under a new pid; return it."""
        def check() -> int:
            info = self.process_info(program)
            return info["statename"] == "RUNNING" and info["pid"] != old_pid and int(info["pid"])

        return wait_until(check, timeout, ignore=(OSError, xmlrpc.client.Fault), message=lambda: self.diagnostics())

    # -- the bus, in-process (fast; for polling) -------------------------------------------------

    def client(self, service: str, identity: str = HARNESS) -> CommandClient:
        """A command client of ``service`` speaking as ``identity`` (default: the harness, an operator)."""
        if (service, identity) not in self._clients:
            self._clients[(service, identity)] = CommandClient(
                self._ctx, self.endpoints.cmd(service), self.bus, identity, timeout_s=1.0, retries=0,
                service=service, security=self.security(identity))
        return self._clients[(service, identity)]

    def call(self, service: str, command: str, *, timeout_s: float = 1.0, retries: int = 0,
             identity: str = HARNESS, **args: Any) -> proto.Reply:
        """Send one command to a service's command socket; raises ``CommandTimeout`` if unanswered."""
        return self.client(service, identity).call(command, args, timeout_s=timeout_s, retries=retries)

    def request(self, service: str, command: str, **args: Any) -> dict[str, Any]:
        """``call`` that insists on an ok reply and returns its result."""
        reply = self.call(service, command, **args)
        assert reply.ok, f"{service} refused {command}: {reply.error}"
        return reply.result

    def state(self) -> str:
        """The session state's lower-case name, asked of the orchestrator over the bus."""
        return self.request("orchestrator", "state")["state"]

    def status(self) -> dict[str, Any]:
        """The orchestrator's ``status`` result, over the bus (``status_json`` goes via tradectl)."""
        return self.request("orchestrator", "status")

    def wait_state(self, state: str, timeout: float = 30.0) -> str:
        return wait_until(lambda: self.state() == state and state, timeout, ignore=(CommandTimeout,),
                          message=lambda: self.diagnostics())

    def wait_trading(self, timeout: float = 30.0) -> None:
        """Wait until the session is LIVE and the exchange manager's gate has heard it (a moment
        after the orchestrator says LIVE: its state event or heartbeat), so an order goes through."""
        self.wait_state("live", timeout)
        wait_until(lambda: self.request("exchange_manager", "status")["stats"]["trading_allowed"], timeout,
                   ignore=(CommandTimeout,), message=lambda: self.diagnostics())

    def wait_components_alive(self, timeout: float = 20.0) -> dict[str, Any]:
        """Wait until the orchestrator sees every component alive; return its status."""
        def check() -> dict[str, Any] | None:
            status = self.status()
            return status if all(c["alive"] for c in status["components"].values()) else None

        return wait_until(check, timeout, ignore=(CommandTimeout,), message=lambda: self.diagnostics())

    # -- tradectl ------------------------------------------------------------------------------

    def tradectl(self, *args: str, timeout: float = 30.0, env: Mapping[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
        """Run ``tradectl`` against this daemon (``TRADING_CONFIG`` = this daemon's TOML)."""
        return run_tradectl(*args, config=self.toml_path, timeout=timeout, env=env, cwd=self.root)

    def status_json(self) -> dict[str, Any]:
        """``tradectl status --json``, checked to be one JSON object and parsed."""
        res = self.tradectl("status", "--json")
        assert res.returncode == 0, f"tradectl status --json: {res.returncode}\n{res.stderr}"
        lines = res.stdout.strip().splitlines()
        assert len(lines) == 1, f"expected one line of JSON, got {res.stdout!r}"
        data = json.loads(lines[0])
        assert isinstance(data, dict)
        return data

    def stats_json(self) -> dict[str, Any]:
        res = self.tradectl("stats", "--json")
        assert res.returncode == 0, f"tradectl stats --json: {res.returncode}\n{res.stderr}"
        return json.loads(res.stdout)

    # -- files -----------------------------------------------------------------------------------

    def program_log(self, program: str) -> Path:
        return self.log_dir / f"{program}.log"

    @property
    def supervisord_log(self) -> Path:
        return self.log_dir / "supervisord.log"

    @property
    def session_log_dir(self) -> Path:
        return self.log_dir / "live"

    @property
    def incidents_dir(self) -> Path:
        return self.log_dir / "incidents"

    def diagnostics(self, lines: int = 15) -> str:
        """The tail of supervisord's log, of every program's log and of the session's live log (its
        transitions and their reasons), for failure messages."""
        parts = []
        session_logs = sorted((self.log_dir / "live").glob("live_trading_*.log"))[-1:]
        for path in [self.supervisord_out, self.supervisord_log, *(self.program_log(p) for p in self.programs),
                     *session_logs]:
            try:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            parts.append(f"--- {path.name} ---\n" + "\n".join(tail))
        return "\n" + "\n".join(parts)


def run_tradectl(*args: str, config: Path | str | None, timeout: float = 30.0,
                 env: Mapping[str, str] | None = None, cwd: Path | str | None = None
                 ) -> subprocess.CompletedProcess[str]:
    extra = {} if config is None else {"TRADING_CONFIG": str(config)}
    return subprocess.run(
        [_tool("tradectl"), *args], env=clean_environ({**extra, **(env or {})}), cwd=cwd,
        capture_output=True, text=True, timeout=timeout,
    )
