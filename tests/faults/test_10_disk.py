"""The host's disk fails under a LIVE session (issue 11, item 1; invariant 8).

Reproduced before the fix, with the state directory on a full file system: ``tradectl failsafe``
answered "internal error ... database or disk is full" and the state stayed LIVE; a critical
safety event ended in "event loop callback failed" and the engine kept trading; the exchange
manager put orders in its book before journalling them, so each failed write left a phantom ``new``
order that was never sent (~120 after 25 s).

Here the state directory is a small real tmpfs, filled (or remounted read-only) while the session
trades. The rule: a step toward safety is never blocked by the disk, a step toward risk needs it.
  * full disk, LIVE: opening orders are refused with a clear reason, no phantom is left, the
    exchange manager's critical STATE_DISK event takes the session to FAILSAFE (its journal write
    held in memory), the flatten goes out and the venue ends flat; once space is back the held
    writes land and a kill -9 of the orchestrator resumes FAILSAFE from the journal;
  * free space under ``min_free_disk_mb``: DEGRADED with an alert before the disk is full, and
    ``recover`` refused until there is room again;
  * a read-only state directory: the same as full.

Needs root and mount rights (tmpfs); skipped with the reason otherwise.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from bus import CommandTimeout, keys
from integration.daemon import Daemon, wait_until
from proto.commands.base import IDENTITIES
from integration.e2e import (
    ask,
    em_open_orders,
    merged,
    open_daemon,
    orchestrator_status,
    venue_open_orders,
    wait_trading_with_positions,
    wait_venue_flat,
)

from .harness import FAULT_CONFIG, FIGURES

TMPFS_MB = 24


def _mount_tmpfs(path: Path, size_mb: int) -> str | None:
    """Mount a tmpfs on ``path``; the reason it cannot be done, or None."""
    if os.geteuid() != 0:
        return "needs root to mount a small tmpfs as a full disk"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True)
    return None if done.returncode == 0 else f"cannot mount a tmpfs here: {done.stderr.strip()}"


def fill(path: Path, leave_bytes: int = 0) -> Path:
    """Write a ballast file until the file system has ``leave_bytes`` free (0: until ENOSPC)."""
    ballast = path / f"ballast-{time.monotonic_ns()}"
    chunk = b"\0" * (64 << 10)
    with open(ballast, "wb", buffering=0) as out:
        while True:
            st = os.statvfs(path)
            room = st.f_bavail * st.f_frsize - leave_bytes
            if leave_bytes and room <= 0:
                break
            try:
                out.write(chunk if not leave_bytes else chunk[:max(1, min(len(chunk), room))])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return ballast


@pytest.fixture
def disk_daemon() -> Iterator[Any]:
    """``start(config)`` → a daemon whose state directory is a fresh small tmpfs (``start=False``:
    not started yet)."""
    made: list[Daemon] = []

    def start(config: dict[str, Any], *, start: bool = True) -> Daemon:
        d = open_daemon(merged(FAULT_CONFIG, config), start=False)
        made.append(d)
        reason = _mount_tmpfs(d.state_dir, TMPFS_MB)
        if reason:
            pytest.skip(reason)
        if start:
            d.start()
        return d

    try:
        yield start
    finally:
        with ExitStack() as teardowns:  # every daemon's, even when one of them raises
            for d in made:
                teardowns.callback(_tear_down, d)


def _tear_down(d: Daemon) -> None:
    """Stop the daemon, then unmount its tmpfs and remove its files whatever stopping did; a tmpfs
    left mounted (umount failed) fails the test."""
    mounted = os.path.ismount(d.state_dir)
    try:
        d.close(keep=True)
    finally:
        try:
            if mounted:
                done = subprocess.run(["umount", "-l", str(d.state_dir)], capture_output=True, text=True, check=False)
                assert done.returncode == 0, f"umount {d.state_dir} failed: {done.stderr.strip()}"
        finally:
            shutil.rmtree(d.root, ignore_errors=True)
    assert not d.leftover_processes(), "processes left behind"


def _status(d: Daemon) -> dict[str, Any]:
    return orchestrator_status(d)


def _no_phantom(d: Daemon) -> None:
    """Every order the book holds open is one the venue holds open: none was left behind unsent."""
    venue = {o["client_order_id"] for o in venue_open_orders(d)}
    phantoms = [o["client_order_id"] for o in em_open_orders(d) if o["client_order_id"] not in venue]
    assert not phantoms, f"orders in the book that never reached the venue: {phantoms}"


def test_the_book_of_record_on_a_full_disk_refuses_opening_orders_and_still_flattens(disk_daemon, tmp_path) -> None:
    """Only the exchange manager's journal is on the full disk (the orchestrator's is elsewhere).
    An order leaves before its write (docs/architecture.md, "The order path"): the opening order
    whose write fails first is cancelled at once and its record held; from then on opening orders
    are refused with the reason before they leave, no phantom is left, and the critical STATE_DISK
    event takes the session to FAILSAFE, whose flatten goes out unjournalled (held)."""
    d: Daemon = disk_daemon({"orchestrator": {"min_free_disk_mb": 0,
                                              "journal_file": str(tmp_path / "orchestrator.sqlite")}})
    wait_trading_with_positions(d)
    fill(d.state_dir)
    full_at = time.monotonic()
    # the journal's refusal, or the gate's once the FAILSAFE that followed has closed it
    refusals = ("book of record cannot be written", "trading is not enabled", "would not reduce the position")
    first = d.call("exchange_manager", "submit_order", timeout_s=2.0, retries=2, symbol="SOL-USD", side="buy",
                   qty=0.1, strategy="itest")
    if first.ok:  # the first write to fail was its own (no strategy order found the full disk first)
        cid = first.result["client_order_id"]
        order = wait_until(lambda: next((o for o in ask(d, "exchange_manager", "orders")["orders"]
                                         if o["client_order_id"] == cid and o["status"] in ("cancelled", "filled")),
                                        None), 5, ignore=(CommandTimeout,))
        assert order["cancel_requested"] or order["status"] == "filled", order  # a market order fills at once
    else:
        assert any(r in first.error for r in refusals), first
    reply = d.call("exchange_manager", "submit_order", timeout_s=2.0, retries=2, symbol="SOL-USD", side="buy",
                   qty=0.1, strategy="itest")
    assert not reply.ok and any(r in reply.error for r in refusals), reply
    d.wait_state("failsafe", timeout=15)
    FIGURES.reactions.append(("book of record's disk full", "FAILSAFE", time.monotonic() - full_at))
    wait_until(lambda: _status(d)["failsafe_pending"] is None, 30, ignore=(CommandTimeout,),
               message=lambda: d.diagnostics())
    wait_venue_flat(d)
    FIGURES.reactions.append(("book of record's disk full", "venue flat", time.monotonic() - full_at))
    _no_phantom(d)
    # the exchange manager's heartbeat (every 0.1 s) catches up with the flat sequence (~20 ms)
    em = wait_until(lambda: (j := _status(d)["components"]["exchange_manager"]["stats"]["journal"])["failures"] and j,
                    5, ignore=(CommandTimeout,))
    assert "full" in (em["error"] or "") or em["held_writes"] == 0, em
    status = _status(d)
    assert status["journal"]["ok"] is True, status["journal"]  # the orchestrator's own is fine
    safety = Path(status["session_logs"]["safety_events"]).read_text(encoding="utf-8")
    assert "state_disk" in safety and "book of record cannot be written" in safety, safety[-3000:]
    refused = d.call("orchestrator", "reset", timeout_s=2.0, reason="disk full")
    assert not refused.ok and "book of record cannot be written" in refused.error, refused
    # room again: the book's probe write lands, the episode ends, and the session may reset
    for ballast in d.state_dir.glob("ballast-*"):
        ballast.unlink()
    wait_until(lambda: _status(d)["components"]["exchange_manager"]["stats"]["journal"]["ok"], 10,
               ignore=(CommandTimeout,))
    wait_until(lambda: d.call("orchestrator", "reset", timeout_s=2.0, reason="disk free").ok, 10,
               ignore=(CommandTimeout,))


def test_the_session_journal_on_a_full_disk_never_blocks_the_failsafe(disk_daemon, tmp_path) -> None:
    """Only the orchestrator's journal is on the full disk: ``tradectl failsafe`` is accepted and
    the session goes to FAILSAFE and flat (before the fix: "internal error ... database or disk is
    full", state LIVE); the transitions are held, land once there is room, and a kill -9 of the
    orchestrator then resumes FAILSAFE from the journal."""
    d: Daemon = disk_daemon({"orchestrator": {"min_free_disk_mb": 0},
                             "exchange_manager": {"journal_file": str(tmp_path / "exchange_manager.sqlite")}})
    wait_trading_with_positions(d)
    ballast = fill(d.state_dir)
    asked_at = time.monotonic()
    res = d.tradectl("failsafe", "--reason", "operator: disk full")
    assert res.returncode == 0, res.stderr
    assert d.state() == "failsafe"
    wait_until(lambda: _status(d)["failsafe_pending"] is None, 30, ignore=(CommandTimeout,),
               message=lambda: d.diagnostics())
    wait_venue_flat(d)
    FIGURES.reactions.append(("session journal's disk full, tradectl failsafe", "venue flat",
                              time.monotonic() - asked_at))
    status = _status(d)
    assert status["journal"]["ok"] is False and status["journal"]["held_writes"] >= 2, status["journal"]
    safety = Path(status["session_logs"]["safety_events"]).read_text(encoding="utf-8")
    assert "the session journal cannot be written" in safety, safety[-3000:]
    # a step toward safety is accepted on a full disk; one toward risk is not
    assert d.call("orchestrator", "failsafe", timeout_s=2.0, reason="again, disk full").ok
    refused = d.call("orchestrator", "reset", timeout_s=2.0, reason="disk full")
    assert not refused.ok, refused
    # room again: the held writes land, and the journal has the FAILSAFE a restart resumes
    ballast.unlink()
    wait_until(lambda: _status(d)["journal"]["ok"], 10, ignore=(CommandTimeout,))
    old = d.pid_of("orchestrator")
    os.kill(old, signal.SIGKILL)
    d.wait_respawned("orchestrator", old)
    wait_until(lambda: d.state() == "failsafe", 20, ignore=(CommandTimeout,))


def test_low_disk_space_degrades_before_the_disk_is_full(disk_daemon) -> None:
    d: Daemon = disk_daemon({"orchestrator": {"min_free_disk_mb": 8, "disk_check_interval_s": 0.2}})
    d.wait_state("live", timeout=30)
    ballast = fill(d.state_dir, leave_bytes=4 << 20)
    low_at = time.monotonic()
    d.wait_state("degraded", timeout=10)
    FIGURES.reactions.append(("free space under min_free_disk_mb", "DEGRADED", time.monotonic() - low_at))
    reply = d.call("orchestrator", "recover", timeout_s=2.0)
    assert not reply.ok and "MiB free" in reply.error, reply
    status = _status(d)
    assert status["disk"] and "min_free_disk_mb" in status["disk"][0], status["disk"]
    ballast.unlink()
    wait_until(lambda: not _status(d)["disk"], 10, ignore=(CommandTimeout,))
    wait_until(lambda: d.call("orchestrator", "recover", timeout_s=2.0).ok, 10, ignore=(CommandTimeout,))
    assert d.state() == "live"


@pytest.mark.alone  # supervisord's clock judges it: a start starved past startsecs is RUNNING, not FATAL
def test_a_read_only_state_directory_refuses_to_start(disk_daemon) -> None:
    """A file system already open for writing cannot be made read-only under a running process
    (EBUSY), so the read-only case a host meets is at start: every program that keeps state says
    which directory and exits 78, supervisord marks it FATAL, and nothing trades."""
    d: Daemon = disk_daemon({}, start=False)
    # a host that ran before: its keys are there (without them, deploy/launch.py refuses the start in
    # one line, "cannot create the CURVE keys in ...: Read-only file system", before any program runs)
    keys.ensure(d.keys_dir, list(IDENTITIES))
    subprocess.run(["mount", "-o", "remount,ro", str(d.state_dir)], check=True)
    d.start(wait=False)
    for program in ("orchestrator", "exchange_manager"):
        d.wait_statename(program, "FATAL", timeout=60)
        log = d.program_log(program).read_text()
        assert "invalid settings" in log and str(d.state_dir) in log, log[-2000:]
