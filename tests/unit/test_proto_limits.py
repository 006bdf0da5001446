"""proto.limits: every field a peer controls is bounded, and the decoder refuses what is over its
bound; proto.topics: what each publisher publishes, and which subscriptions can match it."""

from __future__ import annotations

import os
import time
from typing import Any

import msgspec
import pytest

import proto
from proto.limits import (
    MAX_ARGS_KEYS,
    MAX_COMMAND_BYTES,
    MAX_ID_CHARS,
    MAX_LIST_ITEMS,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
)


def command(cid: str = "c1", name: str = "status", args: dict[str, Any] | None = None, source: str = "test") -> bytes:
    return proto.encode(source, 1, 1, time.time_ns(), proto.Command(id=cid, name=name, args=args or {}))


def refusal(data: bytes) -> proto.ProtocolError:
    with pytest.raises(proto.ProtocolError) as info:
        proto.decode(data)
    return info.value


def body_size(data: bytes) -> int:
    return len(msgspec.msgpack.decode(data, type=proto.Header).body)


def test_the_longest_allowed_id_and_name_decode() -> None:
    env = proto.decode(command("i" * MAX_ID_CHARS, "n" * MAX_NAME_CHARS))
    assert isinstance(env.body, proto.Command) and len(env.body.id) == MAX_ID_CHARS


@pytest.mark.parametrize("field,value", [("id", "i" * (MAX_ID_CHARS + 1)), ("name", "n" * (MAX_NAME_CHARS + 1))])
def test_a_longer_id_or_name_is_invalid(field: str, value: str) -> None:
    err = refusal(command(**{"cid" if field == "id" else field: value}))
    assert err.kind == "invalid" and f"$.{field}" in str(err)


def test_args_with_too_many_keys_are_invalid() -> None:
    assert proto.decode(command(args={f"k{i}": i for i in range(MAX_ARGS_KEYS)})).body.args
    assert refusal(command(args={f"k{i}": i for i in range(MAX_ARGS_KEYS + 1)})).kind == "invalid"


def test_a_command_body_over_the_limit_is_refused_before_decoding() -> None:
    """The body as a whole is bounded: an id of a megabyte (the data router kept 300 of them in its
    reply cache: 44 → 579 MB) is refused as ``too_large`` on its size alone."""
    big = command("x" * 1_000_000)
    err = refusal(big)
    assert err.kind == "too_large"
    assert f"{body_size(big)} bytes, limit {MAX_COMMAND_BYTES}" in str(err)


def test_the_body_limit_is_exact() -> None:
    def with_reason(n: int) -> bytes:
        return command(name="open", args={"reason": "r" * n})

    base = body_size(with_reason(0))
    at_limit = with_reason(MAX_COMMAND_BYTES - base - 2)  # a str over 255 bytes takes 2 more header bytes
    assert body_size(at_limit) == MAX_COMMAND_BYTES
    assert isinstance(proto.decode(at_limit).body, proto.Command)
    assert refusal(with_reason(MAX_COMMAND_BYTES - base - 1)).kind == "too_large"


def test_other_messages_keep_the_frame_limit() -> None:
    """Only what a server keeps from a peer has the tighter bound: a large reply still travels."""
    reply = proto.Reply(id="r", ok=True, result={"fills": ["f" * 100] * 2_000})
    assert proto.decode(proto.encode("venue_sim", 1, 1, 1, reply)).body == reply


def test_an_envelope_source_over_the_name_limit_is_malformed() -> None:
    assert proto.decode(command(source="s" * MAX_NAME_CHARS)).source == "s" * MAX_NAME_CHARS
    assert refusal(command(source="s" * (MAX_NAME_CHARS + 1))).kind == "malformed"


@pytest.mark.parametrize("name", ["open", "close", "reset", "shutdown", "enable_trading", "disable_trading",
                                  "failsafe", "set_mode"])
