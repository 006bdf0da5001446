"""The whole daemon under a real supervisord in a private temporary directory: the one way the
integration tests (``tests/integration/daemon.py``) and the live benchmarks (``bench/_live.py``,
``bench/daemon_idle.py``) start one, each adding its own waits and checks on top.

``TempDaemon``:
  * makes ``/tmp/<prefix>XXXXXXXX/`` (short on purpose: ipc socket paths must stay under ~100
    chars) with ``run/`` (0700), ``logs/`` and ``state/``;
  * writes ``config.toml`` with ``[paths]`` pointing there and the orchestrator's metrics on a free
    port, deep-merged with the caller's settings (or the caller's own raw TOML text);
  * renders the supervisord config with ``deploy.supervisord_conf.render`` (the template of the
    committed ``deploy/supervisord.conf``), with ``TRADING_CONFIG=<config.toml>`` for every program;
  * ``start()`` spawns ``supervisord -n`` in its own session through ``deploy.launch``, as
    ``make run`` does (it refuses while processes of an earlier daemon hold the run dir);
  * ``close()`` always: ``supervisorctl shutdown``, wait, SIGKILL whatever is left (supervisord's
    process group, then any process whose command line or environment names the temp dir, which is
    how a program orphaned by a dead supervisord is still found), then removes the temp dir.

Inherited ``TRADING_*`` variables are dropped for supervisord and its tools, so the caller's shell
cannot change what runs. Set ``LTD_KEEP=1`` to keep the temp dirs.
"""

from __future__ import annotations

import configparser
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from bus import keys
from deploy import supervisord_conf

CODE_ROOT = Path(__file__).resolve().parent.parent  # the checkout whose code the programs run
PYTHON = os.path.abspath(sys.executable)  # the venv python; not resolved (that would leave the venv)
BIN = Path(PYTHON).parent

HARNESS = "itest"  # the identity (an operator's key) of a test's or benchmark's own clients


def parse_programs(conf_text: str) -> dict[str, str]:
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


