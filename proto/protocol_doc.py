"""Writes ``docs/protocol.md``, the written contract, from the code that is the contract.

``python -m proto.protocol_doc > docs/protocol.md``; ``tests/unit/test_protocol_doc.py`` fails
when the file is stale, so the page never drifts from ``proto/``.
"""

from __future__ import annotations

import sys
from typing import Any

import msgspec

from proto import topics
from proto.commands import SPECS, CommandSpec
from proto.commands.registry import SERVICES
from proto.envelope import COMPATIBLE_VERSIONS, SCHEMA_VERSION
from proto.messages import MESSAGE_TYPES

HEADER = f"""# The bus protocol

Generated from `proto/` by `python -m proto.protocol_doc > docs/protocol.md`; do not edit by hand
(`tests/unit/test_protocol_doc.py` fails when this page is stale).

## Envelope
Every message is one MessagePack array `[v, type, source, epoch, seq, ts_ns, body]`
(`proto/envelope.py`): `v` the schema version ({SCHEMA_VERSION}; this build reads
{COMPATIBLE_VERSIONS.start}..{COMPATIBLE_VERSIONS.stop - 1}), `type` the body's message type below, `source` the sending service, `epoch` its start time in ns (a restart is a new epoch, not a
gap), `seq` its count per epoch from 1, `ts_ns` the send time, `body` a map of the type's fields.
Events travel on PUB/SUB as `[topic, message]`; a command and its reply as one frame on a
DEALER/ROUTER pair.

## Compatibility
- Event and reply bodies accept fields they do not know and ignore them: a service restarted on a
  build that adds an optional field keeps talking to its peers. A sender checks its own results
  strictly (a missing, unknown or mistyped field is its bug, answered as an internal error).
- Command arguments are strict: an argument the server does not know is refused, never ignored (an
  ignored `reduce_only` would be a step toward risk).
- Adding an optional field, a message type, a topic or a command keeps the version. Removing or
  changing the meaning of a field is a new version; a build reads the versions in its range and
  refuses the others (counted, logged).

## Replies
Every command is answered once: `Reply(id, ok=true, result={{...}})` with the command's result
below, or `Reply(id, ok=false, error="reason")`. A command id is unique; a server answers a repeated
id with its first reply and does not run the command again. Queries (marked below) are run again.
Callers: the roles a command is declared for (the rights each identity gets, issue 14).
"""


def _type_name(tp: Any) -> str:
    name = getattr(tp, "__name__", None) if isinstance(tp, type) else None
    text = name or repr(tp)
    return text.replace("typing.", "").replace("proto.fields.", "").replace("NoneType", "None")


def _fields(struct: type[msgspec.Struct]) -> str:
    info = msgspec.inspect.type_info(struct)
    parts = []
    for f in info.fields:  # type: ignore[attr-defined]
        default = "" if f.required else f" = {f.default!r}" if f.default is not msgspec.NODEFAULT else " = (empty)"
        parts.append(f"`{f.name}`: {_describe(f.type)}{default}")
    return "; ".join(parts) or "(none)"


def _describe(t: msgspec.inspect.Type) -> str:
    i = msgspec.inspect
    if isinstance(t, i.StructType):
        return t.cls.__name__
    if isinstance(t, i.UnionType):
        return " | ".join(_describe(x) for x in t.types)
    if isinstance(t, (i.ListType, i.SetType, i.FrozenSetType, i.VarTupleType)):
        return f"list[{_describe(t.item_type)}]"
    if isinstance(t, i.DictType):
        return f"map[{_describe(t.key_type)}, {_describe(t.value_type)}]"
    if isinstance(t, i.LiteralType):
        return " | ".join(repr(v) for v in t.values)
    if isinstance(t, i.EnumType):
        return f"{t.cls.__name__} ({', '.join(repr(m.value) for m in t.cls)})"
    if isinstance(t, i.Metadata):
        return _describe(t.type)
    return {i.NoneType: "None", i.AnyType: "any", i.StrType: "str", i.IntType: "int", i.FloatType: "float",
            i.BoolType: "bool"}.get(type(t), type(t).__name__.removesuffix("Type").lower())


def _doc(cls: type) -> str:
    return " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())


def _command(spec: CommandSpec) -> list[str]:
    return [
        f"#### `{spec.name}`{' (query)' if spec.query else ''}",
        spec.doc,
        "",
        f"- request `{spec.request.__name__}`: {_fields(spec.request)}",
        f"- result `{spec.result.__name__}`: {_fields(spec.result)}",
        f"- callers: {', '.join(sorted(spec.callers))}",
        *([f"- CLI: `{spec.cli}`"] if spec.cli else []),
        "",
    ]


def render() -> str:
    lines = [HEADER, "## Topics", "| topic | publishers | message types |", "|---|---|---|"]
    for topic, types in topics.CARRIES.items():
        family = topic.split("<")[0].rstrip("*")
        publishers = sorted(s for s, names in topics.PUBLISHED.items()
                            if any(n.rstrip("*").startswith(family) or family.startswith(n.rstrip("*")) for n in names))
        who = "every service" if "<service>" in topic else ", ".join(publishers)
        lines.append(f"| `{topic}` | {who} | {', '.join(f'`{t}`' for t in types)} |")
    lines += ["", "## Message types", ""]
    for cls in MESSAGE_TYPES:
        lines += [f"### `{cls.TYPE}` ({cls.__name__})", _doc(cls), "", f"Fields: {_fields(cls)}", ""]
    lines += ["## Commands", ""]
    for service in SERVICES:
        lines += [f"### Served by `{service}`", ""]
        for spec in sorted((s for s in SPECS if s.service == service), key=lambda s: s.name):
            lines += _command(spec)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
