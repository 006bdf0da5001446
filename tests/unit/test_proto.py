"""proto/: the wire contract. Round trips, the documented frame shape, and total, typed rejection."""

from __future__ import annotations

import time
from typing import Any

import msgpack
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import proto
from proto import OrchestratorState as S
from proto import SafetyEventType, Severity
from proto.commands import Failsafe, NoArgs, Open, ReasonArgs, Status

# One valid, fully populated instance of every message type on the wire. A new message type
# without a sample here fails test_samples_cover_every_message_type: add one.
SAMPLES: dict[type[proto.Message], proto.Message] = {
    proto.Heartbeat: proto.Heartbeat(
        pid=4242, interval_s=0.2, stats=proto.summaries.EngineSummary(
            uptime_s=1.5, decisions_made=3, book_sync={"nested": {"list": [1, 2.5, "x", None, True]}}),
        state=S.LIVE, trading_enabled=True,
    ),
    proto.StateChanged: proto.StateChanged(old=S.LIVE, new=S.DEGRADED, reason="feed stale", transition_no=7),
    proto.Command: proto.Command(id="tradectl:1:2:3", name="open", args={"reason": "market open"}),
    proto.Reply: proto.Reply(id="tradectl:1:2:3", ok=True, result={"state": "live", "n": 3}, error=""),
    proto.SafetyEvent: proto.SafetyEvent(
        event_type=SafetyEventType.DATA_ANOMALY, severity=Severity.CRITICAL, symbol="BTC-USD",
        message="price jump", evidence={"z_score": 9.5, "last": 101.25},
    ),
    proto.ConnectorHealthEvent: proto.ConnectorHealthEvent(
        connector="sim", connected=True, latency_ms=1.25, messages_received=1000, messages_dropped=2,
        error_count=1, healthy=True, reason="ok",
    ),
    proto.EngineHealthEvent: proto.EngineHealthEvent(
        decisions_made=50, latency_p50_ms=0.12, latency_p99_ms=0.9, error_count=0, healthy=True, reason="",
    ),
    proto.ProcessHealthEvent: proto.ProcessHealthEvent(
        service="engine", alive=False, heartbeat_age_s=1.4, restarts=2, reason="missed 5 heartbeats",
    ),
}


def _valid_value(t: msgspec.inspect.Type) -> Any:
    """A valid (non-default-looking) value for a msgspec field type, for types without a sample."""
    mi = msgspec.inspect
    if isinstance(t, mi.Metadata):  # a pattern its struct checks itself (proto.fields.MarketSymbol)
        return "ABC" if "pattern" in (t.extra_json_schema or {}) else _valid_value(t.type)
    if isinstance(t, mi.StrType):
        return "ABC" if t.pattern else "abc"  # "ABC" is a valid symbol, id and name (proto/fields.py)
    if isinstance(t, mi.BoolType):
        return True
    if isinstance(t, mi.IntType):
        return max(7, (t.gt or 0) + 1, t.ge or 0)
    if isinstance(t, mi.FloatType):
        return max(2.5, (t.gt or 0) + 1.5, t.ge or 0)
    if isinstance(t, mi.LiteralType):
        return t.values[-1]
    if isinstance(t, mi.EnumType):
        return list(t.cls)[-1]
    if isinstance(t, mi.UnionType):
        non_none = [u for u in t.types if not isinstance(u, mi.NoneType)]
        return _valid_value(non_none[0])
    if isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType)):
        return [_valid_value(t.item_type)]
    if isinstance(t, mi.DictType):
        return {"k": _valid_value(t.value_type)}
    if isinstance(t, mi.AnyType):
        return {"any": [1, "two"]}
    if isinstance(t, mi.NoneType):
        return None
    if isinstance(t, mi.StructType):
        return t.cls(**{f.name: _valid_value(f.type) for f in t.fields if f.required})
    raise NotImplementedError(f"no sample value for {t!r}: extend _valid_value")


def valid_fields(cls: type) -> dict[str, Any]:
    """Every field of a msgspec struct set to a valid value (enum members as Python objects)."""
    return {f.name: _valid_value(f.type) for f in msgspec.inspect.type_info(cls).fields}


for _cls in proto.MESSAGE_TYPES:  # message types added after these tests were written
    SAMPLES.setdefault(_cls, _cls(**valid_fields(_cls)))

