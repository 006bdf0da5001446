"""``play`` and ``info``: republish a recording with its original timing; summarise it.

Play binds, for each source in the recording, that source's PUB endpoint in the *current*
settings' run dir, and sends the recorded frames byte for byte. So a ``safety`` process started
offline with the same settings consumes a recorded failsafe and reproduces it, and anything that
subscribes to the daemon's endpoints (``tradectl bus echo`` included) sees the recording as if live.
Binding an endpoint that a running process serves is refused (``bus.sockets.bind``): play never
takes a live daemon's place.

The first pass sends the frames as recorded. Each further pass of ``--loop`` sends them under a
newer publisher epoch (``proto.restamp``: the recorded epoch plus the pass number), so subscribers
take it as a restarted publisher, not as repeats of what they have seen (stale, dropped).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import zmq

import proto
from bus.curve import Security, security
from bus.endpoints import PUBLISHERS, Endpoints
from bus.settings import BusSettings
from bus.sockets import bind, make_socket
from services.tradectl.sniffer.attach import read_header
from services.tradectl.sniffer.gaps import SeqTracker
from services.tradectl.sniffer.recording import Reader


def sources_of(reader: Reader, topics: Sequence[str]) -> set[str]:
    wanted = tuple(topics)
    found = set()
    for _, topic, data in reader:
        if wanted and not topic.decode("utf-8", "replace").startswith(wanted):
            continue
        h = read_header(data)
        if h is not None:
            found.add(h.source)
    return found


class Player:
    """The bound PUB sockets and the paced send loop."""

    def __init__(self, bus: BusSettings, run_dir: Path, sources: set[str], hwm: int = 1_000_000,
                 keys_dir: Path | None = None) -> None:
        """With CURVE (``bus.curve``), each source's socket serves with that source's key pair from
        ``keys_dir``: subscribers pin it, as they do the live process's (``MissingKey`` without it)."""
        self.ctx = zmq.Context()
        self.sockets: dict[str, zmq.Socket] = {}
        self.skipped_sources = sorted(s for s in sources if s not in PUBLISHERS)
        self._zap: Security | None = None
        endpoints = Endpoints(bus, run_dir)
        try:
            for source in sorted(sources - set(self.skipped_sources)):
                # Made as every PUB is: a subscriber can neither send it long prefixes nor queue many.
                sock = make_socket(self.ctx, zmq.PUB, bus, hwm=hwm)
                sock.setsockopt(zmq.LINGER, 2000)  # let the tail of the recording go out at exit
                self.sockets[source] = sock  # before bind: closed on failure too
                if keys_dir is not None:
                    sec = security(bus, keys_dir, source)
                    sec.serve(sock)
                    if self._zap is None:  # one ZAP handler per context
                        self._zap = sec
                        sec.start(self.ctx)
                bind(sock, endpoints.pub(source))
        except BaseException:
            self.close()
            raise
        self.sent = 0
        self.skipped = 0  # undecodable frames or unknown sources: nothing to send them from

    def play(self, reader: Reader, *, rate: float, start_s: float, topics: Sequence[str],
             loop: bool, stop: Callable[[], bool] = lambda: False) -> None:
        """Send every selected message at its original offset from the first one, divided by
        ``rate`` (0: as fast as possible)."""
        wanted = tuple(t.encode() for t in topics)
        first = next(iter(reader), None)
        if first is None:
            return
        start_ns = first[0] + int(start_s * 1e9)
        repeat = 0
        while True:
            t0 = time.perf_counter()
            base: int | None = None
            for recv_ns, topic, data in reader.messages(start_ns):
                if stop():
                    return
                if wanted and not topic.startswith(wanted):
                    continue
                h = read_header(data)
                sock = None if h is None else self.sockets.get(h.source)
                if sock is None:
                    self.skipped += 1
                    continue
                if repeat:
                    data = proto.restamp(data, h.epoch + repeat)
                if base is None:
                    base = recv_ns
                if rate > 0:
                    due = t0 + (recv_ns - base) / 1e9 / rate
                    wait = due - time.perf_counter()
                    if wait > 0.0005:
                        time.sleep(wait - 0.0003)  # sleep most of it; spin the last fraction
                    while time.perf_counter() < due:
                        pass
                sock.send_multipart((topic, data), copy=False)
                self.sent += 1
            if not loop:
                return
            repeat += 1

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        if self._zap is not None:
            self._zap.stop()
        self.ctx.term()


def summary(reader: Reader) -> dict[str, Any]:
    """``info``: duration, counts per topic and per type, size, sources, gaps in the recording."""
    per_topic: Counter[str] = Counter()
    per_type: Counter[str] = Counter()
    per_source: Counter[str] = Counter()
    tracker = SeqTracker()
    first = last = None
    first_pub = last_pub = None
    total = 0
    for recv_ns, topic_b, data in reader:
        topic = topic_b.decode("utf-8", "replace")
        total += 1
        first = recv_ns if first is None else first
        last = recv_ns
        per_topic[topic] += 1
        h = read_header(data)
        if h is None:
            tracker.undecodable += 1
            per_type["(undecodable)"] += 1
            continue
        per_type[h.type] += 1
        per_source[h.source] += 1
        first_pub = h.ts_ns if first_pub is None else min(first_pub, h.ts_ns)
        last_pub = h.ts_ns if last_pub is None else max(last_pub, h.ts_ns)
        tracker.observe(h.source, topic, h.epoch, h.seq, recv_ns)
    gaps: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in tracker.events:
        gaps[e.source].append(e.as_dict())
    return {
        "path": str(reader.path), "messages": total,
        "start_ns": first, "end_ns": last,
        "duration_s": 0.0 if first is None or last is None else (last - first) / 1e9,
        "first_publish_ns": first_pub, "last_publish_ns": last_pub,
        "bytes": sum(p.size for p in reader.parts),
        "parts": [{"path": str(p.path), "part": p.part, "bytes": p.size, "indexed": p.indexed,
                   "index_entries": len(p.index), "problem": p.problem} for p in reader.parts],
        "per_topic": dict(sorted(per_topic.items())), "per_type": dict(sorted(per_type.items())),
        "sources": dict(sorted(per_source.items())),
        "gaps": {"total": tracker.gaps, "lost": tracker.lost, "restarts": tracker.summary()["restarts"],
                 "by_source": dict(gaps)},
        "undecodable": tracker.undecodable, "meta": reader.meta,
    }
