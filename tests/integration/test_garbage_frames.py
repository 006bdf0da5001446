"""Hostile bytes on every service's command socket: counted, answered with an error, never fatal.

Raw ZeroMQ sockets (a DEALER, as the CommandClient uses, and a REQ) send frames that are not valid
commands. Each service must keep running (same pid under supervisord), answer each decodable
garbage request with an error reply, count it in ``status`` → ``bus.commands.rejected``, and still
answer a valid ``status`` afterwards. One daemon is shared by all services' cases.
"""

from __future__ import annotations

import random
import time

import msgpack
import pytest
import zmq

import proto

from .daemon import Daemon, command_services

SEED = 20260119
RANDOM = random.Random(SEED)


def _envelope(v: int, type_: str, body: object) -> bytes:
    return msgpack.packb([v, type_, "itest", 1, 1, time.time_ns(), body])


def _valid_command(name: str = "status", args: dict | None = None) -> bytes:
    return proto.encode("itest", 1, 1, time.time_ns(), proto.Command(id=f"g{RANDOM.random()}", name=name, args=args or {}))


# (label, message frame, the rejected-counter key it must increase)
GARBAGE: list[tuple[str, bytes, str]] = [
    ("random bytes", RANDOM.randbytes(64), "malformed"),
    ("empty frame", b"", "malformed"),
    ("truncated msgpack", _valid_command()[:-7], "malformed"),
    ("msgpack map, not an envelope", msgpack.packb({"name": "status", "args": {}}), "malformed"),
    ("msgpack int", msgpack.packb(42), "malformed"),
    ("envelope too short", msgpack.packb([1, "command", "itest"]), "malformed"),
    ("future schema version", _envelope(99, "command", {"id": "x", "name": "status", "args": {}}), "version"),
    ("unknown message type", _envelope(1, "no_such_type", {}), "unknown_type"),
    ("command body of the wrong shape", _envelope(1, "command", {"id": 5, "name": ["status"]}), "invalid"),
    ("command body that is a list", _envelope(1, "command", [1, 2, 3]), "invalid"),
    ("unknown command", _valid_command("no_such_command"), "unknown_command"),
    ("status with unknown args", _valid_command("status", {"bogus": 1}), "invalid"),
]


def _rejected(d: Daemon, service: str) -> dict[str, int]:
    return dict(d.request(service, "status")["bus"]["commands"]["rejected"])


def _recv(sock: zmq.Socket, timeout_ms: int = 2000) -> list[bytes] | None:
    if not sock.poll(timeout_ms, zmq.POLLIN):
        return None
    return sock.recv_multipart()


def _assert_error_reply(frame: bytes, label: str) -> None:
    env = proto.decode(frame)
    assert isinstance(env.body, proto.Reply), (label, env)
    assert env.body.ok is False and env.body.error, (label, env.body)


@pytest.mark.parametrize("service", command_services())
def test_garbage_on_the_command_socket_is_rejected_and_counted(module_daemon: Daemon, service: str) -> None:
    d = module_daemon
    d.wait_running()
    pid = d.pid_of(service)
    assert d.request(service, "status")["pid"] == pid
    before = _rejected(d, service)
    endpoint = d.endpoints.cmd(service)
    sec = d.security()  # garbage from an authenticated peer: a stranger's never passes the handshake
    ctx = zmq.Context()
    expected: dict[str, int] = {}
    try:
        # A DEALER: one frame per request; every request gets an error reply.
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        sec.connect(dealer, endpoint, service)
        for label, frame, kind in GARBAGE:
            dealer.send(frame)
            reply = _recv(dealer)
            assert reply is not None, f"{service}: no reply to {label}"
            _assert_error_reply(reply[-1], label)
            expected[kind] = expected.get(kind, 0) + 1
        # several frames at once: only the last is the message, the rest is taken as the route
        dealer.send_multipart([b"x", b"y", RANDOM.randbytes(16)])
        expected["malformed"] += 1
        _recv(dealer, 500)  # the reply, if any, goes to the route it came from; not required
        dealer.close()

        # A REQ: an empty delimiter frame before the message; the reply comes back the same way.
        for label, frame, kind in GARBAGE[:4]:
            req = ctx.socket(zmq.REQ)
            req.setsockopt(zmq.LINGER, 0)
            sec.connect(req, endpoint, service)
            req.send(frame)
            reply = _recv(req)
            assert reply is not None, f"{service}: no reply to {label} from a REQ socket"
            _assert_error_reply(reply[-1], label)
            expected[kind] += 1
            req.close()

        # Oversized: bigger than bus.max_message_bytes. ZeroMQ (MAXMSGSIZE) drops the sender's
        # connection before the service sees the frame, so there is no reply to wait for.
        big = ctx.socket(zmq.DEALER)
        big.setsockopt(zmq.LINGER, 0)
        sec.connect(big, endpoint, service)
        big.send(b"\x92" + RANDOM.randbytes(d.bus.max_message_bytes + 1024))
        assert _recv(big, 500) is None
        big.close()
        req = ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        sec.connect(req, endpoint, service)
        req.send(b"\x00" * (d.bus.max_message_bytes + 1))
        assert _recv(req, 500) is None
        req.close()
    finally:
        ctx.destroy(linger=0)

    # still the same process, still answering, and every rejection counted by kind
    status = d.request(service, "status")
    assert status["pid"] == pid
    assert d.pid_of(service) == pid
    assert d.process_info(service)["statename"] == "RUNNING"
    after = dict(status["bus"]["commands"]["rejected"])
    for kind, n in expected.items():
        assert after.get(kind, 0) - before.get(kind, 0) == n, (kind, before, after)
    assert sum(after.values()) - sum(before.values()) == sum(expected.values()), (before, after)
    assert status["bus"]["loop_errors"] == 0
    # logged (rate-limited: at least one line per kind)
    log = d.program_log(service).read_text(errors="replace")
    for kind in expected:
        assert f"bad command request ({kind})" in log, (kind, log[-2000:])
