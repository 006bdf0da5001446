"""``tradectl``: see and steer the running session.

Reads the same settings as the daemon (defaults, ``TRADING_CONFIG``, ``TRADING_*`` env vars), so it
works from the repository root with no arguments. Exit codes (``exit_codes.py``): 0 done, 1 refused
by the daemon, 2 bad usage, 3 daemon unreachable, 4 ``failsafe --wait`` not verified flat in time,
78 bad settings. ``--json`` prints the command's result as one JSON object (docs/protocol.md).
"""

from __future__ import annotations

import os

import click

from services.settings import CONFIG_FILE_ENV
from services.tradectl import session_commands, trading_commands
from services.tradectl.call import call
from services.tradectl.console_users import console_group
from services.tradectl.keys import keys_group
from services.tradectl.logs import logs
from services.tradectl.safety.commands import safety
from services.tradectl.sniffer.commands import bus as sniffer_bus


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(dir_okay=False), default=None,
              help=f"TOML settings file (default: ${CONFIG_FILE_ENV}, else built-in defaults).")
def cli(config: str | None) -> None:
    """See and steer the live trading session.

    \b
    Examples:
      tradectl state                 # live
      tradectl status --json         # every process: alive, pid, heartbeat age, restarts
      tradectl failsafe --reason "feed gone wild" --wait
      tradectl call --list           # every command of every service
    """
    if config:
        os.environ[CONFIG_FILE_ENV] = config


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


for command in (*session_commands.COMMANDS, *trading_commands.COMMANDS, call):
    cli.add_command(command)
cli.add_command(sniffer_bus)  # tradectl bus ... (services/tradectl/sniffer/)
cli.add_command(logs)  # tradectl logs ... (services/tradectl/logs.py)
cli.add_command(safety)  # tradectl safety ... (services/tradectl/safety/)
cli.add_command(keys_group)  # tradectl keys ... (services/tradectl/keys.py)
cli.add_command(console_group)  # tradectl console ... (services/tradectl/console_users.py)


def main() -> None:
    cli(prog_name="tradectl")
