"""The fault-injection harness: one shared daemon, the session states a cell starts from, the faults,
the invariant checks, and the figures the suite prints at the end (``FIGURES``).

A *cell* is (program, session state, fault). ``FaultHarness.run_cell`` drives the session into the
state, injects the fault, waits until every affected process is back and re-synced (timed for a
kill -9), then checks every invariant and counts them:

  * ``state``: the orchestrator's state afterwards is one the cell allows (see the table in
    ``test_matrix.py``), and the transitions journalled meanwhile are the ones the cell allows;
  * ``no trade in FAILSAFE``: once FAILSAFE began, no order other than the failsafe's own flatten
    orders was accepted, and no fill at the venue opened or increased a position (after a grace
    for orders already on their way); with the sequence done, no fill at all;
  * ``failsafe flat``: a session that ends in FAILSAFE (a sequence under way, or one the fault
    caused) finishes its sequence and leaves the venue flat;
  * ``no duplicate id``: the venue never received a client order id twice (its ``duplicate_ids``
    counter, and the ids of every venue incarnation, which a kill of the venue forgets, kept here);
  * ``positions``: the exchange manager's positions equal the venue's once reconciled;
  * ``open orders``: so do its open orders (what the venue holds open is open in the book, what the
    book holds open and sent seconds ago is open at the venue);
  * ``record``: every order of ours the venue received is in the book of record's journal;
  * ``streams``: every fill and every order the venue holds was published on the exchange manager's
    ``fills`` / ``orders`` topics and received by a test subscriber, unless the subscriber counted a
    gap (or, by design, it was in flight when its publisher was killed: a new epoch is not a gap;
    those are counted apart as ``boundary`` losses).

"Back and re-synced" after a kill: the new process answers ``status`` on its command socket as a new
pid, the orchestrator sees it alive with that pid (heard from its new epoch) and, for the exchange
manager, its reconciliation with the venue has passed. For the orchestrator itself: it answers as a
new pid and sees every peer alive. For the venue simulator (which the orchestrator does not track):
it answers, and the exchange manager has reconciled with it again. supervisord's RUNNING is not
used: it only comes ``startsecs`` (5 s) after the spawn.

The venue is read through a ``venue_views.VenueView``, one per adapter the exchange manager trades
through (the native face's queries, or the Binance face through ccxt, from outside): the harness is
the same for both, and so is every invariant. Two figures are the view's: how late the exchange
manager may learn of a fill (``report_delay_s``: ccxt's connector polls) and how long its
``reconcile`` may take to answer (``reconcile_reply_s``: over REST, seconds).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import statistics
import time
import xmlrpc.client
from collections.abc import Callable, Iterable
import dataclasses
from dataclasses import dataclass, field
from typing import Any


import proto
from bus import SERVICE_NAMES, CommandTimeout, Subscriber
from integration.daemon import Daemon, WaitTimeout, program_names, wait_until
from integration.e2e import FAST_STRATEGIES, OPEN_STATUSES, Collector, place_resting_orders, wait_routed

from .venue_views import NativeView, VenueView

EPS = 1e-9
NS = 1_000_000_000

# The five services and the venue simulator (supervisord's other programs, such as an event
# listener, are not cells of the matrix).
MATRIX_PROGRAMS: list[str] = [p for p in program_names() if p in SERVICE_NAMES or p == "venue_sim"]
PEERS = [p for p in MATRIX_PROGRAMS if p not in ("orchestrator", "venue_sim")]
STATES = ("ready", "live", "degraded", "failsafe_mid", "failsafe_done")

FAULT_CONFIG: dict[str, Any] = {
    "bus": {"heartbeat_interval_s": 0.1},
    "orchestrator": {
        "health_check_interval_s": 1.0,
        # One shared daemon goes through dozens of degradations: only the cells that mean to
        # escalate do (a FATAL, a critical event, a failsafe command).
        "failsafe_degradation_count": 1000,
        "health": {"auto_recover_after_s": 3600.0},
    },
    "engine": {"strategies": FAST_STRATEGIES, "deadman_timeout_s": 1.0},
    "exchange_manager": {"deadman_timeout_s": 1.0},
    "venue_sim": {"jump_probability_per_s": 0.0, "volatility_bps_per_sqrt_s": 4.0},
}

# The venue's added latency for "FAILSAFE mid-sequence": the sequence waits for its cancels and
# flatten orders to land, so it takes about this long (plus the verify loop) and a kill lands in it.
SLOW_VENUE_MS = 1500.0
# Longest wait for a process to be back and re-synced (the target is 3 s; this is a noisy 2-core
# machine, and a FAILSAFE sequence under way holds the orchestrator's loop).
RESYNC_TIMEOUT_S = 15.0
POSITION_SYMBOL = "SOL-USD"
POSITION_QTY = 0.5


# -- figures --------------------------------------------------------------------------------------


@dataclass
class Figures:
    cases: int = 0
    invariants: int = 0
    faults: int = 0
    faults_survived: int = 0
    duplicates: int = 0
    position_mismatches: int = 0
    boundary_losses: int = 0
    counted_gaps: int = 0
    resync_s: list[tuple[str, str, float]] = field(default_factory=list)  # (program, state, seconds)
    # (fault, reaction, seconds): from the fault to the session's reaction (FAILSAFE, DEGRADED, ...)
    reactions: list[tuple[str, str, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # a suite's own figures, one line each
    # memory floods (test_7): (flood, process, RSS MB before, peak, after, longest heartbeat gap s)
    floods: list[tuple[str, str, float, float, float, float]] = field(default_factory=list)

    def export(self) -> dict[str, Any]:
        """Plain data, for an xdist worker to hand its figures to the controller."""
        return dataclasses.asdict(self)

    def absorb(self, other: dict[str, Any]) -> None:
        """Add another worker's figures to these."""
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), other.get(f.name)
            if isinstance(mine, list):
                mine.extend(tuple(x) if isinstance(x, list) else x for x in theirs or [])
            elif isinstance(mine, int):
                setattr(self, f.name, mine + int(theirs or 0))

    def lines(self) -> list[str]:
        out = [
            f"cases run: {self.cases}",
            f"invariants checked: {self.invariants}",
            f"faults injected: {self.faults}, survived with every invariant holding: {self.faults_survived}",
            f"duplicate client order ids at the venue: {self.duplicates} (must be 0)",
            f"positions mismatched after reconciliation: {self.position_mismatches} (must be 0)",
            f"stream messages lost with a counted gap: {self.counted_gaps}; "
            f"lost in flight at a kill -9 of their publisher (new epoch, not a gap): {self.boundary_losses}",
        ]
        if self.resync_s:
            times = [t for _, _, t in self.resync_s]
            worst = max(self.resync_s, key=lambda x: x[2])
            out.append(f"kill -9 -> back and re-synced: n={len(times)} p50={statistics.median(times):.2f}s "
                       f"max={worst[2]:.2f}s ({worst[0]} in {worst[1]}); target < 3 s")
            by_program: dict[str, list[float]] = {}
            for program, state, t in self.resync_s:
                if state != "failsafe_mid":  # the orchestrator is busy with the sequence there
                    by_program.setdefault(program, []).append(t)
            out.append("  per program (outside FAILSAFE mid-sequence): " + ", ".join(
                f"{p} p50={statistics.median(v):.2f}s max={max(v):.2f}s" for p, v in sorted(by_program.items())))
        for fault, reaction, seconds in sorted(self.reactions):
            out.append(f"reaction: {fault} -> {reaction} in {seconds:.2f}s")
        for name, service, before, peak, after, gap in self.floods:
            out.append(f"memory flood: {name} -> {service}: RSS {before:.0f} / {peak:.0f} / {after:.0f} MB "
                       f"(before / peak / after), longest heartbeat gap {gap * 1000:.0f} ms")
        out += self.notes
        for failure in self.failures:
            out.append(f"FAILED: {failure}")
        return out


