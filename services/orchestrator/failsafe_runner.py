"""Running the FAILSAFE sequence beside the orchestrator's loop, until the venue confirms flat.

The sequence's steps wait on other processes (seconds each when one is dead or hung), and the
orchestrator must meanwhile go on answering operators, publishing its state and heartbeats and
telling restarted processes not to trade: so the sequence runs in a thread of its own, with its own
command clients. It hands each finished round back to the loop (``post``) and never touches the
orchestrator's state itself.

A FAILSAFE ends flat or keeps trying: when the first attempts leave the venue holding a position
or an order, further rounds follow with backoff (``retry_initial_s`` doubling to ``retry_max_s``)
until the venue confirms flat. An operator may ask for a round now (``wake``: ``tradectl flatten``
or ``tradectl failsafe`` in FAILSAFE) or end the session (``stop``: no round after the current one).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from services.backoff import Backoff
from services.orchestrator.failsafe import FailsafeSequence
from services.orchestrator.incident import IncidentReport
from services.orchestrator.settings import FailsafeSettings

log = logging.getLogger(__name__)

# ``on_round(report snapshot, flat, round number, last)``: round 1 is the first attempts; ``last``
# is True when no round follows (flat, stopped, or the sequence broke).
RoundCallback = Callable[[IncidentReport, bool, int, bool], None]
Post = Callable[[Callable[[], None]], None]


class FailsafeRunner:
    def __init__(self, sequence: FailsafeSequence, cfg: FailsafeSettings, post: Post) -> None:
        self._sequence = sequence
        self._cfg = cfg
        self._post = post
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, report: IncidentReport, on_round: RoundCallback) -> bool:
        """Begin a sequence into ``report``; False (nothing done) if one is still running."""
        if self.running:
            return False
        self._wake.clear()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(report, on_round), name="failsafe", daemon=True)
        self._thread.start()
        return True

    def wake(self) -> None:
        """Run the next round now instead of after the backoff."""
        self._wake.set()

    def stop(self) -> None:
        """No further round after the one under way (the session is ending)."""
        self._stop.set()
        self._wake.set()

    def join(self, timeout_s: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self, report: IncidentReport, on_round: RoundCallback) -> None:
        flat, round_no = False, 1
        pause = Backoff(self._cfg.retry_initial_s, self._cfg.retry_max_s)
        try:
            flat = self._sequence.run(report)
            while not flat and not self._stop.is_set():
                self._hand_back(on_round, report, flat, round_no, last=False)
                woken = self._wake.wait(pause.next())
                self._wake.clear()
                if self._stop.is_set():
                    break
                if woken:  # an operator asked for a round now: the pause starts short again
                    pause.reset()
                round_no += 1
                flat = self._sequence.retry(report, round_no - 1)
        except Exception:  # a step that broke: the report shows how far it got, and says not ok
            log.exception("failsafe sequence failed")
        self._hand_back(on_round, report, flat, round_no, last=True)

    def _hand_back(self, on_round: RoundCallback, report: IncidentReport, flat: bool, round_no: int,
                   last: bool) -> None:
        snapshot = report.snapshot()
        self._post(lambda: on_round(snapshot, flat, round_no, last))
