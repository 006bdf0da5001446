"""Command names, their argument schemas, and the one reply shape.

A command travels as a ``proto.messages.Command`` (``id``, ``name``, ``args``); its ``args`` map is
validated here against the schema registered for its name, so a handler only ever sees typed,
checked arguments. Every reply is built by ``ok(...)`` or ``error(reason)``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from proto.errors import ProtocolError
from proto.messages import Reply


class Args(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every argument schema; a command without arguments uses ``NoArgs``."""


class NoArgs(Args):
    pass


class ReasonArgs(Args):
    reason: str = "operator request"


class FailsafeArgs(Args):
    reason: str


ARG_SCHEMAS: dict[str, type[Args]] = {
    # every service
    "status": NoArgs,
    # orchestrator: the operators' control API
    "state": NoArgs,
    "stats": NoArgs,
    "open": ReasonArgs,
    "close": ReasonArgs,
    "recover": NoArgs,
    "failsafe": FailsafeArgs,
    "reset": ReasonArgs,
    "shutdown": ReasonArgs,
    # engine and exchange manager: orders from the orchestrator
    "enable_trading": ReasonArgs,
    "disable_trading": ReasonArgs,
}


class CommandError(Exception):
    """Raised by a handler to refuse a command; the reason goes back to the caller verbatim."""


def parse_args(name: str, args: dict[str, Any]) -> Args:
    schema = ARG_SCHEMAS.get(name)
    if schema is None:
        raise ProtocolError("unknown_command", f"unknown command {name!r}")
    try:
        return msgspec.convert(args, schema)
    except msgspec.ValidationError as exc:
        raise ProtocolError("invalid", f"{name}: {exc}") from None


def ok(command_id: str, **result: Any) -> Reply:
    return Reply(id=command_id, ok=True, result=result)


def error(command_id: str, reason: str) -> Reply:
    return Reply(id=command_id, ok=False, error=reason)
