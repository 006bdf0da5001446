"""docs/protocol.md, Compatibility: one service restarted on a newer build that adds optional fields
keeps the session LIVE; its peers, on the older build, read its messages and ignore the fields.

The newer build is a copy of the code whose ``proto`` adds a field to every heartbeat and to the
orchestrator's ``state`` result; the orchestrator is the one upgraded, since every trading process
follows its heartbeat (a peer that refused it would stop trading: fail closed)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import proto
from bus import CommandTimeout
from .daemon import REPO_ROOT, Daemon, wait_until
from .e2e import ensure_live

ADDED = '    build: str = "newer"  # an optional field the older build does not know\n'


def newer_build(where: Path) -> Path:
    for package in ("proto", "bus", "services", "deploy", "realtime"):
        shutil.copytree(REPO_ROOT / package, where / package, ignore=shutil.ignore_patterns("__pycache__"))
    messages = where / "proto" / "messages.py"
    text = messages.read_text()
    anchor = "    trading_enabled: bool = False\n"
    assert text.count(anchor) == 1, "the heartbeat's last field moved: update this test"
    messages.write_text(text.replace(anchor, anchor + ADDED))
    results = where / "proto" / "commands" / "results.py"
    text = results.read_text()
    anchor = "class SessionState(Result):\n    state: str  # OrchestratorState's lower-case value\n"
    assert text.count(anchor) == 1, "SessionState moved: update this test"
    results.write_text(text.replace(anchor, anchor + ADDED))
    return where


def test_the_orchestrator_on_a_newer_build_keeps_the_session_live(module_daemon: Daemon, tmp_path: Path) -> None:
    d = module_daemon
    ensure_live(d)
    code = newer_build(tmp_path / "newer")
    fills_before = d.stats_json()["fills"]
    # A restart of the orchestrator alone leaves the session open; its newer build runs in its place.
    assert d.supervisorctl("stop", d.qualified("orchestrator")).returncode == 0
    env = {**os.environ, **d.environment, "PYTHONUNBUFFERED": "1"}
    newer = subprocess.Popen([sys.executable, "-m", "services.orchestrator"], cwd=code, env=env,
                             stdout=open(tmp_path / "newer.log", "wb"), stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: d.status()["components"]["orchestrator"]["pid"] == newer.pid, 30, ignore=(CommandTimeout,))
        # its replies carry the new field; this (older) build reads them into its own result type
        reply = d.client("orchestrator").call("state", {})
        assert reply.ok and reply.result["build"] == "newer", reply
        assert proto.read_result(proto.spec_of("orchestrator", "state"), reply.result).state == "live"
        # the older peers follow its heartbeats: the session stays LIVE and keeps trading
        for peer in ("engine", "exchange_manager"):
            wait_until(lambda: d.status()["components"][peer]["trading_enabled"], 15)
        wait_until(lambda: d.stats_json()["fills"] > fills_before, 30)
        assert d.state() == "live"
        for peer in ("engine", "exchange_manager", "safety", "data_router"):
            subscriptions = d.call(peer, "status").result["bus"]["subscriptions"]
            invalid = {name: sub["rejected"] for name, sub in subscriptions.items() if sub["rejected"]}
            assert not invalid, (peer, invalid)
    finally:
        newer.send_signal(signal.SIGTERM)
        try:
            newer.wait(timeout=20)
        except subprocess.TimeoutExpired:  # never leave it behind
            newer.kill()
            newer.wait(timeout=10)
        d.supervisorctl("start", d.qualified("orchestrator"))
    d.wait_running(["orchestrator"])
    wait_until(lambda: d.state() == "live", 30)
