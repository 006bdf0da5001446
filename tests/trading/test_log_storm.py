"""A storm of refused orders against a real daemon: the logs stay a few lines, the counters count
every refusal (``services/log_storm.py``).

Orders are sent far over the gate's ``max_orders_per_s`` (5) as fast as a pipelined channel goes:
almost all are refused. The exchange manager logs each refusal in its own log (stderr, through
supervisord) and publishes it as a governance event, which the orchestrator writes to the
governance log, the live log and the JSON lines. Each log writes the first ``storm_full_lines`` in
full and then a summary per ``storm_interval_s`` with the exact count: full lines plus the counts
in the summaries equal the gate's refusal counter, in every one of them.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest
import zmq

import proto
from bus import CommandChannel
from integration.daemon import HARNESS, Daemon, wait_until
from integration.e2e import ask, em_stats, ensure_live, venue_open_orders, wait_routed

ORDERS = 5_000
FULL_LINES = 5
INTERVAL_S = 2.0
MODULE_CONFIG = {
    "engine": {"strategies": []},  # only the test's orders reach the gate
    "exchange_manager": {"risk": {"max_orders_per_s": 5}},
    "venue_sim": {"volatility_bps_per_sqrt_s": 1.0},
    "logs": {"storm_full_lines": FULL_LINES, "storm_interval_s": INTERVAL_S},
}
# a resting buy below the touch, inside the price collar: only the order rate refuses it
ORDER = {"symbol": "BTC-USD", "side": "buy", "qty": 0.001, "order_type": "limit", "limit_price": 38_000.0}
RATE_REASON = "order rate over max_orders_per_s 5"
SUMMARY = re.compile(r"\.\.\. (?P<label>.+): (?P<count>[\d,]+) more in the last [\d.]+ s \(first [\d:,]+, last [\d:,]+\)$")


def _flood(d: Daemon, n: int) -> list[proto.Reply]:
    """``n`` submit_order requests pipelined 200 at a time; every reply."""
    ctx = zmq.Context()
    channel = CommandChannel(ctx, d.endpoints.cmd("exchange_manager"), d.bus, HARNESS, timeout_s=30.0,
                             server="exchange_manager", security=d.security())
    replies: list[proto.Reply] = []
    try:
        probe: list[proto.Reply] = []
        wait_until(lambda: _sent(channel, "status", {}, probe.append), 5, interval=0.02)
        _drain_until(channel, lambda: bool(probe))
        while len(replies) < n:
            batch = min(200, n - len(replies))
            for _ in range(batch):
                channel.send("submit_order", dict(ORDER), replies.append)
            target = len(replies) + batch
            _drain_until(channel, lambda: len(replies) >= target)
    finally:
        channel.close()
        ctx.term()
    return replies


def _sent(channel: CommandChannel, name: str, args: dict[str, Any], on_reply: Any) -> bool:
    try:
        channel.send(name, args, on_reply)
    except Exception:  # NotConnected until the DEALER has connected
        return False
    return True


def _drain_until(channel: CommandChannel, done: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "the exchange manager stopped answering"
        channel.sock.poll(200)
        channel.drain()


def _lines(paths: list[Path], offsets: dict[Path, int]) -> list[str]:
    return [line for p in paths for line in p.read_bytes()[offsets.get(p, 0):].decode(errors="replace").splitlines()]


def _tally(lines: list[str], full: str, summary_label: str) -> tuple[int, int, int]:
    """(full lines, summary lines, records the summaries count) of one kind of line."""
    full_lines = sum(full in line for line in lines)
    counts = [int(m["count"].replace(",", "")) for line in lines
              if (m := SUMMARY.search(line)) and m["label"].endswith(summary_label)]
    return full_lines, len(counts), sum(counts)


@pytest.mark.alone  # 5,000 orders as fast as they go: it loads both cores (and a loaded host degrades it)
def test_a_storm_of_refusals_is_a_few_lines_in_every_log_and_every_refusal_is_counted(module_daemon: Daemon) -> None:
    d = module_daemon
    ensure_live(d)
    wait_routed(d, "BTC-USD")
    live_dir = d.session_log_dir
    watched = [d.program_log("exchange_manager"), *live_dir.glob("governance_events_*.log"),
               *live_dir.glob("live_trading_*.log"), *live_dir.glob("events_*.jsonl")]
    offsets = {p: p.stat().st_size for p in watched}
    bytes_before = sum(p.stat().st_size for p in d.log_dir.rglob("*") if p.is_file())
    refused_before = em_stats(d)["gate"]["refusals"].get("max_orders_per_s", 0)

    t0 = time.monotonic()
    replies = _flood(d, ORDERS)
    storm_s = time.monotonic() - t0
    refused = sum(not r.ok and r.error == RATE_REASON for r in replies)
    assert refused >= ORDERS - 5 * (math.ceil(storm_s) + 1) - 5, [r.error for r in replies if not r.ok][:5]
    assert all(r.ok or r.error == RATE_REASON for r in replies), {r.error for r in replies}
    # the counter counts every refusal, whatever the logs wrote
    assert em_stats(d)["gate"]["refusals"]["max_orders_per_s"] - refused_before == refused

    em_log = d.program_log("exchange_manager")
    governance = sorted(live_dir.glob("governance_events_*.log"))
    events = sorted(live_dir.glob("events_*.jsonl"))

    def every_refusal_accounted() -> bool:
        # the last interval's summaries come out within an interval (each writer's timer)
        return (_tally(_lines([em_log], offsets), "order refused (max_orders_per_s)", "order_refused.max_orders_per_s")
                [::2] == (min(refused, FULL_LINES), refused - min(refused, FULL_LINES))
                and sum(_tally(_lines(governance, offsets), RATE_REASON, "order_refused.max_orders_per_s BTC-USD")
                        [::2]) == refused)

    wait_until(every_refusal_accounted, INTERVAL_S * 3 + 10, interval=0.2,
               message=lambda: "\n".join(_lines([em_log, *governance], offsets)[-20:]))
    # a few summaries at most: one per interval of the storm and one for the interval it ended in
    bound = math.ceil((time.monotonic() - t0) / INTERVAL_S) + 1
    for path_set, full, label in (([em_log], "order refused (max_orders_per_s)", "order_refused.max_orders_per_s"),
                                  (governance, RATE_REASON, "order_refused.max_orders_per_s BTC-USD"),
                                  (sorted(live_dir.glob("live_trading_*.log")), RATE_REASON,
                                   "order_refused.max_orders_per_s BTC-USD")):
        full_lines, summaries, held = _tally(_lines(path_set, offsets), full, label)
        assert full_lines == FULL_LINES and 1 <= summaries <= bound, (path_set, full_lines, summaries, bound)
        assert full_lines + held == refused, (path_set, full_lines, held, refused)
    records = [json.loads(line) for line in _lines(events, offsets)]
    refusals = [r for r in records if r["event"] == "governance" and r["data"]["kind"] == "order_refused.max_orders_per_s"]
    summaries = [r for r in records if r["event"] == "storm_summary" and r["data"]["of"] == "governance"]
    assert len(refusals) == FULL_LINES and len(summaries) <= bound
    assert len(refusals) + sum(r["data"]["count"] for r in summaries) == refused
    # the program log and the session logs together: a few kilobytes for thousands of refusals
    grown = sum(p.stat().st_size for p in d.log_dir.rglob("*") if p.is_file()) - bytes_before
    assert len(_lines([em_log], offsets)) < 50 and grown < 100_000, grown
    print(f"\n{ORDERS} orders in {storm_s:.1f}s, {refused} refused: logs/ grew {grown:,} bytes; "
          f"exchange manager log +{len(_lines([em_log], offsets))} lines, governance log "
          f"+{len(_lines(governance, offsets))} lines, JSON lines +{len(records)}; session {d.state()}")
    assert ask(d, "exchange_manager", "cancel_all")
    wait_until(lambda: not venue_open_orders(d), 10)
