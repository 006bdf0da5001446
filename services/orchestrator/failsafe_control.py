"""The FAILSAFE as the session runs it: the sequence (``failsafe.py``) until the venue confirms flat.

It starts when the session enters FAILSAFE, for the trigger journalled with that transition; the
trigger stays journalled as pending until the venue is verified flat, so an orchestrator killed in
the middle goes on with it after its restart. When the first attempts leave the venue holding a
position or an order, further rounds follow with backoff (``retry_initial_s`` doubling to
``retry_max_s``). An operator may ask for a round now (``again``: ``tradectl flatten`` or ``tradectl
failsafe`` in FAILSAFE) or end the session (``end_rounds``: no round after the current one). It
runs in the orchestrator's sequence runner, so its waits never block the loop.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from proto import OrchestratorState as S
from services.backoff import Backoff
from services.orchestrator.alerts import Alerter
from services.orchestrator.components import ComponentTracker
from services.orchestrator.failsafe import FailsafeSequence
from services.orchestrator.incident import IncidentReport
from services.orchestrator.sequence_runner import Pause, Sequence, SequenceRunner
from services.orchestrator.session_state import Session
from services.orchestrator.settings import FailsafeSettings
from services.orchestrator.storage_watch import StorageWatch
from proto.summaries import ExchangeSummary

log = logging.getLogger("orchestrator")
NAME = "failsafe"  # the sequence's name in the runner


class FailsafeControl:
    def __init__(self, session: Session, sequence: FailsafeSequence, cfg: FailsafeSettings, runner: SequenceRunner,
                 components: ComponentTracker, storage: StorageWatch, alerter: Alerter, incidents_dir: Path) -> None:
        self._session = session
        self._sequence = sequence
        self._cfg = cfg
        self._runner = runner
        self._components = components
        self._storage = storage
        self._alerter = alerter
        self._incidents_dir = incidents_dir
        self._again = False  # a round was asked for while one was under way: no pause before the next
        self._stopping = False
        self._holdings_since: float | None = None
        self._flat_verified_at: float | None = None  # time.monotonic() of the latest flat verify

    @property
    def running(self) -> bool:
        return self._runner.running(NAME)

    def run(self) -> None:
        """Start the sequence for the journalled trigger (the session has entered FAILSAFE)."""
        trigger = self._session.counters.failsafe_pending
        if trigger is None or self.running:
            return
        report = IncidentReport(self._session.session_id, trigger, time.time(),
                                timeline=list(self._session.timeline)[-50:], storage=self._storage.problems())
        self._again = self._stopping = False
        self._runner.start(NAME, self._until_flat(report))

    def again(self, reason: str) -> None:
        """A round now: wake the running sequence, or begin a new one (a new incident report)."""
        self._session.note(f"failsafe round requested: {reason}")
        if self.running:
            self._again = True
            self._runner.wake(NAME)
            return
        self._session.counters.failsafe_pending = reason
        self._session.save_counters()
        self.run()

    def end_rounds(self) -> bool:
        """No further round (the session is ending); True if one was still going on."""
        running = self.running
        self._stopping = True
        self._runner.wake(NAME)
        return running

    def watch(self) -> None:
        """In FAILSAFE the venue must end flat: a sequence pending after a restart goes on, and the
        book of record holding anything again (an order placed behind our back, a late fill) for
        longer than ``holdings_grace_s`` (heartbeats lag a fresh flat by a moment) starts a round."""
        if self.running:
            self._holdings_since = None
            return
        if self._session.counters.failsafe_pending is not None:
            self.run()  # resumed after a restart in the middle of the sequence
            return
        holdings = self.venue_holdings()
        if holdings is None:
            self._holdings_since = None
            return
        now = time.monotonic()
        if self._holdings_since is None:
            self._holdings_since = now
        elif now - self._holdings_since >= self._cfg.holdings_grace_s:
            self._holdings_since = None
            self.again(f"in FAILSAFE the venue holds {holdings}")

    def venue_holdings(self) -> str | None:
        """What the book of record (reconciled with the venues) still holds, or None when flat. A
        heartbeat older than the failsafe's latest "venue verified flat" says nothing newer than it."""
        em = self._components.components["exchange_manager"]
        if self._flat_verified_at is not None and (em.stats_at or 0.0) <= self._flat_verified_at:
            return None
        stats = em.summary(ExchangeSummary)
        positions = {s: q for s, q in stats.positions.items() if abs(q) > 1e-9}
        open_orders = stats.open_orders
        unknown = stats.venue_unknown
        foreign = (f" (not sent by this system: {unknown.orders} order(s), positions {unknown.positions})"
                   if unknown.orders or unknown.positions else "")
        if not positions and not open_orders and not foreign:
            return None
        return f"positions {positions} and {open_orders} open order(s){foreign}"

    def _until_flat(self, report: IncidentReport) -> Sequence[None]:
        """The first attempts, then rounds with backoff until the venue confirms flat or the
        session ends; each round's outcome is reported as it ends."""
        flat, round_no = False, 1
        pause = Backoff(self._cfg.retry_initial_s, self._cfg.retry_max_s)
        try:
            flat = yield from self._sequence.run(report)
            while not flat and not self._stopping:
                self._round_ended(report.snapshot(), flat, round_no, last=False)
                woken = self._again or (yield Pause(pause.next()))
                self._again = False
                if self._stopping:
                    break
                if woken:  # an operator asked for a round now: the pause starts short again
                    pause.reset()
                round_no += 1
                flat = yield from self._sequence.retry(report, round_no - 1)
        except Exception:  # a step that broke: the report shows how far it got, and says not ok
            log.exception("failsafe sequence failed")
        self._round_ended(report.snapshot(), flat, round_no, last=True)

    def _round_ended(self, report: IncidentReport, flat: bool, round_no: int, last: bool) -> None:
        """Write the incident report, log, alert on the first round and at the end; clear the
        pending trigger once flat."""
        session = self._session
        if last:
            report.finished_at = time.time()
        try:
            json_path, md_path = report.write(self._incidents_dir)
        except OSError as exc:  # a full log disk: the alert below still carries the outcome
            json_path = md_path = f"not written: {exc}"
        if flat:
            self._flat_verified_at = time.monotonic()
        if flat or (last and session.state != S.FAILSAFE):
            session.counters.failsafe_pending = None
            session.save_counters()
        steps = report.steps[-1].detail if report.steps else ""
        if round_no > 1 and not last:
            session.logs.safety(f"FAILSAFE retry {round_no - 1}: the venue is still not flat ({steps}); trying again",
                                logging.ERROR, event="failsafe_retry", data={"round": round_no, "detail": steps})
            return
        outcome = ("flat at the venue" if flat else "NOT VERIFIED FLAT, retrying until it is" if not last
                   else f"NOT VERIFIED FLAT, stopped: the session is {session.state.value}")
        summary = (f"FAILSAFE sequence {'completed' if report.ok else 'INCOMPLETE'}: {report.trigger}; {outcome}"
                   f"{f' after {round_no - 1} retry round(s)' if round_no > 1 else ''}; incident report {json_path}")
        session.logs.safety(summary, logging.INFO if report.ok else logging.ERROR, event="failsafe_sequence",
                            data={"trigger": report.trigger, "ok": report.ok, "flat": flat, "round": round_no,
                                  "retrying": not last, "incident_report": str(json_path)})
        session.note(summary)
        self._alerter.send({"event": "failsafe", "session_id": session.session_id, "trigger": report.trigger,
                            "flat": flat, "ok": report.ok, "retrying": not last, "retry_rounds": round_no - 1,
                            "incident_report": str(json_path), "incident_report_md": str(md_path),
                            "steps": [{"name": st.name, "ok": st.ok, "ms": round(st.duration_ms, 3)}
                                      for st in report.steps[-20:]]})
