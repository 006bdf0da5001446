"""Publishing events: ``[topic, message]`` with a per-publisher sequence number and epoch."""

from __future__ import annotations

import time

import zmq

import proto


class Publisher:
    """Wraps a bound PUB socket. Never blocks: a subscriber at its HWM loses messages on its side
    (and sees a sequence gap), the publisher goes on."""

    def __init__(self, sock: zmq.Socket, source: str, epoch: int) -> None:
        self._sock = sock
        self.source = source
        self.epoch = epoch
        self.seq = 0
        self.sent = 0
        self.send_errors = 0

    def publish(self, topic: str, body: proto.Message) -> None:
        self.seq += 1
        data = proto.encode(self.source, self.epoch, self.seq, time.time_ns(), body)
        try:
            self._sock.send_multipart((topic.encode(), data), flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:  # PUB drops rather than blocks; this is only reached on a closing context
            self.send_errors += 1
            return
        self.sent += 1

    def stats(self) -> dict[str, int]:
        return {"seq": self.seq, "sent": self.sent, "send_errors": self.send_errors}
