"""``hz``, ``bw`` and ``topics``: message rates, bandwidth and the topic list, per (topic, source).

Keyed by (topic, publisher), not topic alone: ``orders`` comes from the exchange manager and from
the venue, two streams with their own rate and sequence.

Inter-arrival times use the envelope's publish time (``ts_ns``) by default, not the time the
sniffer read the message: the sniffer reads in batches, so its own clock would bunch messages
together (``--clock receive`` uses it anyway, like ``ros2 topic hz``). The window slides on
receive time, so a publisher's clock offset cannot keep old messages in it.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from services.tradectl.sniffer.attach import Seen, read_header


@dataclass
class Stream:
    topic: str
    source: str
    types: set[str] = field(default_factory=set)
    samples: deque[tuple[int, int, int]] = field(default_factory=deque)  # (recv_ns, t_ns, size)
    total: int = 0
    total_bytes: int = 0


def _spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"min": None, "mean": None, "max": None, "std": None}
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / len(values)
    return {"min": min(values), "mean": mean, "max": max(values), "std": math.sqrt(var)}


class Rates:
    """Sliding-window samples per stream; ``hz()`` / ``bw()`` / ``topics()`` summarise them."""

    def __init__(self, window_s: float, clock: str = "publish") -> None:
        self.window_ns = int(window_s * 1e9)
        self.publish_clock = clock == "publish"
        self.streams: dict[tuple[str, str], Stream] = {}
        self.started_ns = time.time_ns()
        self.undecodable = 0

    def add(self, m: Seen) -> None:
        h = m.env if m.env is not None else (read_header(m.data) if m.frames == 2 else None)
        source, type_, t = ("?", "?", m.recv_ns) if h is None else (h.source, h.type, h.ts_ns)
        if h is None:
            self.undecodable += 1
        key = (m.topic, source)
        s = self.streams.get(key)
        if s is None:
            s = self.streams[key] = Stream(m.topic, source)
        s.types.add(type_)
        s.samples.append((m.recv_ns, t if self.publish_clock else m.recv_ns, len(m.data)))
        s.total += 1
        s.total_bytes += len(m.data)

    def prune(self, now_ns: int) -> None:
        limit = now_ns - self.window_ns
        for s in self.streams.values():
            q = s.samples
            while q and q[0][0] < limit:
                q.popleft()

    def _elapsed_s(self, now_ns: int) -> float:
        """The window, or less while the sniffer has not been attached that long."""
        return max(1e-9, min(self.window_ns, now_ns - self.started_ns)) / 1e9

    def hz(self, now_ns: int | None = None) -> list[dict[str, Any]]:
        now_ns = time.time_ns() if now_ns is None else now_ns
        self.prune(now_ns)
        rows = []
        for (topic, source), s in sorted(self.streams.items()):
            times = [t for _, t, _ in s.samples]
            gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(times)]
            spread = _spread(gaps)
            rate = 1.0 / spread["mean"] if spread["mean"] else None
            rows.append({"topic": topic, "source": source, "count": len(times), "rate_hz": rate,
                         "interval_min_s": spread["min"], "interval_mean_s": spread["mean"],
                         "interval_max_s": spread["max"], "interval_std_s": spread["std"],
                         "window_s": self._elapsed_s(now_ns)})
        return rows

    def bw(self, now_ns: int | None = None) -> list[dict[str, Any]]:
        now_ns = time.time_ns() if now_ns is None else now_ns
        self.prune(now_ns)
        rows = []
        elapsed = self._elapsed_s(now_ns)
        for (topic, source), s in sorted(self.streams.items()):
            sizes = [float(n) for _, _, n in s.samples]
            spread = _spread(sizes)
            rows.append({"topic": topic, "source": source, "count": len(sizes),
                         "bytes_per_s": sum(sizes) / elapsed, "size_min": spread["min"],
                         "size_mean": spread["mean"], "size_max": spread["max"], "size_std": spread["std"],
                         "window_s": elapsed})
        return rows

    def topics(self, now_ns: int | None = None) -> list[dict[str, Any]]:
        """Everything seen since attaching (not only the window): the ``topics`` verb's list."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        elapsed = max(1e-9, now_ns - self.started_ns) / 1e9
        return [{"topic": topic, "source": source, "types": sorted(s.types), "count": s.total,
                 "rate_hz": s.total / elapsed, "bytes": s.total_bytes}
                for (topic, source), s in sorted(self.streams.items())]
