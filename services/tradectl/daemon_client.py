"""One service's command API as the command line sees it: typed calls, one JSON convention and
the exit codes of ``exit_codes.py``."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

import click
import zmq

import proto
from bus import CommandClient, CommandRefused, CommandTimeout, Endpoints, MissingKey, security
from services.settings import SettingsError, load_settings
from services.tradectl import exit_codes


# The identity tradectl speaks as (its key in the key directory): ``tradectl``, an operator, unless
# TRADECTL_IDENTITY names another key (``tradectl keys generate alice --role reader``).
IDENTITY = os.environ.get("TRADECTL_IDENTITY", "tradectl")


def fail(code: int, message: str) -> NoReturn:
    click.echo(f"tradectl: {message}", err=True)
    sys.exit(code)


def print_json(result: Any) -> None:
    """``--json`` everywhere: the command's result as one JSON object, as docs/protocol.md
    documents it (a struct's fields, a dict's keys)."""
    click.echo(json.dumps(proto.to_builtins(result), sort_keys=True, default=str))


class Daemon:
    """One service's command API (the orchestrator's by default), one call per instance."""

    def __init__(self, service: str = "orchestrator") -> None:
        try:
            self.settings = load_settings()
        except SettingsError as exc:
            fail(exit_codes.BAD_SETTINGS, f"invalid settings:\n{exc}")
        try:
            sec = security(self.settings.bus, self.settings.paths.keys, IDENTITY)
        except MissingKey as exc:
            fail(exit_codes.BAD_SETTINGS, str(exc))
        self._ctx = zmq.Context()
        self.endpoint = Endpoints(self.settings.bus, self.settings.paths.run_dir).cmd(service)
        self._client = CommandClient(self._ctx, self.endpoint, self.settings.bus, IDENTITY, service=service,
                                     security=sec)

    def request(self, request: proto.Args, *, timeout_s: float | None = None) -> Any:
        """The typed result of ``request`` (``proto/commands/registry.py``); exits on refusal or silence."""
        try:
            return self._client.request(request, timeout_s=timeout_s)
        except CommandTimeout:
            self._unreachable()
        except CommandRefused as exc:
            fail(exit_codes.REFUSED, f"refused: {exc}")
        except proto.ProtocolError as exc:
            fail(exit_codes.REFUSED, f"the daemon's answer is not what {request.NAME} returns: {exc}")
        finally:
            self.close()

    def call(self, name: str, **args: Any) -> dict[str, Any]:
        """The result map of any command by name (``tradectl call``)."""
        try:
            reply = self._client.call(name, args)
        except CommandTimeout:
            self._unreachable()
        finally:
            self.close()
        if not reply.ok:
            fail(exit_codes.REFUSED, f"refused: {reply.error}")
        return reply.result

    def close(self) -> None:
        self._client.close()
        self._ctx.term()

    def _unreachable(self) -> NoReturn:
        fail(exit_codes.UNREACHABLE,
             f"the daemon is not answering at {self.endpoint}.\n"
             "Is it running? Start it with `make run`, or check `supervisorctl -c deploy/supervisord.conf status`.")
