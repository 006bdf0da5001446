"""The session's trading counters, as the orchestrator reports them (``stats``, metrics, reports).

Orders, rejects, fills, volume, fees and PnL are the exchange manager's session ledger
(``services/exchange_manager/session_ledger.py``): journalled there, so they survive its restarts,
and started from zero when it takes up a new session. Its heartbeat says which session they
count; until it is this one they are not reported as this session's (``counters_pending``).

Decisions are the engine's, which has no journal: an engine restarted within a session counts
again from zero, so the orchestrator adds what its earlier processes (epochs) counted, journalled in
``SessionCounters.engine_decisions_base``. (What an engine counted in its last heartbeat interval
before a kill -9 is lost: at most a quarter of a second of decisions.)
"""

from __future__ import annotations

from typing import Any

from services.orchestrator.components import Component
from proto.summaries import EngineSummary, ExchangeSummary
from services.orchestrator.journal import SessionCounters
from services.orchestrator.sequence_runner import Peer, Sequence, ask

MONEY = ("volume", "fees", "realized_pnl", "unrealized_pnl")
ASK_TIMEOUT_S = 0.3


def engine_decisions(engine: Component, counters: SessionCounters) -> tuple[int, bool]:
    """This session's decisions so far, and whether ``counters`` changed (to be journalled): an
    engine of a new epoch adds its predecessor's last count to the base."""
    stats = engine.summary(EngineSummary)
    if stats.session_id != counters.session_id or engine.epoch is None:
        return counters.engine_decisions_base + counters.engine_decisions_last, False
    changed = False
    if counters.engine_epoch != engine.epoch:
        if counters.engine_epoch is not None:
            counters.engine_decisions_base += counters.engine_decisions_last
        counters.engine_epoch = engine.epoch
        changed = True
    counters.engine_decisions_last = stats.decisions_made
    return counters.engine_decisions_base + counters.engine_decisions_last, changed


def trading_counters(exchange: Component, decisions: int, session_id: str) -> dict[str, Any]:
    """The ``stats`` keys that count trading in this session."""
    stats = exchange.summary(ExchangeSummary)
    ours = stats.session_id == session_id
    out: dict[str, Any] = {
        "decisions_made": decisions,
        "orders_submitted": stats.orders_submitted if ours else 0,
        "orders_rejected": stats.orders_rejected if ours else 0,
        "fills": stats.fills if ours else 0,
        **{key: getattr(stats, key) if ours else 0.0 for key in MONEY},
        "open_orders": stats.open_orders,
        "positions": stats.positions,
    }
    if not ours:
        out["counters_pending"] = (f"the exchange manager has not taken up session {session_id} yet "
                                   f"(it counts for {stats.session_id or 'no session'})")
    return out


def exchange_session(peer: Peer, exchange: Component, session_id: str
                     ) -> Sequence[tuple[dict[str, Any] | None, str]]:
    """The exchange manager's counters of ``session_id`` (per symbol and totals) and where they
    come from: asked now (``peer``: asked once, for ``ASK_TIMEOUT_S``), else its latest heartbeat if
    that counted this session (at a daemon stop it is stopping too), else None."""
    reply = yield from ask(Peer(peer.name, ASK_TIMEOUT_S, 0), "session_stats", {"session_id": session_id})
    if reply.ok:
        return reply.result, "the exchange manager's session counters"
    stats = exchange.summary(ExchangeSummary)
    if stats.session_id == session_id:
        symbols = stats.session_symbols
        totals = {key: sum(row[key] for row in symbols.values())
                  for key in ("orders", "rejected", "fills", *MONEY)}
        return ({"session_id": session_id, "symbols": symbols, "totals": totals},
                "the exchange manager's latest heartbeat (it did not answer: stopping too)")
    why = reply.detail if reply.answered else "no answer"
    return None, f"the exchange manager has no counters for this session ({why})"
