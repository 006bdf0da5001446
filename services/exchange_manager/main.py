"""``python -m services.exchange_manager``: connectors, the order book of record, positions and
PnL, and the pre-trade risk gate (the last hop before any venue).

Top to bottom: bind sockets; follow the session (fail closed); connect every configured venue;
mark positions from the router's market data; serve order commands through the gate; apply the
venues' execution reports and fills; reconcile on every (re)connection and continuously after
(``venue_watch.py``): what a venue holds that this system did not send is an execution anomaly.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import proto
from bus import NotConnected
from bus.ratelimit import RateLimitedLog
from proto.commands import OrderArgs
from proto.summaries import ExchangeSummary
from services.venues.base import ExecutionClient
from services.venues.registry import execution_client
from services.exchange_manager.fill_cursor import FillCursor
from services.exchange_manager.fill_order import FillOrder
from services.exchange_manager.handlers import build_handlers
from services.exchange_manager.instruments import InstrumentRegistry
from services.exchange_manager.journal import OrderJournal
from services.exchange_manager.journal_writes import JournalWrites
from services.exchange_manager.order_book import FOREIGN, OrderBook, OrderRecord
from services.exchange_manager.reconciliation import Outcome, Reconciler
from services.exchange_manager.risk_gate import RiskGate
from services.exchange_manager.session_ledger import SessionLedger
from services.exchange_manager.summary import summarize
from services.exchange_manager.strategy_positions import FLATTEN, StrategyPositions
from services.exchange_manager.venue_watch import VenueWatch
from services.latency import LatencyHistogram
from services.log_storm import kind as storm_kind
from services.positions import Position
from services.runtime import ServiceRuntime, configure_logging, load_settings_or_exit
from services.session_follower import SessionFollower
from services.settings import Settings

log = logging.getLogger("exchange_manager")
# A quote older than this when its order leaves is a replayed one (historic timestamp), not latency.
TICK_TO_ORDER_MAX_NS = 60 * 1_000_000_000


class Refused(Exception):
    """An order the gate (or a down connector) refused; the message is the reason."""


class ExchangeManager:
    def __init__(self, settings: Settings) -> None:
        cfg = self.cfg = settings.exchange_manager
        self.runtime = ServiceRuntime("exchange_manager", settings, stats=self.stats,
                                      state=lambda: self.session.state,
                                      trading_enabled=lambda: self.session.trading_allowed())
        self.session = SessionFollower(self.runtime, cfg.deadman_timeout_s, halt_on_critical=True)
        degraded_mode = settings.orchestrator.health.degraded_mode
        self.instruments = InstrumentRegistry(self.runtime.reactor, [c.name for c in cfg.connectors],
                                              cfg.default_connector, cfg.routes)
        self.gate = RiskGate(cfg.risk, self.session.trading_allowed, lambda: (
            "normal" if self.session.state != proto.OrchestratorState.DEGRADED or degraded_mode == "continue"
            else degraded_mode), instruments=lambda order: self.instruments.lookup(order.connector, order.symbol),
            unreconciled=self._unreconciled)
        # Connectors (re)connected whose venue has not been reconciled since: opening orders wait.
        self._reconciling: set[str] = {c.name for c in cfg.connectors}
        self.tick_to_order = LatencyHistogram()  # quote published at the venue → order sent to it
        # Ids carry this process's start time, so a restart never reuses one.
        self.book = OrderBook(f"{self.runtime.epoch // 1_000_000:x}")
        self.journal = OrderJournal(settings.paths.state_dir / cfg.journal_file, cfg.fsync_per_order)
        self.writes = JournalWrites(self._journal_failed, self._journal_recovered)
        self.journal_refusals = 0
        orders, self.positions, fill_ids = self.journal.load()
        self.strategy_positions = StrategyPositions(self.journal.load_strategy_positions())
        self.book.restore(orders, fill_ids)
        if orders:
            log.info("book of record restored: %d order(s), %d open; positions %s", len(orders),
                     len(self.book.open_orders()), {s: p.qty for s, p in self.positions.items()})
        self.marks: dict[str, float] = {}
        # This session's counters (the book's positions carry over; these start again each session).
        self.ledger = self.journal.load_ledger() or SessionLedger(None)
        self.session.on_session(lambda _session_id: self._open_session())
        self.book.on_rejected = lambda record: self.ledger.rejected(record.symbol)
        self.foreign_rejects = 0
        self._foreign_log = RateLimitedLog(log)
        self.reconciler = Reconciler(self.book, self.positions, in_flight_grace_s=cfg.in_flight_grace_s,
                                     apply_fill=self.on_fill, report=self._on_reconciled,
                                     page_size=cfg.reconcile_page_size, cursors=self.journal.load_cursors(),
                                     save_cursor=self._save_cursor,
                                     owner=cfg.connector_for)
        self.connectors: dict[str, ExecutionClient] = {
            c.name: execution_client(c, self.runtime, self) for c in cfg.connectors}
        self._warn_unmanaged()
        self.fill_order = FillOrder(self.reconciler.cursor, self._apply_fill, self._ask_fills_after,
                                    self.runtime.reactor.call_later)
        self.venue_watch = VenueWatch(self.runtime, self.reconciler, self.book, self.connectors, cfg,
                                      foreign_positions=lambda: self.strategy_positions.of(FOREIGN))
        self._market_data = self.runtime.subscribe(["data_router"], [proto.topics.MARKET_DATA_PREFIX],
                                                   self._on_market_data, read_every_s=cfg.marks_read_every_s)
        self.runtime.add_handlers(build_handlers(self))
        self.runtime.reactor.call_every(1.0, lambda: self.writes.error is not None and self.writes.retry())
        self.session.on_state(self._on_session_state)
        for connector in self.connectors.values():
            connector.connect()

    # -- orders ----------------------------------------------------------------------------------

    def submit(self, args: OrderArgs) -> OrderRecord:
        """Check ``args`` at the gate and send it to its symbol's venue; raises ``Refused`` with the
        reason otherwise."""
        name = self.cfg.connector_for(args.symbol)
        if args.connector and args.connector != name:  # its position is kept, and reconciled, at one venue
            self._refuse(args, "connector", f"{args.symbol} trades through connector {name!r}, "
                                            f"not {args.connector!r} (exchange_manager.routes)")
        connector = self.connectors[name]
        self._market_data.drain(self._on_market_data)  # the marks as of now (``marks_read_every_s``)
        position = self.positions.get(args.symbol, Position()).qty
        same_side = self._working(args.symbol, args.side)
        refusal = self.gate.check(args, position, same_side, self.marks.get(args.symbol), self.gross_exposure())
        if refusal is not None:
            self._refuse(args, *refusal)
        record = self.book.make(args, name)
        self.ledger.order(args.symbol)
        # A disk that refuses writes refuses an opening order; a reducing one (a flatten) goes anyway.
        reducing = self.gate.reduces(args, position, same_side)
        if not reducing and self.writes.failing:
            self.ledger.order(args.symbol, -1)
            self._refuse(args, "journal_unavailable", self._journal_refusal())
        # The order leaves first; what can wait (journal, publish) follows in this same callback.
        # Durability (docs/architecture.md, "The order path"): this loop applies the venue's reports,
        # so none can be applied before the journal holds the order; a crash between the send and
        # the write leaves an order the book lacks, which the next reconciliation adopts and
        # reports as an anomaly (fail closed), never a lost one.
        self.book.add(record)
        try:
            connector.submit(record.order)
        except NotConnected as exc:
            self.book.reject(record, str(exc))
            self._record(record)
            raise Refused(str(exc)) from None
        if args.origin_ts_ns:
            since_tick = time.time_ns() - args.origin_ts_ns
            if 0 <= since_tick < TICK_TO_ORDER_MAX_NS:  # a replayed quote carries a historic time
                self.tick_to_order.observe_ns(since_tick)
        if not self.writes.write(("order", record.client_order_id),
                                 lambda: self.journal.save_order(record, self.ledger)) and not reducing:
            # Its write is held (retried, and the failure takes the session to FAILSAFE), but an
            # opening order needs its record: it is cancelled at once.
            self.journal_refusals += 1
            log.error("order %s sent as its record failed to be written: cancelling it", record.client_order_id)
            try:
                self.cancel(record.client_order_id)
            except Refused as exc:  # the connector dropped meanwhile: the failsafe's cancel_all follows
                log.error("cancel of %s: %s", record.client_order_id, exc)
        self._publish_order(record)
        return record

    def _refuse(self, args: OrderArgs, kind: str, reason: str) -> None:
        log.warning("order refused (%s): %s %g %s of %s: %s", kind, args.side.value, args.qty, args.symbol,
                    args.strategy or "-", reason, extra=storm_kind(f"order_refused.{kind}"))
        self.runtime.publisher.publish(proto.topics.GOVERNANCE, proto.GovernanceEvent(
            kind=f"order_refused.{kind}", reason=reason, symbol=args.symbol,
            detail={"side": args.side.value, "qty": args.qty, "strategy": args.strategy}))
        self.book.rejected += 1
        self.ledger.rejected(args.symbol)
        self.writes.write(("ledger", ""), lambda: self.journal.save_ledger(self.ledger))
        if kind == "journal_unavailable":
            self.journal_refusals += 1
        raise Refused(reason)

    def _journal_refusal(self) -> str:
        return (f"the book of record cannot be written ({self.writes.error}): only orders that reduce a "
                f"position are sent until the disk takes writes again")

    def _journal_failed(self, error: str) -> None:
        """Critical: the session must not trade on with a book it cannot keep (→ FAILSAFE, whose
        flatten still goes: see ``journal_writes.py``)."""
        self.runtime.publisher.publish(proto.topics.SAFETY, proto.SafetyEvent(
            event_type=proto.SafetyEventType.STATE_DISK, severity=proto.Severity.CRITICAL, symbol="*",
            message=f"the exchange manager's book of record cannot be written: {error}"))

    def _journal_recovered(self, held: int) -> None:
        self.runtime.publisher.publish(proto.topics.GOVERNANCE, proto.GovernanceEvent(
            kind="journal_recovered", reason=f"book of record written again: {held} held write(s) on disk"))

    def _working(self, symbol: str, side: proto.Side) -> float:
        """Quantity still to reach the position on one side of a symbol: open orders not being
        cancelled, and orders the venue reported filled whose fills are still on their way (without
        them, a flatten between the report and the fill would flatten twice and reverse). Only
        orders of a connector this process runs: one of a connector the settings no longer name can
        reach no position here (its fills could not arrive), and counted it would make every flatten
        of its side short, for good (``_warn_unmanaged``)."""
        working = [o for o in self.book.open_orders(symbol) if not o.cancel_requested]
        working += self.book.awaiting_fills(symbol)
        connectors = self.connectors
        return sum(o.order.qty - o.filled_qty for o in working if o.order.side == side
                   and o.order.connector in connectors)

    def _warn_unmanaged(self) -> None:
        """Open orders in the book on connectors the settings no longer name (the state directory
        was used with other venue settings): nothing here can cancel them, reconcile them or hear
        their fills. Said once at start, each named, for an operator to check at that venue."""
        for record in self.book.open_orders():
            if record.order.connector not in self.connectors:
                log.warning("order %s (%s %g %s) is open in the book on connector %r, which the settings no longer "
                            "name: nothing here manages it; check that venue (it is not counted as working)",
                            record.client_order_id, record.order.side.value, record.order.qty, record.order.symbol,
                            record.order.connector)

    def cancel(self, client_order_id: str) -> None:
        record = self.book.orders.get(client_order_id)
        if record is None or not record.status.is_open:
            raise Refused(f"no open order {client_order_id}")
        try:
            self._connector(record.connector).cancel(client_order_id)
        except NotConnected as exc:
            raise Refused(str(exc)) from None
        record.cancel_requested = True

    def cancel_all(self, symbol: str | None) -> int:
        return sum(self._cancel_all_at(connector, symbol) for connector in self.connectors.values())

    def _cancel_all_at(self, connector: ExecutionClient, symbol: str | None) -> bool:
        try:
            connector.cancel_all(symbol)
        except NotConnected:
            log.warning("cancel_all: connector %s not connected", connector.name)
            return False
        for record in self.book.open_orders(symbol):
            if record.order.connector == connector.name and record.order.strategy != FLATTEN:
                record.cancel_requested = True
        return True

    def _on_session_state(self, state: proto.OrchestratorState, before: proto.OrchestratorState | None) -> None:
        """FAILSAFE learned with nothing known before (this process has just started, or forgot after a
        stall): the orchestrator's sequence may have lost its cancels with the process before this one
        (killed in the middle), and its next round waits for a reply that process will never send.
        Cancel at once everywhere connected (a connector still connecting: ``on_connected``)."""
        if state == proto.OrchestratorState.FAILSAFE and before is None:
            for connector in self.connectors.values():
                if connector.is_connected_check():
                    self._cancel_in_failsafe(connector, "the first word heard from the orchestrator")

    def _cancel_in_failsafe(self, connector: ExecutionClient, why: str) -> None:
        """A step toward safety the exchange manager takes by itself: in FAILSAFE no order of ours may
        rest at a venue (the orchestrator's own cancels follow; a second cancel finds nothing)."""
        log.warning("session in FAILSAFE (%s): cancelling every open order at %s", why, connector.name)
        self._cancel_all_at(connector, None)

    def flatten(self, symbol: str | None, cancel_first: bool = True) -> list[str]:
        """Cancel open orders (unless the caller just did), then a reduce-only market order against
        every position, less what the orders still working on its side will take off (earlier
        flatten orders, an order reported filled whose fills are on their way), as the gate counts
        them: flattening twice (a retry, a slow venue) never reverses a position, and a flatten is
        never sized so that the gate refuses it as not reducing. A symbol refused does not keep the
        others from being flattened."""
        if cancel_first:
            self.cancel_all(symbol)
        sent, refused = [], []
        for sym, pos in list(self.positions.items()):
            if (symbol is None or sym == symbol) and abs(pos.qty) > 1e-9:
                side = proto.Side.SELL if pos.qty > 0 else proto.Side.BUY
                qty = abs(pos.qty) - self._working(sym, side)
                if qty <= 1e-9:
                    continue
                try:
                    record = self.submit(OrderArgs(symbol=sym, side=side, qty=qty, reduce_only=True,
                                                   strategy=FLATTEN))
                except Refused as exc:  # one symbol refused must not leave the others' positions open
                    refused.append(f"{sym}: {exc}")
                    continue
                sent.append(record.client_order_id)
        if refused:
            raise Refused(f"flatten refused for {'; '.join(refused)} (sent: {', '.join(sent) or 'none'})")
        return sent

    def _connector(self, name: str) -> ExecutionClient:
        connector = self.connectors.get(name)
        if connector is None:
            raise Refused(f"unknown connector {name!r}")
        return connector

    # -- what the venues report (ConnectorEvents) ------------------------------------------------

    def on_order_update(self, update: proto.OrderUpdate) -> None:
        if update.status is proto.OrderStatus.REJECTED and update.client_order_id not in self.book.orders:
            # Rejected at the venue, never sent by this book (which holds every order of ours
            # before it leaves): a peer's order, behind our back. It holds nothing, so it is not
            # adopted: the book, and the safety process's reject ratio, are about our orders.
            self.foreign_rejects += 1
            self._foreign_log.warning("foreign_reject", f"the venue rejected an order this book never sent: "
                                                        f"{update.client_order_id} {update.symbol}: {update.reason}")
            return
        known = update.client_order_id in self.book.orders
        # None: the same step again (the venue's reply and its stream both report it), counted
        if (record := self.book.apply_update(update)) is not None:
            self._record(record)
        if not known:
            self.venue_watch.foreign_order(update)

    def on_fill(self, fill: proto.Fill) -> None:
        connector = self.connectors.get(fill.connector)
        self.fill_order.arrive(fill, connector.venue_session if connector else None)

    def _ask_fills_after(self, name: str, after_seq: int) -> None:
        """A hole in a venue's fill numbers: its page of the fills after ``after_seq`` fills it."""
        connector = self.connectors[name]
        session = connector.venue_session

        def on_page(page: proto.FillPage | None) -> None:
            if page is not None and page.session == session:
                for fill in page.fills:
                    self.on_fill(fill)
                self.fill_order.answered(name)

        connector.fills_since(after_seq, self.cfg.reconcile_page_size, on_page)

    def _apply_fill(self, fill: proto.Fill) -> None:
        known = self.book.orders.get(fill.client_order_id)
        record = self.book.apply_fill(fill)
        connector = self.connectors.get(fill.connector)
        self.reconciler.heard(fill.connector, connector.venue_session if connector else None, fill)
        if record is None:
            return  # already applied
        position = self.positions.setdefault(fill.symbol, Position())
        self.ledger.fill(fill.symbol, fill.side.sign, fill.qty, fill.price, fill.fee, position.avg_price)
        position.apply_fill(fill.side.sign, fill.qty, fill.price, fill.fee)
        strategies = self.strategy_positions.apply(record.strategy, fill.symbol, fill.side.sign * fill.qty,
                                                   account_after=position.qty)
        cursor = None
        if fill.venue_seq:  # the cursor's numbers now: a write held by a failing disk must not claim later fills
            live = self.reconciler.cursor(fill.connector)
            cursor = (fill.connector, live.session, live.applied)
        self.writes.write(("fill", fill.fill_id),
                          lambda: self.journal.save_fill(fill, record, position, strategies, cursor=cursor,
                                                         ledger=self.ledger))
        self.runtime.publisher.publish(proto.topics.FILLS, proto.Fill(
            fill_id=fill.fill_id, client_order_id=fill.client_order_id, symbol=fill.symbol, side=fill.side,
            qty=fill.qty, price=fill.price, fee=fill.fee, ts_ns=fill.ts_ns, strategy=record.strategy,
            connector=record.connector))
        self._publish_order(record)
        if known is None or known.strategy == FOREIGN:
            self.venue_watch.foreign_fill(fill)

    def _save_cursor(self, name: str, cursor: FillCursor) -> None:
        session, applied = cursor.session, cursor.applied  # as they are now, not when a held write lands
        self.writes.write(("cursor", name), lambda: self.journal.save_cursor(name, session, applied))

    def on_connected(self, connector: ExecutionClient) -> None:
        self._reconciling.add(connector.name)
        self.instruments.load(connector)
        if self.session.state == proto.OrchestratorState.FAILSAFE:
            self._cancel_in_failsafe(connector, f"{connector.name} (re)connected")
        self.venue_watch.request(connector)

    def on_in_doubt(self, connector: ExecutionClient, client_order_id: str) -> None:
        log.warning("no answer from %s for order %s: reconciling", connector.name, client_order_id)
        self.venue_watch.request(connector)

    def known_orders(self, connector: str) -> dict[str, str]:
        return self.book.venue_order_ids(connector)

    def fills_resume_ns(self, connector: str) -> dict[str, int]:
        return self.book.last_filled_ns(connector)

    def _unreconciled(self, order: OrderArgs) -> str | None:
        name = self.cfg.connector_for(order.symbol)
        if name not in self._reconciling:
            return None
        return (f"connector {name} has (re)connected and its venue is not reconciled since: the positions may "
                f"lack fills made meanwhile; only reducing orders pass until it is")

    def _on_reconciled(self, outcome: Outcome) -> None:
        if outcome.ok:
            self._reconciling.discard(outcome.connector)
        for cid in outcome.adopted + list(outcome.resolved):
            if cid in self.book.orders:
                self._record(self.book.orders[cid])
        if outcome.position_mismatches:
            corrected = {s: self.positions[s] for s in outcome.position_mismatches}
            for symbol, position in corrected.items():
                self.ledger.corrected(symbol, position.qty)
            self.writes.write(("positions", ",".join(sorted(corrected))), lambda: self.journal.save_positions(corrected))
            self.writes.write(("ledger", ""), lambda: self.journal.save_ledger(self.ledger))
        changed = bool(outcome.adopted or outcome.resolved or outcome.position_mismatches)
        # A clean periodic run is not news; a stale answer is a race, counted and asked again.
        level = logging.WARNING if outcome.position_mismatches or not (outcome.ok or outcome.stale) else (
            logging.INFO if changed or outcome.run == 1 else logging.DEBUG)
        log.log(level, "reconciliation %d with %s: ok=%s adopted=%s resolved=%s position mismatches=%s "
                "in %.1f ms (%d fill page(s), largest answer %d bytes) %s", outcome.run, outcome.connector,
                outcome.ok, outcome.adopted, outcome.resolved, outcome.position_mismatches, outcome.duration_ms,
                outcome.fill_pages, outcome.largest_reply_bytes, outcome.error)
        self.venue_watch.on_outcome(outcome)
        self._open_session()
        if changed or not (outcome.ok or outcome.stale):
            self.runtime.publisher.publish(proto.topics.GOVERNANCE, proto.GovernanceEvent(
                kind="reconciliation", reason=outcome.error or "book of record corrected from the venue",
                detail={"adopted": outcome.adopted, "resolved": outcome.resolved,
                        "position_mismatches": {s: list(v) for s, v in outcome.position_mismatches.items()}}))

    def _record(self, record: OrderRecord) -> None:
        self.writes.write(("order", record.client_order_id), lambda: self.journal.save_order(record, self.ledger))
        self._publish_order(record)

    def _publish_order(self, record: OrderRecord) -> None:
        self.runtime.publisher.publish(proto.topics.ORDERS, record.message())

    def _on_market_data(self, _topic: str, env: proto.Envelope) -> None:
        body = env.body
        if isinstance(body, proto.Quote):
            self.marks[body.symbol] = (body.bid + body.ask) / 2
        elif isinstance(body, proto.Trade):
            self.marks[body.symbol] = body.price
        else:
            return
        self.ledger.mark(body.symbol, self.marks[body.symbol])

    # -- the session -----------------------------------------------------------------------------

    def _open_session(self) -> None:
        """A new session (the orchestrator's differs from the ledger's) opens a new ledger, once
        the book is reconciled: its opening positions are then the venue's, not a journal's that a
        reconciliation is about to correct. The orchestrator does not open a session before the
        exchange manager reports it (``session_id`` in ``stats``)."""
        session_id = self.session.session_id
        if session_id is None or session_id == self.ledger.session_id or not self._book_reconciled():
            return
        ended = self.ledger
        self.ledger = SessionLedger.open(session_id, self.positions, self.marks)
        self.writes.write(("ledger", ""), lambda: self.journal.save_ledger(self.ledger))
        log.info("session %s: counters start from zero (session %s ended with %s); opening positions %s",
                 session_id, ended.session_id, ended.report(self.marks)["totals"],
                 {s: (r.opening_qty, r.opening_mark) for s, r in self.ledger.rows.items()})

    def _book_reconciled(self) -> bool:
        return self.reconciler.reconciled(self.connectors)

    def session_report(self, session_id: str = "") -> dict[str, Any] | None:
        """The counters of the current session, or of ``session_id`` (an ended one, from the journal)."""
        if not session_id or session_id == self.ledger.session_id:
            return self.ledger.report(self.marks, self.instrument_steps)
        ledger = self.journal.load_ledger(session_id)
        return None if ledger is None else ledger.report({}, self.instrument_steps)

    def instrument_steps(self, symbol: str) -> tuple[float | None, float | None]:
        """The symbol's tick and lot size (None while unknown): the reports round to them."""
        instrument, _ = self.instruments.lookup("", symbol)
        return (None, None) if instrument is None else (instrument.tick_size, instrument.lot_size)

    # -- reporting -------------------------------------------------------------------------------

    def gross_exposure(self) -> float:
        return sum(abs(p.qty) * self.marks.get(s, p.avg_price) for s, p in self.positions.items())

    def position_table(self) -> dict[str, dict[str, float | None]]:
        return {s: {**p.to_dict(), "mark": self.marks.get(s), "unrealized_pnl": p.unrealized(self.marks.get(s))}
                for s, p in self.positions.items()}

    def stats(self) -> ExchangeSummary:
        return summarize(self)

    def run(self) -> None:
        try:
            self.runtime.run()
        finally:
            self.journal.close()


def main() -> None:
    settings = load_settings_or_exit("exchange_manager")
    configure_logging(settings.logs)
    ExchangeManager(settings).run()
