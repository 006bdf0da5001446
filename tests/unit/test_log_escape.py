"""One record, one line: a value holding a newline or a control character cannot forge a log line,
in a program's log (a real process configured by services.runtime.configure_logging), the
orchestrator's four session logs and its JSON lines, the process alert log, and the incident and
end-of-day Markdown reports."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import proto
from deploy.event_listener import Listener
from services.log_escape import EscapingFormatter, escape, json_line, md_cell
from services.orchestrator.end_of_day import write_report
from services.orchestrator.incident import IncidentReport, Step
from services.orchestrator.session_logs import KINDS, SessionLogs
from services.runtime import LOG_FORMAT

REPO = Path(__file__).resolve().parents[2]
FORGED = "1999-01-01 00:00:00,000 - LiveTradingOrchestrator - CRITICAL - FORGED"
# every way of starting a line (or of hiding one) a hostile value can try
NASTY = [f"x\n{FORGED}", f"x\r{FORGED}", f"x\r\n{FORGED}", f"\x1b[2J\x1b[H{FORGED}", f"x\u2028{FORGED}",
         f"x\u2029{FORGED}", f"x\x85{FORGED}", f"x\x0b{FORGED}", f"x\x0c{FORGED}", f"x\x1c{FORGED}",
         f"x\x00{FORGED}", f"\u202e{FORGED}", f"x\x7f{FORGED}"]
SESSION_LINE = re.compile(r"\A\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - LiveTradingOrchestrator - "
                          r"(INFO|WARNING|ERROR|CRITICAL) - ")
PROGRAM_LINE = re.compile(r"\A\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def lines_of(text: str) -> list[str]:
    """Lines as every reader may split them (``str.splitlines`` splits on more than ``\\n``)."""
    by_newline = text.split("\n") if text else []
    if text.endswith("\n"):
        by_newline.pop()
    assert text.splitlines() == by_newline, "a line break other than \\n"
    return text.splitlines()


@pytest.mark.parametrize("value", NASTY)
def test_escape_leaves_one_printable_line(value: str) -> None:
    out = escape(value)
    assert out.isprintable() and len(out.splitlines()) == 1 and FORGED in out
    assert not out.startswith(FORGED)


def test_escape_keeps_printable_text_as_it_is() -> None:
    text = "State transition: READY → LIVE (café, 5 € \\n literal, tab-free)"
    assert escape(text) is text or escape(text) == text
    assert escape("a\tb\nc") == "a\\tb\\nc" and md_cell("a|b\nc") == "a\\|b\\nc"


def test_json_lines_stay_one_line_and_readable() -> None:
    assert json_line({"m": "READY → LIVE"}) == '{"m":"READY → LIVE"}'
    for value in [*NASTY, "\udc80", "\U000e0001 tag"]:  # a lone surrogate; a format character beyond the BMP
        line = json_line({"m": value})
        assert len(line.splitlines()) == 1 and line.isprintable() and json.loads(line) == {"m": value}


def test_the_formatter_puts_a_traceback_on_its_records_line() -> None:
    formatter = EscapingFormatter(LOG_FORMAT)
    try:
        raise ValueError(f"bad symbol\n{FORGED}")
    except ValueError:
        record = logging.LogRecord("exchange_manager", logging.ERROR, __file__, 1, "refused %s", (NASTY[0],),
                                   sys.exc_info())
    line = formatter.format(record)
    assert len(line.splitlines()) == 1 and PROGRAM_LINE.match(line)
    assert "Traceback (most recent call last):\\n" in line and line.count(FORGED) == 2


def test_a_programs_log_has_one_line_per_record_crash_included() -> None:
    """A real process set up as every service is: warnings, errors with tracebacks, a thread's
    crash and the uncaught exception that ends it, each one line in the log format. (Thirteen
    warnings of one kind in a moment would be a storm, aggregated after the first few,
    ``test_log_storm.py``: every one of them is to be written here.)"""
    code = f"""
import logging, threading, warnings
from services.log_storm import LogStormSettings
from services.runtime import configure_logging
configure_logging(LogStormSettings(storm_full_lines=100))
log = logging.getLogger("engine")
nasty = {NASTY!r}
for value in nasty:
    log.warning("strategy %s refused", value)
