"""The incident report as a person on call at 3 a.m. reads it (Markdown).

In this order: what happened, in one sentence (the title); the outcome and times (UTC, ISO 8601);
what to do next, as the exact ``tradectl`` commands for the situation; what is left at the venue
(positions with quantity, mark, notional and unrealized PnL; open orders); the session's PnL at the
trigger and after the sequence; then the steps, the timeline, and the book at the trigger. Quantities and prices are rounded
to their instrument's lot and tick size, money to cents. The raw book before and after is in the
JSON file beside it. Text from outside is escaped (``services/log_escape.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proto.session import OPEN_ORDER_STATUSES
from services.log_escape import escape, md_cell
from services.orchestrator.report_format import Precision, money, utc

if TYPE_CHECKING:
    from services.orchestrator.incident import IncidentReport

EPSILON = 1e-9


def positions_left(book: dict[str, Any]) -> dict[str, dict[str, Any]]:
    positions = book.get("positions")
    if not isinstance(positions, dict):
        return {}
    return {s: p for s, p in positions.items() if isinstance(p, dict) and abs(p.get("qty", 0.0)) > EPSILON}


def orders_left(book: dict[str, Any]) -> list[dict[str, Any]]:
    orders = book.get("open_orders")
    return [o for o in orders if o.get("status") in OPEN_ORDER_STATUSES] if isinstance(orders, list) else []


def _known(book: dict[str, Any]) -> bool:
    """The book was read (the exchange manager answered)."""
    return isinstance(book.get("positions"), dict) and isinstance(book.get("open_orders"), list)


def headline(report: "IncidentReport") -> str:
    """What happened, in one sentence."""
    when = utc(report.started_at)
    done = report.finished_at is not None
    if report.ok:
        outcome = "new orders are stopped and the venue confirmed flat"
    elif not _known(report.after):
        outcome = "the book could not be read afterwards: the venue may still hold positions or orders"
    else:
        held = positions_left(report.after)
        orders = orders_left(report.after)
        outcome = (f"the venue is NOT verified flat ({len(held)} position(s), {len(orders)} open order(s) left)"
                   + ("" if done else "; the sequence keeps retrying"))
    return f"FAILSAFE at {when}: trading stopped because {report.trigger}; {outcome}."


def next_steps(report: "IncidentReport") -> list[str]:
    """The exact commands for the situation, most urgent first."""
    steps: list[str] = []
    stopped = [s for s in report.steps if s.name.startswith("stop new orders")]
    if stopped and not any(s.ok for s in stopped):
        steps.append("New orders were NOT confirmed stopped: check `tradectl status` (trading_enabled must be false for "
                     "engine and exchange_manager); if a process does not answer, stop it: "
                     "`supervisorctl -c deploy/supervisord.conf stop trading:engine`.")
    if report.storage:
        steps.append(f"Free disk space: {escape('; '.join(report.storage))}. Check with `df -h` on the state and log "
                     f"directories; `tradectl status` shows `journal.ok` and `disk` once writes land again.")
    if not report.ok:
        steps.append("Get flat: `tradectl flatten` runs a round of the failsafe sequence now (cancel, flatten, verify); "
                     "`tradectl positions` and `tradectl orders` show the book of record.")
        steps.append("Check the venue itself (its own site or API) for positions and open orders this system may not "
                     "see; cancel or close them there if `tradectl flatten` cannot.")
        steps.append("`tradectl status` shows `failsafe_pending` until the venue is verified flat; only then can the "
                     "session reset.")
    steps.append(f"Find the cause: the trigger above, `tradectl logs safety_events -n 50`, `tradectl logs "
                 f"live_trading -n 100`, and the incident JSON beside this file (session {report.session_id}).")
    if report.ok and not report.storage:
        steps.append("Flat and healthy: `tradectl reset` (FAILSAFE → READY), then `tradectl open` to trade again; "
                     "or `tradectl close` to end the session with its end-of-day report.")
    else:
        steps.append("Once flat (and the disk writable): `tradectl reset`, then `tradectl open`; or `tradectl close` "
                     "to end the session.")
    return steps


def _pnl(book: dict[str, Any]) -> tuple[float | None, float | None]:
    totals = (book.get("session") or {}).get("totals") if isinstance(book.get("session"), dict) else None
    if not isinstance(totals, dict):
        return None, None
    return totals.get("realized_pnl"), totals.get("unrealized_pnl")


def precision_of(report: "IncidentReport") -> Precision:
    rows: dict[str, Any] = {}
    for book in (report.before, report.after):
        session = book.get("session")
        if isinstance(session, dict):
            rows.update(session.get("symbols", {}))
    return Precision(rows)


def _book(book: dict[str, Any], precision: Precision, confirmed: bool) -> list[str]:
    """Positions (qty, mark, notional, unrealized PnL) and open orders, rounded."""
    if not _known(book):
        return [f"The exchange manager did not answer: nothing is known ({escape(str(book.get('error', '')))}). "
                f"Check the venue."]
    held, orders = positions_left(book), orders_left(book)
    if not held and not orders:
        return ["Nothing: no position and no open order in the book of record"
                + (" (the venue confirmed it)." if confirmed else ".")]
    lines: list[str] = []
    if held:
        lines += ["| symbol | qty | mark | notional | unrealized PnL (vs average price) |", "|---|---|---|---|---|"]
        for symbol, pos in sorted(held.items()):
            mark = pos.get("mark")
            notional = None if mark is None else abs(pos["qty"]) * mark
            lines.append(f"| {md_cell(symbol)} | {precision.qty(symbol, pos['qty'])} | {precision.price(symbol, mark)} | "
                         f"{money(notional)} | {money(pos.get('unrealized_pnl'))} |")
        lines.append("")
    if orders:
        lines += ["| order | symbol | side | qty | filled | limit | status |", "|---|---|---|---|---|---|---|"]
        for o in orders:
            symbol = str(o.get("symbol", ""))
            lines.append(f"| {md_cell(str(o.get('client_order_id', '')))} | {md_cell(symbol)} | {md_cell(str(o.get('side', '')))} | "
                         f"{precision.qty(symbol, o.get('qty'))} | {precision.qty(symbol, o.get('filled_qty'))} | "
                         f"{precision.price(symbol, o.get('limit_price'))} | {md_cell(str(o.get('status', '')))} |")
    return lines


def _pnl_table(report: "IncidentReport") -> list[str]:
    lines = ["| when | realized | unrealized | total |", "|---|---|---|---|"]
    for label, book in (("at the trigger", report.before), ("after the sequence", report.after)):
        realized, unrealized = _pnl(book)
        total = None if realized is None or unrealized is None else realized + unrealized
        lines.append(f"| {label} | {money(realized)} | {money(unrealized)} | {money(total)} |")
    return lines


def markdown(report: "IncidentReport", keep_first_steps: int) -> str:
    precision = precision_of(report)
    failed = sum(not s.ok for s in report.steps)
    outcome = ("trading stopped and flat at the venue" if report.ok else "NOT SAFE: see what is left and the steps below")
    if report.ok and failed:
        outcome += f" ({failed} step(s) failed and were retried)"
    lines = [
        f"# FAILSAFE incident, session {report.session_id}: {escape(headline(report))}",
        "",
        f"- Trigger: {escape(report.trigger)}",
        f"- Started: {utc(report.started_at)} (UTC)",
        f"- Finished: {utc(report.finished_at)}" + (" (UTC)" if report.finished_at is not None else " (still running)"),
        f"- Outcome: {outcome}",
        *([f"- Retry rounds after the first attempts: {report.retry_rounds}"
           + ("" if report.ok or report.finished_at is not None else " (still retrying)")] if report.retry_rounds else []),
        *([f"- Steps not listed (between the first {keep_first_steps} and the latest): {report.steps_omitted}"]
          if report.steps_omitted else []),
        "",
        "## What to do next",
        "",
        *[f"{n}. {step}" for n, step in enumerate(next_steps(report), 1)],
        "",
        "## After the sequence: what is left",
        "",
        *_book(report.after, precision, report.ok),
        "",
        "## Session PnL (realized + unrealized, counted from the session's start)",
        "",
        *_pnl_table(report),
        "",
        "## Steps: what the system did",
        "",
        "| step | ok | ms | detail |",
        "|---|---|---|---|",
        *[f"| {md_cell(s.name)} | {'yes' if s.ok else 'NO'} | {s.duration_ms:.1f} | {md_cell(s.detail)} |"
          for s in report.steps],
        "",
        "## Timeline (UTC; latest state changes and events)",
        "",
        *[f"- {utc(e.get('ts'))} {escape(str(e.get('what', '')))}" for e in report.timeline],
        "",
        "## Before: the book at the trigger",
        "",
        *_book(report.before, precision, False),
        "",
        "The book of record before and after the sequence, as read, is in the JSON file beside this one.",
        "",
    ]
    return "\n".join(lines)
