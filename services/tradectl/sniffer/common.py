"""What every verb shares: settings, attaching, exit codes, common options, the loss summary.

Exit codes: 0 done; 1 nothing (or fewer than ``--count``) arrived within ``--timeout``;
2 bad settings, a bad ``--filter``, an unreadable recording, or an endpoint ``play`` cannot bind.
Summaries and the sniffer's own losses go to stderr, so ``--json`` output on stdout stays clean.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from bus.curve import Security, security
from bus.keys import MissingKey
from bus.settings import BusSettings
from services.log_escape import json_line
from services.tradectl import exit_codes
from services.tradectl.sniffer.attach import DEFAULT_HWM, Attachment
from services.tradectl.sniffer.gaps import SeqTracker

EXIT_OK, EXIT_NOTHING, EXIT_ERROR = 0, 1, 2
SNIFFER = "sniffer"  # the identity the sniffer's verbs use on the bus: subscribe and read-only queries


def fail(code: int, message: str) -> NoReturn:
    click.echo(f"tradectl bus: {message}", err=True)
    sys.exit(code)


def settings() -> tuple[BusSettings, Path, Path]:
    """The bus settings, the run directory and the key directory."""
    # Imported here: the settings model imports every service's settings (a second on a cold start
    # that ``--help`` need not pay).
    from services.settings import SettingsError, load_settings
    try:
        s = load_settings()
    except SettingsError as exc:
        fail(exit_codes.BAD_SETTINGS, f"invalid settings:\n{exc}")
    return s.bus, s.paths.run_dir, s.paths.keys


def credentials(bus: BusSettings, keys_dir: Path, name: str) -> Security:
    """``name``'s CURVE credentials (the sniffer's own: ``sniffer``, a reader); exit 78 without them."""
    try:
        return security(bus, keys_dir, name)
    except MissingKey as exc:
        fail(exit_codes.BAD_SETTINGS, str(exc))


def attach(prefixes: tuple[str, ...], hwm: int) -> Attachment:
    bus, run_dir, keys_dir = settings()
    return Attachment(bus, run_dir, prefixes, hwm=hwm, security=credentials(bus, keys_dir, SNIFFER))


def sigterm_as_interrupt() -> None:
    """SIGTERM ends a verb like Ctrl-C: a recording still gets its index and footer."""
    def handler(*_: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


def losses(tracker: SeqTracker, as_json: bool, **extra: Any) -> None:
    s = {**extra, **tracker.summary()}
    if as_json:
        click.echo(json_line({"sniffer": s}), err=True)
    else:
        click.echo("tradectl bus: " + ", ".join(f"{k} {v}" for k, v in s.items())
                   + " (lost = sequence gaps: dropped by the sniffer or never sent)", err=True)


hwm_option = click.option("--hwm", type=click.IntRange(1000), default=DEFAULT_HWM, show_default=True,
                          help="Receive queue depth (messages) before the sniffer itself drops.")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


