"""Sequence gaps and heartbeat ages, per publisher, as the sniffer sees them.

Every envelope carries ``(source, epoch, seq)`` and ``seq`` counts per publisher *and topic* from 1
(``bus.publisher``), so a gap on any (source, topic) stream is exact for any subscription filter.
A new, larger ``epoch`` is a restarted publisher: its counters start again, which is counted as a
restart and not as a loss. A gap is what the sniffer did not receive: lost in the sniffer's own
socket (it fell behind), or never sent (a publisher offline, ``Publisher.offline_drops``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import proto
from services.tradectl.sniffer.attach import Seen, read_header


@dataclass
class GapEvent:
    source: str
    topic: str
    lost: int
    at_ns: int  # receive time of the message after the gap
    expected: int
    got: int

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "topic": self.topic, "lost": self.lost, "at_ns": self.at_ns,
                "expected_seq": self.expected, "got_seq": self.got}


@dataclass
class PublisherStats:
    epoch: int
    received: int = 0
    gaps: int = 0
    lost: int = 0
    restarts: int = 0
    stale: int = 0  # older epoch or repeated sequence number
    last_ns: int = 0  # receive time of its latest message of any kind
    last_gap: GapEvent | None = None
    streams: dict[str, int] = field(default_factory=dict)  # topic -> last seq (current epoch)
    heartbeat_ns: int = 0  # receive time of the latest heartbeat
    interval_s: float | None = None  # from that heartbeat's body
    pid: int | None = None


class SeqTracker:
    """Counts losses per publisher; ``observe`` is on the hot path (one dict lookup per stream)."""

    def __init__(self, keep_events: int = 1000) -> None:
        self.publishers: dict[str, PublisherStats] = {}
        self.events: list[GapEvent] = []  # the most recent ``keep_events`` gaps
        self._keep = keep_events
        self.undecodable = 0

    def observe(self, source: str, topic: str, epoch: int, seq: int, recv_ns: int) -> int:
        """Account for one message; returns how many messages its stream lost just before it."""
        p = self.publishers.get(source)
        if p is None:
            p = self.publishers[source] = PublisherStats(epoch)
        p.received += 1
        p.last_ns = recv_ns
        if epoch != p.epoch:
            if epoch < p.epoch:
                p.stale += 1
                return 0
            p.epoch = epoch
            p.restarts += 1
            p.streams = {}
        streams = p.streams
        last = streams.get(topic)
        if last is None or seq == last + 1:
            streams[topic] = seq
            return 0
        if seq <= last:
            p.stale += 1
            return 0
        lost = seq - last - 1
        streams[topic] = seq
        p.gaps += 1
        p.lost += lost
        event = p.last_gap = GapEvent(source, topic, lost, recv_ns, last + 1, seq)
        self.events.append(event)
        if len(self.events) > 2 * self._keep:
            del self.events[:-self._keep]
        return lost

    def observe_seen(self, m: Seen) -> int:
        """``observe`` from a received message, decoding only its header unless already decoded."""
        env = m.env
        if env is None:
            env = read_header(m.data) if m.frames == 2 else None
            if env is None:
                self.undecodable += 1
                return 0
        return self.observe(env.source, m.topic, env.epoch, env.seq, m.recv_ns)

    def heartbeat(self, m: Seen) -> None:
        """Note a heartbeat's arrival and interval (``m`` is on an ``hb.`` topic)."""
        env = m.decode()
        if env is None or not isinstance(env.body, proto.Heartbeat):
            return
        p = self.publishers.get(env.source)
        if p is not None:
            p.heartbeat_ns = m.recv_ns
            p.interval_s = env.body.interval_s
            p.pid = env.body.pid

    @property
    def lost(self) -> int:
        return sum(p.lost for p in self.publishers.values())

    @property
    def gaps(self) -> int:
        return sum(p.gaps for p in self.publishers.values())

    def summary(self) -> dict[str, int]:
        return {"gaps": self.gaps, "lost": self.lost, "undecodable": self.undecodable,
                "restarts": sum(p.restarts for p in self.publishers.values()),
                "stale": sum(p.stale for p in self.publishers.values())}


def report(tracker: SeqTracker, names: list[str], stale_after: float, now_ns: int | None = None,
           since_ns: int = 0) -> dict[str, Any]:
    """The ``gaps`` verb's report: one entry per publisher (every known one, heard or not), and the
    gap events since ``since_ns``. A heartbeat is stale when older than ``stale_after`` of its own
    intervals (each Heartbeat body says its interval)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    out: dict[str, Any] = {}
    for name in dict.fromkeys([*names, *tracker.publishers]):
        p = tracker.publishers.get(name)
        if p is None:
            out[name] = {"heard": False, "stale": None}
            continue
        hb_age = (now_ns - p.heartbeat_ns) / 1e9 if p.heartbeat_ns else None
        # None: this publisher sends no heartbeats (e.g. supervisor), so there is nothing to judge.
        stale = None if hb_age is None or p.interval_s is None else hb_age > stale_after * p.interval_s
        last = p.last_gap
        out[name] = {
            "heard": True, "epoch": p.epoch, "pid": p.pid, "received": p.received, "gaps": p.gaps,
            "lost": p.lost, "restarts": p.restarts, "stale_messages": p.stale,
            "last_message_age_s": (now_ns - p.last_ns) / 1e9,
            "heartbeat_age_s": hb_age, "heartbeat_interval_s": p.interval_s, "stale": stale,
            "last_gap": None if last is None else {**last.as_dict(), "ago_s": (now_ns - last.at_ns) / 1e9},
        }
    events = [e.as_dict() for e in tracker.events if e.at_ns > since_ns]
    return {"ts_ns": now_ns, "publishers": out, "events": events, "sniffer": tracker.summary()}
