"""Echo's output shape, hz/bw arithmetic, gap counting and call pairing, on messages built here."""

from __future__ import annotations

import json
import math
import os

import click
import pytest

import proto
from services.tradectl.sniffer.attach import Seen
from services.tradectl.sniffer.calls import CallTracker
from services.tradectl.sniffer.echo import human_line, json_line, selector
from services.tradectl.sniffer.filters import Filter
from services.tradectl.sniffer.gaps import SeqTracker, report
from services.tradectl.sniffer.rates import Rates

S = 1_000_000_000


def seen(topic: str, body: proto.Message, *, source: str = "venue_sim", seq: int = 1, ts: int = S,
         recv: int | None = None, epoch: int = 7) -> Seen:
    return Seen(ts + 500_000 if recv is None else recv, topic, proto.encode(source, epoch, seq, ts, body))


QUOTE = proto.Quote(symbol="BTC-USD", bid=1.5, ask=2.0, bid_size=1.0, ask_size=3.0, ts_ns=9)


# -- echo -----------------------------------------------------------------------------------------

def test_json_line_shape() -> None:
    m = seen("md.BTC-USD", QUOTE, seq=12)
    m.decode()
    line = json.loads(json_line(m))
    assert line == {"topic": "md.BTC-USD", "source": "venue_sim", "epoch": 7, "seq": 12, "type": "quote",
                    "ts_ns": S, "recv_ns": S + 500_000, "age_s": 0.0005, "size": len(m.data),
                    "body": {"symbol": "BTC-USD", "bid": 1.5, "ask": 2.0, "bid_size": 1.0, "ask_size": 3.0,
                             "ts_ns": 9, "venue": ""}}
    hb = seen("hb.x", proto.Heartbeat(pid=1, interval_s=0.5, state=proto.OrchestratorState.FAILSAFE))
    hb.decode()
    assert json.loads(json_line(hb))["body"]["state"] == "failsafe"


@pytest.mark.parametrize("data, kind", [(b"\x93\x01\x02\x03", "malformed"), (b"", "malformed"),
                                        (os.urandom(300), "malformed")])
def test_undecodable_shown_not_fatal(data: bytes, kind: str) -> None:
    m = Seen(S, "md.X", data)
    assert m.decode() is None and m.error and m.error.startswith(kind)
    line = json.loads(json_line(m))
    assert line["undecodable"] is True and line["topic"] == "md.X" and line["size"] == len(data)
    assert line["hex"].startswith(data[:4].hex(" ")) if data else line["hex"] == ""
    assert "UNDECODABLE" in human_line(m)


def test_wrong_body_and_frame_count_are_undecodable() -> None:
    bad = proto.encode("venue_sim", 1, 1, S, QUOTE).replace(b"BTC-USD", b"BTC-XYZ")  # still valid
    assert Seen(S, "t", bad).decode() is not None
    unknown = Seen(S, "t", b"\x97\x01\xa3zzz\xa1s\x01\x01\x01\x80")
    assert unknown.decode() is None and "unknown_type" in (unknown.error or "")
    three = Seen(S, "t", b"ab", frames=3)
    assert three.decode() is None and "frames" in (three.error or "")


def test_human_line_and_selector() -> None:
    m = seen("md.BTC-USD", QUOTE, seq=3)
    m.decode()
    text = click.unstyle(human_line(m))
    assert "md.BTC-USD" in text and "venue_sim#3" in text and "bid=1.5" in text and "symbol=BTC-USD" in text
    keep = selector(("hb.", "md.ETH"), Filter("body.bid > 1"))
    assert keep(m)
    assert not keep(seen("hb.engine", proto.Heartbeat(pid=1, interval_s=1.0)))
    assert not keep(seen("md.ETH-USD", QUOTE))
    low = seen("md.BTC-USD", proto.Quote(symbol="BTC-USD", bid=0.5, ask=2, bid_size=1, ask_size=1, ts_ns=1))
    low.decode()
    assert not keep(low)


# -- hz / bw --------------------------------------------------------------------------------------

def test_hz_math_publish_clock() -> None:
    rates = Rates(window_s=10.0)
    rates.started_ns = 0
    intervals = [0.010, 0.020, 0.010, 0.020, 0.010]  # mean 14 ms, min 10, max 20
    t = S
    for i, dt in enumerate([0.0, *intervals]):
        t += int(dt * 1e9)
        rates.add(seen("md.BTC-USD", QUOTE, seq=i + 1, ts=t, recv=S + 5 * 10**9))  # one batch: same recv
    (row,) = rates.hz(now_ns=S + 6 * 10**9)
    assert row["count"] == 6
    assert row["rate_hz"] == pytest.approx(1 / 0.014)
    assert row["interval_min_s"] == pytest.approx(0.010) and row["interval_max_s"] == pytest.approx(0.020)
    assert row["interval_mean_s"] == pytest.approx(0.014)
    mean = 0.014
    std = math.sqrt(sum((x - mean) ** 2 for x in intervals) / len(intervals))
    assert row["interval_std_s"] == pytest.approx(std)


def test_hz_window_slides_on_receive_time_and_receive_clock() -> None:
    rates = Rates(window_s=1.0, clock="receive")
    rates.started_ns = 0
    for i in range(20):  # one message every 100 ms of receive time, publish times all equal
        rates.add(seen("md.BTC-USD", QUOTE, seq=i + 1, ts=S, recv=S + i * 100_000_000))
    (row,) = rates.hz(now_ns=S + 19 * 100_000_000)
    assert row["count"] == 11  # the last second (inclusive)
    assert row["rate_hz"] == pytest.approx(10.0)


