"""The whole daemon under a real supervisord, in a private temporary directory.

``Daemon`` is what the integration suites share (this one, fault injection, the trading path):

    with Daemon(config={"orchestrator": {"auto_open": False}}) as d:
        d.wait_state("ready")
        assert d.tradectl("open").returncode == 0
        old = d.kill9("engine")
        d.wait_respawned("engine", old)

What it does:
  * makes ``/tmp/ltd-XXXXXXXX/`` (short on purpose: ipc socket paths must stay under ~100 chars)
    with ``run/`` (0700), ``logs/`` and ``state/``;
  * writes ``config.toml`` with ``[paths]`` pointing there, deep-merged with the test's overrides
    (or the test's own raw TOML text, e.g. a broken one);
  * renders the supervisord config with ``deploy.supervisord_conf.render`` (the same template as the
    committed ``deploy/supervisord.conf``), with ``TRADING_CONFIG=<config.toml>`` for every program;
  * starts ``supervisord -n`` in its own session, through ``deploy/launch.py`` as ``make run`` does
    (it refuses while processes of an earlier daemon hold the run dir), and waits until every program of the rendered
    config is RUNNING and every bus service answers ``status``;
  * ``close()`` always: ``supervisorctl shutdown``, wait, SIGKILL whatever is left (supervisord's
    process group, then any process whose command line or environment names the temp dir, which is
    how a program orphaned by a dead supervisord is still found), then removes the temp dir.

The program list always comes from the template (``deploy.supervisord_conf``: the ``trading`` group's
``PROGRAMS`` and any program it renders outside the group, such as the venue simulator), read back
from the rendered config; nothing here names a program. Set ``LTD_KEEP=1`` to keep the temp dirs.

Environment: inherited ``TRADING_*`` variables are dropped for supervisord and ``tradectl`` so a
developer's shell cannot change what a test runs against.
"""

from __future__ import annotations

import configparser
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import zmq

import proto
from bus import SERVICE_NAMES, BusSettings, CommandClient, CommandTimeout, Endpoints
from deploy import supervisord_conf

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = os.path.abspath(sys.executable)  # the venv python; not resolved (that would leave the venv)
BIN = Path(PYTHON).parent
GROUP = supervisord_conf.GROUP
T = TypeVar("T")


def _parse_programs(conf_text: str) -> dict[str, str]:
    """{program: supervisor namespec} for every ``[program:x]`` of a rendered config, in order.
    A program in a ``[group:g]`` is ``g:x``; one outside any group is its own group, ``x``."""
    parser = configparser.RawConfigParser()
    parser.read_string(conf_text)
    member_of = {}
    for section in parser.sections():
        if section.startswith("group:"):
            for name in parser.get(section, "programs").split(","):
                member_of[name.strip()] = section.split(":", 1)[1]
    names = [section.split(":", 1)[1] for section in parser.sections() if section.startswith("program:")]
    return {name: f"{member_of[name]}:{name}" if name in member_of else name for name in names}


@functools.cache
def supervised_programs() -> dict[str, str]:
    """Every program the template makes supervisord run, with its namespec (``trading:engine``,
    ``venue_sim``), read from a rendering of ``deploy.supervisord_conf`` and never hard-coded."""
    return _parse_programs(supervisord_conf.render(root="/r", python="/r/python", run_dir="/r/run",
                                                   log_dir="/r/logs"))


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


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found next to {sys.executable} nor on PATH")
    return found


def clean_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``os.environ`` without any ``TRADING_*`` variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    env.update(extra or {})
    return env


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


def to_toml(config: Mapping[str, Any]) -> str:
    """A small TOML writer for settings: tables of scalars and lists, nested tables, and arrays of
    tables (a list of mappings, e.g. ``{"engine": {"strategies": [{...}, {...}]}}``)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (str, Path)):
            return json.dumps(str(v))  # a JSON string is a valid TOML basic string
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} to TOML: {v!r}")

    def key(k: str) -> str:
        return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)

    def is_table_array(v: Any) -> bool:
        return isinstance(v, (list, tuple)) and bool(v) and all(isinstance(x, Mapping) for x in v)

    lines: list[str] = []

    def table(prefix: str, data: Mapping[str, Any], header: str | None = None) -> None:
        scalars = {k: v for k, v in data.items() if not isinstance(v, Mapping) and not is_table_array(v)}
        tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
        arrays = {k: v for k, v in data.items() if is_table_array(v)}
        if header is not None:
            lines.append(header)
        elif prefix and (scalars or not (tables or arrays)):
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{key(k)} = {value(v)}")
        lines.append("")
        for k, v in tables.items():
            table(f"{prefix}.{key(k)}" if prefix else key(k), v)
        for k, items in arrays.items():
            name = f"{prefix}.{key(k)}" if prefix else key(k)
            for item in items:
                table(name, item, header=f"[[{name}]]")

    table("", config)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, val in override.items():
        if isinstance(val, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], val)
        else:
            out[key] = val
    return out


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line or environment contains ``text``."""
    needle = text.encode()
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if needle in cmdline or needle in environ:
            found.append(int(entry.name))
    return found


