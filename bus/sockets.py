"""The one place where sockets are created and configured (and, later, secured with CURVE).

Every socket gets an explicit LINGER, high-water marks and a maximum message size, so a peer can
neither make us hold messages forever at exit, nor grow our memory without bound, nor hand us a
frame bigger than the protocol allows (ZeroMQ drops such a peer's connection before Python sees it).
"""

from __future__ import annotations

import zmq

from bus.settings import BusSettings


def make_socket(ctx: zmq.Context, kind: int, bus: BusSettings, *, hwm: int | None = None) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, bus.linger_ms)
    if hwm is None:
        hwm = {zmq.PUB: bus.pub_hwm, zmq.SUB: bus.sub_hwm}.get(kind, bus.command_hwm)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
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
