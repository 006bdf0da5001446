"""Hostile input on every socket of the running daemon that accepts input, under live market data.

* each process's ROUTER command socket (the five services and the venue simulator): seeded garbage
  (``garbage.command_inputs``: random bytes, random and truncated MessagePack, mutated commands,
  wrong versions and types, bodies of the wrong shape, non-commands, unknown commands, invalid
  arguments to every command including the state-changing ones, one-frame / REQ-style /
  multi-frame layouts) pipelined 200 at a time, plus frames over ``bus.max_message_bytes``;
* the venue simulator's XPUB (it reads subscription frames): frames that are not subscriptions,
  empty and multi-frame messages, binary subscriptions, oversized frames;
* replayed command ids: ``submit_order`` to the exchange manager and ``new_order`` to the venue,
  sent again with the same id (also after a flood of garbage): the handler runs once.

Required for every target: the same pid before and after (supervisord's and the process's own
word), still answering ``status``, still heartbeating; every request answered (an error for each
bad one, with the id when there is one); the process's counters (``status`` →
``bus.commands.rejected`` per kind, ``duplicates``) moved by exactly what was sent; the log says
so once per kind per interval (``bad command request (<kind>)``), never once per input.

Counts: ``make test`` sends ~21,000 inputs across the sockets; the slow run ~110,000 more.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter, deque
from typing import Any

import pytest
import zmq
from integration.daemon import Daemon, command_services, wait_until

import proto
from bus.curve import CURVE_MESSAGE_OVERHEAD, HANDSHAKE_FRAME_BYTES
from bus.sockets import SUBSCRIPTION_FRAME_OVERHEAD

from . import figures, garbage
from .support import (
    alive_and_serving,
    ask,
    command_stats,
    fuzz_security,
    heartbeat_pids,
    log_kinds,
    served_commands,
    wait_routed,
)

SEED = 0xC0DE_F022
WINDOW = 200  # requests in flight; below the daemon's command HWM (1,000 in FUZZ_CONFIG)
LOG_INTERVAL_S = 5.0  # bus.ratelimit.RateLimitedLog's default
BAD_COMMAND_LOG = r"bad command request \((\w+)\)"
SERVICES = command_services()
QUICK_PER_SERVICE = 3_300
FULL_PER_SERVICE = 17_000
REJECT_KINDS = set(garbage.REJECT_KINDS)


def _recv(sock: zmq.Socket, timeout_ms: int) -> list[bytes] | None:
    if not sock.poll(timeout_ms, zmq.POLLIN):
        return None
    return sock.recv_multipart()


def _check_reply(frames: list[bytes], verdict: str, cid: str, sent_frames: list[bytes], service: str) -> None:
    # the reply travels the same route: the frames before the message come back as they were sent
    assert frames[:-1] == sent_frames[:-1], (service, verdict, frames[:-1], sent_frames[:-1])
    env = proto.decode(frames[-1])
    reply = env.body
    assert isinstance(reply, proto.Reply), (service, verdict, env)
    if verdict in REJECT_KINDS:
        assert reply.ok is False and reply.error, (service, verdict, reply)
        assert reply.id == cid, (service, verdict, reply.id, cid)
    elif verdict == "accepted":
        assert reply.ok is True and reply.id == cid, (service, verdict, reply)


def _fuzz_command_socket(d: Daemon, service: str, n: int, seed: int) -> None:
    served = served_commands(d, service)
    pid = d.pid_of(service)
    before = command_stats(d, service)
    assert before["pid"] == pid
    log = d.program_log(service)
    logged_before = log_kinds(log, BAD_COMMAND_LOG)
    oracle = garbage.CommandOracle(served, d.bus.max_message_bytes, service)
    rng = random.Random(seed)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    fuzz_security(d).connect(sock, d.endpoints.cmd(service), service)
    pending: deque[tuple[str, str, list[bytes]]] = deque()
    sent = skipped = replies = 0
    categories: Counter[str] = Counter()
    t0 = time.monotonic()

    def collect(until: int) -> None:
        nonlocal replies
        while len(pending) > until:
            frames = _recv(sock, 15_000)
            assert frames is not None, (f"{service}: no reply within 15s with {len(pending)} request(s) pending; "
                                        f"oldest: {pending[0][0]} {pending[0][2]!r:.200}")
            verdict, cid, sent_frames = pending.popleft()
            _check_reply(frames, verdict, cid, sent_frames, service)
            replies += 1

    try:
        for category, frames, payload in garbage.command_inputs(rng, n, {"served": served}):
            verdict, cmd = oracle.admit(payload)
            if verdict is None:
                skipped += 1
                continue
            cid = cmd.id if cmd is not None else ""  # a request that does not decode is answered with ""
            sock.send_multipart(frames)
            pending.append((verdict, cid, frames))
            categories[category.split("/")[0]] += 1
            sent += 1
            if len(pending) >= WINDOW:
                collect(WINDOW // 2)
        collect(0)
        # frames over max_message_bytes: ZeroMQ (MAXMSGSIZE) cuts the sender off before the
        # process sees them; one socket each, since the connection is dropped
        oversized = 0
        for size in (d.bus.max_message_bytes + 1, d.bus.max_message_bytes + 4096, 4 * d.bus.max_message_bytes):
            big = ctx.socket(zmq.DEALER)
            big.setsockopt(zmq.LINGER, 0)
            fuzz_security(d).connect(big, d.endpoints.cmd(service), service)
            big.send(b"\x92" + rng.randbytes(size))
            assert _recv(big, 300) is None, f"{service} answered a frame of {size} bytes"
            big.close()
            oversized += 1
    finally:
        sock.close(linger=0)
        ctx.destroy(linger=0)
    duration = time.monotonic() - t0

    wrong = alive_and_serving(d, {service: pid})
    after = command_stats(d, service)
    observed = {k: after["rejected"].get(k, 0) - before["rejected"].get(k, 0) for k in REJECT_KINDS | set(after["rejected"])}
    observed = {k: v for k, v in observed.items() if v}
    expected = {k: v for k, v in oracle.expected.items() if k in REJECT_KINDS}
    observed_dups = after["duplicates"] - before["duplicates"]
    figures.record(f"ROUTER {service}", sent + oversized, crashes=len(wrong),
                   expected={**expected, "duplicate": oracle.expected["duplicate"]},
                   observed={**observed, "duplicate": observed_dups}, dropped_by_transport=oversized,
                   note=f"seed {seed:#x}: {sent} sent, {skipped} valid non-read-only mutations not sent, "
                        f"{replies} replies, {duration:.1f}s")
    assert not wrong, wrong
    assert replies == sent, (service, replies, sent)
    assert observed == expected, (service, "rejected counters", observed, "sent", expected)
    assert observed_dups == oracle.expected["duplicate"], (service, observed_dups, oracle.expected["duplicate"])
    assert after["handler_errors"] == before["handler_errors"], (service, before, after)
    assert after["loop_errors"] == 0, (service, after)

    # logged once per kind per interval: bounded, never one line per input
    def logged() -> Counter[str]:
        return log_kinds(log, BAD_COMMAND_LOG)

    wait_until(lambda: set(expected) <= set(logged()), 10, message=lambda: f"{service}: kinds logged {logged()}")
    new_lines = logged() - logged_before
    bound = math.ceil((time.monotonic() - t0) / LOG_INTERVAL_S) + 1
    too_many = {k: v for k, v in new_lines.items() if v > bound}
    assert not too_many, (service, f"more than {bound} line(s) per kind", too_many, "for", expected)
    assert sum(new_lines.values()) <= len(expected) * bound < sum(expected.values())


@pytest.mark.parametrize("service", SERVICES)
def test_command_socket_fuzz(fuzz_daemon: Daemon, service: str) -> None:
    _fuzz_command_socket(fuzz_daemon, service, QUICK_PER_SERVICE, SEED + SERVICES.index(service))


@pytest.mark.slow
@pytest.mark.parametrize("service", SERVICES)
def test_command_socket_fuzz_full(fuzz_daemon: Daemon, service: str) -> None:
    _fuzz_command_socket(fuzz_daemon, service, FULL_PER_SERVICE, SEED + 0x100 + SERVICES.index(service))


# -- the venue simulator's XPUB --------------------------------------------------------------------


def _xpub_garbage(rng: random.Random, n: int, max_frame: int) -> tuple[list[list[bytes]], int]:
    """Messages an XSUB peer can send to an XPUB: returns (messages, how many are not subscriptions).
    A frame starting with 0 or 1 is an (un)subscription, legitimate even for a binary topic. No
    frame is over ``max_frame``: a PUB's transport cuts the connection on a longer one (the longest
    subscription, ``bus.max_subscription_bytes``), which is tried apart. The garbage topics come
    from a pool of 300, under the PUB's cap of prefixes per peer, over which it would cut the peer
    off (``tests/faults/test_7_memory_floods.py`` floods it)."""
    out: list[list[bytes]] = []
    bad = 0
    topics = [rng.randbytes(rng.randint(0, 40)) for _ in range(300)]
    for _ in range(n):
        r = rng.random()
        if r < 0.15:
            out.append([b"\x01" + rng.choice(topics)])  # subscribe to a garbage topic
        elif r < 0.25:
            out.append([b"\x00" + rng.randbytes(rng.randint(0, 40))])  # unsubscribe from one never held
        elif r < 0.35:
            out.append([b""])
            bad += 1
        elif r < 0.75:
            first = bytes([rng.randrange(2, 256)])
            out.append([first + rng.randbytes(rng.randint(0, max_frame - 1))])
            bad += 1
        else:
            parts = [bytes([rng.randrange(2, 256)]) + rng.randbytes(rng.randint(0, 30))
                     for _ in range(rng.randint(2, 5))]
            out.append(parts)
            bad += 1
    return out, bad


def _venue_garbage_counters(status: dict[str, Any]) -> int:
    """What the venue counted as not a subscription on its PUB (an XPUB) socket."""
    return status["bus"]["publisher"]["rejected"]


def _fuzz_xpub(d: Daemon, n: int, seed: int) -> dict[str, Any]:
    service = "venue_sim"
    pid = d.pid_of(service)
    before = ask(d, service, "status")
    router_before = ask(d, "data_router", "status")["bus"]["subscriptions"]
    rng = random.Random(seed)
    # the longest frame the PUB takes (its ZMQ_MAXMSGSIZE): with CURVE that limit is on the
    # encrypted frame, which the handshake needs at least HANDSHAKE_FRAME_BYTES of (bus/curve.py)
    max_frame = (HANDSHAKE_FRAME_BYTES - CURVE_MESSAGE_OVERHEAD if d.bus.curve
                 else SUBSCRIPTION_FRAME_OVERHEAD + d.bus.max_subscription_bytes)
    messages, bad = _xpub_garbage(rng, n, max_frame)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.XSUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    fuzz_security(d).connect(sock, d.endpoints.pub(service), service)
    t0 = time.monotonic()
    oversized = 0
    try:
        time.sleep(0.2)  # the connection is made in the background; an XSUB drops what it cannot send
        for parts in messages:
            sock.send_multipart(parts)
        for size in (max_frame, d.bus.max_message_bytes + 1, 3 * d.bus.max_message_bytes):
            big = ctx.socket(zmq.XSUB)
            big.setsockopt(zmq.LINGER, 0)
            fuzz_security(d).connect(big, d.endpoints.pub(service), service)
            time.sleep(0.1)
            big.send(b"\x07" + rng.randbytes(size))
            oversized += 1
            big.close()
        time.sleep(1.0)  # let the venue read it all
    finally:
        sock.close(linger=0)
        ctx.destroy(linger=0)
    wrong = alive_and_serving(d, {service: pid})
    after = ask(d, service, "status")
    # market data still flows from the venue to the data router
    feed = [name for name in router_before if "venue_sim" in name]
    assert feed, router_before

    def flowing() -> bool:
        now = ask(d, "data_router", "status")["bus"]["subscriptions"]
        return all(now[name]["received"] > router_before[name]["received"] + 100 for name in feed)

    wait_until(flowing, 15, message="market data from the venue stopped reaching the data router")
    counted = _venue_garbage_counters(after) - _venue_garbage_counters(before)
    figures.record(f"XPUB {service}", n + oversized, crashes=len(wrong), expected={"not a subscription": bad},
                   observed={"not a subscription": counted}, dropped_by_transport=oversized,
                   note=f"seed {seed:#x}: {n} messages, {bad} not subscriptions, {time.monotonic() - t0:.1f}s")
    return {"wrong": wrong, "bad": bad, "counted": counted, "before": before, "after": after}


@pytest.fixture(scope="module")
def xpub_quick(fuzz_daemon: Daemon) -> dict[str, Any]:
    return _fuzz_xpub(fuzz_daemon, 3_000, SEED + 0x200)


def test_xpub_survives_garbage(xpub_quick: dict[str, Any]) -> None:
    assert not xpub_quick["wrong"], xpub_quick["wrong"]
    assert xpub_quick["after"]["bus"]["loop_errors"] == 0


def test_xpub_garbage_is_counted(xpub_quick: dict[str, Any]) -> None:
    """Every message that is not a subscription is counted in the venue's ``status``
    (``bus.publisher.rejected``), as every other socket counts its bad input."""
    assert xpub_quick["counted"] == xpub_quick["bad"], (
        f"sent {xpub_quick['bad']} non-subscription messages to the venue's XPUB; "
        f"its status counted {xpub_quick['counted']}")


@pytest.mark.slow
def test_xpub_survives_garbage_full(fuzz_daemon: Daemon) -> None:
    result = _fuzz_xpub(fuzz_daemon, 20_000, SEED + 0x201)
    assert not result["wrong"], result["wrong"]


# -- replayed command ids: the handler runs once ----------------------------------------------------


def _send_same(d: Daemon, service: str, frame: bytes, times: int, identity: str = "") -> list[proto.Reply]:
    """Send the same request ``times`` times, each on a new connection (a client that timed out,
    replaced its socket and retried), and return the replies; as ``identity`` (default the fuzzer)."""
    sec = d.security(identity) if identity else fuzz_security(d)
    ctx = zmq.Context()
    out = []
    try:
        for _ in range(times):
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sec.connect(sock, d.endpoints.cmd(service), service)
            sock.send(frame)
            frames = _recv(sock, 10_000)
            assert frames is not None, f"{service}: no reply"
            out.append(proto.decode(frames[-1]).body)
            sock.close()
    finally:
        ctx.destroy(linger=0)
    return out


def _garbage_flood(d: Daemon, service: str, n: int) -> int:
    """``n`` invalid commands, each with a new id; returns how many were answered."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    fuzz_security(d).connect(sock, d.endpoints.cmd(service), service)
    rng = random.Random(n)
    answered = in_flight = 0
    try:
        for i in range(n):
            sock.send(garbage.command("status", {garbage.FUZZ_ARG: i}, cid=garbage.new_id(rng)))
            in_flight += 1
            if in_flight >= WINDOW:
                while in_flight > WINDOW // 2:
                    assert _recv(sock, 15_000) is not None
                    in_flight -= 1
                    answered += 1
        while in_flight:
            assert _recv(sock, 15_000) is not None
            in_flight -= 1
            answered += 1
    finally:
        sock.close(linger=0)
        ctx.destroy(linger=0)
    return answered