FIGURES = Figures()


class InvariantBroken(AssertionError):
    pass


# -- a subscriber on the exchange manager's order and fill streams -----------------------------------


class StreamCollector(Collector):
    """Every ``orders`` / ``fills`` message the exchange manager publishes (the first sighting of
    each order and fill), read in a background thread across its restarts (the SUB socket
    reconnects by itself), with the subscriber's gap counters readable at any time."""

    def __init__(self, d: Daemon, service: str = "exchange_manager") -> None:
        super().__init__(d, service, [proto.topics.ORDERS, proto.topics.FILLS], timeout=20.0)
        self._service = service
        self.started_ns = 0
        self.fills: dict[str, int] = {}  # fill_id -> envelope ts_ns
        self.orders: dict[str, tuple[int, str, str]] = {}  # cid -> (first ts_ns, strategy, first status)
        self._peers: dict[str, dict[str, int]] = {}

    def start(self) -> "StreamCollector":
        super().start()
        self.started_ns = time.time_ns()
        return self

    def _keep(self, topic: str, env: proto.Envelope) -> None:
        body = env.body
        if topic == proto.topics.FILLS and isinstance(body, proto.Fill):
            self.fills.setdefault(body.fill_id, env.ts_ns)
        elif topic == proto.topics.ORDERS and isinstance(body, proto.OrderUpdate):
            self.orders.setdefault(body.client_order_id, (env.ts_ns, body.strategy, body.status.value))

    def _drained(self, sub: Subscriber) -> None:
        with self._lock:
            self._peers = {s: {"gaps": p.gaps, "lost": p.lost, "restarts": p.restarts, "stale": p.stale}
                           for s, p in sub.peers.items()}

    def streams(self) -> tuple[dict[str, int], dict[str, tuple[int, str, str]], dict[str, int]]:
        """Fills seen, orders seen, and the exchange manager's gap counters, as of now."""
        with self._lock:
            return dict(self.fills), dict(self.orders), dict(self._peers.get(self._service, {}))


# -- the venue's record, across its incarnations ------------------------------------------------------


@dataclass
class VenueIncarnation:
    epoch: int
    cids: list[str] = field(default_factory=list)
    duplicate_ids: int = 0
    fills: dict[str, dict[str, Any]] = field(default_factory=dict)  # fill_id -> fill
    killed_ns: int | None = None  # when this incarnation was killed or stopped (its last fills may be lost)


class VenueLedger:
    """What every incarnation of the venue received: a killed venue forgets its orders and fills, so
    each is read just before the kill and kept here."""

    def __init__(self, view: VenueView) -> None:
        self.view = view
        self.incarnations: dict[int, VenueIncarnation] = {}

    def record(self) -> VenueIncarnation:
        """Read the venue's whole record, a page at a time (``VenueView.record``)."""
        result = self.view.record()
        inc = self.incarnations.setdefault(result.epoch, VenueIncarnation(result.epoch))
        inc.cids = list(result.cids)
        inc.duplicate_ids = result.duplicate_ids
        for f in result.fills:
            inc.fills.setdefault(f["fill_id"], f)
        return inc

    def mark_killed(self, epoch: int, when_ns: int) -> None:
        if epoch in self.incarnations:
            self.incarnations[epoch].killed_ns = when_ns

    def duplicates(self) -> tuple[int, list[str]]:
        """(duplicate count, examples): ids a venue saw twice, plus ids seen by two incarnations."""
        seen: dict[str, int] = {}
        dup = 0
        examples = []
        for inc in self.incarnations.values():
            dup += inc.duplicate_ids
            for cid in set(inc.cids):
                if cid in seen:
                    dup += 1
                    examples.append(cid)
                seen[cid] = inc.epoch
            if len(set(inc.cids)) != len(inc.cids):
                dup += len(inc.cids) - len(set(inc.cids))
        return dup, examples[:5]


