"""Configuration mistakes stop a process at start with ONE clear line naming the problem.

Each case runs one program directly (``python -m services.<name>``, ``TRADING_CONFIG=<toml>``, its
own temp ``[paths]``), all cases at once (a process that wrongly accepts its settings keeps running
and is killed after ``RUN_LIMIT_S``). Required: it exits (78, ``EXIT_BAD_SETTINGS``, for settings;
non-zero for an environment it cannot use: a directory it cannot write, an endpoint in use), and
stderr has exactly one line that is not an INFO log line, naming the field or the endpoint/path,
with no traceback.

Then through supervisord: a program whose command endpoint another process already serves ends
FATAL after ``startretries`` quick exits (not a restart loop), one line per attempt, while the other
programs run; and (slow) an impossible limit ends every program FATAL.

Cases marked "cross-field" are limits that are each valid alone but impossible together; they
are not all checked yet (see the report).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from integration.daemon import (
    Daemon,
    WaitTimeout,
    clean_environ,
    command_services,
    to_toml,
    wait_until,
)
from integration.e2e import daemon_options

from bus import BusSettings, Endpoints
from services.settings import EXIT_BAD_SETTINGS

REPO = Path(__file__).resolve().parents[2]
RUN_LIMIT_S = 10.0  # a process still running this long after start accepted its settings
# Cases run this many at a time: forty Python processes started at once on two busy cores took 14 s
# to print their line and exit, and were judged to have accepted their settings.
PARALLEL = 8
INFO_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \S+ INFO ")


@dataclass
class Case:
    service: str
    config: dict[str, Any] = field(default_factory=dict)
    mention: tuple[str, ...] = ()  # every one must be in the problem line
    exit_code: int | None = EXIT_BAD_SETTINGS  # None: any non-zero
    prepare: str = ""  # name of a setup step (below) run before the process starts


CASES: dict[str, Case] = {
    # -- unknown keys and wrong types (pydantic) ------------------------------------------------
    "unknown key": Case("data_router", {"bus": {"hwm": 5}}, ("bus.hwm",)),
    "unknown nested key": Case("exchange_manager", {"exchange_manager": {"risk": {"max_qty": 1.0}}},
                               ("exchange_manager.risk.max_qty",)),
    "unknown section": Case("safety", {"saftey": {"cooldown_s": 1.0}}, ("saftey",)),
    "wrong type: string for a number": Case(
        "exchange_manager", {"exchange_manager": {"risk": {"max_position": "lots"}}},
        ("exchange_manager.risk.max_position",)),
    "wrong type: list for a number": Case("venue_sim", {"venue_sim": {"quotes_per_s": [1, 2]}},
                                          ("venue_sim.quotes_per_s",)),
    "wrong type: transport": Case("engine", {"bus": {"transport": "udp"}}, ("bus.transport",)),
    "out of range: heartbeat interval 0": Case("orchestrator", {"bus": {"heartbeat_interval_s": 0}},
                                               ("bus.heartbeat_interval_s",)),
    # -- impossible limits (cross-field) ------------------------------------------------------------
    "cross-field: critical price jump below warning": Case(
        "safety", {"safety": {"price_jump_cap_pct": 10.0, "price_jump_critical_pct": 5.0}},
        ("price_jump_critical_pct",)),
    "removed setting: the old fixed price-jump threshold names its replacement": Case(
        "safety", {"safety": {"price_jump_pct": 5.0}}, ("safety", "price_jump_pct was removed", "price_jump_k")),
    "cross-field: reconnect backoff min > max": Case(
        "exchange_manager",
        {"exchange_manager": {"connectors": [{"name": "sim", "reconnect_initial_s": 10.0, "reconnect_max_s": 1.0}]}},
        ("reconnect_initial_s",)),
    "cross-field: venue heartbeat timeout shorter than the heartbeat interval": Case(
        "exchange_manager",
        {"bus": {"heartbeat_interval_s": 0.5},
         "exchange_manager": {"connectors": [{"name": "sim", "heartbeat_timeout_s": 0.4}]}},
        ("heartbeat_timeout_s",)),
    "cross-field: engine dead-man timeout shorter than the heartbeat interval": Case(
        "engine", {"bus": {"heartbeat_interval_s": 0.5}, "engine": {"deadman_timeout_s": 0.4}},
        ("deadman_timeout_s",)),
    "cross-field: gate dead-man timeout shorter than the heartbeat interval": Case(
        "exchange_manager", {"bus": {"heartbeat_interval_s": 0.5}, "exchange_manager": {"deadman_timeout_s": 0.4}},
        ("deadman_timeout_s",)),
    "cross-field: order qty above max position": Case(
        "exchange_manager", {"exchange_manager": {"risk": {"max_order_qty": 50.0, "max_position": 5.0}}},
        ("max_order_qty",)),
    "cross-field: strategy qty above its max position": Case(
        "engine", {"engine": {"strategies": [{"kind": "mean_reversion", "name": "mr", "symbol": "BTC-USD",
                                              "qty": 1.0, "max_position": 0.05}]}},
        ("max_position",)),
    "cross-field: DEGRADED checks less often than normal": Case(
        "orchestrator", {"orchestrator": {"health_check_interval_s": 2.0,
                                          "health": {"degraded_check_interval_s": 10.0}}},
        ("degraded_check_interval_s",)),
    "cross-field: schedule on a weekday that does not exist": Case(
        "orchestrator", {"orchestrator": {"schedule": {"always_open": False, "weekdays": [9]}}},
        ("weekdays",)),
    "an exchange calendar that does not exist (checked by the orchestrator, which loads the calendars)": Case(
        "orchestrator", {"orchestrator": {"schedule": {"calendar": "XNYZ"}}},
        ("orchestrator.schedule.calendar='XNYZ'", "not an exchange_calendars calendar")),
    "cross-field: a hung process restarted before it even counts as missing": Case(
        "data_router", {"supervision": {"hung_restart_after_s": 0.5}}, ("supervision.hung_restart_after_s",)),
    "cross-field: default connector not configured": Case(
        "exchange_manager", {"exchange_manager": {"default_connector": "nope"}}, ("default_connector",)),
    "cross-field: a strategy on a symbol the venue does not trade": Case(
        "engine", {"venue_sim": {"symbols": {"BTC-USD": 40_000.0}}},  # the demo market maker trades ETH-USD
        ("engine.strategies[mm].symbol='ETH-USD'", "not traded by the venue simulator", "venue_sim.symbols: BTC-USD")),
    "cross-field: a strategy on a symbol no replay file has": Case(
        "orchestrator", {"engine": {"strategies": [{"kind": "mean_reversion", "name": "mr", "symbol": "SOL-USD"}]}},
        ("engine.strategies[mr].symbol='SOL-USD'", "venue_sim.replay_files: BTC-USD"), prepare="replay_good"),
    "cross-field: the data router routing a symbol the venue does not trade": Case(
        "data_router", {"data_router": {"symbols": ["BTC-USD", "DOGE-USD"]}}, ("data_router.symbols", "'DOGE-USD'")),
    "replay source without files": Case("venue_sim", {"venue_sim": {"source": "replay"}},
                                        ("venue_sim", 'source is "replay" but replay_files is empty')),
    "replay source without files (every service)": Case("safety", {"venue_sim": {"source": "replay"}},
                                                         ("venue_sim", "replay_files is empty")),
    # -- a replay file the venue cannot use: read by the venue alone, at its start ------------------
    "replay file missing": Case("venue_sim", {}, ("venue_sim.replay_files[0] (BTC-USD)", "cannot read", "FILE",
                                                  "No such file"), prepare="replay_missing"),
    "replay file is a directory": Case("venue_sim", {}, ("venue_sim.replay_files[0]", "cannot read", "FILE"),
                                       prepare="replay_directory"),
    "replay file header not recognised": Case("venue_sim", {}, ("venue_sim.replay_files[0]", "FILE",
                                                                "unrecognised replay file header: 'price,size'"),
                                              prepare="replay_bad_header"),
    "replay file empty": Case("venue_sim", {}, ("venue_sim.replay_files[0]", "FILE", "(the file is empty)"),
                              prepare="replay_empty"),
    "replay file with a header and no rows": Case("venue_sim", {}, ("venue_sim.replay_files[0]", "FILE",
                                                                    "no usable rows"), prepare="replay_no_rows"),
    "replay file with a bad row": Case("venue_sim", {}, ("venue_sim.replay_files[0]", "FILE", "line 3",
                                                         "could not convert string to float"),
                                       prepare="replay_bad_row"),
    "replay file not UTF-8": Case("venue_sim", {}, ("venue_sim.replay_files[0]", "FILE", "not UTF-8 text"),
                                  prepare="replay_not_utf8"),
    "replay file named .gz, not gzip": Case("venue_sim", {}, ("venue_sim.replay_files[0]", "cannot read", "FILE",
                                                              "gzip"), prepare="replay_not_gzip"),
    "replay file not CSV (a field over the csv module's limit)": Case(
        "venue_sim", {}, ("venue_sim.replay_files[0]", "FILE", "is not CSV", "field larger than field limit"),
        prepare="replay_not_csv"),
    # -- an environment the process cannot use ---------------------------------------------------------
    "unwritable log dir (below a file)": Case("orchestrator", {}, ("LOGDIR",), None, "log_dir_below_file"),
    "log dir is a file": Case("orchestrator", {}, ("LOGDIR",), None, "log_dir_is_file"),
    "unwritable state dir (below a file)": Case("exchange_manager", {}, ("STATEDIR",), None, "state_dir_below_file"),
    # (an ipc endpoint another process serves is taken back, not a reason to stop:
    # test_a_squatted_endpoint_is_taken_back_under_supervisord)
    "tcp port in use": Case("exchange_manager", {"bus": {"transport": "tcp"}}, ("ENDPOINT", "in use"), None,
                            "bind_tcp_cmd"),
}


@dataclass
class Run:
    case: Case
    root: Path
    returncode: int | None  # None: still running after RUN_LIMIT_S (killed)
    stderr: str
    elapsed_s: float
    placeholders: dict[str, str]

    def problem_lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.strip() and not INFO_LINE.match(ln)]


def _free_port_block(n: int) -> int:
    """A base port with ``n`` free consecutive ports (best effort: checked by binding each)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n >= 65000:
            continue
        socks = []
        try:
            for port in range(base, base + n):
                t = socket.socket()
                t.bind(("127.0.0.1", port))
                socks.append(t)
            return base
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
    raise AssertionError("no free block of ports")


