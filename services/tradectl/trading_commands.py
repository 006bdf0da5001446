"""``tradectl`` commands for the book of record (exchange manager) and the venue simulator."""

from __future__ import annotations

import click
import msgspec
from rich.console import Console
from rich.table import Table

from proto.session import OPEN_ORDER_STATUSES
from proto import commands as rq
from services.tradectl.daemon_client import Daemon, print_json
from services.tradectl.session_commands import JSON_OPTION

def _field(request: type, name: str) -> msgspec.inspect.Field:
    """A request's field as proto declares it: its choices and default are the CLI's, not retyped."""
    return next(f for f in msgspec.inspect.type_info(request).fields if f.name == name)


def _choices(request: type, name: str) -> list[str]:
    return list(_field(request, name).type.values)


@click.command()
@JSON_OPTION
def positions(as_json: bool) -> None:
    """Positions and PnL per symbol, from the exchange manager's book of record.

    \b
    Examples:
      tradectl positions
      tradectl positions --json | jq '.positions."BTC-USD".qty'
    """
    result = Daemon("exchange_manager").request(rq.Positions())
    if as_json:
        print_json(result)
        return
    table = Table(title="positions")
    for column in ("symbol", "qty", "avg price", "mark", "realized", "unrealized", "fees"):
        table.add_column(column, justify="right")
    for symbol, p in sorted(result.positions.items()):
        table.add_row(symbol, f"{p['qty']:g}", f"{p['avg_price']:.4f}", "-" if p["mark"] is None else f"{p['mark']:.4f}",
                      f"{p['realized_pnl']:.2f}", f"{p['unrealized_pnl']:.2f}", f"{p['fees']:.2f}")
    Console().print(table)


@click.command()
@JSON_OPTION
def instruments(as_json: bool) -> None:
    """Each venue's instrument specifications, as the exchange manager last loaded them (the
    tick and lot sizes and minimums the gate checks orders against).

    \b
    Examples:
      tradectl instruments
      tradectl instruments --json | jq '.connectors.sim.instruments[] | select(.symbol == "BTC-USD")'
    """
    result = Daemon("exchange_manager").request(rq.Instruments())
    if as_json:
        print_json(result)
        return
    table = Table(title=f"instruments (pending: {', '.join(result.pending) or 'none'})")
    for column in ("connector", "symbol", "tick", "lot", "min qty", "max qty", "min notional"):
        table.add_column(column, justify="right")
    for name, listed in sorted(result.connectors.items()):
        for i in sorted(listed.instruments, key=lambda i: i.symbol):
            table.add_row(name, i.symbol, f"{i.tick_size:g}", f"{i.lot_size:g}", f"{i.min_qty:g}",
                          "-" if i.max_qty is None else f"{i.max_qty:g}", f"{i.min_notional:g}")
    Console().print(table)


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Closed orders too (default: open orders only).")
@JSON_OPTION
def orders(show_all: bool, as_json: bool) -> None:
    """Orders in the exchange manager's book of record: open ones, or all recent with --all.

    \b
    Examples:
      tradectl orders
      tradectl orders --all --json | jq '.orders[] | select(.status == "rejected")'
    """
    result = Daemon("exchange_manager").request(rq.Orders())
    result.orders = [o for o in result.orders if show_all or o["status"] in OPEN_ORDER_STATUSES]
    if as_json:
        print_json(result)
        return
    table = Table(title="orders" if show_all else "open orders")
    for column in ("client order id", "symbol", "side", "qty", "type", "limit", "status", "filled", "strategy"):
        table.add_column(column)
    for o in result.orders:
        table.add_row(o["client_order_id"], o["symbol"], o["side"], f"{o['qty']:g}", o["order_type"],
                      "-" if o["limit_price"] is None else f"{o['limit_price']:.4f}", o["status"],
                      f"{o['filled_qty']:g}", o["strategy"])
    Console().print(table)


@click.command("cancel-all")
@click.option("--symbol", default=None, help="Only this symbol (default: every symbol).")
@JSON_OPTION
def cancel_all(symbol: str | None, as_json: bool) -> None:
    """Cancel every open order at every connected venue; the strategies keep running.

    \b
    Example:
      tradectl cancel-all --symbol BTC-USD && tradectl orders
    """
    result = Daemon("exchange_manager").request(rq.CancelAll(symbol=symbol))
    print_json(result) if as_json else click.echo(f"cancel-all: asked {result.venues} venue(s)")


@click.command("set-mode")
@click.argument("mode", type=click.Choice(_choices(rq.ModeArgs, "mode")))
@click.option("--reason", default="", help="Why: goes into the governance log.")
@JSON_OPTION
def set_mode(mode: str, reason: str, as_json: bool) -> None:
    """The operator's mode for the pre-trade gate: normal, reduce_only or halt. The stricter of
    it and the session's (reduce_only while DEGRADED by default) applies.

    \b
    Example:
      tradectl set-mode reduce_only --reason "news at 14:30"
    """
    result = Daemon("exchange_manager").request(rq.ModeArgs(mode=mode, reason=reason))
    print_json(result) if as_json else click.echo(f"gate mode: {result.mode}")


@click.command()
@click.option("--show", is_flag=True, help="Only show the latest outcome per connector.")
@JSON_OPTION
def reconcile(show: bool, as_json: bool) -> None:
    """Reconcile the book of record with every connected venue now (or --show the latest outcome).

    \b
    Examples:
      tradectl reconcile
      tradectl reconcile --show --json | jq '.outcomes.sim.ok'
    """
    if show:
        result = Daemon("exchange_manager").request(rq.Reconciliation())
        if as_json:
            print_json(result)
            return
        for name, o in result.outcomes.items():
            click.echo(f"{name}: run {o.get('run')} {'ok' if o.get('ok') else 'NOT ok'} {o.get('error') or ''}".rstrip())
        return
    runs = Daemon("exchange_manager").request(rq.Reconcile())
    print_json(runs) if as_json else click.echo("reconcile: " + (", ".join(
        f"{name} run {run}" for name, run in runs.runs.items()) or "no venue connected"))


@click.group()
def venue() -> None:
    """The venue simulator (the stand-in for an exchange): fault injection for tests and demos."""


@venue.command("fault")
@click.argument("fault", type=click.Choice(_choices(rq.FaultArgs, "fault")))
@click.option("--symbol", default=None, help="jump_price: which symbol.")
@click.option("--value", type=float, default=_field(rq.FaultArgs, "value").default, show_default=True,
              help="latency: milliseconds; jump_price: percent.")
@click.option("--duration", type=float, default=_field(rq.FaultArgs, "duration_s").default, show_default=True,
              help="drop_connection: seconds away; rate_limit: seconds the exchange API answers 429.")
@JSON_OPTION
def venue_fault(fault: str, symbol: str | None, value: float, duration: float, as_json: bool) -> None:
    """Inject a fault into the venue simulator.

    \b
    Examples:
      tradectl venue fault jump_price --symbol BTC-USD --value 25
      tradectl venue fault drop_connection --duration 3
      tradectl venue fault rate_limit --duration 2
      tradectl venue fault clear
    """
    result = Daemon("venue_sim").request(rq.FaultArgs(fault=fault, symbol=symbol, value=value, duration_s=duration))
    print_json(result) if as_json else click.echo(f"venue fault {fault}: injected")


COMMANDS = (positions, instruments, orders, cancel_all, set_mode, reconcile, venue)