def _ask(d: Daemon, service: str, command: str, timeout_s: float = 2.0, **args: Any) -> dict[str, Any]:
    reply = d.call(service, command, timeout_s=timeout_s, retries=2, **args)
    if not reply.ok:
        raise AssertionError(f"{service} refused {command}: {reply.error}")
    return reply.result


def _try(fn: Callable[[], Any], default: Any = None) -> Any:
    try:
        return fn()
    except (CommandTimeout, AssertionError, OSError, xmlrpc.client.Fault, KeyError):
        return default


# -- the harness --------------------------------------------------------------------------------------


@dataclass
class Cell:
    program: str | tuple[str, ...]
    state: str
    fault: str  # kill9 | restart | kill9_pair | supervisord_restart
    allowed: tuple[str, ...] = ()  # states allowed afterwards
    # (old, new) transitions allowed to be journalled during the fault; None: any into `allowed`
    transitions: tuple[tuple[str, str], ...] | None = None

    @property
    def programs(self) -> tuple[str, ...]:
        return self.program if isinstance(self.program, tuple) else (self.program,)

    @property
    def name(self) -> str:
        return f"{self.fault} {'+'.join(self.programs)} in {self.state}"


@dataclass
class CellContext:
    """What a cell's checks need to know about how it started."""

    cell: Cell
    started_ns: int
    transitions_before: int
    failsafe_at_ns: int | None = None
    failsafe_was_pending: bool = False
    venue_fills_before: set[str] = field(default_factory=set)
    em_orders_before: set[str] = field(default_factory=set)
    venue_cids_before: set[str] = field(default_factory=set)
    kill_ns: dict[str, int] = field(default_factory=dict)


