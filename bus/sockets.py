"""The one place where sockets are created and configured (and, later, secured with CURVE).

Every socket gets an explicit LINGER and high-water marks, so a peer can neither make us hold
messages forever at exit nor grow our memory without bound. Sockets that take requests (ROUTER,
DEALER) also get ZMQ_MAXMSGSIZE: ZeroMQ drops a peer that sends a bigger frame before Python sees
it, and the peer reconnects. SUB sockets do not: libzmq never reconnects a SUB whose publisher sent
one oversized frame, which would silence that publisher for good; there the decoder's own limit
rejects (and counts) the frame instead, and publishers refuse to send oversized messages at all.
PUB and XPUB sockets take only subscriptions from their peers: their ZMQ_MAXMSGSIZE is the frame of
the longest subscription (``bus.max_subscription_bytes`` and ``SUBSCRIPTION_FRAME_OVERHEAD``) and
their receive HWM is small, so no peer can make libzmq store long prefixes or queue many of them
(see ``bus.subscription_guard``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import TypeVar

import zmq

from bus.settings import BusSettings


# What a subscription's frame holds besides its prefix: ZMTP 3.1 (libzmq 4.3 between two 4.3
# peers) sends it as a SUBSCRIBE command, the name's length and the name (10 bytes); ZMTP 3.0 as a
# flag byte. The frame limit must take the longer form, or the longest prefix allowed would cut the
# connection (at ``1 +`` the limit, a prefix over 55 of the 64 bytes allowed did). A 3.0 peer may
# then send 9 bytes more than the limit: ~450 bytes of libzmq's trie per prefix, within the caps.
SUBSCRIPTION_FRAME_OVERHEAD = len(b"\x09SUBSCRIBE")

# Subscriptions queued inside libzmq per connection to a PUB before the process has read them; a
# subscriber sending faster waits (flow control), nothing is lost.
SUBSCRIPTION_HWM = 64

# Plain ints for the options and flags read per message: ``zmq``'s enum members make every ``&`` and
# every call convert them (Python's ``enum``), which cost more than libzmq's own work per message.
NOBLOCK, SNDMORE = int(zmq.NOBLOCK), int(zmq.SNDMORE)


T = TypeVar("T")


class EndpointInUse(Exception):
    """Another live process already serves this endpoint."""


def make_socket(ctx: zmq.Context, kind: int, bus: BusSettings, *, hwm: int | None = None) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, bus.linger_ms)
    if hwm is None:
        hwm = {zmq.PUB: bus.pub_hwm, zmq.XPUB: bus.pub_hwm, zmq.SUB: bus.sub_hwm}.get(kind, bus.command_hwm)
    publishes = kind in (zmq.PUB, zmq.XPUB)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, SUBSCRIPTION_HWM if publishes else hwm)
    if kind == zmq.SUB:
        sock.setsockopt(zmq.MAXMSGSIZE, -1)
    elif publishes:  # a subscription frame: the command (or flag byte) and the prefix
        sock.setsockopt(zmq.MAXMSGSIZE, SUBSCRIPTION_FRAME_OVERHEAD + bus.max_subscription_bytes)
    else:
        sock.setsockopt(zmq.MAXMSGSIZE, bus.max_message_bytes)
    # Reconnect fast to a restarted peer; back off to one second while it stays away.
    sock.setsockopt(zmq.RECONNECT_IVL, 50)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
    if kind == zmq.ROUTER:
        # A reply to a peer that has gone raises instead of vanishing: it is counted, not lost silently.
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    if kind == zmq.DEALER:
        # Queue nothing for a server that is not connected: the client waits and retries instead,
        # so a request is never delivered late to a server that came up after the caller gave up.
        sock.setsockopt(zmq.IMMEDIATE, 1)
    return sock


def bind(sock: zmq.Socket, endpoint: str, *, take_over: bool = False) -> bool:
    """Bind, refusing to take over an ipc endpoint that a live process still serves, unless
    ``take_over``; returns whether it took one over.

    ZeroMQ would silently unlink the other process's socket file and bind anew, leaving that
    process deaf: two copies of a service would then both believe they are the one. A service
    holding its run lock (``services/run_lock.py``) is the only copy there is, so whatever serves its
    endpoint is a squatter: it takes the endpoint back (``take_over``) instead of failing to start.
    """
    taken = False
    if endpoint.startswith("ipc://"):
        path = endpoint[len("ipc://"):]
        if os.path.exists(path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                pass  # a stale file from a process that is gone: safe to bind over
            else:
                if not take_over:
                    raise EndpointInUse(f"{endpoint} is in use by another running process")
                taken = True
            finally:
                probe.close()
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        if exc.errno == zmq.EADDRINUSE:
            raise EndpointInUse(f"{endpoint} is in use by another running process") from None
        raise
    return taken


def drain(sock: zmq.Socket, keep: int, on_message: Callable[[T], object], limit: int,
          receive: Callable[[zmq.Socket, int], T] | None = None) -> int:
    """Hand each message waiting on ``sock`` (at most ``limit``; as ``receive(sock, keep)`` reads it:
    its frames, or with ``recv_request`` its frames and sender) to ``on_message``; returns how many
    were read. The one receive loop of every socket a reactor reads, so each reader only says what
    one message means."""
    read = receive or recv_frames
    n = 0
    # Read until the socket has nothing (zmq.Again, once per wake-up) rather than ask ZMQ_EVENTS
    # before each message: the query costs more than the message itself (3 against ~4 us on this
    # machine's pyzmq, bench/README.md, issue 16).
    while n < limit:
        try:
            message = read(sock, keep)
        except zmq.Again:
            break
        on_message(message)
        n += 1
    return n


def recv_request(sock: zmq.Socket, keep: int) -> tuple[list[bytes], str | None]:
    """One whole message as ``recv_frames`` reads it, and who sent it: the ``User-Id`` the ZAP
    handler gave its connection (``bus.curve``), None on a socket without authentication."""
    first = sock.recv(NOBLOCK, copy=False)
    try:
        user: str | None = first.get("User-Id")
    except zmq.ZMQError:  # no ZAP handler on this socket: nothing authenticated
        user = None
    return recv_frames(sock, keep, first), user


def recv_frames(sock: zmq.Socket, keep: int, first: zmq.Frame | None = None) -> list[bytes]:
    """One whole message (``zmq.NOBLOCK``): its frames if it has at most ``keep``, else its first
    ``keep`` and an empty one more, so the caller refuses it by its count. A peer's message of a
    million parts is read and dropped part by part, never gathered as ``recv_multipart`` would.
    ``first``: its first frame, already read. Frames are read as ``zmq.Frame``s, whose ``more``
    says what a ZMQ_RCVMORE query per frame would, at a fraction of its cost."""
    frame = sock.recv(NOBLOCK, copy=False) if first is None else first
    frames = [frame.bytes]
    extra = 0
    while frame.more:
        frame = sock.recv(NOBLOCK, copy=False)
        if len(frames) < keep:
            frames.append(frame.bytes)
        else:
            extra += 1
    if extra:
        frames.append(b"")  # one too many: the caller refuses the message by its frame count
    return frames
