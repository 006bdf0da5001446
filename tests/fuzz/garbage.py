"""Hostile input, generated from a seed, and the oracle that says what a server must make of it.

Everything here is deterministic for a given ``random.Random``: a failing case is replayed by its
seed and index. Generators yield the *payload* (the frame a decoder sees); ``command_inputs`` wraps
payloads in the frame layouts a ROUTER can receive (one frame, REQ-style ``[b"", payload]``, extra
route frames), ``event_inputs`` in the layouts a SUB can receive (1, 2, 3+ frames).

``classify`` is the oracle: what ``bus.CommandServer`` must count for a payload (a
``ProtocolError`` kind, ``not_a_command``, ``unknown_command``, ``duplicate``) or ``accepted``. It
mirrors the documented contract (decode, then command name, then argument schema, idempotency on
the id), using the decoder itself only to tell apart random bytes that happen to be valid.
"""

from __future__ import annotations

import random
import string
from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgpack
import msgspec

import proto

# Commands that change nothing. A mutated input that still decodes to a valid command is sent only
# if its name is one of these (a fuzzer must never open, close or shut down the session by luck).
SAFE_COMMANDS = frozenset({"status", "state", "stats", "positions", "orders", "open_orders", "mass_status",
                           "reconciliation"})
# Every command name of the contract, state-changing ones included: with an argument that no
# schema has (FUZZ_ARG) they must be refused as ``invalid`` and never run.
ALL_COMMANDS = tuple(sorted(proto.ARG_SCHEMAS))
FUZZ_ARG = "zz_fuzz_unknown_argument"
# A fixed timestamp: the same seed gives the same bytes.
TS = 1_767_225_600_000_000_000

REJECT_KINDS = ("malformed", "version", "unknown_type", "invalid", "not_a_command", "unknown_command",
                "oversized", "unauthorised")
# The fuzzer's identity on the bus (an operator's key, tests/fuzz/support.fuzz_security): the source
# of every request it sends, unless a mutation changed it (then refused as unauthorised).
FUZZER = "fuzz"


# -- valid messages ------------------------------------------------------------------------------


def _valid_value(t: msgspec.inspect.Type) -> Any:
    mi = msgspec.inspect
    if isinstance(t, mi.Metadata):  # a pattern its struct checks itself (proto.fields.MarketSymbol)
        return "FZ" if "pattern" in (t.extra_json_schema or {}) else _valid_value(t.type)
    if isinstance(t, mi.StrType):
        return "FZ" if t.pattern else "fz"  # "FZ" is a valid symbol, id and name (proto/fields.py)
    if isinstance(t, mi.BoolType):
        return True
    if isinstance(t, mi.IntType):
        return max(3, (t.gt or 0) + 1, t.ge or 0)
    if isinstance(t, mi.FloatType):
        return max(1.5, (t.gt or 0) + 1.5, t.ge or 0)
    if isinstance(t, mi.LiteralType):
        return t.values[0]
    if isinstance(t, mi.EnumType):
        return next(iter(t.cls))
    if isinstance(t, mi.UnionType):
        return _valid_value(next(u for u in t.types if not isinstance(u, mi.NoneType)))
    if isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType)):
        return [_valid_value(t.item_type)]
    if isinstance(t, mi.DictType):
        return {"k": _valid_value(t.value_type)}
    if isinstance(t, (mi.AnyType, mi.NoneType)):
        return None
    if isinstance(t, mi.StructType):
        return t.cls(**{f.name: _valid_value(f.type) for f in t.fields if f.required})
    raise NotImplementedError(f"no sample value for {t!r}")


def sample_messages() -> list[proto.Message]:
    """One valid instance of every message type the contract defines (new types included)."""
    out = []
    for cls in proto.MESSAGE_TYPES:
        fields = {f.name: _valid_value(f.type) for f in msgspec.inspect.type_info(cls).fields}
        out.append(cls(**fields))
    return out


SAMPLES = sample_messages()
NON_COMMANDS = [m for m in SAMPLES if not isinstance(m, proto.Command)]


def new_id(rng: random.Random) -> str:
    return f"fz-{rng.getrandbits(96):024x}"


def command(name: str, args: dict[str, Any] | None = None, *, cid: str, source: str = FUZZER) -> bytes:
    return proto.encode(source, 1, 1, TS, proto.Command(id=cid, name=name, args=args or {}))


def envelope(v: Any, type_: Any, body: Any, *, source: Any = "fuzz", epoch: Any = 1, seq: Any = 1,
             ts_ns: Any = 1) -> bytes:
    """An envelope built field by field with the reference msgpack library (any field any type)."""
    return msgpack.packb([v, type_, source, epoch, seq, ts_ns, body])


