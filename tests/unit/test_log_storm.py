"""Log storms (``services/log_storm.py``): the first few records of a kind in full, then one summary
per interval with the exact count held back; never the safety-relevant ones; a bounded key table;
nothing pending lost at close. The clock is injected: no test sleeps."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import pytest

from services.log_escape import EscapingFormatter
from services.log_storm import LogStorm, LogStormSettings, StormFilter, Summary, keep, kind, never_aggregated
from services.orchestrator.session_logs import KINDS, SessionLogs, part_bytes
from services.runtime import LOG_FORMAT
from services.settings import Settings

COUNT = re.compile(r": ([\d,]+) more in the last ([\d.]+) s \(first \d\d:\d\d:\d\d,\d{3}, last \d\d:\d\d:\d\d,\d{3}\)$")


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _storm(clock: Clock, **settings: float) -> tuple[LogStorm, list[Summary]]:
    summaries: list[Summary] = []
    return LogStorm(summaries.append, LogStormSettings(**settings), clock=clock), summaries


def test_first_lines_in_full_then_one_summary_with_the_exact_count() -> None:
    clock = Clock()
    storm, out = _storm(clock, storm_full_lines=5, storm_interval_s=10.0)
    written = []
    for i in range(1_234 + 5):
        written.append(storm.admit("refusal", context=i))
        clock.advance(0.005)  # 1,239 records in 6.2 s: one interval
    assert written == [True] * 5 + [False] * 1_234
    assert out == [] and storm.pending == 1_234
    clock.advance(10.0)
    storm.flush()
    [summary] = out
    assert summary.count == 1_234 and summary.key == "refusal"
    assert summary.first == pytest.approx(1_700_000_000.0 + 5 * 0.005)
    assert summary.last == pytest.approx(1_700_000_000.0 + 1_238 * 0.005)
    assert summary.context == 1_238  # the latest record's
    assert storm.pending == 0 and storm.held_total == 1_234
    m = COUNT.search(summary.text("governance order_refused.max_orders_per_s BTC-USD"))
    assert m and m[1] == "1,234", summary.text("x")


def test_a_storm_that_goes_on_has_one_summary_per_interval_and_one_that_stops_ends() -> None:
    clock = Clock()
    storm, out = _storm(clock, storm_full_lines=3, storm_interval_s=10.0)
    full = 0
    for _ in range(240):  # 8 a second for 30 s (0.125 s: exact in binary, so are the interval ends)
        full += storm.admit("k")
        clock.advance(0.125)
    assert full == 3  # only the first interval's first three: the storm went on
    storm.flush()
    assert [s.count for s in out] == [80 - 3, 80, 80]  # intervals from 0, 10 and 20 s
    assert all(s.window_s == 10.0 for s in out)
    assert storm.pending == 0 and storm.held_total == 237
    clock.advance(10.0)  # an interval with nothing held ends the storm
    storm.flush()
    assert len(out) == 3
    assert [storm.admit("k") for _ in range(4)] == [True, True, True, False]


def test_a_summary_comes_out_on_the_next_record_of_any_key() -> None:
    clock = Clock()
    storm, out = _storm(clock, storm_full_lines=1, storm_interval_s=2.0)
    storm.admit("a")
    storm.admit("a")
    clock.advance(2.5)
    assert out == []
    assert storm.admit("b") is True  # no timer: another key's record flushes it
    assert [(s.key, s.count) for s in out] == [("a", 1)]


def test_close_writes_every_pending_summary() -> None:
    clock = Clock()
    storm, out = _storm(clock, storm_full_lines=2)
    for key in ("a", "b", "c"):
        for _ in range(5):
            storm.admit(key)
    clock.advance(0.5)  # well inside the interval
    storm.close()
    assert sorted((s.key, s.count) for s in out) == [("a", 3), ("b", 3), ("c", 3)]
    assert storm.pending == 0


def test_the_key_table_is_bounded_and_an_evicted_key_writes_its_summary_first() -> None:
    clock = Clock()
    storm, out = _storm(clock, storm_full_lines=1, storm_max_keys=3)
    for key in ("a", "b", "c"):
        storm.admit(key)
        storm.admit(key)  # one held each
    storm.admit("a")  # a is the most recently seen now: b is the least
    assert storm.admit("d") is True
    assert [(s.key, s.count) for s in out] == [("b", 1)]
    assert storm.admit("e") is True  # then c
    assert [(s.key, s.count) for s in out] == [("b", 1), ("c", 1)]
    for i in range(10_000):  # a peer naming a new kind each time cannot grow it
        storm.admit(f"x{i}")
    assert len(storm._keys) == 3
    storm.close()
    assert sum(s.count for s in out) == storm.held_total == 4


def test_a_change_of_a_stream_is_written_at_once() -> None:
    """One connector's health: healthy lines in a storm, then unhealthy, then healthy again: both
    changes are written in full, and the healthy lines held before are summed up first."""
    clock = Clock()
    storm, out = _storm(clock, storm_full_lines=2)
    assert [storm.admit(("sim", True), stream="sim") for _ in range(5)] == [True, True, False, False, False]
    assert storm.admit(("sim", False), stream="sim") is True
    assert [(s.key, s.count) for s in out] == [(("sim", True), 3)]
    assert storm.admit(("sim", True), stream="sim") is True
    assert storm.admit(("other", True), stream="other") is True  # streams are independent


def test_the_rule_of_what_is_never_aggregated() -> None:
    assert never_aggregated(logging.ERROR) and never_aggregated(logging.CRITICAL)
    for event in ("state_transition", "failsafe_sequence", "failsafe_retry", "process_alert", "operator_command",
                  "alert", "incident", "supervisor_lost", "session_start", "end_of_day"):
        assert never_aggregated(logging.INFO, event), event
    assert not never_aggregated(logging.WARNING, "governance")
    assert not never_aggregated(logging.WARNING, "safety_event")  # a warning; a critical one is kept


def _program_log(clock: Clock, **settings: float) -> tuple[logging.Logger, io.StringIO]:
    """A logger as ``configure_logging`` sets up a program's (an escaping handler with the filter)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter(LOG_FORMAT))
    handler.addFilter(StormFilter(handler, LogStormSettings(**settings), clock=clock))
    logger = logging.Logger("exchange_manager")
    logger.addHandler(handler)
    return logger, stream


