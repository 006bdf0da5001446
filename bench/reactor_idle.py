"""Idle CPU of one ``bus.Reactor`` that only runs timers, and where it goes.

A service's loop is idle most of the time but for its timers: the heartbeat every
``bus.heartbeat_interval_s`` (0.2 s) and, in the engine and the exchange manager, the session
follower's 0.05 s watch. This runs a ``bus.Reactor`` with exactly those two timers (no sockets, no
work in the callbacks) for a few seconds and reports the process's CPU (percent of one core), how
often the loop called ``zmq.Poller.poll``, and how many of those calls had a timeout under 1 ms,
per timer fired.

It guards against a busy wait: ``zmq.Poller.poll`` truncates a float timeout with ``int()``, so a
loop that passes "0.7 ms to the next timer" as a float calls ``poll(0)`` over and over until the
timer is due. (``bus.Reactor`` did exactly that until it rounded up; the first runs of this
benchmark measured 1.6-1.7 % of a core and ~340 zero-timeout polls per timer for this idle loop.)
The baseline is the same Reactor behind a wrapper (here in bench/) that rounds a fractional
timeout up before calling ``zmq.Poller.poll``: equal figures mean the Reactor does not busy-wait.
Rounds alternate (ours, rounded up, ours, ...); the medians are reported.
"""

from __future__ import annotations

import math
import time

from bench._stats import median, table
from bus import Reactor

TIMERS_S = (0.2, 0.05)


class _CountingPoller:
    """Wraps a ``zmq.Poller``: counts polls (and sub-millisecond ones), optionally rounds up."""

    def __init__(self, poller, ceil: bool) -> None:
        self._poller = poller
        self._ceil = ceil
        self.polls = 0
        self.short_polls = 0

    def __getattr__(self, name):
        return getattr(self._poller, name)

    def poll(self, timeout=None):
        self.polls += 1
        if timeout is not None and timeout < 1:
            self.short_polls += 1
        if self._ceil and timeout is not None and timeout > 0:
            timeout = math.ceil(timeout)
        return self._poller.poll(timeout)


def _one(seconds: float, ceil: bool) -> tuple[float, float, float, int]:
    reactor = Reactor()
    poller = _CountingPoller(reactor._poller, ceil)
    reactor._poller = poller  # the loop calls self._poller.poll(); bench-only instrumentation
    fired = [0]

    def tick() -> None:
        fired[0] += 1

    for interval in TIMERS_S:
        reactor.call_every(interval, tick)
    reactor.call_later(seconds, reactor.stop)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        reactor.run()
    finally:
        reactor.close()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return 100 * cpu / wall, poller.polls / wall, poller.short_polls / max(fired[0], 1), fired[0]


def run(rounds: int = 3, seconds: float = 2.0, out=print) -> dict:
    out(f"== reactor_idle: bus.Reactor with only timers {', '.join(f'{t:g}s' for t in TIMERS_S)} "
        f"({rounds} rounds x {seconds:g} s per variant, interleaved) ==")
    per: dict[str, list[tuple[float, float, float, int]]] = {"ours": [], "ours, timeout rounded up": []}
    for _ in range(rounds):
        per["ours"].append(_one(seconds, ceil=False))
        per["ours, timeout rounded up"].append(_one(seconds, ceil=True))
    result = {}
    rows = []
    for name, samples in per.items():
        cpu = median([s[0] for s in samples])
        polls = median([s[1] for s in samples])
        short = median([s[2] for s in samples])
        fired = median([s[3] / seconds for s in samples])
        result[name] = {"cpu_pct": cpu, "polls_per_s": polls, "short_polls_per_timer": short}
        rows.append([name, f"{cpu:.2f}", f"{min(s[0] for s in samples):.2f}-{max(s[0] for s in samples):.2f}",
                     f"{polls:.0f}", f"{short:.0f}", f"{fired:.0f}"])
    out(table(["variant", "CPU % of a core", "range", "polls/s", "polls <1 ms per timer", "timers/s"], rows))
    a, b = result["ours"]["cpu_pct"], result["ours, timeout rounded up"]["cpu_pct"]
    short = result["ours"]["short_polls_per_timer"]
    out(f"ours/rounded-up CPU: {a / b if b else float('inf'):.2f}x; "
        + (f"BUSY WAIT: {short:.0f} sub-millisecond polls per timer, {a - b:.2f} points of a core"
           if short >= 5 else "no busy wait before timers"))
    return {"variants": result,
            "summary": [f"bus.Reactor with only its timers: {a:.2f} % of a core "
                        f"({result['ours']['polls_per_s']:.0f} polls/s); with the poll timeout rounded up "
                        f"{b:.2f} % ({result['ours, timeout rounded up']['polls_per_s']:.0f} polls/s)"]}


if __name__ == "__main__":
    run()
