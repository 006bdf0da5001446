"""``tradectl keys``: the CURVE key pairs of the bus (``bus/keys.py``), in the key directory of the
settings (``paths.keys_dir``, default ``<state_dir>/keys``). Works with the daemon up or down.

``generate`` makes a pair (the system's identities: every one missing; anyone else: one, with
``--role operator|reader``); ``list`` shows each identity, its role and public key; ``revoke``
moves a pair to ``revoked/``: running servers refuse that key within half a second, and a
connection it already has from then on at its next command.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from bus import keys
from proto.commands.base import IDENTITIES, PERSON_ROLES
from services.settings import SettingsError, load_settings
from services.tradectl import exit_codes
from services.tradectl.daemon_client import fail


def _keys_dir() -> Path:
    try:
        return load_settings().paths.keys
    except SettingsError as exc:
        fail(exit_codes.BAD_SETTINGS, f"invalid settings:\n{exc}")


@click.group(name="keys")
def keys_group() -> None:
    """The bus's CURVE keys: who may connect, and as whom.

    \b
    Examples:
      tradectl keys list
      tradectl keys generate                      # every system identity that has no pair yet
      tradectl keys generate alice --role reader  # a person's key: subscribe and read-only queries
      TRADECTL_IDENTITY=alice tradectl status     # speak as alice
      tradectl keys revoke alice
    """


@keys_group.command()
@click.argument("name", required=False)
@click.option("--role", type=click.Choice(PERSON_ROLES), help="The role of a key that is not a system identity.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: {name: {role, public_key}} of the pairs made.")
def generate(name: str | None, role: str | None, as_json: bool) -> None:
    """Make NAME's key pair (without NAME: every missing system identity's).

    \b
    Examples:
      tradectl keys generate                      # the system's, where missing
      tradectl keys generate alice --role operator
    """
    directory = _keys_dir()
    try:
        made = [keys.generate(directory, name, role)] if name else keys.ensure(directory, list(IDENTITIES))
    except (ValueError, FileExistsError, OSError) as exc:
        fail(exit_codes.REFUSED, str(exc))
    if as_json:
        click.echo(json.dumps({i.name: {"role": i.role, "public_key": i.public.decode()} for i in made}, sort_keys=True))
        return
    for ident in made:
        click.echo(f"{ident.name} ({ident.role}): {ident.public.decode()}  in {directory}")
    if not made:
        click.echo(f"every system identity has its pair in {directory}")


@keys_group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: {name: {role, public_key, secret}}.")
def list_(as_json: bool) -> None:
    """Every identity whose public key is allowed, its role, and whether its secret is here.

    \b
    Example:
      tradectl keys list --json
    """
    directory = _keys_dir()
    rows = [(i.name, i.role, i.public.decode(), (directory / f"{i.name}{keys.SECRET_SUFFIX}").exists())
            for i in keys.KeyStore(directory).identities()]
    if as_json:
        click.echo(json.dumps({name: {"role": role, "public_key": public, "secret": secret}
                               for name, role, public, secret in rows}, sort_keys=True))
        return
    table = Table(title=f"keys in {directory}")
    for column in ("identity", "role", "public key", "secret here"):
        table.add_column(column)
    for name, role, public, secret in rows:
        table.add_row(name, role, public, "yes" if secret else "no")
    Console().print(table)
    missing = sorted(set(IDENTITIES) - {row[0] for row in rows})
    if missing:
        click.echo(f"no key for: {', '.join(missing)} (`tradectl keys generate`, or copy its .key from its host)")


@keys_group.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: {revoked: NAME, moved: [files]}.")
def revoke(name: str, as_json: bool) -> None:
    """Move NAME's pair to revoked/: servers refuse its key from now on.

    \b
    Example:
      tradectl keys revoke alice
    """
    directory = _keys_dir()
    try:
        moved = keys.revoke(directory, name)
    except (FileNotFoundError, OSError) as exc:
        fail(exit_codes.REFUSED, str(exc))
    if as_json:
        click.echo(json.dumps({"revoked": name, "moved": [str(p) for p in moved]}))
        return
    click.echo(f"revoked {name}: {', '.join(str(p) for p in moved)}")
    if name in IDENTITIES:
        click.echo(f"{name} is a system identity: it cannot connect (nor its peers pin it) until "
                   f"`tradectl keys generate {name}` and a restart of the processes that use it")
