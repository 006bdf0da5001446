"""Two processes killed at once, and the whole daemon stopped and started again.

* Pairs (kill -9 together, session LIVE with positions and resting orders): the exchange manager and
  the engine (both trading processes), the engine and the data router (the decision path), the
  orchestrator and the exchange manager (the session and the book of record). The exchange manager
  with the venue is in the fast subset (``test_1_live_kills.py``). Expected: LIVE → DEGRADED (or
  LIVE, see the matrix's note 1); with the orchestrator in the pair, the restored orchestrator is
  LIVE and may find a peer missing on its first look: LIVE or DEGRADED.
* supervisord stopped (every program with it, gracefully) and started again, in LIVE and in
  FAILSAFE done: the orchestrator's state and session come back from its journal, the exchange
  manager's book of record from its journal (every order it knew before is still known), no client
  order id is reused, and positions agree with the venue after reconciliation. The venue simulator
  is one of supervisord's programs, so it starts afresh (flat, no orders): the exchange manager's
  reconciliation must take that as the truth.
"""

from __future__ import annotations

import pytest

from integration.daemon import wait_until

from .harness import FIGURES, OPEN_STATUSES, Cell, FaultHarness, _ask

PAIRS = [("exchange_manager", "engine"), ("engine", "data_router"), ("orchestrator", "exchange_manager")]


@pytest.mark.slow
@pytest.mark.parametrize("pair", PAIRS, ids=["+".join(p) for p in PAIRS])
def test_kill9_two_at_once_in_live(fault_harness: FaultHarness, pair: tuple[str, str]) -> None:
    fault_harness.run_cell(Cell(pair, "live", "kill9_pair", ("live", "degraded"), (("live", "degraded"),)))


@pytest.mark.slow
@pytest.mark.parametrize("state", ["live", "failsafe_done"])
def test_supervisord_stopped_and_started_again(fault_harness: FaultHarness, state: str) -> None:
    h = fault_harness
    allowed = ("live", "degraded") if state == "live" else ("failsafe",)
    transitions = (("live", "degraded"),) if state == "live" else ()
    cell = Cell("supervisord", state, "supervisord_restart", allowed, transitions)
    FIGURES.cases += 1
    ctx = h.prepare(state)
    ctx.cell = cell
    session_before = _ask(h.d, "orchestrator", "stats")
    # the open orders and the latest 50 (``orders`` lists at most 500, open first, then the latest
    # closed: older closed ones may fall off that list as new orders come, without being forgotten)
    listing = h.em_orders()
    book_before = {o["client_order_id"] for o in listing if o["status"] in OPEN_STATUSES}
    book_before |= {o["client_order_id"] for o in sorted(listing, key=lambda o: -o["updated_ns"])[:50]}
    h.restart_supervisord(ctx)
    session_after = _ask(h.d, "orchestrator", "stats")
    # the same session, restored from the journal (not a new one)
    assert session_after["session_id"] == session_before["session_id"], (session_before, session_after)
    assert session_after["orchestrator_restarts"] == session_before["orchestrator_restarts"] + 1
    assert session_after["failsafe_activations"] == session_before["failsafe_activations"]
    FIGURES.invariants += 3
    # the book of record: every order known before is known after (restored, then reconciled)
    wait_until(lambda: book_before <= {o["client_order_id"] for o in h.em_orders()}, 10, interval=0.1,
               message=lambda: f"forgotten: {sorted(book_before - {o['client_order_id'] for o in h.em_orders()})[:5]}")
    FIGURES.invariants += 1
    h.check_all(ctx)
