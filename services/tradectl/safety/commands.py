"""``tradectl safety status`` and ``tradectl safety replay``.

Exit codes: 0 done; 2 the daemon is unreachable (``status``); 78 (EX_CONFIG) a file ``replay``
cannot read or recognise, or settings it cannot use, with one line saying which and why.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

import proto
from proto.fields import valid_symbol
from services.safety.monitor import DETECTORS, Published
from services.tradectl.daemon_client import Daemon

EXIT_BAD_INPUT = 78  # services.settings.EXIT_BAD_SETTINGS, as a process with bad settings exits


def _fail(code: int, message: str) -> NoReturn:
    click.echo(f"tradectl safety: {message}", err=True)
    sys.exit(code)


def utc(ts_s: float) -> str:
    """Session time as the data's UTC time, with its zone: ``2022-01-07 08:27:30 UTC``."""
    stamp = datetime.fromtimestamp(ts_s, timezone.utc)
    text = stamp.strftime("%Y-%m-%d %H:%M:%S")
    return text + (f".{stamp.microsecond // 1000:03d}" if stamp.microsecond else "") + " UTC"


@click.group()
def safety() -> None:
    """The safety layer: what holds now, and its detectors over a recorded file."""


@safety.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object: holding, clock, session_time, events.")
def status(as_json: bool) -> None:
    """The conditions that hold now (the orchestrator refuses `recover` while any does), and the
    events each detector has raised.

    \b
    Examples:
      tradectl safety status
      tradectl safety status --json | jq '.holding[] | .reason'
    """
    result = Daemon("safety").call("conditions")
    events = Daemon("safety").call("status")["stats"].get("events", {})
    if as_json:
        click.echo(json.dumps({**result, "events": events}, sort_keys=True))
        return
    when = "-" if result["session_time"] is None else utc(result["session_time"])
    table = Table(title=f"safety: {len(result['holding'])} condition(s) holding at {when} ({result['clock']} clock)")
    for column in ("detector", "type", "symbol", "since", "reason"):
        table.add_column(column)
    for c in result["holding"]:
        table.add_row(c["detector"], c["event_type"], c["symbol"], utc(c["since"]), c["reason"])
    Console().print(table)
    click.echo("events: " + ", ".join(f"{d} {n}" for d, n in events.items()))


@safety.command()
@click.argument("file", type=click.Path(path_type=Path))  # checked when read: exit 78, one line
@click.option("--symbol", default=None,
              help="A data file's symbol name (default REPLAY); a recording: only this symbol's data, orders and fills.")
@click.option("--settings", "settings_file", type=click.Path(path_type=Path), default=None,
              help="TOML settings whose [safety] section to use (default: the daemon's settings).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: events, per_day, totals.")
def replay(file: Path, symbol: str | None, settings_file: Path | None, as_json: bool) -> None:
    """Run the safety detectors over FILE, offline, on the data's own time: every event with its
    timestamp (UTC) and evidence, per detector, then the events per detector per day.

    FILE is market data the venue simulator replays (1-minute bars, quotes, histdata, tardis
    trades) or a bus recording (`tradectl bus record`). The same detector classes as the running
    safety process; the session counts as trading throughout; the whole feed's silence (wall
    clock) and the position check are not judged offline.

    \b
    Examples:
      tradectl safety replay ../shared/data/btc-perp_2021-12-31_2022-01-15_1m.csv --symbol BTC-USD
      tradectl safety replay day.tdbus --symbol BTC-USD --json | jq .per_day
      tradectl safety replay bars.csv --settings quiet.toml
    """
    from services.tradectl.safety.offline import OfflineInputError, open_source, run

    if symbol is not None:
        try:
            valid_symbol(symbol)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--symbol") from None
    settings = _settings(settings_file)
    try:
        source = open_source(file, symbol, settings.venue_sim.spread_bps)
        counted = _Counted(source.updates)
        events, monitor = run(settings.safety, counted)
    except OfflineInputError as exc:
        _fail(EXIT_BAD_INPUT, str(exc))
    per_day: dict[str, Counter[str]] = {day: Counter() for day in counted.days}
    for detector, ev in events:
        per_day.setdefault(utc(ev.ts_ns / 1e9)[:10], Counter())[detector] += 1
    holding = [c.to_dict() for c in monitor.holding()]
    report = {"file": str(file), "format": source.kind, "updates": counted.n, "undecodable": source.undecodable,
              "skipped": source.skipped, "events": [_event_json(d, ev) for d, ev in events],
              "per_day": {day: dict(c) for day, c in sorted(per_day.items())},
              "totals": dict(Counter(d for d, _ in events)), "holding_at_end": holding}
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))
    else:
        _print(report, events)


