"""Incident reports: what triggered a FAILSAFE, what led to it, what each step did, what is left.

Written as JSON (for tools) and Markdown (for people, ``incident_render.py``: what happened in one
sentence, what to do next, what is left, the session's PnL before and after, steps, timeline)
under ``logs/incidents/``, file names stamped in UTC. Text from outside (a trigger's reason, a
step's detail) is escaped in the Markdown, one line each (``services/log_escape.py``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from services.orchestrator.incident_render import markdown


@dataclass
class Step:
    name: str
    ok: bool
    duration_ms: float
    detail: str
    # Wall time the step ended (the console draws the sequence on a time axis from it).
    finished_at: float = field(default_factory=time.time)


# A sequence that keeps retrying (the venue will not confirm flat) adds steps every round; the
# report keeps the first ones (what happened at once) and the latest ones (what happens now).
MAX_STEPS, KEEP_FIRST_STEPS = 200, 50


@dataclass
class IncidentReport:
    session_id: str
    trigger: str
    started_at: float
    timeline: list[dict[str, Any]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    finished_at: float | None = None
    # The sequence's outcome: new orders stopped in both places and the venue confirmed flat.
    # A step that failed and was retried successfully shows in ``steps`` but does not make it false.
    ok: bool = False
    # Rounds of cancel/flatten/verify after the first attempts, while the venue was not flat.
    retry_rounds: int = 0
    steps_omitted: int = 0
    # What the orchestrator knew of its storage at the trigger (a full disk, a journal that cannot
    # be written): the report then says to free disk before anything else.
    storage: list[str] = field(default_factory=list)

    def add_step(self, step: Step) -> None:
        self.steps.append(step)
        if len(self.steps) > MAX_STEPS:
            del self.steps[KEEP_FIRST_STEPS]
            self.steps_omitted += 1

    def snapshot(self) -> "IncidentReport":
        """A copy another thread may write out while the sequence goes on adding steps."""
        return replace(self, steps=list(self.steps), timeline=list(self.timeline))

    def write(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime(self.started_at))
        base = directory / f"incident_{stamp}_{self.session_id}"
        json_path, md_path = base.with_suffix(".json"), base.with_suffix(".md")
        json_path.write_text(json.dumps(asdict(self), indent=2, default=str))
        md_path.write_text(self._markdown())
        return json_path, md_path

    def _markdown(self) -> str:
        return markdown(self, KEEP_FIRST_STEPS)