VALID_HEARTBEAT_BODY = {"pid": 1, "interval_s": 0.2}


def frame(v: Any = 1, type_: Any = "heartbeat", source: Any = "svc", epoch: Any = 1, seq: Any = 1,
          ts_ns: Any = 1, body: Any = None, *, extra: tuple = ()) -> bytes:
    """A frame built with the reference msgpack library, field by field."""
    if body is None:
        body = dict(VALID_HEARTBEAT_BODY)
    return msgpack.packb([v, type_, source, epoch, seq, ts_ns, body, *extra])


def kind_of(data: bytes | memoryview, **kw: Any) -> str:
    with pytest.raises(proto.ProtocolError) as info:
        proto.decode(data, **kw)
    assert isinstance(info.value.kind, str) and info.value.detail
    return info.value.kind


# --- round trips --------------------------------------------------------------------------------


def test_samples_cover_every_message_type() -> None:
    assert set(SAMPLES) == set(proto.MESSAGE_TYPES)
    assert all(type(sample) is cls for cls, sample in SAMPLES.items())
    assert len({cls.TYPE for cls in proto.MESSAGE_TYPES}) == len(proto.MESSAGE_TYPES)


@pytest.mark.parametrize("cls", proto.MESSAGE_TYPES, ids=lambda c: c.TYPE)
def test_round_trip_preserves_envelope_and_body(cls: type[proto.Message]) -> None:
    body = SAMPLES[cls]
    epoch, seq, ts = time.time_ns(), 2**40 + 3, time.time_ns()
    data = proto.encode("exchange_manager", epoch, seq, ts, body)
    assert isinstance(data, bytes)

    env = proto.decode(data)

    assert env == proto.Envelope(proto.SCHEMA_VERSION, cls.TYPE, "exchange_manager", epoch, seq, ts, body)
    assert type(env.body) is cls
    assert env.body == body
    # and the same again from a memoryview (what zero-copy receive hands over)
    assert proto.decode(memoryview(data)) == env


@pytest.mark.parametrize("cls", proto.MESSAGE_TYPES, ids=lambda c: c.TYPE)
def test_frame_has_documented_shape_for_reference_msgpack(cls: type[proto.Message]) -> None:
    body = SAMPLES[cls]
    data = proto.encode("engine", 11, 12, 13, body)

    decoded = msgpack.unpackb(data)

    assert isinstance(decoded, list) and len(decoded) == 7
    v, type_, source, epoch, seq, ts_ns, body_map = decoded
    assert (v, type_, source, epoch, seq, ts_ns) == (proto.SCHEMA_VERSION, cls.TYPE, "engine", 11, 12, 13)
    assert isinstance(body_map, dict)
    assert set(body_map) == set(cls.__struct_fields__)
    assert body_map == msgspec.to_builtins(body)


@pytest.mark.parametrize("cls", proto.MESSAGE_TYPES, ids=lambda c: c.TYPE)
def test_frame_built_by_reference_msgpack_decodes(cls: type[proto.Message]) -> None:
    body_map = msgspec.to_builtins(SAMPLES[cls])
    data = msgpack.packb([1, cls.TYPE, "safety", 5, 6, 7, body_map])

    env = proto.decode(data)

    assert env.body == SAMPLES[cls]
    assert (env.source, env.epoch, env.seq, env.ts_ns) == ("safety", 5, 6, 7)


def test_optional_fields_take_their_defaults_when_absent() -> None:
    env = proto.decode(frame(body={"pid": 9, "interval_s": 1}))
    assert env.body == proto.Heartbeat(pid=9, interval_s=1.0)
    assert env.body.state is None and env.body.trading_enabled is False and env.body.stats is None


def test_enum_values_travel_as_lower_case_names() -> None:
    assert [s.value for s in S] == ["startup", "ready", "live", "degraded", "failsafe", "shutdown"]
    data = proto.encode("orchestrator", 1, 1, 1, proto.StateChanged(old=S.READY, new=S.LIVE, reason="r",
                                                                     transition_no=1))
    assert msgpack.unpackb(data)[6]["new"] == "live"


# --- rejections, each with its kind -------------------------------------------------------------

