"""The recording format: round trip, index, a file cut short, corruption, rotation."""

from __future__ import annotations

from pathlib import Path

import pytest

import proto
from services.tradectl.sniffer import recording as rec
from services.tradectl.sniffer.playback import summary
from services.tradectl.sniffer.recording import (
    Reader,
    RecordingError,
    Writer,
    part_path,
)

T0 = 1_700_000_000_000_000_000


def _messages(n: int, *, gap_at: int | None = None) -> list[tuple[int, bytes, bytes]]:
    out, seqs = [], {}
    for i in range(n):
        topic = "md.BTC-USD" if i % 3 else "hb.safety"
        seqs[topic] = seqs.get(topic, 0) + 1
        if gap_at is not None and i == gap_at:
            seqs[topic] += 4  # four messages of this stream never made it into the recording
        body = (proto.Quote(symbol="BTC-USD", bid=1.0 + i, ask=2.0 + i, bid_size=1, ask_size=1, ts_ns=i)
                if topic.startswith("md.") else proto.Heartbeat(pid=1, interval_s=0.1))
        source = "venue_sim" if topic.startswith("md.") else "safety"
        out.append((T0 + i * 1_000_000, topic.encode(), proto.encode(source, 7, seqs[topic], T0 + i * 999_000, body)))
    return out


def _write(path: Path, msgs: list[tuple[int, bytes, bytes]], **kw: object) -> Writer:
    w = Writer(path, {"test": True}, created_ns=T0, **kw)
    for m in msgs:
        w.write(*m)
    w.close()
    return w


def test_round_trip_exact_bytes_and_metadata(tmp_path: Path) -> None:
    msgs = _messages(2500)
    msgs.append((T0 + 10**10, b"\xff\xfe not utf-8", b"\x00garbage frame"))  # kept byte for byte too
    _write(tmp_path / "a.tdbus", msgs)
    r = Reader(tmp_path / "a.tdbus")
    assert list(r) == msgs
    part = r.parts[0]
    assert part.indexed and part.count == len(msgs) and not part.problem
    assert r.meta["test"] is True and r.meta["part"] == 0
    with open(tmp_path / "a.tdbus", "rb") as f:
        assert f.read(8) == rec.MAGIC


def test_index_every_n_messages_and_seek(tmp_path: Path) -> None:
    msgs = _messages(5000)
    _write(tmp_path / "a.tdbus", msgs, index_every=500)
    r = Reader(tmp_path / "a.tdbus")
    index = r.parts[0].index
    assert [e[2] for e in index] == list(range(0, 5000, 500))
    assert [e[1] for e in index] == [msgs[i][0] for i in range(0, 5000, 500)]
    start = msgs[3210][0]
    assert list(r.messages(start)) == msgs[3210:]


@pytest.mark.parametrize("cut", [0, 1, 9, 100, 5000, -41, -1])
def test_file_cut_short_is_read_by_scanning(tmp_path: Path, cut: int) -> None:
    msgs = _messages(1000)
    path = tmp_path / "a.tdbus"
    _write(path, msgs)
    data = path.read_bytes()
    # cut: bytes kept after the metadata chunk (>= 0), or bytes cut off the end (< 0)
    meta_end = rec.HEADER.size + rec.CHUNK.size + rec.CHUNK.unpack_from(data, rec.HEADER.size)[1]
    keep = meta_end + cut if cut >= 0 else len(data) + cut
    path.write_bytes(data[:keep])
    r = Reader(path)
    got = list(r)
    assert not r.parts[0].indexed
    assert "not closed cleanly" in r.parts[0].problem
    assert got == msgs[:len(got)]  # a prefix, nothing invented
    if cut < 0:
        assert len(got) == len(msgs)  # only the index/footer were lost: every message is still there
    else:
        record = rec.CHUNK.size + rec.MSG.size  # at least this much per message
        assert len(got) <= cut // record


def test_crash_without_close_keeps_what_was_flushed(tmp_path: Path) -> None:
    path = tmp_path / "a.tdbus"
    msgs = _messages(300)
    w = Writer(path, {}, created_ns=T0)
    for m in msgs:
        w.write(*m)
    w.flush()
    w._io.stop()  # the process dies here: no index, no footer
    assert list(Reader(path)) == msgs


def test_corrupt_byte_stops_at_the_damaged_record(tmp_path: Path) -> None:
    msgs = _messages(100)
    path = tmp_path / "a.tdbus"
    _write(path, msgs)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    r = Reader(path)
    got = list(r)
    assert 0 < len(got) < len(msgs) and got == msgs[:len(got)]
    assert "corrupt" in r.parts[0].problem


def test_rotation_by_size(tmp_path: Path) -> None:
    path = tmp_path / "a.tdbus"
    msgs = _messages(6000)
    w = _write(path, msgs, max_bytes=128 * 1024)
    assert len(w.parts) >= 5
    for p in w.parts:
        assert p.stat().st_size < 128 * 1024 + 300  # a part ends at the message that reaches the limit
    # a leftover part of an older recording is not read as ours
    stale = part_path(path, len(w.parts))
    w2 = Writer(stale, {}, created_ns=T0 + 1)
    w2.write(*_messages(1)[0])
    w2.close()
    r = Reader(path)
    assert [p.part for p in r.parts] == list(range(len(w.parts)))
    assert all(p.indexed for p in r.parts)
    assert list(r) == msgs
    assert list(r.messages(msgs[4321][0])) == msgs[4321:]


def test_not_a_recording(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"hello world, this is not a recording at all.....")
    with pytest.raises(RecordingError, match="magic"):
        Reader(tmp_path / "x")
    (tmp_path / "y").write_bytes(b"short")
    with pytest.raises(RecordingError):
        Reader(tmp_path / "y")


def test_info_summary_counts_and_gaps(tmp_path: Path) -> None:
    msgs = _messages(300, gap_at=150)
    _write(tmp_path / "a.tdbus", msgs)
    s = summary(Reader(tmp_path / "a.tdbus"))
    assert s["messages"] == 300
    assert s["per_topic"] == {"hb.safety": 100, "md.BTC-USD": 200}
    assert s["per_type"] == {"heartbeat": 100, "quote": 200}
    assert s["sources"] == {"safety": 100, "venue_sim": 200}
    assert s["gaps"]["total"] == 1 and s["gaps"]["lost"] == 4
    assert s["duration_s"] == pytest.approx(0.299)