# -- random structures -----------------------------------------------------------------------------


def random_text(rng: random.Random, n: int | None = None) -> str:
    n = rng.randint(0, 12) if n is None else n
    return "".join(rng.choice(string.ascii_letters + string.digits + "._-:é€ \x00") for _ in range(n))


def random_object(rng: random.Random, depth: int = 0) -> Any:
    """Any MessagePack value: scalars, bytes, nested lists and maps (bounded depth and size)."""
    r = rng.random()
    if depth >= 3 or r < 0.45:
        return rng.choice([
            lambda: rng.randint(-(2**63), 2**64 - 1),
            lambda: rng.randint(-40, 300),
            lambda: rng.uniform(-1e12, 1e12),
            lambda: float("nan"),
            lambda: random_text(rng),
            lambda: rng.randbytes(rng.randint(0, 16)),
            lambda: None,
            lambda: rng.random() < 0.5,
        ])()
    if r < 0.75:
        return [random_object(rng, depth + 1) for _ in range(rng.randint(0, 8))]
    return {random_key(rng): random_object(rng, depth + 1) for _ in range(rng.randint(0, 6))}


def random_key(rng: random.Random) -> Any:
    return random_text(rng) if rng.random() < 0.85 else rng.choice([rng.randint(-5, 5), None, b"k", 1.5])


# -- payload generators (one frame each) -----------------------------------------------------------


def _random_bytes(rng: random.Random, ctx: dict[str, Any]) -> bytes:
    return rng.randbytes(rng.choice([0, 1, 2, 3, 7, 16, 64, 255, 1000]))


def _random_msgpack(rng: random.Random, ctx: dict[str, Any]) -> bytes:
    return msgpack.packb(random_object(rng), use_bin_type=rng.random() < 0.5)


def _random_array7(rng: random.Random, ctx: dict[str, Any]) -> bytes:
    """Right length, fields of arbitrary types: the envelope's own validation."""
    return msgpack.packb([random_object(rng, 2) for _ in range(rng.choice([6, 7, 7, 7, 8]))])


def _truncated(rng: random.Random, ctx: dict[str, Any]) -> bytes:
    data = _valid_payload(rng, ctx)
    return data[: rng.randrange(0, len(data))]


def _trailing(rng: random.Random, ctx: dict[str, Any]) -> bytes:
    return _valid_payload(rng, ctx) + rng.randbytes(rng.randint(1, 8))


def _bitflip(rng: random.Random, ctx: dict[str, Any]) -> bytes:
    data = bytearray(command("status", cid=new_id(rng)) if rng.random() < 0.5 else _invalid_args(rng, ctx))
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(data))
        data[i] = rng.randrange(256) if rng.random() < 0.5 else data[i] ^ (1 << rng.randrange(8))
    return bytes(data)


def _wrong_version(rng: random.Random, ctx: dict[str, Any]) -> bytes:
    v = rng.choice([0, 2, 3, 99, 255, 65536, -1, 2**63 - 1, -(2**63)])
    return envelope(v, "command", {"id": new_id(rng), "name": "status", "args": {}})


def _unknown_type(rng: random.Random, ctx: dict[str, Any]) -> bytes:
    known = {cls.TYPE for cls in proto.MESSAGE_TYPES}
    while (name := rng.choice(["", "commands", "Command", "COMMAND", "reply ", random_text(rng)])) in known:
        pass
    return envelope(proto.SCHEMA_VERSION, name, {"id": new_id(rng), "name": "status", "args": {}})


def _wrong_envelope_field(rng: random.Random, ctx: dict[str, Any]) -> bytes:
    """One envelope field of the wrong type or range: malformed."""
    fields = {"v": proto.SCHEMA_VERSION, "type_": "command", "source": "fuzz", "epoch": 1, "seq": 1, "ts_ns": 1}
    which = rng.choice(list(fields))
    fields[which] = rng.choice([-1, "1", 1.5, None, [1], {"a": 1}, b"\x01", True])
    if which == "v" and fields["v"] is True:
        fields["v"] = "x"
    if which in ("source", "type_") and isinstance(fields[which], str):
        fields[which] = 7
    body = {"id": new_id(rng), "name": "status", "args": {}}
    return envelope(fields["v"], fields["type_"], body, source=fields["source"], epoch=fields["epoch"],
                    seq=fields["seq"], ts_ns=fields["ts_ns"])


