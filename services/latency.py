"""Latency figures: the histograms a service keeps and reports in its heartbeat (for the
orchestrator's metrics), and the one percentile rule every service and benchmark computes with.

Fixed buckets (upper bounds in milliseconds), cumulative counts as Prometheus wants them: a
service adds one observation with two integer operations, and the orchestrator turns the snapshot
into a Prometheus histogram without knowing anything about the service.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

# 50 µs .. 1 s: a decision takes tens of µs, a tick-to-order hop a fraction of a ms; past a second
# the number matters less than the fact.
BUCKETS_MS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0)

# The venue's tick-to-order figures (its ``latency`` command) and the benchmark's raw baseline.
TICK_TO_ORDER_PERCENTILES: tuple[tuple[str, float], ...] = (("p50_us", 50), ("p99_us", 99), ("p999_us", 99.9))


class LatencyHistogram:
    def __init__(self, buckets_ms: tuple[float, ...] = BUCKETS_MS) -> None:
        self._bounds = buckets_ms
        self._counts = [0] * (len(buckets_ms) + 1)  # the last one is +Inf
        self.sum_ms = 0.0
        self.count = 0

    def observe_ns(self, ns: int) -> None:
        ms = ns / 1e6
        self._counts[bisect.bisect_left(self._bounds, ms)] += 1
        self.sum_ms += ms
        self.count += 1

    def snapshot(self) -> dict[str, Any]:
        """``{"le_ms": [...], "cumulative": [...], "sum_ms": s, "count": n}``; ``cumulative[i]`` counts
        observations ≤ ``le_ms[i]`` and the last entry (+Inf) equals ``count``."""
        cumulative, running = [], 0
        for n in self._counts:
            running += n
            cumulative.append(running)
        return {"le_ms": list(self._bounds), "cumulative": cumulative, "sum_ms": round(self.sum_ms, 6),
                "count": self.count}


def percentile(values: Iterable[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of ``values``; NaN when empty. One rule for
    the engine's, the venue's and the benchmarks' figures, so that they compare alike."""
    data = sorted(values)
    if not data:
        return float("nan")
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)
