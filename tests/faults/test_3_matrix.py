"""The fault-injection matrix: every process × every session state × {kill -9, supervisorctl
restart}, each cell checking every invariant (``harness.FaultHarness.check_all``: state, failsafe
finished flat, no trade in FAILSAFE, no duplicate client order id, positions equal after
reconciliation, no stream message lost without a counted gap).

The cells share one daemon (package scope); each starts by bringing the session into its state
(``FaultHarness.prepare``): READY by failsafe + reset; LIVE with a position of ours (0.5 SOL-USD) and
two limit orders resting far from the touch; DEGRADED by stopping the safety process (SIGSTOP) until
the orchestrator finds it missing; FAILSAFE mid-sequence by slowing the venue (1.5 s on every order
and cancel) and triggering the failsafe 0.2 s before the fault; FAILSAFE done after the sequence has
finished flat.

Expected state after the fault (the orchestrator's state, and the transitions it may journal):

| killed / restarted  | READY | LIVE (positions, resting orders)           | DEGRADED | FAILSAFE mid-sequence | FAILSAFE done |
|---------------------|-------|--------------------------------------------|----------|-----------------------|---------------|
| orchestrator        | READY | LIVE (restored from its journal)            | DEGRADED | FAILSAFE; the restarted orchestrator finishes the journalled sequence, flat | FAILSAFE |
| exchange_manager    | READY | DEGRADED (missing) or LIVE (1)              | DEGRADED | FAILSAFE, sequence ends flat (2) | FAILSAFE |
| engine              | READY | DEGRADED (missing) or LIVE (1)              | DEGRADED | FAILSAFE, flat        | FAILSAFE      |
| data_router         | READY | DEGRADED (missing) or LIVE (1)              | DEGRADED | FAILSAFE, flat        | FAILSAFE      |
| safety              | READY | DEGRADED (missing) or LIVE (1)              | DEGRADED | FAILSAFE, flat        | FAILSAFE      |
| venue_sim           | READY | DEGRADED (connector down, the venue forgot our position: reconciliation mismatch) or LIVE (1) | DEGRADED | FAILSAFE (the new venue is flat) | FAILSAFE |

(1) only LIVE → DEGRADED may be journalled; LIVE is allowed when the process was back before the
orchestrator's missing threshold (``missed_heartbeats`` × ``heartbeat_interval_s`` = 0.4 s here),
which a graceful ``supervisorctl restart`` sometimes is. No cell may reach FAILSAFE by itself
(``failsafe_degradation_count`` is set out of reach so dozens of cells can share one daemon); a
process that stays down is ``test_2_restart_loop.py``'s subject.
(2) a process down in the middle of the sequence makes a step time out; the sequence retries
(``attempts``) and must still end flat at the venue.

A READY session never goes LIVE by itself after a restart (``auto_open`` applies at start-up only),
and nothing trades in FAILSAFE: only the sequence's own flatten orders are accepted once it began.

The fast subset (``test_1_live_kills.py``) holds the LIVE × kill -9 column and the exchange
manager's restart in LIVE; every other cell here is slow.

Every cell runs with each adapter of ``ADAPTERS`` (``conftest.py``): ``native`` and ``ccxt``, the
exchange manager reaching the venue through ccxt's Binance class (``deploy/ccxt-sim.toml``), the
venue read through its Binance face from outside (``venue_views.py``). The table holds for both. A
restarted simulator forgets the Binance account as it forgets the native one: its balances start
again from ``venue_sim.exchange_api.balances``, so its positions (balances beyond the connector's
``inventory``) are back to zero, and the exchange manager takes that as the truth. The ccxt cells
are slow.
"""

from __future__ import annotations

import pytest

from .harness import MATRIX_PROGRAMS, STATES, Cell, FaultHarness, expected
from .venue_views import ADAPTERS  # noqa: F401  (conftest.py parametrises fault_harness by it)

FAST = {("live", "kill9"), ("live", "restart", "exchange_manager"), ("live", "restart", "venue_sim")}


def _cells() -> list[pytest.param]:
    out = []
    for state in STATES:
        for program in MATRIX_PROGRAMS:
            for fault in ("kill9", "restart"):
                if (state, fault) in FAST or (state, fault, program) in FAST:
                    continue
                out.append(pytest.param(program, state, fault, id=f"{fault}-{program}-{state}"))
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("program", "state", "fault"), _cells())
def test_matrix_cell(fault_harness: FaultHarness, program: str, state: str, fault: str) -> None:
    allowed, transitions = expected(program, state, fault)
    fault_harness.run_cell(Cell(program, state, fault, allowed, transitions))
