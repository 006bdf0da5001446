"""What feeds the console's view, as any late joiner of the bus is fed: the day's history from the
session's event log, a snapshot polled from the orchestrator and the exchange manager, then the
live stream.

Two threads, so the web loop never waits on the bus:
  * ``BusFeed`` reads the events (state, safety, governance, process alerts, orders, fills) from
    every publisher, and the market data from the data router, and hands them to the view;
  * ``SnapshotPoll`` asks, every ``poll_interval_s``, the orchestrator's ``status`` and ``stats``
    and the exchange manager's ``positions`` and ``orders`` (queries: any identity may ask), and
    reads each process's CPU and memory from the OS (the console runs beside the orchestrator).

A PUB never waits for a subscriber: a console that falls behind loses messages on its own side
(its SUB's high-water mark), never slows a trading process.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import psutil
import zmq

import proto
from bus import CommandClient, CommandRefused, CommandTimeout, Endpoints
from bus.curve import Security
from bus.endpoints import PUBLISHERS
from bus.subscriber import Subscriber
from proto import commands as rq
from services.console.view import Polled, SessionView
from services.orchestrator.session_logs import EVENTS

log = logging.getLogger(__name__)

EVENT_TOPICS = (proto.topics.SAFETY, proto.topics.GOVERNANCE, proto.topics.PROCESS_ALERT)
HISTORY_LINES = 50_000  # of the day's event log read at start, newest kept
BATCH_READ_S = 0.1
BATCH = 10_000  # messages read per drain call (the loop goes on while a drain is full)
# Messages waiting between two reads: 0.1 s at 100,000 a second. Beyond, the console's own socket
# drops them (counted as gaps), never the publisher.
BATCH_HWM = 10_000
_SAFETY_SEVERITY = {"low": "info", "medium": "warning", "high": "warning", "critical": "critical"}


def read_history(log_dir: Path, view: SessionView, since: float) -> float:
    """The transitions and events logged since ``since`` (epoch s), from the session event logs;
    returns the time of the newest line read (0 if none)."""
    files = sorted((p for p in (log_dir / "live").glob(f"{EVENTS}_*.jsonl") if p.stat().st_mtime >= since),
                   key=lambda p: p.stat().st_mtime)
    lines: deque[str] = deque(maxlen=HISTORY_LINES)
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as f:
            lines.extend(f)
    newest = 0.0
    for line in lines:
        try:
            entry = json.loads(line)
            ts = float(entry["ts"])
        except (ValueError, KeyError, TypeError):
            continue
        if ts < since:
            continue
        newest = max(newest, ts)
        _replay(view, entry, ts)
    return newest


def _replay(view: SessionView, entry: dict[str, Any], ts: float) -> None:
    event, data = entry.get("event"), entry.get("data") or {}
    if not isinstance(data, dict):
        return
    if event == "state_transition":
        try:
            old, new = proto.OrchestratorState(data["old"]), proto.OrchestratorState(data["new"])
        except (KeyError, ValueError):
            return
        body = proto.StateChanged(old=old, new=new, reason=str(data.get("reason", "")), transition_no=0)
        view.on_transition(body, ts, replay=True)
    elif event == "safety_event":
        view.add_event(ts, "safety", _SAFETY_SEVERITY.get(str(data.get("severity")), "warning"),
                       str(data.get("symbol", "")), str(data.get("event_type", "")), str(data.get("message", "")),
                       "safety", push=False)
    elif event in ("governance", "operator_command", "process_alert"):
        kind = {"governance": "governance", "operator_command": "command", "process_alert": "alert"}[event]
        level = str(entry.get("level", "INFO")).lower()
        view.add_event(ts, kind, "critical" if level in ("error", "critical") else level if level == "warning"
                       else "info", str(data.get("symbol", "")), str(data.get("kind") or data.get("command")
                                                                     or data.get("event") or event),
                       str(entry.get("message", "")), str(data.get("source") or data.get("caller") or "orchestrator"),
                       push=False)


class BusFeed(threading.Thread):
    """Four subscriptions, so that only what an operator must see at once wakes the thread: the
    orchestrator's ``state`` (and heartbeat) and everyone's safety, governance and process alerts are read as they
    come; the exchange manager's orders and fills (counted per minute) and the data router's quotes
    (kept per 250 ms bucket) are read in one batch every ``BATCH_READ_S``. Waking for each of 1,000
    quotes and a few hundred order updates a second cost the console 15 % of a core."""

    def __init__(self, ctx: zmq.Context, endpoints: Endpoints, security: Security, view: SessionView,
                 history_until: float) -> None:
        super().__init__(name="console-bus", daemon=True)
        self._view = view
        self._history_until = history_until
        self._stopping = threading.Event()

        def subscriber(publishers: tuple[str, ...], topics: tuple[str, ...], hwm: int = 1_000) -> Subscriber:
            sock = ctx.socket(zmq.SUB)
            sock.setsockopt(zmq.RCVHWM, hwm)
            sub = Subscriber(sock)
            for name in publishers:
                sub.connect(endpoints.pub(name), name, security)
            for topic in topics:
                sub.subscribe(topic)
            return sub

        # the orchestrator's heartbeat: the console hears the bus even when nothing happens
        self._now = (subscriber(("orchestrator",), (proto.topics.STATE, proto.topics.heartbeat("orchestrator"))),
                     subscriber(PUBLISHERS, EVENT_TOPICS))
        self._batched = (subscriber(("exchange_manager",), (proto.topics.ORDERS, proto.topics.FILLS), BATCH_HWM),
                         subscriber(("data_router",), (proto.topics.MARKET_DATA_PREFIX,), BATCH_HWM))

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        poller = zmq.Poller()
        for sub in self._now:
            poller.register(sub.socket, zmq.POLLIN)
        next_batch = time.monotonic()
        try:
            while not self._stopping.is_set():
                wait_ms = max(0, int((next_batch - time.monotonic()) * 1000))
                ready = dict(poller.poll(min(wait_ms, 200)))
                for sub in self._now:
                    if sub.socket in ready:
                        sub.drain(self._on_event)
                if time.monotonic() >= next_batch:
                    for sub in self._batched:
                        while sub.drain(self._on_event, BATCH) >= BATCH:
                            pass
                    next_batch = time.monotonic() + BATCH_READ_S
        finally:
            for sub in (*self._now, *self._batched):
                sub.socket.close(linger=0)

    def _on_event(self, topic: str, env: proto.Envelope) -> None:
        view, body, ts = self._view, env.body, env.ts_ns / 1e9
        if isinstance(body, proto.Quote):
            if body.bid > 0 and body.ask > 0:
                view.on_quote(body.symbol, (body.bid + body.ask) / 2, ts)
            return
        view.bus_last_message = time.time()
        if ts <= self._history_until:
            return  # read from the event log at start already
        if isinstance(body, proto.StateChanged):
            view.on_transition(body, ts)
        elif isinstance(body, proto.SafetyEvent):
            view.add_event(ts, "safety", _SAFETY_SEVERITY.get(body.severity.value, "warning"), body.symbol,
                           body.event_type.value, body.message, env.source)
        elif isinstance(body, proto.GovernanceEvent):
            view.add_event(ts, "governance", "warning", body.symbol, body.kind, body.reason, env.source)
        elif isinstance(body, proto.ProcessAlert):
            view.add_event(ts, "alert", "critical" if body.event in ("fatal", "hung") else "warning", "",
                           body.event, f"{body.program}: {body.detail or body.event}", env.source)
        elif isinstance(body, proto.OrderUpdate):
            status = body.status.value
            view.count(ts, orders=int(status == "new"), rejects=int(status == "rejected"))
        elif isinstance(body, proto.Fill):
            view.count(ts, fills=1)


class SnapshotPoll(threading.Thread):
    def __init__(self, ctx: zmq.Context, endpoints: Endpoints, bus_settings: Any, security: Security,
                 identity: str, view: SessionView, interval_s: float) -> None:
        super().__init__(name="console-poll", daemon=True)
        self._view = view
        self._interval_s = interval_s
        self._stopping = threading.Event()
        timeout = min(2.0, max(0.5, interval_s))

        def client(service: str) -> CommandClient:
            return CommandClient(ctx, endpoints.cmd(service), bus_settings, identity, service=service,
                                 security=security, timeout_s=timeout, retries=0)

        self._orchestrator = client("orchestrator")
        self._exchange = client("exchange_manager")
        self._procs: dict[int, psutil.Process] = {}

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                started = time.monotonic()
                self._view.on_poll(self.poll())
                self._stopping.wait(max(0.05, self._interval_s - (time.monotonic() - started)))
        finally:
            self._orchestrator.close()
            self._exchange.close()

    def poll(self) -> Polled:
        polled = Polled(at=time.time())
        try:
            polled.status = proto.to_builtins(self._orchestrator.request(rq.Status()))
            polled.stats = proto.to_builtins(self._orchestrator.request(rq.Stats()))
        except (CommandTimeout, CommandRefused, proto.ProtocolError) as exc:
            polled.error = str(exc) or type(exc).__name__
        try:
            polled.positions = proto.to_builtins(self._exchange.request(rq.Positions())).get("positions")
            polled.orders = proto.to_builtins(self._exchange.request(rq.Orders())).get("orders")
        except (CommandTimeout, CommandRefused, proto.ProtocolError) as exc:
            log.debug("exchange manager not answering: %s", exc)
        polled.resources = self._resources(polled.status)
        return polled

    def _resources(self, status: dict[str, Any] | None) -> dict[int, tuple[float, float]]:
        """CPU % (since the previous poll) and RSS MB of each process the orchestrator names."""
        pids = {c.get("pid") for c in ((status or {}).get("components") or {}).values()} | {(status or {}).get("pid")}
        out = {}
        for pid in (p for p in pids if isinstance(p, int) and p > 0):
            try:
                proc = self._procs.get(pid)
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                    proc.cpu_percent(None)  # the first reading is the baseline
                out[pid] = (proc.cpu_percent(None), proc.memory_info().rss / 1e6)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                self._procs.pop(pid, None)
        for gone in set(self._procs) - set(out):
            self._procs.pop(gone, None)
        return out
