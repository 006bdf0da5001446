"""Incident and end-of-day reports as the console shows them: found on disk where the orchestrator
writes them (``<log_dir>/incidents/``, ``<log_dir>/reports/``), their Markdown rendered to HTML with
raw HTML escaped (a reason or a symbol from outside stays text), and an incident's FAILSAFE steps
as a sequence on a time axis from its JSON twin.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

KINDS = {"incident": "incidents", "eod": "reports"}
_NAME = re.compile(r"^(incident|eod)_[0-9]{8}_[0-9]{6}_[A-Za-z0-9_.-]{1,80}$")
MAX_LISTED = 200
MAX_BYTES = 4 << 20  # a report larger than this is not rendered (the retry rounds are bounded well below)

# CommonMark with tables; "html": False turns any raw HTML in the text into escaped text.
_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def _kind(name: str) -> str:
    return name.split("_", 1)[0]


class Reports:
    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir

    def list(self) -> list[dict[str, Any]]:
        """Newest first: name, kind, time, title, outcome (incidents: verified flat or not)."""
        found = []
        for kind, folder in KINDS.items():
            for path in (self._log_dir / folder).glob(f"{kind}_*.md"):
                if _NAME.match(path.stem):
                    found.append(path)
        found.sort(key=lambda p: p.stem.split("_", 1)[1], reverse=True)
        out = []
        for path in found[:MAX_LISTED]:
            details = self._json(path)
            out.append({"name": path.stem, "kind": _kind(path.stem), "ts": _started(details, path),
                        "title": _title(path), "ok": details.get("ok") if _kind(path.stem) == "incident" else None})
        return out

    def get(self, name: str) -> dict[str, Any] | None:
        """One report, rendered; None if there is no such report (or the name is not a report's)."""
        if not _NAME.match(name):
            return None
        path = self._log_dir / KINDS[_kind(name)] / f"{name}.md"
        try:
            if path.stat().st_size > MAX_BYTES:
                text = f"# {name}\n\nThis report is {path.stat().st_size} bytes, too large to show here; open {path}."
            else:
                text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        details = self._json(path)
        started = details.get("started_at")
        steps = []
        for step in details.get("steps") or []:
            if not isinstance(step, dict):
                continue
            end, duration = step.get("finished_at"), float(step.get("duration_ms") or 0.0)
            at = (end - duration / 1000 - started) if isinstance(end, (int, float)) and isinstance(
                started, (int, float)) else None
            steps.append({"name": str(step.get("name", "")), "ok": bool(step.get("ok")), "duration_ms": duration,
                          "detail": str(step.get("detail", "")), "t": at})
        return {"name": name, "kind": _kind(name), "title": _title(path), "html": _MARKDOWN.render(text),
                "ok": details.get("ok"), "started_at": started, "finished_at": details.get("finished_at"),
                "trigger": details.get("trigger"), "steps": steps}

    @staticmethod
    def _json(md_path: Path) -> dict[str, Any]:
        try:
            path = md_path.with_suffix(".json")
            if path.stat().st_size > MAX_BYTES:
                return {}
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def _title(path: Path) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("#"):
                    return line.lstrip("#").strip()[:300]
    except OSError:
        pass
    return path.stem


def _started(details: dict[str, Any], path: Path) -> float | None:
    started = details.get("started_at") or details.get("ended_at")
    if isinstance(started, (int, float)):
        return float(started)
    try:
        return path.stat().st_mtime
    except OSError:
        return None
