"""kill -9 under supervisord: every program comes back, and the orchestrator's session survives.

The per-service kills share one daemon; each waits until the killed program is back and seen alive
again, so the next starts from a whole daemon. The session may well go DEGRADED meanwhile (a
process missing is an anomaly), so these tests do not pin the state. The orchestrator kills get
their own daemons.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bus import CommandTimeout
from services.orchestrator.components import TRADING_PEERS

from .daemon import Daemon, command_services, orchestrated_services, program_names, wait_until

NOT_ORCHESTRATOR = [name for name in program_names() if name != "orchestrator"]
# supervisord declares a respawned program RUNNING startsecs after the spawn, and each case waits for
# that: 1 s instead of the template's 5 s (nothing here fails to start; the kills come once RUNNING)
MODULE_DAEMON = {"startsecs": 1}


@pytest.mark.parametrize("program", NOT_ORCHESTRATOR)
def test_kill9_service_is_restarted_and_seen_alive_again(module_daemon: Daemon, program: str) -> None:
    d = module_daemon
    d.wait_running()
    wait_until(lambda: d.state() in ("live", "degraded", "failsafe"), 30, ignore=(CommandTimeout,))
    tracked = program in orchestrated_services()
    if tracked:
        before = d.wait_components_alive()["components"][program]
    old_pid = d.kill9(program)
    new_pid = d.wait_respawned(program, old_pid, timeout=20)
    assert new_pid != old_pid
    if program in command_services():
        # the new process serves commands on the same endpoint
        wait_until(lambda: d.request(program, "status")["pid"] == new_pid, 10, ignore=(CommandTimeout,))
    if not tracked:
        return

    def seen_again() -> dict | None:
        comp = d.status()["components"][program]
        return comp if comp["alive"] and comp["pid"] == new_pid else None

    wait_until(seen_again, 15, message=lambda: d.diagnostics())
    status = d.status_json()  # the operator's view, through tradectl
    comp = status["components"][program]
    assert comp["alive"] is True
    assert comp["pid"] == new_pid == d.supervisorctl_pids()[program]
    assert comp["restarts"] == before["restarts"] + 1, (before, comp)
    if program in TRADING_PEERS:
        # the restarted (fail-closed) process is told what the session allows, and agrees
        def agrees() -> bool:
            st = d.status()
            return st["components"][program]["trading_enabled"] == (st["state"] in ("live", "degraded"))

        wait_until(agrees, 10, message=lambda: d.diagnostics())


def _orchestrator_restarted(d: Daemon) -> int:
    old_pid = d.kill9("orchestrator")
    new_pid = d.wait_respawned("orchestrator", old_pid, timeout=20)
    # answering on the bus again, as the new process
    wait_until(lambda: d.status()["pid"] == new_pid, 10, ignore=(Exception,), message=lambda: d.diagnostics())
    return new_pid


def test_kill9_orchestrator_while_live_keeps_the_session_live(daemon: Daemon) -> None:
    d = daemon
    d.wait_state("live", timeout=30)
    before = d.stats_json()
    new_pid = _orchestrator_restarted(d)
    assert d.tradectl("state").stdout == "live\n"
    after = d.stats_json()
    assert after["session_id"] == before["session_id"]
    assert after["failsafe_activations"] == before["failsafe_activations"] == 0
    assert after["transitions"] == before["transitions"]
    assert after["orchestrator_restarts"] == before["orchestrator_restarts"] + 1
    status = d.status_json()
    assert status["components"]["orchestrator"]["pid"] == new_pid
    assert status["components"]["orchestrator"]["restarts"] == after["orchestrator_restarts"]
    # the session goes on: the trading processes are (still, or again) allowed to trade
    for peer in TRADING_PEERS:
        wait_until(lambda: d.status()["components"][peer]["trading_enabled"], 10)
    live_log = d.status()["session_logs"]["live_trading"]
    assert "Restored session" in Path(live_log).read_text(encoding="utf-8")


def test_kill9_orchestrator_in_failsafe_keeps_failsafe(daemon: Daemon) -> None:
    d = daemon
    d.wait_state("live", timeout=30)
    res = d.tradectl("failsafe", "--reason", "test")
    assert res.returncode == 0, res.stderr
    assert d.state() == "failsafe"
    wait_until(lambda: d.status()["failsafe_pending"] is None, 10)

    # the incident report, for tools and for people
    reports = wait_until(lambda: sorted(d.incidents_dir.glob("incident_*")), 5)
    json_reports = [p for p in reports if p.suffix == ".json"]
    md_reports = [p for p in reports if p.suffix == ".md"]
    assert len(json_reports) == 1 and len(md_reports) == 1, reports
    assert json_reports[0].stem == md_reports[0].stem
    assert re.fullmatch(r"incident_\d{8}_\d{6}_\w+", json_reports[0].stem)
    report = json.loads(json_reports[0].read_text())
    assert report["trigger"] == "test"
    assert report["session_id"] == d.stats_json()["session_id"]
    steps = report["steps"]
    # invariant 4: stop new orders first (engine and the exchange manager's gate), ..., verify flat
    assert [st["name"].startswith("stop new orders") for st in steps[:2]] == [True, True], steps
    assert all(st["ok"] for st in steps[:2]), steps
    assert any(st["name"].startswith("verify flat") and st["ok"] for st in steps), steps
    assert report["ok"] is True, steps
    md = md_reports[0].read_text()
    assert md.startswith("# FAILSAFE incident") and "Trigger: test" in md

    before = d.stats_json()
    assert before["failsafe_activations"] == 1
    _orchestrator_restarted(d)
    assert d.tradectl("state").stdout == "failsafe\n"
    after = d.stats_json()
    assert after["session_id"] == before["session_id"]
    assert after["failsafe_activations"] == 1
    assert after["orchestrator_restarts"] == before["orchestrator_restarts"] + 1
    # still nothing trades, and no second report was written for the same failsafe
    d.wait_components_alive()
    for peer in TRADING_PEERS:
        assert d.status()["components"][peer]["trading_enabled"] is False
    assert sorted(d.incidents_dir.glob("incident_*")) == reports
    # and an operator can still reset it
    assert d.tradectl("reset").returncode == 0
    assert d.state() == "ready"
