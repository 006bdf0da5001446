"""Attaching to the bus passively, and the per-message view every verb works on.

One SUB socket is connected to every publisher's PUB endpoint (``bus.endpoints.PUBLISHERS``). A PUB
never waits for a subscriber, so a slow sniffer cannot slow the daemon: what it cannot keep up
with queues in its own socket (a deep receive high-water mark absorbs bursts while Python catches
up) and, past that, is dropped on the sniffer's side, where the per-(source, topic) sequence
numbers show it as a gap (``gaps.SeqTracker``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import zmq

import proto
from bus.curve import NoCurve, Security
from bus.endpoints import PUBLISHERS, Endpoints
from bus.settings import BusSettings

# Messages, not bytes. At ~200 bytes a message this is a few hundred MB at most, and it lets the
# sniffer fall seconds behind a 100k msgs/s burst without losing anything.
DEFAULT_HWM = 1_000_000
# Messages read per wake-up before the caller processes them: large enough to amortise the poll,
# small enough that output stays smooth.
BATCH = 4096
_NOBLOCK, _RCVMORE = int(zmq.NOBLOCK), int(zmq.RCVMORE)  # plain ints: no enum work per call


Header = proto.Header


def read_header(data: bytes) -> Header | None:
    """The envelope's header fields, or None when the frame is not an envelope at all."""
    try:
        return proto.decode_header(data)
    except proto.ProtocolError:
        return None


class Seen:
    """One received message: raw frames, when it arrived, and (once asked) its decoded envelope or
    why it could not be decoded. Slots: millions of these go through per minute."""

    __slots__ = ("data", "env", "error", "frames", "recv_ns", "topic")

    def __init__(self, recv_ns: int, topic: str, data: bytes, frames: int = 2) -> None:
        self.recv_ns = recv_ns
        self.topic = topic
        self.data = data
        self.frames = frames
        self.env: proto.Envelope | None = None
        self.error: str | None = None

    def decode(self) -> proto.Envelope | None:
        if self.env is None and self.error is None:
            if self.frames != 2:
                self.error = f"frames: expected [topic, message], got {self.frames} frame(s)"
                return None
            try:
                self.env = proto.decode(self.data)
            except proto.ProtocolError as exc:
                self.error = str(exc)  # "kind: detail"
        return self.env

    def context(self) -> dict[str, Any]:
        """What ``--filter`` expressions see (``filters.ROOTS``)."""
        ctx: dict[str, Any] = {"topic": self.topic, "recv_ns": self.recv_ns, "size": len(self.data)}
        env = self.decode()
        if env is not None:
            ctx.update(source=env.source, type=env.type, epoch=env.epoch, seq=env.seq, ts_ns=env.ts_ns,
                       v=env.v, body=env.body, age=(self.recv_ns - env.ts_ns) / 1e9)
        return ctx


def hex_preview(data: bytes, limit: int = 48) -> str:
    return data[:limit].hex(" ") + (" ..." if len(data) > limit else "")


