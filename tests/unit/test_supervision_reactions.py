"""services.orchestrator.supervision: what the orchestrator writes and does when supervisord is gone,
its own loop stalled, or its predecessor was killed as hung (real session logs in a temp dir)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

import proto
from proto import OrchestratorState as S
from services.orchestrator.session_logs import SessionLogs
from services.orchestrator.supervision import SUPERVISOR, Supervision, tracked_supervisor
import msgspec


class Rig:
    def __init__(self, tmp_path: Path, state: S = S.LIVE) -> None:
        self.state = state
        self.degraded: list[str] = []
        self.alerts: list[dict[str, Any]] = []
        self.logs = SessionLogs(tmp_path)
        self.sup = Supervision(self.logs, state=lambda: self.state, degrade=self.degraded.append,
                               note=lambda _what: None, alert=self.alerts.append, missing_after_s=0.4,
                               deadman_s=1.0)

    def live_log(self) -> str:
        self.logs.close()
        return self.logs.paths["live_trading"].read_text(encoding="utf-8")


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def test_the_supervisor_is_tracked_only_under_supervisord() -> None:
    assert tracked_supervisor({"SUPERVISOR_ENABLED": "1"}) == (SUPERVISOR,)
    assert tracked_supervisor({}) == ()


def test_a_stall_past_the_dead_man_timeout_degrades_a_live_session(rig: Rig) -> None:
    rig.sup.loop_stalled(2.4)
    assert rig.degraded == ["orchestrator stalled 2.4s: the peers' dead-man switches tripped, nobody watched"]
    assert "WARNING - Orchestrator loop stalled 2.4s: the peers' dead-man switches tripped, nobody watched\n" \
        in rig.live_log()
    assert rig.sup.stats() == {"loop_stalls": 1, "longest_loop_stall_s": 2.4}


def test_a_shorter_stall_is_written_and_changes_nothing(rig: Rig) -> None:
    rig.sup.loop_stalled(0.6)
    assert rig.degraded == []
    assert "Orchestrator loop stalled 0.6s: shorter than the peers' dead-man timeout (1s)" in rig.live_log()


def test_a_stall_outside_live_is_written_with_the_state(tmp_path: Path) -> None:
    rig = Rig(tmp_path, S.FAILSAFE)
    rig.sup.loop_stalled(3.0)
    assert "(session failsafe: no transition)" in rig.live_log()


def test_supervisor_lost_is_critical_alerted_and_degrades(rig: Rig) -> None:
    rig.sup.supervisor_lost("supervisord (pid 7) is gone")
    assert rig.alerts == [{"event": "supervisor_lost", "reason": "supervisord (pid 7) is gone", "state": "live"}]
    assert rig.degraded and rig.degraded[0].startswith("supervisord is gone: nothing restarts a process that dies")
    health = rig.logs.paths["connector_health"].read_text(encoding="utf-8")
    assert "CRITICAL - Supervisor lost: supervisord (pid 7) is gone" in health
    rig.sup.peer_orphaned(proto.ProcessAlert(program="engine", group="trading", event="orphaned",
                                             from_state="RUNNING", pid=9))
    assert "reported by engine" in rig.degraded[-1]


def test_the_successor_of_a_hung_orchestrator_writes_it_and_degrades_once(rig: Rig) -> None:
    hung = {"pid": os.getpid() + 1, "at": time.time() - 2.0, "silent_s": 5.3, "detail": "trading:orchestrator hung",
            "successor_pid": os.getpid()}
    def beat(**stats: object) -> proto.summaries.SupervisorSummary:  # as a heartbeat brings it off the wire
        return msgspec.convert({"service": "supervisor", **stats}, proto.summaries.ServiceSummary)

    rig.sup.listener_heartbeat(beat(events=3))
    rig.sup.listener_heartbeat(beat(hung_orchestrator={**hung, "successor_pid": os.getpid() + 2}))  # another one's
    rig.sup.listener_heartbeat(beat(hung_orchestrator={k: v for k, v in hung.items() if k != "successor_pid"}))
    rig.sup.listener_heartbeat(None)  # a heartbeat without a summary
    with pytest.raises(msgspec.ValidationError):  # garbage never gets past decoding
        beat(hung_orchestrator={"successor_pid": os.getpid(), "pid": "x"})
    assert rig.degraded == []
    rig.sup.listener_heartbeat(beat(hung_orchestrator=hung))
    rig.sup.listener_heartbeat(beat(hung_orchestrator=hung))  # every heartbeat carries it: told once
    assert rig.degraded == ["orchestrator was hung 5.3s and restarted: the peers' dead-man switches tripped, "
                            "nobody watched"]
    assert f"CRITICAL - Process orchestrator: HUNG under supervisord (pid {hung['pid']})" in rig.live_log()
