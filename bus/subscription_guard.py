"""Policing the subscriptions that peers send to a PUB socket, so none can grow our memory at will.

libzmq keeps every topic prefix a subscriber sends in a trie, about 50 bytes per byte of prefix,
until that subscriber leaves; a plain PUB socket takes them all. 100,000 distinct 1 KB prefixes
took the orchestrator to 5 GB and stalled it 18 s (every peer then counted as missing). So every
PUB socket of ours is an XPUB in manual mode (``ZMQ_XPUB_MANUAL``): a subscription takes effect
only when this guard applies it, right after reading it (libzmq applies it to the connection it
came from). The guard:

- **Length**: the socket's ``ZMQ_MAXMSGSIZE`` is the frame of a ``bus.max_subscription_bytes``
  prefix (``bus.sockets.SUBSCRIPTION_FRAME_OVERHEAD`` more), so ZeroMQ drops a connection that
  sends a longer frame while reading it, before anything is stored. It cannot be checked later:
  by the time the process reads a subscription, libzmq has already put it in its tries, and a peer
  sending faster than that keeps the process's thread inside libzmq (tried: a length check here let
  a flood of 1 KB prefixes hold the loop 34 s and reach 4.7 GB). Such a cut shows here only as that connection's end (``disconnects``).
- **Topic**: a prefix is applied only if it can match a topic this publisher publishes
  (``proto.topics.subscribable``; the empty prefix, everything, always can). One that only another
  publisher publishes is not applied and counted as ``elsewhere`` (a subscriber connected to several
  publishers sends each all its prefixes); any other is refused, counted and logged.
- **Caps**: distinct prefixes held per peer (``bus.subscriptions_per_peer``) and per socket
  (``bus.subscriptions_per_socket``). Refused prefixes count too: in manual mode libzmq still keeps
  each one, to send its unsubscription when the peer leaves. A peer over its cap, or the largest
  holder when the socket is over its own, is **cut off**: ``shutdown(2)`` of its connections'
  descriptors (known from the socket monitor), which libzmq handles as the peer closing, freeing
  all it held for them. For ``CUT_OFF_S`` after, its new connections are ended as they come (a
  ZeroMQ socket reconnects at once and sends all its subscriptions again); then it starts anew.
- **Peer**: on ipc a process (the pid libzmq reports in each message's ``Peer-Address``, which
  is ``SO_PEERCRED`` of the connection; the same is read from each accepted descriptor), on tcp a
  host (its address): every local tcp peer shares one budget until CURVE identities give a
  better key. A peer's prefixes are forgotten when its last connection ends; an unsubscription
  releases one only while the peer has a single connection (with two, the other may still hold it).
- **Memory back**: glibc keeps freed small blocks for reuse; once a peer that held many prefixes
  has gone, ``malloc_trim(0)`` hands them back to the system.

A small ``RCVHWM`` on the socket (``bus.sockets``) makes a flooding peer wait for the process
instead of queueing its subscriptions inside libzmq. The send path is untouched: an XPUB sends
exactly as a PUB does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq

from bus.ratelimit import RateLimitedLog
from bus.reactor import Reactor
from bus.settings import BusSettings
from bus.sockets import drain

log = logging.getLogger(__name__)

_MONITOR_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED
_EVENT = struct.Struct("=HI")  # a monitor event's first frame: event (uint16), value (uint32: the fd)
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
# A peer that held at least this many prefixes makes its leaving worth a malloc_trim; so does a
# burst of this many messages read (what libzmq took in from a flood), once it has all been read.
TRIM_AFTER_PREFIXES = 64
TRIM_AFTER_MESSAGES = 10_000
# Wait this long after it left: libzmq frees its tries when the process next looks at the socket.
TRIM_DELAY_S = 0.5
# A peer cut off is kept off this long: each reconnection would make libzmq take in a burst of its
# subscriptions again before they can be judged.
CUT_OFF_S = 5.0
# Peers remembered as cut off at most (the oldest forgotten first): one entry per process or host.
MAX_CUT_OFF_PEERS = 1_024


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on a C library without it."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


@dataclass
class _Peer:
    fds: set[int] = field(default_factory=set)  # its connections to this socket
    prefixes: set[bytes] = field(default_factory=set)  # distinct prefixes it holds, applied or not
    cut: bool = False  # cut off: everything it sends is refused until its last connection ends


class SubscriptionGuard:
    """Reads, polices and applies the subscriptions sent to one XPUB socket.

    Made before the socket is bound (so the monitor sees every connection); adds its readers to
    ``reactor`` (without one, the owner calls ``drain`` often, e.g. at every heartbeat). ``accepts(prefix)`` says whether a prefix can match a topic of this publisher,
    ``known(prefix)`` whether it can match one of any publisher; ``on_subscribe(prefix)`` is told
    of every subscription applied.
    """

    def __init__(self, sock: zmq.Socket, reactor: Reactor | None, bus: BusSettings, *, name: str,
                 accepts: Callable[[bytes], bool], known: Callable[[bytes], bool] | None = None,
                 on_subscribe: Callable[[str], None] | None = None, cut_off_s: float = CUT_OFF_S) -> None:
        sock.setsockopt(zmq.XPUB_MANUAL, 1)
        self._sock = sock
        self._monitor = sock.get_monitor_socket(_MONITOR_EVENTS)
        self._reactor = reactor
        self._name = name
        self._accepts = accepts
        self._known = known or accepts
        self._on_subscribe = on_subscribe
        self._per_peer = bus.subscriptions_per_peer
        self._per_socket = bus.subscriptions_per_socket
        self._cut_off_s = cut_off_s
        self._peers: dict[str, _Peer] = {}
        self._fd_peer: dict[int, str] = {}
        self._cut_off_until: dict[str, float] = {}  # peer -> time.monotonic() it may come back
        self._held = 0
        self._local: tuple[str, str | int] | None = None  # ("ipc", path) or ("tcp", port), once bound
        self._trim_due: float | None = None
        self._read_since_trim = 0
        self._log = RateLimitedLog(log)
        self.accepted = 0
        self.elsewhere = 0
        self.refused: dict[str, int] = {}
        self.not_subscriptions = 0
        self.cuts = 0
        self.kept_off = 0
        self.connections = 0
        self.disconnects = 0
        self.trims = 0
        if reactor is not None:
            reactor.add_reader(self._monitor, self.read_monitor)
            reactor.add_reader(sock, self.drain)

    # -- subscriptions ---------------------------------------------------------------------------

    def drain(self, limit: int = 1_000) -> int:
        self.read_monitor()  # every connection's fd is known before its subscriptions are judged
        sock = self._sock
        n = 0
        while n < limit:
            # Not ZMQ_EVENTS before each message: that makes libzmq take in (and store) all the
            # subscriptions waiting on every connection, each time. recv does so only when what it
            # has taken in is read, or once in 100 messages, so a flood cannot outrun the judging.
            try:
                frame = sock.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                if self._read_since_trim + n >= TRIM_AFTER_MESSAGES:
                    self._schedule_trim()  # a burst is over: what it held in libzmq is freed
                break
            n += 1
            if frame.more:  # read part by part: a peer's message of many parts is never gathered
                parts = 1
                while sock.getsockopt(zmq.RCVMORE):
                    sock.recv(zmq.NOBLOCK, copy=False)
                    parts += 1
                self._not_a_subscription(f"{parts} frames")
                continue
            data = frame.bytes
            if not data or data[0] > 1:
                self._not_a_subscription(f"{len(data)} bytes, {data[:16].hex()}")
                continue
            try:
                address = frame.get("Peer-Address")
            except zmq.ZMQError:
                continue  # libzmq's own unsubscription for a peer that left: nothing to undo
            if data[0] == 1:
                self._subscribe(data[1:], self._key(address))
            else:
                self._unsubscribe(data[1:], self._key(address))
        self._read_since_trim += n
        if self._reactor is None and self._trim_due is not None and time.monotonic() >= self._trim_due:
            self._trim()
        return n

    def _subscribe(self, prefix: bytes, key: str) -> None:
        peer = self._peers.get(key)
        if peer is None or not peer.fds:
            self.read_monitor()  # a connection accepted since this drain began
            peer = self._peers.get(key)
        if peer is not None and peer.cut:
            self._refuse("cut_off", key, prefix)
            return
        if peer is None or not peer.fds:
            # None of its connections is known any more: it has gone (a subscription read after
            # its connection ended). libzmq frees what it held; applying it would do nothing
            # (or, if libzmq has not yet noticed the end, hold it until it does).
            self._refuse("gone", key, prefix)
            return
        ours = self._accepts(prefix)
        if prefix not in peer.prefixes:
            if len(peer.prefixes) >= self._per_peer:
                self._refuse("peer_cap", key, prefix)
                self._cut(key, peer, f"over {self._per_peer} subscriptions")
                return
            if self._held >= self._per_socket:
                self._refuse("socket_cap", key, prefix)
                biggest = max(self._peers, key=lambda k: len(self._peers[k].prefixes))
                self._cut(biggest, self._peers[biggest], f"the socket is over {self._per_socket} subscriptions "
                                                         f"and this peer holds the most")
                return
            peer.prefixes.add(prefix)
            self._held += 1
        if not ours:
            if self._known(prefix):
                self.elsewhere += 1
            else:
                self._refuse("unknown_topic", key, prefix)
            return
        self._sock.setsockopt(zmq.SUBSCRIBE, prefix)
        self.accepted += 1
        if self._on_subscribe is not None:
            self._on_subscribe(prefix.decode(errors="replace"))

    def _unsubscribe(self, prefix: bytes, key: str) -> None:
        self._sock.setsockopt(zmq.UNSUBSCRIBE, prefix)  # nothing if that connection never had it
        peer = self._peers.get(key)
        if peer is not None and len(peer.fds) == 1 and prefix in peer.prefixes:
            peer.prefixes.discard(prefix)
            self._held -= 1

    def _refuse(self, kind: str, key: str, prefix: bytes) -> None:
        self.refused[kind] = self.refused.get(kind, 0) + 1
        self._log.warning(kind, f"PUB {self._name}: refused a subscription from {key} ({kind}): {prefix!r}")

    def _not_a_subscription(self, detail: str) -> None:
        # Anything else a peer sends to a PUB is garbage: counted, logged (rate-limited), dropped.
        self.not_subscriptions += 1
        self._log.warning("xpub", f"PUB {self._name}: not a subscription: {detail}")

    # -- peers and their connections ---------------------------------------------------------------

    def read_monitor(self) -> None:
        drain(self._monitor, 2, self._on_monitor_event, sys.maxsize)  # to the end: a fd left unknown is misjudged

    def _on_monitor_event(self, frames: list[bytes]) -> None:
        event, fd = _EVENT.unpack_from(frames[0])
        if event == zmq.EVENT_ACCEPTED:
            self._accepted(fd)
        elif event == zmq.EVENT_DISCONNECTED:
            self._disconnected(fd)

    def _accepted(self, fd: int) -> None:
        self.connections += 1
        key = self._peer_of_fd(fd)
        if key is None:
            return  # gone already; its end is on its way as an event too
        stale = self._fd_peer.pop(fd, None)  # an fd reused before its end was read: not possible, but cheap
        if stale is not None:
            self._forget_fd(fd, stale)
        self._fd_peer[fd] = key
        peer = self._peers.setdefault(key, _Peer())
        peer.fds.add(fd)
        until = self._cut_off_until.get(key)
        if until is not None and time.monotonic() < until:
            peer.cut = True
        if peer.cut:  # back before its time is out, or before all its old connections ended
            self.kept_off += 1
            self._shutdown(fd, key)

    def _disconnected(self, fd: int) -> None:
        self.disconnects += 1
        key = self._fd_peer.pop(fd, None)
        if key is not None:
            self._forget_fd(fd, key)

    def _forget_fd(self, fd: int, key: str) -> None:
        peer = self._peers.get(key)
        if peer is None:
            return
        peer.fds.discard(fd)
        if peer.fds:
            return
        del self._peers[key]
        self._held -= len(peer.prefixes)
        if len(peer.prefixes) >= TRIM_AFTER_PREFIXES or peer.cut:
            self._schedule_trim()

    def _cut(self, key: str, peer: _Peer, reason: str) -> None:
        peer.cut = True
        self.cuts += 1
        now = time.monotonic()
        self._cut_off_until = {k: t for k, t in self._cut_off_until.items() if t > now}
        while len(self._cut_off_until) >= MAX_CUT_OFF_PEERS:
            del self._cut_off_until[next(iter(self._cut_off_until))]
        self._cut_off_until[key] = now + self._cut_off_s
        done = sum(self._shutdown(fd, key) for fd in list(peer.fds))
        self._log.warning("cut", f"PUB {self._name}: cut off {key}: {reason} ({len(peer.prefixes)} held, "
                                 f"{done} connection(s) closed)")

    def _shutdown(self, fd: int, key: str) -> bool:
        """End one connection as if the peer had closed it; only if ``fd`` is still a connection
        of that peer to this socket (a descriptor number can be reused once its connection ended)."""
        try:
            conn = socket.socket(fileno=os.dup(fd))
        except OSError:
            return False
        with conn:
            try:
                if not self._is_ours(conn) or self._key_of(conn) != key:
                    return False
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                return False
        return True

    def _peer_of_fd(self, fd: int) -> str | None:
        try:
            conn = socket.socket(fileno=os.dup(fd))
        except OSError:
            return None
        with conn:
            try:
                return self._key_of(conn)
            except OSError:
                return None

    def _key_of(self, conn: socket.socket) -> str:
        if conn.family == socket.AF_UNIX:
            pid, _uid, _gid = _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                               _PEERCRED.size))
            return f"pid {pid}"
        return str(conn.getpeername()[0])

    def _key(self, address: str) -> str:
        """The peer's key from libzmq's ``Peer-Address``: ``host:uid:gid:pid`` on ipc, the
        address on tcp."""
        if self._local_address()[0] == "ipc":
            return "pid " + address.rsplit(":", 1)[-1]
        return address

    def _is_ours(self, conn: socket.socket) -> bool:
        transport, where = self._local_address()
        local = conn.getsockname()
        if transport == "ipc":
            return conn.family == socket.AF_UNIX and local == where
        return conn.family in (socket.AF_INET, socket.AF_INET6) and local[1] == where

    def _local_address(self) -> tuple[str, str | int]:
        if self._local is None:
            endpoint = self._sock.getsockopt(zmq.LAST_ENDPOINT).decode()
            transport, _, rest = endpoint.partition("://")
            self._local = (transport, rest if transport == "ipc" else int(rest.rsplit(":", 1)[1]))
        return self._local

    # -- memory back ---------------------------------------------------------------------------------

    def _schedule_trim(self) -> None:
        if _TRIM is None or self._trim_due is not None:
            return
        self._trim_due = time.monotonic() + TRIM_DELAY_S
        if self._reactor is not None:
            self._reactor.call_later(TRIM_DELAY_S, self._trim)

    def _trim(self) -> None:
        self._trim_due = None
        self.drain()  # take libzmq's unsubscriptions for the peers that left, freeing them
        self._read_since_trim = 0
        assert _TRIM is not None
        _TRIM(0)
        self.trims += 1

    # -- lifecycle -------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {"held": self._held, "peers": len(self._peers), "accepted": self.accepted, "elsewhere": self.elsewhere,
                "refused": dict(self.refused), "not_subscriptions": self.not_subscriptions, "cuts": self.cuts,
                "kept_off": self.kept_off,
                "connections": self.connections, "disconnects": self.disconnects, "trims": self.trims}

    def close(self) -> None:
        """Stop reading; the caller closes the XPUB socket itself."""
        if self._reactor is not None:
            self._reactor.remove_reader(self._sock)
            self._reactor.remove_reader(self._monitor)
        self._sock.disable_monitor()
        self._monitor.close(linger=0)