def _prepare(case: Case, root: Path, config: dict[str, Any], holders: list[socket.socket]) -> dict[str, str]:
    """Set up the case's environment; returns placeholders for ``mention`` (paths, endpoints)."""
    paths = config.setdefault("paths", {})
    out: dict[str, str] = {}
    if case.prepare in ("log_dir_below_file", "state_dir_below_file"):
        (root / "afile").write_text("not a directory\n")
        key = "log_dir" if case.prepare.startswith("log") else "state_dir"
        paths[key] = str(root / "afile" / key)
        out["LOGDIR" if key == "log_dir" else "STATEDIR"] = str(root / "afile")
    elif case.prepare == "log_dir_is_file":
        (root / "logfile").write_text("not a directory\n")
        paths["log_dir"] = str(root / "logfile")
        out["LOGDIR"] = str(root / "logfile")
    elif case.prepare.startswith("replay_"):
        out["FILE"] = _replay_file(case.prepare, root, config)
    elif case.prepare in ("serve_cmd", "serve_pub", "bind_tcp_cmd"):
        if case.prepare == "bind_tcp_cmd":
            config["bus"]["tcp_base_port"] = _free_port_block(20)
        bus = BusSettings(**config.get("bus", {}))
        endpoints = Endpoints(bus, Path(paths["run_dir"]))
        endpoint = endpoints.pub(case.service) if case.prepare == "serve_pub" else endpoints.cmd(case.service)
        if endpoint.startswith("ipc://"):
            holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            holder.bind(endpoint[len("ipc://"):])
        else:
            host, port = endpoint[len("tcp://"):].rsplit(":", 1)
            holder = socket.socket()
            holder.bind((host, int(port)))
        holder.listen()
        holders.append(holder)
        out["ENDPOINT"] = endpoint
    return out


