"""deploy.hung_watch: who is hung, from heartbeats and supervisord's process list (a clock of our own)."""

from __future__ import annotations

from deploy.hung_watch import HungWatch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def info(name: str, pid: int, state: str = "RUNNING", group: str = "trading") -> dict[str, object]:
    return {"name": name, "group": group, "pid": pid, "statename": state}


def test_silent_past_the_setting_is_hung_once() -> None:
    clock = Clock()
    watch = HungWatch(["engine", "safety"], after_s=5.0, start_grace_s=30.0, clock=clock)
    procs = [info("engine", 10), info("safety", 11)]
    watch.heard("engine", 10)
    watch.heard("safety", 11)
    clock.now += 4.9
    watch.heard("safety", 11)
    assert watch.judge(procs) == []
    clock.now += 0.2
    hung = watch.judge(procs)
    assert [(h.program, h.pid, h.heard, h.namespec) for h in hung] == [("engine", 10, True, "trading:engine")]
    assert 5.0 <= hung[0].silent_s < 5.2
    assert "no heartbeat for 5.1s" in hung[0].describe(5.0, 30.0)
    clock.now += 5.0
    assert [h.program for h in watch.judge(procs)] == ["safety"]  # engine's pid is not reported twice


def test_a_new_pid_gets_the_start_grace_and_old_heartbeats_do_not_count() -> None:
    clock = Clock()
    watch = HungWatch(["engine"], after_s=5.0, start_grace_s=30.0, clock=clock)
    watch.heard("engine", 10)  # the previous process
    assert watch.judge([info("engine", 20, "STARTING")]) == []
    clock.now += 29.0
    assert watch.judge([info("engine", 20)]) == []  # never heard: 30 s of grace from its first sight
    clock.now += 1.0
    hung = watch.judge([info("engine", 20)])
    assert [(h.pid, h.heard, h.statename) for h in hung] == [(20, False, "RUNNING")]
    assert "no heartbeat at all" in hung[0].describe(5.0, 30.0)


def test_only_watched_programs_alive_in_supervisord() -> None:
    clock = Clock()
    watch = HungWatch(["engine"], after_s=1.0, start_grace_s=1.0, clock=clock)
    procs = [info("event_listener", 5, group="event_listener"), info("engine", 0, "BACKOFF"),
             info("engine", 7, "STOPPED")]
    watch.judge(procs)
    clock.now += 100
    assert watch.judge(procs) == []


def test_forgets_processes_that_are_gone() -> None:
    clock = Clock()
    watch = HungWatch(["engine"], after_s=1.0, start_grace_s=1.0, clock=clock)
    for pid in range(100, 200):
        watch.judge([info("engine", pid)])
    assert len(watch._first_seen) == 1
    clock.now += 2
    assert [h.pid for h in watch.judge([info("engine", 199)])] == [199]
    watch.judge([info("engine", 200)])
    assert watch._killed == set() and len(watch._first_seen) == 1


def test_a_kill_that_did_not_go_through_is_judged_again() -> None:
    clock = Clock()
    watch = HungWatch(["engine"], after_s=1.0, start_grace_s=1.0, clock=clock)
    watch.heard("engine", 10)
    clock.now += 2
    assert [h.pid for h in watch.judge([info("engine", 10)])] == [10]
    watch.kill_failed(10)
    assert [h.pid for h in watch.judge([info("engine", 10)])] == [10]
