"""The end-of-day report and log archive, written when the market closes.

Report: JSON (for tools) and Markdown (for people) under ``logs/reports/``, written whenever a
session ends (close, shutdown, a stop of the daemon, a start under another configuration): why it
ended; per symbol the opening position and its mark, orders, rejects, fills, volume, fees, realized
and unrealized PnL of the session, the final position and mark; a summary that is the sum of that
table; safety events; and every state change of the session. Times in UTC, quantities and prices
to their instrument's lot and tick size.
Archive: the session's logs (``logs/live/*_<ts>.log``) as one tar.gz under ``logs/archive/``.
Text from outside (a transition's reason) is escaped in the Markdown, one line each.
"""

from __future__ import annotations

import json
import logging
import tarfile
import time
from pathlib import Path
from typing import Any

from services.log_escape import escape, md_cell
from services.orchestrator.failsafe import run_step
from services.orchestrator.components import Component
from services.orchestrator.journal import Journal, SessionCounters
from services.orchestrator.report_format import Precision, money, utc
from services.orchestrator.sequence_runner import Pause, Peer, Sequence, ask
from services.orchestrator.session_counters import exchange_session
from services.orchestrator.session_logs import SessionLogs
from services.orchestrator.state_machine import Transition

FLAT_POLL_S = 0.05  # a close waiting for flat asks for positions this often


def flatten_for_close(engine: Peer, exchange: Peer, timeout_s: float) -> Sequence[str]:
    """Stop the engine's decisions, flatten at the exchange manager, wait until flat."""
    yield from run_step(None, "disable engine", engine, "disable_trading", {"reason": "market close"})
    step, _ = yield from run_step(None, "flatten", exchange, "flatten")
    if not step.ok:
        return f"failed: {step.detail}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = yield from ask(exchange, "positions")
        positions = answer.result.get("positions", {})
        if all(abs(p["qty"]) < 1e-9 for p in positions.values()):
            return "flat"
        yield Pause(FLAT_POLL_S)
    return "NOT FLAT after timeout"


def build_report(session_id: str, reason: str, stats: dict[str, Any], exchange: dict[str, Any] | None,
                 source: str, transitions: list[Transition], *, started_at: float | None = None,
                 fingerprint: str = "") -> dict[str, Any]:
    """The session's report. Its per-symbol table is the exchange manager's session ledger (every
    order, reject and fill of the session, PnL counted from each opening position's mark), and the
    summary's trading figures are the sums of that table's columns, so the two always agree."""
    per_symbol: dict[str, dict[str, Any]] = dict((exchange or {}).get("symbols", {}))
    totals: dict[str, Any] = {key: stats.get(key) for key in (
        "session_duration", "decisions_made", "safety_events", "failsafe_activations")}
    for total, column in TOTALS:
        totals[total] = sum(row.get(column, 0) for row in per_symbol.values())
    return {
        "session_id": session_id,
        "fingerprint": fingerprint,
        "started_at": started_at,
        "written_at": time.time(),
        "ended_because": reason,
        "counters_source": source,
        "totals": totals,
        "per_symbol": per_symbol,
        "state_changes": [{"no": t.no, "ts": t.ts, "from": t.old.value, "to": t.new.value, "reason": t.reason}
                          for t in transitions],
    }


# (summary key, per-symbol column): each summary figure is its column's sum
TOTALS = (("orders_submitted", "orders"), ("orders_rejected", "rejected"), ("fills", "fills"),
          ("volume", "volume"), ("fees", "fees"), ("realized_pnl", "realized_pnl"),
          ("unrealized_pnl", "unrealized_pnl"))
MONEY_KEYS = frozenset({"volume", "fees", "realized_pnl", "unrealized_pnl"})


def write_report(report: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime(report["written_at"]))
    base = directory / f"eod_{stamp}_{report['session_id']}"
    json_path, md_path = base.with_suffix(".json"), base.with_suffix(".md")
    json_path.write_text(json.dumps(report, indent=2, default=str))
    md_path.write_text(_markdown(report))
    return json_path, md_path