def test_bw_math() -> None:
    rates = Rates(window_s=2.0)
    rates.started_ns = S - 10 * S
    sizes = []
    for i in range(10):
        m = seen("md.BTC-USD", proto.Quote(symbol="BTC-USD" + "X" * i, bid=1, ask=2, bid_size=1, ask_size=1, ts_ns=1),
                 seq=i + 1, recv=S + i * 100_000_000)
        sizes.append(len(m.data))
        rates.add(m)
    (row,) = rates.bw(now_ns=S + 10**9)
    assert row["count"] == 10 and row["window_s"] == 2.0
    assert row["bytes_per_s"] == pytest.approx(sum(sizes) / 2.0)
    assert row["size_min"] == min(sizes) and row["size_max"] == max(sizes)
    assert row["size_mean"] == pytest.approx(sum(sizes) / 10)
    (t,) = rates.topics(now_ns=S + 10**9)
    assert t["types"] == ["quote"] and t["count"] == 10 and t["bytes"] == sum(sizes)


# -- gaps -----------------------------------------------------------------------------------------

def test_gap_counting_per_stream_restart_and_stale() -> None:
    tr = SeqTracker()
    for seq in (1, 2, 3, 7, 8):  # 4, 5, 6 lost on md
        tr.observe("venue_sim", "md.BTC-USD", 100, seq, seq)
    for seq in (1, 2, 4):  # 3 lost on orders; md's numbering does not matter here
        tr.observe("venue_sim", "orders", 100, seq, 10 + seq)
    tr.observe("venue_sim", "md.BTC-USD", 100, 8, 20)  # a repeat: stale, not a gap
    tr.observe("venue_sim", "md.BTC-USD", 50, 9, 21)  # an older epoch: stale
    tr.observe("venue_sim", "md.BTC-USD", 200, 1, 22)  # restarted: counters start again, no loss
    tr.observe("venue_sim", "md.BTC-USD", 200, 2, 23)
    p = tr.publishers["venue_sim"]
    assert (p.gaps, p.lost, p.restarts, p.stale, p.received) == (2, 4, 1, 2, 12)
    assert [(e.topic, e.lost, e.expected, e.got) for e in tr.events] == [("md.BTC-USD", 3, 4, 7), ("orders", 1, 3, 4)]


def test_report_heartbeat_staleness() -> None:
    tr = SeqTracker()
    for name, interval, age_s in (("engine", 0.1, 0.35), ("safety", 0.1, 0.45), ("orchestrator", 1.0, 2.0)):
        m = seen(f"hb.{name}", proto.Heartbeat(pid=1, interval_s=interval), source=name, recv=10 * S - int(age_s * 1e9))
        tr.observe_seen(m)
        tr.heartbeat(m)
    tr.observe("venue_sim", "md.X", 1, 1, 9 * S)  # heard, but sends no heartbeats here
    r = report(tr, ["engine", "safety", "orchestrator", "data_router", "venue_sim"], 4.0, now_ns=10 * S)
    pubs = r["publishers"]
    assert pubs["engine"]["stale"] is False and pubs["safety"]["stale"] is True
    assert pubs["orchestrator"]["stale"] is False and pubs["engine"]["heartbeat_age_s"] == pytest.approx(0.35)
    assert pubs["data_router"] == {"heard": False, "stale": None}
    assert pubs["venue_sim"]["stale"] is None


# -- calls ----------------------------------------------------------------------------------------

def audit(service: str, cid: str, phase: str, ts: int, sent: int, **kw: object) -> Seen:
    body = proto.CommandAudit(id=cid, name=kw.pop("name", "status"), caller="tradectl", phase=phase,
                              sent_ns=sent, **kw)  # type: ignore[arg-type]
    return seen(f"audit.{service}", body, source=service, ts=ts)


def test_calls_pairing_times_pending_and_duplicates() -> None:
    tr = CallTracker(pending_after_s=1.0)
    assert tr.add(audit("orchestrator", "a", "request", 10 * S + 2_000_000, 10 * S)) is None
    assert tr.add(audit("engine", "a", "request", 10 * S + 3_000_000, 10 * S)) is None  # same id, other service
    call = tr.add(audit("orchestrator", "a", "reply", 10 * S + 5_000_000, 10 * S))
    assert call is not None and call.service == "orchestrator" and call.ok
    assert call.server_ms == pytest.approx(3.0) and call.rtt_ms == pytest.approx(5.0)
    failed = tr.add(audit("engine", "a", "reply", 10 * S + 4_000_000, 10 * S, ok=False, error="nope", name="x"))
    assert failed is not None and failed.ok is False and failed.error == "nope" and failed.server_ms == pytest.approx(1.0)
    dup = tr.add(audit("engine", "a", "reply", 10 * S + 9_000_000, 10 * S, duplicate=True))
    assert dup is not None and dup.duplicate and dup.server_ms is None and dup.rtt_ms == pytest.approx(9.0)
    tr.add(audit("safety", "stuck", "request", 20 * S, 20 * S))
    assert tr.overdue(20 * S + S // 2) == []
    (late,) = tr.overdue(21 * S + 1)
    assert late.id == "stuck" and late.pending and "PENDING" in late.line(21 * S + 1)
    assert tr.overdue(30 * S) == []  # flagged once
    d = late.as_dict(22 * S)
    assert d["waiting_s"] == pytest.approx(2.0) and d["reply_ns"] is None
