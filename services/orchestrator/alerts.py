"""Alerting operators: a log line, then every configured sink, each in its own thread.

A sink that fails or hangs never blocks the caller (the failsafe sequence): it is given
``alert_timeout_s`` and its outcome is logged and kept for ``status``.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import urllib.request
from typing import Any

from services.log_escape import JSON
from services.orchestrator.settings import FailsafeSettings

log = logging.getLogger("orchestrator.alerts")


class Alerter:
    def __init__(self, cfg: FailsafeSettings) -> None:
        self._cfg = cfg
        self.outcomes: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def send(self, alert: dict[str, Any]) -> list[threading.Thread]:
        log.critical("ALERT %s", JSON.encode(alert).decode())
        threads = []
        if self._cfg.webhook_url:
            threads.append(threading.Thread(target=self._webhook, args=(alert,), daemon=True, name="alert-webhook"))
        if self._cfg.alert_command:
            threads.append(threading.Thread(target=self._command, args=(alert,), daemon=True, name="alert-command"))
        for thread in threads:
            thread.start()
        return threads

    def _webhook(self, alert: dict[str, Any]) -> None:
        body = JSON.encode(alert)
        request = urllib.request.Request(self._cfg.webhook_url or "", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self._cfg.alert_timeout_s) as response:
                self._record("webhook", response.status < 300, f"HTTP {response.status}")
        except Exception as exc:  # any failure of a sink is recorded, never raised
            self._record("webhook", False, repr(exc))

    def _command(self, alert: dict[str, Any]) -> None:
        try:
            done = subprocess.run(self._cfg.alert_command or [], input=JSON.encode(alert),
                                  capture_output=True, timeout=self._cfg.alert_timeout_s, check=False)
            self._record("command", done.returncode == 0, f"exit {done.returncode}")
        except Exception as exc:
            self._record("command", False, repr(exc))

    def _record(self, sink: str, ok: bool, detail: str) -> None:
        (log.info if ok else log.error)("alert sink %s: %s", sink, detail)
        with self._lock:
            self.outcomes.append({"sink": sink, "ok": ok, "detail": detail})
            del self.outcomes[:-50]