class Attachment:
    """The sniffer's SUB socket. ``receive()`` returns what has arrived, in arrival order."""

    def __init__(self, bus: BusSettings, run_dir: Path, prefixes: Sequence[str] = (), *,
                 hwm: int = DEFAULT_HWM, publishers: Iterable[str] = PUBLISHERS,
                 security: Security | None = None) -> None:
        """Connected to each of ``publishers``, pinning its key (``security``: CURVE)."""
        self.ctx = zmq.Context()
        endpoints = Endpoints(bus, run_dir)
        self.endpoints = {name: endpoints.pub(name) for name in publishers}
        sock = self.sock = self.ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, hwm)
        # A big kernel buffer too: the I/O thread drains it into the HWM queue without the GIL.
        sock.setsockopt(zmq.RCVBUF, 4 << 20)
        sock.setsockopt(zmq.RECONNECT_IVL, 50)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        for prefix in prefixes or ("",):
            sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        for name, ep in self.endpoints.items():
            (security or NoCurve()).connect(sock, ep, name)
        self.received = 0
        self.malformed = 0  # not [topic, message]: shown and counted by the verbs that decode

    def _read(self, limit: int) -> list[tuple[int, list[bytes]]]:
        """Up to ``limit`` waiting messages as (receive time, frames).

        ``recv`` + ``get(RCVMORE)`` per frame instead of ``recv_multipart``: the latter goes
        through pyzmq's Python-level flag enums on every call and costs twice as much (measured:
        ~800k vs ~400k 2-frame messages/s drained from a full queue). Copying receives: for frames
        this small a copy is cheaper than a ``zmq.Frame`` object."""
        out: list[tuple[int, list[bytes]]] = []
        append, recv, more, now = out.append, self.sock.recv, self.sock.get, time.time_ns
        for _ in range(limit):
            try:
                topic = recv(_NOBLOCK)
            except zmq.Again:
                break
            if not more(_RCVMORE):
                append((now(), [topic]))
                continue
            data = recv(_NOBLOCK)  # the rest of a multipart message is already here (atomic delivery)
            if not more(_RCVMORE):
                append((now(), [topic, data]))
                continue
            frames = [topic, data]
            while more(_RCVMORE):
                frames.append(recv(_NOBLOCK))
            append((now(), frames))
        self.received += len(out)
        return out

    def _wait(self, timeout_s: float | None) -> bool:
        return bool(self.sock.poll(None if timeout_s is None else max(0, int(timeout_s * 1000))))

    def receive(self, timeout_s: float | None, limit: int = BATCH) -> list[Seen]:
        """Wait up to ``timeout_s`` (None: forever) for a message, then return what is waiting (at
        most ``limit``), in arrival order."""
        if not self._wait(timeout_s):
            return []
        out: list[Seen] = []
        for recv_ns, frames in self._read(limit):
            if len(frames) == 2:
                out.append(Seen(recv_ns, frames[0].decode("utf-8", "replace"), frames[1]))
            else:
                self.malformed += 1
                out.append(Seen(recv_ns, frames[0].decode("utf-8", "replace"), b"".join(frames[1:]), len(frames)))
        return out

    def receive_raw(self, timeout_s: float | None, limit: int = BATCH) -> list[tuple[int, list[bytes]]]:
        """Like ``receive`` but (receive time, frames) as they came: what ``record`` stores, so the
        topic's bytes are kept exactly even when they are not UTF-8."""
        if not self._wait(timeout_s):
            return []
        return self._read(limit)

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()

    def __enter__(self) -> Attachment:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Deadline:
    """``--timeout`` and ``--duration``: time left, or None for no limit."""

    def __init__(self, seconds: float | None) -> None:
        self._end = None if seconds is None else time.monotonic() + seconds

    def left(self, cap: float) -> float | None:
        if self._end is None:
            return cap
        return max(0.0, min(cap, self._end - time.monotonic()))

    @property
    def expired(self) -> bool:
        return self._end is not None and time.monotonic() >= self._end


def periodic(att: Attachment, on_message: Callable[[Seen], None], report: Callable[[int], None], *,
             interval_s: float, reports: int | None, timeout: float | None) -> int:
    """The loop of the periodic verbs (hz, bw, gaps): feed every message to ``on_message`` and call
    ``report(now_ns)`` every ``interval_s`` until ``reports`` were made or ``timeout`` passed.
    Returns the number of reports made."""
    deadline = Deadline(timeout)
    made = 0
    next_at = time.monotonic() + interval_s
    while reports is None or made < reports:
        wait = max(0.0, next_at - time.monotonic())
        left = deadline.left(wait)
        for m in att.receive(left):
            on_message(m)
        if time.monotonic() >= next_at:
            report(time.time_ns())
            made += 1
            next_at += interval_s
        elif deadline.expired:
            break
    return made