class Daemon:
    """One supervisord and its programs in a private temp dir. See the module docstring."""

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        environment: Mapping[str, str] | None = None,
        *,
        toml_text: str | None = None,
        toml_extra: str = "",
        startsecs: int | None = None,
        startretries: int = 3,
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ltd-", dir="/tmp"))
        try:
            self._prepare(config, environment, toml_text, toml_extra, startsecs, startretries)
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def _prepare(self, config: Mapping[str, Any] | None, environment: Mapping[str, str] | None,
                 toml_text: str | None, toml_extra: str, startsecs: int | None, startretries: int) -> None:
        self.run_dir = self.root / "run"
        self.log_dir = self.root / "logs"
        self.state_dir = self.root / "state"
        self.run_dir.mkdir(mode=0o700)
        os.chmod(self.run_dir, 0o700)
        self.log_dir.mkdir()
        self.state_dir.mkdir()
        self.conf_path = self.root / "supervisord.conf"
        self.toml_path = self.root / "config.toml"
        self.supervisord_out = self.root / "supervisord.out"
        self.config: dict[str, Any] = deep_merge(
            # metrics on any free port: daemons of parallel tests never collide
            {"paths": {"run_dir": str(self.run_dir), "log_dir": str(self.log_dir),
                       "state_dir": str(self.state_dir)},
             "orchestrator": {"metrics_port": 0}},
            config or {},
        )
        # toml_text replaces the generated file (paths included!); toml_extra is appended raw.
        self.toml_path.write_text((toml_text if toml_text is not None else to_toml(self.config)) + toml_extra)
        self.environment = {"TRADING_CONFIG": str(self.toml_path), **(environment or {})}
        self.conf_path.write_text(supervisord_conf.render(
            root=str(REPO_ROOT), python=PYTHON, run_dir=str(self.run_dir),
            log_dir=str(self.log_dir), environment=self.environment,
            # None: the product's own startsecs (deploy/supervisord_conf.py), as deployed
            **({} if startsecs is None else {"startsecs": startsecs}), startretries=startretries,
        ))
        self.namespecs = _parse_programs(self.conf_path.read_text())
        # {program: namespec} of every program supervisord runs here, e.g. trading:engine, venue_sim
        self.programs = list(self.namespecs)
        try:
            self.bus = BusSettings(**self.config.get("bus", {}))
        except ValueError:  # a test of bad settings: the daemon must refuse them, not this helper
            self.bus = BusSettings()
        self.endpoints = Endpoints(self.bus, self.run_dir)
        self._command_services = set(command_services())
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None  # time.monotonic() when supervisord was spawned
        self._ctx = zmq.Context()
        self._clients: dict[str, CommandClient] = {}
        self._closed = False
        self.leftovers_killed: list[int] = []  # what close() had to SIGKILL after the shutdown

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, *, wait: bool = True, timeout: float = 30.0) -> "Daemon":
        """Spawn supervisord; with ``wait``, return once each program with a command socket answers
        ``status`` as the process supervisord runs (``wait_serving``). Not once every program is
        RUNNING: that is ``startsecs`` (5 s) after the spawn whatever the process does, 4 s per
        daemon of the suite's ~10 minutes; a test that needs it calls ``wait_running``."""
        out = self.supervisord_out.open("wb")
        try:
            # as `make run` starts it: deploy/launch.py checks the run dir, then execs supervisord
            # (same pid), or refuses with one line
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "deploy.launch", "-n", "-c", str(self.conf_path)],
                cwd=self.root, env=clean_environ(), stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        finally:
            out.close()
        self.started_at = time.monotonic()
        if wait:
            self.wait_serving(timeout=timeout)
        return self

    def __enter__(self) -> "Daemon":
        if self.proc is None:
            try:
                self.start()
            except BaseException:
                self.close()
                raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self, *, keep: bool | None = None) -> None:
        """Stop everything this daemon started and remove the temp dir. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        self._ctx.term()
        try:
            self._stop_supervisord()
        finally:
            self._kill_leftovers()
            if keep is None:
                keep = bool(os.environ.get("LTD_KEEP"))
            if not keep:
                shutil.rmtree(self.root, ignore_errors=True)

    def _stop_supervisord(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            res = self.supervisorctl("shutdown", timeout=10)
            asked = res.returncode == 0 and "Shut down" in res.stdout
        except subprocess.TimeoutExpired:
            asked = False
        if not asked:  # not listening (yet): SIGTERM is supervisord's other way to shut down
            proc.terminate()
        try:
            proc.wait(timeout=25)  # stopwaitsecs=10 per program, then SIGKILL by supervisord
            return
        except subprocess.TimeoutExpired:
            pass
        proc.terminate()
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)

    def _kill_leftovers(self) -> None:
        """SIGKILL every process still naming the temp dir (its programs run in their own
        process groups, so killing supervisord's group alone would orphan them)."""
        leftovers = self.leftover_processes()
        for pid in leftovers:
            for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                try:
                    kill()
                except (ProcessLookupError, PermissionError):
                    pass
        if leftovers:
            try:
                wait_until(lambda: not self.leftover_processes(), 5)
            except WaitTimeout:
                pass
        self.leftovers_killed = leftovers

    def leftover_processes(self) -> list[int]:
        """Processes that still name this daemon's temp dir (its config, sockets, logs)."""
        return processes_mentioning(f"{self.root}/")

    # -- supervisord -----------------------------------------------------------------------------

    @property
    def supervisor_socket(self) -> Path:
        return self.run_dir / "supervisor.sock"

    def rpc(self) -> Any:
        """supervisord's XML-RPC interface over its unix socket (a new connection each time)."""
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.supervisor_socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def supervisorctl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_tool("supervisorctl"), "-c", str(self.conf_path), *args],
            cwd=self.root, env=clean_environ(), capture_output=True, text=True, timeout=timeout,
        )

    def qualified(self, program: str) -> str:
        """supervisor's name for the program: ``trading:engine``, or ``venue_sim`` outside the group
        (and the event listener, a pool of its own)."""
        return self.namespecs.get(program, program)

    def process_info(self, program: str) -> dict[str, Any]:
        return self.rpc().getProcessInfo(self.qualified(program))

    def all_process_info(self) -> dict[str, dict[str, Any]]:
        return {info["name"]: info for info in self.rpc().getAllProcessInfo()}

    def statenames(self) -> dict[str, str]:
        return {name: info["statename"] for name, info in self.all_process_info().items()}

    def pid_of(self, program: str) -> int:
        """The program's pid according to supervisord (0 when not running)."""
        return int(self.process_info(program)["pid"])

    def supervisorctl_pids(self) -> dict[str, int]:
        """``supervisorctl status`` parsed: {program: pid} for RUNNING programs."""
        res = self.supervisorctl("status")
        by_namespec = {spec: name for name, spec in self.namespecs.items()}
        pids = {}
        for line in res.stdout.splitlines():
            m = re.match(r"^(\S+)\s+RUNNING\s+pid (\d+),", line)
            if m and m.group(1) in by_namespec:
                pids[by_namespec[m.group(1)]] = int(m.group(2))
        return pids

    def kill9(self, program: str) -> int:
        """SIGKILL the program's process; returns the pid it had."""
        pid = self.pid_of(program)
        assert pid > 0, f"{program} is not running: {self.process_info(program)}"
        os.kill(pid, signal.SIGKILL)
        return pid

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
                       message=lambda: self.diagnostics())

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

    def client(self, service: str) -> CommandClient:
        if service not in self._clients:
            self._clients[service] = CommandClient(self._ctx, self.endpoints.cmd(service), self.bus,
                                                   "itest", timeout_s=1.0, retries=0)
        return self._clients[service]

    def call(self, service: str, command: str, *, timeout_s: float = 1.0, retries: int = 0,
             **args: Any) -> proto.Reply:
        """Send one command to a service's command socket; raises ``CommandTimeout`` if unanswered."""
        return self.client(service).call(command, args, timeout_s=timeout_s, retries=retries)

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