def free_port() -> int:
    """A TCP port free on loopback now (the OS's choice; a daemon binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@functools.cache
def supervised_programs() -> dict[str, str]:
    """Every program the template makes supervisord run, with its namespec (``trading:engine``,
    ``venue_sim``), read from a rendering of ``deploy.supervisord_conf`` and never hard-coded."""
    return parse_programs(supervisord_conf.render(root="/r", python="/r/python", run_dir="/r/run",
                                                  log_dir="/r/logs"))


def tool(name: str) -> str:
    """A console script of this environment (``supervisorctl``, ``tradectl``): next to the python
    that runs us, else on PATH."""
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


class TempDaemon:
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
        prefix: str = "ltd-",
        only: Collection[str] | None = None,
        launcher: Sequence[str] = (),
    ) -> None:
        """``only``: the programs of this daemon (one host of several), default all; ``launcher``:
        what supervisord is started under (e.g. ``ip netns exec NS``: a host of its own)."""
        self.root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self._only = only
        self._launcher = list(launcher)
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
        # The CURVE keys (bus/keys.py): deploy/launch.py makes the system's own at start, as for
        # `make run`; the harness speaks as HARNESS, an operator, whose key is made here.
        self.keys_dir = self.state_dir / "keys"
        keys.generate(self.keys_dir, HARNESS, "operator")
        self.conf_path = self.root / "supervisord.conf"
        self.toml_path = self.root / "config.toml"
        self.supervisord_out = self.root / "supervisord.out"
        self.config: dict[str, Any] = deep_merge(
            # metrics on any free port: daemons side by side (and a developer's) never collide
            {"paths": {"run_dir": str(self.run_dir), "log_dir": str(self.log_dir),
                       "state_dir": str(self.state_dir)},
             "orchestrator": {"metrics_port": 0}, "console": {"port": free_port()}},
            config or {},
        )
        # toml_text replaces the generated file (paths included!); toml_extra is appended raw.
        self.toml_path.write_text((toml_text if toml_text is not None else to_toml(self.config)) + toml_extra)
        self.environment = {"TRADING_CONFIG": str(self.toml_path), **(environment or {})}
        self.conf_path.write_text(supervisord_conf.render(
            root=str(CODE_ROOT), python=PYTHON, run_dir=str(self.run_dir),
            log_dir=str(self.log_dir), environment=self.environment, only=self._only,
            # None: the product's own startsecs (deploy/supervisord_conf.py), as deployed
            **({} if startsecs is None else {"startsecs": startsecs}), startretries=startretries,
        ))
        self.namespecs = parse_programs(self.conf_path.read_text())
        # {program: namespec} of every program supervisord runs here, e.g. trading:engine, venue_sim
        self.programs = list(self.namespecs)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None  # time.monotonic() when supervisord was spawned
        self._closed = False
        self.leftovers_killed: list[int] = []  # what close() had to SIGKILL after the shutdown

    def paths_toml(self) -> str:
        """The ``[paths]`` table of this daemon, for a caller that writes its own TOML text."""
        return to_toml({"paths": self.config["paths"]})

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        out = self.supervisord_out.open("wb")
        try:
            # as `make run` starts it: deploy/launch.py checks the run dir, then execs supervisord
            # (same pid), or refuses with one line
            self.proc = subprocess.Popen(
                [*self._launcher, PYTHON, "-m", "deploy.launch", "-n", "-c", str(self.conf_path)],
                cwd=self.root, env=clean_environ(), stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        finally:
            out.close()
        self.started_at = time.monotonic()
        self._wake_supervisord()

    def _wake_supervisord(self, timeout_s: float = 10.0) -> None:
        """Return once supervisord answers on its socket (or has exited, or ``timeout_s``). It spawns
        its programs on its main loop's first turn, which first waits up to 1 s in ``poll``; a
        request on its socket ends that wait: the programs start ~1 s sooner (about 1.3 s of each
        daemon's start, quiet)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc is not None and self.proc.poll() is None:
            try:
                self.rpc().getState()
                return
            except (OSError, xmlrpc.client.Error):
                time.sleep(0.02)

    def __enter__(self) -> Self:
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
        try:  # over its socket, not supervisorctl: a Python start-up less per daemon
            asked = bool(self.rpc().shutdown())
        except (OSError, xmlrpc.client.Error):
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
        deadline = time.monotonic() + 5
        while leftovers and self.leftover_processes() and time.monotonic() < deadline:
            time.sleep(0.03)
        self.leftovers_killed = leftovers

    def leftover_processes(self) -> list[int]:
        """Processes that still name this daemon's temp dir (its config, sockets, logs)."""
        return processes_mentioning(f"{self.root}/")

    # -- supervisord -----------------------------------------------------------------------------

    @property
    def supervisor_socket(self) -> Path:
        return self.run_dir / "supervisor.sock"

    def rpc(self, timeout_s: float = 10.0) -> Any:
        """supervisord's XML-RPC interface over its unix socket (a new connection each time); a
        call to a stopped or hung supervisord raises ``TimeoutError`` after ``timeout_s`` instead of
        waiting for ever (supervisor's own transport sets no timeout)."""
        from supervisor.xmlrpc import SupervisorTransport, UnixStreamHTTPConnection

        socket_file = str(self.supervisor_socket)

        def connection() -> UnixStreamHTTPConnection:
            conn = UnixStreamHTTPConnection("localhost", timeout=timeout_s)
            conn.socketfile = socket_file
            conn.connect()
            conn.sock.settimeout(timeout_s)
            return conn

        transport = SupervisorTransport(None, None, f"unix://{socket_file}")
        transport._get_connection = connection
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def supervisorctl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tool("supervisorctl"), "-c", str(self.conf_path), *args],
            cwd=self.root, env=clean_environ(), capture_output=True, text=True, timeout=timeout,
        )

    def qualified(self, program: str) -> str:
        """supervisor's name for the program: ``trading:engine``, or ``venue_sim`` outside the group
        (and the event listener, a pool of its own)."""
        return self.namespecs.get(program, program)

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
