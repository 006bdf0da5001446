"""``venues``: the session through the ccxt adapter (with its streams, and polling only) against the
native one, in the same run.

Each round starts the whole daemon three times under a real supervisord, in a rotating order, with
the demo strategies trading on the synthetic feed:

* **native**: ``make run``'s default (the simulator's own ``proto`` wire);
* **ccxt**: ``deploy/ccxt-sim.toml`` (ccxt.pro's ``binance`` class, unmodified but for its URLs,
  against the simulator's Binance REST API and WebSocket streams on a free port; credentials in a
  0600 file): quotes on the bookTicker stream, orders and fills on the user data stream;
* **ccxt-polling**: the same with ``streams = false``: quotes, orders and trades polled every
  ``poll_interval_s`` (0.25 s).

Measured over ``seconds`` of LIVE trading after ``warmup_s``: **tick-to-order** as the exchange
manager's histogram counts it (the quote's time → the order handed to the connector; p50/p99
interpolated within the histogram's buckets). A quote's time is the venue's on the native wire, but
its arrival at the ccxt data client through ccxt (Binance's bookTicker carries no time): so for
ccxt the **feed delay** (the venue's quote → the data client's) is measured too, by matching the
quotes the data router publishes to the venue's own native feed (same symbol, bid and ask), and
the comparable figure is their sum (``quote -> order``, from the medians). Also orders submitted
per second, the connector's latency (one request's round trip) and the **reconciliation** time and
answer size (the exchange manager's own figures). Then, for ccxt, the **reconnect time** after the
exchange API is dropped for 4 s: from the drop to the connector connected again.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import zmq

import proto
from bench._live import LiveDaemon
from bench._stats import median, ratio, table
from bus import make_socket
from deploy.temp_daemon import free_port

REPO = Path(__file__).resolve().parents[1]
DROP_S = 4.0  # longer than the connector's heartbeat_timeout_s (3 s), shorter than the hung watch (5 s)
KINDS = ("native", "ccxt", "ccxt-polling")


def _toml(kind: str, port: int, credentials: Path) -> str:
    if kind == "native":
        return ""
    text = (REPO / "deploy" / "ccxt-sim.toml").read_text(encoding="utf-8")
    text = text.replace("port = 8790", f"port = {port}").replace("127.0.0.1:8790/", f"127.0.0.1:{port}/")
    text = text.replace('api_key_env = "SIM_API_KEY"', f'credentials_file = "{credentials}"')
    if kind == "ccxt-polling":
        text = text.replace("\nstream_poll_interval_s =", "\nstreams = false\nstream_poll_interval_s =")
    return text.replace('secret_env = "SIM_API_SECRET"\n', "")


def _quantile(before: dict[str, Any], after: dict[str, Any], q: float) -> float:
    """The ``q`` quantile (0..1) of the observations between two snapshots of a latency histogram
    (services/latency.py), interpolated within its bucket; NaN when none."""
    bounds = after["le_ms"]
    counts = [a - b for a, b in zip(after["cumulative"], before.get("cumulative") or [0] * len(bounds))]
    total = counts[-1] if counts else 0
    if total <= 0:
        return float("nan")
    target = q * total
    lower, below = 0.0, 0
    for bound, cum in zip(bounds, counts):
        if cum >= target:
            span = cum - below
            upper = bound if bound != float("inf") else lower * 2
            return lower + (upper - lower) * ((target - below) / span if span else 1.0)
        lower, below = bound, cum
    return lower


def measure(kind: str, seconds: float, warmup_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-venue-") as tmp:
        credentials = Path(tmp) / "ccxt-credentials.json"
        credentials.write_text(json.dumps({"apiKey": "sim-test-key", "secret": "sim-test-secret"}))
        credentials.chmod(0o600)
        with LiveDaemon(_toml(kind, free_port(), credentials), prefix=f"bench-venue-{kind}-") as d:
            return _measure(d, kind, seconds, warmup_s)


def _feed_delays(d: LiveDaemon, seconds: float) -> list[float]:
    """For ``seconds``: each quote the data router published that the venue published on its native
    feed too (same symbol, bid and ask), the delay between the venue's time and the quote's (its
    arrival at the ccxt data client), in ms."""
    subs, poller = [], zmq.Poller()
    for service in ("venue_sim", "data_router"):
        sock = make_socket(d.ctx, zmq.SUB, d.settings.bus)
        sock.setsockopt(zmq.SUBSCRIBE, proto.topics.MARKET_DATA_PREFIX.encode())
        d.security.connect(sock, d.endpoints.pub(service), service)
        subs.append(sock)
        poller.register(sock, zmq.POLLIN)
    seen: list[dict[tuple[str, str, str], int]] = [{}, {}]  # (symbol, bid, ask) -> ts_ns: the venue's, the router's
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            for sock, _ in poller.poll(50):
                while sock.poll(0):
                    body = proto.decode(sock.recv_multipart()[1]).body
                    if isinstance(body, proto.Quote):  # as the venue's Binance face writes prices: 8 decimals
                        seen[subs.index(sock)].setdefault((body.symbol, f"{body.bid:.8f}", f"{body.ask:.8f}"), body.ts_ns)
    finally:
        for sock in subs:
            poller.unregister(sock)
            sock.close(linger=0)
    venue, routed = seen
    return [(ts - venue[key]) / 1e6 for key, ts in routed.items() if key in venue]


def _measure(d: LiveDaemon, kind: str, seconds: float, warmup_s: float) -> dict[str, Any]:
    d.wait_state("live", timeout_s=90)
    connector = "sim" if kind == "native" else "binance-sim"
    em = lambda: d.status("exchange_manager")["stats"]  # noqa: E731
    d.wait_until(lambda: em()["orders_submitted"] > 0, 60, "the first order")
    time.sleep(warmup_s)
    s0, t0 = em(), time.perf_counter()
    feed = _feed_delays(d, seconds) if kind != "native" else []
    time.sleep(max(0.0, seconds - (time.perf_counter() - t0)))
    s1, elapsed = em(), time.perf_counter() - t0
    p50 = _quantile(s0["tick_to_order"], s1["tick_to_order"], 0.5)
    feed_p50 = median(feed) if feed else 0.0
    result = {
        "p50_ms": p50,
        "p99_ms": _quantile(s0["tick_to_order"], s1["tick_to_order"], 0.99),
        "feed_p50_ms": feed_p50, "feed_p99_ms": sorted(feed)[int(0.99 * (len(feed) - 1))] if feed else 0.0,
        "feed_quotes": len(feed), "quote_to_order_ms": p50 + feed_p50,
        "orders_per_s": (s1["orders_submitted"] - s0["orders_submitted"]) / elapsed,
        "latency_ms": s1["connectors"][connector]["latency_ms"],
        "reconciliations": s1["reconciliations"] - s0["reconciliations"],
        "reconcile_last_ms": s1["reconciliation"]["last_ms"],
        "reconcile_slowest_ms": s1["reconciliation"]["slowest_ms"],
        "reply_bytes": s1["reconciliation"]["largest_reply_bytes"],
        "fills": s1["fills"], "state": d.state(),
    }
    if kind != "native":
        t_drop = time.perf_counter()
        d.request("venue_sim", "fault", fault="drop_connection", duration_s=DROP_S)
        d.wait_until(lambda: not em()["connectors"][connector]["connected"], 15, "the connector down")
        d.wait_until(lambda: em()["connectors"][connector]["connected"], 30, "the connector back", interval_s=0.02)
        result["reconnect_s"] = time.perf_counter() - t_drop
    return result


FIELDS = ("p50_ms", "p99_ms", "feed_p50_ms", "feed_p99_ms", "quote_to_order_ms", "orders_per_s", "latency_ms",
          "reconcile_slowest_ms")


def run(rounds: int = 3, seconds: float = 20.0, warmup_s: float = 5.0,
        out: Callable[..., None] = print) -> dict[str, Any]:
    out(f"== venues: the session through ccxt (Binance REST and streams against the simulator; and polling "
        f"only) and natively, {rounds} round(s) x {seconds:g} s ==")
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    for n in range(rounds):
        for kind in KINDS[n % 3:] + KINDS[:n % 3]:
            r = measure(kind, seconds, warmup_s)
            results[kind].append(r)
            out(f"round {n + 1} {kind}: tick-to-order p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms"
                + (f", feed delay p50 {r['feed_p50_ms']:.2f} ms p99 {r['feed_p99_ms']:.2f} ms ({r['feed_quotes']} "
                   f"quotes): quote -> order {r['quote_to_order_ms']:.2f} ms" if kind != "native" else "")
                + f", {r['orders_per_s']:.1f} orders/s, connector latency {r['latency_ms']:.2f} ms, "
                f"{r['reconciliations']} reconciliations (last {r['reconcile_last_ms']} ms, slowest "
                f"{r['reconcile_slowest_ms']} ms, largest answer {r['reply_bytes']} B), {r['fills']} fills, "
                f"{r['state']}" + (f", connected again {r['reconnect_s']:.2f} s after a {DROP_S:g} s drop began"
                                   if "reconnect_s" in r else ""))
    med = {k: {f: median([r[f] for r in rs]) for f in FIELDS} for k, rs in results.items()}
    for k in ("ccxt", "ccxt-polling"):
        med[k]["reconnect_s"] = median([r["reconnect_s"] for r in results[k]])
    med["native"]["quote_to_order_ms"] = med["native"]["p50_ms"]  # the native quote carries the venue's time
    out(table(["", *KINDS], [[f, *(f"{med[k][f]:.2f}" for k in KINDS)] for f in FIELDS]))
    streams, polling, native = med["ccxt"], med["ccxt-polling"], med["native"]
    return {"summary": [
        f"venues: quote -> order p50 ccxt with streams {streams['quote_to_order_ms']:.2f} ms (feed {streams['feed_p50_ms']:.2f}"
        f" + tick-to-order {streams['p50_ms']:.2f}) vs polling {polling['quote_to_order_ms']:.2f} ms (feed "
        f"{polling['feed_p50_ms']:.2f} + {polling['p50_ms']:.2f}) vs native {native['p50_ms']:.2f} ms "
        f"({ratio(polling['quote_to_order_ms'], streams['quote_to_order_ms']):.1f}x faster with streams); feed p99 "
        f"{streams['feed_p99_ms']:.2f} vs {polling['feed_p99_ms']:.2f} ms; connector latency {streams['latency_ms']:.2f} "
        f"vs {native['latency_ms']:.2f} ms native; slowest reconciliation {streams['reconcile_slowest_ms']:.0f} ms; "
        f"connected again {streams['reconnect_s']:.2f} s (streams) / {polling['reconnect_s']:.2f} s (polling) after a "
        f"{DROP_S:g} s drop began"]}
