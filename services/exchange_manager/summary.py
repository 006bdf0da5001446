"""What the exchange manager says of itself in its heartbeat and ``status`` (``ExchangeSummary``):
the session's counters, the gate, the connectors, the book of record's journal, and whether the book
agrees with its venues (what the orchestrator's gates read)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proto.summaries import BookJournal, ConnectorStats, ExchangeSummary, VenueUnknown

if TYPE_CHECKING:
    from services.exchange_manager.main import ExchangeManager


def summarize(em: ExchangeManager) -> ExchangeSummary:
    session = em.ledger.report(em.marks, em.instrument_steps)
    totals = session["totals"]
    return ExchangeSummary(
        **em.session.summary(),
        # The session's counters (session_ledger.py); positions are the account's holdings.
        session_id=em.ledger.session_id,
        orders_submitted=totals["orders"],
        orders_rejected=totals["rejected"],
        fills=totals["fills"],
        volume=totals["volume"],
        realized_pnl=totals["realized_pnl"],
        unrealized_pnl=totals["unrealized_pnl"],
        fees=totals["fees"],
        session_symbols=session["symbols"],
        foreign_rejects=em.foreign_rejects,
        duplicate_reports=em.book.duplicate_reports,
        fills_held=em.fill_order.held_total,
        fills_out_of_order=em.fill_order.applied_out_of_order,
        open_orders=len(em.book.open_orders()),
        positions={s: p.qty for s, p in em.positions.items()},
        gate={"mode": em.gate.mode, "passed": em.gate.passed, "refusals": dict(em.gate.refusals)},
        connectors={name: ConnectorStats(**c.get_stats()) for name, c in em.connectors.items()},
        reconciliations=em.reconciler.runs,
        stale_reconciliation_answers=em.reconciler.stale_answers,
        unasked_reconciliation_answers=em.reconciler.unasked_answers,
        journal=BookJournal(**em.writes.stats(), refused_orders=em.journal_refusals),
        # what must be known before the session may open: the book agrees with every venue (each
        # connector's own latest verdict), and every venue's instrument list is loaded since its
        # latest connection
        reconciled=em.reconciler.reconciled(em.connectors) and em.instruments.ready(),
        instruments=em.instruments.stats(),
        reconciliation=em.venue_watch.stats(),
        # What a venue holds that this system did not send: the orchestrator refuses reset/open meanwhile.
        venue_unknown=VenueUnknown(**em.venue_watch.venue_unknown()),
        tick_to_order=em.tick_to_order.snapshot(),
    )
