"""``tradectl console``: the web console's users and address (``services/console/``). Works with the
daemon up or down; a running console reads the users file at each login, so a change applies at once.
"""

from __future__ import annotations

import json

import click

from proto.commands.base import PERSON_ROLES
from services.console.auth import Users
from services.settings import SettingsError, load_settings
from services.tradectl import exit_codes
from services.tradectl.daemon_client import fail


def _users() -> tuple[Users, str]:
    try:
        settings = load_settings()
    except SettingsError as exc:
        fail(exit_codes.BAD_SETTINGS, f"invalid settings:\n{exc}")
    return (Users(settings.paths.state_dir / "console", settings.paths.keys),
            f"http://{settings.console.host}:{settings.console.port}/")


@click.group(name="console")
def console_group() -> None:
    """The web console: its users (each a bus identity with its own key and role) and its address.

    \b
    Examples:
      tradectl console url
      tradectl console add-user carol --role reader    # prints carol's password once
      tradectl console users
      tradectl console remove-user carol               # and `tradectl keys revoke carol` for her key
    """


JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")


@console_group.command()
@JSON_OPTION
def url(as_json: bool) -> None:
    """Print the console's address (reach a remote host's through `ssh -L`, docs/console.md).

    \b
    Example:
      ssh -L 47080:127.0.0.1:47080 trading-host   # then open $(tradectl console url) here
    """
    address = _users()[1]
    click.echo(json.dumps({"url": address}) if as_json else address)


@console_group.command(name="add-user")
@click.argument("name")
@click.option("--role", type=click.Choice(PERSON_ROLES), default=None,
              help="operator (may press the controls) or reader (sees everything, presses nothing); "
                   "needed when NAME has no key yet.")
@JSON_OPTION
def add_user(name: str, role: str | None, as_json: bool) -> None:
    """Add NAME (or give NAME a new password): her key is made if she has none; the password is
    printed once.

    \b
    Example:
      tradectl console add-user carol --role reader
    """
    users, _ = _users()
    try:
        password = users.add(name, role)
    except (ValueError, FileExistsError, OSError) as exc:
        fail(exit_codes.REFUSED, str(exc))
    if as_json:
        click.echo(json.dumps({"user": name, "password": password}))
    else:
        click.echo(f"console user {name}: password {password}  (shown once; `add-user {name}` again sets a new one)")


@console_group.command(name="remove-user")
@click.argument("name")
@JSON_OPTION
def remove_user(name: str, as_json: bool) -> None:
    """Remove NAME's console login (her key stays: revoke it with `tradectl keys revoke NAME`).

    \b
    Example:
      tradectl console remove-user carol
    """
    users, _ = _users()
    try:
        users.remove(name)
    except (KeyError, OSError, ValueError) as exc:
        fail(exit_codes.REFUSED, str(exc))
    click.echo(json.dumps({"removed": name}) if as_json else
               f"removed console user {name}; her open pages end at their next request")


@console_group.command(name="users")
@JSON_OPTION
def users_(as_json: bool) -> None:
    """List the console's users and their roles (their keys').

    \b
    Example:
      tradectl console users
    """
    users, _ = _users()
    roles = {name: users.role_of(name) for name in users.names()}
    if as_json:
        click.echo(json.dumps(roles, sort_keys=True))
        return
    for name, role in roles.items():
        click.echo(f"{name}\t{role or 'NO KEY (revoked?): cannot log in'}")
