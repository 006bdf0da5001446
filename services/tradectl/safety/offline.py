"""The detectors over a recorded file, offline (``tradectl safety replay``): the same
``SafetyMonitor`` the safety process runs, with the session clock on the data's own time.

Inputs: a market-data file the venue simulator replays (bars, quotes, histdata, tardis:
``services/venue_sim/replay.py``'s loader, the same quotes it would publish), or a bus recording
made by ``tradectl bus record`` (its quotes, trades and refused data from the data router, its
orders, fills and heartbeats from the exchange manager, as they were published).

What an offline run cannot judge, and leaves out: the whole feed's silence (only the wall clock of
a running session sees it), the exchange manager's positions against its fills (a check on messages
in flight), lost messages. The session is taken as trading throughout.
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import proto
from proto.fields import valid_symbol
from proto.summaries import ExchangeSummary
from services.safety.monitor import Published, SafetyMonitor
from services.safety.settings import SafetySettings
from services.session_clock import SessionClock
from services.tradectl.sniffer.recording import MAGIC, Reader, RecordingError
from services.venue_sim.replay import ReplayFormatError, detect_format, load, open_text

Update = proto.Quote | proto.Trade | proto.BadMarketData | proto.OrderUpdate | proto.Fill | proto.Heartbeat


class OfflineInputError(Exception):
    """The file cannot be read as market data or a recording; ``str()`` says why in one line."""


@dataclass
class Source:
    kind: str  # "recording" or the replay format's name
    updates: Iterable[Update]
    undecodable: int = 0  # recorded messages that did not decode (counted, skipped)
    skipped: dict[str, int] = field(default_factory=dict)  # decoded but not for the detectors, by type


def is_recording(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(MAGIC)) == MAGIC


def open_source(path: Path, symbol: str | None, spread_bps: float) -> Source:
    """The updates in ``path``: a recording's (``symbol``: only that symbol's market data, orders
    and fills), or a data file's quotes and trades under ``symbol`` (default ``REPLAY``), stamped
    as the venue simulator stamps them."""
    try:
        if is_recording(path):
            source = Source("recording", [])
            source.updates = _recorded(Reader(path), symbol, source)
            return source
        events = load(path, "auto", spread_bps)
    except (OSError, EOFError, zlib.error, csv.Error, RecordingError, ReplayFormatError, UnicodeDecodeError) as exc:
        raise OfflineInputError(f"{path}: {exc}" if str(path) not in str(exc) else str(exc)) from None
    name = symbol or "REPLAY"
    try:
        valid_symbol(name)
    except ValueError as exc:  # a Quote or Trade would refuse it (proto.fields.check_market_names)
        raise OfflineInputError(str(exc)) from None
    updates: list[Update] = []
    for e in events:
        ts_ns = int(e.ts * 1e9)  # as services/venue_sim/prices.py does
        if e.kind == "quote":
            updates.append(proto.Quote(symbol=name, bid=e.bid, ask=e.ask, bid_size=e.size or 1.0,
                                       ask_size=e.size or 1.0, ts_ns=ts_ns))
        else:
            updates.append(proto.Trade(symbol=name, price=e.price, size=e.size or 1.0, side=proto.Side(e.side),
                                       ts_ns=ts_ns))
    return Source(_format_of(path), updates)


def _format_of(path: Path) -> str:
    with open_text(path) as handle:
        return detect_format(handle.readline())


def _recorded(reader: Reader, symbol: str | None, source: Source) -> Iterator[Update]:
    for _recv_ns, _topic, data in reader.messages():
        try:
            env = proto.decode(data)
        except proto.ProtocolError:
            source.undecodable += 1
            continue
        body = env.body
        if isinstance(body, (proto.Quote, proto.Trade, proto.BadMarketData, proto.OrderUpdate, proto.Fill)):
            if symbol is None or body.symbol == symbol:
                yield body
        elif isinstance(body, proto.Heartbeat) and env.source == "exchange_manager":
            yield body  # what the venue holds that this system did not send (``venue_unknown``)
        else:
            kind = type(body).TYPE
            source.skipped[kind] = source.skipped.get(kind, 0) + 1
    problems = [p.problem for p in reader.parts if p.problem]
    if problems:
        source.skipped["(recording) " + "; ".join(problems)] = 1


def run(cfg: SafetySettings, updates: Iterable[Update]) -> tuple[list[Published], SafetyMonitor]:
    """Every event the safety process would publish for these updates, in order."""
    # No wall clock offline: the whole feed's silence is never judged (frozen at 0).
    monitor = SafetyMonitor(cfg, SessionClock("data"), monotonic=lambda: 0.0)
    def heartbeat(hb: proto.Heartbeat) -> list[Published]:
        if isinstance(hb.stats, ExchangeSummary):
            monitor.execution.venue_unknown(hb.stats.venue_unknown)
        return []

    dispatch = {proto.Quote: monitor.on_quote, proto.Trade: monitor.on_trade, proto.BadMarketData: monitor.on_bad_data,
                proto.OrderUpdate: monitor.on_order, proto.Fill: monitor.on_fill, proto.Heartbeat: heartbeat}
    out: list[Published] = []
    for update in updates:
        out += dispatch[type(update)](update)  # type: ignore[operator]
    return out, monitor