def _em_orders(d: Daemon, strategy: str) -> list[dict[str, Any]]:
    return [o for o in ask(d, "exchange_manager", "orders")["orders"] if o.get("strategy") == strategy]


def _venue_orders(d: Daemon, client_order_id: str) -> list[dict[str, Any]]:
    return [o for o in ask(d, "venue_sim", "open_orders")["orders"] if o["client_order_id"] == client_order_id]


def _resting_order(strategy: str) -> dict[str, Any]:
    # below the touch (SOL-USD about 150, inside the gate's price collar): it rests at the venue until cancelled
    return {"symbol": "SOL-USD", "side": "buy", "qty": 0.01, "order_type": "limit", "limit_price": 140.0,
            "strategy": strategy}


def _submit_twice(d: Daemon, strategy: str, flood: int) -> None:
    d.wait_state("live", timeout=30)
    wait_routed(d, "SOL-USD")
    rng = random.Random(strategy)
    cid = garbage.new_id(rng)
    frame = garbage.command("submit_order", _resting_order(strategy), cid=cid)
    before = command_stats(d, "exchange_manager")
    first = _send_same(d, "exchange_manager", frame, 1)[0]
    assert first.ok, first.error
    coid = first.result["client_order_id"]
    wait_until(lambda: len(_venue_orders(d, coid)) == 1, 10)
    answered = _garbage_flood(d, "exchange_manager", flood) if flood else 0
    assert answered == flood
    again = _send_same(d, "exchange_manager", frame, 2)
    try:
        time.sleep(0.5)  # a second order, if one was sent, reaches the venue by now
        after = command_stats(d, "exchange_manager")
        ours = _em_orders(d, strategy)
        venue_ours = [o for o in ask(d, "venue_sim", "open_orders")["orders"]
                      if o["client_order_id"] in {x["client_order_id"] for x in ours}]
        evidence = (f"command id {cid} sent once, then {flood} garbage requests, then resent twice: "
                    f"replies {[first.result] + [r.result for r in again]}; the exchange manager holds "
                    f"{len(ours)} order(s) {[o['client_order_id'] for o in ours]}, the venue "
                    f"{len(venue_ours)} open; command duplicates +{after['duplicates'] - before['duplicates']}")
        figures.record("replayed command ids", 3 + flood,
                       expected={"orders at the venue": 1}, observed={"orders at the venue": len(venue_ours)})
        assert all(r.ok and r.id == cid for r in again), again
        assert all(r.result == first.result for r in again), f"the resent command ran again: {evidence}"
        assert len(ours) == 1, evidence
        assert len(venue_ours) == 1, evidence
        assert after["duplicates"] - before["duplicates"] == 2, evidence
    finally:
        for order in _em_orders(d, strategy):
            if order["status"] in ("new", "acknowledged", "partially_filled"):
                d.call("exchange_manager", "cancel_order", timeout_s=5.0, retries=2,
                       client_order_id=order["client_order_id"])


