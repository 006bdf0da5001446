"""The settings fingerprint, the report formats, the end-of-day summary against its table, and the
incident report's sections, rendered from crafted data (the end-to-end FAILSAFE test checks a real one)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from proto import OrchestratorState as S
from services.orchestrator.end_of_day import build_report, write_report
from services.orchestrator.incident import IncidentReport, Step
from services.orchestrator.incident_render import headline, next_steps
from services.orchestrator.report_format import Precision, money, utc
from services.orchestrator.session_fingerprint import fingerprint
from services.orchestrator.session_lifecycle import configuration_change, stop_verdict
from services.orchestrator.state_machine import Transition
from services.settings import Settings

RAW_FLOAT = re.compile(r"\d\.\d{9,}")
ROW = {"tick_size": 0.01, "lot_size": 1e-05}


def test_the_fingerprint_follows_trading_settings_only() -> None:
    base = Settings()
    same = Settings(paths={"run_dir": "/elsewhere"}, bus={"heartbeat_interval_s": 0.2, "command_timeout_s": 2.0},
                    orchestrator={"metrics_port": 0, "failsafe": {"webhook_url": "http://127.0.0.1:1/x"}},
                    session={"resume_after_stop": True})
    assert fingerprint(same) == fingerprint(base)
    for changed in (Settings(exchange_manager={"risk": {"max_order_qty": 8.0}}),
                    Settings(engine={"strategies": []}),
                    Settings(orchestrator={"health": {"max_daily_loss": 100.0}}),
                    Settings(session={"clock": "wall"})):
        assert fingerprint(changed) != fingerprint(base)
    assert re.fullmatch(r"[0-9a-f]{12}", fingerprint(base))
    assert configuration_change("", "abc") is None  # a journal older than fingerprints: resumed
    assert configuration_change("abc", "abc") is None
    assert "abc → def" in str(configuration_change("abc", "def"))


def test_outside_supervisord_a_stop_never_ends_the_session() -> None:
    verdict = stop_verdict({}, resume_after_stop=False)
    assert not verdict.end and "stays open" in verdict.line


def test_a_supervised_stop_with_no_supervisord_to_ask_keeps_the_session_and_says_so(tmp_path: Path) -> None:
    env = {"SUPERVISOR_ENABLED": "1", "SUPERVISOR_SERVER_URL": f"unix://{tmp_path}/none.sock"}
    verdict = stop_verdict(env, resume_after_stop=False, timeout_s=0.5)
    assert not verdict.end and "unknown" in verdict.line and "resumes" in verdict.line


def test_figures_are_rounded_to_what_they_are() -> None:
    precision = Precision({"ETH-USD": {"tick_size": 0.01, "lot_size": 0.0001}})
    assert precision.qty("ETH-USD", -0.009999999999999997) == "-0.01"
    assert precision.qty("ETH-USD", 1e-17) == "0"
    assert precision.price("ETH-USD", 3000.15974464) == "3000.16"
    assert money(-0.004) == "0.00" and money(-1234.567) == "-1,234.57"
    assert utc(0.5) == "1970-01-01T00:00:00.500Z"


def test_the_end_of_day_summary_is_the_sum_of_its_table(tmp_path: Path) -> None:
    symbols = {
        "BTC-USD": {**ROW, "opening_qty": 0.01, "opening_mark": 40_000.0, "orders": 3, "rejected": 1, "fills": 2,
                    "volume": 1200.3, "fees": 0.12, "realized_pnl": -0.009999999999999997,
                    "unrealized_pnl": 2.5, "final_qty": 0.03, "mark": 40_083.333333},
        "SOL-USD": {**ROW, "lot_size": 0.001, "opening_qty": 0.0, "opening_mark": None, "orders": 2, "rejected": 0,
                    "fills": 2, "volume": 600.0, "fees": 0.06, "realized_pnl": 1.94, "unrealized_pnl": 0.0,
                    "final_qty": 0.0, "mark": 150.0},
    }
    now = time.time()
    report = build_report("s1", "operator shutdown", {"decisions_made": 7, "session_duration": 60.0},
                          {"symbols": symbols}, "the exchange manager's session counters",
                          [Transition(1, now, S.LIVE, S.SHUTDOWN, "operator shutdown")], started_at=now - 60,
                          fingerprint="f4df2ab575fa")
    totals = report["totals"]
    assert (totals["orders_submitted"], totals["orders_rejected"], totals["fills"]) == (5, 1, 4)
    assert totals["realized_pnl"] == pytest.approx(1.93) and totals["volume"] == pytest.approx(1800.3)
    json_path, md_path = write_report(report, tmp_path)
    assert json.loads(json_path.read_text())["totals"] == totals
    md = md_path.read_text()
    assert not RAW_FLOAT.search(md), md
    assert "- realized pnl: 1.93" in md and "| BTC-USD | 0.01 | 40000 | 3 | 1 | 2 |" in md
    assert re.search(r"Started: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \(UTC\)", md)


def _report(ok: bool, after: dict, storage: list[str] | None = None, finished: bool = True) -> IncidentReport:
    now = time.time()
    session = {"symbols": {"ETH-USD": {"tick_size": 0.01, "lot_size": 0.0001}},
               "totals": {"realized_pnl": -0.009999999999999997, "unrealized_pnl": 12.3456}}
    report = IncidentReport("s9", "critical safety event: price jump 25% on ETH-USD", now - 2,
                            steps=[Step("stop new orders: disable engine", True, 1.2, "done"),
                                   Step("stop new orders: close the gate", True, 0.8, "done"),
                                   Step("verify flat at the venue (attempt 1)", ok, 30.0, "detail")],
                            before={"positions": {}, "open_orders": [], "session": session},
                            after={**after, "session": {**session, "totals": {"realized_pnl": -3.2, "unrealized_pnl": 0.0}}},
                            finished_at=now if finished else None, ok=ok, storage=storage or [],
                            timeline=[{"ts": now - 3, "what": "LIVE → DEGRADED"}])
    return report


def test_the_incident_report_of_a_flat_failsafe_says_reset_then_open(tmp_path: Path) -> None:
    report = _report(True, {"positions": {}, "open_orders": []})
    _, md_path = report.write(tmp_path)
    md = md_path.read_text()
    first = md.splitlines()[0]
    assert first.startswith("# FAILSAFE incident, session s9: FAILSAFE at ") and "confirmed flat" in first
    assert first.count(".") >= 1 and "\n" not in first
    for section in ("## What to do next", "## After the sequence: what is left", "## Session PnL",
                    "## Steps: what the system did", "## Timeline (UTC", "## Before: the book at the trigger"):
        assert section in md, section
    assert "`tradectl reset`" in md and "`tradectl open`" in md
    assert "Nothing: no position and no open order" in md
    assert "| at the trigger | -0.01 | 12.35 | 12.34 |" in md and "| after the sequence | -3.20 | 0.00 | -3.20 |" in md
    assert not RAW_FLOAT.search(md), md
    assert re.search(r"Started: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \(UTC\)", md)


def test_the_incident_report_of_a_failsafe_not_flat_lists_what_is_left_and_says_flatten() -> None:
    after = {"positions": {"ETH-USD": {"qty": 0.30000000000000004, "mark": 3000.126, "unrealized_pnl": -0.0149999}},
             "open_orders": [{"client_order_id": "a-1", "symbol": "ETH-USD", "side": "sell", "qty": 0.3,
                              "filled_qty": 0.0, "limit_price": 3100.0, "status": "acknowledged"}]}
    report = _report(False, after, finished=False)
    md = report._markdown()
    assert "NOT verified flat (1 position(s), 1 open order(s) left); the sequence keeps retrying" in headline(report)
    assert "| ETH-USD | 0.3 | 3000.13 | 900.04 | -0.01 |" in md
    assert "| a-1 | ETH-USD | sell | 0.3 | 0 | 3100 | acknowledged |" in md
    steps = next_steps(report)
    assert any("`tradectl flatten`" in step for step in steps)
    assert any("Check the venue itself" in step for step in steps)
    assert not any("Flat and healthy" in step for step in steps)
    assert not RAW_FLOAT.search(md), md


def test_the_incident_report_of_a_storage_failure_says_free_disk_first() -> None:
    report = _report(True, {"positions": {}, "open_orders": []},
                     storage=["the session journal cannot be written (OperationalError: disk I/O error)"])
    steps = next_steps(report)
    assert steps[0].startswith("Free disk space") and "df -h" in steps[0]
    assert not any("Flat and healthy" in step for step in steps)