def test_reasons_are_cut_never_refused(name: str) -> None:
    """A reason's length must not refuse a step toward safety: kept to MAX_TEXT_CHARS, the rest
    counted."""
    args: dict[str, Any] = {"mode": "halt"} if name == "set_mode" else {}
    assert proto.parse_args(name, {**args, "reason": "r" * MAX_TEXT_CHARS}).reason == "r" * MAX_TEXT_CHARS
    parsed = proto.parse_args(name, {**args, "reason": "r" * 50_000})
    assert parsed.reason == "r" * MAX_TEXT_CHARS + f"... ({50_000 - MAX_TEXT_CHARS} more characters)"


def test_a_failsafe_with_a_long_reason_is_served() -> None:
    """End to end through the decoder: a failsafe whose reason is 50 KB decodes and parses."""
    cmd = proto.decode(command(name="failsafe", args={"reason": "why " * 12_500})).body
    assert len(proto.parse_args(cmd.name, cmd.args).reason) < MAX_TEXT_CHARS + 40


@pytest.mark.parametrize("name,args", [
    ("cancel_order", {"client_order_id": "c" * (MAX_ID_CHARS + 1)}),
    ("new_order", {"client_order_id": "c" * (MAX_ID_CHARS + 1), "symbol": "BTC-USD", "side": "buy", "qty": 1.0}),
    ("submit_order", {"symbol": "BTC-USD", "side": "buy", "qty": 1.0, "strategy": "s" * (MAX_NAME_CHARS + 1)}),
    ("submit_order", {"symbol": "BTC-USD", "side": "buy", "qty": 1.0, "connector": "c" * (MAX_NAME_CHARS + 1)}),
    ("subscribe", {"symbols": ["BTC-USD"] * (MAX_LIST_ITEMS + 1)}),
])
def test_ids_names_and_lists_in_arguments_are_bounded(name: str, args: dict[str, Any]) -> None:
    with pytest.raises(proto.ProtocolError) as info:
        proto.parse_args(name, args)
    assert info.value.kind == "invalid"


def test_the_ids_our_clients_make_fit() -> None:
    """``source:pid:epoch:n`` (CommandClient), the longest there is, well within the bound."""
    cid = f"{'s' * MAX_NAME_CHARS}:{os.getpid()}:{time.time_ns()}:{2**63}"
    assert len(cid) <= MAX_ID_CHARS


# --- proto.topics --------------------------------------------------------------------------------


@pytest.mark.parametrize("service,topic,published", [
    ("orchestrator", "state", True),
    ("orchestrator", "health.process", True),
    ("orchestrator", "hb.orchestrator", True),
    ("orchestrator", "audit.orchestrator", True),
    ("orchestrator", "hb.engine", False),
    ("orchestrator", "orders", False),
    ("data_router", "md.BTC-USD", True),
    ("data_router", "bad_md", True),
    ("venue_sim", "fills", True),
    ("supervisor", "alert.process", True),
    ("engine", "state", False),
])
def test_what_each_publisher_publishes(service: str, topic: str, published: bool) -> None:
    assert proto.topics.publishes(service, topic) is published


@pytest.mark.parametrize("service,prefix,ok", [
    ("orchestrator", b"", True),  # everything: tradectl bus
    ("orchestrator", b"s", True),  # a prefix of "state"
    ("orchestrator", b"state", True),
    ("orchestrator", b"statex", False),  # no topic of its starts so
    ("orchestrator", b"health.", True),
    ("orchestrator", b"health.anything.at.all", True),  # within a family
    ("orchestrator", b"hb.", True),
    ("orchestrator", b"hb.orchestrator", True),
    ("orchestrator", b"hb.engine", False),
    ("orchestrator", b"md.", False),
    ("venue_sim", b"md.BTC-USD", True),
    ("engine", b"\xff\x00", False),
])
def test_which_subscriptions_can_match_a_publisher(service: str, prefix: bytes, ok: bool) -> None:
    assert proto.topics.subscribable(service, prefix) is ok


def test_known_is_any_publisher() -> None:
    assert proto.topics.known(b"md.ETH") and proto.topics.known(b"safety") and proto.topics.known(b"hb.safety")
    assert not proto.topics.known(b"nonsense") and not proto.topics.known(b"hb.nobody")
