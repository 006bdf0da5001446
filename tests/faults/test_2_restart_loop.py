"""A restart loop: one process killed again and again within supervisord's ``startsecs`` until
supervisord gives up and marks it FATAL. The orchestrator must then treat it as missing for good
and escalate: supervisord's event listener (``deploy/event_listener.py``) reports the FATAL on the
bus, and the session goes LIVE → DEGRADED → FAILSAFE within 10 s, with a reason naming FATAL.

The engine's loop is in the fast subset; the other services, the venue simulator and the
orchestrator itself are slow cases. The orchestrator cannot escalate its own death: there the
trading processes' dead-man switches must stop every opening order by themselves.
"""

from __future__ import annotations

import os
import signal
import time
import xmlrpc.client

import pytest

from bus import CommandTimeout
from integration.daemon import wait_until

from .harness import FIGURES, PEERS, FaultHarness, _ask

FATAL_TO_FAILSAFE_S = 10.0


def _loop_until_fatal(h: FaultHarness, program: str, timeout: float = 90.0) -> tuple[float, int]:
    """kill -9 the program each time supervisord spawns it (it never lives to ``startsecs``);
    return ``time.monotonic()`` when supervisord reported it FATAL, and how many kills it took."""
    d = h.d
    h.settle([program])
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            info = d.process_info(program)
        except (OSError, xmlrpc.client.Fault):
            time.sleep(0.02)
            continue
        if info["statename"] == "FATAL":
            return time.monotonic(), len(killed)
        pid = int(info["pid"])
        if info["statename"] in ("STARTING", "RUNNING") and pid > 0 and pid not in killed:
            try:
                os.kill(pid, signal.SIGKILL)
                FIGURES.faults += 1
            except ProcessLookupError:
                pass
            killed.add(pid)
        time.sleep(0.02)
    raise AssertionError(f"{program} never went FATAL: {d.process_info(program)}")


def _failsafe_reason_since(h: FaultHarness, before: int) -> str | None:
    rows = h.journal()[before:]
    into = [r for r in rows if r[3] == "failsafe"]
    return into[-1][4] if into else None


def _restart_loop_escalates(h: FaultHarness, program: str) -> None:
    FIGURES.cases += 1
    ctx = h.prepare("live")
    ctx.cell.program, ctx.cell.fault = program, "restart loop"
    ctx.cell.allowed = ("failsafe",)
    try:
        fatal_at, kills = _loop_until_fatal(h, program)
        ctx.failsafe_at_ns = time.time_ns()  # at the latest: nothing may open from here on
        try:
            wait_until(lambda: h.state() == "failsafe", FATAL_TO_FAILSAFE_S, interval=0.05, ignore=(CommandTimeout,))
        except AssertionError:
            rows = h.journal()[ctx.transitions_before:]
            FIGURES.failures.append(f"restart loop {program}: no FAILSAFE within {FATAL_TO_FAILSAFE_S:g}s of FATAL "
                                    f"(state {h.state()}, transitions {[(r[2], r[3], r[4]) for r in rows]})")
            raise AssertionError(
                f"{program} FATAL under supervisord, but the session is {h.state()} "
                f"{FATAL_TO_FAILSAFE_S:g}s later; transitions since: {[(r[2], r[3], r[4]) for r in rows]}")
        took = time.monotonic() - fatal_at
        reason = _failsafe_reason_since(h, ctx.transitions_before)
        FIGURES.invariants += 1
        assert reason is not None and "FATAL" in reason, f"FAILSAFE reason {reason!r} does not name FATAL"
        into = [(r[2], r[3]) for r in h.journal()[ctx.transitions_before:]]
        assert into[-2:] == [("live", "degraded"), ("degraded", "failsafe")], into
        FIGURES.invariants += 1
        print(f"{program}: FATAL -> FAILSAFE in {took:.2f}s ({reason})")
        # the sequence runs without the dead process; no opening trade meanwhile (a dead venue
        # trades nothing and cannot be asked: its successor is checked after the restart below)
        if program != "venue_sim":
            h.check_no_trade_in_failsafe(ctx)
            FIGURES.invariants += 1
    finally:
        d = h.d
        d.supervisorctl("start", d.qualified(program), timeout=60)
        h.heal()
    # back: a whole daemon again, positions and ids as before
    for check in (h.check_no_duplicates, h.check_positions, h.check_streams):
        check(ctx)
        FIGURES.invariants += 1
    FIGURES.faults_survived += kills


def test_restart_loop_of_the_engine_ends_fatal_and_the_session_fails_safe(fault_harness: FaultHarness) -> None:
    _restart_loop_escalates(fault_harness, "engine")


@pytest.mark.slow
@pytest.mark.parametrize("program", [p for p in PEERS if p != "engine"] + ["venue_sim"])
def test_restart_loop_ends_fatal_and_the_session_fails_safe(fault_harness: FaultHarness, program: str) -> None:
    _restart_loop_escalates(fault_harness, program)


@pytest.mark.slow
def test_restart_loop_of_the_orchestrator_trading_stops_by_dead_man(fault_harness: FaultHarness) -> None:
    """No orchestrator to escalate: the engine and the exchange manager's gate each stop opening
    positions once the dead-man timeout passes without a word from it; nothing opens at the venue."""
    h = fault_harness
    FIGURES.cases += 1
    ctx = h.prepare("live")
    try:
        _, kills = _loop_until_fatal(h, "orchestrator")
        stopped_at = time.time_ns()
        for peer in ("engine", "exchange_manager"):
            wait_until(lambda: not _ask(h.d, peer, "status")["stats"]["trading_allowed"], 5, interval=0.05)
            FIGURES.invariants += 1
        # a deliberate opening order at the gate is refused
        reply = h.d.call("exchange_manager", "submit_order", timeout_s=2, retries=1, symbol="SOL-USD", side="buy",
                         qty=0.1, strategy="faults")
        assert not reply.ok, f"the gate accepted an opening order with the orchestrator FATAL: {reply}"
        FIGURES.invariants += 1
        time.sleep(1.0)
        ctx.failsafe_at_ns = stopped_at + 2_000_000_000  # dead-man timeout (1 s) plus in-flight orders
        _, orders, _ = h.collector.streams()
        opened = {cid: o for cid, o in orders.items() if o[0] >= ctx.failsafe_at_ns and o[1] != "flatten"}
        assert not opened, f"orders accepted with the orchestrator FATAL: {opened}"
        FIGURES.invariants += 1
    finally:
        h.d.supervisorctl("start", h.d.qualified("orchestrator"), timeout=60)
        h.heal()
    # the restarted orchestrator restores the session (LIVE, DEGRADED for the missing peers' view)
    assert h.state() in ("live", "degraded"), h.state()
    FIGURES.invariants += 1
    FIGURES.faults_survived += kills
