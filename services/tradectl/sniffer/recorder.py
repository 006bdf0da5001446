"""``record``'s receive loop: frames straight from the socket into the recording.

The loop does the least it can per message (pack the record, read the envelope header for the
loss count); the disk is written by ``recording.Writer``'s own thread in 1 MiB pieces, so at
100k msgs/s the loop keeps ahead of the socket (``bench/sniffer.py`` measures it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from services.tradectl.sniffer.attach import Attachment, Deadline, read_header
from services.tradectl.sniffer.gaps import SeqTracker
from services.tradectl.sniffer.recording import Writer

IDLE_FLUSH_S = 0.2  # a crash loses at most this much of a quiet stream


@dataclass
class RecordResult:
    recorded: int
    malformed: int  # not [topic, message]: not recorded (play could not send them as they were)
    tracker: SeqTracker
    first_ns: int = 0  # receive times of the first and last message recorded
    last_ns: int = 0

    @property
    def elapsed_s(self) -> float:
        return (self.last_ns - self.first_ns) / 1e9


def run_record(att: Attachment, writer: Writer, *, count: int | None, duration: float | None,
               prefixes: tuple[bytes, ...] = ()) -> RecordResult:
    """Record until ``count`` messages or ``duration`` seconds (or Ctrl-C / SIGTERM, raised as
    KeyboardInterrupt by the caller's handler: the partial result is then on ``writer``)."""
    tracker = SeqTracker()
    observe = tracker.observe
    write = writer.write
    deadline = Deadline(duration)
    recorded = malformed = 0
    first_ns = last_ns = 0
    last_flush = time.monotonic()
    try:
        while not deadline.expired and (count is None or recorded < count):
            batch = att.receive_raw(deadline.left(IDLE_FLUSH_S))
            if batch:
                first_ns = first_ns or batch[0][0]
                last_ns = batch[-1][0]
            for recv_ns, frames in batch:
                if len(frames) != 2:
                    malformed += 1
                    continue
                topic, data = frames
                if prefixes and not topic.startswith(prefixes):
                    continue  # a SUB prefix is a byte prefix already; this is only for safety
                write(recv_ns, topic, data)
                recorded += 1
                h = read_header(data)
                if h is None:
                    tracker.undecodable += 1
                else:
                    observe(h.source, topic.decode("utf-8", "replace"), h.epoch, h.seq, recv_ns)
                if count is not None and recorded >= count:
                    break
            now = time.monotonic()
            if now - last_flush >= IDLE_FLUSH_S:
                writer.flush()
                last_flush = now
    except KeyboardInterrupt:
        pass
    return RecordResult(recorded, malformed, tracker, first_ns, last_ns)
