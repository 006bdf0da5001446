"""The end-of-day report and log archive, written when the market closes.

Report: JSON (for tools) and Markdown (for people) under ``logs/reports/``: orders, fills, volume,
fees and realized PnL per symbol, safety events, and every state change of the session.
Archive: the session's logs (``logs/live/*_<ts>.log``) as one tar.gz under ``logs/archive/``.
Text from outside (a transition's reason) is escaped in the Markdown, one line each.
"""

from __future__ import annotations

import json
import tarfile
import time
from pathlib import Path
from typing import Any

from bus import CommandClient, CommandTimeout
from services.log_escape import escape, md_cell
from services.orchestrator.failsafe import run_step
from services.orchestrator.state_machine import Transition


def ask(client: CommandClient, command: str) -> dict[str, Any]:
    """A query's result, or ``{}`` if the service refused or did not answer."""
    try:
        reply = client.call(command)
    except CommandTimeout:
        return {}
    return reply.result if reply.ok else {}


def flatten_for_close(engine: CommandClient, exchange: CommandClient, timeout_s: float) -> str:
    """Stop the engine's decisions, flatten at the exchange manager, wait until flat."""
    run_step(None, "disable engine", engine, "disable_trading", {"reason": "market close"})
    step, _ = run_step(None, "flatten", exchange, "flatten")
    if not step.ok:
        return f"failed: {step.detail}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        positions = ask(exchange, "positions").get("positions", {})
        if all(abs(p["qty"]) < 1e-9 for p in positions.values()):
            return "flat"
        time.sleep(0.05)
    return "NOT FLAT after timeout"


def build_report(session_id: str, stats: dict[str, Any], positions: dict[str, dict[str, Any]],
                 orders: list[dict[str, Any]], transitions: list[Transition]) -> dict[str, Any]:
    per_symbol: dict[str, dict[str, Any]] = {}
    for order in orders:
        row = per_symbol.setdefault(order["symbol"], {"orders": 0, "filled_orders": 0, "rejected": 0})
        row["orders"] += 1
        row["filled_orders"] += order["status"] == "filled"
        row["rejected"] += order["status"] == "rejected"
    for symbol, pos in positions.items():
        row = per_symbol.setdefault(symbol, {"orders": 0, "filled_orders": 0, "rejected": 0})
        row.update(volume=pos["volume"], fees=pos["fees"], realized_pnl=pos["realized_pnl"],
                   unrealized_pnl=pos["unrealized_pnl"], final_qty=pos["qty"])
    totals = {key: stats.get(key) for key in (
        "session_duration", "decisions_made", "orders_submitted", "orders_rejected", "fills",
        "safety_events", "failsafe_activations")}
    # Money from the book of record as of now, not from the last heartbeat's summary.
    for key in ("volume", "fees", "realized_pnl", "unrealized_pnl"):
        totals[key] = sum(pos[key] for pos in positions.values())
    return {
        "session_id": session_id,
        "written_at": time.time(),
        "totals": totals,
        "per_symbol": per_symbol,
        "state_changes": [{"no": t.no, "ts": t.ts, "from": t.old.value, "to": t.new.value, "reason": t.reason}
                          for t in transitions],
    }


def write_report(report: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(report["written_at"]))
    base = directory / f"eod_{stamp}_{report['session_id']}"
    json_path, md_path = base.with_suffix(".json"), base.with_suffix(".md")
    json_path.write_text(json.dumps(report, indent=2, default=str))
    totals = report["totals"]
    lines = [f"# End of day, session {escape(str(report['session_id']))}", "",
             *[f"- {key.replace('_', ' ')}: {escape(str(value))}" for key, value in totals.items()], "",
             "## Per symbol", "", "| symbol | orders | filled | rejected | volume | fees | realized PnL | final qty |",
             "|---|---|---|---|---|---|---|---|"]
    for symbol, row in sorted(report["per_symbol"].items()):
        lines.append(f"| {md_cell(symbol)} | {row['orders']} | {row['filled_orders']} | {row['rejected']} | "
                     f"{row.get('volume', 0):,.2f} | {row.get('fees', 0):,.2f} | {row.get('realized_pnl', 0):,.2f} | "
                     f"{row.get('final_qty', 0):g} |")
    lines += ["", "## State changes", ""]
    lines += [f"- {time.strftime('%H:%M:%S', time.localtime(c['ts']))} {c['from']} → {c['to']}: {escape(c['reason'])}"
              for c in report["state_changes"]]
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


def archive_logs(files: list[Path], directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for file in files:
            if file.exists():
                tar.add(file, arcname=file.name)
    return path
