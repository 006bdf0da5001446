"""The FAILSAFE sequence, in the order the invariants require:

  1. stop new orders: disable trading in the engine AND close the exchange manager's gate;
  2. cancel every open order;  3. flatten every position with market orders;
  4. verify flat against the venue (no open order, no position), retrying 2-4 if not;
  5. report (the orchestrator then alerts and writes the incident report).

Every step is a command with a timeout and retries; a step that fails is recorded and the
sequence goes on (stopping orders comes first and needs no other step to succeed). A sequence
whose attempts all end not flat is not over: ``retry`` runs further rounds (stop new orders
again, for a process restarted meanwhile; cancel; flatten; verify) until the venue confirms flat
(``failsafe_control.py`` paces them). The steps are sequences (``sequence_runner.py``): each
command and each wait is a ``yield``, so the orchestrator's loop runs them without blocking.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

from proto.session import OPEN_ORDER_STATUSES
from services.backoff import Backoff
from services.orchestrator.incident import IncidentReport, Step
from services.orchestrator.sequence_runner import Answer, Pause, Peer, Sequence, ask
from services.orchestrator.settings import FailsafeSettings

# Asking the venue again inside one verify step (it is slow, or holds something): soon at first,
# then less and less often: never a spin.
VERIFY_AGAIN_S = (0.005, 0.25)
# Least time given to one ``reconcile`` (its reply comes when the run has ended), even near the
# verify's deadline: a run takes a few milliseconds when the venue answers.
RECONCILE_MIN_WAIT_S = 0.2
# A command waited on for long (``reconcile``: over REST a run takes seconds) is sent again this
# often, under its id: a live peer answers it once (the retry waits for the same reply), and a peer
# restarted meanwhile (the request was lost with the process killed) hears it within this long,
# rather than the round waiting out the whole verify for a reply that will never come.
RESEND_LONG_WAIT_S = 2.0


def run_step(report: IncidentReport | None, name: str, peer: Peer, command: str,
             args: dict[str, Any] | None = None, *, wait_s: float | None = None
             ) -> Sequence[tuple[Step, dict[str, Any]]]:
    """Run one command as a step (``report``'s, if given); ``wait_s``: that long in all instead of
    the peer's timeout and retries (a reply that comes when the work is done), in tries of at most
    ``RESEND_LONG_WAIT_S`` (the same command again)."""
    t0 = time.perf_counter()
    if wait_s is not None:
        tries = max(1, math.ceil(wait_s / RESEND_LONG_WAIT_S - 1e-9))
        peer = replace(peer, timeout_s=wait_s / tries, retries=tries - 1)
    answer: Answer = yield from ask(peer, command, args)
    step = Step(name, answer.ok, (time.perf_counter() - t0) * 1000, answer.detail)
    if report is not None:
        report.add_step(step)
    return step, answer.result


class FailsafeSequence:
    def __init__(self, cfg: FailsafeSettings, engine: Peer, exchange: Peer) -> None:
        self._cfg = cfg
        self._engine = engine
        self._exchange = exchange

    def run(self, report: IncidentReport) -> Sequence[bool]:
        """The first attempts, into ``report``; True when the venue confirmed flat."""
        report.before = yield from self._book()
        engine, gate = yield from self._stop_new_orders(report)
        flat = False
        for attempt in range(1, self._cfg.attempts + 1):
            flat = yield from self._round(report, str(attempt))
            if flat:
                break
        report.after = yield from self._book()
        report.ok = engine.ok and gate.ok and flat
        return flat

    def retry(self, report: IncidentReport, round_no: int) -> Sequence[bool]:
        """One more round after the first attempts left the venue not flat; True once it is.

        New orders are stopped again first: a process restarted since the first round must hear it
        from the sequence too, not only from its session follower."""
        report.retry_rounds = round_no
        engine, gate = yield from self._stop_new_orders(report, f" (retry {round_no})")
        flat = yield from self._round(report, f"retry {round_no}")
        report.after = yield from self._book()
        report.ok = report.ok or (engine.ok and gate.ok and flat)
        return flat

    def _stop_new_orders(self, report: IncidentReport, label: str = "") -> Sequence[tuple[Step, Step]]:
        reason = {"reason": f"failsafe: {report.trigger}"}
        engine, _ = yield from run_step(report, f"stop new orders: disable engine{label}", self._engine, "disable_trading", reason)
        gate, _ = yield from run_step(report, f"stop new orders: close the gate{label}", self._exchange, "disable_trading", reason)
        return engine, gate

    def _round(self, report: IncidentReport, label: str) -> Sequence[bool]:
        cancel, _ = yield from run_step(report, f"cancel every open order (attempt {label})", self._exchange,
                                        "cancel_all")
        # One cancel_all per round: the flatten cancels again only if this step did not get through.
        yield from run_step(report, f"flatten every position (attempt {label})", self._exchange, "flatten",
                            {"cancel_first": not cancel.ok})
        return (yield from self._verify(report, label))

    def _verify(self, report: IncidentReport, attempt: str) -> Sequence[bool]:
        """Reconcile the exchange manager with every venue, again and again, until the venues say
        flat or ``verify_timeout_s`` runs out: orders still on their way (a slow venue) get the time
        to land instead of being flattened a second time. Between asks it backs off, so a slow venue
        is asked a few times a second, not a hundred."""
        t0 = time.perf_counter()
        name = f"verify flat at the venue (attempt {attempt})"
        deadline = time.monotonic() + self._cfg.verify_timeout_s
        detail = "no answer from the venue"
        again = Backoff(*VERIFY_AGAIN_S)
        while time.monotonic() < deadline:
            # The reply comes once the reconciliation runs it started have ended, with their outcomes.
            step, result = yield from run_step(None, name, self._exchange, "reconcile",
                                               wait_s=max(RECONCILE_MIN_WAIT_S, deadline - time.monotonic()))
            runs: dict[str, int] = result.get("runs", {})
            if not step.ok or not runs:
                detail = step.detail if not step.ok else "no venue connected to verify against"
                yield self._sleep(again.next(), deadline)
                continue
            outcomes = result.get("outcomes", {})
            done = [outcomes[c] for c in runs if c in outcomes]
            if len(done) < len(runs):  # an exchange manager that does not answer with them
                detail = "the reconciliation's reply has no outcome"
                yield self._sleep(again.next(), deadline)
                continue
            stale = [o["error"] for o in done if o.get("stale")]
            if stale:
                # older than fills already applied: it says nothing about now; ask again
                detail = stale[0]
                yield self._sleep(again.next(), deadline)
                continue
            open_orders = sum(max(0, o["venue_open_orders"]) for o in done)
            positions = {s: q for o in done for s, q in o["venue_positions"].items() if abs(q) > 1e-9}
            # Orders sent that the venue has not received yet are invisible in its answer: a flatten
            # landing after the verdict would reverse the position it has just confirmed flat.
            in_flight = sum(o.get("in_flight", 0) for o in done)
            if all(o["ok"] for o in done) and open_orders == 0 and not positions and in_flight == 0:
                report.add_step(Step(name, True, (time.perf_counter() - t0) * 1000,
                                     "venue confirms no open order and no position"))
                return True
            failed = [f"{o.get('connector', '?')}: {o['error']}" for o in done if not o["ok"] and o.get("error")]
            detail = (f"venue still has {open_orders} open order(s) and positions {positions}; "
                      f"{in_flight} order(s) on their way to it"
                      + (f"; reconciliation not ok ({'; '.join(failed)})" if failed else ""))
            if in_flight == 0 and not (yield from self._orders_in_flight()):
                break  # nothing of ours is still on its way to change that: go round again now
            yield self._sleep(again.next(), deadline)
        report.add_step(Step(name, False, (time.perf_counter() - t0) * 1000, detail))
        return False

    @staticmethod
    def _sleep(delay_s: float, deadline: float) -> Pause:
        return Pause(max(0.0, min(delay_s, deadline - time.monotonic())))

    def _orders_in_flight(self) -> Sequence[bool]:
        """Whether the exchange manager has orders still on their way; with no answer, assume so
        (keep waiting for the venue): going round again would flatten what may be landing now."""
        step, result = yield from run_step(None, "orders", self._exchange, "orders")
        if not step.ok:
            return True
        return any(o["status"] in OPEN_ORDER_STATUSES for o in result.get("orders", []))

    def _book(self) -> Sequence[dict[str, Any]]:
        """Positions, open orders and the session's counters (its PnL), for the incident report."""
        positions = orders = session = None
        reply = yield from ask(self._exchange, "positions")
        if reply.answered:
            positions = reply.result.get("positions") if reply.ok else reply.detail
            reply = yield from ask(self._exchange, "orders")
        if reply.answered:
            orders = [o for o in reply.result.get("orders", []) if o["status"] in OPEN_ORDER_STATUSES]
            reply = yield from ask(self._exchange, "session_stats")
        if not reply.answered:
            return {"error": reply.detail, "positions": positions, "open_orders": orders}
        session = reply.result if reply.ok else reply.detail
        return {"positions": positions, "open_orders": orders, "session": session}
