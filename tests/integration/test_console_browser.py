"""The web console in a real headless browser (Debian's Chromium through Playwright) against a real
daemon: log in, see the state go LIVE from the Open button, a price jump's safety event on the
timeline and the state FAILSAFE within a second, the incident report opened, reset and open back to
LIVE, a reader who can press nothing (and whose forged request the server refuses), a control
without its CSRF token refused, and a wrong password refused then rate-limited.

Skipped, with the reason, where no Chromium is installed (``make test`` installs Debian's where it
can). ``LTD_CONSOLE_SCREENSHOTS=DIR`` saves the main views there (docs/console.md's pictures).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.console_client import add_user, admin_password, console_url, wait_console
from integration.daemon import Daemon, wait_until
from integration.e2e import ask

CHROMIUM = "/usr/bin/chromium"
# As root in a sandbox with no network: no sandbox, no GPU, none of Chromium's own connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]
LOCKOUT_S = 3.0
MODULE_DAEMON = {"config": {"orchestrator": {"auto_open": False},
                            "console": {"login_lockout_s": LOCKOUT_S, "login_max_failures": 3}}}
SHOTS = os.environ.get("LTD_CONSOLE_SCREENSHOTS")

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[test]')")
pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                                reason=f"no Chromium at {CHROMIUM}: `make test` installs Debian's where it can "
                                       f"(root with apt-get); else apt-get install chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def console(module_daemon: Daemon) -> Daemon:
    wait_console(module_daemon)
    module_daemon.wait_state("ready")
    return module_daemon


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"the page's script failed: {errors}"


def log_in(page: Any, d: Daemon, user: str, password: str) -> None:
    page.goto(f"{console_url(d)}/login")
    page.fill("#user", user)
    page.fill("#password", password)
    page.click("#login")


def press(page: Any, control: str, reason: str = "") -> dict[str, str]:
    page.click(f"#btn-{control}")
    page.wait_for_selector("#confirm[open]")
    if reason:
        page.fill("#confirm-reason", reason)
    page.click("#confirm-ok")
    result = page.locator("#control-result")
    sync_api.expect(result).not_to_have_attribute("data-ok", "", timeout=40_000)
    return {"ok": result.get_attribute("data-ok") or "", "text": result.inner_text()}


def state_of(page: Any) -> str:
    return page.get_attribute("#state", "data-state") or ""


def shot(page: Any, name: str, show: str = "") -> None:
    """The page as it is (scrolled to ``show`` first), for docs/console.md."""
    if SHOTS:
        if show:
            page.locator(show).evaluate("e => e.scrollIntoView({block: 'start'})")
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"))


def test_open_jump_failsafe_report_reset_open(console: Daemon, page: Any) -> None:
    log_in(page, console, "admin", admin_password(console))
    page.wait_for_selector("#state[data-state='ready']")
    assert page.inner_text("#who-user") == "admin"

    assert press(page, "open")["ok"] == "true"
    page.wait_for_selector("#state[data-state='live']", timeout=10_000)
    wait_until(lambda: page.locator("#positions tbody tr").count() > 0 or None, 30,
               message="no position shown")
    shot(page, "overview-live")

    assert ask(console, "venue_sim", "fault", fault="jump_price", symbol="BTC-USD", value=25.0)
    page.wait_for_selector("#state[data-state='failsafe']", timeout=15_000)
    row = page.locator("#events .event-row[data-kind='safety'][data-severity='critical'][data-symbol='BTC-USD']")
    sync_api.expect(row.first).to_be_visible(timeout=5_000)
    # the state on the page within a second of the transition on the bus (the page's own record)
    seen = page.evaluate("window.consoleStateLog")
    failsafe = next(s for s in seen if s["state"] == "failsafe")
    assert failsafe["seen"] - failsafe["ts"] < 1.0, seen
    sync_api.expect(page.locator("#problems li").first).to_contain_text("FAILSAFE", timeout=3_000)

    # the bad minute: the event beside the symbol's prices
    row.first.click()
    sync_api.expect(page.locator("#price-caption")).to_contain_text("BTC-USD", timeout=5_000)
    page.wait_for_selector("#price-chart canvas")
    shot(page, "events-price-jump", show="#events-section")

    # the incident report, rendered, with its steps
    wait_until(lambda: console.status()["failsafe_pending"] is None, 30)
    link = page.locator(".report-link[data-name^='incident_']")
    sync_api.expect(link.first).to_be_visible(timeout=15_000)
    link.first.click()
    sync_api.expect(page.locator("#report-view h1").first).to_contain_text("FAILSAFE incident", timeout=5_000)
    assert page.locator("#report-steps tr").count() >= 5
    assert "stop new orders: disable engine" in page.inner_text("#report-steps")
    shot(page, "incident-report", show="#reports-section")

    assert press(page, "reset")["ok"] == "true"
    page.wait_for_selector("#state[data-state='ready']", timeout=10_000)
    assert press(page, "open")["ok"] == "true"
    page.wait_for_selector("#state[data-state='live']", timeout=10_000)
    assert console.state() == "live"


def test_a_reader_can_press_nothing(console: Daemon, page: Any) -> None:
    password = add_user(console, "dora", "reader")
    log_in(page, console, "dora", password)
    page.wait_for_selector("#state[data-state]")
    for control in ("open", "close", "recover", "failsafe", "reset"):
        assert page.locator(f"#btn-{control}").is_disabled(), control
    shot(page, "reader")
    # the page's own token, sent by hand: the server refuses a reader's control too
    status = page.evaluate("""async () => {
        const token = document.querySelector('meta[name=csrf-token]').content;
        const r = await fetch('/api/control/failsafe', {method: 'POST', headers: {'Content-Type': 'application/json',
            'X-CSRF-Token': token}, body: JSON.stringify({reason: 'reader probe'})});
        return r.status; }""")
    assert status == 403
    assert console.state() in ("ready", "live")


def test_a_control_without_the_csrf_token_is_refused(console: Daemon, page: Any) -> None:
    log_in(page, console, "admin", admin_password(console))
    page.wait_for_selector("#state[data-state]")
    before = console.state()
    status = page.evaluate("""async () => {
        const r = await fetch('/api/control/failsafe', {method: 'POST', headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({reason: 'no token'})});
        return [r.status, (await r.json()).error]; }""")
    assert status[0] == 403 and "CSRF" in status[1]
    assert console.state() == before


def test_a_wrong_password_is_refused_then_rate_limited(console: Daemon, page: Any) -> None:
    for _ in range(3):
        log_in(page, console, "admin", "not the password")
        sync_api.expect(page.locator("#login-error")).to_contain_text("Wrong user or password")
    log_in(page, console, "admin", admin_password(console))
    sync_api.expect(page.locator("#login-error")).to_contain_text("Too many failed logins")
    shot(page, "login-locked")
    page.wait_for_timeout(int((LOCKOUT_S + 0.5) * 1000))
    log_in(page, console, "admin", admin_password(console))
    page.wait_for_selector("#state[data-state]")

