"""Hung programs: a process supervisord runs whose heartbeat has stopped while its pid lives.

supervisord restarts a program that exits, never one that stops answering (SIGSTOP, a deadlock, a
loop spinning outside its event loop). The event listener is supervisord's own agent, so it does
it: it follows every program's heartbeat on the bus (``hb.<program>``, which carries the pid) and,
every few seconds, asks supervisord which pid each program runs as. A program in STARTING or
RUNNING whose current pid has been silent for ``hung_restart_after_s`` (or, never heard from since
its spawn, for ``hung_start_grace_s``) is hung: the listener kills it with SIGKILL (SIGTERM does
not reach a stopped process) and supervisord's autorestart starts a new one. This covers the
orchestrator too, which cannot restart itself.

``HungWatch`` only judges (it is given heartbeats and supervisord's process list and says who is
hung); the listener does the killing and the reporting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ALIVE_STATES = ("STARTING", "RUNNING")


@dataclass(frozen=True)
class Hung:
    program: str
    group: str
    pid: int
    statename: str
    silent_s: float
    heard: bool  # False: never heard from since its spawn (the start grace applied)

    @property
    def namespec(self) -> str:
        return f"{self.group}:{self.program}"

    def describe(self, after_s: float, grace_s: float) -> str:
        since = (f"no heartbeat for {self.silent_s:.1f}s (hung_restart_after_s={after_s:g})" if self.heard
                 else f"no heartbeat at all {self.silent_s:.1f}s after its spawn (hung_start_grace_s={grace_s:g})")
        return f"{self.namespec} (pid {self.pid}, {self.statename}) is hung: {since}; killed for supervisord to restart it"


class HungWatch:
    def __init__(self, programs: Iterable[str], after_s: float, start_grace_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.after_s = after_s
        self.start_grace_s = max(start_grace_s, after_s)
        self._programs = frozenset(programs)
        self._clock = clock
        self._beats: dict[str, tuple[int, float]] = {}  # program -> (pid, when its heartbeat was last heard)
        self._first_seen: dict[tuple[str, int], float] = {}  # (program, pid) -> when supervisord first showed it
        self._killed: set[int] = set()

    def heard(self, program: str, pid: int) -> None:
        if program in self._programs:
            self._beats[program] = (pid, self._clock())

    def judge(self, infos: Iterable[Mapping[str, Any]]) -> list[Hung]:
        """The hung programs among supervisord's ``getAllProcessInfo()``; each pid at most once
        (once reported it is taken as killed)."""
        now = self._clock()
        hung = []
        running: set[tuple[str, int]] = set()
        for info in infos:
            program, pid = str(info.get("name", "")), int(info.get("pid") or 0)
            if program not in self._programs or info.get("statename") not in ALIVE_STATES or pid <= 0:
                continue
            key = (program, pid)
            running.add(key)
            first = self._first_seen.setdefault(key, now)
            if pid in self._killed:
                continue
            beat = self._beats.get(program)
            heard = beat is not None and beat[0] == pid
            silent = now - (beat[1] if heard and beat is not None else first)
            if silent >= (self.after_s if heard else self.start_grace_s):
                self._killed.add(pid)
                hung.append(Hung(program, str(info.get("group", program)), pid, str(info["statename"]),
                                 silent, heard))
        # forget processes that are gone, so the maps stay as small as the program list
        self._first_seen = {key: t for key, t in self._first_seen.items() if key in running}
        self._killed &= {pid for _, pid in running}
        return hung

    def kill_failed(self, pid: int) -> None:
        """The kill of a reported pid did not go through: judge it again at the next look."""
        self._killed.discard(pid)
