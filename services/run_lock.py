"""One holder per name in a run directory: a pid file locked with flock(2) for the holder's life.

``<run_dir>/<name>.lock`` is opened, locked with ``flock(LOCK_EX | LOCK_NB)`` and kept open; the
holder writes its pid into it. Every service takes its own (``orchestrator.lock``, ``engine.lock``,
...) before it binds anything, the event listener takes ``supervisor.lock`` and ``deploy/launch.py``
takes ``supervisord.lock`` for the daemon. The kernel releases a flock with the last descriptor of
its holder, so a lock whose holder died (kill -9 included) is simply free again: a stale lock file is
taken over without a word, and no pid in a file can fool the check (a reused pid is never taken
for a live holder). The file is never removed: unlinking a lock file races with the next taker,
who could lock a file that no longer has a name.

The pid in the file only names the holder; the flock is what keeps a second instance out. So when
the pid cannot be written (a full disk, a file size limit) the lock is still taken and kept, with
one log line: the process runs (a service that cannot start cannot take a step toward safety
either), a second instance is still refused, and it is told "a process that has not written its pid
yet" (the file is emptied first, so it never names a dead holder's pid).
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIX = ".lock"


class LockHeld(Exception):
    """The lock is held by a live process: ``pid`` (0 when it has not written it yet)."""

    def __init__(self, name: str, path: Path, pid: int) -> None:
        self.name, self.path, self.pid = name, path, pid
        who = f"pid {pid}" if pid else "a process that has not written its pid yet"
        super().__init__(f"another {name} ({who}) already runs on run dir {path.parent} "
                         f"(it holds {path.name}); stop it first")


class RunLock:
    """A lock this process holds; ``release()`` (or this process's exit) frees it."""

    def __init__(self, name: str, path: Path, fd: int) -> None:
        self.name, self.path, self.fd = name, path, fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # the last descriptor: the kernel drops the flock
            self.fd = -1


def lock_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}{SUFFIX}"


def acquire(run_dir: Path, name: str) -> RunLock:
    """Take ``<run_dir>/<name>.lock`` and write this pid in it; ``LockHeld`` if a live process has it."""
    path = lock_path(run_dir, name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(fd)
        os.close(fd)
        raise LockHeld(name, path, pid) from None
    except BaseException:
        os.close(fd)
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:
        log.warning("%s: lock taken, but its pid could not be written (%s): a second %s is still refused",
                    path, exc, name)
    return RunLock(name, path, fd)


def holder(path: Path) -> int | None:
    """The pid holding the lock at ``path`` (0 if it has not written it yet), or None when nobody
    does (no file, or a stale one). Looks without taking it for longer than one system call."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def held_locks(run_dir: Path) -> dict[str, int]:
    """{name: holder pid} of every lock in ``run_dir`` that a live process holds."""
    out = {}
    for path in sorted(run_dir.glob(f"*{SUFFIX}")):
        pid = holder(path)
        if pid is not None:
            out[path.name[: -len(SUFFIX)]] = pid
    return out


def _read_pid(fd: int) -> int:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0)
    except (OSError, ValueError, UnicodeDecodeError):
        return 0
