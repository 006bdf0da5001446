"""bus.CommandServer against requests over the limits of proto.limits, and its reply cache bounded
in bytes as well as entries (a real ROUTER over ipc, driven by a Reactor thread)."""

from __future__ import annotations

from typing import Any

import zmq

import proto
from bus.command_server import ENTRY_OVERHEAD_BYTES
from proto.limits import MAX_ID_CHARS
from test_command import StartServer, command_frame, raw_dealer, recv, reply_of, serve  # noqa: F401 (fixture)


class Echo:
    """``open`` answers with a result of ``size`` bytes (a reply of about that size, cached)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.calls = 0

    def handlers(self) -> dict[str, Any]:
        def open_(_args: proto.Args) -> dict[str, Any]:
            self.calls += 1
            return {"blob": "b" * self.size}

        return {"open": open_}


def test_a_megabyte_id_is_refused_counted_and_never_cached(ctx: zmq.Context, serve: StartServer) -> None:
    echo = Echo(10)
    server, endpoint = serve(echo.handlers())
    dealer = raw_dealer(ctx, endpoint)
    try:
        for i in range(20):
            dealer.send(command_frame(f"{i:04d}" + "x" * 1_000_000, "open", {"reason": "x"}))
            reply = reply_of(recv(dealer))
            assert not reply.ok and reply.id == "" and reply.error.startswith("bad request: too_large: command body of")
    finally:
        dealer.close(linger=0)
    assert echo.calls == 0
    assert server.rejected == {"too_large": 20}
    assert server.stats()["cache"] == {"entries": 0, "bytes": 0, "evictions": 0}


def test_an_id_over_the_limit_is_invalid(ctx: zmq.Context, serve: StartServer) -> None:
    echo = Echo(10)
    server, endpoint = serve(echo.handlers())
    dealer = raw_dealer(ctx, endpoint)
    try:
        dealer.send(command_frame("i" * (MAX_ID_CHARS + 1), "open", {"reason": "x"}))
        reply = reply_of(recv(dealer))
        dealer.send(command_frame("i" * MAX_ID_CHARS, "open", {"reason": "x"}))
        ok = reply_of(recv(dealer))
    finally:
        dealer.close(linger=0)
    assert not reply.ok and "Expected `str` of length <= 128 - at `$.id`" in reply.error
    assert ok.ok and ok.id == "i" * MAX_ID_CHARS
    assert server.rejected == {"invalid": 1} and echo.calls == 1


def test_the_reply_cache_is_bounded_in_bytes_oldest_out(ctx: zmq.Context, serve: StartServer) -> None:
    """1 MiB of cache and replies of 20 KB: about 50 are kept, the newest answered from the cache
    on a retry, the oldest run again; the bytes never pass the bound."""
    limit = 1 << 20
    echo = Echo(20_000)
    server, endpoint = serve(echo.handlers(), cache_size=10_000, cache_bytes=limit)
    dealer = raw_dealer(ctx, endpoint)
    high = 0
    try:
        for i in range(200):
            dealer.send(command_frame(f"id-{i}", "open", {"reason": "x"}))
            recv(dealer)
            high = max(high, server.stats()["cache"]["bytes"])
        dealer.send(command_frame("id-199", "open", {"reason": "x"}))  # the newest: from the cache
        recv(dealer)
        dealer.send(command_frame("id-0", "open", {"reason": "x"}))  # long evicted: runs again
        recv(dealer)
    finally:
        dealer.close(linger=0)
    cache = server.stats()["cache"]
    assert high <= limit
    assert 40 <= cache["entries"] <= 52, cache
    assert cache["evictions"] >= 200 - 52
    assert server.duplicates == 1 and echo.calls == 201


def test_a_reply_larger_than_the_whole_budget_is_still_kept_for_its_retry(
        ctx: zmq.Context, serve: StartServer) -> None:
    echo = Echo(200_000)
    server, endpoint = serve(echo.handlers(), cache_bytes=100_000)
    dealer = raw_dealer(ctx, endpoint)
    try:
        for _ in range(2):
            dealer.send(command_frame("big", "open", {"reason": "x"}))
            assert reply_of(recv(dealer)).ok
    finally:
        dealer.close(linger=0)
    assert echo.calls == 1 and server.duplicates == 1
    cache = server.stats()["cache"]
    assert cache["entries"] == 1 and cache["bytes"] > 200_000 + ENTRY_OVERHEAD_BYTES