# Small replay files written by the cases (a ``timestamp,bid,ask`` quotes file is the good one).
REPLAY_FILES: dict[str, tuple[str, bytes | None]] = {
    "replay_good": ("quotes.csv", b"timestamp,bid,ask\n2022-01-01 00:00:00,40000.0,40001.0\n"),
    "replay_missing": ("missing.csv", None),
    "replay_directory": ("adir", None),
    "replay_bad_header": ("trades.csv", b"price,size\n40000,1\n"),
    "replay_empty": ("empty.csv", b""),
    "replay_no_rows": ("header.csv", b"timestamp,bid,ask\n\n"),
    "replay_bad_row": ("row.csv", b"timestamp,bid,ask\n2022-01-01 00:00:00,40000.0,40001.0\n"
                                  b"2022-01-01 00:00:01,n/a,40001.0\n"),
    "replay_not_utf8": ("latin1.csv", b"timestamp,bid,ask\n2022-01-01 00:00:00,40000.0,40001.0 \xe9\n"),
    "replay_not_gzip": ("quotes.csv.gz", b"timestamp,bid,ask\n2022-01-01 00:00:00,40000.0,40001.0\n"),
    "replay_not_csv": ("huge.csv", b'timestamp,bid,ask\n"' + b"x" * 200_000 + b'",1,2\n'),
}


