"""The representative fast subset of the fault matrix (``make test``): the session LIVE with
positions and resting orders, and

  * ``kill -9`` of each process once (the five services and the venue simulator);
  * ``supervisorctl restart`` of the exchange manager (its book of record and reconciliation) and of
    the venue (back quicker than the connector notices a silence);
  * two processes killed at once (the exchange manager and the venue: both sides of the book).

Each cell checks every invariant (see ``harness.py``); the expected state per cell is the LIVE
column of the table in ``test_3_matrix.py``. The restart loop ending FATAL is in
``test_2_restart_loop.py``.

Each cell also runs with the ccxt adapter (``ADAPTERS``; ``venue_views.py``), as a slow test
(``make test-faults``), but for the ids in ``CCXT_FAST``, which run in ``make test`` too: the
exchange manager killed in LIVE, through ccxt (a ccxt daemon's start and the cell: 23-28 s).
"""

from __future__ import annotations

import pytest

from .harness import MATRIX_PROGRAMS, Cell, FaultHarness, expected
from .venue_views import ADAPTERS  # noqa: F401  (conftest.py parametrises fault_harness by it)

CCXT_FAST = {"test_kill9_in_live_with_positions[ccxt-exchange_manager]"}


def _cell(program: str | tuple[str, ...], state: str, fault: str) -> Cell:
    allowed, transitions = expected(program, state, fault)
    return Cell(program, state, fault, allowed, transitions)


@pytest.mark.parametrize("program", MATRIX_PROGRAMS)
def test_kill9_in_live_with_positions(fault_harness: FaultHarness, program: str) -> None:
    fault_harness.run_cell(_cell(program, "live", "kill9"))


def test_supervisorctl_restart_exchange_manager_in_live(fault_harness: FaultHarness) -> None:
    fault_harness.run_cell(_cell("exchange_manager", "live", "restart"))


def test_kill9_exchange_manager_and_venue_at_once_in_live(fault_harness: FaultHarness) -> None:
    fault_harness.run_cell(_cell(("exchange_manager", "venue_sim"), "live", "kill9_pair"))


def test_supervisorctl_restart_venue_in_live(fault_harness: FaultHarness) -> None:
    """The venue comes back within a fraction of a second (a graceful stop, then a spawn): quicker
    than the connector's heartbeat timeout. The exchange manager must still see a new venue (a new
    epoch) and reconcile with it: the new venue holds none of our orders and positions."""
    fault_harness.run_cell(_cell("venue_sim", "live", "restart"))
