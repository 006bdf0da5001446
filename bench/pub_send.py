"""The PUB send path: ``bus.Publisher.publish`` on a plain PUB against the guarded XPUB every
service publishes on now (``bus.SubscriptionGuard``, manual subscriptions), in one process.

Each socket is bound over ``ipc://`` with one subscriber connected and reading in a thread of its
own; rounds of ``batch`` publishes of a ``Quote`` alternate between the two (the order flips each
round). Reported: CPU time of the publishing thread per publish (``time.thread_time_ns``, which
neither the reader thread nor other processes move), median over rounds, and the median of the
per-round ratios guarded/plain, the figure that says whether policing subscriptions made sending
slower (it should be 1.00: an XPUB sends exactly as a PUB does).
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import threading
import time
from pathlib import Path

import zmq

import proto
from bench._stats import median, table
from bus import BusSettings, Publisher, Reactor, SubscriptionGuard, make_socket

TOPIC = "md.BTC-USD"
VARIANTS = ("PUB (before)", "XPUB + guard (now)")


class _Link:
    """A bound publisher socket with one subscriber reading everything in a thread."""

    def __init__(self, ctx: zmq.Context, tmp: Path, guarded: bool) -> None:
        bus = BusSettings()
        endpoint = f"ipc://{tmp}/{'guarded' if guarded else 'plain'}.pub"
        self.sock = make_socket(ctx, zmq.XPUB if guarded else zmq.PUB, bus)
        self.guard = None
        if guarded:  # its reader is called by hand once the subscription is in; no loop needed here
            self.guard = SubscriptionGuard(self.sock, Reactor(), bus, name="data_router",
                                           accepts=lambda prefix: proto.topics.subscribable("data_router", prefix))
        self.sock.bind(endpoint)
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, 0)
        self.sub.connect(endpoint)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"md.")
        self.publisher = Publisher(self.sock, "data_router", time.time_ns())
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def start(self, quote: proto.Quote) -> None:
        self._thread.start()
        deadline = time.monotonic() + 5
        while self.received == 0:  # the subscription is in (and, guarded, applied)
            if time.monotonic() > deadline:
                raise RuntimeError("the subscriber never received anything")
            if self.guard is not None:
                self.guard.drain()
            self.publisher.publish(TOPIC, quote)
            time.sleep(0.01)

    def _read(self) -> None:
        while not self._stop.is_set():
            if self.sub.poll(50):
                while True:
                    try:
                        self.sub.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self.received += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        if self.guard is not None:
            self.guard.close()
        self.sub.close(linger=0)
        self.sock.close(linger=0)


def run(rounds: int = 30, batch: int = 20_000, out=print) -> dict:
    out(f"== pub_send: Publisher.publish CPU per message, plain PUB vs guarded XPUB, {rounds} rounds x {batch:,} "
        f"(interleaved), one ipc subscriber reading ==")
    quote = proto.Quote(symbol="BTC-USD", bid=100.0, ask=100.5, bid_size=1.0, ask_size=1.0, ts_ns=time.time_ns(),
                        venue="SIM")
    tmp = Path(tempfile.mkdtemp(prefix="bench-pub-"))
    ctx = zmq.Context()
    links = {VARIANTS[0]: _Link(ctx, tmp, guarded=False), VARIANTS[1]: _Link(ctx, tmp, guarded=True)}
    per_round: dict[str, list[float]] = {v: [] for v in VARIANTS}
    try:
        for link in links.values():
            link.start(quote)
        gc.disable()
        try:
            for r in range(rounds):
                for variant in (VARIANTS if r % 2 == 0 else VARIANTS[::-1]):
                    publish = links[variant].publisher.publish
                    t0 = time.thread_time_ns()
                    for _ in range(batch):
                        publish(TOPIC, quote)
                    per_round[variant].append((time.thread_time_ns() - t0) / batch / 1000)
                    time.sleep(0.05)  # let the reader catch up between rounds
        finally:
            gc.enable()
    finally:
        for link in links.values():
            link.close()
        ctx.term()
        shutil.rmtree(tmp, ignore_errors=True)
    ratios = [g / p for g, p in zip(per_round[VARIANTS[1]], per_round[VARIANTS[0]])]
    out(table(["variant", "µs/publish (median)", "min", "max"],
              [[v, f"{median(t):.2f}", f"{min(t):.2f}", f"{max(t):.2f}"] for v, t in per_round.items()]))
    ratio = median(ratios)
    out(f"guarded / plain, median of per-round ratios: {ratio:.3f}")
    return {"summary": [f"PUB send path: guarded XPUB / plain PUB = {ratio:.2f}x CPU per publish "
                        f"({median(per_round[VARIANTS[1]]):.2f} vs {median(per_round[VARIANTS[0]]):.2f} µs)"]}
