"""``tradectl bus record``, ``play`` and ``info``: the verbs that work with recording files."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import click
from rich.console import Console

from services.log_escape import json_line
from services.tradectl.sniffer import views
from services.tradectl.sniffer.attach import Attachment
from services.tradectl.sniffer.common import (
    EXIT_ERROR,
    SNIFFER,
    credentials,
    fail,
    hwm_option,
    json_option,
    losses,
    settings,
    sigterm_as_interrupt,
)
from services.tradectl.sniffer.playback import Player, sources_of, summary
from services.tradectl.sniffer.recorder import run_record
from services.tradectl.sniffer.recording import (
    Reader,
    RecordingError,
    Writer,
    part_path,
)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("prefixes", nargs=-1)
@click.option("--max-bytes", type=click.IntRange(64 * 1024), default=None,
              help="Rotate: go on in FILE.1, FILE.2, ... when a part reaches this size.")
@click.option("--duration", type=float, default=None, help="Stop after S seconds.")
@click.option("--count", type=click.IntRange(1), default=None, help="Stop after N messages.")
@click.option("--force", is_flag=True, help="Overwrite FILE (and remove its old FILE.N parts).")
@json_option
@hwm_option
def record(file: Path, prefixes: tuple[str, ...], max_bytes: int | None, duration: float | None,
           count: int | None, force: bool, as_json: bool, hwm: int) -> None:
    """Record every topic (or those under PREFIX) to FILE: raw frames, receive times, an index.

    Ctrl-C or SIGTERM ends it cleanly. The summary (and the sniffer's own losses) go to stderr.

    \b
    Example:
      tradectl bus record /tmp/day.tdbus md. orders fills --max-bytes 100000000
    """
    if not file.parent.is_dir():
        fail(EXIT_ERROR, f"{file.parent} is not a directory")
    if file.exists() and not force:
        fail(EXIT_ERROR, f"{file} exists (--force to overwrite)")
    n = 1
    while force and part_path(file, n).exists():
        part_path(file, n).unlink()
        n += 1
    bus_settings, run_dir, keys_dir = settings()
    sigterm_as_interrupt()
    created = time.time_ns()
    meta = {"tool": "tradectl bus record", "prefixes": list(prefixes), "transport": bus_settings.transport,
            "run_dir": str(run_dir), "host": socket.gethostname(), "created_ns": created}
    with Attachment(bus_settings, run_dir, prefixes, hwm=hwm,
                    security=credentials(bus_settings, keys_dir, SNIFFER)) as att:
        writer = Writer(file, meta, max_bytes=max_bytes, created_ns=created)
        try:
            result = run_record(att, writer, count=count, duration=duration,
                                prefixes=tuple(p.encode() for p in prefixes))
        finally:
            try:
                writer.close()
            except RecordingError as exc:
                fail(EXIT_ERROR, str(exc))
    losses(result.tracker, as_json, recorded=result.recorded, malformed=result.malformed,
           files=len(writer.parts), bytes=writer.bytes, elapsed_s=round(result.elapsed_s, 6),
           per_s=round(result.recorded / result.elapsed_s) if result.elapsed_s > 0 else None)


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rate", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Speed factor (2 = twice as fast; 0 = as fast as possible).")
@click.option("--loop", is_flag=True, help="Start again at the end (until Ctrl-C); each pass as a restarted publisher (newer epoch).")
@click.option("--topics", "topic_prefixes", multiple=True, metavar="PREFIX", help="Only these topics (repeatable).")
@click.option("--start", "start_s", type=click.FloatRange(0), default=0.0, help="Skip the first S seconds.")
@click.option("--wait", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Seconds between binding and the first message, for subscribers to connect.")
def play(file: Path, rate: float, loop: bool, topic_prefixes: tuple[str, ...], start_s: float, wait: float) -> None:
    """Republish FILE's frames, byte for byte, from each recorded source's PUB endpoint (in the
    current settings' run dir), with the original relative timing.

    \b
    Example:
      TRADING_PATHS__RUN_DIR=/tmp/offline tradectl bus play /tmp/day.tdbus --topics safety --rate 10
    """
    from bus.keys import MissingKey
    from bus.sockets import EndpointInUse
    reader = _reader(file)
    bus_settings, run_dir, keys_dir = settings()
    sigterm_as_interrupt()
    try:
        player = Player(bus_settings, run_dir, sources_of(reader, topic_prefixes), keys_dir=keys_dir)
    except (EndpointInUse, OSError) as exc:
        fail(EXIT_ERROR, f"cannot bind: {exc} (play into a run dir where the daemon is not running)")
    except MissingKey as exc:
        fail(EXIT_ERROR, f"cannot play as a recorded source: {exc}")
    try:
        if player.skipped_sources:
            click.echo(f"tradectl bus: no endpoint for source(s) {', '.join(player.skipped_sources)}: skipped", err=True)
        time.sleep(wait)
        player.play(reader, rate=rate, start_s=start_s, topics=topic_prefixes, loop=loop)
    except KeyboardInterrupt:
        pass
    finally:
        player.close()
    click.echo(f"tradectl bus: played {player.sent} message(s) from {', '.join(sorted(player.sockets)) or '-'}"
               f"; skipped {player.skipped}", err=True)


def _reader(file: Path) -> Reader:
    try:
        return Reader(file)
    except (RecordingError, OSError) as exc:
        fail(EXIT_ERROR, str(exc))


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def info(file: Path, as_json: bool) -> None:
    """Summary of a recording: duration, counts per topic and type, size, sources, gaps.

    \b
    Example:
      tradectl bus info /tmp/day.tdbus --json | jq .per_type
    """
    s = summary(_reader(file))
    if as_json:
        click.echo(json_line(s))
        return
    views.info_text(s, Console())
