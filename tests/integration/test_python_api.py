"""The specification's Python API against a running daemon: ``RemoteOrchestrator``."""

from __future__ import annotations

import pytest

from proto import OrchestratorState
from services.orchestrator import RemoteOrchestrator
from services.settings import load_settings

from .daemon import Daemon, wait_until


@pytest.fixture
def remote(daemon: Daemon, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRADING_CONFIG", str(daemon.toml_path))
    orch = RemoteOrchestrator(load_settings())
    with orch:
        yield orch


def test_the_specification_names_drive_a_running_daemon(daemon: Daemon, remote: RemoteOrchestrator) -> None:
    daemon.wait_state("live", timeout=30)
    assert remote.is_running()
    assert remote.get_state() is OrchestratorState.LIVE
    stats = remote.get_stats()
    for key in ("session_duration", "safety_events", "realized_pnl", "failsafe_activations"):
        assert key in stats, stats
    wait_until(lambda: remote.get_connector_status().get("sim", {}).get("connected"), 15)
    # recover_from_degraded refuses outside DEGRADED, and says so by returning False
    assert remote.recover_from_degraded() is False
    assert remote.get_state() is OrchestratorState.LIVE


def test_state_change_callbacks_arrive(daemon: Daemon, remote: RemoteOrchestrator) -> None:
    daemon.wait_state("live", timeout=30)
    seen: list[tuple[OrchestratorState, OrchestratorState, str]] = []
    remote.register_state_change_callback(lambda old, new, reason: seen.append((old, new, reason)))
    assert remote.wait_connected(10)  # from now on no state change is missed
    res = daemon.tradectl("failsafe", "--reason", "api test")
    assert res.returncode == 0, res.stderr
    # The listener runs from the fixture's start: the opening (STARTUP -> READY -> LIVE), heard before the
    # callback was registered, may still be delivered to it just after.
    wait_until(lambda: [new for _old, new, _r in seen][-2:] == [OrchestratorState.DEGRADED, OrchestratorState.FAILSAFE],
               10, message=lambda: str(seen))
    assert [new for _old, new, _r in seen[:-2]] in ([], [OrchestratorState.LIVE],
                                                   [OrchestratorState.READY, OrchestratorState.LIVE]), seen
    assert seen[-1][2] == "api test"
