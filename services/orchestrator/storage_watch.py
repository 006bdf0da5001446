"""Durable storage, which every step toward risk needs: the session journal, the exchange
manager's book of record, and free disk space for both journals and the logs.

A journal that cannot be written is a critical STATE_DISK event (→ FAILSAFE, whose own transitions
are held in memory meanwhile) and an alert, once per episode, its writes retried every second; low
disk space is a STATE_DISK warning (→ DEGRADED). Both are published on ``safety`` like any
detector's event and handled here as one (``raise_event``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import proto
from services.orchestrator.alerts import Alerter
from services.orchestrator.components import ComponentTracker
from services.orchestrator.disk_watch import DiskWatch
from services.orchestrator.session_state import Session
from proto.summaries import ExchangeSummary


class StorageWatch:
    def __init__(self, session: Session, components: ComponentTracker, disk: DiskWatch, alerter: Alerter,
                 check_interval_s: float, raise_event: Callable[[proto.SafetyEvent], None],
                 later: Callable[[Callable[[], None]], None]) -> None:
        """``raise_event``: publish a safety event and react to it; ``later``: run on the loop's next turn."""
        self._session = session
        self._components = components
        self._disk = disk
        self._alerter = alerter
        self._interval_s = check_interval_s
        self._raise_event = raise_event
        self._later = later
        self.disk_problems: list[str] = []
        self._last_disk_check = 0.0
        self._journal_alerted = False
        session.on_journal_failed = self._journal_failed

    def problems(self, retry: bool = False) -> list[str]:
        """Why a step toward risk may not be taken now (empty: storage is fine)."""
        problems = list(self.disk_problems)
        journal = self._session.session_journal
        if journal.held and not (retry and journal.retry()):
            problems.append(f"the session journal cannot be written ({journal.error})")
        book = self._components.components["exchange_manager"].summary(ExchangeSummary).journal
        if book.error:
            problems.append(f"the exchange manager's book of record cannot be written ({book.error})")
        return problems

    def risk_ok(self) -> bool:
        return not self._session.session_journal.held and not self.disk_problems

    def retry_journal(self) -> None:
        journal = self._session.session_journal
        held = journal.held
        if held and journal.retry():
            self._journal_alerted = False
            self._session.logs.safety(f"Session journal written again ({held} held write(s) now on disk)",
                                      logging.WARNING, event="state_disk_recovered", data={"held": held})

    def check_disk(self) -> None:
        """Free space on the state and log directories: low → a STATE_DISK warning (DEGRADED)."""
        if time.monotonic() - self._last_disk_check < self._interval_s:
            return
        self._last_disk_check = time.monotonic()
        problems, before = self._disk.problems(), self.disk_problems
        self.disk_problems = problems
        if problems and not before:
            self._alerter.send({"event": "disk_space", "session_id": self._session.session_id, "detail": problems})
            self._raise(proto.Severity.WARNING, "; ".join(problems))
        elif before and not problems:
            self._session.logs.safety("Disk space back above orchestrator.min_free_disk_mb", logging.WARNING,
                                      event="disk_space_recovered")

    def _journal_failed(self) -> None:
        if self._journal_alerted:
            return
        self._journal_alerted = True
        error = self._session.session_journal.error
        self._alerter.send({"event": "state_disk", "session_id": self._session.session_id,
                            "detail": f"the session journal cannot be written: {error}"})
        # On the next loop turn: this may run inside a transition that is still being made.
        self._later(lambda: self._raise(proto.Severity.CRITICAL, f"the session journal cannot be written: {error}"))

    def _raise(self, severity: proto.Severity, message: str) -> None:
        self._raise_event(proto.SafetyEvent(event_type=proto.SafetyEventType.STATE_DISK, severity=severity,
                                            symbol="*", message=message))