def test_a_programs_log_is_keyed_by_logger_level_and_format_string() -> None:
    clock = Clock()
    log, out = _program_log(clock, storm_full_lines=2, storm_interval_s=10.0)
    for i in range(100):
        log.warning("order refused (%s): buy %g BTC-USD", "max_orders_per_s", i / 1000)
        log.warning("order refused (%s): buy %g BTC-USD", "halted", i / 1000, extra=kind("halted"))
        log.info("order refused (%s): buy %g BTC-USD", "max_orders_per_s", i / 1000)  # another level
        log.warning("session state is now %s", "live", extra=keep())
        log.error("strategy %s failed", i)
    clock.advance(10.0)
    for handler in log.handlers:
        for f in handler.filters:
            f.close()  # type: ignore[union-attr]
    lines = out.getvalue().splitlines()
    assert sum("WARNING order refused (max_orders_per_s)" in ln for ln in lines) == 2
    assert sum("WARNING order refused (halted)" in ln for ln in lines) == 2
    assert sum("INFO order refused (max_orders_per_s)" in ln for ln in lines) == 2
    assert sum("session state is now live" in ln for ln in lines) == 100  # marked keep()
    assert sum("ERROR strategy" in ln for ln in lines) == 100  # ERROR and above: never aggregated
    summaries = [ln for ln in lines if " more in the last " in ln]
    assert len(summaries) == 3
    for line in summaries:
        assert line.split()[2:4] in (["exchange_manager", "WARNING"], ["exchange_manager", "INFO"]), line
        assert COUNT.search(line)[1] == "98"  # type: ignore[index]
    # labelled by the format string, or by the kind the record names
    assert sum("... 'order refused (%s): buy %g BTC-USD': 98 more" in line for line in summaries) == 2
    assert sum("WARNING ... halted: 98 more" in line for line in summaries) == 1