def test_replayed_submit_order_runs_once(fuzz_daemon: Daemon) -> None:
    _submit_twice(fuzz_daemon, "fz-replay", flood=0)


def test_replayed_submit_order_runs_once_after_a_garbage_flood(fuzz_daemon: Daemon) -> None:
    """A retry that comes after more bad requests than the idempotency cache holds (each answered
    with an error under its own id) must still get the first reply: garbage must not evict the
    replies of commands that ran, or a client's retry places a second order."""
    flood = fuzz_daemon.bus.command_cache_size + 500
    _submit_twice(fuzz_daemon, "fz-flood", flood=flood)


def test_replayed_venue_new_order_runs_once(fuzz_daemon: Daemon) -> None:
    d = fuzz_daemon
    wait_routed(d, "SOL-USD")
    rng = random.Random("venue")
    coid = f"fz-venue-{rng.getrandbits(64):016x}"
    args = {"client_order_id": coid, "symbol": "SOL-USD", "side": "buy", "qty": 0.01, "order_type": "limit",
            "limit_price": 140.0}
    cid = garbage.new_id(rng)
    # as the exchange manager: the venue takes orders from it alone
    frame = garbage.command("new_order", args, cid=cid, source="exchange_manager")
    before = ask(d, "venue_sim", "status")
    try:
        replies = _send_same(d, "venue_sim", frame, 3, "exchange_manager")
        assert all(r.ok and r.id == cid for r in replies), replies
        assert replies[1].result == replies[0].result == replies[2].result
        mid = ask(d, "venue_sim", "status")
        # the handler ran once: the venue's own duplicate-id check never saw the resends
        assert mid["stats"]["duplicate_ids"] == before["stats"]["duplicate_ids"], (before["stats"], mid["stats"])
        assert mid["bus"]["commands"]["duplicates"] - before["bus"]["commands"]["duplicates"] == 2
        assert len(_venue_orders(d, coid)) == 1
        # the same client order id under a new command id: the handler runs, the venue executes nothing
        other = _send_same(d, "venue_sim", garbage.command("new_order", args, cid=garbage.new_id(rng),
                                                           source="exchange_manager"), 1, "exchange_manager")[0]
        assert other.ok, other
        after = ask(d, "venue_sim", "status")
        assert after["stats"]["duplicate_ids"] == before["stats"]["duplicate_ids"] + 1
        assert len(_venue_orders(d, coid)) == 1
    finally:
        d.call("venue_sim", "cancel_order", timeout_s=5.0, retries=2, client_order_id=coid)
    figures.record("replayed command ids", 4, expected={"venue orders": 1}, observed={"venue orders": 1})


def test_every_process_still_heartbeating_after_the_fuzz(fuzz_daemon: Daemon) -> None:
    """Run last in this module: the whole daemon, every process under its first pid."""
    d = fuzz_daemon
    pids = {s: d.initial_pids[s] for s in SERVICES}  # taken when the daemon had started (conftest)
    assert heartbeat_pids(d, SERVICES) == pids
    assert not alive_and_serving(d, pids)
    assert d.state() in ("live", "degraded"), d.state()
