"""When a session ends and when the next start resumes it.

A session starts with the first orchestrator start after the previous one ended, and is journalled
with the fingerprint of the settings it runs under (``session_fingerprint.py``). It ends (SHUTDOWN,
end-of-day report, a line in the session log) by ``tradectl close``/``shutdown``, a scheduled close,
a graceful stop of the whole daemon, or a start under a different configuration. Otherwise a start
resumes it, in the state it was journalled in.

How the orchestrator tells a stop of the daemon from its own restart: both arrive as SIGTERM.
supervisord, while it stops everything (Ctrl-C of ``make run``, ``supervisorctl shutdown``, SIGTERM
to it, and ``supervisorctl reload``), is in its SHUTDOWN (or RESTARTING) mood before it signals any
program, and then answers every XML-RPC request with the fault ``SHUTDOWN_STATE``; when it restarts
one program (``supervisorctl restart orchestrator``) it is RUNNING. So on SIGTERM the orchestrator
asks supervisord ``getState`` over its control socket (``SUPERVISOR_SERVER_URL``, which supervisord
gives every program), with a short timeout:
  * shutting down or reloading → the daemon stops: the session ends (unless
    ``session.resume_after_stop``);
  * RUNNING → the orchestrator alone is stopped or restarted: the session stays open;
  * no answer (supervisord dead, hung, or not ours: an orphan stopped by hand) → the session stays
    open, and the session log says why. Unsure, it keeps the journal as a crash would: the next
    start resumes, which is what a kill -9 does too, and the line says so instead of resuming
    silently. Ending a session on a guess would close a session the operator meant to keep (its
    positions are still held and still reported at the next end).
A kill -9, a crash (autorestart) and a restart of the orchestrator alone never reach this: the
journal still holds the open session and the next start resumes it.
"""

from __future__ import annotations

import http.client
import logging
import socket
import time
import xmlrpc.client
from collections.abc import Mapping
from dataclasses import dataclass

from proto import OrchestratorState
from services.orchestrator.journal import WRITE_ERRORS, Journal, Restored, SessionCounters
from services.orchestrator.session_logs import SessionLogs
from services.orchestrator.state_machine import Transition
from services.parent_watch import supervised

log = logging.getLogger(__name__)

SUPERVISOR_URL_ENV = "SUPERVISOR_SERVER_URL"
SHUTDOWN_STATE_FAULT = 6  # supervisor.xmlrpc.Faults.SHUTDOWN_STATE: refusing requests while stopping
ASK_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class StopVerdict:
    end: bool  # the session ends now
    line: str  # what the session log says about this stop
    reason: str = ""  # the SHUTDOWN transition's reason, when it ends


def supervisord_state(environ: Mapping[str, str], timeout_s: float = ASK_TIMEOUT_S) -> tuple[str | None, str]:
    """supervisord's state name (RUNNING, SHUTDOWN, RESTARTING, ...) or None, and how it was known."""
    url = environ.get(SUPERVISOR_URL_ENV, "")
    if not url.startswith("unix://"):
        return None, f"no supervisord control socket in the environment ({SUPERVISOR_URL_ENV}={url!r})"
    request = xmlrpc.client.dumps((), "supervisor.getState").encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(url.removeprefix("unix://"))
            conn = http.client.HTTPConnection("localhost", timeout=timeout_s)
            conn.sock = sock
            conn.request("POST", "/RPC2", request, {"Content-Type": "text/xml"})
            answer = conn.getresponse().read()
        (state,), _ = xmlrpc.client.loads(answer)
    except xmlrpc.client.Fault as fault:
        if fault.faultCode == SHUTDOWN_STATE_FAULT:
            return "SHUTDOWN", "supervisord refuses requests: it is shutting down or reloading"
        return None, f"supervisord answered with a fault: {fault.faultString}"
    except (OSError, http.client.HTTPException, xmlrpc.client.Error, ValueError) as exc:
        return None, f"supervisord did not answer on {url}: {type(exc).__name__}: {exc}"
    name = state.get("statename") if isinstance(state, dict) else None
    return (name if isinstance(name, str) else None), "supervisord says so"