def test_session_logs_turn_ten_thousand_refusals_into_a_handful_of_lines(tmp_path: Path) -> None:
    """A strategy looping on a refused order: 10,000 identical refusals over 25 s between two
    transitions. Every file gets the first five, one summary per 10 s with the exact count held
    back, and the transitions."""
    clock = Clock()
    logs = SessionLogs(tmp_path, storm=LogStormSettings(storm_full_lines=5, storm_interval_s=10.0), clock=clock)
    logs.live("State transition: READY → LIVE (market open)", event="state_transition", data={"new": "live"})
    for i in range(10_000):
        logs.governance(f"exchange_manager: order_refused.max_orders_per_s BTC-USD: order rate over max_orders_per_s 20 "
                        f"{{'qty': 0.001, 'n': {i}}}", logging.WARNING, event="governance",
                        data={"kind": "order_refused.max_orders_per_s", "symbol": "BTC-USD",
                              "reason": "order rate over max_orders_per_s 20", "detail": {"n": i}})
        clock.advance(0.0025)
        if i % 400 == 0:
            logs.flush()  # the orchestrator's timer
    logs.live("State transition: LIVE → SHUTDOWN (close)", event="state_transition", data={"new": "shutdown"})
    logs.close()
    text = {kind: logs.paths[kind].read_text(encoding="utf-8").splitlines() for kind in KINDS}
    governance = text["governance_events"]
    full = [ln for ln in governance if "order rate over" in ln]
    summaries = [ln for ln in governance if " more in the last " in ln]
    assert len(full) == 5 and "'n': 0}" in full[0] and "'n': 4}" in full[-1]
    assert len(summaries) == 3 and len(governance) == 8  # intervals from 0, 10 and 20 s; the last at close
    assert "... governance order_refused.max_orders_per_s BTC-USD: " in summaries[0]
    assert " - WARNING - " in summaries[0]
    assert sum(int(COUNT.search(ln)[1].replace(",", "")) for ln in summaries) == 9_995  # type: ignore[index]
    # the live log has the same lines (stamped apart by a millisecond at times); the last interval's
    # summary comes at close, after the last transition (its times say when)
    live = [ln.split(" - ", 2)[2] for ln in text["live_trading"]]
    same = [ln.split(" - ", 2)[2] for ln in governance]
    assert live == [live[0], *same[:-1], live[-2], same[-1]]
    assert "READY → LIVE" in live[0] and "LIVE → SHUTDOWN" in live[-2]
    events = [json.loads(ln) for ln in logs.paths["events"].read_text(encoding="utf-8").splitlines()]
    assert len(events) == 10
    held = [e for e in events if e["event"] == "storm_summary"]
    assert [e["data"]["of"] for e in held] == ["governance"] * 3
    assert held[0]["data"]["kind"] == "order_refused.max_orders_per_s" and held[0]["log"] == "governance_events"
    assert sum(e["data"]["count"] for e in held) == 9_995
    assert all(e["data"]["first"] <= e["data"]["last"] for e in held)


def test_the_files_listed_for_the_archive_hold_every_pending_count(tmp_path: Path) -> None:
    clock = Clock()
    logs = SessionLogs(tmp_path, storm=LogStormSettings(storm_full_lines=1), clock=clock)
    for _ in range(3):
        logs.governance("refused", logging.WARNING, event="governance", data={"kind": "order_refused.halted"})
    clock.advance(1.0)  # inside the interval: the summary is pending
    files = logs.files()
    assert logs.paths["governance_events"] in files
    text = logs.paths["governance_events"].read_text(encoding="utf-8")
    assert "... governance order_refused.halted: 2 more in the last 1 s" in text
    logs.close()


