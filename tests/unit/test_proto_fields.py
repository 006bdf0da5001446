"""proto.fields: hostile symbols, ids, names and numbers never get past decoding, in any message or
command that carries them; the settings refuse the same symbols and names."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest

import proto
from proto.commands import parse_args
from proto.instruments import decimals
from services.settings import Settings

HOSTILE_SYMBOLS = ["", "BTC-USD\x00", "BTC-USD\n", "X" * 5_000, "btc-usd", " BTC-USD", "BTC USD",
                   "BTC-USD\n2026-01-01 00:00:00,000 - LiveTradingOrchestrator - CRITICAL - forged",
                   "BTC-USD\r", "\x1b[2J", "BTC\u2028USD", "-BTC"]
GOOD_SYMBOLS = ["BTC-USD", "BTC/USDT", "BTC/USDT:USDT", "BTC/USD:BTC-240329", "EURUSD", "X", "A" * 64]


def _order(**over: Any) -> dict[str, Any]:
    return {"symbol": "BTC-USD", "side": "buy", "qty": 0.01, **over}


@pytest.mark.parametrize("symbol", GOOD_SYMBOLS)
def test_real_symbols_pass(symbol: str) -> None:
    assert parse_args("submit_order", _order(symbol=symbol)).symbol == symbol


@pytest.mark.parametrize("symbol", HOSTILE_SYMBOLS + ["A" * 65])
@pytest.mark.parametrize("command", ["submit_order", "new_order", "flatten", "cancel_all", "fault", "subscribe"])
def test_every_command_refuses_a_hostile_symbol(command: str, symbol: str) -> None:
    args = {"submit_order": _order(symbol=symbol),
            "new_order": {**_order(symbol=symbol), "client_order_id": "c-1"},
            "flatten": {"symbol": symbol}, "cancel_all": {"symbol": symbol},
            "fault": {"fault": "jump_price", "symbol": symbol},
            "subscribe": {"symbols": ["BTC-USD", symbol]}}[command]
    with pytest.raises(proto.ProtocolError) as err:
        parse_args(command, args)
    assert err.value.kind == "invalid"


def _messages(symbol: str) -> list[proto.Message]:
    now = time.time_ns()
    return [
        proto.Quote(symbol=symbol, bid=1.0, ask=2.0, bid_size=1.0, ask_size=1.0, ts_ns=now),
        proto.Trade(symbol=symbol, price=1.0, size=1.0, side=proto.Side.BUY, ts_ns=now),
        proto.OrderUpdate(client_order_id="c-1", symbol=symbol, side=proto.Side.BUY, qty=1.0, order_type="market",
                          limit_price=None, status=proto.OrderStatus.NEW, filled_qty=0.0, avg_fill_price=0.0),
        proto.Fill(fill_id="f-1", client_order_id="c-1", symbol=symbol, side=proto.Side.BUY, qty=1.0, price=1.0,
                   fee=0.0, ts_ns=now),
        proto.SafetyEvent(event_type=proto.SafetyEventType.DATA_ANOMALY, severity=proto.Severity.WARNING,
                          symbol=symbol, message="m"),
        proto.BadMarketData(symbol=symbol, reason="r", detail="d"),
        proto.GovernanceEvent(kind="k", reason="r", symbol=symbol),
    ]


def _wire(message: proto.Message, **fields: Any) -> bytes:
    """``message`` on the wire with ``fields`` changed, as a peer's own encoder could send it."""
    body = {**msgspec.to_builtins(message), **fields}
    return msgspec.msgpack.encode(proto.Envelope(proto.SCHEMA_VERSION, message.TYPE, "venue_sim", 1, 1, 1, body))


@pytest.mark.parametrize("symbol", [s for s in HOSTILE_SYMBOLS if s])
def test_every_message_with_a_symbol_refuses_a_hostile_one(symbol: str) -> None:
    for message in _messages("BTC-USD"):
        with pytest.raises(proto.ProtocolError) as err:
            proto.decode(_wire(message, symbol=symbol))
        assert err.value.kind == "invalid", message


@pytest.mark.parametrize("venue", ["sim\x00", "a b", "x" * 65])
def test_market_data_refuses_a_hostile_venue_name(venue: str) -> None:
    """Quote and Trade check their names in ``__post_init__`` (proto.fields.check_market_names), also
    when our own code builds one: a bad name never reaches the wire."""
    for message in _messages("BTC-USD")[:2]:
        with pytest.raises(proto.ProtocolError) as err:
            proto.decode(_wire(message, venue=venue))
        assert err.value.kind == "invalid"
        if len(venue) <= 64:  # a constructor checks no length bound, only what __post_init__ does
            with pytest.raises(ValueError):
                msgspec.structs.replace(message, venue=venue)


