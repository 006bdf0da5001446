"""What every command shares: its request and result bases, its spec, and the one reply shape.

A command is one ``CommandSpec``: the request struct (its ``NAME`` is the wire name), the result
struct, the service that serves it, whether it is a query, who may call it and its CLI usage. The
registry (``proto/commands/registry.py``) lists every spec; servers, clients, ``tradectl`` and
``docs/protocol.md`` are built from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec

from proto.messages import Reply


class Args(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every request. Strict: an argument this build does not know is refused, never
    ignored (a newer caller's ``reduce_only=True`` silently dropped would be a step toward risk)."""

    NAME: ClassVar[str] = ""


class Result(msgspec.Struct, kw_only=True):
    """Base of every result. Lenient on reading: a newer server's added field is ignored, so one
    service can be restarted on a newer build while its peers run (docs/protocol.md). A server
    checks its own results strictly before sending them (``check_result``)."""


# Who may call a command: the roles of the callers. A caller's role is its authenticated
# identity's (its CURVE key's; ``IDENTITIES``), checked by the command server before the handler.
OPERATOR = "operator"  # tradectl, the Python API, the console
ORCHESTRATOR = "orchestrator"
ENGINE = "engine"
EXCHANGE_MANAGER = "exchange_manager"
READER = "reader"  # the sniffer, monitoring: subscribe and read-only queries
ANYONE = frozenset({OPERATOR, ORCHESTRATOR, ENGINE, EXCHANGE_MANAGER, READER, "data_router", "safety", "venue_sim",
                    "supervisor"})
CONTROL = frozenset({OPERATOR, ORCHESTRATOR})

# Every identity the system's own processes and tools use on the bus (the envelope's ``source`` and
# the name of its key pair), with its role. A service's role is its name; a key generated for
# anyone else (``tradectl keys generate alice --role reader``) is an operator's or a reader's.
IDENTITIES: dict[str, str] = {
    "orchestrator": ORCHESTRATOR, "exchange_manager": EXCHANGE_MANAGER, "engine": ENGINE,
    "data_router": "data_router", "safety": "safety", "venue_sim": "venue_sim", "supervisor": "supervisor",
    "tradectl": OPERATOR, "python-api": OPERATOR, "console": OPERATOR, "sniffer": READER,
}
PERSON_ROLES = (OPERATOR, READER)  # the roles a key outside IDENTITIES may have


@dataclass(frozen=True)
class CommandSpec:
    """One command as one service serves it."""

    service: str
    request: type[Args]
    result: type[Any]  # a ``Result`` (or a venue report / instrument list: strict, from a venue)
    query: bool = False  # changes nothing: a retry runs it again, no reply is cached
    callers: frozenset[str] = CONTROL
    cli: str = ""  # how an operator calls it; "" = ``tradectl call SERVICE NAME JSON`` only

    @property
    def name(self) -> str:
        return self.request.NAME

    @property
    def doc(self) -> str:
        """The first paragraph of the request's docstring."""
        return " ".join((self.request.__doc__ or "").strip().split("\n\n")[0].split())


class CommandError(Exception):
    """Raised by a handler to refuse a command; the reason goes back to the caller verbatim."""


def ok(command_id: str, /, result: Any = None, **fields: Any) -> Reply:
    """A success: ``result`` a result struct, or its fields as keywords."""
    return Reply(id=command_id, ok=True, result=fields if result is None else result)


def error(command_id: str, reason: str) -> Reply:
    return Reply(id=command_id, ok=False, error=reason)
