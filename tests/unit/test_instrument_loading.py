"""How the instrument specifications travel: the exchange manager's registry loads each venue's list
on every connection (pending until it has it, asking again while a venue does not answer or answers
something malformed), and the engine's guard takes the exchange manager's book over a real command
channel, then checks and rounds its strategies' orders against it.

The venue side is the simulator's own ``instruments`` handler over a real Matcher, its answer
passed through the wire encoding (``MatcherConnector`` from venue_rig.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq

import proto
from bus import BusSettings, CommandChannel, CommandServer, Reactor, make_socket
from proto import Side
from proto.commands import Instruments, NoArgs, OrderArgs
from services.engine.instrument_guard import InstrumentGuard
from services.exchange_manager.instruments import InstrumentRegistry
from services.venue_sim.matching import Matcher
from services.venue_sim.settings import VenueSimSettings
from venue_rig import MatcherConnector
from unit_support import reactor_thread, wait_until


class VenueLink(MatcherConnector):
    """A connector that is up, and whose venue may answer garbage instead of its instrument list."""

    def __init__(self, name: str, matcher: Matcher) -> None:
        super().__init__(name, matcher)
        self.garbage = False
        self.instrument_asks = 0

    def is_connected_check(self) -> bool:
        return True

    def instruments(self, on_result: Any) -> None:
        self.instrument_asks += 1
        if self.garbage:
            # what the real connector does with an answer that is not a valid list: logs it, None
            try:
                proto.parse_result({"venue": "SIM", "instruments": [{"symbol": "BTC-USD", "tick_size": -1,
                                                                     "lot_size": 1}]}, proto.InstrumentList)
            except proto.ProtocolError:
                on_result(None)
                return
            raise AssertionError("a negative tick size must not parse")
        super().instruments(on_result)


def _venue() -> Matcher:
    return Matcher(VenueSimSettings(), epoch=time.time_ns())


def test_the_registry_is_pending_until_every_venue_answered() -> None:
    reactor = Reactor()
    registry = InstrumentRegistry(reactor, ["sim", "other"], "sim")
    sim, other = VenueLink("sim", _venue()), VenueLink("other", _venue())
    try:
        assert not registry.ready() and registry.lookup("", "BTC-USD") == (None, False)
        registry.load(sim)
        spec, listed = registry.lookup("", "BTC-USD")  # "" is the default connector
        assert listed and spec is not None and spec.tick_size == 0.01 and spec.lot_size == 0.00001
        assert registry.lookup("sim", "NOPE-USD") == (None, True)
        assert not registry.ready() and registry.book().pending == ["other"]
        registry.load(other)
        assert registry.ready() and registry.stats()["loaded"] == {"sim": 3, "other": 3}
        # a reconnection: pending again, the previous list still serves, but an absent symbol is not "unknown"
        sim.answering = False
        with reactor_thread(reactor):
            reactor.call_soon_threadsafe(lambda: registry.load(sim))
            wait_until(lambda: registry.failures >= 2, timeout=5.0)  # asked again with backoff
            assert not registry.ready()
            assert registry.lookup("sim", "BTC-USD")[1] is False and registry.lookup("sim", "BTC-USD")[0] is not None
            sim.answering = True
            wait_until(registry.ready, timeout=5.0)
    finally:
        reactor.close()
    assert registry.lookup("sim", "BTC-USD")[1] is True


def test_a_malformed_list_is_refused_and_asked_again() -> None:
    reactor = Reactor()
    registry = InstrumentRegistry(reactor, ["sim"], "sim")
    link = VenueLink("sim", _venue())
    link.garbage = True
    try:
        with reactor_thread(reactor):
            reactor.call_soon_threadsafe(lambda: registry.load(link))
            wait_until(lambda: link.instrument_asks >= 2, timeout=5.0)
            assert not registry.ready() and registry.failures >= 1 and registry.lookup("sim", "BTC-USD") == (None, False)
            link.garbage = False
            wait_until(registry.ready, timeout=5.0)
    finally:
        reactor.close()


@pytest.fixture
def guard(ctx: zmq.Context, ipc_dir: Path) -> Iterator[InstrumentGuard]:
    """An InstrumentGuard on a real CommandChannel to a real CommandServer that answers
    ``instruments`` with a registry loaded from a real venue Matcher."""
    registry = InstrumentRegistry(Reactor(), ["sim"], "sim")
    registry.load(VenueLink("sim", _venue()))
    bus = BusSettings()
    endpoint = f"ipc://{ipc_dir}/em.cmd"
    server_sock = make_socket(ctx, zmq.ROUTER, bus)
    server_sock.bind(endpoint)
    server = CommandServer(server_sock, "exchange_manager", time.time_ns(),
                           {"instruments": lambda _args: proto.to_builtins(registry.book())})
    server_reactor, engine_reactor = Reactor(), Reactor()
    server_reactor.add_reader(server_sock, server.drain)
    channel = CommandChannel(ctx, endpoint, bus, "engine", timeout_s=1.0)
    engine_reactor.add_reader(channel.sock, channel.drain)
    engine_reactor.call_every(0.1, channel.expire)
    checker = InstrumentGuard(engine_reactor, channel, collar_pct=10.0)
    server_thread = threading.Thread(target=server_reactor.run, daemon=True)
    server_thread.start()
    try:
        with reactor_thread(engine_reactor):
            engine_reactor.call_soon_threadsafe(checker.refresh)
            wait_until(lambda: checker.stats()["loaded"], timeout=5.0)
            yield checker
    finally:
        server_reactor.stop()
        server_thread.join(5)
        channel.close()
        server_sock.close(linger=0)
        server_reactor.close()
        engine_reactor.close()


def _intent(qty: float, limit: float | None = None, side: Side = Side.BUY, symbol: str = "ETH-USD") -> OrderArgs:
    return OrderArgs(symbol=symbol, side=side, qty=qty, order_type="limit" if limit is not None else "market",
                     limit_price=limit, strategy="mm")


def test_the_engine_rounds_what_a_strategy_meant_onto_the_grid(guard: InstrumentGuard) -> None:
    # a market maker's quotes: mid ± a spread, computed to 8 places
    buy, _ = guard.prepare(_intent(0.1, 2_999.10456789), mark=3_000.0)
    sell, _ = guard.prepare(_intent(0.1, 3_000.90123456, Side.SELL), mark=3_000.0)
    assert buy is not None and buy.limit_price == 2_999.10  # a buy never pays more than meant
    assert sell is not None and sell.limit_price == 3_000.91  # a sell never asks less
    odd, _ = guard.prepare(_intent(0.12345), mark=3_000.0)
    assert odd is not None and odd.qty == 0.1234  # never more than asked
    same, _ = guard.prepare(_intent(0.1, 2_999.0), mark=3_000.0)
    assert same is not None and same.limit_price == 2_999.0 and same.qty == 0.1
    assert guard.stats()["rounded"] == 3


@pytest.mark.parametrize(("intent", "kind", "words"), [
    (_intent(0.00001), "min_qty", "below one lot"),
    (_intent(0.0002), "min_notional", "notional 0.6"),
    (_intent(0.1, 3_500.0), "price_collar", "outside the 10% price collar"),
    (_intent(0.1, symbol="NOPE-USD"), "unknown_symbol", "unknown symbol NOPE-USD at sim"),
    (_intent(float("nan")), "bad_quantity", "not a positive number"),
    (_intent(0.1, float("inf")), "bad_price", "not a positive number"),
])
def test_the_engine_refuses_what_the_gate_would(guard: InstrumentGuard, intent: OrderArgs, kind: str,
                                                 words: str) -> None:
    checked, reason = guard.prepare(intent, mark=3_000.0)
    assert checked is None and reason.startswith("engine: ") and words in reason, reason
    assert guard.stats()["refused"] == {kind: 1}


def test_before_the_first_answer_no_order_leaves(ctx: zmq.Context, ipc_dir: Path) -> None:
    channel = CommandChannel(ctx, f"ipc://{ipc_dir}/nobody.cmd", BusSettings(), "engine", timeout_s=0.2)
    try:
        checker = InstrumentGuard(Reactor(), channel, collar_pct=10.0)
        assert checker.prepare(_intent(0.1), 3_000.0) == (None, "engine: instrument specifications not loaded yet")
    finally:
        channel.close()


def test_the_exchange_managers_book_is_typed_on_the_wire() -> None:
    registry = InstrumentRegistry(Reactor(), ["sim"], "sim")
    registry.load(VenueLink("sim", _venue()))
    reply = proto.ok("q1", **proto.to_builtins(registry.book()))
    received = proto.decode(proto.encode("exchange_manager", 1, 1, 1, reply)).body
    book = msgspec.convert(received.result, proto.InstrumentBook)
    assert book.default_connector == "sim" and book.pending == []
    assert {s.symbol for s in book.connectors["sim"].instruments} == {"BTC-USD", "ETH-USD", "SOL-USD"}
    assert Instruments() == proto.parse_args("instruments", {})
