"""The web console over HTTP against a real daemon (its own program under supervisord): what the
server itself refuses, whatever a page does (no login, no CSRF token, a reader's control, a wrong
password and a guesser), controls sent as the user's own key and named in the governance log, the
bad minute (a price jump's safety event beside the symbol's prices), the incident report rendered,
and the log tail. The browser drives the same server in test_console_browser.py.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from integration.console_client import ConsoleUser, add_user, admin_password, console_url, wait_console
from integration.daemon import Daemon, wait_until
from integration.e2e import ask

LOCKOUT_S = 3.0
MODULE_DAEMON = {"config": {"console": {"login_lockout_s": LOCKOUT_S, "login_max_failures": 3,
                                        "poll_interval_s": 0.5}}}


@pytest.fixture(scope="module")
def console(module_daemon: Daemon) -> Daemon:
    wait_console(module_daemon)
    module_daemon.wait_state("live")
    return module_daemon


def admin(d: Daemon) -> ConsoleUser:
    user = ConsoleUser(d)
    assert user.login("admin", admin_password(d)).status_code == 303
    return user


def test_first_start_made_admin_with_a_private_password_file(console: Daemon) -> None:
    path = f"{console.state_dir}/console/admin.password"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(f"{console.state_dir}/console/users.json").st_mode & 0o777 == 0o600
    assert "first start: user admin, password" in console.program_log("console").read_text()
    assert f"serving {console_url(console)}/" in console.program_log("console").read_text()


def test_without_a_login_nothing_but_the_login_page(console: Daemon) -> None:
    base = console_url(console)
    page = requests.get(f"{base}/", allow_redirects=False, timeout=5)
    assert page.status_code == 303 and page.headers["Location"] == "/login"
    for path in ("/api/snapshot", "/api/reports", "/api/logs", "/api/prices?symbol=BTC-USD"):
        assert requests.get(f"{base}{path}", timeout=5).status_code == 401, path
    refused = requests.post(f"{base}/api/control/failsafe", json={"reason": "x"}, timeout=5)
    assert refused.status_code == 401
    login = requests.get(f"{base}/login", timeout=5)
    assert "frame-ancestors 'none'" in login.headers["Content-Security-Policy"]
    assert console.state() == "live"


def test_the_snapshot_shows_the_session(console: Daemon) -> None:
    user, seen = admin(console), [{}]

    def settled() -> dict | None:
        seen[0] = user.snapshot()
        return seen[0] if seen[0]["processes"] and seen[0]["connectors"] and not seen[0]["problems"] else None

    snap = wait_until(settled, 15, message=lambda: f"not settled: problems {seen[0].get('problems')}")
    assert snap["session"]["state"] == "live"
    names = {p["name"] for p in snap["processes"]}
    assert {"orchestrator", "engine", "exchange_manager", "data_router", "safety"} <= names
    assert all(p["alive"] and p["pid"] for p in snap["processes"])
    assert any(p["rss_mb"] for p in snap["processes"]), "no memory figure read"
    assert snap["connectors"][0]["connected"] is True
    assert [t["new"] for t in snap["transitions"]][-2:] == ["ready", "live"]
    assert set(snap["symbols"]) >= {"BTC-USD"}


def test_a_control_without_the_csrf_token_is_refused(console: Daemon) -> None:
    user = admin(console)
    for token in ("", "not-the-token"):
        refused = user.control("failsafe", "csrf probe", csrf=token)
        assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    assert user.snapshot()["console"]["controls_refused"] >= 2
    other_origin = user.http.post(f"{user.base}/api/control/failsafe", json={"reason": "x"},
                                  headers={"X-CSRF-Token": user.csrf, "Origin": "http://evil.example"}, timeout=5)
    assert other_origin.status_code == 403
    assert console.state() == "live"


def test_a_reader_sees_everything_and_presses_nothing(console: Daemon) -> None:
    password = add_user(console, "carol", "reader")
    carol = ConsoleUser(console)
    assert carol.login("carol", password).status_code == 303
    assert carol.snapshot()["role"] == "reader"
    assert carol.get("/api/reports").status_code == 200
    for control in ("open", "close", "recover", "failsafe", "reset"):
        refused = carol.control(control, "reader probe")
        assert refused.status_code == 403 and "read-only" in refused.json()["error"], control
    # her own key is refused by the orchestrator too: the console is not the only guard
    direct = console.tradectl("failsafe", "--reason", "reader probe", env={"TRADECTL_IDENTITY": "carol"})
    assert direct.returncode == 1 and "not authorised" in direct.stderr
    assert console.state() == "live"
    # removed, her open login ends at its next request
    assert console.tradectl("console", "remove-user", "carol").returncode == 0
    assert carol.get("/api/snapshot").status_code == 401


def test_wrong_passwords_are_refused_then_rate_limited(console: Daemon) -> None:
    base = console_url(console)
    for _ in range(3):
        wrong = requests.post(f"{base}/login", data={"user": "admin", "password": "guess"}, allow_redirects=False,
                              timeout=10)
        assert wrong.status_code == 401 and "Wrong user or password" in wrong.text
    locked = requests.post(f"{base}/login", data={"user": "admin", "password": admin_password(console)},
                           allow_redirects=False, timeout=10)
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) >= 1  # even the right one, meanwhile
    time.sleep(LOCKOUT_S + 0.5)
    assert admin(console).snapshot()["user"] == "admin"
    assert "failed login for 'admin'" in console.program_log("console").read_text()


def test_a_price_jump_shows_beside_its_prices_then_failsafe_report_and_back_to_live(console: Daemon) -> None:
    user = admin(console)
    assert ask(console, "venue_sim", "fault", fault="jump_price", symbol="BTC-USD", value=25.0)
    snap = user.wait_state("failsafe", timeout=15)
    jump = next(e for e in snap["events"] if e["kind"] == "safety" and e["severity"] == "critical")
    assert jump["symbol"] == "BTC-USD", jump

    def jumped() -> dict | None:  # quotes are read every 0.1 s: the jump's may be a moment behind its event
        prices = user.get("/api/prices", symbol="BTC-USD", start=jump["ts"] - 60, end=jump["ts"] + 5).json()
        before = [m for t, m in zip(prices["t"], prices["mid"]) if t < jump["ts"] - 1]
        return prices if before and max(prices["high"]) > 1.2 * before[0] else None

    prices = wait_until(jumped, 5, message="the jump is not in the prices")
    assert len(prices["t"]) >= 10

    # the incident report, rendered, its steps on a time axis; a name that is not a report's: 404
    wait_until(lambda: console.status()["failsafe_pending"] is None, 20)
    listed = wait_until(lambda: [r for r in user.get("/api/reports").json()["reports"] if r["kind"] == "incident"], 10)
    report = user.get(f"/api/reports/{listed[0]['name']}").json()
    assert report["html"].startswith("<h1>FAILSAFE incident") and report["ok"] is True
    assert report["steps"][0]["name"] == "stop new orders: disable engine"
    assert all(s["t"] is not None and s["t"] >= 0 for s in report["steps"])
    assert user.get("/api/reports/..%2F..%2Fetc%2Fpasswd").status_code == 404

    # reset and open from the console, as admin's own key; the governance log names her
    assert user.control("reset").json()["ok"] is True
    opened = user.control("open").json()
    assert opened == {"ok": True, "result": {"state": "live"}, "state": "live"}, opened
    user.wait_state("live")
    governance = user.get("/api/logs", log="governance_events", q="by admin").json()["lines"]
    assert [line["message"].split(":")[0] for line in governance][-2:] == [
        "Operator command reset by admin", "Operator command open by admin"]


def test_hostile_text_stays_text_in_the_report(console: Daemon) -> None:
    user = admin(console)
    reason = '<script>alert(1)</script> <img src=x onerror=alert(2)>'
    assert user.control("failsafe", reason).json()["ok"] is True
    wait_until(lambda: console.status()["failsafe_pending"] is None, 20)
    name = wait_until(lambda: next((r["name"] for r in user.get("/api/reports").json()["reports"]
                                    if r["kind"] == "incident" and "script" in r["title"]), None), 10)
    html = user.get(f"/api/reports/{name}").json()["html"]
    assert "<script>" not in html and "<img" not in html and "&lt;script&gt;" in html
    assert user.control("reset").json()["ok"] is True
    assert user.control("open").json()["ok"] is True


def test_a_hung_or_killed_console_changes_nothing_in_the_session(console: Daemon) -> None:
    user = admin(console)
    pid = console.pid_of("console")
    os.kill(pid, signal.SIGSTOP)  # hung: its SUB stops reading; no publisher waits for it
    try:
        time.sleep(3)
        assert console.state() == "live" and console.status()["failsafe_pending"] is None
        assert all(c["alive"] for c in console.status()["components"].values())
    finally:
        os.kill(pid, signal.SIGCONT)
    console.kill9("console")
    console.wait_respawned("console", pid)
    wait_console(console)
    assert user.get("/api/snapshot").status_code == 401  # a restart logs everyone out
    again = admin(console)
    snap = wait_until(lambda: (s := again.snapshot())["session"]["state"] == "live" and s, 10)
    # the day's transitions come back from the session event log, not from the console's memory
    assert [t["new"] for t in snap["transitions"]][:2] == ["ready", "live"]
    assert console.state() == "live"


def test_a_flood_of_logins_is_answered_busy_and_costs_the_session_nothing(console: Daemon) -> None:
    base = console_url(console)

    def guess(i: int) -> requests.Response:
        return requests.post(f"{base}/login", data={"user": f"guesser{i}", "password": "x" * 200},
                             allow_redirects=False, timeout=30)

    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(guess, range(30)))
    assert {a.status_code for a in answers} <= {401, 429}
    assert any(a.status_code == 429 and "busy" in a.text for a in answers), [a.status_code for a in answers]
    assert requests.get(f"{base}/login", timeout=5).status_code == 200
    assert console.state() == "live"
    time.sleep(LOCKOUT_S + 0.5)
    counted = admin(console).snapshot()["console"]
    assert counted["logins_failed"] >= 8 and counted["logins_refused"] >= 1, counted
