"""The console's parts without a server: passwords and users (roles from keys), login sessions and
their expiry, the brake on guessing, the view's bounds and dedup, the reports' names and escaping,
and the log tail's filters. The server and the page are tested against a real daemon in
tests/integration/test_console.py and test_console_browser.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import proto
from bus import keys
from services.console.auth import LoginThrottle, Sessions, Users
from services.console.reports import Reports
from services.console.session_log import tail
from services.console.settings import ConsoleSettings
from services.console.view import Polled, SessionView


def users(tmp_path: Path) -> Users:
    return Users(tmp_path / "console", tmp_path / "keys")


def test_first_user_is_made_once_with_a_private_password_file(tmp_path: Path) -> None:
    u = users(tmp_path)
    password, path = u.ensure_first()  # type: ignore[misc]
    assert path.stat().st_mode & 0o777 == 0o600 and u.path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().strip() == password and password not in u.path.read_text()
    assert u.check("admin", password) == "operator"
    assert u.ensure_first() is None  # never again, and the password is not changed
    assert u.check("admin", password) == "operator"


def test_a_user_has_her_keys_role_and_loses_it_with_her_key(tmp_path: Path) -> None:
    u = users(tmp_path)
    password = u.add("carol", "reader")
    assert u.check("carol", password) == "reader" and u.role_of("carol") == "reader"
    assert u.check("carol", password + "x") is None and u.check("nobody", password) is None
    with pytest.raises(ValueError):
        u.add("carol", "operator")  # her key says reader: a new role needs a new key
    with pytest.raises(ValueError):
        u.add("orchestrator", "operator")  # a system identity is nobody's login
    keys.revoke(tmp_path / "keys", "carol")
    keys.KeyStore.reload(u.keys)
    assert u.check("carol", password) is None and u.role_of("carol") is None


def test_sessions_expire_when_idle_or_old_and_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    sessions = Sessions(idle_s=10, max_s=25, max_sessions=2)
    a = sessions.open("alice", "operator")
    now[0] += 9
    assert sessions.get(a.token) is a  # activity keeps it
    now[0] += 9
    assert sessions.get(a.token) is a
    now[0] += 9  # 27 s after it began: over max_s, however active
    assert sessions.get(a.token) is None
    b, c, d = (sessions.open(n, "reader") for n in "bcd")
    assert sessions.get(b.token) is None and sessions.get(c.token) is c and sessions.get(d.token) is d
    now[0] += 11
    assert sessions.get(c.token) is None  # idle
    assert sessions.get(None) is None and sessions.get("forged") is None


def test_guessing_is_locked_out_then_forgiven(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    throttle = LoginThrottle(max_failures=3, window_s=60, lockout_s=30, max_keys=4)
    for _ in range(2):
        throttle.failure("addr:1", "user:admin")
    assert throttle.wait_s("addr:1", "user:admin") == 0
    throttle.failure("addr:1", "user:admin")
    assert throttle.wait_s("addr:2", "user:admin") == 30  # the user is locked from any address
    assert throttle.wait_s("addr:1", "user:bob") == 30  # and the address for any user
    now[0] = 31
    assert throttle.wait_s("addr:1", "user:admin") == 0
    for i in range(10):  # bounded: a spray of addresses is forgotten oldest first
        throttle.failure(f"addr:x{i}")
    assert len(throttle._failures) <= 4


def view() -> tuple[SessionView, list[tuple[str, dict]]]:
    told: list[tuple[str, dict]] = []
    return SessionView(ConsoleSettings(max_events=10, price_bucket_s=1.0, max_symbols=2),
                       lambda kind, data: told.append((kind, data))), told


def changed(old: str, new: str, no: int) -> proto.StateChanged:
    return proto.StateChanged(old=proto.OrchestratorState(old), new=proto.OrchestratorState(new), reason="r",
                              transition_no=no, session_id="s1")


def test_the_view_tells_each_transition_once_and_keeps_its_bounds() -> None:
    v, told = view()
    v.on_transition(changed("ready", "live", 2), 100.0)
    v.on_transition(changed("ready", "live", 2), 100.5)  # the same one again: nothing new
    v.on_transition(changed("live", "degraded", 3), 101.0)
    assert [d["state"] for k, d in told if k == "state"] == ["live", "degraded"]
    assert v.snapshot()["session"]["state"] == "degraded"
    assert v.snapshot()["problems"][0].startswith("DEGRADED")
    for i in range(30):
        v.add_event(200.0 + i, "safety", "bogus", "BTC-USD", "t", "m" * 5_000, "safety")
    events = v.snapshot()["events"]
    assert len(events) == 10 and events[-1]["severity"] == "info" and len(events[-1]["message"]) == 2_000


def test_prices_keep_each_buckets_last_low_and_high_for_a_bounded_set_of_symbols() -> None:
    v, _ = view()
    for ts, mid in ((10.1, 100.0), (10.5, 130.0), (10.9, 90.0), (11.2, 95.0)):
        v.on_quote("BTC-USD", mid, ts)
    prices = v.prices("BTC-USD", 0, 20)
    assert prices == {"symbol": "BTC-USD", "t": [10.0, 11.0], "mid": [90.0, 95.0], "low": [90.0, 95.0],
                      "high": [130.0, 95.0]}
    v.on_quote("ETH-USD", 1.0, 10.0)
    v.on_quote("SOL-USD", 1.0, 10.0)  # a third symbol: over max_symbols, refused and counted
    assert v.snapshot()["symbols"] == ["BTC-USD", "ETH-USD"] and v.symbols_refused == 1


def test_a_poll_that_disagrees_three_times_corrects_the_state() -> None:
    v, _ = view()
    v.on_transition(changed("ready", "live", 2), 100.0)
    status = {"state": "failsafe", "session_id": "s1", "components": {}}
    v.on_poll(Polled(status=status))
    v.on_poll(Polled(status=status))
    assert v.snapshot()["session"]["state"] == "live"  # a poll racing a transition disagrees once or twice
    v.on_poll(Polled(status=status))
    assert v.snapshot()["session"]["state"] == "failsafe"


def test_reports_refuse_names_that_are_not_reports_and_escape_html(tmp_path: Path) -> None:
    incidents = tmp_path / "incidents"
    incidents.mkdir()
    name = "incident_20261207_070016_abc"
    (incidents / f"{name}.md").write_text("# FAILSAFE <script>alert(1)</script>\n\n| a |\n|---|\n| <b>x</b> |\n")
    (incidents / f"{name}.json").write_text(json.dumps({
        "ok": True, "started_at": 100.0, "trigger": "t",
        "steps": [{"name": "stop", "ok": True, "duration_ms": 500.0, "detail": "done", "finished_at": 101.0}]}))
    reports = Reports(tmp_path)
    assert [r["name"] for r in reports.list()] == [name]
    got = reports.get(name)
    assert got is not None and "<script>" not in got["html"] and "&lt;script&gt;" in got["html"]
    assert "<table>" in got["html"] and "<b>" not in got["html"]
    assert got["steps"] == [{"name": "stop", "ok": True, "duration_ms": 500.0, "detail": "done", "t": 0.5}]
    for bad in ("../incidents/" + name, name + "/../x", "eod_../../etc/passwd", "incident_x"):
        assert reports.get(bad) is None, bad


def test_the_log_tail_filters_by_level_log_and_text(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    lines = [{"ts": i, "time": "t", "level": level, "log": log, "event": "e", "message": msg}
             for i, (level, log, msg) in enumerate([("INFO", "live_trading", "State transition"),
                                                    ("WARNING", "governance_events", "Operator command open"),
                                                    ("ERROR", "safety_events", "CRITICAL jump")])]
    (live / "events_20261207_000000.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\nnot json\n")
    assert [line["message"] for line in tail(tmp_path)["lines"]] == [l["message"] for l in lines]
    assert [line["ts"] for line in tail(tmp_path, level="warning")["lines"]] == [1, 2]
    assert [line["ts"] for line in tail(tmp_path, log="safety_events")["lines"]] == [2]
    assert [line["ts"] for line in tail(tmp_path, text="OPERATOR")["lines"]] == [1]
    assert [line["ts"] for line in tail(tmp_path, limit=1)["lines"]] == [2]
    assert tail(tmp_path / "none") == {"file": None, "lines": []}
