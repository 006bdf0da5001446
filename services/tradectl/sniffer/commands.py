"""``tradectl bus``: the click group and its live verbs (topics, echo, hz, bw, gaps, calls); the
file verbs (record, play, info) are in ``file_commands.py``. The loops live in the modules named
by behaviour; exit codes and shared options in ``common.py``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from bus.endpoints import PUBLISHERS
from services.log_escape import json_line
from services.tradectl.sniffer import calls as calls_mod
from services.tradectl.sniffer import gaps as gaps_mod
from services.tradectl.sniffer import views
from services.tradectl.sniffer.attach import Deadline, periodic
from services.tradectl.sniffer.common import (
    EXIT_NOTHING,
    attach,
    hwm_option,
    json_option,
    losses,
)
from services.tradectl.sniffer.echo import run_echo, selector
from services.tradectl.sniffer.file_commands import info, play, record
from services.tradectl.sniffer.filters import Filter, FilterError
from services.tradectl.sniffer.rates import Rates


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def bus() -> None:
    """Sniff the bus passively: topics, echo, hz, bw, gaps, calls, record, play, info.

    Attaches a SUB socket to every publisher's PUB endpoint (never slowing a publisher) and reports
    its own losses from the sequence numbers every message carries.

    \b
    Examples:
      tradectl bus topics
      tradectl bus echo md.BTC-USD --count 5
      tradectl bus hz md.
      tradectl bus record /tmp/session.tdbus --duration 60
    """


@bus.command()
@click.option("--window", type=float, default=2.0, show_default=True, help="Seconds to listen.")
@json_option
@hwm_option
def topics(window: float, as_json: bool, hwm: int) -> None:
    """Every topic seen within a window: publisher, message type, count, rate.

    \b
    Example:
      tradectl bus topics --window 5 --json | jq '.topics[].topic'
    """
    rates = Rates(window)
    with attach((), hwm) as att:
        deadline = Deadline(window)
        while not deadline.expired:
            for m in att.receive(deadline.left(0.2)):
                rates.add(m)
    rows = rates.topics()
    if as_json:
        click.echo(json_line({"window_s": window, "topics": rows, "undecodable": rates.undecodable}))
        return
    views.topics_table(rows, window)


@bus.command()
@click.argument("prefixes", nargs=-1)
@click.option("--exclude", multiple=True, metavar="PREFIX", help="Hide topics under PREFIX (repeatable).")
@click.option("--filter", "expr", metavar="EXPR", help='e.g. \'body.symbol == "BTC-USD" and body.qty > 0.1\'.')
@click.option("--count", type=click.IntRange(1), default=None, help="Stop after N messages shown.")
@click.option("--once", is_flag=True, help="Stop after the first message shown (= --count 1).")
@click.option("--timeout", type=float, default=None, help="Stop after S seconds (exit 1 if --count not reached).")
@json_option
@hwm_option
def echo(prefixes: tuple[str, ...], exclude: tuple[str, ...], expr: str | None, count: int | None,
         once: bool, timeout: float | None, as_json: bool, hwm: int) -> None:
    """Print decoded messages on topics starting with PREFIX (all by default).

    Undecodable frames are shown as such (reason and a hex preview) and counted. --json: one object
    per line: topic, source, epoch, seq, type, ts_ns (publish), recv_ns, age_s, size, body.
    The filter language: names topic source type epoch seq ts_ns recv_ns age size body;
    == != < <= > >= in, and or not, + - * / %, len abs startswith endswith contains matches.

    \b
    Examples:
      tradectl bus echo orders fills --filter 'body.symbol == "BTC-USD" and body.qty > 0.1'
      tradectl bus echo --exclude md. --exclude hb. --json
      tradectl bus echo safety --once --timeout 30
    """
    try:
        flt = Filter(expr) if expr else None
    except FilterError as exc:
        raise click.BadParameter(str(exc), param_hint="--filter") from None
    count = 1 if once else count
    with attach(prefixes, hwm) as att:
        r = run_echo(att, as_json=as_json, keep=selector(exclude, flt), count=count, timeout=timeout)
    losses(r.tracker, as_json, received=att.received, shown=r.shown, elapsed_s=round(r.elapsed_s, 6),
           per_s=round(att.received / r.elapsed_s) if r.elapsed_s > 0 else None)
    shown = r.shown
    if count is not None and shown < count:
        sys.exit(EXIT_NOTHING)


def _periodic_verb(prefixes: tuple[str, ...], hwm: int, window: float, clock: str, interval: float,
                   count: int | None, timeout: float | None, as_json: bool, kind: str) -> None:
    rates = Rates(window, clock)
    with attach(prefixes, hwm) as att:
        def report(now_ns: int) -> None:
            rows = rates.hz(now_ns) if kind == "hz" else rates.bw(now_ns)
            if as_json:
                if rows:
                    click.echo("\n".join(json_line({"ts_ns": now_ns, **r}) for r in rows))
            else:
                views.rates_table(rows, kind)
        try:
            periodic(att, rates.add, report, interval_s=interval, reports=count, timeout=timeout)
        except KeyboardInterrupt:
            pass


def _rate_options(f: Any) -> Any:
    for option in reversed([
        click.argument("prefixes", nargs=-1),
        click.option("--window", type=float, default=5.0, show_default=True, help="Sliding window (s)."),
        click.option("--interval", type=float, default=1.0, show_default=True, help="Print every S seconds."),
        click.option("--clock", type=click.Choice(["publish", "receive"]), default="publish", show_default=True,
                     help="Time inter-arrivals by the envelope's publish time or the sniffer's receive time."),
        click.option("--count", type=click.IntRange(1), default=None, help="Stop after N reports."),
        click.option("--timeout", type=float, default=None, help="Stop after S seconds."),
        json_option, hwm_option,
    ]):
        f = option(f)
    return f


@bus.command()
@_rate_options
def hz(prefixes: tuple[str, ...], window: float, interval: float, clock: str, count: int | None,
       timeout: float | None, as_json: bool, hwm: int) -> None:
    """Rate per topic and publisher: messages/s, min/mean/max/stddev of inter-arrival times.

    \b
    Example:
      tradectl bus hz md. hb.engine --window 10 --count 3
    """
    _periodic_verb(prefixes, hwm, window, clock, interval, count, timeout, as_json, "hz")


@bus.command()
@_rate_options
def bw(prefixes: tuple[str, ...], window: float, interval: float, clock: str, count: int | None,
       timeout: float | None, as_json: bool, hwm: int) -> None:
    """Bandwidth per topic and publisher: bytes/s, min/mean/max/stddev of message size.

    \b
    Example:
      tradectl bus bw --json --count 1 | jq -s 'sort_by(-.bytes_per_s)[0]'
    """
    _periodic_verb(prefixes, hwm, window, clock, interval, count, timeout, as_json, "bw")


@bus.command()
@click.option("--stale-after", type=float, default=4.0, show_default=True,
              help="Flag a heartbeat older than N of its own intervals.")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Print every S seconds.")
@click.option("--count", type=click.IntRange(1), default=None, help="Stop after N reports.")
@click.option("--once", is_flag=True, help="One report after --interval, then exit (= --count 1).")
@click.option("--timeout", type=float, default=None, help="Stop after S seconds.")
@json_option
@hwm_option
def gaps(stale_after: float, interval: float, count: int | None, once: bool, timeout: float | None,
         as_json: bool, hwm: int) -> None:
    """Per publisher: messages lost (sequence gaps: which, how many, when), restarts, heartbeat age.

    \b
    Example:
      tradectl bus gaps --stale-after 3 --interval 2
    """
    tracker = gaps_mod.SeqTracker()
    since = [0]

    def on_message(m: Any) -> None:
        tracker.observe_seen(m)
        if m.topic.startswith("hb."):
            tracker.heartbeat(m)

    def report(now_ns: int) -> None:
        r = gaps_mod.report(tracker, list(PUBLISHERS), stale_after, now_ns, since[0])
        since[0] = now_ns
        if as_json:
            click.echo(json_line(r))
        else:
            views.gaps_table(r, stale_after)

    with attach((), hwm) as att:
        try:
            periodic(att, on_message, report, interval_s=interval, reports=1 if once else count, timeout=timeout)
        except KeyboardInterrupt:
            pass


@bus.command("calls")
@click.argument("services", nargs=-1)
@click.option("--pending-after", type=float, default=2.0, show_default=True,
              help="Flag a request with no reply after S seconds.")
@click.option("--count", type=click.IntRange(1), default=None, help="Stop after N completed calls.")
@click.option("--timeout", type=float, default=None, help="Stop after S seconds (exit 1 if --count not reached).")
@json_option
@hwm_option
def calls(services: tuple[str, ...], pending_after: float, count: int | None, timeout: float | None,
          as_json: bool, hwm: int) -> None:
    """Command requests paired with replies (from audit.<service>): outcome, server time, round trip.

    \b
    Example:
      tradectl bus calls orchestrator exchange_manager --json
    """
    tracker = calls_mod.CallTracker(pending_after)
    prefixes = tuple(f"audit.{s}" for s in services) or ("audit.",)
    done = 0
    with attach(prefixes, hwm) as att:
        deadline = Deadline(timeout)
        try:
            while not deadline.expired and (count is None or done < count):
                out = [c for c in (tracker.add(m) for m in att.receive(deadline.left(0.2))) if c is not None]
                now = time.time_ns()
                out += tracker.overdue(now)
                for c in out:
                    click.echo(json_line(c.as_dict(now)) if as_json else c.line(now))
                done += sum(1 for c in out if c.reply_ns is not None)
        except KeyboardInterrupt:
            pass
    if count is not None and done < count:
        sys.exit(EXIT_NOTHING)



bus.add_command(record)
bus.add_command(play)
bus.add_command(info)
