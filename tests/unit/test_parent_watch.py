"""services.parent_watch: a program whose supervisord dies finds out from its parent pid.

The real case: a stand-in supervisord (a process that starts a child with SUPERVISOR_ENABLED=1)
killed with SIGKILL; the child, re-parented, reports it."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

from services.parent_watch import ParentWatch, supervised

CHILD = """
import time
from services.parent_watch import ParentWatch
import os
watch = ParentWatch(os.environ)
watch.on_lost(lambda reason: print("lost", reason, flush=True))
print("watching", watch.parent, flush=True)
while not watch.check():
    time.sleep(0.02)
time.sleep(0.2)
"""

PARENT = """
import os, subprocess, sys, time
env = dict(os.environ, SUPERVISOR_ENABLED="1", SUPERVISOR_PROCESS_NAME="engine")
subprocess.Popen([sys.executable, "-c", sys.argv[1]], env=env)
time.sleep(60)
"""


def _line(stream, timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"nothing within {timeout}s"
    return stream.readline().strip()


def test_a_child_notices_its_supervisor_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    try:
        first = _line(parent.stdout, 10)
        assert first == f"watching {parent.pid}", first
        killed_at = time.monotonic()
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        lost = _line(parent.stdout, 5)
        took = time.monotonic() - killed_at
    finally:
        if parent.poll() is None:
            parent.kill()
    assert lost.startswith(f"lost supervisord (pid {parent.pid}, this process's parent) is gone"), lost
    assert took < 2.0, took


def test_off_without_supervisord() -> None:
    watch = ParentWatch({}, getppid=lambda: 1 / 0)  # never even asked
    assert not watch.enabled and watch.parent is None and not supervised({})
    assert watch.check() is False and watch.lost is None
    assert not supervised({"SUPERVISOR_ENABLED": "0"}) and supervised({"SUPERVISOR_ENABLED": "1"})


def test_every_reaction_runs_once_and_a_late_one_at_once() -> None:
    parent = [os.getppid()]
    watch = ParentWatch({"SUPERVISOR_ENABLED": "1", "SUPERVISOR_GROUP_NAME": "trading"}, getppid=lambda: parent[0])
    seen: list[str] = []

    def broken(_reason: str) -> None:
        raise RuntimeError("a failing reaction")

    watch.on_lost(broken)
    watch.on_lost(lambda reason: seen.append("first"))
    assert watch.check() is False and watch.group == "trading"
    parent[0] = 1
    assert watch.check() is True and watch.check() is True
    assert seen == ["first"]  # once, and after a failing one
    watch.on_lost(lambda reason: seen.append("late"))
    assert seen == ["first", "late"]
