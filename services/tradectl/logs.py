"""``tradectl logs``: list and tail the logs an incident review needs, with the daemon up or down.

Names: the session logs (``live_trading``, ``safety_events``, ``connector_health``,
``governance_events``: the newest file of each in ``<log_dir>/live/``; ``events``: the JSON-lines
event log), supervisord's ``alerts``
(process_alerts.log, from the event listener) and ``supervisord`` logs, and each program's own log
(``engine``, ``exchange_manager``, ...). Files are found on disk, so this works when the daemon is
down too, which is when it is needed most.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from services.log_escape import json_line
from services.orchestrator.session_logs import EVENTS, KINDS
from services.settings import SettingsError, load_settings


def find_logs(log_dir: Path) -> dict[str, Path]:
    """{name: current file} of every log there is."""
    found: dict[str, Path] = {}
    live = log_dir / "live"
    for kind in KINDS:
        newest = _newest(live.glob(f"{kind}_*.log"))
        if newest is not None:
            found[kind] = newest
    newest_events = _newest(live.glob(f"{EVENTS}_*.jsonl"))
    if newest_events is not None:
        found[EVENTS] = newest_events
    if (log_dir / "process_alerts.log").exists():
        found["alerts"] = log_dir / "process_alerts.log"
    for path in sorted(log_dir.glob("*.log")):
        if path.name != "process_alerts.log":
            found.setdefault(path.stem, path)
    return found


def _newest(paths: Iterable[Path]) -> Path | None:
    return max(paths, key=lambda p: (p.stat().st_mtime, p.name), default=None)


def tail(path: Path, lines: int) -> list[str]:
    with path.open(encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n") for line in deque(f, maxlen=lines)]


def follow(path: Path, emit: Callable[[str], None], poll_s: float = 0.2) -> None:
    """Print lines as they are appended; after a rotation (the file shrinks or is replaced) read
    the new file from its start."""
    f = path.open(encoding="utf-8", errors="replace")
    f.seek(0, 2)
    inode = path.stat().st_ino
    try:
        while True:
            line = f.readline()
            if line:
                emit(line.rstrip("\n"))
                continue
            time.sleep(poll_s)
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if st.st_ino != inode or st.st_size < f.tell():
                f.close()
                f = path.open(encoding="utf-8", errors="replace")
                inode = st.st_ino
    finally:
        f.close()


@click.command("logs")
@click.argument("name", required=False)
@click.option("-n", "--lines", default=20, show_default=True, help="How many of the last lines to show.")
@click.option("-f", "--follow", "keep_following", is_flag=True, help="Keep printing lines as they are written.")
@click.option("--grep", "pattern", default=None, help="Only lines containing this text.")
@click.option("--json", "as_json", is_flag=True,
              help="JSON: the list of logs, or one object per line ({log, line}; the events log as is).")
def logs(name: str | None, lines: int, keep_following: bool, pattern: str | None, as_json: bool) -> None:
    """List the logs, or show the end of one: live_trading, safety_events, connector_health,
    governance_events, events (JSON lines), alerts (supervisord's), supervisord, or a program's name.

    \b
    Examples:
      tradectl logs                           # which logs there are, with sizes
      tradectl logs safety_events -n 50       # the last 50 safety events
      tradectl logs live_trading -f           # follow the session as it happens
      tradectl logs events --json | jq 'select(.event == "state_transition") | .data'
      tradectl logs engine --grep ERROR
    """
    try:
        log_dir = load_settings().paths.log_dir
    except SettingsError as exc:
        raise click.ClickException(f"invalid settings:\n{exc}") from None
    available = find_logs(log_dir)
    if name is None:
        _list(available, log_dir, as_json)
        return
    path = available.get(name)
    if path is None:
        known = ", ".join(sorted(available)) or "none yet"
        raise click.ClickException(f"no log named {name!r} in {log_dir} (there are: {known}). "
                                   "Is the daemon's log_dir this one? Check --config / TRADING_CONFIG.")

    def emit(line: str) -> None:
        if pattern is not None and pattern not in line:
            return
        if as_json and name != EVENTS:
            line = json_line({"log": name, "line": line})
        click.echo(line)

    # With --grep, look further back than -n so that -n matching lines can be shown.
    shown = tail(path, lines) if pattern is None else [ln for ln in tail(path, 100_000) if pattern in ln][-lines:]
    for line in shown:
        emit(line)
    if keep_following:
        try:
            follow(path, emit)
        except KeyboardInterrupt:
            pass


def _list(available: dict[str, Path], log_dir: Path, as_json: bool) -> None:
    rows = [{"name": name, "path": str(path), "bytes": path.stat().st_size,
             "modified": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(path.stat().st_mtime))}
            for name, path in sorted(available.items())]
    if as_json:
        click.echo(json_line(rows))
        return
    if not rows:
        click.echo(f"no logs in {log_dir} yet (start the daemon with `make run`)")
        return
    table = Table(title=f"logs in {log_dir}")
    for column in ("name", "bytes", "modified", "path"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], str(row["bytes"]), row["modified"], row["path"])
    Console().print(table)
