"""The envelope and the only code that turns messages into bytes and back.

Wire format of one message (one ZeroMQ frame), MessagePack array:

    [v, type, source, epoch, seq, ts_ns, body]

``v`` is ``SCHEMA_VERSION``; ``type`` names the body's schema (``proto.messages``); ``source`` is
the publishing service; ``epoch`` is the source's start time in ns (a restarted publisher has a new
epoch, so its sequence restarting at 1 is not a gap); ``seq`` counts per publisher and epoch from
1; ``ts_ns`` is the wall-clock send time; ``body`` is a MessagePack map of the body's fields.
Events go out as two frames, ``[topic, message]``; commands and replies as one.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

import msgspec

from proto.errors import ProtocolError
from proto.limits import MAX_COMMAND_BYTES, Name
from proto.messages import MESSAGE_TYPES, Command, Message, Reply, TypedReply

SCHEMA_VERSION = 1
# The versions this build reads (docs/protocol.md, Compatibility): adding an optional field keeps
# the version, since bodies ignore fields they do not know; an incompatible change is a new version,
# and a build that can still read the one before keeps it in this range while peers catch up.
COMPATIBLE_VERSIONS = range(1, SCHEMA_VERSION + 1)
# The decoder's own limit; sockets also enforce ZMQ_MAXMSGSIZE so an oversized frame never even
# reaches Python (see bus.sockets).
MAX_MESSAGE_BYTES = 1 << 20


class Envelope(msgspec.Struct, array_like=True, frozen=True):
    v: int
    type: str
    source: str
    epoch: int
    seq: int
    ts_ns: int
    body: Any


NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class Header(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """The envelope with its body left undecoded (``msgspec.Raw``): what a tool that only routes,
    counts or records messages needs (``tradectl bus``), at a third of the cost of ``decode``."""

    v: int
    type: Name
    source: Name
    epoch: NonNegative
    seq: NonNegative
    ts_ns: NonNegative
    body: msgspec.Raw


# Bodies with a tighter bound than the frame's: what a peer sends that a server keeps (see
# proto.limits). Checked on the undecoded body, so a refused one costs no decoding.
_BODY_LIMITS: dict[type[Message], int] = {Command: MAX_COMMAND_BYTES}


def _registry() -> dict[str, tuple[msgspec.msgpack.Decoder, int]]:
    decoders: dict[str, tuple[msgspec.msgpack.Decoder, int]] = {}
    for cls in MESSAGE_TYPES:
        if cls.TYPE in decoders:
            raise RuntimeError(f"message type {cls.TYPE!r} defined twice")
        decoders[cls.TYPE] = (msgspec.msgpack.Decoder(cls), _BODY_LIMITS.get(cls, MAX_MESSAGE_BYTES))
    return decoders


_BODY_DECODERS = _registry()
_ENVELOPE_DECODER = msgspec.msgpack.Decoder(Header)
_ENCODER = msgspec.msgpack.Encoder()


def encode(source: str, epoch: int, seq: int, ts_ns: int, body: Message) -> bytes:
    """Build the envelope around ``body`` and return its bytes."""
    return _ENCODER.encode(Envelope(SCHEMA_VERSION, body.TYPE, source, epoch, seq, ts_ns, body))


def decode_header(data: bytes | memoryview, max_bytes: int = MAX_MESSAGE_BYTES) -> Header:
    """The envelope's fields without decoding the body; ``ProtocolError`` if it is not an envelope."""
    if len(data) > max_bytes:
        raise ProtocolError("oversized", f"{len(data)} bytes, limit {max_bytes}")
    try:
        return _ENVELOPE_DECODER.decode(data)
    except Exception as exc:  # msgspec raises DecodeError/ValidationError; be total on hostile input
        raise ProtocolError("malformed", str(exc)) from None


@functools.cache
def _reply_decoder(result_type: type) -> msgspec.msgpack.Decoder:
    return msgspec.msgpack.Decoder(TypedReply[result_type])  # type: ignore[valid-type]


def decode_reply(data: bytes | memoryview, result_type: type, max_bytes: int = MAX_MESSAGE_BYTES) -> TypedReply:
    """A reply whose result is decoded into ``result_type`` (the asked command's result struct, from
    the registry) in one pass over its body. ``ProtocolError`` if it is not a reply of this build's
    versions, or its result is not that struct: a refusal's empty result, a reply to another
    command; the caller reads those with ``decode``, which takes any reply."""
    raw = decode_header(data, max_bytes)
    if raw.v not in COMPATIBLE_VERSIONS or raw.type != Reply.TYPE:
        raise ProtocolError("invalid", f"not a reply of this build: {raw.type!r} v{raw.v}")
    try:
        return _reply_decoder(result_type).decode(raw.body)
    except Exception as exc:
        raise ProtocolError("invalid", f"reply: {exc}") from None


def restamp(data: bytes | memoryview, epoch: int, max_bytes: int = MAX_MESSAGE_BYTES) -> bytes:
    """The same message under another publisher ``epoch``, its body's bytes untouched. A recording
    played again (``tradectl bus play --loop``) goes out as a restarted publisher would, not as
    repeats that every subscriber drops as stale."""
    h = decode_header(data, max_bytes)
    return _ENCODER.encode(Header(h.v, h.type, h.source, epoch, h.seq, h.ts_ns, h.body))


def decode(data: bytes | memoryview, max_bytes: int = MAX_MESSAGE_BYTES) -> Envelope:
    """Validate and decode one message; anything wrong raises ``ProtocolError`` and nothing else."""
    raw = decode_header(data, max_bytes)
    if raw.v not in COMPATIBLE_VERSIONS:
        raise ProtocolError("version", f"schema version {raw.v}, this build reads {COMPATIBLE_VERSIONS.start}"
                                       f"..{COMPATIBLE_VERSIONS.stop - 1}")
    entry = _BODY_DECODERS.get(raw.type)
    if entry is None:
        raise ProtocolError("unknown_type", f"message type {raw.type!r}")
    body_decoder, max_body = entry
    if len(raw.body) > max_body:
        raise ProtocolError("too_large", f"{raw.type} body of {len(raw.body)} bytes, limit {max_body}")
    try:
        body = body_decoder.decode(raw.body)
    except Exception as exc:
        raise ProtocolError("invalid", f"{raw.type}: {exc}") from None
    return Envelope(raw.v, raw.type, raw.source, raw.epoch, raw.seq, raw.ts_ns, body)


def to_builtins(obj: Any) -> Any:
    """Plain Python (dicts, lists, str, numbers) for JSON output and tables."""
    return msgspec.to_builtins(obj)


def from_builtins(obj: Any, message_type: type[Message]) -> Message:
    """A message carried inside another (e.g. an order in a reply's result), validated."""
    try:
        return msgspec.convert(obj, message_type)
    except msgspec.ValidationError as exc:
        raise ProtocolError("invalid", f"{message_type.TYPE}: {exc}") from None