def test_the_whole_feed_and_no_symbol_where_a_message_allows_them() -> None:
    for message in _messages("BTC-USD"):
        assert proto.decode(proto.encode("venue_sim", 1, 1, 1, message)).body == message
    for symbol in ("*", ""):
        event = proto.SafetyEvent(event_type=proto.SafetyEventType.SEQUENCE_GAP, severity=proto.Severity.WARNING,
                                  symbol=symbol, message="gap")
        assert proto.decode(proto.encode("safety", 1, 1, 1, event)).body == event


@pytest.mark.parametrize(("field", "value"), [
    ("qty", 0.0), ("qty", -1.0), ("qty", float("nan")), ("qty", float("inf")), ("qty", 1e308), ("qty", 1e13),
    ("limit_price", 0.0), ("limit_price", float("nan")), ("limit_price", float("inf")), ("limit_price", 1e308),
    ("limit_price", -5.0), ("strategy", "mean\nrev"), ("strategy", "x" * 65), ("connector", "sim\x00"),
])
def test_numbers_and_names_out_of_bounds_are_refused(field: str, value: Any) -> None:
    extra = {"order_type": "limit", "limit_price": 100.0} if field != "limit_price" else {"order_type": "limit"}
    for command, base in (("submit_order", _order()), ("new_order", {**_order(), "client_order_id": "c-1"})):
        if field in ("strategy", "connector") and command == "new_order":
            continue
        with pytest.raises(proto.ProtocolError):
            parse_args(command, {**base, **extra, field: value})


def test_a_tiny_quantity_and_price_pass_decoding_for_the_instrument_checks_to_refuse() -> None:
    """5e-324 is a positive finite number: what is wrong with it is the instrument's business (below
    the minimum, off the grid), refused by the gate and the venue with that reason."""
    args = parse_args("submit_order", _order(qty=5e-324, order_type="limit", limit_price=5e-324))
    assert args.qty == 5e-324 and args.limit_price == 5e-324


@pytest.mark.parametrize("cid", ["", "c\n1", "c 1", "x" * 65, "\u2028"])
def test_client_order_ids_are_patterned(cid: str) -> None:
    with pytest.raises(proto.ProtocolError):
        parse_args("cancel_order", {"client_order_id": cid})
    with pytest.raises(proto.ProtocolError):
        parse_args("new_order", {**_order(), "client_order_id": cid})


def test_reasons_are_bounded_but_free_text() -> None:
    """A reason is cut, not refused: its length must never refuse a step toward safety."""
    assert parse_args("failsafe", {"reason": "line one\nline two"}).reason == "line one\nline two"
    cut = parse_args("failsafe", {"reason": "x" * 1_001}).reason
    assert cut.startswith("x" * 1_000) and cut.endswith("(1 more characters)") and len(cut) < 1_100


def test_instrument_lists_are_validated_on_receipt() -> None:
    spec = proto.Instrument(symbol="BTC-USD", tick_size=0.01, lot_size=0.00001, min_qty=0.00001, min_notional=1.0)
    lst = proto.InstrumentList(venue="SIM", instruments=[spec])
    assert msgspec.convert(proto.to_builtins(lst), proto.InstrumentList) == lst
    assert decimals(spec.tick_size) == 2 and decimals(spec.lot_size) == 5
    for bad in ({"tick_size": 0.0}, {"lot_size": -1.0}, {"symbol": "btc"}, {"tick_size": float("nan")},
                {"min_notional": -1.0}, {"surprise": 1}):
        raw = proto.to_builtins(lst)
        raw["instruments"][0].update(bad)
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(raw, proto.InstrumentList)


@pytest.mark.parametrize("where", ["strategy", "replay", "venue symbols", "venue instruments"])
def test_settings_refuse_a_symbol_the_wire_would_refuse(where: str, tmp_path: Any) -> None:
    bad = "BTC-USD\n"
    config = {
        "strategy": {"engine": {"strategies": [{"kind": "mean_reversion", "symbol": bad}]}},
        "replay": {"venue_sim": {"replay_files": [{"path": str(tmp_path / "x.csv"), "symbol": bad}]}},
        "venue symbols": {"venue_sim": {"symbols": {bad: 1.0}}},
        "venue instruments": {"venue_sim": {"instruments": {bad: {"tick_size": 0.01, "lot_size": 0.01}}}},
    }[where]
    with pytest.raises(ValueError, match="is not upper-case letters"):
        Settings(**config)


def test_settings_refuse_a_probe_outside_the_price_collar() -> None:
    with pytest.raises(ValueError, match="offset_pct=50 is outside exchange_manager.risk.price_collar_pct=10"):
        Settings(engine={"strategies": [{"kind": "probe", "offset_pct": 50.0}]})
    Settings(engine={"strategies": [{"kind": "probe", "offset_pct": 50.0}]},
             exchange_manager={"risk": {"price_collar_pct": 60.0}})
