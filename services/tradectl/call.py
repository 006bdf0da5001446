"""``tradectl call``: any command of any service, as docs/protocol.md declares it."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

import proto
from proto.commands import SPECS
from proto.commands.registry import SERVICES
from services.tradectl import exit_codes
from services.tradectl.daemon_client import Daemon, fail, print_json


@click.command()
@click.argument("service", required=False, type=click.Choice(SERVICES))
@click.argument("command", required=False)
@click.argument("args", required=False, default="{}")
@click.option("--list", "show_list", is_flag=True, help="List every command: service, name, query, callers, what it does.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object (the default output too).")
def call(service: str | None, command: str | None, args: str, show_list: bool, as_json: bool) -> None:
    """Send any command to any service: ARGS is a JSON object of its arguments; prints the
    result as one JSON object. The commands and their fields are in docs/protocol.md.

    \b
    Examples:
      tradectl call --list
      tradectl call exchange_manager strategy_book
      tradectl call venue_sim fills_since '{"after_seq": 0, "limit": 10}'
    """
    if show_list or service is None:
        table = Table(title="commands (docs/protocol.md)")
        for column in ("service", "command", "query", "callers", "what it does"):
            table.add_column(column)
        for spec in SPECS:
            table.add_row(spec.service, spec.name, "yes" if spec.query else "", ", ".join(sorted(spec.callers)), spec.doc)
        Console(width=200).print(table)
        return
    if command is None:
        fail(exit_codes.USAGE, "call SERVICE COMMAND [ARGS]: which command? (tradectl call --list)")
    spec = proto.spec_of(service, command)
    if spec is None:
        served = ", ".join(s.name for s in SPECS if s.service == service)
        fail(exit_codes.USAGE, f"{service} serves no command {command!r}; it serves: {served}")
    try:
        parsed = proto.parse_args(command, json.loads(args))
    except (json.JSONDecodeError, proto.ProtocolError, TypeError) as exc:
        fail(exit_codes.USAGE, f"bad arguments for {command}: {exc}")
    print_json(Daemon(service).request(parsed))