def _replay_file(prepare: str, root: Path, config: dict[str, Any]) -> str:
    """Write the case's replay file and replay it as BTC-USD (traded by no strategy, so that the file
    is the only problem; an engine strategy on it only where the case sets one)."""
    name, data = REPLAY_FILES[prepare]
    path = root / name
    if prepare == "replay_directory":
        path.mkdir()
    elif data is not None:
        path.write_bytes(data)
    config.setdefault("engine", {"strategies": []})
    config.setdefault("venue_sim", {}).update({"source": "replay", "replay_files": [{"path": str(path),
                                                                                      "symbol": "BTC-USD"}]})
    return str(path)


def _write_config(root: Path, config: dict[str, Any]) -> Path:
    options = daemon_options(config)
    path = root / "config.toml"
    path.write_text(to_toml(options["config"]) + options["toml_extra"])
    return path


def _running(entry: tuple[subprocess.Popen[str], Path, dict[str, str], float]) -> bool:
    """Still running, and within its ``RUN_LIMIT_S``."""
    proc, _root, _placeholders, started = entry
    return proc.poll() is None and time.monotonic() - started < RUN_LIMIT_S


@pytest.fixture(scope="module")
def runs(bus_keys: Path) -> Iterator[dict[str, Run]]:
    """Every case (each in its own temp dir), ``PARALLEL`` at a time; the results once each has
    exited or ``RUN_LIMIT_S`` has passed since its own start."""
    holders: list[socket.socket] = []
    procs: dict[str, tuple[subprocess.Popen[str], Path, dict[str, str], float]] = {}
    roots: list[Path] = []
    results: dict[str, Run] = {}
    try:
        for name, case in CASES.items():
            root = Path(tempfile.mkdtemp(prefix="fzc-", dir="/tmp"))
            roots.append(root)
            for sub in ("run", "logs", "state"):
                (root / sub).mkdir(mode=0o700)
            config = {"paths": {"run_dir": str(root / "run"), "log_dir": str(root / "logs"),
                                "state_dir": str(root / "state"), "keys_dir": str(bus_keys)}}
            for section, values in case.config.items():
                config.setdefault(section, {}).update(values)
            config.setdefault("bus", {})
            placeholders = _prepare(case, root, config, holders)
            if not config["bus"]:
                del config["bus"]
            toml = _write_config(root, config)
            while sum(_running(entry) for entry in procs.values()) >= PARALLEL:
                time.sleep(0.05)
            proc = subprocess.Popen([sys.executable, "-m", f"services.{case.service}"], cwd=REPO,
                                    env=clean_environ({"TRADING_CONFIG": str(toml)}), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
            procs[name] = (proc, root, placeholders, time.monotonic())
        while any(_running(entry) for entry in procs.values()):
            time.sleep(0.1)
        for name, (proc, root, placeholders, t0) in procs.items():
            code = proc.poll()
            if code is None:
                os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate(timeout=10)
            results[name] = Run(CASES[name], root, code, err, time.monotonic() - t0, placeholders)
        yield results
    finally:
        for proc, *_ in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for holder in holders:
            holder.close()
        for root in roots:
            subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_config_stops_the_process_with_one_clear_line(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    case = run.case
    where = f"python -m services.{case.service} with {case.config or case.prepare}"
    assert run.returncode is not None, (
        f"{where}: still running {RUN_LIMIT_S:g}s after start (the mistake was accepted); stderr: {run.stderr[-800:]!r}")
    if case.exit_code is None:
        assert run.returncode != 0, (where, run.returncode, run.stderr)
    else:
        assert run.returncode == case.exit_code, (where, run.returncode, run.stderr[-1500:])
    assert "Traceback" not in run.stderr, f"{where}: exit {run.returncode} with a traceback:\n{run.stderr[-3000:]}"
    lines = run.problem_lines()
    assert len(lines) == 1, f"{where}: exit {run.returncode}; expected one line naming the problem, got {lines}"
    line = lines[0]
    for text in case.mention:
        text = run.placeholders.get(text, text)
        assert text in line, f"{where}: the line does not name {text!r}: {line!r}"
    assert line.startswith(f"{case.service}:"), f"the line does not say which program: {line!r}"


def test_a_replayed_symbol_no_strategy_trades_is_a_warning_not_an_error(tmp_path: Path, bus_keys: Path) -> None:
    """Its market data still feeds the data router and the safety detectors: the venue starts, and
    says so once in its log."""
    for sub in ("run", "logs", "state"):
        (tmp_path / sub).mkdir(mode=0o700)
    files = []
    for symbol in ("BTC-USD", "ETH-USD"):
        path = tmp_path / f"{symbol}.csv"
        path.write_bytes(REPLAY_FILES["replay_good"][1] or b"")
        files.append({"path": str(path), "symbol": symbol})
    toml = _write_config(tmp_path, {
        "paths": {"run_dir": str(tmp_path / "run"), "log_dir": str(tmp_path / "logs"), "state_dir": str(tmp_path / "state"),
                  "keys_dir": str(bus_keys)},
        "engine": {"strategies": [{"kind": "mean_reversion", "name": "mr", "symbol": "BTC-USD"}]},
        "venue_sim": {"source": "replay", "replay_files": files}})
    proc = subprocess.Popen([sys.executable, "-m", "services.venue_sim"], cwd=REPO,
                            env=clean_environ({"TRADING_CONFIG": str(toml)}), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:  # up to its "started" line
            lines.append(line)
            if "venue_sim started" in line:
                break
        assert proc.poll() is None, lines
    finally:
        proc.terminate()
        proc.wait(10)
    warnings = [ln for ln in lines if " WARNING " in ln]
    assert len(warnings) == 1 and "venue_sim.replay_files[1]" in warnings[0], lines
    assert "no strategy trades ETH-USD" in warnings[0], warnings


# -- through supervisord ----------------------------------------------------------------------------


def test_an_unusable_replay_file_ends_the_venue_fatal_under_supervisord(tmp_path: Path) -> None:
    """A replay file whose header the venue does not know: the venue simulator exits 78 at once on
    every start with one line naming the file (no traceback), supervisord gives up (FATAL), and the
    rest of the daemon runs (its files are the venue's alone: they stop nothing else)."""
    path = tmp_path / "trades.csv"
    path.write_bytes(REPLAY_FILES["replay_bad_header"][1] or b"")
    d = Daemon(config={"engine": {"strategies": []},
                       "venue_sim": {"source": "replay", "replay_files": [{"path": str(path), "symbol": "BTC-USD"}]}},
               startretries=2)
    try:
        d.start(wait=False)
        info, others = _wait_fatal(d, "venue_sim")
        sup_log = d.supervisord_log.read_text()
        venue_log = d.program_log("venue_sim").read_text(errors="replace").splitlines()
        tradectl = d.tradectl("state")
    finally:
        d.close()
    assert info["statename"] == "FATAL", (info, sup_log[-2000:])
    # 1 + startretries starts that failed in a row. A start starved past startsecs on a loaded host
    # counts as RUNNING, and supervisord counts its retries afresh after it: those after it are the row.
    row = sup_log[sup_log.rfind("success: venue_sim entered RUNNING") + 1:]
    assert _spawns(row, "venue_sim") == 3, sup_log
    starts = _spawns(sup_log, "venue_sim")
    assert sup_log.count(f"exited: venue_sim (exit status {EXIT_BAD_SETTINGS}; not expected)") == starts, sup_log
    assert not any("Traceback" in ln for ln in venue_log), venue_log
    problem = [ln for ln in venue_log if ln.strip() and not INFO_LINE.match(ln)]
    assert len(problem) == starts, problem
    assert all(ln == f"venue_sim: invalid settings: venue_sim.replay_files[0] (BTC-USD): {path}: unrecognised "
                     f"replay file header: 'price,size'" for ln in problem), problem
    assert all(state in ("RUNNING", "STARTING") for state in others.values()), others
    assert tradectl.returncode == 0 and tradectl.stdout.strip() in ("startup", "ready"), tradectl


def _spawns(log: str, program: str) -> int:
    return len(re.findall(rf"spawned: '{program}' with pid", log))


def _wait_fatal(d: Daemon, program: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Wait (up to 40 s) for supervisord to give ``program`` up; its process info and the other
    programs' states (the caller's assertions say what was found, with the evidence)."""
    try:
        wait_until(lambda: d.process_info(program)["statename"] == "FATAL", 40, interval=0.2, ignore=(OSError,))
    except WaitTimeout:
        pass
    return d.process_info(program), {p: s for p, s in d.statenames().items() if p != program}


def test_a_squatted_endpoint_is_taken_back_under_supervisord() -> None:
    """Another process takes the engine's command endpoint while the engine is down: the engine,
    holding its run lock (so no other engine runs there), takes the endpoint back, says so in one
    critical line and serves; it does not go FATAL (a squatter must not take a service away)."""
    d = Daemon(config={"engine": {"strategies": []}}, startretries=2)
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    endpoint = d.endpoints.cmd("engine")
    try:
        d.start()
        assert d.supervisorctl("stop", d.qualified("engine")).returncode == 0
        log_before = len(d.program_log("engine").read_text(errors="replace").splitlines())
        path = Path(endpoint[len("ipc://"):])
        path.unlink(missing_ok=True)  # the stopped engine's socket file, stale
        holder.bind(str(path))
        holder.listen()
        d.supervisorctl("start", d.qualified("engine"))
        d.wait_serving(["engine"])
        engine_log = d.program_log("engine").read_text(errors="replace").splitlines()[log_before:]
        assert d.process_info("engine")["statename"] in ("STARTING", "RUNNING")
    finally:
        try:
            d.close()
        finally:
            holder.close()
    assert not any("Traceback" in ln for ln in engine_log), engine_log
    taken = [ln for ln in engine_log if "CRITICAL" in ln and "was served by a process that is not" in ln]
    assert len(taken) == 1 and endpoint in taken[0], engine_log


def test_endpoint_in_use_refuses_the_daemon_start_in_one_line() -> None:
    """Another process serves the engine's command endpoint before the daemon starts: the start
    (``deploy/launch.py``, as ``make run``) refuses with one line naming that process's pid, and
    supervisord never starts (no wall of FATAL programs)."""
    d = Daemon(config={"engine": {"strategies": []}})
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    holder.bind(d.endpoints.cmd("engine")[len("ipc://"):])
    holder.listen()
    try:
        d.start(wait=False)
        assert d.proc is not None
        assert d.proc.wait(30) == 1
        lines = [ln for ln in d.supervisord_out.read_text(errors="replace").splitlines() if ln.strip()]
    finally:
        try:
            d.close()
        finally:
            holder.close()
    assert len(lines) == 1 and lines[0].startswith("launch: refusing to start"), lines
    assert f"serving engine.cmd pid {os.getpid()}" in lines[0] and f"kill {os.getpid()}" in lines[0], lines[0]
    assert not d.supervisord_log.exists()


@pytest.mark.slow
def test_impossible_limit_ends_fatal_under_supervisord() -> None:
    """An impossible limit (an order size the position limit can never allow) is a settings error
    like any other: every program exits 78 with one line, and all end FATAL."""
    d = Daemon(config={"exchange_manager": {"risk": {"max_order_qty": 50.0, "max_position": 5.0}}})
    try:
        d.start(wait=False)
        try:
            wait_until(lambda: {s for p, s in d.statenames().items() if p in command_services()} == {"FATAL"}, 45, interval=0.2, ignore=(OSError,))
        except WaitTimeout:
            pass
        states = d.statenames()
        programs = [p for p in d.programs if p in command_services()]
        states = {p: s for p, s in states.items() if p in programs}
        logs = {p: d.program_log(p).read_text(errors="replace") for p in programs}
        sup_log = d.supervisord_log.read_text()
    finally:
        d.close()
    assert set(states.values()) == {"FATAL"}, f"with max_order_qty 50 > max_position 5: {states}"
    for program, log in logs.items():
        assert f"exited: {program} (exit status {EXIT_BAD_SETTINGS}; not expected)" in sup_log
        problem = [ln for ln in log.splitlines() if ln.strip() and not INFO_LINE.match(ln)]
        assert problem and all("max_order_qty" in ln for ln in problem), (program, problem)
