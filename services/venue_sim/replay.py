"""Reading recorded market data (CSV or CSV.gz) as the venue simulator's price source.

Formats, recognised from the first line (``format="auto"``) or named explicitly:
  bars      ``timestamp,open,high,low,close,volume`` (1-minute OHLCV, UTC). Each bar becomes four
            quotes along open → nearer of high/low → the other → close, spread over the bar.
  quotes    ``timestamp,bid,ask`` (TrueFX style, ISO timestamps with an offset, or naive UTC).
  histdata  no header: ``YYYYMMDD HHMMSSmmm,bid,ask,volume`` in EST without daylight saving.
  tardis    ``exchange,symbol,timestamp,local_timestamp,id,side,price,amount``, microseconds.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

EST = timezone(timedelta(hours=-5))
_HISTDATA_STAMP = re.compile(r"\d{8} \d{9}")


@dataclass(frozen=True)
class ReplayEvent:
    ts: float  # seconds since the epoch, as recorded
    kind: str  # "quote" | "trade"
    bid: float = 0.0
    ask: float = 0.0
    price: float = 0.0
    size: float = 0.0
    side: str = "buy"


class ReplayFormatError(ValueError):
    pass


class ReplayFileError(Exception):
    """A configured replay file the venue cannot use; ``str()`` is one line naming the setting, the
    file and why. The venue simulator exits with it at start (``EXIT_BAD_SETTINGS``)."""


def open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8", newline="")


def detect_format(first_line: str) -> str:
    head = first_line.strip().lower()
    if head.startswith("timestamp,open,high,low,close"):
        return "bars"
    if head.startswith("timestamp,bid,ask"):
        return "quotes"
    if head.startswith("exchange,symbol,timestamp"):
        return "tardis"
    if len(head) >= 18 and head[:8].isdigit() and head[8] == " " and head[9:18].isdigit():
        return "histdata"
    empty = " (the file is empty)" if not first_line else ""
    raise ReplayFormatError(f"unrecognised replay file header: {first_line.strip()[:80]!r}{empty}")


def _iso(text: str) -> float:
    stamp = datetime.fromisoformat(text.strip())
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


def load(path: Path, fmt: str = "auto", spread_bps: float = 2.0) -> list[ReplayEvent]:
    """All events of one file, in recorded order. Rows that cannot be parsed raise with the line."""
    with open_text(path) as handle:
        first = handle.readline()
        if fmt == "auto":
            try:
                fmt = detect_format(first)
            except ReplayFormatError as exc:
                raise ReplayFormatError(f"{path}: {exc}") from None
        reader = csv.reader(handle)
        rows: Iterable[list[str]] = reader
        if fmt == "histdata":  # no header: the first line is data
            rows = itertools.chain(csv.reader([first]), rows)
        try:
            return _PARSERS[fmt](rows, spread_bps)
        except (ValueError, IndexError) as exc:
            # the reader has counted the lines after the first (line_num: 0 while on the first)
            raise ReplayFormatError(f"{path}: line {reader.line_num + 1}: {exc}") from None


def load_file(where: str, path: Path, fmt: str = "auto", spread_bps: float = 2.0) -> list[ReplayEvent]:
    """``load``, with every way a file can be unusable as one ``ReplayFileError`` starting with
    ``where`` (the setting): missing or unreadable, not gzip though named so, not UTF-8 text, not
    CSV, a header not recognised, a row that does not parse, no rows at all."""
    try:
        events = load(path, fmt, spread_bps)
    except ReplayFormatError as exc:
        raise ReplayFileError(f"{where}: {exc}") from None
    except UnicodeDecodeError as exc:  # before ValueError, which it is
        raise ReplayFileError(f"{where}: {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise ReplayFileError(f"{where}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except csv.Error as exc:
        raise ReplayFileError(f"{where}: {path} is not CSV: {exc}") from None
    if not events:
        raise ReplayFileError(f"{where}: {path} has no usable rows (a header and nothing else)")
    return events


def _bars(rows: Iterable[list[str]], spread_bps: float) -> list[ReplayEvent]:
    events = []
    for row in rows:
        if not row:
            continue
        ts = _iso(row[0])
        o, h, low, c = (float(x) for x in row[1:5])
        path = [o, h, low, c] if abs(h - o) <= abs(o - low) else [o, low, h, c]
        for i, mid in enumerate(path):
            half = mid * spread_bps / 2e4
            events.append(ReplayEvent(ts + 15.0 * i, "quote", bid=mid - half, ask=mid + half))
    return events


def _quotes(rows: Iterable[list[str]], _spread_bps: float) -> list[ReplayEvent]:
    return [ReplayEvent(_iso(r[0]), "quote", bid=float(r[1]), ask=float(r[2])) for r in rows if r]


def _histdata(rows: Iterable[list[str]], _spread_bps: float) -> list[ReplayEvent]:
    events = []
    for r in rows:
        if not r:
            continue
        text = r[0].strip()
        if not _HISTDATA_STAMP.fullmatch(text):
            raise ValueError(f"histdata timestamp {text!r} is not 'YYYYMMDD HHMMSSmmm'")
        stamp = datetime.strptime(text, "%Y%m%d %H%M%S%f").replace(tzinfo=EST)
        events.append(ReplayEvent(stamp.timestamp(), "quote", bid=float(r[1]), ask=float(r[2])))
    return events


def _tardis(rows: Iterable[list[str]], spread_bps: float) -> list[ReplayEvent]:
    events = []
    for r in rows:
        if not r:
            continue
        price, size = float(r[6]), float(r[7])
        half = price * spread_bps / 2e4
        ts = int(r[2]) / 1e6
        # A trade also sets the touch around it, so orders can be matched during a trades-only replay.
        events.append(ReplayEvent(ts, "quote", bid=price - half, ask=price + half))
        events.append(ReplayEvent(ts, "trade", price=price, size=size, side=r[5].strip().lower()))
    return events


_PARSERS = {"bars": _bars, "quotes": _quotes, "histdata": _histdata, "tardis": _tardis}
