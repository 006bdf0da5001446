"""Size limits of the wire contract: the most that any peer may make a process hold per message.

A process keeps some of what its peers send: command ids in the reply cache, reasons in journals
and logs, names in counters. Unbounded, a local peer could grow it at will (1 MB command ids kept
300 of them in the data router's reply cache: 44 → 579 MB). So every field a peer controls has a
bound here, and the decoder refuses anything beyond it with a ``ProtocolError``, before a handler
or a cache sees it. Both ends import these: a client knows what a server will take.

Raising one is a contract change: it raises the memory bound stated in ``docs/architecture.md``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

# Short identifiers: the envelope's ``source`` and ``type``, command names, strategy and connector
# names. The longest in use is about 20 characters.
MAX_NAME_CHARS = 64
# Unique ids: command ids (``source:pid:epoch:n``, about 45 characters), client order ids.
MAX_ID_CHARS = 128
# Free text a person or a peer writes: reasons (``tradectl failsafe --reason ...``). A longer one is
# cut to this, not refused: the length of a reason must never refuse a step toward safety (a
# failsafe, a disable_trading whose reason quotes the event that triggered it).
MAX_TEXT_CHARS = 1_000
# A command as a whole: its encoded body (id, name and arguments together). The largest real one,
# a ``subscribe`` with a few hundred symbols, is a few kilobytes.
MAX_COMMAND_BYTES = 64 * 1024
# Top-level keys in a command's ``args`` (the largest schema has 9 fields).
MAX_ARGS_KEYS = 32
# Items in a list argument (symbols to subscribe to at once).
MAX_LIST_ITEMS = 1_000

Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME_CHARS)]
Id = Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)]


def clip(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how many were left out."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"
