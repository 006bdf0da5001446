"""services.orchestrator.alerts.Alerter against real sinks: a local HTTP server on 127.0.0.1 and
real child processes. A failing or hanging sink is recorded as not ok and never raises or blocks."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from services.orchestrator.alerts import Alerter
from services.orchestrator.settings import FailsafeSettings

ALERT = {"kind": "failsafe", "reason": "critical safety event", "cancelled": ["a-1", "a-2"], "flat": True}


class Hook:
    def __init__(self, status: int) -> None:
        self.status = status
        self.requests: list[dict[str, Any]] = []


@pytest.fixture
def webhook() -> Iterator[tuple[str, Hook]]:
    hook = Hook(200)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server API)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.requests.append({"path": self.path, "content_type": self.headers["Content-Type"],
                                  "body": json.loads(body)})
            self.send_response(hook.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alert", hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send(alerter: Alerter, alert: dict[str, Any] = ALERT) -> list[dict[str, Any]]:
    threads = alerter.send(alert)
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    return sorted(alerter.outcomes, key=lambda o: o["sink"])


def test_webhook_receives_the_json_post(webhook: tuple[str, Hook]) -> None:
    url, hook = webhook
    outcomes = send(Alerter(FailsafeSettings(webhook_url=url)))
    assert outcomes == [{"sink": "webhook", "ok": True, "detail": "HTTP 200"}]
    assert hook.requests == [{"path": "/alert", "content_type": "application/json", "body": ALERT}]


def test_alert_command_gets_the_json_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "alert.json"
    command = [sys.executable, "-c", "import sys; open(sys.argv[1], 'wb').write(sys.stdin.buffer.read())", str(out)]
    outcomes = send(Alerter(FailsafeSettings(alert_command=command)))
    assert outcomes == [{"sink": "command", "ok": True, "detail": "exit 0"}]
    assert json.loads(out.read_text()) == ALERT


def test_both_sinks_and_non_json_values(webhook: tuple[str, Hook], tmp_path: Path) -> None:
    url, hook = webhook
    out = tmp_path / "alert.json"
    command = [sys.executable, "-c", "import sys; open(sys.argv[1], 'wb').write(sys.stdin.buffer.read())", str(out)]
    alert = {"kind": "failsafe", "at": Path("/x"), "when": 1.5}  # a value JSON does not know is sent as text
    outcomes = send(Alerter(FailsafeSettings(webhook_url=url, alert_command=command)), alert)
    assert [o["ok"] for o in outcomes] == [True, True]
    assert hook.requests[0]["body"] == {"kind": "failsafe", "at": "/x", "when": 1.5}
    assert json.loads(out.read_text()) == {"kind": "failsafe", "at": "/x", "when": 1.5}


def test_a_webhook_answering_an_error_is_not_ok(webhook: tuple[str, Hook]) -> None:
    url, hook = webhook
    hook.status = 500
    (outcome,) = send(Alerter(FailsafeSettings(webhook_url=url)))
    assert outcome["sink"] == "webhook" and not outcome["ok"] and "500" in outcome["detail"]
    assert len(hook.requests) == 1


def test_a_webhook_on_a_closed_port_is_recorded_not_raised() -> None:
    alerter = Alerter(FailsafeSettings(webhook_url=f"http://127.0.0.1:{closed_port()}/alert", alert_timeout_s=2.0))
    (outcome,) = send(alerter)
    assert outcome["sink"] == "webhook" and outcome["ok"] is False
    assert "refused" in outcome["detail"].lower() or "URLError" in outcome["detail"]


@pytest.mark.parametrize(("command", "detail"), [
    ([sys.executable, "-c", "import sys; sys.stdin.read(); sys.exit(3)"], "exit 3"),
    (["/nonexistent/alert-command"], "FileNotFoundError"),
])
def test_a_failing_command_is_recorded_not_raised(command: list[str], detail: str) -> None:
    (outcome,) = send(Alerter(FailsafeSettings(alert_command=command)))
    assert outcome["sink"] == "command" and outcome["ok"] is False and detail in outcome["detail"]


def test_hanging_sinks_time_out_without_blocking_the_caller() -> None:
    listener = socket.socket()  # accepts connections (the kernel's backlog) but never answers
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        cfg = FailsafeSettings(webhook_url=f"http://127.0.0.1:{listener.getsockname()[1]}/alert",
                               alert_command=[sys.executable, "-c", "import time; time.sleep(60)"],
                               alert_timeout_s=0.5)
        alerter = Alerter(cfg)
        started = time.monotonic()
        threads = alerter.send(ALERT)
        assert time.monotonic() - started < 0.4  # send only starts the sinks
        for thread in threads:
            thread.join(10)
        outcomes = sorted(alerter.outcomes, key=lambda o: o["sink"])
        assert [(o["sink"], o["ok"]) for o in outcomes] == [("command", False), ("webhook", False)]
        assert "TimeoutExpired" in outcomes[0]["detail"]
        assert "timed out" in outcomes[1]["detail"].lower()
    finally:
        listener.close()


def test_no_sinks_configured() -> None:
    alerter = Alerter(FailsafeSettings())
    assert alerter.send(ALERT) == [] and alerter.outcomes == []
