"""``tradectl`` commands that see and steer the session (the orchestrator's control API)."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from proto import commands as rq
from services.tradectl import exit_codes
from services.tradectl.daemon_client import Daemon, fail, print_json

JSON_OPTION = click.option("--json", "as_json", is_flag=True,
                           help="Print the command's result (docs/protocol.md) as one JSON object.")


@click.command()
@JSON_OPTION
def state(as_json: bool) -> None:
    """Print the session state's lower-case name (startup, ready, live, degraded, failsafe, shutdown).

    \b
    Examples:
      tradectl state                                 # live
      [ "$(tradectl state)" = live ] || page-the-desk
    """
    result = Daemon().request(rq.State())
    if as_json:
        print_json(result)
    else:
        click.echo(result.state)


@click.command()
@JSON_OPTION
def status(as_json: bool) -> None:
    """Each process: alive, pid, last heartbeat age, restarts seen; the session and the
    fingerprint of the settings it runs under (a start under others begins a new session).

    \b
    Example:
      tradectl status --json | jq .components.engine.alive
    """
    result = Daemon().request(rq.Status())
    if as_json:
        print_json(result)
        return
    fingerprint = result.session_fingerprint
    table = Table(title=f"session {result.session_id}: {result.state}"
                        + (f" (settings fingerprint {fingerprint})" if fingerprint else ""))
    for column in ("service", "alive", "pid", "heartbeat age (s)", "restarts", "trading"):
        table.add_column(column)
    for name, comp in result.components.items():
        age = comp.heartbeat_age_s
        table.add_row(name, "[green]yes[/]" if comp.alive else "[red]NO[/]", str(comp.pid or "-"),
                      "-" if age is None else f"{age:.2f}", str(comp.restarts), "on" if comp.trading_enabled else "off")
    Console().print(table)
    if result.failsafe_pending:
        click.echo(f"failsafe sequence not finished: {result.failsafe_pending}")
    market = result.market
    if market is not None:
        upcoming = (f", closes {market.next_close}" if market.open and market.next_close else
                    f", opens {market.next_open}" if not market.open and market.next_open else "")
        click.echo(f"market: {'open' if market.open else 'closed'} ({market.schedule}){upcoming}")
    if result.metrics_url:
        click.echo(f"metrics: {result.metrics_url}")


@click.command()
@JSON_OPTION
def stats(as_json: bool) -> None:
    """Session counters: duration, decisions, PnL, safety events, failsafe activations.

    \b
    Examples:
      tradectl stats
      tradectl stats --json | jq .realized_pnl
    """
    result = Daemon().request(rq.Stats())
    if as_json:
        print_json(result)
        return
    table = Table(show_header=False)
    for key in sorted(result.__struct_fields__):
        table.add_row(key, str(getattr(result, key)))
    Console().print(table)


def _control(request: rq.Args, as_json: bool) -> Any:
    result = Daemon().request(request)
    if as_json:
        print_json(result)
    else:
        click.echo(f"{request.NAME}: done; session is {result.state}")
    return result


@click.command("open")
@JSON_OPTION
def open_(as_json: bool) -> None:
    """Market-open signal: READY → LIVE. Refused (exit 1) while a process is missing or the
    exchange manager has not reconciled with its venues.

    \b
    Example:
      tradectl open && tradectl state               # live
    """
    _control(rq.Open(reason="operator open (tradectl)"), as_json)


@click.command()
@JSON_OPTION
def close(as_json: bool) -> None:
    """Market close: flatten, end the session (→ SHUTDOWN), write the end-of-day report and
    archive the session's logs; trading stops everywhere.

    \b
    Example:
      tradectl close --json | jq -r .report         # where the end-of-day report is
    """
    _control(rq.Close(reason="operator close (tradectl)"), as_json)


@click.command()
@JSON_OPTION
def recover(as_json: bool) -> None:
    """DEGRADED → LIVE if every process is healthy; otherwise says why not (exit 1).

    \b
    Example:
      tradectl recover || tradectl status           # what is still unhealthy
    """
    _control(rq.Recover(), as_json)


@click.command()
@click.option("--reason", required=True, help="Why: goes into the logs and the incident report.")
@click.option("--wait", "wait", is_flag=True,
              help="Return when the sequence has verified the venue flat; exit 4 if not within --timeout.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="--wait: seconds at most.")
@JSON_OPTION
def failsafe(reason: str, wait: bool, timeout: float, as_json: bool) -> None:
    """Stop trading now: FAILSAFE, disable trading everywhere, cancel every order, flatten every
    position, write an incident report. In FAILSAFE: run the sequence's round again now.

    \b
    Examples:
      tradectl failsafe --reason "venue prices look wrong"
      tradectl failsafe --reason "desk halt" --wait && echo flat
    """
    _control(rq.Failsafe(reason=reason), as_json)
    if wait:
        _wait_flat(timeout)


def _wait_flat(timeout_s: float) -> None:
    """Until the orchestrator says the sequence has ended with the venue verified flat."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = Daemon().request(rq.Status())
        if status.failsafe_pending is None and not status.failsafe_running:
            click.echo(f"failsafe: sequence ended, venue verified flat; session is {status.state}")
            return
        if time.monotonic() >= deadline:
            fail(exit_codes.NOT_FLAT, f"failsafe: not verified flat after {timeout_s:g}s (the sequence keeps "
                                      f"trying): {status.failsafe_pending}; see `tradectl positions`, `tradectl orders`")
        time.sleep(0.2)


@click.command()
@click.option("--symbol", default=None, help="Only this symbol (outside FAILSAFE; default: every symbol).")
@JSON_OPTION
def flatten(symbol: str | None, as_json: bool) -> None:
    """Flatten positions. In FAILSAFE: a round of the failsafe sequence now (cancel every order,
    flatten, verify flat at the venue), e.g. when it has not got the venue flat yet. Otherwise the
    exchange manager cancels and flattens; the strategies keep running.

    \b
    Example:
      tradectl flatten && tradectl positions
    """
    _control(rq.Flatten(symbol=symbol), as_json)


@click.command()
@JSON_OPTION
def reset(as_json: bool) -> None:
    """FAILSAFE → READY once the failsafe sequence has finished and the venue holds nothing
    (refused with what it holds otherwise); then `tradectl open`.

    \b
    Example:
      tradectl reset && tradectl open
    """
    _control(rq.Reset(reason="operator reset (tradectl)"), as_json)


@click.command()
@JSON_OPTION
def shutdown(as_json: bool) -> None:
    """End the session (→ SHUTDOWN). Processes stay up; stop them with supervisorctl.

    \b
    Example:
      tradectl shutdown && .venv/bin/supervisorctl -c deploy/supervisord.conf shutdown
    """
    _control(rq.Shutdown(reason="operator shutdown (tradectl)"), as_json)


COMMANDS = (state, status, stats, open_, close, recover, failsafe, flatten, reset, shutdown)
