"""``venues``: the session through the ccxt adapter against the native one, in the same run.

Each round starts the whole daemon twice under a real supervisord, interleaved (native, ccxt; then
ccxt, native; ...), with the demo strategies trading on the synthetic feed:

* **native**: ``make run``'s default (the simulator's own ``proto`` wire);
* **ccxt**: ``deploy/ccxt-sim.toml`` (ccxt's ``binance`` class, unmodified but for its URLs, against
  the simulator's Binance REST API on a free port; credentials in a 0600 file).

Measured over ``seconds`` of LIVE trading after ``warmup_s``: **tick-to-order** as the exchange
manager's histogram counts it (the quote's time at the venue → the order handed to the connector;
p50/p99 interpolated within the histogram's buckets), orders submitted per second, the connector's
latency (one request's round trip) and the **reconciliation** time and answer size (the exchange
manager's own figures: its periodic runs during the window). Then, for ccxt, the **reconnect time**
after the exchange API is dropped for 4 s: from the drop to the connector connected again, and
from the API back to the connector connected (the backoff's share).
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from bench._live import LiveDaemon
from bench._stats import median, ratio, table

REPO = Path(__file__).resolve().parents[1]
DROP_S = 4.0  # longer than the connector's heartbeat_timeout_s (3 s), shorter than the hung watch (5 s)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _toml(kind: str, port: int, credentials: Path) -> str:
    if kind == "native":
        return ""
    text = (REPO / "deploy" / "ccxt-sim.toml").read_text(encoding="utf-8")
    url = f"http://127.0.0.1:{port}/api/v3"
    text = text.replace("port = 8790", f"port = {port}").replace("http://127.0.0.1:8790/api/v3", url)
    text = text.replace('api_key_env = "SIM_API_KEY"', f'credentials_file = "{credentials}"')
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
        with LiveDaemon(_toml(kind, _free_port(), credentials), prefix=f"bench-venue-{kind}-") as d:
            return _measure(d, kind, seconds, warmup_s)


def _measure(d: LiveDaemon, kind: str, seconds: float, warmup_s: float) -> dict[str, Any]:
    d.wait_state("live", timeout_s=90)
    connector = "binance-sim" if kind == "ccxt" else "sim"
    em = lambda: d.status("exchange_manager")["stats"]  # noqa: E731
    d.wait_until(lambda: em()["orders_submitted"] > 0, 60, "the first order")
    time.sleep(warmup_s)
    s0, t0 = em(), time.perf_counter()
    time.sleep(seconds)
    s1, elapsed = em(), time.perf_counter() - t0
    result = {
        "p50_ms": _quantile(s0["tick_to_order"], s1["tick_to_order"], 0.5),
        "p99_ms": _quantile(s0["tick_to_order"], s1["tick_to_order"], 0.99),
        "orders_per_s": (s1["orders_submitted"] - s0["orders_submitted"]) / elapsed,
        "latency_ms": s1["connectors"][connector]["latency_ms"],
        "reconciliations": s1["reconciliations"] - s0["reconciliations"],
        "reconcile_last_ms": s1["reconciliation"]["last_ms"],
        "reconcile_slowest_ms": s1["reconciliation"]["slowest_ms"],
        "reply_bytes": s1["reconciliation"]["largest_reply_bytes"],
        "fills": s1["fills"], "state": d.state(),
    }
    if kind == "ccxt":
        t_drop = time.perf_counter()
        d.request("venue_sim", "fault", fault="drop_connection", duration_s=DROP_S)
        d.wait_until(lambda: not em()["connectors"][connector]["connected"], 15, "the connector down")
        d.wait_until(lambda: em()["connectors"][connector]["connected"], 30, "the connector back", interval_s=0.02)
        result["reconnect_s"] = time.perf_counter() - t_drop
    return result


def run(rounds: int = 3, seconds: float = 20.0, warmup_s: float = 5.0,
        out: Callable[..., None] = print) -> dict[str, Any]:
    out(f"== venues: the session through ccxt (Binance REST against the simulator) and natively, "
        f"{rounds} round(s) x {seconds:g} s ==")
    results: dict[str, list[dict[str, Any]]] = {"native": [], "ccxt": []}
    for n in range(rounds):
        for kind in (("native", "ccxt") if n % 2 == 0 else ("ccxt", "native")):
            r = measure(kind, seconds, warmup_s)
            results[kind].append(r)
            out(f"round {n + 1} {kind}: tick-to-order p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms, "
                f"{r['orders_per_s']:.1f} orders/s, connector latency {r['latency_ms']:.2f} ms, "
                f"{r['reconciliations']} reconciliations (last {r['reconcile_last_ms']} ms, slowest "
                f"{r['reconcile_slowest_ms']} ms, largest answer {r['reply_bytes']} B), {r['fills']} fills, "
                f"{r['state']}" + (f", connected again {r['reconnect_s']:.2f} s after a {DROP_S:g} s drop ended"
                                   if "reconnect_s" in r else ""))
    med = {k: {f: median([r[f] for r in rs]) for f in ("p50_ms", "p99_ms", "orders_per_s", "latency_ms",
                                                        "reconcile_slowest_ms")} for k, rs in results.items()}
    reconnect = median([r["reconnect_s"] for r in results["ccxt"]])
    out(table(["", "native", "ccxt", "ccxt/native"], [
        [f, f"{med['native'][f]:.2f}", f"{med['ccxt'][f]:.2f}", f"{ratio(med['ccxt'][f], med['native'][f]):.2f}x"]
        for f in ("p50_ms", "p99_ms", "orders_per_s", "latency_ms", "reconcile_slowest_ms")]))
    return {"summary": [
        f"venues: tick-to-order p50 ccxt {med['ccxt']['p50_ms']:.2f} ms vs native {med['native']['p50_ms']:.2f} ms "
        f"({ratio(med['ccxt']['p50_ms'], med['native']['p50_ms']):.1f}x), p99 {med['ccxt']['p99_ms']:.2f} vs "
        f"{med['native']['p99_ms']:.2f} ms; connector latency {med['ccxt']['latency_ms']:.2f} vs "
        f"{med['native']['latency_ms']:.2f} ms; slowest reconciliation {med['ccxt']['reconcile_slowest_ms']:.0f} vs "
        f"{med['native']['reconcile_slowest_ms']:.0f} ms; ccxt connected again {reconnect:.2f} s after a {DROP_S:g} s "
        f"drop ended"]}