warnings.warn("deprecated\\n" + nasty[0])
try:
    raise KeyError(nasty[1])
except KeyError:
    log.exception("handler failed: %s", nasty[2])
t = threading.Thread(target=lambda: 1 / 0, name="worker\\n" + nasty[0]); t.start(); t.join()
raise RuntimeError(nasty[3])
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    lines = lines_of(done.stderr)
    assert len(lines) == len(NASTY) + 4, done.stderr
    assert all(PROGRAM_LINE.match(line) for line in lines), done.stderr
    assert all(line.isprintable() for line in lines)
    assert "RuntimeError" in lines[-1] and "ZeroDivisionError" in lines[-2]


def test_session_logs_cannot_be_forged(tmp_path: Path) -> None:
    logs = SessionLogs(tmp_path)
    for value in NASTY:
        logs.live(f"State transition: LIVE → FAILSAFE ({value})", event="state_transition", data={"reason": value})
        logs.safety(f"CRITICAL data_anomaly {value}: jump", logging.CRITICAL, event="safety_event",
                    data={"symbol": value})
        logs.health(f"Connector {value}: UNHEALTHY", event="connector_health", data={"connector": value})
        logs.governance(f"Operator command failsafe: accepted: {value}", event="operator_command",
                        data={"detail": value})
    logs.close()
    for kind in KINDS:
        lines = lines_of(logs.paths[kind].read_text(encoding="utf-8"))
        assert len(lines) == len(NASTY) * (4 if kind == "live_trading" else 1)
        assert all(SESSION_LINE.match(line) and line.isprintable() for line in lines), kind
    events = lines_of(logs.paths["events"].read_text(encoding="utf-8"))
    assert len(events) == len(NASTY) * 4
    decoded = [json.loads(line) for line in events]
    assert [e["data"].get("reason") for e in decoded[::4]] == NASTY  # the value itself survives, in JSON


def test_the_process_alert_log_cannot_be_forged(tmp_path: Path) -> None:
    alert_log = tmp_path / "process_alerts.log"
    listener = Listener(sys.stdin.buffer, sys.stdout, _NullPublisher(), 1.0, alert_log)  # type: ignore[arg-type]
    # supervisord's payload is "key:value" tokens split on whitespace: what can reach a field is a
    # control character that is not whitespace
    for control in ("\x1b[2J", "\x00", "\x7f", "\u202e", "\x9b"):
        listener.handle({"eventname": "PROCESS_STATE_FATAL"},
                        f"processname:engine{control}1999-01-01_FORGED groupname:trading from_state:BACKOFF")
    lines = lines_of(alert_log.read_text(encoding="utf-8"))
    assert len(lines) == 5 and all(re.match(r"\A\d{4}-\d\d-\d\d \d\d:\d\d:\d\d FATAL ", line) for line in lines)
    assert all(line.isprintable() for line in lines)


class _NullPublisher:
    def publish(self, _topic: str, _message: proto.Message) -> None:
        pass


def test_reports_cannot_be_forged(tmp_path: Path) -> None:
    now = time.time()
    report = IncidentReport(session_id="s1", trigger=f"operator: {NASTY[0]}", started_at=now, finished_at=now,
                            timeline=[{"ts": now, "what": value} for value in NASTY],
                            steps=[Step(name=f"flatten {NASTY[1]}", ok=False, duration_ms=1.0, detail=value)
                                   for value in NASTY], before={"reason": NASTY[0]})
    _, incident_md = report.write(tmp_path)
    eod = {"session_id": "s1", "written_at": now, "totals": {"orders_submitted": 1},
           "per_symbol": {"BTC-USD": {"orders": 1, "filled_orders": 1, "rejected": 0}},
           "state_changes": [{"ts": now, "from": "live", "to": "failsafe", "reason": value} for value in NASTY]}
    _, eod_md = write_report(eod, tmp_path)
    for path in (incident_md, eod_md):
        lines = lines_of(path.read_text(encoding="utf-8"))
        assert not any(line.startswith("1999-") for line in lines), path
        assert all(line.isprintable() for line in lines), path
    table = [line for line in lines_of(incident_md.read_text()) if line.startswith("| flatten")]
    assert len(table) == len(NASTY) and all(line.count(" | ") == 3 for line in table)
