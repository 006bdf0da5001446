"""Start-up, READY, the status view and the session logs of a real daemon.

Read-only checks (and refused commands, which change nothing) share one daemon started with
``auto_open = false``, so it stays READY. Tests that change the session are in
test_session_control.py, each with its own daemon.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from typing import Any

from bus import SERVICE_NAMES

from deploy.supervisord_conf import EVENT_LISTENER

from .daemon import Daemon, orchestrated_services, program_names, wait_until

MODULE_DAEMON = {"config": {"orchestrator": {"auto_open": False}}}

TRANSITION_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - LiveTradingOrchestrator - INFO - State transition: STARTUP → READY"
)
SESSION_LOG_KINDS = ("live_trading", "safety_events", "connector_health", "governance_events")


def test_all_programs_running_and_orchestrator_ready(module_daemon: Daemon) -> None:
    d = module_daemon
    d.wait_running()  # RUNNING is startsecs after the spawn; the daemon is ready once it serves
    names = d.statenames()
    assert set(names) == {*program_names(), EVENT_LISTENER}
    assert set(names.values()) == {"RUNNING"}, names
    assert d.wait_state("ready", timeout=15) == "ready"
    # auto_open = false: it stays READY
    assert d.state() == "ready"


def test_tradectl_state_prints_exactly_the_lowercase_name(module_daemon: Daemon) -> None:
    module_daemon.wait_state("ready", timeout=15)
    res = module_daemon.tradectl("state")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "ready\n"
    assert res.stderr == ""


def test_status_json_has_every_component_with_supervisord_pids(module_daemon: Daemon) -> None:
    d = module_daemon
    d.wait_components_alive()
    status = d.status_json()
    assert status["state"] == "ready"
    components = status["components"]
    services = orchestrated_services()
    assert set(services) <= set(components), components.keys()
    # under supervisord the supervisor (its event listener's heartbeat) is a component too
    assert set(components) <= set(SERVICE_NAMES) | {"supervisor"}, components.keys()
    assert components["supervisor"]["alive"] is True, components["supervisor"]
    assert components["supervisor"]["pid"] == d.pid_of("event_listener"), components["supervisor"]
    d.wait_running()  # supervisorctl lists pids of RUNNING programs, startsecs after the spawn
    supervisor_pids = d.supervisorctl_pids()
    for name in services:
        comp = components[name]
        for key in ("alive", "pid", "heartbeat_age_s", "restarts"):
            assert key in comp, (name, comp)
        assert comp["alive"] is True, (name, comp)
        assert comp["restarts"] == 0, (name, comp)
        assert isinstance(comp["heartbeat_age_s"], (int, float)), (name, comp)
        assert 0 <= comp["heartbeat_age_s"] < 2.0, (name, comp)
        assert comp["pid"] == supervisor_pids[name] == d.pid_of(name), (name, comp, supervisor_pids)


def test_tradectl_status_table_names_every_service(module_daemon: Daemon) -> None:
    res = module_daemon.tradectl("status")
    assert res.returncode == 0, res.stderr
    for name in orchestrated_services():
        assert name in res.stdout
    assert "ready" in res.stdout


def test_session_logs_exist_and_record_startup_to_ready(module_daemon: Daemon) -> None:
    d = module_daemon
    d.wait_state("ready", timeout=15)
    live = d.session_log_dir
    for kind in SESSION_LOG_KINDS:
        matches = [p for p in live.iterdir() if re.fullmatch(rf"{kind}_\d{{8}}_\d{{6}}\.log", p.name)]
        assert len(matches) == 1, (kind, sorted(p.name for p in live.iterdir()))
    # the orchestrator names the same files in its status
    paths = d.status()["session_logs"]
    assert set(paths) == {*SESSION_LOG_KINDS, "events"}
    for kind, path in paths.items():
        assert path.startswith(str(live) + "/"), path
    live_log = paths["live_trading"]
    lines = wait_until(
        lambda: [ln for ln in open(live_log, encoding="utf-8") if TRANSITION_LINE.match(ln)], 5,
        message=f"no STARTUP → READY line in {live_log}",
    )
    assert len(lines) == 1, lines
    # every line of the live log has the specified format
    for line in open(live_log, encoding="utf-8"):
        assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - LiveTradingOrchestrator - (INFO|WARNING|ERROR|CRITICAL) - ",
                        line), line


def test_the_event_log_has_one_json_object_per_line_with_the_fields(module_daemon: Daemon) -> None:
    d = module_daemon
    d.wait_state("ready", timeout=15)
    path = d.status()["session_logs"]["events"]
    assert re.fullmatch(r"events_\d{8}_\d{6}\.jsonl", path.rsplit("/", 1)[1]), path
    d.tradectl("recover")  # refused (not degraded): an operator command in the governance log
    records = wait_until(lambda: [json.loads(line) for line in open(path, encoding="utf-8")
                                  if '"operator_command"' in line or '"state_transition"' in line], 5)
    [ready] = [r for r in records if r["event"] == "state_transition"]
    assert ready["data"]["old"] == "startup" and ready["data"]["new"] == "ready" and ready["log"] == "live_trading"
    assert ready["message"].startswith("State transition: STARTUP → READY")
    assert ready["level"] == "INFO" and isinstance(ready["ts"], float) and ready["time"].endswith("Z")
    [command] = wait_until(lambda: [json.loads(line) for line in open(path, encoding="utf-8")
                                    if '"operator_command"' in line], 5)
    assert command["data"]["command"] == "recover" and command["data"]["accepted"] is False
    assert command["log"] == "governance_events" and command["level"] == "WARNING"


def test_recover_when_not_degraded_is_refused(module_daemon: Daemon) -> None:
    d = module_daemon
    d.wait_state("ready", timeout=15)
    res = d.tradectl("recover")
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "refused" in res.stderr and "recover needs degraded" in res.stderr, res.stderr
    assert d.state() == "ready"


def test_failsafe_when_nothing_trades_is_refused(module_daemon: Daemon) -> None:
    d = module_daemon
    d.wait_state("ready", timeout=15)
    res = d.tradectl("failsafe", "--reason", "test")
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "refused" in res.stderr, res.stderr
    assert d.state() == "ready"
    assert d.stats_json()["failsafe_activations"] == 0


def test_status_json_is_one_json_object(module_daemon: Daemon) -> None:
    res = module_daemon.tradectl("status", "--json")
    assert res.returncode == 0
    obj = json.loads(res.stdout)
    assert isinstance(obj, dict) and {"state", "components"} <= set(obj)


def test_tradectl_logs_follows_the_running_session(module_daemon: Daemon) -> None:
    d = module_daemon
    d.wait_state("ready", timeout=15)
    env = {**os.environ, "TRADING_CONFIG": str(d.toml_path)}
    follower = subprocess.Popen([sys.executable, "-c", "from services.tradectl.cli import main; main()",
                                 "logs", "governance_events", "-n", "0", "-f", "--json"],
                                env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert follower.stdout is not None
        # it prints only lines written after it has opened the file and sought to its end: write
        # one (a refused recover is a governance line) until it shows one
        deadline = time.monotonic() + 15
        ready: list[Any] = []
        while not ready and time.monotonic() < deadline:
            assert d.tradectl("recover").returncode == 1
            ready, _, _ = select.select([follower.stdout], [], [], 0.5)
        assert ready, "tradectl logs -f printed nothing within 15 s"
        line = json.loads(follower.stdout.readline())
        assert line["log"] == "governance_events"
        assert "Operator command recover by tradectl: REFUSED" in line["line"]  # who sent it, by its key
    finally:
        follower.kill()
        follower.wait()