VALID = frame()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc1", id="never-used-opcode"),
        pytest.param(b"\xff\x00\x13garbage\x00\x01", id="garbage"),
        pytest.param(VALID[:-1], id="truncated-by-one"),
        pytest.param(VALID[: len(VALID) // 2], id="truncated-half"),
        pytest.param(b"\x97", id="header-only"),
        pytest.param(b"\xdd\xff\xff\xff\xff", id="array32-claims-4G-items"),
        pytest.param(VALID + b"\x00", id="trailing-bytes"),
    ],
)
def test_malformed_bytes(data: bytes) -> None:
    assert kind_of(data) == "malformed"


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(42, id="int"),
        pytest.param("heartbeat", id="str"),
        pytest.param(None, id="nil"),
        pytest.param({"v": 1, "type": "heartbeat"}, id="map"),
        pytest.param([], id="empty-array"),
        pytest.param([1, "heartbeat", "svc", 1, 1, 1], id="six-elements"),
        pytest.param([1, "heartbeat"], id="two-elements"),
        pytest.param(["1", "heartbeat", "svc", 1, 1, 1, VALID_HEARTBEAT_BODY], id="v-is-str"),
        pytest.param([True, "heartbeat", "svc", 1, 1, 1, VALID_HEARTBEAT_BODY], id="v-is-bool"),
        pytest.param([1, 7, "svc", 1, 1, 1, VALID_HEARTBEAT_BODY], id="type-is-int"),
        pytest.param([1, "heartbeat", b"svc", 1, 1, 1, VALID_HEARTBEAT_BODY], id="source-is-bin"),
        pytest.param([1, "heartbeat", "svc", 1.5, 1, 1, VALID_HEARTBEAT_BODY], id="epoch-is-float"),
        pytest.param([1, "heartbeat", "svc", 1, "2", 1, VALID_HEARTBEAT_BODY], id="seq-is-str"),
        pytest.param([1, "heartbeat", "svc", 1, 1, None, VALID_HEARTBEAT_BODY], id="ts-is-nil"),
        # The documented shape is exactly seven elements; a longer array is not this protocol.
        pytest.param([1, "heartbeat", "svc", 1, 1, 1, VALID_HEARTBEAT_BODY, "extra"], id="eight-elements"),
    ],
)
def test_valid_msgpack_of_wrong_shape_is_malformed(obj: Any) -> None:
    assert kind_of(msgpack.packb(obj)) == "malformed"


def test_ext_type_at_top_level_is_malformed() -> None:
    assert kind_of(msgpack.packb(msgpack.ExtType(3, b"abc"))) == "malformed"


@pytest.mark.parametrize("v", [0, 2, 255, -1, 2**40])
def test_unsupported_version(v: int) -> None:
    assert kind_of(frame(v=v)) == "version"


def test_version_checked_before_type() -> None:
    assert kind_of(frame(v=2, type_="no_such_type")) == "version"


@pytest.mark.parametrize("type_", ["no_such_type", "", "Heartbeat", "HEARTBEAT", "heartbeat "])
def test_unknown_type(type_: str) -> None:
    assert kind_of(frame(type_=type_)) == "unknown_type"