def test_session_logs_never_aggregate_transitions_critical_events_or_failsafe_steps(tmp_path: Path) -> None:
    logs = SessionLogs(tmp_path, storm=LogStormSettings(storm_full_lines=1))
    for i in range(50):
        logs.live(f"State transition: LIVE → DEGRADED ({i})", event="state_transition")
        logs.safety("CRITICAL data_anomaly BTC-USD: jump", logging.CRITICAL, event="safety_event",
                    data={"event_type": "data_anomaly", "symbol": "BTC-USD", "severity": "critical"})
        logs.safety("FAILSAFE retry: not flat", logging.WARNING, event="failsafe_retry")
        logs.health("Process engine: EXITED under supervisord", logging.WARNING, event="process_alert",
                    data={"program": "engine"})
        logs.governance("Operator command open: REFUSED: not ready", logging.WARNING, event="operator_command")
        logs.safety("WARNING stale_feed BTC-USD: no quote for 5 s", logging.WARNING, event="safety_event",
                    data={"event_type": "stale_feed", "symbol": "BTC-USD", "severity": "warning",
                          "message": "no quote for 5 s"})
        logs.safety(f"WARNING execution_anomaly BTC-USD: order x{i} at the venue", logging.WARNING,
                    event="safety_event", data={"event_type": "execution_anomaly", "symbol": "BTC-USD",
                                                "severity": "warning", "message": f"order x{i} at the venue"})
    logs.close()
    live = logs.paths["live_trading"].read_text(encoding="utf-8")
    for needle in ("State transition", "CRITICAL data_anomaly", "FAILSAFE retry", "Process engine: EXITED",
                   "Operator command open"):
        assert live.count(needle) == 50, needle
    assert live.count("WARNING stale_feed") == 1  # the same warning safety event again and again
    assert "... safety_event stale_feed BTC-USD warning no quote for 5 s: 49 more in the last " in live
    assert live.count("WARNING execution_anomaly") == 50  # each names its own evidence (an order)


def test_a_connectors_health_change_is_never_held_back(tmp_path: Path) -> None:
    clock = Clock()
    logs = SessionLogs(tmp_path, storm=LogStormSettings(storm_full_lines=2), clock=clock)

    def health(ok: bool, n: int) -> None:
        logs.health(f"Connector sim: {'healthy' if ok else 'UNHEALTHY'} #{n}", logging.INFO if ok else logging.WARNING,
                    event="connector_health", data={"connector": "sim", "healthy": ok})
        clock.advance(1.0)

    for n in range(5):
        health(True, n)
    health(False, 5)
    health(True, 6)
    logs.close()
    lines = logs.paths["connector_health"].read_text(encoding="utf-8").splitlines()
    assert [ln.split(" - ", 3)[3] for ln in lines] == [
        "Connector sim: healthy #0", "Connector sim: healthy #1",
        lines[2].split(" - ", 3)[3], "Connector sim: UNHEALTHY #5", "Connector sim: healthy #6"]
    assert lines[2].split(" - ", 3)[3].startswith("... connector_health sim True: 3 more in the last 5 s")


def test_one_sessions_logs_stay_within_the_budget(tmp_path: Path) -> None:
    budget = 120_000
    logs = SessionLogs(tmp_path, max_bytes=50 << 20, backups=3, budget_bytes=budget)
    for i in range(1_000):  # every line its own kind: nothing aggregated, only rotated
        logs.governance(f"Operator command x{i}: accepted " + "y" * 60, event="governance_note")
        logs.health(f"Connector c{i}: healthy", event="connector_health", data={"connector": f"c{i}", "healthy": True})
        logs.safety(f"WARNING stale_feed S{i}: no quote", event="safety_event", data={"symbol": f"S{i}"})
    logs.close()
    files = logs.files()
    assert len(files) == 5 * 4  # every file rotated through all its parts
    total = sum(p.stat().st_size for p in files)
    assert budget * 0.8 < total <= budget, total  # the current parts are part full
    sizes = part_bytes(50 << 20, 3, budget)
    for kind, path in logs.paths.items():
        for part in (p for p in files if p.name.startswith(path.name)):
            assert part.stat().st_size <= sizes[kind], (part, sizes[kind])


def test_the_budget_and_storm_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.orchestrator.session_log_budget_mb == 200
    parts = part_bytes(settings.orchestrator.session_log_max_bytes, settings.orchestrator.session_log_backups,
                       settings.orchestrator.session_log_budget_bytes)
    assert sum(size * (settings.orchestrator.session_log_backups + 1) for size in parts.values()) <= 200 << 20
    monkeypatch.setenv("TRADING_LOGS__STORM_INTERVAL_S", "2.5")
    monkeypatch.setenv("TRADING_ORCHESTRATOR__SESSION_LOG_BUDGET_MB", "0.5")
    from services.settings import SettingsError, load_settings

    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "orchestrator: session_log_budget_mb=0.5 over 11 parts per file leaves 4,766 bytes per part" in str(err.value)
    monkeypatch.setenv("TRADING_ORCHESTRATOR__SESSION_LOG_BUDGET_MB", "50")
    assert load_settings().logs.storm_interval_s == 2.5
