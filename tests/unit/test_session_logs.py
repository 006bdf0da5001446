"""The session logs: the four specified files in their exact format, the JSON-lines event log with
its fields, and rotation by size with every part listed for the end-of-day archive."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from services.log_storm import LogStormSettings
from services.orchestrator.session_logs import KINDS, SessionLogs

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - LiveTradingOrchestrator - (INFO|WARNING|ERROR|CRITICAL) - ")


def test_each_line_goes_to_its_log_the_live_log_and_the_event_log(tmp_path: Path) -> None:
    logs = SessionLogs(tmp_path)
    # Fields named like the record's own keys stay the event's: they are under "data".
    logs.safety("CRITICAL price_jump BTC-USD: 9% in 1s", logging.CRITICAL, event="safety_event",
                data={"symbol": "BTC-USD", "severity": "critical", "message": "9% in 1s", "event": "x"})
    logs.governance("Operator command open: accepted: ok", event="operator_command",
                    data={"command": "open", "accepted": True})
    logs.live("State transition: READY → LIVE (market open)", event="state_transition",
              data={"old": "ready", "new": "live"})
    logs.close()
    text = {kind: logs.paths[kind].read_text(encoding="utf-8").splitlines() for kind in KINDS}
    assert len(text["safety_events"]) == 1 and len(text["governance_events"]) == 1
    assert text["connector_health"] == []
    assert len(text["live_trading"]) == 3
    assert all(LINE.match(line) for kind in KINDS for line in text[kind])
    events = [json.loads(line) for line in logs.paths["events"].read_text(encoding="utf-8").splitlines()]
    assert [e["event"] for e in events] == ["safety_event", "operator_command", "state_transition"]
    assert [e["log"] for e in events] == ["safety_events", "governance_events", "live_trading"]
    assert events[0]["level"] == "CRITICAL" and events[0]["data"]["symbol"] == "BTC-USD"
    assert events[0]["message"] == "CRITICAL price_jump BTC-USD: 9% in 1s" and events[0]["data"]["event"] == "x"
    assert events[1]["data"]["accepted"] is True and events[2]["data"]["new"] == "live"
    assert events[2]["message"] == "State transition: READY → LIVE (market open)"
    assert events[0]["ts"] <= events[1]["ts"] <= events[2]["ts"]


def test_logs_rotate_by_size_and_files_lists_every_part(tmp_path: Path) -> None:
    # 400 lines of one kind in a moment would be a storm (test_log_storm.py): rotation is what is tested here
    logs = SessionLogs(tmp_path, max_bytes=10_000, backups=3, storm=LogStormSettings(storm_full_lines=1_000))
    for i in range(400):
        logs.health(f"Connector sim: healthy latency_ms={i} " + "x" * 80, event="connector_health", data={"n": i})
    logs.close()
    live = logs.paths["live_trading"]
    parts = [p for p in logs.files() if p.name.startswith(live.name)]
    assert [p.name for p in parts] == [live.name] + [f"{live.name}.{i}" for i in (1, 2, 3)]
    assert all(p.stat().st_size <= 10_000 for p in parts)
    # The newest lines are in the current file; the oldest kept part is .3 (older ones dropped).
    assert "latency_ms=399 " in live.read_text()
    events = logs.paths["events"]
    assert events in logs.files() and Path(f"{events}.1") in logs.files()
    for part in (p for p in logs.files() if p.name.startswith(events.name)):
        for line in part.read_text().splitlines():
            assert json.loads(line)["event"] == "connector_health"  # never a line cut in two