@pytest.mark.parametrize(
    "type_,body",
    [
        pytest.param("heartbeat", {"pid": "1", "interval_s": 0.2}, id="pid-str"),
        pytest.param("heartbeat", {"pid": 1.5, "interval_s": 0.2}, id="pid-float"),
        pytest.param("heartbeat", {"pid": True, "interval_s": 0.2}, id="pid-bool"),
        pytest.param("heartbeat", {"pid": 1, "interval_s": "0.2"}, id="interval-str"),
        pytest.param("heartbeat", {"pid": 1, "interval_s": 0.2, "state": "bogus"}, id="state-not-enum"),
        pytest.param("heartbeat", {"pid": 1, "interval_s": 0.2, "state": "LIVE"}, id="state-upper-case"),
        pytest.param("heartbeat", {"pid": 1, "interval_s": 0.2, "stats": [1, 2]}, id="stats-list"),
        pytest.param("heartbeat", {"pid": 1, "interval_s": 0.2, "trading_enabled": 1}, id="flag-int"),
        pytest.param("heartbeat", {"pid": 1}, id="missing-required"),
        pytest.param("heartbeat", [1, 0.2], id="body-array"),
        pytest.param("heartbeat", "pid=1", id="body-str"),
        pytest.param("heartbeat", None, id="body-nil"),
        pytest.param("state_changed", {"old": "live", "new": "degraded", "reason": "r", "transition_no": 1.5},
                     id="transition-no-float"),
        pytest.param("command", {"id": 1, "name": "status"}, id="command-id-int"),
        pytest.param("command", {"id": "x", "name": "status", "args": []}, id="command-args-list"),
        pytest.param("reply", {"id": "x", "ok": "yes"}, id="reply-ok-str"),
        pytest.param("safety_event", {"event_type": "data_anomaly", "severity": "critical", "symbol": "X",
                                      "message": "m", "evidence": {"a": "high"}}, id="evidence-str"),
        pytest.param("safety_event", {"event_type": "meteor", "severity": "critical", "symbol": "X",
                                      "message": "m"}, id="event-type-unknown"),
        pytest.param("command", {"id": "x", "name": "status", "token": "t"}, id="command-unknown-field"),
    ],
)
def test_invalid_body(type_: str, body: Any) -> None:
    if body is None:  # the helper would substitute a valid body; pack nil explicitly
        data = msgpack.packb([1, type_, "svc", 1, 1, 1, None])
    else:
        data = frame(type_=type_, body=body)
    assert kind_of(data) == "invalid"


@pytest.mark.parametrize(
    "type_,body",
    [
        pytest.param("heartbeat", {"pid": 1, "interval_s": 0.2}, id="heartbeat"),
        pytest.param("process_health", {"service": "engine", "alive": True, "heartbeat_age_s": 0.1, "restarts": 0},
                     id="process-health"),
        pytest.param("reply", {"id": "x", "ok": True, "result": {"state": "live"}}, id="reply"),
    ],
)
def test_an_event_or_reply_from_a_newer_peer_is_read_without_its_new_fields(type_: str, body: dict[str, Any]) -> None:
    """docs/protocol.md, Compatibility: a peer restarted on a build that adds an optional field is
    understood by the others, which ignore the field; a mistyped known field is still refused."""
    newer = proto.decode(frame(type_=type_, body={**body, "added_in_a_later_build": [1, 2]})).body
    assert newer == proto.decode(frame(type_=type_, body=body)).body
    known = next(iter(body))
    assert kind_of(frame(type_=type_, body={**body, known: object.__name__.encode()})) == "invalid"


def test_oversized_against_explicit_limit() -> None:
    assert kind_of(VALID, max_bytes=len(VALID) - 1) == "oversized"
    assert proto.decode(VALID, max_bytes=len(VALID)).type == "heartbeat"


def test_oversized_against_default_limit() -> None:
    big = frame(body={"pid": 1, "interval_s": 0.2, "stats": {"blob": "x" * proto.MAX_MESSAGE_BYTES}})
    assert len(big) > proto.MAX_MESSAGE_BYTES
    assert kind_of(big) == "oversized"


def test_deeply_nested_body_is_rejected_not_crashing() -> None:
    depth = 100_000
    stats = b"\x81\xa1a" + b"\x91" * depth + b"\x00"
    body = b"\x83\xa3pid\x01\xaainterval_s\xcb" + b"\x00" * 8 + b"\xa5stats" + stats
    data = b"\x97\x01\xa9heartbeat\xa1s\x01\x01\x01" + body
    assert kind_of(data, max_bytes=10**7) in {"malformed", "invalid"}


# --- property tests: decode is total ------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_decode_total(data: bytes) -> None:
    try:
        env = proto.decode(data)
    except proto.ProtocolError as exc:
        assert exc.kind in {"malformed", "oversized", "version", "unknown_type", "invalid"}
        return
    assert isinstance(env, proto.Envelope)
    assert isinstance(env.body, proto.MESSAGE_TYPES)


@PROPERTY_SETTINGS
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_only_raise_protocol_error(data: bytes) -> None:
    assert_decode_total(data)


msgpack_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20) | st.binary(max_size=20)
    | st.builds(msgpack.ExtType, st.integers(min_value=0, max_value=127), st.binary(max_size=8))
)
msgpack_values = st.recursive(
    msgpack_scalars,
    lambda children: st.lists(children, max_size=8)
    | st.dictionaries(st.text(max_size=10) | st.integers(min_value=-5, max_value=5), children, max_size=8),
    max_leaves=30,
)