def _wrong_command_body(rng: random.Random, ctx: dict[str, Any]) -> bytes:
    """A ``command`` envelope whose body is not a valid Command: invalid."""
    cid = new_id(rng)
    body = rng.choice([
        lambda: random_object(rng),
        lambda: [cid, "status", {}],
        lambda: {"id": rng.randint(0, 9), "name": "status", "args": {}},
        lambda: {"id": cid, "name": ["status"], "args": {}},
        lambda: {"id": cid, "name": "status", "args": [1, 2]},
        lambda: {"id": cid, "name": "status", "args": {}, "extra": 1},
        lambda: {"name": "status", "args": {}},
        lambda: {"id": cid},
        lambda: {"id": cid, "name": None},
    ])()
    if isinstance(body, dict) and set(body) == {"id", "name", "args"} and body.get("name") == "status" \
            and isinstance(body.get("id"), str) and isinstance(body.get("args"), dict):
        body["extra"] = 1  # random_object could, in theory, produce a valid command
    return envelope(proto.SCHEMA_VERSION, "command", body)


def _wrong_body(rng: random.Random, ctx: dict[str, Any]) -> bytes:
    """Any message type with a body of the wrong shape."""
    cls = rng.choice(proto.MESSAGE_TYPES)
    valid = msgspec.to_builtins(next(m for m in SAMPLES if type(m) is cls))
    mutate = rng.choice(["drop", "extra", "retype", "random"])
    body: Any = dict(valid)
    if mutate == "drop" and body:
        body.pop(rng.choice(list(body)))
        if len(body) == len(valid) - 1 and _all_optional(cls, body):
            body[FUZZ_ARG] = 1
    elif mutate == "extra":
        body[FUZZ_ARG] = random_object(rng, 2)
    elif mutate == "retype" and body:
        key = rng.choice(list(body))
        body[key] = rng.choice([[object_marker()], {"x": {"y": 1}}, b"\xff", 2**64 - 1, -(2**63)])
    else:
        body = rng.choice([[1, 2], 5, "x", None, b"\x00"])
    if isinstance(body, dict) and "id" in body and isinstance(body["id"], str):
        body["id"] = new_id(rng)  # a command that still decodes must not reuse an id a server has seen
    return envelope(proto.SCHEMA_VERSION, cls.TYPE, body)


def object_marker() -> str:
    return "not-a-valid-anything"


def _all_optional(cls: type, body: dict[str, Any]) -> bool:
    required = {f.name for f in msgspec.inspect.type_info(cls).fields if f.required}
    return required <= set(body)


def _not_a_command(rng: random.Random, ctx: dict[str, Any]) -> bytes:
    return proto.encode("fuzz", 1, 1, TS, rng.choice(NON_COMMANDS))


def _unknown_command(rng: random.Random, ctx: dict[str, Any]) -> bytes:
    served = ctx.get("served", frozenset())
    while (name := rng.choice([random_text(rng, rng.randint(1, 10)), "STATUS", "status ", "shutdown2",
                               "submit-order", ""] + list(ALL_COMMANDS))) in served:
        pass
    return command(name, {FUZZ_ARG: 1} if rng.random() < 0.5 else {}, cid=new_id(rng))


def _invalid_args(rng: random.Random, ctx: dict[str, Any]) -> bytes:
    """A command this service serves (state-changing ones included), always with an argument no
    schema has (plus, sometimes, real arguments of the wrong type): refused as ``invalid``."""
    served = sorted(ctx.get("served") or ALL_COMMANDS)
    name = rng.choice(served)
    args: dict[str, Any] = {FUZZ_ARG: random_object(rng, 2)}
    for _ in range(rng.randint(0, 3)):
        args[rng.choice(["symbol", "side", "qty", "reason", "client_order_id", "symbols", "fault", "mode",
                         "limit_price", "order_type", "reset"])] = random_object(rng, 2)
    return command(name, args, cid=new_id(rng))


def _valid_payload(rng: random.Random, ctx: dict[str, Any]) -> bytes:
    if rng.random() < 0.5:
        return command(rng.choice(sorted(SAFE_COMMANDS)), {}, cid=new_id(rng))
    return proto.encode("fuzz", 1, rng.randint(1, 2**40), TS, rng.choice(SAMPLES))


PAYLOADS = {
    "random_bytes": (_random_bytes, 10),
    "random_msgpack": (_random_msgpack, 10),
    "random_array7": (_random_array7, 8),
    "truncated": (_truncated, 12),
    "trailing_bytes": (_trailing, 3),
    "bitflip": (_bitflip, 10),
    "wrong_version": (_wrong_version, 6),
    "unknown_type": (_unknown_type, 6),
    "wrong_envelope_field": (_wrong_envelope_field, 6),
    "wrong_command_body": (_wrong_command_body, 6),
    "wrong_body": (_wrong_body, 6),
    "not_a_command": (_not_a_command, 5),
    "unknown_command": (_unknown_command, 6),
    "invalid_args": (_invalid_args, 8),
}


