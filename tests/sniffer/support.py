"""Helpers for the sniffer tests: a controlled publisher at a real publisher endpoint, the CLI.

``FakePublisher`` binds a PUB where a daemon process would (``Endpoints(bus, run_dir).pub(name)``)
and publishes real envelopes with per-topic sequence numbers, so the sniffer cannot tell it from the
daemon; ``skip(topic, n)`` advances a topic's sequence without sending (a gap made on purpose).
``sniffer(run_dir, *args)`` runs the real ``tradectl bus ...`` against that run dir.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import zmq

import proto
from bus import BusSettings, Endpoints

BIN = Path(os.path.abspath(sys.executable)).parent


def quote(i: int, symbol: str = "BTC-USD") -> proto.Quote:
    return proto.Quote(symbol=symbol, bid=100.0 + i, ask=100.5 + i, bid_size=1.0, ask_size=2.0, ts_ns=i)


def heartbeat(interval_s: float = 0.1) -> proto.Heartbeat:
    return proto.Heartbeat(pid=os.getpid(), interval_s=interval_s, stats=proto.summaries.EngineSummary(decisions_made=1))


class FakePublisher:
    def __init__(self, run_dir: Path, name: str = "venue_sim", *, ctx: zmq.Context | None = None,
                 epoch: int | None = None, hwm: int = 1_000_000) -> None:
        self.name = name
        self.epoch = time.time_ns() if epoch is None else epoch
        self._own_ctx = ctx is None
        self.ctx = ctx or zmq.Context()
        # An XPUB: it hears the sniffer's subscription, so a test knows when it is attached.
        self.sock = self.ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscriber's subscriptions, not just the first
        self.sock.setsockopt(zmq.SNDHWM, hwm)
        self.endpoint = Endpoints(BusSettings(), run_dir).pub(name)
        self.sock.bind(self.endpoint)
        self.seqs: dict[str, int] = {}
        self.sent: list[tuple[str, bytes]] = []

    def wait_subscriber(self, timeout: float = 20.0) -> None:
        """Block until a subscriber's subscription arrives (a PUB drops what it sends before)."""
        if not self.sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"no subscriber on {self.endpoint} within {timeout:g}s")
        self.sock.recv()
        time.sleep(0.05)  # every prefix of the same SUB arrives at once; let the rest settle

    def frame(self, topic: str, body: proto.Message) -> bytes:
        seq = self.seqs[topic] = self.seqs.get(topic, 0) + 1
        return proto.encode(self.name, self.epoch, seq, time.time_ns(), body)

    def publish(self, topic: str, body: proto.Message) -> bytes:
        data = self.frame(topic, body)
        self.sock.send_multipart((topic.encode(), data))
        self.sent.append((topic, data))
        return data

    def raw(self, *frames: bytes) -> None:
        self.sock.send_multipart(frames)

    def skip(self, topic: str, n: int) -> None:
        self.seqs[topic] = self.seqs.get(topic, 0) + n

    def close(self) -> None:
        self.sock.close(linger=0)
        if self._own_ctx:
            self.ctx.term()

    def __enter__(self) -> FakePublisher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def sniffer_env(run_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    env["TRADING_PATHS__RUN_DIR"] = str(run_dir)
    # FakePublisher is in the clear, as an ipc bus may be (bus.curve = false); the sniffer with
    # CURVE, against a daemon, is tests/sniffer/test_daemon.py
    env["TRADING_BUS__CURVE"] = "false"
    env.update(extra or {})
    return env


def sniffer(run_dir: Path, *args: str, timeout: float = 30.0, **kw: Any) -> subprocess.CompletedProcess[str]:
    """``tradectl bus ARGS`` against ``run_dir``, to completion."""
    return subprocess.run([str(BIN / "tradectl"), "bus", *args], env=sniffer_env(run_dir), capture_output=True,
                          text=True, timeout=timeout, **kw)


def start_sniffer(run_dir: Path, *args: str, **kw: Any) -> subprocess.Popen[str]:
    """``tradectl bus ARGS`` in the background (stdout and stderr piped)."""
    return subprocess.Popen([str(BIN / "tradectl"), "bus", *args], env=sniffer_env(run_dir), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