@PROPERTY_SETTINGS
@given(msgpack_values)
def test_arbitrary_msgpack_structures_only_raise_protocol_error(value: Any) -> None:
    assert_decode_total(msgpack.packb(value))


small_values = st.recursive(
    msgpack_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=6,
)
ALL_FIELD_NAMES = sorted({name for cls in proto.MESSAGE_TYPES for name in cls.__struct_fields__})
envelope_like = st.tuples(
    st.sampled_from([1, 1, 1, 0, 2]) | msgpack_scalars,
    st.sampled_from([cls.TYPE for cls in proto.MESSAGE_TYPES]) | st.text(max_size=12),
    st.text(max_size=12) | msgpack_scalars,
    st.integers(min_value=-(2**63), max_value=2**63 - 1) | msgpack_scalars,
    st.integers(min_value=-(2**63), max_value=2**63 - 1) | msgpack_scalars,
    st.integers(min_value=-(2**63), max_value=2**63 - 1) | msgpack_scalars,
    st.dictionaries(st.sampled_from(ALL_FIELD_NAMES) | st.text(max_size=8), small_values, max_size=8)
    | small_values,
)


@PROPERTY_SETTINGS
@given(envelope_like)
def test_envelope_shaped_structures_only_raise_protocol_error(parts: tuple) -> None:
    assert_decode_total(msgpack.packb(list(parts)))