def payloads(rng: random.Random, n: int, ctx: dict[str, Any] | None = None) -> Iterator[tuple[str, bytes]]:
    """``n`` garbage payloads as ``(category, bytes)``."""
    ctx = ctx or {}
    names = list(PAYLOADS)
    weights = [PAYLOADS[k][1] for k in names]
    for category in rng.choices(names, weights, k=n):
        yield category, PAYLOADS[category][0](rng, ctx)


# -- frame layouts ---------------------------------------------------------------------------------


def command_inputs(rng: random.Random, n: int, ctx: dict[str, Any] | None = None
                   ) -> Iterator[tuple[str, list[bytes], bytes]]:
    """Frames a DEALER sends to a ROUTER: ``(category, frames, payload)``; the server takes the
    last frame as the message and the frames before it (after the identity) as the route."""
    for category, payload in payloads(rng, n, ctx):
        layout = rng.random()
        if layout < 0.7:
            yield category, [payload], payload
        elif layout < 0.85:
            yield category + "/req", [b"", payload], payload
        else:
            route = [rng.randbytes(rng.randint(0, 12)) for _ in range(rng.randint(1, 4))]
            yield category + "/multi", [*route, payload], payload


def event_inputs(rng: random.Random, n: int, max_bytes: int) -> Iterator[tuple[str, list[bytes], str]]:
    """Frames a PUB sends to a SUB: ``(category, frames, expected Subscriber.rejected kind)``."""
    for i in range(n):
        r = rng.random()
        if r < 0.1:
            yield "one_frame", [rng.randbytes(rng.randint(0, 40))], "frames"
        elif r < 0.2:
            frames = [rng.randbytes(rng.randint(0, 20)) for _ in range(rng.randint(3, 6))]
            yield "many_frames", frames, "frames"
        elif r < 0.25:
            payload = proto.encode("fuzz", 1, i + 1, TS, rng.choice(SAMPLES))
            yield "valid_message_bad_topic", [b"md.\xff\xfe" + rng.randbytes(3), payload], "topic"
        else:
            category, payload = next(payloads(rng, 1))
            kind = classify_decode(payload, max_bytes)
            if kind is None:  # a valid message by chance (rare): not garbage, skip it
                continue
            yield category, [b"md.FUZZ", payload], kind


# -- the oracle -------------------------------------------------------------------------------------


def classify_decode(payload: bytes, max_bytes: int) -> str | None:
    """The decoder's verdict: a ProtocolError kind, or None for a valid message."""
    try:
        proto.decode(payload, max_bytes)
    except proto.ProtocolError as exc:
        return exc.kind
    return None


class CommandOracle:
    """What a CommandServer must do with each payload, including idempotency on the id."""

    def __init__(self, served: frozenset[str], max_bytes: int, service: str, role: str = "operator") -> None:
        self.served = served
        self.service = service
        self.role = role
        self.max_bytes = max_bytes
        self.seen: set[str] = set()
        self.expected: Counter[str] = Counter()

    def classify(self, payload: bytes) -> tuple[str, proto.Command | None]:
        """(verdict, the decoded command if any): a reject kind, ``duplicate`` or ``accepted``."""
        try:
            env = proto.decode(payload, self.max_bytes)
        except proto.ProtocolError as exc:
            return exc.kind, None
        cmd = env.body
        if not isinstance(cmd, proto.Command):
            return "not_a_command", None
        spec = proto.spec_of(self.service, cmd.name)
        if env.source != FUZZER or (spec is not None and self.role not in spec.callers):
            return "unauthorised", cmd  # checked first: never cached, never seen
        if cmd.id in self.seen:
            return "duplicate", cmd
        if cmd.name not in self.served:
            return "unknown_command", cmd
        try:
            proto.parse_args(cmd.name, cmd.args)
        except proto.ProtocolError as exc:
            return exc.kind, cmd
        return "accepted", cmd

    def admit(self, payload: bytes) -> tuple[str | None, proto.Command | None]:
        """(verdict, decoded command), recorded; verdict None if the payload must not be sent (a
        valid command that is not read-only, produced by a mutation: never executed by the fuzzer)."""
        verdict, cmd = self.classify(payload)
        if verdict == "accepted" and cmd is not None and cmd.name not in SAFE_COMMANDS:
            return None, cmd
        if cmd is not None and verdict != "unauthorised":  # decoded as a command: its reply is cached under its id
            self.seen.add(cmd.id)
        self.expected[verdict] += 1
        return verdict, cmd
