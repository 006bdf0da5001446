"""Incident reports: what triggered a FAILSAFE, what led to it, and what each step did.

Written as JSON (for tools) and Markdown (for people) under ``logs/incidents/``. Text from outside
(a trigger's reason, a step's detail) is escaped in the Markdown, one line each
(``services/log_escape.py``); the JSON blocks are ``json.dumps`` in ASCII.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from services.log_escape import escape, md_cell


@dataclass
class Step:
    name: str
    ok: bool
    duration_ms: float
    detail: str


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
        stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(self.started_at))
        base = directory / f"incident_{stamp}_{self.session_id}"
        json_path, md_path = base.with_suffix(".json"), base.with_suffix(".md")
        json_path.write_text(json.dumps(asdict(self), indent=2, default=str))
        md_path.write_text(self._markdown())
        return json_path, md_path

    def _markdown(self) -> str:
        def when(ts: float | None) -> str:
            return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"

        lines = [
            f"# FAILSAFE incident, session {self.session_id}",
            "",
            f"- Trigger: {escape(self.trigger)}",
            f"- Started: {when(self.started_at)}",
            f"- Finished: {when(self.finished_at)}",
            f"- Outcome: {'trading stopped and flat at the venue' if self.ok else 'NOT SAFE: see the steps below'}"
            + (f" ({sum(not s.ok for s in self.steps)} step(s) failed and were retried)"
               if self.ok and not all(s.ok for s in self.steps) else ""),
            *([f"- Retry rounds after the first attempts: {self.retry_rounds}"
               + ("" if self.ok or self.finished_at is not None else " (still retrying)")] if self.retry_rounds else []),
            *([f"- Steps not listed (between the first {KEEP_FIRST_STEPS} and the latest): {self.steps_omitted}"]
              if self.steps_omitted else []),
            "",
            "## Steps",
            "",
            "| step | ok | ms | detail |",
            "|---|---|---|---|",
            *[f"| {md_cell(s.name)} | {'yes' if s.ok else 'NO'} | {s.duration_ms:.1f} | {md_cell(s.detail)} |"
              for s in self.steps],
            "",
            "## Timeline (latest state changes and events)",
            "",
            *[f"- {when(e.get('ts'))} {escape(str(e.get('what', '')))}" for e in self.timeline],
            "",
            "## Before",
            "",
            "```json",
            json.dumps(self.before, indent=2, default=str),
            "```",
            "",
            "## After",
            "",
            "```json",
            json.dumps(self.after, indent=2, default=str),
            "```",
            "",
        ]
        return "\n".join(lines)
