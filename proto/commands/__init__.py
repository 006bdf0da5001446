"""The commands: one ``CommandSpec`` each (``registry.py``), their requests and results, the one
reply shape (``ok(...)`` / ``error(reason)``). ``docs/protocol.md`` is generated from here."""

from proto.commands.base import Args, CommandError, CommandSpec, Result, error, ok
from proto.commands.registry import (ARG_SCHEMAS, QUERIES, SPECS, args_of, check_result, parse_args, read_result,
                                     served_by, spec_of)
from proto.commands.requests import *  # noqa: F403: every request class, by name
from proto.commands import requests as _requests

__all__ = ["ARG_SCHEMAS", "QUERIES", "SPECS", "Args", "CommandError", "CommandSpec", "Result", "args_of",
           "check_result", "error", "ok", "parse_args", "read_result", "served_by", "spec_of",
           *(name for name in vars(_requests) if isinstance(getattr(_requests, name), type)
             and issubclass(getattr(_requests, name), Args))]