VALID_FRAMES = [proto.encode("svc", 1, 1, 1, body) for body in SAMPLES.values()]


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID_FRAMES)))
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]))
        if not data:
            break
        i = draw(st.integers(min_value=0, max_value=len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif op == "set":
            data[i] = draw(st.integers(min_value=0, max_value=255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[i:i + draw(st.integers(min_value=1, max_value=8))]
        elif op == "truncate":
            del data[i:]
        else:
            j = draw(st.integers(min_value=i, max_value=len(data)))
            data[j:j] = data[i:j]
    return bytes(data)


@PROPERTY_SETTINGS
@given(mutated_frames())
def test_mutated_valid_frames_only_raise_protocol_error(data: bytes) -> None:
    assert_decode_total(data)


@settings(max_examples=100, deadline=None)
@given(
    st.text(max_size=30), st.text(max_size=30),
    st.dictionaries(st.text(max_size=8), st.none() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
                    max_size=5),
    st.integers(min_value=0, max_value=2**63 - 1), st.integers(min_value=0, max_value=2**63 - 1),
)
def test_commands_round_trip(cid: str, name: str, args: dict, epoch: int, seq: int) -> None:
    cmd = proto.Command(id=cid, name=name, args=args)
    env = proto.decode(proto.encode("tradectl", epoch, seq, 0, cmd))
    assert env.body == cmd and env.epoch == epoch and env.seq == seq


# --- command arguments and the reply shape ------------------------------------------------------


def valid_args(schema: type[proto.Args]) -> dict[str, Any]:
    """Wire form (msgpack-able builtins) of valid arguments for every field of ``schema``."""
    return msgspec.to_builtins(valid_fields(schema))


def _wrong_value(t: msgspec.inspect.Type) -> Any:
    mi = msgspec.inspect
    if isinstance(t, (mi.DictType, mi.AnyType)):
        return "not a map"
    return {"not": "this type"}


@pytest.mark.parametrize("name", sorted(proto.ARG_SCHEMAS))
def test_parse_args_accepts_valid_args_for_every_command(name: str) -> None:
    schema = proto.ARG_SCHEMAS[name]
    args = proto.parse_args(name, valid_args(schema))
    assert type(args) is schema
    assert msgspec.to_builtins(args) == valid_args(schema)


@pytest.mark.parametrize("name", sorted(proto.ARG_SCHEMAS))
def test_parse_args_accepts_only_required_fields(name: str) -> None:
    schema = proto.ARG_SCHEMAS[name]
    info = msgspec.inspect.type_info(schema)
    required = {f.name for f in info.fields if f.required}
    args = proto.parse_args(name, {k: v for k, v in valid_args(schema).items() if k in required})
    assert type(args) is schema
    for f in info.fields:
        if not f.required:
            assert getattr(args, f.name) == (f.default if f.default is not msgspec.NODEFAULT
                                             else f.default_factory())


def _required(schema: type[proto.Args]) -> list[str]:
    return [f.name for f in msgspec.inspect.type_info(schema).fields if f.required]


@pytest.mark.parametrize("name", sorted(n for n, s in proto.ARG_SCHEMAS.items() if _required(s)))
def test_parse_args_refuses_missing_required_fields(name: str) -> None:
    schema = proto.ARG_SCHEMAS[name]
    required = _required(schema)
    for field in required:
        args = valid_args(schema)
        del args[field]
        with pytest.raises(proto.ProtocolError) as info:
            proto.parse_args(name, args)
        assert info.value.kind == "invalid" and field in str(info.value)


@pytest.mark.parametrize("name", sorted(proto.ARG_SCHEMAS))
def test_parse_args_refuses_unknown_field_for_every_command(name: str) -> None:
    with pytest.raises(proto.ProtocolError) as info:
        proto.parse_args(name, {**valid_args(proto.ARG_SCHEMAS[name]), "surprise": 1})
    assert info.value.kind == "invalid"
    assert name in str(info.value) and "surprise" in str(info.value)


@pytest.mark.parametrize("name", sorted(proto.ARG_SCHEMAS))
@pytest.mark.parametrize("args", [None, [], "reason", 3], ids=["nil", "list", "str", "int"])
def test_parse_args_refuses_non_map_args_for_every_command(name: str, args: Any) -> None:
    with pytest.raises(proto.ProtocolError) as info:
        proto.parse_args(name, args)
    assert info.value.kind == "invalid"


@pytest.mark.parametrize("name", sorted(n for n, s in proto.ARG_SCHEMAS.items() if s.__struct_fields__))
def test_parse_args_refuses_wrong_field_types(name: str) -> None:
    schema = proto.ARG_SCHEMAS[name]
    fields = msgspec.inspect.type_info(schema).fields
    for f in fields:
        with pytest.raises(proto.ProtocolError) as info:
            proto.parse_args(name, {**valid_args(schema), f.name: _wrong_value(f.type)})
        assert info.value.kind == "invalid"
        assert f.name in str(info.value)


def test_parse_args_defaults_and_required_fields() -> None:
    assert proto.parse_args("status", {}) == Status()
    assert proto.parse_args("open", {}) == Open(reason="operator request")
    assert proto.parse_args("failsafe", {"reason": "x"}) == Failsafe(reason="x")
    with pytest.raises(proto.ProtocolError) as info:
        proto.parse_args("failsafe", {})
    assert info.value.kind == "invalid" and "reason" in str(info.value)


@pytest.mark.parametrize("name", ["nope", "", "STATUS", "status "])
def test_parse_args_refuses_unknown_command(name: str) -> None:
    with pytest.raises(proto.ProtocolError) as info:
        proto.parse_args(name, {})
    assert info.value.kind == "unknown_command"


def test_ok_and_error_reply_shapes() -> None:
    good = proto.ok("c-1", state="live", n=3)
    assert good == proto.Reply(id="c-1", ok=True, result={"state": "live", "n": 3}, error="")
    bad = proto.error("c-2", "session is ready; reset needs failsafe")
    assert bad == proto.Reply(id="c-2", ok=False, result={}, error="session is ready; reset needs failsafe")
    empty = proto.ok("c-3")
    assert empty.ok and empty.result == {} and empty.error == ""
    for reply in (good, bad, empty):
        assert proto.decode(proto.encode("svc", 1, 1, 1, reply)).body == reply


def test_protocol_error_carries_kind_and_detail() -> None:
    exc = proto.ProtocolError("invalid", "what was wrong")
    assert exc.kind == "invalid" and exc.detail == "what was wrong"
    assert "invalid" in str(exc) and "what was wrong" in str(exc)


def test_restamp_changes_the_epoch_and_nothing_else() -> None:
    quote = proto.Quote(symbol="BTC-USD", bid=1.0, ask=2.0, bid_size=3.0, ask_size=4.0, ts_ns=5)
    data = proto.encode("data_router", 7, 42, 99, quote)
    again = proto.decode(proto.restamp(data, 8))
    assert (again.source, again.epoch, again.seq, again.ts_ns, again.body) == ("data_router", 8, 42, 99, quote)
    with pytest.raises(proto.ProtocolError):
        proto.restamp(b"\x00not an envelope", 8)
