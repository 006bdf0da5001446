"""The tail of the session's event log (``<log_dir>/live/events_<ts>.jsonl``, every line of the four
session logs with its fields), filtered by level, log and text. Only the file's last ``TAIL_BYTES``
are read, so a page refreshing it costs the same whatever the size of the day's log.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from services.orchestrator.session_logs import EVENTS, KINDS

TAIL_BYTES = 2 << 20
LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
MAX_LINES = 2_000


def newest_event_log(log_dir: Path) -> Path | None:
    paths = list((log_dir / "live").glob(f"{EVENTS}_*.jsonl"))
    return max(paths, key=lambda p: (p.stat().st_mtime, p.name), default=None)


def tail(log_dir: Path, *, level: str = "", log: str = "", text: str = "", limit: int = 200) -> dict[str, Any]:
    """``{"file", "lines": [{ts, time, level, log, event, message}]}``, oldest first; ``level``: that
    level and above; ``log``: one of the four session logs; ``text``: in the message (any case)."""
    limit = max(1, min(limit, MAX_LINES))
    path = newest_event_log(log_dir)
    if path is None:
        return {"file": None, "lines": []}
    floor = LEVELS.get(level.upper(), 0)
    log = log if log in KINDS else ""
    needle = text.lower()
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - TAIL_BYTES))
        chunk = f.read()
    lines = chunk.decode("utf-8", errors="replace").splitlines()
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first is cut
    out: list[dict[str, Any]] = []
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if LEVELS.get(str(entry.get("level")), 0) < floor or (log and entry.get("log") != log):
            continue
        message = str(entry.get("message", ""))
        if needle and needle not in message.lower():
            continue
        out.append({key: entry.get(key) for key in ("ts", "time", "level", "log", "event")} | {"message": message})
        if len(out) >= limit:
            break
    return {"file": str(path), "lines": out[::-1]}
