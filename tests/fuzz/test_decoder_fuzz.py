"""``proto.decode`` against hostile bytes: total (only ``ProtocolError``, never anything else), typed
(the kind names what is wrong), bounded (oversized input refused before parsing) and exact (valid
messages survive a round trip; any change that makes a frame invalid is caught).

A seeded volume run (every generator of ``garbage.py``) and hypothesis properties; the volume run
is ~25,000 inputs in ``make test`` and 150,000 in the slow run.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import proto

from . import figures, garbage

SEED = 0x5EED_F022
KINDS = set(garbage.REJECT_KINDS) - {"not_a_command", "unknown_command"}
# What each structured generator must be refused as (random ones may be anything but a crash).
EXPECTED_KIND = {
    "truncated": {"malformed"},
    "trailing_bytes": {"malformed"},
    "wrong_version": {"version"},
    "unknown_type": {"unknown_type"},
    "wrong_envelope_field": {"malformed", "version"},  # a wrong v of the right type is a version
    "wrong_command_body": {"invalid"},
}


def _decode_all(n: int, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    kinds: Counter[str] = Counter()
    for category, payload in garbage.payloads(rng, n):
        try:
            env = proto.decode(payload)
        except proto.ProtocolError as exc:
            assert exc.kind in KINDS, (category, exc.kind, payload[:80])
            assert exc.detail, (category, payload[:80])
            if category in EXPECTED_KIND:
                assert exc.kind in EXPECTED_KIND[category], (category, exc.kind, str(exc), payload[:80])
            kinds[exc.kind] += 1
            continue
        # It decoded: then it must be a well-formed message that encodes back to the same envelope.
        assert category not in EXPECTED_KIND, (category, env)
        assert isinstance(env.body, proto.Message)
        data = proto.encode(env.source, env.epoch, env.seq, env.ts_ns, env.body)
        again = proto.decode(data)  # (compared as bytes: a NaN is never equal to itself)
        assert proto.encode(again.source, again.epoch, again.seq, again.ts_ns, again.body) == data
        kinds["decoded"] += 1
    return kinds


def _run_volume(n: int, seed: int) -> None:
    t0 = time.perf_counter()
    kinds = _decode_all(n, seed)
    assert sum(kinds.values()) == n
    # every reject kind the decoder has was produced (the generators cover the contract)
    assert {"malformed", "version", "unknown_type", "invalid"} <= set(kinds), kinds
    figures.record("proto.decode", n, note=f"seed {seed:#x}: {dict(sorted(kinds.items()))} "
                                           f"in {time.perf_counter() - t0:.1f}s")


def test_decoder_volume_is_total_and_typed() -> None:
    _run_volume(25_000, SEED)


@pytest.mark.slow
def test_decoder_volume_is_total_and_typed_full() -> None:
    _run_volume(150_000, SEED + 1)


def test_oversized_input_is_refused_before_parsing() -> None:
    limit = 4096
    valid = proto.encode("fuzz", 1, 1, 1, proto.Heartbeat(pid=1, interval_s=0.1, stats=proto.summaries.EngineSummary(book_sync={"pad": "x" * 5000})))
    assert len(valid) > limit
    cases = [valid, b"\x00" * (limit + 1), b"\x97" + b"\xff" * limit, bytearray(limit + 1), memoryview(valid)]
    for data in cases:
        with pytest.raises(proto.ProtocolError) as info:
            proto.decode(data, limit)
        assert info.value.kind == "oversized"
    # at the limit: parsed (and refused for what it is, not for its size)
    with pytest.raises(proto.ProtocolError) as info:
        proto.decode(b"\xc1" * limit, limit)
    assert info.value.kind == "malformed"
    # the default limit is the bus's default
    with pytest.raises(proto.ProtocolError) as info:
        proto.decode(b"\x00" * (proto.MAX_MESSAGE_BYTES + 1))
    assert info.value.kind == "oversized"
    figures.record("proto.decode", len(cases) + 2)


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    try:
        proto.decode(data)
    except proto.ProtocolError as exc:
        assert exc.kind in KINDS
    figures.record("proto.decode", 1)


_msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(v=st.one_of(st.just(proto.SCHEMA_VERSION), _msgpack_values),
       type_=st.one_of(st.sampled_from([c.TYPE for c in proto.MESSAGE_TYPES]), _msgpack_values),
       rest=st.lists(_msgpack_values, min_size=4, max_size=6))
def test_envelope_shaped_values_decode_or_raise_protocol_error(v: object, type_: object, rest: list) -> None:
    data = msgpack.packb([v, type_, *rest])
    try:
        env = proto.decode(data)
    except proto.ProtocolError as exc:
        assert exc.kind in KINDS
    else:
        assert env.v == proto.SCHEMA_VERSION and isinstance(env.body, proto.Message)
    figures.record("proto.decode", 1)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(sample=st.sampled_from(garbage.SAMPLES), cut=st.integers(min_value=0), flips=st.lists(
    st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), max_size=3))
def test_truncated_or_mutated_valid_messages(sample: proto.Message, cut: int, flips: list) -> None:
    data = proto.encode("fuzz", 7, 9, 11, sample)
    truncated = data[: cut % len(data)]
    with pytest.raises(proto.ProtocolError) as info:
        proto.decode(truncated)
    assert info.value.kind == "malformed"
    mutated = bytearray(data)
    for pos, byte in flips:
        mutated[pos % len(mutated)] = byte
    try:
        proto.decode(bytes(mutated))
    except proto.ProtocolError as exc:
        assert exc.kind in KINDS
    figures.record("proto.decode", 2)
