"""A console user as the tests see one: an HTTP session (``requests``) logged in to a test daemon's
console, with the page's CSRF token; shared by the HTTP tests and the browser tests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import requests

from integration.daemon import Daemon, wait_until

_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def console_url(d: Daemon) -> str:
    return f"http://127.0.0.1:{d.config['console']['port']}"


def admin_password(d: Daemon, timeout: float = 30.0) -> str:
    """The first user's password, from the 0600 file the console writes on its first start."""
    path = Path(d.state_dir) / "console" / "admin.password"
    wait_until(lambda: path.exists() or None, timeout, message="the console never wrote admin.password")
    return path.read_text().strip()


def wait_console(d: Daemon, timeout: float = 30.0) -> None:
    def up() -> bool | None:
        try:
            return requests.get(f"{console_url(d)}/login", timeout=1).status_code == 200 or None
        except requests.ConnectionError:
            return None
    wait_until(up, timeout, interval=0.2, message="the console never served its login page")


def add_user(d: Daemon, name: str, role: str) -> str:
    result = d.tradectl("console", "add-user", name, "--role", role, "--json")
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["password"])


class ConsoleUser:
    def __init__(self, d: Daemon) -> None:
        self.base = console_url(d)
        self.http = requests.Session()
        self.csrf = ""

    def login(self, user: str, password: str) -> requests.Response:
        response = self.http.post(f"{self.base}/login", data={"user": user, "password": password},
                                  allow_redirects=False, timeout=10)
        if response.status_code == 303:
            page = self.http.get(f"{self.base}/", timeout=10)
            match = _CSRF.search(page.text)
            assert match, "the page carries no CSRF token"
            self.csrf = match.group(1)
        return response

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(f"{self.base}{path}", params=params, timeout=10)

    def snapshot(self) -> dict[str, Any]:
        response = self.get("/api/snapshot")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def control(self, name: str, reason: str = "", *, csrf: str | None = None) -> requests.Response:
        token = self.csrf if csrf is None else csrf
        headers = {"X-CSRF-Token": token} if token else {}
        return self.http.post(f"{self.base}/api/control/{name}", json={"reason": reason}, headers=headers,
                              timeout=40)

    def wait_state(self, state: str, timeout: float = 30.0) -> dict[str, Any]:
        return wait_until(lambda: (s := self.snapshot())["session"]["state"] == state and s or None, timeout,
                          interval=0.1, message=f"the console never showed {state}")
