"""services.run_lock and deploy/launch.py's look at a run directory: real locks held by real
processes, released by the kernel when the holder is killed."""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy import launch
from deploy.supervisord_conf import render
from services import run_lock
from services.runtime import ServiceRuntime
from services.settings import Settings

HOLD = """
import socket, sys, time
from pathlib import Path
from services import run_lock
run_dir = Path(sys.argv[1])
held = [run_lock.acquire(run_dir, name) for name in sys.argv[2].split(",") if name]
if len(sys.argv) > 3:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(run_dir / sys.argv[3]))
    sock.listen()
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def hold(ipc_dir: Path) -> Iterator:
    procs: list[subprocess.Popen[str]] = []

    def start(locks: str, socket_name: str | None = None) -> subprocess.Popen[str]:
        args = [sys.executable, "-c", HOLD, str(ipc_dir), locks] + ([socket_name] if socket_name else [])
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_acquire_writes_the_pid_and_release_frees_it(ipc_dir: Path) -> None:
    lock = run_lock.acquire(ipc_dir, "engine")
    assert (ipc_dir / "engine.lock").read_text() == f"{os.getpid()}\n"
    # flock is per open file: even this process cannot take it twice
    with pytest.raises(run_lock.LockHeld) as held:
        run_lock.acquire(ipc_dir, "engine")
    assert held.value.pid == os.getpid() and "another engine" in str(held.value)
    assert run_lock.holder(ipc_dir / "engine.lock") == os.getpid()
    lock.release()
    lock.release()  # twice is harmless
    assert run_lock.holder(ipc_dir / "engine.lock") is None
    run_lock.acquire(ipc_dir, "engine").release()


def test_a_pid_that_cannot_be_written_keeps_the_lock_and_says_so(ipc_dir: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A full disk (every file write refused: ``RLIMIT_FSIZE`` 0, as in test_journal_failures):
    the lock is still taken and a second instance still refused, with one log line; the file is
    emptied, so it never names the dead holder whose pid it held."""
    (ipc_dir / "engine.lock").write_text("99999\n")  # left by a holder that died
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    caplog.set_level(logging.WARNING, logger="services.run_lock")
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, limits[1]))
        lock = run_lock.acquire(ipc_dir, "engine")
        with pytest.raises(run_lock.LockHeld) as held:
            run_lock.acquire(ipc_dir, "engine")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert held.value.pid == 0 and "a process that has not written its pid yet" in str(held.value)
    assert run_lock.holder(ipc_dir / "engine.lock") == 0 and (ipc_dir / "engine.lock").read_text() == ""
    lines = [r.getMessage() for r in caplog.records if r.name == "services.run_lock"]
    assert len(lines) == 1 and lines[0].startswith(f"{ipc_dir / 'engine.lock'}: lock taken, but its pid could not "
                                                   f"be written ([Errno 27] File too large)"), lines
    lock.release()
    assert run_lock.holder(ipc_dir / "engine.lock") is None


def test_a_live_holder_is_named_and_a_killed_one_is_taken_over(ipc_dir: Path, hold) -> None:
    proc = hold("engine,safety")
    with pytest.raises(run_lock.LockHeld) as held:
        run_lock.acquire(ipc_dir, "engine")
    assert held.value.pid == proc.pid
    assert f"pid {proc.pid}" in str(held.value) and str(ipc_dir) in str(held.value)
    assert run_lock.held_locks(ipc_dir) == {"engine": proc.pid, "safety": proc.pid}
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the file (with the dead pid) is still there; the lock is not
    assert (ipc_dir / "engine.lock").read_text().strip() == str(proc.pid)
    assert run_lock.held_locks(ipc_dir) == {}
    lock = run_lock.acquire(ipc_dir, "engine")
    assert (ipc_dir / "engine.lock").read_text() == f"{os.getpid()}\n"
    lock.release()


def test_a_second_runtime_of_a_service_exits_with_one_line_naming_the_first(ipc_dir: Path) -> None:
    base = ipc_dir
    settings = Settings(paths={"run_dir": base / "run", "log_dir": base / "logs", "state_dir": base / "state"})
    first = ServiceRuntime("data_router", settings, stats=lambda: {})
    try:
        with pytest.raises(SystemExit) as exit_:
            ServiceRuntime("data_router", settings, stats=lambda: {})
        message = str(exit_.value.code)
        assert message.startswith("data_router: another data_router (pid ") and "\n" not in message
        assert f"pid {os.getpid()}" in message
    finally:
        first.close()
    ServiceRuntime("data_router", settings, stats=lambda: {}).close()  # released by close()


# -- deploy/launch.py ----------------------------------------------------------------------------


def test_the_run_dir_is_where_the_config_puts_supervisords_pidfile(tmp_path: Path) -> None:
    conf = tmp_path / "supervisord.conf"
    conf.write_text(render(root=str(tmp_path), python=sys.executable, run_dir=str(tmp_path / "run"),
                           log_dir=str(tmp_path / "logs")))
    assert launch.run_dir_of(conf) == (tmp_path / "run").resolve()
    repo_conf = Path(__file__).resolve().parents[2] / "deploy" / "supervisord.conf"
    assert launch.run_dir_of(repo_conf) == repo_conf.parent.parent / "run"  # %(here)s/../run
    assert launch.config_path(["-n", "-c", "a.conf"]) == Path("a.conf")
    assert launch.config_path(["--configuration=b.conf"]) == Path("b.conf")
    assert launch.config_path(["-n"]) is None


def test_leftovers_are_lock_holders_and_squatters_not_stale_files(ipc_dir: Path, hold) -> None:
    orphan = hold("engine,exchange_manager", "engine.cmd")  # a service of an earlier daemon
    squatter = hold("", "safety.pub")  # something else serving a service's endpoint
    dead = hold("orchestrator", "orchestrator.cmd")
    dead.kill()
    dead.wait()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(ipc_dir / "data_router.cmd"))
    stale.close()  # the file stays, nobody serves it
    found = launch.leftovers(ipc_dir)
    assert ("engine", orphan.pid) in found and ("exchange_manager", orphan.pid) in found
    assert any(what.endswith("serving safety.pub") and pid == squatter.pid for what, pid in found), found
    assert len(found) == 3, found  # the orphan's socket is named once, by its lock; nothing stale
    line = launch.refusal(ipc_dir, found)
    assert "\n" not in line and f"`kill {orphan.pid} {orphan.pid} {squatter.pid}`" in line


def test_launch_refuses_in_one_line_while_a_daemon_or_its_orphans_hold_the_run_dir(tmp_path: Path, hold,
                                                                                  ipc_dir: Path,
                                                                                  capsys: pytest.CaptureFixture[str]
                                                                                  ) -> None:
    conf = tmp_path / "supervisord.conf"
    conf.write_text(render(root=str(tmp_path), python=sys.executable, run_dir=str(ipc_dir),
                           log_dir=str(tmp_path / "logs")))
    daemon = hold("supervisord")
    assert launch.main(["-n", "-c", str(conf)]) == launch.EXIT_REFUSED
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"a daemon already runs on {ipc_dir} (supervisord pid {daemon.pid})" in err[0]
    daemon.kill()
    daemon.wait()
    orphan = hold("engine")
    assert launch.main(["-n", "-c", str(conf)]) == launch.EXIT_REFUSED
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"engine pid {orphan.pid}" in err[0], err
    assert run_lock.holder(ipc_dir / "supervisord.lock") is None  # the refused launch let go of it
