"""The orchestrator's side of supervision: supervisord gone, a peer orphaned, its own loop stalled.

- **The supervisor is a component** when the orchestrator runs under supervisord: the event
  listener's heartbeat (``hb.supervisor``) is tracked like a process's. The listener exits when
  supervisord dies (its stdin closes), so a dead supervisord is a missing process: LIVE → DEGRADED
  with the reason, ``open``/``recover`` refused while it is missing, and a DEGRADED session goes to
  FAILSAFE once it has been missing for ``health.missing_escalate_after_s`` (60 s), as any process
  missing for good. Why escalate at all: with supervisord gone nothing restarts a process that
  dies; if the exchange manager died next, nothing could flatten. Flattening while every process
  still runs is the safe end of a night nobody answered the alert. Outside supervisord (tests,
  tools, the Python API in-process) nothing of this applies.
- **supervisord gone, seen first-hand**: the orchestrator's own parent watch (and every peer's,
  reported as an ``orphaned`` ``ProcessAlert``) sees it within a heartbeat, before the listener's
  silence counts: a critical line in the session logs, an alert to the on-call sinks, DEGRADED.
- **A stalled loop** (SIGSTOP then SIGCONT, swap, starvation): the reactor reports how long the
  loop stood still before it handles anything queued meanwhile. A stall longer than a process
  takes to count as missing is written in the session log (nothing was watched meanwhile). One as
  long as the trading processes' dead-man timeout takes LIVE to DEGRADED: their switches tripped
  and nobody watched, so going back to LIVE is an explicit step (``recover``, or the automatic
  recovery after a healthy spell).
- **A hung orchestrator** is killed by the event listener and restarted by supervisord; it cannot
  hear that itself, so the listener's heartbeat carries it (``hung_orchestrator``: pid, how long
  silent, and the successor's pid: the first new orchestrator the listener heard) for a minute.
  That successor, and no later orchestrator, writes it in its session logs and, as for a stall,
  takes a LIVE session to DEGRADED.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import proto
from proto import OrchestratorState as S
from services.orchestrator.session_logs import SessionLogs
from services.parent_watch import supervised

SUPERVISOR = "supervisor"  # the source name of supervisord's event listener (deploy/event_listener.py)


def tracked_supervisor(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The supervisor as a component to track: only when supervisord runs this orchestrator."""
    return (SUPERVISOR,) if supervised(environ) else ()


class Supervision:
    def __init__(self, logs: SessionLogs, *, state: Callable[[], S], degrade: Callable[[str], None],
                 note: Callable[[str], None], alert: Callable[[dict[str, Any]], None],
                 missing_after_s: float, deadman_s: float) -> None:
        self._logs = logs
        self._state = state
        self._degrade = degrade
        self._note = note
        self._alert = alert
        self._missing_after_s = missing_after_s
        self._deadman_s = deadman_s
        self.stalls = 0
        self.longest_stall_s = 0.0
        self._predecessor_told = False

    def supervisor_lost(self, reason: str) -> None:
        """The orchestrator's own parent, supervisord, is gone."""
        line = f"Supervisor lost: {reason}; trading processes stop opening positions by themselves"
        self._logs.health(line, logging.CRITICAL, event="supervisor_lost", data={"reason": reason})  # + live log
        self._note(f"supervisord gone: {reason}")
        self._alert({"event": "supervisor_lost", "reason": reason, "state": self._state().value})
        self._degrade(f"supervisord is gone: nothing restarts a process that dies ({reason})")

    def peer_orphaned(self, alert: proto.ProcessAlert) -> None:
        """A peer says supervisord is gone (its ``orphaned`` alert, already in the health log)."""
        self._degrade(f"supervisord is gone (reported by {alert.program}): nothing restarts a process that dies")

    def loop_stalled(self, stalled_s: float) -> None:
        """The orchestrator's loop stood still for ``stalled_s`` (called for stalls of at least
        ``missing_after_s``, before anything queued meanwhile is handled)."""
        self.stalls += 1
        self.longest_stall_s = max(self.longest_stall_s, stalled_s)
        state = self._state()
        tripped = stalled_s >= self._deadman_s
        data = {"stalled_s": round(stalled_s, 3), "state": state.value, "deadman_timeout_s": self._deadman_s}
        if tripped and state == S.LIVE:
            what = "the peers' dead-man switches tripped, nobody watched"
        elif tripped:
            what = f"the peers' dead-man switches tripped, nobody watched (session {state.value}: no transition)"
        else:
            what = (f"shorter than the peers' dead-man timeout ({self._deadman_s:g}s), but nothing was watched "
                    f"meanwhile; no transition")
        self._logs.live(f"Orchestrator loop stalled {stalled_s:.1f}s: {what}", logging.WARNING,
                        event="orchestrator_stall", data=data)
        self._note(f"orchestrator stalled {stalled_s:.1f}s")
        if tripped:
            self._degrade(f"orchestrator stalled {stalled_s:.1f}s: the peers' dead-man switches tripped, nobody watched")

    def listener_heartbeat(self, stats: proto.summaries.ServiceSummary | None) -> None:
        """What the event listener's heartbeat says: was this orchestrator's predecessor killed as hung?"""
        hung = stats.hung_orchestrator if isinstance(stats, proto.summaries.SupervisorSummary) else None
        # only the first orchestrator the listener heard after the kill is the successor
        if self._predecessor_told or hung is None or hung.successor_pid != os.getpid():
            return
        self._predecessor_told = True
        pid, silent_s, detail = hung.pid, hung.silent_s, hung.detail
        self._logs.health(f"Process orchestrator: HUNG under supervisord (pid {pid}): {detail}", logging.CRITICAL,
                          event="process_alert", data={"program": "orchestrator", "event": "hung", "pid": pid,
                                                       "silent_s": silent_s, "detail": detail})
        self._note(f"predecessor (pid {pid}) was hung {silent_s:.1f}s")
        self._degrade(f"orchestrator was hung {silent_s:.1f}s and restarted: the peers' dead-man switches tripped, "
                      f"nobody watched")

    def stats(self) -> dict[str, Any]:
        return {"loop_stalls": self.stalls, "longest_loop_stall_s": round(self.longest_stall_s, 3)}
