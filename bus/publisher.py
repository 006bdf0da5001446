"""Publishing events: ``[topic, message]`` with a sequence number per publisher and topic.

Subscribers filter by topic prefix, so a single counter per publisher would show every message on
an unsubscribed topic as a gap. Counting per topic keeps gap detection exact for any filter: each
subscriber checks the streams it receives, and a restart (new epoch) restarts every counter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import zmq

import proto
from bus.sockets import NOBLOCK, SNDMORE

log = logging.getLogger(__name__)


class Publisher:
    """Wraps a bound PUB socket. Never blocks: a subscriber at its HWM loses messages on its side
    (and sees a sequence gap), the publisher goes on."""

    def __init__(self, sock: zmq.Socket | None, source: str, epoch: int,
                 max_bytes: int = proto.MAX_MESSAGE_BYTES, *,
                 declared: Callable[[str], bool] | None = None) -> None:
        """``declared(topic)``, if given, says whether this publisher is declared to publish
        ``topic`` (``proto.topics.publishes``): checked once per topic, at its first message."""
        self._sock = sock
        self._max_bytes = max_bytes
        self._declared = declared
        self.undeclared_topics = 0
        self.source = source
        self.epoch = epoch
        self._seqs: dict[str, int] = {}
        self.sent = 0
        self.send_errors = 0
        self.offline_drops = 0
        self.oversized = 0

    def attach(self, sock: zmq.Socket | None) -> None:
        """Publish on ``sock`` from now on; ``None`` takes the publisher offline (messages are
        counted as dropped; the sequence still advances, so subscribers see the gap)."""
        self._sock = sock

    def publish(self, topic: str, body: proto.Message) -> None:
        try:
            seq = self._seqs[topic] = self._seqs[topic] + 1
        except KeyError:  # the first message on this topic (no cost on the others)
            seq = self._seqs[topic] = self._first_on(topic)
        if self._sock is None:
            self.offline_drops += 1
            return
        data = proto.encode(self.source, self.epoch, seq, time.time_ns(), body)
        if len(data) > self._max_bytes:
            # Subscribers enforce the same limit by dropping the connection (ZMQ_MAXMSGSIZE), which
            # would cut every one of them off from this publisher: refuse it here, loudly.
            self.oversized += 1
            log.error("not publishing %s on %s: %d bytes over the %d-byte limit", body.TYPE, topic,
                      len(data), self._max_bytes)
            return
        try:
            # Two sends rather than ``send_multipart``: the same two frames on the wire, at a third
            # of pyzmq's cost per message (bench/README.md, issue 16).
            self._sock.send(topic.encode(), NOBLOCK | SNDMORE)
            self._sock.send(data, NOBLOCK)
        except zmq.Again:  # PUB drops rather than blocks; this is only reached on a closing context
            self.send_errors += 1
            return
        self.sent += 1

    def _first_on(self, topic: str) -> int:
        if self._declared is not None and not self._declared(topic):
            # A developer's slip, not a peer's: PUB sockets refuse subscriptions to topics their
            # publisher is not declared to publish, so nobody would ever receive this one.
            self.undeclared_topics += 1
            log.error("publishing on %r, which %s is not declared to publish (proto.topics.PUBLISHED): "
                      "subscriptions to it are refused", topic, self.source)
        return 1

    def last_seq(self, topic: str) -> int:
        """The sequence number of the last message on ``topic`` (0: none yet in this epoch): a
        snapshot taken now contains every message up to it (the Clone pattern)."""
        return self._seqs.get(topic, 0)

    def stats(self) -> dict[str, int]:
        return {"topics": len(self._seqs), "sent": self.sent, "send_errors": self.send_errors,
                "offline_drops": self.offline_drops, "oversized": self.oversized,
                "undeclared_topics": self.undeclared_topics}
