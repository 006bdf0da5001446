"""``tradectl``: see and steer the running session.

Reads the same settings as the daemon (defaults, ``TRADING_CONFIG``, ``TRADING_*`` env vars), so it
works from the repository root with no arguments. Exit codes: 0 done, 1 refused by the daemon,
2 daemon unreachable (or bad settings).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

import click
import zmq
from rich.console import Console
from rich.table import Table

from bus import CommandClient, CommandTimeout, Endpoints
from services.settings import CONFIG_FILE_ENV, SettingsError, load_settings
from services.tradectl.logs import logs
from services.tradectl.safety.commands import safety
from services.tradectl.sniffer.commands import bus as sniffer_bus

EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE = 0, 1, 2


class Daemon:
    """One service's command API as seen from the command line (the orchestrator's by default)."""

    def __init__(self, service: str = "orchestrator") -> None:
        try:
            self.settings = load_settings()
        except SettingsError as exc:
            fail(EXIT_UNREACHABLE, f"invalid settings:\n{exc}")
        self._ctx = zmq.Context()
        endpoints = Endpoints(self.settings.bus, self.settings.paths.run_dir)
        self.endpoint = endpoints.cmd(service)
        self._client = CommandClient(self._ctx, self.endpoint, self.settings.bus, "tradectl")

    def call(self, name: str, **args: Any) -> dict[str, Any]:
        try:
            reply = self._client.call(name, args)
        except CommandTimeout:
            fail(EXIT_UNREACHABLE,
                 f"the daemon is not answering at {self.endpoint}.\n"
                 "Is it running? Start it with `make run`, or check `supervisorctl -c deploy/supervisord.conf status`.")
        finally:
            self._client.close()
            self._ctx.term()
        if not reply.ok:
            fail(EXIT_REFUSED, f"refused: {reply.error}")
        return reply.result


def fail(code: int, message: str) -> NoReturn:
    click.echo(f"tradectl: {message}", err=True)
    sys.exit(code)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, sort_keys=True, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(dir_okay=False), default=None,
              help=f"TOML settings file (default: ${CONFIG_FILE_ENV}, else built-in defaults).")
def cli(config: str | None) -> None:
    """See and steer the live trading session.

    \b
    Examples:
      tradectl state                 # live
      tradectl status --json         # every process: alive, pid, heartbeat age, restarts
      tradectl failsafe --reason "feed gone wild"
    """
    if config:
        os.environ[CONFIG_FILE_ENV] = config


@cli.command()
@click.option("--json", "as_json", is_flag=True, help='One JSON object: {"state": ...}.')
def state(as_json: bool) -> None:
    """Print the session state's lower-case name (startup, ready, live, degraded, failsafe, shutdown).

    \b
    Examples:
      tradectl state                                 # live
      [ "$(tradectl state)" = live ] || page-the-desk
    """
    result = Daemon().call("state")
    if as_json:
        print_json(result)
    else:
        click.echo(result["state"])


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object: state and components.")
def status(as_json: bool) -> None:
    """Each process: alive, pid, last heartbeat age, restarts seen; the session and the
    fingerprint of the settings it runs under (a start under others begins a new session).

    \b
    Example:
      tradectl status --json | jq .components.engine.alive
    """
    result = Daemon().call("status")
    if as_json:
        print_json(result)
        return
    fingerprint = result.get("session_fingerprint")
    table = Table(title=f"session {result['session_id']}: {result['state']}"
                        + (f" (settings fingerprint {fingerprint})" if fingerprint else ""))
    for column in ("service", "alive", "pid", "heartbeat age (s)", "restarts", "trading"):
        table.add_column(column)
    for name, comp in result["components"].items():
        age = comp["heartbeat_age_s"]
        table.add_row(name, "[green]yes[/]" if comp["alive"] else "[red]NO[/]", str(comp["pid"] or "-"),
                      "-" if age is None else f"{age:.2f}", str(comp["restarts"]),
                      "on" if comp["trading_enabled"] else "off")
    Console().print(table)
    market = result.get("market")
    if market:
        upcoming = (f", closes {market['next_close']}" if market["open"] and market["next_close"] else
                    f", opens {market['next_open']}" if not market["open"] and market["next_open"] else "")
        click.echo(f"market: {'open' if market['open'] else 'closed'} ({market['schedule']}){upcoming}")
    if result.get("metrics_url"):
        click.echo(f"metrics: {result['metrics_url']}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object with every counter.")
def stats(as_json: bool) -> None:
    """Session counters: duration, decisions, PnL, safety events, failsafe activations.

    \b
    Examples:
      tradectl stats
      tradectl stats --json | jq .realized_pnl
    """
    result = Daemon().call("stats")
    if as_json:
        print_json(result)
        return
    table = Table(show_header=False)
    for key in sorted(result):
        table.add_row(key, str(result[key]))
    Console().print(table)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object: symbol -> position.")
def positions(as_json: bool) -> None:
    """Positions and PnL per symbol, from the exchange manager's book of record.

    \b
    Examples:
      tradectl positions
      tradectl positions --json | jq '."BTC-USD".qty'
    """
    result = Daemon("exchange_manager").call("positions")["positions"]
    if as_json:
        print_json(result)
        return
    table = Table(title="positions")
    for column in ("symbol", "qty", "avg price", "mark", "realized", "unrealized", "fees"):
        table.add_column(column, justify="right")
    for symbol, p in sorted(result.items()):
        table.add_row(symbol, f"{p['qty']:g}", f"{p['avg_price']:.4f}", "-" if p["mark"] is None else f"{p['mark']:.4f}",
                      f"{p['realized_pnl']:.2f}", f"{p['unrealized_pnl']:.2f}", f"{p['fees']:.2f}")
    Console().print(table)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the exchange manager's InstrumentBook.")
def instruments(as_json: bool) -> None:
    """Each venue's instrument specifications, as the exchange manager last loaded them (the
    tick and lot sizes and minimums the gate checks orders against).

    \b
    Examples:
      tradectl instruments
      tradectl instruments --json | jq '.connectors.sim.instruments[] | select(.symbol == "BTC-USD")'
    """
    result = Daemon("exchange_manager").call("instruments")
    if as_json:
        print_json(result)
        return
    table = Table(title=f"instruments (pending: {', '.join(result['pending']) or 'none'})")
    for column in ("connector", "symbol", "tick", "lot", "min qty", "max qty", "min notional"):
        table.add_column(column, justify="right")
    for name, listed in sorted(result["connectors"].items()):
        for i in sorted(listed["instruments"], key=lambda i: i["symbol"]):
            table.add_row(name, i["symbol"], f"{i['tick_size']:g}", f"{i['lot_size']:g}", f"{i['min_qty']:g}",
                          "-" if i["max_qty"] is None else f"{i['max_qty']:g}", f"{i['min_notional']:g}")
    Console().print(table)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON array of orders.")
@click.option("--all", "show_all", is_flag=True, help="Closed orders too (default: open orders only).")
def orders(as_json: bool, show_all: bool) -> None:
    """Orders in the exchange manager's book of record: open ones, or all recent with --all.

    \b
    Examples:
      tradectl orders
      tradectl orders --all --json | jq '.[] | select(.status == "rejected")'
    """
    result = [o for o in Daemon("exchange_manager").call("orders")["orders"]
              if show_all or o["status"] in ("new", "acknowledged", "partially_filled")]
    if as_json:
        print_json(result)
        return
    table = Table(title="orders" if show_all else "open orders")
    for column in ("client order id", "symbol", "side", "qty", "type", "limit", "status", "filled", "strategy"):
        table.add_column(column)
    for o in result:
        table.add_row(o["client_order_id"], o["symbol"], o["side"], f"{o['qty']:g}", o["order_type"],
                      "-" if o["limit_price"] is None else f"{o['limit_price']:.4f}", o["status"],
                      f"{o['filled_qty']:g}", o["strategy"])
    Console().print(table)


@cli.group()
def venue() -> None:
    """The venue simulator (the stand-in for an exchange): fault injection for tests and demos."""


@venue.command("fault")
@click.argument("fault", type=click.Choice(["drop_connection", "stop_feed", "resume_feed", "latency",
                                            "reject_all", "jump_price", "clear"]))
@click.option("--symbol", default=None, help="jump_price: which symbol.")
@click.option("--value", type=float, default=0.0, help="latency: milliseconds; jump_price: percent.")
@click.option("--duration", type=float, default=5.0, help="drop_connection: seconds away.")
@click.option("--json", "as_json", is_flag=True, help="Print the venue's reply as one JSON object.")
def venue_fault(fault: str, symbol: str | None, value: float, duration: float, as_json: bool) -> None:
    """Inject a fault into the venue simulator.

    \b
    Examples:
      tradectl venue fault jump_price --symbol BTC-USD --value 25
      tradectl venue fault drop_connection --duration 3
      tradectl venue fault clear
    """
    result = Daemon("venue_sim").call("fault", fault=fault, symbol=symbol, value=value, duration_s=duration)
    if as_json:
        print_json(result)
    else:
        click.echo(f"venue fault {fault}: injected")


JSON_OPTION = click.option("--json", "as_json", is_flag=True,
                           help="Print the orchestrator's reply (the new state and more) as one JSON object.")


def _control(name: str, as_json: bool, **args: Any) -> None:
    result = Daemon().call(name, **args)
    if as_json:
        print_json(result)
    else:
        click.echo(f"{name}: done; session is {result['state']}")


@cli.command("open")
@JSON_OPTION
def open_(as_json: bool) -> None:
    """Market-open signal: READY → LIVE. Refused (exit 1) while a process is missing or the
    exchange manager has not reconciled with its venues.

    \b
    Example:
      tradectl open && tradectl state               # live
    """
    _control("open", as_json, reason="operator open (tradectl)")


@cli.command()
@JSON_OPTION
def close(as_json: bool) -> None:
    """Market close: flatten, end the session (→ SHUTDOWN), write the end-of-day report and
    archive the session's logs; trading stops everywhere.

    \b
    Example:
      tradectl close --json | jq -r .report         # where the end-of-day report is
    """
    _control("close", as_json, reason="operator close (tradectl)")


@cli.command()
@JSON_OPTION
def recover(as_json: bool) -> None:
    """DEGRADED → LIVE if every process is healthy; otherwise says why not (exit 1).

    \b
    Example:
      tradectl recover || tradectl status           # what is still unhealthy
    """
    _control("recover", as_json)


@cli.command()
@click.option("--reason", required=True, help="Why: goes into the logs and the incident report.")
@JSON_OPTION
def failsafe(reason: str, as_json: bool) -> None:
    """Stop trading now: FAILSAFE, disable trading everywhere, cancel every order, flatten every
    position, write an incident report. In FAILSAFE: run the sequence's round again now.

    \b
    Example:
      tradectl failsafe --reason "venue prices look wrong"
    """
    _control("failsafe", as_json, reason=reason)


@cli.command()
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
    _control("flatten", as_json, symbol=symbol)


@cli.command()
@JSON_OPTION
def reset(as_json: bool) -> None:
    """FAILSAFE → READY once the failsafe sequence has finished and the venue holds nothing
    (refused with what it holds otherwise); then `tradectl open`.

    \b
    Example:
      tradectl reset && tradectl open
    """
    _control("reset", as_json, reason="operator reset (tradectl)")


@cli.command()
@JSON_OPTION
def shutdown(as_json: bool) -> None:
    """End the session (→ SHUTDOWN). Processes stay up; stop them with supervisorctl.

    \b
    Example:
      tradectl shutdown && .venv/bin/supervisorctl -c deploy/supervisord.conf shutdown
    """
    _control("shutdown", as_json, reason="operator shutdown (tradectl)")


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for tradectl (commands, options, choices).

    \b
    Examples:
      eval "$(tradectl completion bash)"            # this shell; add it to ~/.bashrc to keep it
      tradectl completion fish > ~/.config/fish/completions/tradectl.fish
    """
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # the Choice above admits only shells click knows
    click.echo(completer(cli, {}, "tradectl", "_TRADECTL_COMPLETE").source())


cli.add_command(sniffer_bus)  # tradectl bus ... (services/tradectl/sniffer/)
cli.add_command(logs)  # tradectl logs ... (services/tradectl/logs.py)
cli.add_command(safety)  # tradectl safety ... (services/tradectl/safety/)


def main() -> None:
    cli(prog_name="tradectl")
