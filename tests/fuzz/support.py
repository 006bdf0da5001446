"""Helpers for the suites that attack a running daemon (``integration.daemon.Daemon``)."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import zmq
from integration.daemon import Daemon, command_services, wait_until

import proto

from bus import CommandTimeout, Security, Subscriber, make_socket

from .garbage import FUZZER


def fuzz_security(d: Daemon) -> Security:
    """The fuzzer's credentials: an operator's key of the daemon's directory, named ``FUZZER`` (the
    source of its requests). The garbage comes from an authenticated peer: a stranger's never
    gets past the handshake (tests/integration/test_bus_security.py)."""
    return d.security(FUZZER, "operator")


def ask(d: Daemon, service: str, command: str, **args: Any) -> dict[str, Any]:
    """An ok reply's result, with a generous timeout (the machine is shared and busy)."""
    reply = d.call(service, command, timeout_s=5.0, retries=2, **args)
    assert reply.ok, f"{service} refused {command}: {reply.error}"
    return reply.result


def command_stats(d: Daemon, service: str) -> dict[str, Any]:
    status = ask(d, service, "status")
    return {**status["bus"]["commands"], "pid": status["pid"], "loop_errors": status["bus"]["loop_errors"]}


def served_commands(d: Daemon, service: str) -> frozenset[str]:
    """The commands a service serves, as it says in its answer to an unknown command."""
    reply = d.call(service, "zz_fuzz_list_commands", timeout_s=5.0, retries=2)
    assert not reply.ok
    m = re.search(r"this service serves: (.*)$", reply.error)
    assert m, reply.error
    return frozenset(name.strip() for name in m.group(1).split(","))


def heartbeat_pids(d: Daemon, services: Iterable[str], timeout: float = 15.0) -> dict[str, int]:
    """Listen to every service's heartbeat; return {service: pid} once each has been heard."""
    services = list(services)
    ctx = zmq.Context()
    sock = make_socket(ctx, zmq.SUB, d.bus)
    sub = Subscriber(sock, d.bus.max_message_bytes)
    for service in services:
        sub.subscribe(proto.topics.heartbeat(service))
        sub.connect(d.endpoints.pub(service), service, fuzz_security(d))
    heard: dict[str, int] = {}

    def keep(topic: str, env: proto.Envelope) -> None:
        if isinstance(env.body, proto.Heartbeat):
            heard[topic[len(proto.topics.HEARTBEAT_PREFIX):]] = env.body.pid

    try:
        deadline = time.monotonic() + timeout
        while set(heard) != set(services) and time.monotonic() < deadline:
            if sock.poll(100):
                sub.drain(keep)
    finally:
        sock.close(linger=0)
        ctx.term()
    return heard


def alive_and_serving(d: Daemon, pids: dict[str, int]) -> dict[str, str]:
    """{service: what is wrong} for each service that crashed, restarted, stopped answering or
    stopped heartbeating since ``pids`` were taken; empty when all is well."""
    wrong: dict[str, str] = {}
    for service, pid in pids.items():
        try:
            now = d.pid_of(service)
            answer = d.call(service, "status", timeout_s=5.0, retries=2)
        except (CommandTimeout, OSError) as exc:
            wrong[service] = f"not answering status: {exc}"
            continue
        if now != pid or not answer.ok or answer.result.get("pid") != pid:
            wrong[service] = f"pid was {pid}, supervisord says {now}, status says {answer.result.get('pid')}"
    beats = heartbeat_pids(d, pids)
    for service, pid in pids.items():
        if service not in wrong and beats.get(service) != pid:
            wrong[service] = f"no heartbeat from pid {pid} (heard {beats.get(service)})"
    return wrong


def log_kinds(path: Path, pattern: str) -> Counter[str]:
    """Count log lines per kind: ``pattern`` has one group, the kind."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return Counter()
    return Counter(m.group(1) for m in re.finditer(pattern, text))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def all_services() -> list[str]:
    return command_services()


def wait_routed(d: Daemon, symbol: str, timeout: float = 15.0) -> None:
    wait_until(lambda: symbol in ask(d, "data_router", "status")["stats"]["symbols"], timeout,
               ignore=(CommandTimeout,))
