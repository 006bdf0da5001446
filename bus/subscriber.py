"""Receiving events: decode, detect sequence gaps per publisher and topic, track liveness.

Any message from a publisher counts as its liveness. Sequence numbers count per publisher and
topic (see ``bus.publisher``); a new ``epoch`` from the same source means it restarted, so its
counters starting again is not a gap (the restart is counted instead).

What is tracked is keyed by what the publisher says (its ``source``, its topics), so it is bounded:
at most ``max_publishers`` sources and ``max_streams`` (source, topic) streams. A message that would
need one more is refused and counted (``rejected``: ``publishers``, ``streams``), never delivered
untracked: the tracking is what keeps a stale message from acting. A new stream is opened only for
a topic its source is declared to publish (``proto.topics.publishes``: its own ``hb.``/``audit.``
topics and what ``PUBLISHED`` lists): any other is refused and counted (``undeclared``) before it
takes a stream or a publisher's place, so a peer cannot fill the caps with topics nobody publishes
and lock out the real streams.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

import proto
from bus.curve import NoCurve, Security
from bus.ratelimit import RateLimitedLog
from bus.settings import MAX_SUBSCRIPTION_BYTES
from bus.sockets import drain

log = logging.getLogger(__name__)

Handler = Callable[[str, proto.Envelope], None]


@dataclass
class PeerTrack:
    """One publisher: its current epoch, liveness and the losses over all its streams."""

    epoch: int
    last_seen: float  # time.monotonic() of the last message of any kind
    received: int = 0
    gaps: int = 0  # number of gap incidents
    lost: int = 0  # messages missing in those gaps
    lost_by_topic: dict[str, int] = field(default_factory=dict)
    restarts: int = 0  # epoch changes seen after the first
    stale: int = 0  # messages from an older epoch or repeated sequence numbers


class Subscriber:
    def __init__(self, sock: zmq.Socket, max_bytes: int = proto.MAX_MESSAGE_BYTES, *,
                 max_streams: int = 20_000, max_publishers: int = 256,
                 max_subscription_bytes: int = MAX_SUBSCRIPTION_BYTES) -> None:
        self._sock = sock
        self._max_bytes = max_bytes
        self._max_subscription_bytes = max_subscription_bytes
        self._max_streams = max_streams
        self._max_publishers = max_publishers
        self.peers: dict[str, PeerTrack] = {}
        self.received = 0
        self.rejected: dict[str, int] = {}
        self._last_seq: dict[tuple[str, str], int] = {}
        self._bad_log = RateLimitedLog(log)
        self._gap_log = RateLimitedLog(log)

    @property
    def socket(self) -> zmq.Socket:
        return self._sock

    def connect(self, endpoint: str, publisher: str = "", security: Security | None = None) -> None:
        """Connect to ``publisher`` at ``endpoint``, its key pinned by ``security`` (CURVE)."""
        (security or NoCurve()).connect(self._sock, endpoint, publisher)

    def subscribe(self, prefix: str = "") -> None:
        """Subscribe to ``prefix``; ValueError if it is longer than the publishers take
        (``bus.max_subscription_bytes``): sent anyway, it would make every publisher drop this
        connection, and nothing would arrive on any topic, without a word."""
        data = prefix.encode()
        if len(data) > self._max_subscription_bytes:
            raise ValueError(f"subscription prefix {prefix[:80]!r} is {len(data)} bytes, over "
                             f"bus.max_subscription_bytes ({self._max_subscription_bytes}): publishers would "
                             f"drop the connection")
        self._sock.setsockopt(zmq.SUBSCRIBE, data)

    def unsubscribe(self, prefix: str) -> None:
        self._sock.setsockopt(zmq.UNSUBSCRIBE, prefix.encode())

    def drain(self, handler: Handler, limit: int = 10_000) -> int:
        """Read what is waiting (at most ``limit``), hand each valid message to ``handler``."""
        accept = self._accept

        def on_message(frames: list[bytes]) -> None:
            accepted = accept(frames)
            if accepted is not None:
                handler(*accepted)

        return drain(self._sock, 2, on_message, limit)

    def _accept(self, frames: list[bytes]) -> tuple[str, proto.Envelope] | None:
        if len(frames) != 2:
            self._reject("frames", f"expected [topic, message], got {len(frames)} frames")
            return None
        topic_bytes, data = frames
        try:
            env = proto.decode(data, self._max_bytes)
            topic = topic_bytes.decode()
        except proto.ProtocolError as exc:
            self._reject(exc.kind, str(exc))
            return None
        except UnicodeDecodeError:
            self._reject("topic", "topic is not UTF-8")
            return None
        self.received += 1
        if not self._track(topic, env):
            return None  # from an older incarnation of the publisher, or a repeat: never acted on
        return topic, env

    def _track(self, topic: str, env: proto.Envelope) -> bool:
        """Account for one message; False if it is stale and must not be delivered."""
        now = time.monotonic()
        key = (env.source, topic)
        if key not in self._last_seq and not proto.topics.publishes(env.source, topic):
            return self._untracked("undeclared", f"{topic[:80]!r} from {env.source}: a topic it does not publish")
        peer = self.peers.get(env.source)
        if peer is None:
            if len(self.peers) >= self._max_publishers:
                return self._untracked("publishers", f"from {env.source}: {len(self.peers)} publishers tracked")
            peer = self.peers[env.source] = PeerTrack(env.epoch, now)
        peer.last_seen = now
        peer.received += 1
        if env.epoch != peer.epoch:
            if env.epoch < peer.epoch:
                peer.stale += 1
                return False
            peer.epoch = env.epoch
            peer.restarts += 1
            # The publisher's counters start again at 1. A stream we were following continues
            # from 0, so what it published before we reconnected (a restarted exchange manager
            # publishes its reconciled fills at once) counts as lost instead of vanishing; a
            # stream first seen now sets its baseline as usual.
            self._last_seq = {k: (0 if k[0] == env.source else v) for k, v in self._last_seq.items()}
        last = self._last_seq.get(key)
        if last is None and len(self._last_seq) >= self._max_streams:
            return self._untracked("streams", f"{topic} from {env.source}: {len(self._last_seq)} streams tracked")
        self._last_seq[key] = max(env.seq, last or 0)
        if last is None or env.seq == last + 1:
            return True
        if env.seq > last + 1:
            lost = env.seq - last - 1
            peer.gaps += 1
            peer.lost += lost
            peer.lost_by_topic[topic] = peer.lost_by_topic.get(topic, 0) + lost
            self._gap_log.warning(env.source, f"sequence gap from {env.source} on {topic}: {lost} message(s) lost")
            return True
        peer.stale += 1
        return False

    def _untracked(self, kind: str, detail: str) -> bool:
        """A valid message that would need more tracking than allowed: refused, not received."""
        self.received -= 1
        self._reject(kind, detail)
        return False

    def _reject(self, kind: str, detail: str) -> None:
        self.rejected[kind] = self.rejected.get(kind, 0) + 1
        self._bad_log.warning(kind, f"rejected bus message: {detail}")

    def stats(self) -> dict[str, object]:
        return {
            "received": self.received,
            "rejected": dict(self.rejected),
            "gaps": sum(p.gaps for p in self.peers.values()),
            "lost": sum(p.lost for p in self.peers.values()),
        }
