"""Continuous reconciliation: what the venues hold is compared with the book of record all the time,
not only after a (re)connection, and what the venue holds that this system did not send is an
execution anomaly.

  * **When**: every ``reconcile_interval_s`` with every connected venue; at once on a fill or an
    order the book cannot attribute (one the venue reports that this system never sent); on every
    (re)connection and order in doubt; on request (``reconcile``, the failsafe's verify); and again,
    backing off from 0.5 s to 5 s, after a run that failed or was stale.
  * **Never spinning**: one run at a time per venue. A request while one is out joins the next run
    (started when it ends, at most every ``reconcile_min_gap_s``); the run number it gets back is
    the one whose outcome answers it (``outcomes[...]["run"]`` reaches it).
  * **Anomalies**: an order at the venue the book did not send (adopted: it is in the book from then
    on, under the strategy ``foreign``), a fill of such an order, a position that differs: each an
    ``EXECUTION_ANOMALY`` safety event on the ``safety`` topic (the orchestrator degrades the session
    in LIVE). At most one per kind and symbol per second: the rest are counted and summed up in one
    more event at the end of that second, so a flood at the venue cannot flood the session.
    While the venue still holds any of it, the event is published again every ``REMIND_S``.
  * **Answering when done**: ``reconcile`` replies once the runs it asked for have ended, with their
    outcomes (``when_done``), so a caller waits on the reply instead of polling; a run that cannot
    start (the venue went away) ends the wait after ``REPLY_WITHIN_S`` with the reason.
  * **What the orchestrator reads** (``venue_unknown`` in the heartbeat's stats): the open orders the
    venue holds that this system did not send, and the positions their fills built up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import proto
from bus.command_server import Deferred
from services.backoff import Backoff
from services.venues.base import ExecutionClient
from services.exchange_manager.order_book import OrderBook, OrderRecord
from services.exchange_manager.reconciliation import Outcome, Reconciler
from services.exchange_manager.settings import ExchangeManagerSettings
from services.runtime import ServiceRuntime

log = logging.getLogger(__name__)
RETRY_S, RETRY_MAX_S = 0.5, 5.0  # backing off while the venue keeps not answering (or answers stale)
ANOMALY_WINDOW_S = 1.0
# While the venue holds what the system did not send, the anomaly is published again this often: an
# event published before a subscriber (re)connected (a restarted exchange manager reconciles within
# milliseconds, ZeroMQ reconnects after 100 ms) is lost, and the session must not trade on meanwhile.
REMIND_S = 5.0
# Longest a ``reconcile`` request waits for its runs: a run asks a few questions, each bounded by the
# connector's request timeout; one that never starts (its venue gone) must not hold the caller forever.
REPLY_WITHIN_S = 10.0


@dataclass
class _Schedule:
    running: int | None = None  # the run out now
    queued: bool = False  # a run is wanted (asked for meanwhile, or a retry) once allowed
    started: float = float("-inf")  # monotonic time the latest run started
    timer: bool = False  # a start (queued or a retry) is already scheduled
    backoff: Backoff = field(default_factory=lambda: Backoff(RETRY_S, RETRY_MAX_S))


@dataclass
class _Waiter:
    runs: dict[str, int]  # connector -> the run whose outcome answers it
    reply: Deferred
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class _Burst:
    until: float  # events of this kind and symbol wait until then
    suppressed: int = 0
    last_message: str = ""


class VenueWatch:
    def __init__(self, runtime: ServiceRuntime, reconciler: Reconciler, book: OrderBook,
                 connectors: dict[str, ExecutionClient], cfg: ExchangeManagerSettings,
                 foreign_positions: Callable[[], dict[str, float]]) -> None:
        self._runtime = runtime
        self._reconciler = reconciler
        self._book = book
        self._connectors = connectors
        self._min_gap_s = cfg.reconcile_min_gap_s
        self._foreign_positions = foreign_positions
        self._schedules: dict[str, _Schedule] = {}
        self._bursts: dict[tuple[str, str], _Burst] = {}
        self._reminded = time.monotonic()
        self._waiters: list[_Waiter] = []
        self.anomalies: dict[str, int] = {}  # kind -> events published
        self.suppressed = 0
        self.largest_reply_bytes = 0
        self.slowest_ms = 0.0
        self.longest_loop_ms = 0.0
        runtime.reactor.call_every(cfg.reconcile_interval_s, self._periodic, first_in_s=cfg.reconcile_interval_s)

    # -- when to reconcile -----------------------------------------------------------------------

    def request(self, connector: ExecutionClient) -> int:
        """Reconcile with ``connector``'s venue as soon as allowed; return the run that will answer."""
        sched = self._schedules.setdefault(connector.name, _Schedule())
        if sched.running is not None:
            sched.queued = True
            return sched.running + 1  # run numbers only grow: the next run of this venue is at least this
        wait = sched.started + self._min_gap_s - time.monotonic()
        if wait > 0:
            sched.queued = True
            self._start_later(connector.name, wait)
            return self._reconciler.runs + 1
        return self._start(connector)

    def when_done(self, runs: dict[str, int]) -> Deferred:
        """The reply to a ``reconcile`` that asked for ``runs`` (``request``'s answers): ``runs``
        and each connector's ``outcomes`` once every run has ended."""
        waiter = _Waiter(runs, Deferred())
        # A run may have ended already: a venue that cannot be asked answers at once.
        for outcome in self._reconciler.outcomes.values():
            _take(waiter, outcome)
        if not _answered(waiter):
            self._waiters.append(waiter)
            self._runtime.reactor.call_later(REPLY_WITHIN_S, lambda: self._give_up(waiter))
        return waiter.reply

    def _give_up(self, waiter: _Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            missing = sorted(set(waiter.runs) - set(waiter.outcomes))
            waiter.reply.refuse(f"reconciliation with {', '.join(missing)} not done within {REPLY_WITHIN_S:g}s")

    def _start(self, connector: ExecutionClient) -> int:
        sched = self._schedules.setdefault(connector.name, _Schedule())
        sched.queued = False
        sched.started = time.monotonic()
        sched.running = self._reconciler.runs + 1  # before run(): a venue that cannot be asked answers at once
        return self._reconciler.run(connector)

    def _start_later(self, name: str, delay: float) -> None:
        sched = self._schedules[name]
        if sched.timer:
            return
        sched.timer = True

        def start() -> None:
            sched.timer = False
            connector = self._connectors.get(name)
            if not sched.queued or sched.running is not None or connector is None:
                return  # started meanwhile, or it will start when the run out now ends
            if not connector.is_connected_check():
                return  # the (re)connection starts one
            wait = sched.started + self._min_gap_s - time.monotonic()
            if wait > 0:
                self._start_later(name, wait)
            else:
                self._start(connector)

        self._runtime.reactor.call_later(delay, start)

    def _periodic(self) -> None:
        for connector in self._connectors.values():
            sched = self._schedules.get(connector.name)
            if connector.is_connected_check() and (sched is None or (sched.running is None and not sched.timer)):
                self.request(connector)
        orders, positions = self._book.foreign_open(), self._foreign_positions()
        now = time.monotonic()
        if (orders or positions) and now - self._reminded >= REMIND_S:
            self._reminded = now
            ids = ", ".join(o.client_order_id for o in orders[:5]) + (", ..." if len(orders) > 5 else "")
            self.anomaly("venue_holds", "*", f"The venue still holds what this system did not send: "
                         f"{len(orders)} open order(s) [{ids}], positions {positions}",
                         orders=float(len(orders)), **{f"position.{s}": q for s, q in positions.items()})

    def on_outcome(self, outcome: Outcome) -> None:
        """A run ended: start the one asked for meanwhile, or retry a failed one with backoff; report
        what the venue held that the book did not know."""
        sched = self._schedules.setdefault(outcome.connector, _Schedule())
        if sched.running == outcome.run:
            sched.running = None
        self.largest_reply_bytes = max(self.largest_reply_bytes, outcome.largest_reply_bytes)
        self.slowest_ms = max(self.slowest_ms, outcome.duration_ms)
        self.longest_loop_ms = max(self.longest_loop_ms, outcome.loop_ms)
        if outcome.ok:
            sched.backoff.reset()
        if sched.running is None and (sched.queued or not outcome.ok):
            # A failed run is tried again while the connector is up: until one passes the session
            # may not open, so giving up would keep it closed for good.
            delay = max(sched.started + self._min_gap_s - time.monotonic(), 0.0)
            if not outcome.ok and not sched.queued:
                delay = max(delay, sched.backoff.next())
            sched.queued = True
            self._start_later(outcome.connector, delay)
        for waiter in self._waiters:
            _take(waiter, outcome)
        self._waiters = [w for w in self._waiters if not _answered(w)]
        for cid in outcome.adopted:
            order = self._book.orders.get(cid)
            self.anomaly("foreign_order", order.symbol if order is not None else "*",
                         f"Order {cid} open at the venue was not sent by this system ({_describe(order)}): adopted",
                         qty=order.qty if order is not None else 0.0)
        for symbol, (ours, theirs) in outcome.position_mismatches.items():
            self.anomaly("position_mismatch", symbol,
                         f"Reconciliation: exchange manager held {ours:g}, the venue holds {theirs:g}",
                         exchange_manager=float(ours), venue=float(theirs))

    # -- what the book cannot attribute ----------------------------------------------------------

    def foreign_order(self, update: proto.OrderUpdate) -> None:
        """The venue reported an order this system did not send (the book has just adopted it)."""
        self.anomaly("foreign_order", update.symbol, f"Order {update.client_order_id} at the venue was not sent by "
                     f"this system ({update.side.value} {update.qty:g} {update.symbol}, {update.status.value}): adopted",
                     qty=update.qty)
        self._reconcile_now(update.connector)

    def foreign_fill(self, fill: proto.Fill) -> None:
        """A fill of an order this system did not send."""
        self.anomaly("foreign_fill", fill.symbol, f"Fill {fill.fill_id} of order {fill.client_order_id}, not sent by "
                     f"this system: {fill.side.value} {fill.qty:g} {fill.symbol} at {fill.price:g}",
                     qty=fill.side.sign * fill.qty, price=fill.price)
        self._reconcile_now(fill.connector)

    def _reconcile_now(self, name: str) -> None:
        connector = self._connectors.get(name)
        if connector is not None and connector.is_connected_check():
            self.request(connector)

    def anomaly(self, kind: str, symbol: str, message: str, **evidence: float) -> None:
        now = time.monotonic()
        burst = self._bursts.get((kind, symbol))
        if burst is not None and now < burst.until:
            burst.suppressed += 1
            burst.last_message = message
            self.suppressed += 1
            return
        self._bursts[(kind, symbol)] = _Burst(until=now + ANOMALY_WINDOW_S)
        self._runtime.reactor.call_later(ANOMALY_WINDOW_S, lambda: self._summarise(kind, symbol))
        self._publish(kind, symbol, message, evidence)

    def _summarise(self, kind: str, symbol: str) -> None:
        burst = self._bursts.pop((kind, symbol), None)
        if burst is not None and burst.suppressed:
            self._publish(kind, symbol, f"{burst.suppressed} more within {ANOMALY_WINDOW_S:g}s, the latest: "
                          f"{burst.last_message}", {"more": float(burst.suppressed)})

    def _publish(self, kind: str, symbol: str, message: str, evidence: dict[str, float]) -> None:
        self.anomalies[kind] = self.anomalies.get(kind, 0) + 1
        log.warning("EXECUTION_ANOMALY %s %s: %s", kind, symbol, message)
        self._runtime.publisher.publish(proto.topics.SAFETY, proto.SafetyEvent(
            event_type=proto.SafetyEventType.EXECUTION_ANOMALY, severity=proto.Severity.WARNING, symbol=symbol,
            message=message, evidence=evidence))

    # -- reporting -------------------------------------------------------------------------------

    def venue_unknown(self) -> dict[str, Any]:
        """What the venue holds that this system did not send: the orchestrator refuses to reset or
        open while there is any."""
        return {"orders": len(self._book.foreign_open()), "positions": self._foreign_positions()}

    def stats(self) -> dict[str, Any]:
        last = self._reconciler.last
        return {
            "anomalies": dict(self.anomalies),
            "anomalies_suppressed": self.suppressed,
            "last_ms": round(last.duration_ms, 3) if last else None,
            "slowest_ms": round(self.slowest_ms, 3),
            "last_loop_ms": round(last.loop_ms, 3) if last else None,
            "longest_loop_ms": round(self.longest_loop_ms, 3),
            "largest_reply_bytes": self.largest_reply_bytes,
            "fill_cursors": {name: {"session": c.session, "applied": c.applied}
                             for name, c in self._reconciler.cursors.items()},
        }


def _take(waiter: _Waiter, outcome: Outcome) -> None:
    """Keep ``outcome`` if it is (or follows) the run ``waiter`` waits for at its connector."""
    if waiter.runs.get(outcome.connector, outcome.run + 1) <= outcome.run:
        waiter.outcomes[outcome.connector] = asdict(outcome)


def _answered(waiter: _Waiter) -> bool:
    """Reply once every run has ended; True when it has."""
    if len(waiter.outcomes) == len(waiter.runs):
        waiter.reply.resolve({"runs": waiter.runs, "outcomes": waiter.outcomes})
        return True
    return False


def _describe(order: OrderRecord | None) -> str:
    if order is None:
        return "unknown"
    return f"{order.side.value} {order.qty:g} {order.symbol}" + (f" limit {order.limit_price:g}" if order.limit_price else "")