class _Counted:
    """The updates as they go by: how many, and the days (UTC) their market data covers."""

    def __init__(self, items: Iterable[Any]) -> None:
        self._items, self.n = items, 0
        self.days: set[str] = set()

    def __iter__(self) -> Iterator[Any]:
        day_ns, last_day = 86_400 * 10**9, None
        for item in self._items:
            self.n += 1
            ts_ns = item.ts_ns if isinstance(item, (proto.Quote, proto.Trade)) else 0
            if ts_ns > 0 and ts_ns // day_ns != last_day:
                last_day = ts_ns // day_ns
                self.days.add(utc(ts_ns / 1e9)[:10])
            yield item


def _settings(settings_file: Path | None) -> Any:
    from services.settings import CONFIG_FILE_ENV, SettingsError, load_settings

    before = os.environ.get(CONFIG_FILE_ENV)
    if settings_file is not None:
        if not settings_file.is_file():
            _fail(EXIT_BAD_INPUT, f"--settings {settings_file}: no such file (or not a file)")
        os.environ[CONFIG_FILE_ENV] = str(settings_file)
    try:
        return load_settings()
    except SettingsError as exc:
        where = f" in {settings_file}" if settings_file is not None else ""
        _fail(EXIT_BAD_INPUT, f"bad settings{where}: " + "; ".join(str(exc).splitlines()))
    finally:  # the settings model reads the file's name from the environment: leave it as it was
        if before is None:
            os.environ.pop(CONFIG_FILE_ENV, None)
        else:
            os.environ[CONFIG_FILE_ENV] = before


def _event_json(detector: str, ev: Any) -> dict[str, Any]:
    return {"detector": detector, "ts_ns": ev.ts_ns, "time": utc(ev.ts_ns / 1e9), "event_type": ev.event_type.value,
            "severity": ev.severity.value, "symbol": ev.symbol, "message": ev.message, "evidence": ev.evidence}


def _print(report: dict[str, Any], events: list[Published]) -> None:
    click.echo(f"{report['file']}: {report['updates']} updates ({report['format']}), session clock on the "
               f"data's time; {len(events)} event(s)")
    for detector in DETECTORS:
        mine = [ev for d, ev in events if d == detector]
        if not mine:
            continue
        click.echo(f"\n{detector}: {len(mine)} event(s)")
        for ev in mine:
            evidence = " ".join(f"{k}={v:.6g}" for k, v in ev.evidence.items())
            click.echo(f"  {utc(ev.ts_ns / 1e9)}  {ev.severity.value.upper():8} {ev.event_type.value} {ev.symbol}: "
                       f"{ev.message}" + (f"  [{evidence}]" if evidence else ""))
    # Plain columns, not a rich table: a pipe or a file must get every figure whole.
    widths = [10, *(max(len(d), 5) for d in DETECTORS), 5]
    click.echo("\nevents per day (UTC)")
    click.echo("  ".join(h.rjust(w) for h, w in zip(("day", *DETECTORS, "total"), widths)))
    for day, counts in report["per_day"].items():
        row = (day, *(str(counts.get(d, 0)) for d in DETECTORS), str(sum(counts.values())))
        click.echo("  ".join(v.rjust(w) for v, w in zip(row, widths)))
    for c in report["holding_at_end"]:
        click.echo(f"holding at the end: {c['detector']} {c['symbol']}: {c['reason']}")
    if report["undecodable"] or report["skipped"]:
        click.echo(f"not for the detectors: {report['undecodable']} undecodable, {report['skipped']}")