def stop_verdict(environ: Mapping[str, str], resume_after_stop: bool, timeout_s: float = ASK_TIMEOUT_S) -> StopVerdict:
    """Whether this stop of the orchestrator ends the session (see the module docstring)."""
    if not supervised(environ):
        return StopVerdict(False, "Orchestrator stopped (not under supervisord): the session stays open; "
                                  "the next start resumes it")
    state, how = supervisord_state(environ, timeout_s)
    if state in ("SHUTDOWN", "RESTARTING"):
        if resume_after_stop:
            return StopVerdict(False, f"Daemon stopping ({how}): the session stays open "
                                      f"(session.resume_after_stop); the next start resumes it")
        return StopVerdict(True, f"Daemon stopping ({how}): the session ends",
                           "daemon stopped (supervisord is shutting down: Ctrl-C of make run, supervisorctl "
                           "shutdown or SIGTERM to supervisord; or reloading)")
    if state == "RUNNING":
        return StopVerdict(False, "Orchestrator stopped alone (supervisord is RUNNING: a restart of this "
                                  "program): the session stays open; the next start resumes it")
    return StopVerdict(False, f"Orchestrator stopped; whether the daemon is stopping is unknown ({how}): the "
                              f"session stays open and the next start resumes it (tradectl shutdown ends it)")


def configuration_change(journalled: str, current: str) -> str | None:
    """Why an unfinished session cannot be resumed under the current settings, or None."""
    if not journalled or journalled == current:  # "": journalled before fingerprints existed
        return None
    return f"configuration changed (settings fingerprint {journalled} → {current})"


def end_at_start(journal: Journal, logs: SessionLogs, restored: Restored, reason: str) -> tuple[SessionCounters, str]:
    """The unfinished session cannot go on under these settings: journal its end (SHUTDOWN with
    the reason) and say so; its end-of-day report follows once the exchange manager answers."""
    old = restored.counters
    try:
        journal.record(Transition(restored.transitions_done + 1, time.time(), restored.state,
                                  OrchestratorState.SHUTDOWN, reason), old)
    except WRITE_ERRORS as exc:  # the new session, journalled later, is the one resumed anyway
        log.error("could not journal the end of session %s: %s", old.session_id, exc)
    logs.live(f"Session {old.session_id} ended at start ({restored.state.name}): {reason}; a new session begins",
              logging.WARNING, event="session_end",
              data={"session_id": old.session_id, "state": restored.state.value, "reason": reason})
    return old, reason


@dataclass
class Begun:
    state: OrchestratorState
    transitions_done: int
    counters: SessionCounters
    resumed: bool
    ended_at_start: tuple[SessionCounters, str] | None = None  # a session ended now, its report due


def begin_session(journal: Journal, logs: SessionLogs, settings_fingerprint: str) -> Begun:
    """Resume the unfinished session, unless its settings differ (then end it, and begin anew)."""
    restored = journal.restore()
    ended = None
    if restored is not None:
        change = configuration_change(restored.counters.fingerprint, settings_fingerprint)
        if change is None:
            counters = restored.counters
            counters.orchestrator_restarts += 1
            counters.fingerprint = counters.fingerprint or settings_fingerprint
            return Begun(restored.state, restored.transitions_done, counters, resumed=True)
        ended = end_at_start(journal, logs, restored, change)
    counters = SessionCounters(fingerprint=settings_fingerprint)
    # fail closed: after a session that ended in FAILSAFE, trading again takes an operator's `open`
    counters.auto_open_pending = journal.ended_in() != OrchestratorState.FAILSAFE
    return Begun(OrchestratorState.STARTUP, 0, counters, resumed=False, ended_at_start=ended)


def announce_session(logs: SessionLogs, begun: Begun) -> None:
    counters = begun.counters
    if begun.resumed:
        logs.live(f"Restored session {counters.session_id} from journal: state {begun.state.name}, "
                  f"{begun.transitions_done} transition(s), restart #{counters.orchestrator_restarts}",
                  event="session_restored", data={"session_id": counters.session_id, "state": begun.state.value,
                                                  "transitions": begun.transitions_done,
                                                  "restart": counters.orchestrator_restarts})
        return
    waits = "" if counters.auto_open_pending else "; the last session ended in FAILSAFE: it waits for tradectl open"
    logs.live(f"New session {counters.session_id}: state {begun.state.name}, settings fingerprint "
              f"{counters.fingerprint}{waits}", event="session_start",
              data={"session_id": counters.session_id, "state": begun.state.value, "fingerprint": counters.fingerprint})