def _markdown(report: dict[str, Any]) -> str:
    precision = Precision(report["per_symbol"])
    totals = report["totals"]

    def figure(key: str, value: Any) -> str:
        if key in MONEY_KEYS:
            return money(value)
        if key == "session_duration" and isinstance(value, (int, float)):
            return f"{value:,.1f} s"
        return escape(str(value))

    lines = [f"# End of day, session {escape(str(report['session_id']))}", ""]
    for label, key in (("Started", "started_at"), ("Ended", "written_at")):
        if report.get(key) is not None:
            lines.append(f"- {label}: {utc(report[key])} (UTC)")
    for label, key in (("Ended because", "ended_because"), ("Settings fingerprint", "fingerprint"),
                       ("Counters from", "counters_source")):
        if report.get(key):
            lines.append(f"- {label}: {escape(str(report[key]))}")
    lines += ["", "## Summary (each trading figure is the sum of its column below)", "",
              *[f"- {key.replace('_', ' ')}: {figure(key, value)}" for key, value in totals.items()], "",
              "## Per symbol", "",
              "| symbol | opening qty | opening mark | orders | rejected | fills | volume | fees | realized PnL "
              "| unrealized PnL | final qty | mark |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for symbol, row in sorted(report["per_symbol"].items()):
        lines.append(
            f"| {md_cell(symbol)} | {precision.qty(symbol, row.get('opening_qty', 0.0))} | "
            f"{precision.price(symbol, row.get('opening_mark'))} | {row.get('orders', 0)} | {row.get('rejected', 0)} | "
            f"{row.get('fills', 0)} | {money(row.get('volume', 0.0))} | {money(row.get('fees', 0.0))} | "
            f"{money(row.get('realized_pnl', 0.0))} | {money(row.get('unrealized_pnl', 0.0))} | "
            f"{precision.qty(symbol, row.get('final_qty', 0.0))} | {precision.price(symbol, row.get('mark'))} |")
    lines += ["", "## State changes (UTC)", ""]
    lines += [f"- {utc(c['ts'])} {c['from']} → {c['to']}: {escape(c['reason'])}" for c in report["state_changes"]]
    return "\n".join(lines) + "\n"


def write_session_end(log_dir: Path, logs: SessionLogs, journal: Journal, counters: SessionCounters, reason: str,
                      stats: dict[str, Any], exchange_peer: Peer, exchange: Component,
                      *, archive: bool = True) -> Sequence[dict[str, Any]]:
    """An ended session's report (and the archive of this orchestrator's session logs), with a line
    in the live log. A disk that refuses them is said in that line: ending is never refused."""
    counts, source = yield from exchange_session(exchange_peer, exchange, counters.session_id)
    report = build_report(counters.session_id, reason, stats, counts, source,
                          journal.transitions(counters.session_id, last=10_000), started_at=counters.started_at,
                          fingerprint=counters.fingerprint)
    try:
        json_path, md_path = write_report(report, log_dir / "reports")
        archived = (str(archive_logs(logs.files(), log_dir / "archive", f"session_{counters.session_id}"))
                    if archive else "not archived (they belong to an earlier start)")
    except OSError as exc:
        logs.live(f"Session {counters.session_id} ended ({reason}); end-of-day report NOT written: {exc}",
                  logging.ERROR, event="end_of_day", data={"session_id": counters.session_id, "error": str(exc)})
        return {"report": None, "error": str(exc)}
    logs.live(f"Session {counters.session_id} ended ({reason}): end-of-day report {json_path}; logs {archived}",
              event="end_of_day", data={"session_id": counters.session_id, "report": str(json_path),
                                        "archive": archived, "counters_source": source})
    return {"report": str(json_path), "report_md": str(md_path), "archive": archived}


def archive_logs(files: list[Path], directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for file in files:
            if file.exists():
                tar.add(file, arcname=file.name)
    return path