class FaultHarness:
    def __init__(self, d: Daemon, view: VenueView | None = None) -> None:
        self.d = d
        self.view = view or NativeView(d)
        self.adapter = self.view.adapter
        self.collector = StreamCollector(d).start()
        self.ledger = VenueLedger(self.view)
        self.ledger.record()
        # kill -9 (or stop) times of the exchange manager and the venue: a message in flight from
        # a publisher at its kill is lost by design (a new epoch is not a gap)
        self.em_down_ns: list[int] = []
        self.venue_down_ns: list[int] = []
        self._verified_fills: set[str] = set()
        self._verified_orders: set[str] = set()
        self.log: list[str] = []

    def close(self) -> None:
        self.collector.stop()

    def label(self, what: str) -> str:
        """``what``, with the adapter when it is not the native one (in the figures)."""
        return what if self.adapter == "native" else f"{what} [{self.adapter}]"

    def name(self, cell: Cell) -> str:
        return self.label(cell.name)

    # -- reading the daemon ------------------------------------------------------------------------

    def state(self) -> str:
        return self.d.request("orchestrator", "state")["state"]

    def ostatus(self) -> dict[str, Any]:
        return _ask(self.d, "orchestrator", "status")

    def journal(self) -> list[tuple[int, float, str, str, str]]:
        """The orchestrator's journalled transitions of its latest session, read from its SQLite
        file (works while the orchestrator is dead or busy)."""
        path = self.d.state_dir / "orchestrator.sqlite"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute("SELECT session_id, counters FROM sessions ORDER BY updated DESC LIMIT 1").fetchone()
            if row is None:
                return []
            rows = db.execute("SELECT no, ts, old, new, reason FROM transitions WHERE session_id = ? ORDER BY no",
                              (row[0],)).fetchall()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def journal_counters(self) -> dict[str, Any]:
        path = self.d.state_dir / "orchestrator.sqlite"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute("SELECT counters FROM sessions ORDER BY updated DESC LIMIT 1").fetchone()
        return json.loads(row[0]) if row else {}

    def failsafe_pending(self) -> str | None:
        return self.journal_counters().get("failsafe_pending")

    def venue_positions(self) -> dict[str, float]:
        return self.view.positions()

    def em_positions(self) -> dict[str, float]:
        positions = _ask(self.d, "exchange_manager", "positions")["positions"]
        return {s: p["qty"] for s, p in positions.items() if abs(p["qty"]) > EPS}

    def venue_open_orders(self) -> list[dict[str, Any]]:
        return self.view.open_orders()

    def em_orders(self) -> list[dict[str, Any]]:
        return _ask(self.d, "exchange_manager", "orders")["orders"]

    def em_stats(self) -> dict[str, Any]:
        return _ask(self.d, "exchange_manager", "status")["stats"]

    # -- getting back to a whole daemon --------------------------------------------------------------

    def heal(self, timeout: float = 60.0) -> None:
        """Every program running and serving, no venue fault, every component alive, no failsafe
        sequence under way: the start of every cell."""
        d = self.d
        infos = d.all_process_info()
        rpc = d.rpc()
        for program in d.programs:
            if infos[program]["statename"] in ("FATAL", "STOPPED", "EXITED"):
                # not `supervisorctl start`: it returns only once RUNNING, startsecs (5 s) later
                rpc.startProcess(d.qualified(program), False)
        # STARTING is enough here (RUNNING comes startsecs = 5 s after a spawn); a program about to
        # be killed waits for RUNNING (``settle``), or its kill would count as a failed start.
        wait_until(lambda: all(s in ("STARTING", "RUNNING") for p, s in d.statenames().items() if p in d.programs),
                   timeout, interval=0.05, ignore=(OSError, xmlrpc.client.Fault),
                   message=lambda: d.diagnostics())
        d.wait_serving(timeout=timeout)
        _ask(d, "venue_sim", "fault", fault="clear")
        wait_until(lambda: self.failsafe_pending() is None, timeout, interval=0.1,
                   message=lambda: d.diagnostics())
        d.wait_components_alive(timeout=timeout)
        # a daemon just started serves before the orchestrator has heard from everyone (STARTUP)
        wait_until(lambda: self.state() != "startup", timeout, interval=0.1, ignore=(CommandTimeout,))
        wait_until(lambda: self.em_stats()["reconciled"], timeout, interval=0.1, ignore=(CommandTimeout,),
                   message=lambda: d.diagnostics())
        # a session just started opens by itself once reconciled (auto_open): let it, or a cell in
        # READY (the first on a fresh daemon) would see it go LIVE during the fault
        wait_until(lambda: self.state() != "ready" or not self.journal_counters().get("auto_open_pending"),
                   timeout, interval=0.1, ignore=(CommandTimeout,))
        self.reconcile_now()

    def reconcile_now(self, timeout: float = 20.0) -> None:
        """Have the exchange manager reconcile with the venue now and wait for the outcome, so that a
        cell that broke the book (a product bug) does not spill over into the next one."""
        runs = _ask(self.d, "exchange_manager", "reconcile", timeout_s=self.view.reconcile_reply_s)["runs"]

        def done() -> bool:
            outcomes = _ask(self.d, "exchange_manager", "reconciliation")["outcomes"]
            return all(outcomes.get(c, {}).get("run", 0) >= r and outcomes[c]["ok"] for c, r in runs.items())

        wait_until(done, timeout, interval=0.05, ignore=(CommandTimeout,))

    def to_ready(self, timeout: float = 60.0) -> None:
        state = self.state()
        if state in ("live", "degraded"):
            self._failsafe("test: back to ready")
            state = self.state()
        if state == "failsafe":
            wait_until(lambda: self.failsafe_pending() is None, timeout, interval=0.1)
            reply = self.d.call("orchestrator", "reset", timeout_s=5, retries=2, reason="test: back to ready")
            assert reply.ok, reply.error
        assert self.state() == "ready", self.state()

    def to_live(self, timeout: float = 60.0) -> None:
        d = self.d
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            state = self.state()
            if state == "live":
                # The gate follows the session over the bus, and a restarted exchange manager is
                # told to trade again within a second: under load either may lag. Wait for both.
                wait_until(lambda: (st := _ask(d, "exchange_manager", "status")["stats"])["gate"]["mode"] == "normal"
                           and st["trading_allowed"], 10, interval=0.05, ignore=(CommandTimeout,))
                return
            if state == "failsafe":
                wait_until(lambda: self.failsafe_pending() is None, 30, interval=0.1)
                last = d.call("orchestrator", "reset", timeout_s=5, retries=2, reason="test: back to live")
            elif state == "ready":
                last = d.call("orchestrator", "open", timeout_s=5, retries=2, reason="test: back to live")
            elif state == "degraded":
                last = d.call("orchestrator", "recover", timeout_s=5, retries=2)
            else:
                raise AssertionError(f"cannot bring the session back to live from {state}")
            time.sleep(0.1)
        raise AssertionError(f"not live within {timeout}s: {self.state()} (last reply {last})")

    def _live_with_position_and_resting_orders(self, attempts: int = 3) -> None:
        """LIVE, then the position and the resting orders. A restart in the previous cell can
        degrade the session a moment later (the safety process counts the exchange manager's
        messages its subscribers missed while reconnecting, a sequence gap): the gate then refuses
        the orders as reduce-only, and the session is brought back to LIVE and the orders tried again."""
        for attempt in range(attempts):
            self.to_live()
            try:
                self.with_position_and_resting_orders()
                return
            except AssertionError as exc:
                if "reduce-only" not in str(exc) and "trading is not enabled" not in str(exc) \
                        or attempt == attempts - 1:
                    raise

    def with_position_and_resting_orders(self) -> None:
        """LIVE with a position of our own (SOL-USD, which no strategy trades) and two limit
        orders far from the touch, resting at the venue."""
        d = self.d
        held = self.venue_positions().get(POSITION_SYMBOL, 0.0)
        if held < POSITION_QTY / 2:
            wait_routed(d, POSITION_SYMBOL)
            reply = d.call("exchange_manager", "submit_order", timeout_s=2.0, retries=2, symbol=POSITION_SYMBOL,
                           side="buy", qty=POSITION_QTY, strategy="faults")
            assert reply.ok, reply.error
            wait_until(lambda: abs(self.venue_positions().get(POSITION_SYMBOL, 0.0) - held - POSITION_QTY) < 1e-9
                       and abs(self.em_positions().get(POSITION_SYMBOL, 0.0) - held - POSITION_QTY) < 1e-9,
                       10, interval=0.05, ignore=(CommandTimeout,))
        resting = [o for o in self.venue_open_orders() if o["symbol"] == POSITION_SYMBOL]
        if len(resting) < 2:
            place_resting_orders(d, open_at_venue=self.venue_open_orders)

    def degrade(self, timeout: float = 20.0) -> None:
        """LIVE → DEGRADED by a process that goes quiet for a moment (the safety process, stopped
        with SIGSTOP until the orchestrator has noticed, then continued)."""
        pid = self.d.pid_of("safety")
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_until(lambda: self.state() == "degraded", timeout, interval=0.05, ignore=(CommandTimeout,))
        finally:
            os.kill(pid, signal.SIGCONT)
        self.d.wait_components_alive(timeout=timeout)

    def _failsafe(self, reason: str) -> int:
        at = time.time_ns()
        reply = self.d.call("orchestrator", "failsafe", timeout_s=5, retries=2, reason=reason)
        assert reply.ok, reply.error
        wait_until(lambda: self.failsafe_pending() is None, 40, interval=0.05)
        return at

    def prepare(self, state: str) -> CellContext:
        """Bring the session into ``state`` (failsafe_mid: the sequence has just begun against a slow
        venue); return the context the checks need."""
        self.heal()
        failsafe_at = None
        if state == "ready":
            self.to_ready()
        elif state == "failsafe_done" and self.state() == "failsafe" and not self.venue_positions():
            pass  # a previous cell left it there, sequence done and flat: the same state
        else:
            self._live_with_position_and_resting_orders()
            if state == "degraded":
                self.degrade()
            elif state == "failsafe_done":
                failsafe_at = self._failsafe("faults: failsafe done")
        ctx = self._context(state, failsafe_at)
        if state == "failsafe_mid":
            assert self.venue_positions() and self.venue_open_orders(), "nothing for the failsafe to do"
            _ask(self.d, "venue_sim", "fault", fault="latency", value=SLOW_VENUE_MS)
            ctx.failsafe_at_ns = time.time_ns()
            reply = self.d.call("orchestrator", "failsafe", timeout_s=5, retries=2, reason="faults: mid-sequence")
            assert reply.ok, reply.error
            ctx.failsafe_was_pending = True
            ctx.transitions_before = len(self.journal())  # LIVE → DEGRADED → FAILSAFE are the cell's start
            time.sleep(0.2)  # into the sequence (it takes over SLOW_VENUE_MS)
            assert self.failsafe_pending() is not None, "the failsafe sequence ended before the fault"
        if state == "failsafe_done" and ctx.failsafe_at_ns is None:
            ctx.failsafe_at_ns = self._last_failsafe_ns()
        return ctx

    def _last_failsafe_ns(self) -> int:
        rows = [r for r in self.journal() if r[3] == "failsafe"]
        return int(rows[-1][1] * NS) if rows else time.time_ns()

    def _context(self, state: str, failsafe_at: int | None) -> CellContext:
        self.ledger.record()
        fills = {fill_id for inc in self.ledger.incarnations.values() for fill_id in inc.fills}
        return CellContext(
            cell=Cell("", state, ""), started_ns=time.time_ns(), transitions_before=len(self.journal()),
            failsafe_at_ns=failsafe_at, venue_fills_before=fills,
            em_orders_before={o["client_order_id"] for o in self.em_orders()},
            venue_cids_before={cid for inc in self.ledger.incarnations.values() for cid in inc.cids})

    # -- faults --------------------------------------------------------------------------------------

    def _before_down(self, programs: Iterable[str]) -> None:
        programs = list(programs)
        if "venue_sim" in programs:
            inc = self.ledger.record()  # a killed venue forgets: keep its record
            self._venue_epoch_down = inc.epoch

    def _after_down(self, programs: Iterable[str], when_ns: int) -> None:
        for program in programs:
            if program == "exchange_manager":
                self.em_down_ns.append(when_ns)
            elif program == "venue_sim":
                self.venue_down_ns.append(when_ns)
                self.ledger.mark_killed(self._venue_epoch_down, when_ns)

    def settle(self, programs: Iterable[str], timeout: float = 30.0) -> None:
        """Wait until supervisord counts the programs as started (RUNNING), so that a kill is an
        unexpected exit that it restarts at once, not a failed start that it backs off from."""
        for program in programs:
            self.d.wait_statename(program, "RUNNING", timeout=timeout)

    def kill9(self, ctx: CellContext, programs: Iterable[str]) -> dict[str, float]:
        """kill -9 the programs (at once); wait until each is back and re-synced; return the times."""
        d = self.d
        programs = list(programs)
        self.settle(programs)
        before = self._identities(programs)
        self._before_down(programs)
        pids = {p: d.pid_of(p) for p in programs}
        t0 = time.monotonic()
        now_ns = time.time_ns()
        for program, pid in pids.items():
            os.kill(pid, signal.SIGKILL)
            ctx.kill_ns[program] = now_ns
        self._after_down(programs, now_ns)
        FIGURES.faults += len(programs)
        done: dict[str, float] = {}
        try:
            self._wait_resynced(programs, before, t0, done, timeout=RESYNC_TIMEOUT_S)
        finally:
            for program, seconds in done.items():
                FIGURES.resync_s.append((self.label(program), ctx.cell.state, seconds))
        return done

    def restart(self, ctx: CellContext, program: str) -> float:
        """``supervisorctl restart`` (SIGTERM, wait, start); wait until back and re-synced."""
        d = self.d
        before = self._identities([program])
        self._before_down([program])
        t0 = time.monotonic()
        now_ns = time.time_ns()
        res = d.supervisorctl("restart", d.qualified(program), timeout=60)
        assert res.returncode == 0, f"supervisorctl restart {program}: {res.stdout}{res.stderr}"
        ctx.kill_ns[program] = now_ns
        self._after_down([program], now_ns)
        FIGURES.faults += 1
        done: dict[str, float] = {}
        self._wait_resynced([program], before, t0, done, timeout=RESYNC_TIMEOUT_S)
        return done[program]

    def restart_supervisord(self, ctx: CellContext) -> None:
        """Stop supervisord (every program with it), then start it again on the same config."""
        d = self.d
        before = self._identities(MATRIX_PROGRAMS)
        self._before_down(["venue_sim"])
        now_ns = time.time_ns()
        res = d.supervisorctl("shutdown", timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
        assert d.proc is not None
        d.proc.wait(timeout=60)
        assert not d.leftover_processes(), "processes outlived supervisord's shutdown"
        for program in MATRIX_PROGRAMS:
            ctx.kill_ns[program] = now_ns
        self._after_down(["exchange_manager", "venue_sim"], now_ns)
        FIGURES.faults += 1
        t0 = time.monotonic()
        d.start(wait=False)
        done: dict[str, float] = {}
        self._wait_resynced(MATRIX_PROGRAMS, before, t0, done, timeout=RESYNC_TIMEOUT_S + 30)

    def _identities(self, programs: Iterable[str]) -> dict[str, Any]:
        """pids and epochs before the fault, and the exchange manager's reconciliation count."""
        out: dict[str, Any] = {}
        for program in programs:
            status = _ask(self.d, program, "status")
            out[program] = {"pid": status["pid"], "epoch": status["epoch"]}
        return out

    def _wait_resynced(self, programs: list[str], before: dict[str, Any], t0: float, done: dict[str, float],
                       timeout: float) -> None:
        d = self.d
        pending = set(programs)

        def answers(program: str) -> dict[str, Any] | None:
            reply = d.call(program, "status", timeout_s=0.3)
            if not reply.ok or reply.result["epoch"] == before[program]["epoch"]:
                return None
            # wall-clock time of the new process's start (its uptime is as of this reply)
            return {**reply.result, "_started_at": time.time() - reply.result["stats"]["uptime_s"]}

        def synced(program: str, status: dict[str, Any]) -> bool:
            if program == "venue_sim":
                stats = self.em_stats()
                connectors = stats.get("connectors", {})
                return (stats["reconciled"] and all(c.get("connected") for c in connectors.values())
                        and self._em_reconciled_since(status["_started_at"]))
            ostatus = d.call("orchestrator", "status", timeout_s=0.3)
            if not ostatus.ok:
                return False
            comps = ostatus.result["components"]
            if program == "orchestrator":
                return all(c["alive"] for c in comps.values())
            comp = comps[program]
            if not (comp["alive"] and comp["pid"] == status["pid"]):
                return False
            if program == "exchange_manager":
                return bool(self.em_stats()["reconciled"])
            return True

        news: dict[str, dict[str, Any]] = {}

        def check() -> bool:
            for program in sorted(pending):
                try:
                    if program not in news:
                        status = answers(program)
                        if status is None:
                            continue
                        news[program] = status
                    if synced(program, news[program]):
                        pending.discard(program)
                        done[program] = time.monotonic() - t0
                except (CommandTimeout, KeyError):
                    continue
            return not pending

        wait_until(check, timeout, interval=0.02, message=lambda: f"not re-synced: {sorted(pending)}"
                   + d.diagnostics())

    def _em_reconciled_since(self, started: float) -> bool:
        """The exchange manager's latest reconciliation finished after the venue (re)started."""
        outcomes = _ask(self.d, "exchange_manager", "reconciliation")["outcomes"]
        return bool(outcomes) and all(o["ok"] and o["finished_at"] >= started for o in outcomes.values())

    # -- invariants ----------------------------------------------------------------------------------

    def check_all(self, ctx: CellContext) -> None:
        """Every invariant, after the fault; raise ``InvariantBroken`` naming each that failed."""
        cell = ctx.cell
        failures: list[str] = []
        checks: list[tuple[str, Callable[[CellContext], None]]] = [
            ("state", self.check_state),
            ("failsafe flat", self.check_failsafe_finished_flat),
            ("no trade in FAILSAFE", self.check_no_trade_in_failsafe),
            ("no duplicate id", self.check_no_duplicates),
            ("positions", self.check_positions),
            ("open orders", self.check_open_orders),
            ("record", self.check_record),
            ("streams", self.check_streams),
        ]
        for name, check in checks:
            try:
                check(ctx)
            except (AssertionError, CommandTimeout) as exc:
                failures.append(f"{name}: {exc}")
            FIGURES.invariants += 1
        if failures:
            FIGURES.failures.append(f"{self.name(cell)}: " + " | ".join(f[:300] for f in failures))
            raise InvariantBroken(f"{self.name(cell)}:\n  " + "\n  ".join(failures))
        FIGURES.faults_survived += len(cell.programs) if cell.fault != "supervisord_restart" else 1

    def check_state(self, ctx: CellContext) -> None:
        cell = ctx.cell
        # let a reaction to the fault (missing, connector down, a safety event) be journalled
        time.sleep(0.5)
        state = wait_until(lambda: self.state(), 20, ignore=(CommandTimeout,))
        rows = self.journal()[ctx.transitions_before:]
        happened = [(old, new) for _, _, old, new, _ in rows]
        assert state in cell.allowed, (f"state {state!r}, allowed {cell.allowed}; transitions "
                                       f"{[(o, n, r) for _, _, o, n, r in rows]}")
        if cell.transitions is not None:
            unexpected = [t for t in happened if t not in cell.transitions]
            assert not unexpected, f"transitions {unexpected} not allowed (allowed {cell.transitions}); " \
                                   f"{[(o, n, r) for _, _, o, n, r in rows]}"

    def check_failsafe_finished_flat(self, ctx: CellContext) -> None:
        """A session that ends in FAILSAFE (a failsafe cell, or one the fault sent there) ends flat."""
        if ctx.cell.state not in ("failsafe_mid", "failsafe_done") and self.state() != "failsafe":
            return
        wait_until(lambda: self.failsafe_pending() is None, 40, interval=0.1)
        wait_until(lambda: not self.venue_positions() and not self.venue_open_orders(), 15, interval=0.1,
                   ignore=(CommandTimeout,),
                   message=lambda: f"venue positions {self.venue_positions()} open {self.venue_open_orders()}")
        # A graceful stop of the whole daemon ended that session; the new one waits for `open`.
        assert self.state() == ("ready" if ctx.cell.fault == "supervisord_restart" else "failsafe")

    def check_no_trade_in_failsafe(self, ctx: CellContext) -> None:
        if ctx.failsafe_at_ns is None:
            return
        _, orders, _ = self.collector.streams()
        since = ctx.failsafe_at_ns
        # no order accepted after FAILSAFE began other than the sequence's flatten orders. An order
        # the exchange manager already held at the cell's start was opened before: the collector,
        # subscribed after the session opened, may first see such an order at its cancellation.
        opened = {cid: o for cid, o in orders.items()
                  if o[0] >= since and o[1] != "flatten" and cid not in ctx.em_orders_before}
        assert not opened, f"orders accepted during FAILSAFE: {opened}"
        self.ledger.record()
        grace_ns = int((SLOW_VENUE_MS / 1000 + 1.0) * NS)
        fills = sorted((f for inc in self.ledger.incarnations.values() for f in inc.fills.values()),
                       key=lambda f: f["ts_ns"])
        strategy = {cid: o[1] for cid, o in orders.items()}
        bad = []
        for f in fills:
            if f["ts_ns"] < since:
                continue
            if ctx.cell.state == "failsafe_done" and f["fill_id"] not in ctx.venue_fills_before:
                bad.append(f)  # the sequence was done and flat before the fault: nothing may trade
            elif f["ts_ns"] >= since + grace_ns and strategy.get(f["client_order_id"]) != "flatten":
                bad.append(f)
        assert not bad, f"fills at the venue during FAILSAFE: {bad[:5]}"

    def check_no_duplicates(self, ctx: CellContext) -> None:
        self.ledger.record()
        dup, examples = self.ledger.duplicates()
        new = dup - FIGURES.duplicates
        FIGURES.duplicates = dup
        assert dup == 0, f"{dup} duplicate client order id(s) at the venue (new here: {new}); e.g. {examples}"

    def check_positions(self, ctx: CellContext) -> None:
        wait_until(lambda: self.em_stats()["reconciled"], 20, interval=0.05, ignore=(CommandTimeout,))
        last: list[Any] = []

        def equal() -> bool:
            em, venue = self.em_positions(), self.venue_positions()
            last[:] = [em, venue]
            return set(em) == set(venue) and all(abs(em[s] - venue[s]) < 1e-6 for s in em)

        try:
            wait_until(equal, 10, interval=0.05, ignore=(CommandTimeout,))
        except WaitTimeout:
            FIGURES.position_mismatches += 1
            raise AssertionError(f"exchange manager {last[0]} != venue {last[1]} "
                                 f"(reconciliation: {_try(lambda: _ask(self.d, 'exchange_manager', 'reconciliation'))})")

    def check_open_orders(self, ctx: CellContext) -> None:
        """Open orders agree with the venue, as positions do: an order the venue holds open (in two
        answers, around the book's) is open in the book, and one the book holds open (sent over
        ``in_flight_grace_s`` ago) is open at the venue. Orders are placed and cancelled all the time
        by the strategies, so the comparison is asked again until it holds."""
        last: list[Any] = []

        def agree() -> bool:
            before = {o["client_order_id"] for o in self.venue_open_orders()}
            book = {o["client_order_id"]: o for o in self.em_orders() if o["status"] in OPEN_STATUSES}
            after = {o["client_order_id"] for o in self.venue_open_orders()}
            settled = time.time_ns() - 5 * NS
            unknown_to_book = (before & after) - set(book)
            unknown_to_venue = {cid for cid, o in book.items() if o["created_ns"] < settled} - (before | after)
            last[:] = [unknown_to_book, unknown_to_venue]
            return not unknown_to_book and not unknown_to_venue

        try:
            wait_until(agree, 15, interval=0.1, ignore=(CommandTimeout,))
        except WaitTimeout:
            raise AssertionError(f"open at the venue, not in the book: {sorted(last[0])[:5]}; open in the book, "
                                 f"not at the venue: {sorted(last[1])[:5]}") from None

    def check_record(self, ctx: CellContext) -> None:
        """Nothing the system sent is missing from its record: every order of ours the venue
        received since the cell began is in the exchange manager's journal (read from its file)."""
        self.ledger.record()
        path = self.d.state_dir / "exchange_manager.sqlite"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            journalled = {row[0] for row in db.execute("SELECT client_order_id FROM orders")}
        ours = {cid for inc in self.ledger.incarnations.values() for cid in inc.cids
                if cid not in ctx.venue_cids_before and not cid.startswith("outsider")}
        missing = ours - journalled
        assert not missing, f"{len(missing)} order(s) sent but not in the book of record: {sorted(missing)[:5]}"

    def check_streams(self, ctx: CellContext) -> None:
        """Every venue fill and order since the collector started reached it, or a gap was counted,
        or it was in flight at its publisher's kill -9 (counted apart). A fill reaches the exchange
        manager up to the view's ``report_delay_s`` after the venue's trade (0 for a venue that pushes
        its fills): fills that recent are judged at the next check, and the window of those a kill
        may take in flight is that much longer."""
        time.sleep(0.3)  # what the venue did just now has had the time to come through
        self.ledger.record()
        fills_seen, orders_seen, peer = self.collector.streams()
        delay = int(self.view.report_delay_s * NS)
        horizon = time.time_ns() - NS // 2
        start = self.collector.started_ns
        em_orders = {o["client_order_id"]: o for o in self.em_orders()}
        missing_fills, missing_orders, boundary = [], [], 0
        for inc in self.ledger.incarnations.values():
            for fill_id, f in inc.fills.items():
                if fill_id in self._verified_fills or f["ts_ns"] < start or f["ts_ns"] > horizon - delay:
                    continue
                if fill_id in fills_seen:
                    self._verified_fills.add(fill_id)
                elif self._near_kill(f["ts_ns"], self.em_down_ns, delay) or (
                        inc.killed_ns is not None and inc.killed_ns - NS - delay <= f["ts_ns"] <= inc.killed_ns):
                    boundary += 1
                    self._verified_fills.add(fill_id)
                else:
                    missing_fills.append(f)
            for cid in inc.cids:
                if cid in self._verified_orders:
                    continue
                if cid in orders_seen:
                    self._verified_orders.add(cid)
                    continue
                rec = em_orders.get(cid)
                if rec is None or rec["created_ns"] < start or rec["created_ns"] > horizon:
                    continue  # before the collector, or too old for the exchange manager's recent list
                if self._near_kill(rec["created_ns"], self.em_down_ns):
                    boundary += 1
                    self._verified_orders.add(cid)
                else:
                    missing_orders.append(cid)
        FIGURES.boundary_losses += boundary
        missing = len(missing_fills) + len(missing_orders)
        lost = int(peer.get("lost", 0))
        # A loss at the start of a restarted publisher's epoch is counted once the next message on
        # that topic arrives (its sequence number is then above 1): give the strategies' trading the time.
        deadline = time.monotonic() + 8.0
        while missing > lost and time.monotonic() < deadline:
            time.sleep(0.1)
            lost = int(self.collector.streams()[2].get("lost", 0))
        FIGURES.counted_gaps = lost
        assert missing <= lost, (
            f"{len(missing_fills)} fill(s) and {len(missing_orders)} order(s) never reached the subscriber of "
            f"the exchange manager's streams, only {lost} counted as lost in gaps (peer {peer}); "
            f"fills {missing_fills[:3]} orders {missing_orders[:3]}; relative to the exchange manager's "
            f"kills/stops (s): {[[round((k - f['ts_ns']) / NS, 3) for k in self.em_down_ns] for f in missing_fills[:3]]}")

    @staticmethod
    def _near_kill(ts_ns: int, kills: list[int], delay_ns: int = 0) -> bool:
        return any(k - NS - delay_ns <= ts_ns <= k + NS // 10 for k in kills)

    # -- one cell --------------------------------------------------------------------------------------

    def run_cell(self, cell: Cell) -> dict[str, float]:
        FIGURES.cases += 1
        try:
            ctx = self.prepare(cell.state)
        except BaseException as exc:
            FIGURES.failures.append(f"{self.name(cell)}: could not prepare the state: {str(exc)[:300]}")
            raise
        ctx.cell = cell
        try:
            if cell.fault == "kill9" or cell.fault == "kill9_pair":
                times = self.kill9(ctx, cell.programs)
            elif cell.fault == "restart":
                times = {cell.programs[0]: self.restart(ctx, cell.programs[0])}
            elif cell.fault == "supervisord_restart":
                self.restart_supervisord(ctx)
                times = {}
            else:
                raise ValueError(cell.fault)
        except WaitTimeout as exc:
            # not back and re-synced: still check every invariant, to say what broke
            resync = f"not back and re-synced within {RESYNC_TIMEOUT_S:g}s: {str(exc).splitlines()[0][:300]}"
            FIGURES.failures.append(f"{self.name(cell)}: {resync}")
            try:
                self.check_all(ctx)
            except InvariantBroken as broken:
                raise InvariantBroken(f"{resync}\n{broken}") from None
            raise InvariantBroken(f"{self.name(cell)}: {resync} (every invariant held)") from None
        self.check_all(ctx)
        return times


def expected(program: str | tuple[str, ...], state: str, fault: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(states allowed after the fault, transitions allowed to be journalled meanwhile) for a cell:
    the table in ``test_matrix.py``'s docstring, as code."""
    programs = program if isinstance(program, tuple) else (program,)
    only_orchestrator = programs == ("orchestrator",)
    if state == "ready":
        return ("ready",), ()
    if state in ("failsafe_mid", "failsafe_done"):
        return ("failsafe",), ()
    if state == "degraded":
        return ("degraded",), ()
    # live
    if only_orchestrator:
        return ("live",), ()
    # DEGRADED for a process missing (silent longer than missed_heartbeats x heartbeat_interval_s,
    # 0.4 s here) or, for the venue, a connector down / a reconciliation mismatch; a restart quicker
    # than that is legitimately not seen as missing, and the session stays LIVE.
    return ("live", "degraded"), (("live", "degraded"),)


__all__ = ["Cell", "FAULT_CONFIG", "FIGURES", "FaultHarness", "InvariantBroken", "MATRIX_PROGRAMS",
           "OPEN_STATUSES", "PEERS", "STATES", "expected"]
