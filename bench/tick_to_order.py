"""Tick-to-order latency through the whole daemon, against the same four hops in raw pyzmq.

**ours**: the daemon under a real supervisord (``bench._live.LiveDaemon``) with the venue simulator
publishing one symbol (``[venue_sim] symbols = {"BTC-USD" = 40000.0}``, ``quotes_per_s = R``,
``jump_probability_per_s = 0``) and the engine running one strategy, the latency ``probe``, with
``every_n = R / 100``: about 100 probe orders a second, each a tiny limit order 50 % below the
market (never fills) plus the cancel of the previous one. Risk limits and safety thresholds are
raised so the probes pass (``max_orders_per_s``, ``max_position``, ``max_gross_exposure``;
``[safety] order_rate_per_s``); ``auto_open = true``. Once LIVE and once the first probe has
reached the venue, warm up, clear the venue's samples (``latency`` with ``reset = true``),
measure, and read ``latency`` again: p50/p99/p99.9 of venue publishes the quote → data_router →
engine → exchange_manager → venue receives the order (four hops; both ends stamped with
``time.time_ns()`` in the venue process). Then every service's ``status``: the subscriptions'
``received``/``lost`` per publisher, and the CPU each process used during the measurement.

**raw** (the floor; ``bench._chain``): the same four processes with bare pyzmq sockets, no codec,
no validation, blocking receives: venue PUB (quotes of the same size as our encoded Quote, each
carrying ``time.time_ns()``, published at R on the simulator's own 1 ms tick) + ROUTER for orders;
router SUB → PUB; engine SUB, every N-th quote → DEALER; exchange manager ROUTER → DEALER to the
venue's ROUTER, which records now minus the quote's timestamp. Same R and the same N.

Interleaved: per rate, rounds alternate raw-then-ours and ours-then-raw; each "ours" is a fresh
daemon (nothing of the daemon runs while raw is measured). Reported: each round's figures and the
median over rounds; ours/raw ratios of those medians. Targets (the issue): at 1,000 quotes/s,
p50 within 1.5x the raw floor and p99 under 1 ms.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

import proto
from bench._chain import Child
from bench._live import LiveDaemon, cpu_ticks, rss_mb, subscription_rows
from bench._stats import median, ratio, table
from bus import make_socket
from services.latency import TICK_TO_ORDER_PERCENTILES, percentile
from bench.daemon_idle import CLK_TCK

P50_RATIO_TARGET = 1.5
P99_TARGET_US = 1000.0
PROBES_PER_S = 100
FIRST_S = 5.0  # also reported: the first seconds of each measurement (the venue then holds the fewest orders)
TOTAL = "total: venue stamp -> venue reported the order"


def _toml(rate: int, every_n: int) -> str:
    return f"""[orchestrator]
auto_open = true

[venue_sim]
symbols = {{"BTC-USD" = 40000.0}}
price_band_pct = 100.0
quotes_per_s = {rate}
jump_probability_per_s = 0.0

[[engine.strategies]]
kind = "probe"
symbol = "BTC-USD"
every_n = {every_n}
offset_pct = 50.0

[exchange_manager.risk]
max_orders_per_s = 1000000
max_position = 1000000.0
max_gross_exposure = 1.0e15
max_order_notional = 1.0e12
# the probes rest 50 % below the market
price_collar_pct = 60.0

[safety]
order_rate_per_s = 1000000.0

# a grid as fine as the probe's own rounding (8 places): the probe's price identifies its quote
[venue_sim.instruments."BTC-USD"]
tick_size = 1.0e-8
lot_size = 1.0e-5
"""


def _pick(samples: list[int]) -> dict[str, float]:
    """The venue's own figures (``Venue.tick_to_order``), so both sides compare alike."""
    data = sorted(samples)
    if not data:
        return {"count": 0}
    return {"count": len(data), **{key: percentile(data, q) / 1e3 for key, q in TICK_TO_ORDER_PERCENTILES}}


def _sizes() -> tuple[int, int]:
    """Bytes of one encoded Quote (as the data router sends it) and one venue ``new_order``."""
    now = time.time_ns()
    quote = proto.encode("data_router", now, 123_456, now, proto.Quote(
        symbol="BTC-USD", bid=39_999.123456, ask=40_001.234567, bid_size=5.0, ask_size=5.0, ts_ns=now, venue="SIM"))
    order = proto.encode("exchange_manager", now, 123_456, now, proto.Command(
        id=f"exchange_manager:{now}:123456", name="new_order",
        args={"client_order_id": "19ab0c3d4e5-000123", "symbol": "BTC-USD", "side": "buy", "qty": 0.001,
              "order_type": "limit", "limit_price": 19_999.5, "origin_ts_ns": now}))
    return len(quote), len(order)


def measure_raw(rate: int, every_n: int, seconds: float, warmup_s: float) -> dict[str, Any]:
    quote_bytes, order_bytes = _sizes()
    tmp = Path(tempfile.mkdtemp(prefix="bench-raw-"))
    ep = {name: f"ipc://{tmp / name}" for name in ("quotes", "orders", "md", "em")}
    children: list[Child] = []
    try:
        venue = Child("venue", ep["quotes"], ep["orders"], rate, quote_bytes)
        children.append(venue)
        venue.expect("ready")
        for args in (("exchange", ep["em"], ep["orders"]), ("router", ep["quotes"], ep["md"]),
                     ("engine", ep["md"], ep["em"], every_n, order_bytes)):
            child = Child(*args)
            children.append(child)
            child.expect("ready")
        time.sleep(0.5)  # let every connect complete (no slow joiner in the measurement)
        pids = {c.role: c.proc.pid for c in children}
        ticks0 = cpu_ticks(pids)
        venue.send(f"run {warmup_s} {seconds}")
        t0 = time.perf_counter()
        result = json.loads(venue.expect("result", timeout_s=warmup_s + seconds + 30))
        elapsed = time.perf_counter() - t0
        ticks1 = cpu_ticks(pids)
    finally:
        for child in reversed(children):
            child.close()
        shutil.rmtree(tmp, ignore_errors=True)
    out = _pick(result["latency_ns"])
    out["first"] = _pick([v for v, t in zip(result["latency_ns"], result["arrival_s"]) if t < FIRST_S])
    out["quotes_per_s"] = result["quotes"] / result["elapsed_s"]
    out["cpu_pct"] = {n: 100 * (ticks1[n] - ticks0[n]) / CLK_TCK / elapsed for n in pids}
    out["orders_per_s"] = out["count"] / seconds
    return out


FSYNC_TOML = "\n[exchange_manager]\nfsync_per_order = true\n"
# ours without CURVE (ipc in the clear): the cost of CURVE on the hot path is ours / ours-clear
CLEAR_TOML = "\n[bus]\ncurve = false\n"
EXTRA_TOML = {"ours": "", "ours+fsync": FSYNC_TOML, "ours-clear": CLEAR_TOML}


def measure_ours(rate: int, every_n: int, seconds: float, warmup_s: float, extra_toml: str = "") -> dict[str, Any]:
    with LiveDaemon(_toml(rate, every_n) + extra_toml, prefix="bench-tick-") as d:
        d.wait_state("live", timeout_s=90)
        d.wait_until(lambda: d.request("venue_sim", "latency", timeout_s=10).get("count", 0) > 0, 30,
                     "the first probe order at the venue")
        time.sleep(warmup_s)
        pids = d.running_pids()
        d.program_pids = pids
        services = ("data_router", "engine", "exchange_manager", "safety")
        before = {s: d.status(s) for s in services}
        published0 = d.status("venue_sim")["stats"]["quotes_published"]
        d.request("venue_sim", "latency", reset=True, timeout_s=10)
        ticks0, t0 = cpu_ticks(pids), time.perf_counter()
        time.sleep(min(FIRST_S, seconds))
        # cumulative (no reset): the first FIRST_S seconds, while the venue holds the fewest orders
        first = d.request("venue_sim", "latency", timeout_s=10)
        ticks_first, t_first = cpu_ticks(pids), time.perf_counter()
        time.sleep(max(0.0, seconds - (t_first - t0)))
        lat = d.request("venue_sim", "latency", timeout_s=10)
        elapsed = time.perf_counter() - t0
        ticks1 = cpu_ticks(pids)
        published1 = d.status("venue_sim")["stats"]["quotes_published"]
        after = {s: d.status(s) for s in services}
        state = d.state()
        why = _why_not_live(d) if state != "live" else ""
        restarted = sorted(n for n, pid in d.pids().items() if pids.get(n) != pid)
    rows = []
    for s in services:
        prev = {(r["subscription"], r["peer"]): r for r in subscription_rows(s, before[s])}
        for r in subscription_rows(s, after[s]):
            p = prev.get((r["subscription"], r["peer"]), {"received": 0, "lost": 0})
            r["received_window"], r["lost_window"] = r["received"] - p["received"], r["lost"] - p["lost"]
            rows.append(r)
    eng, em = after["engine"]["stats"], after["exchange_manager"]["stats"]
    venue_cpu = lambda a, b, dt: 100 * (b["venue_sim"] - a["venue_sim"]) / CLK_TCK / dt  # noqa: E731
    return {
        **lat, "first": first, "orders_per_s": lat.get("count", 0) / elapsed,
        "quotes_per_s": (published1 - published0) / elapsed,
        "cpu_pct": {n: 100 * (ticks1[n] - ticks0[n]) / CLK_TCK / elapsed for n in pids},
        "venue_cpu_first": venue_cpu(ticks0, ticks_first, t_first - t0),
        "venue_cpu_rest": venue_cpu(ticks_first, ticks1, elapsed - (t_first - t0)),
        "orders_before": before["exchange_manager"]["stats"]["orders_submitted"],
        "subscriptions": rows, "state": state, "why": why, "restarted": restarted,
        "engine": {k: eng.get(k) for k in ("decisions_made", "orders_refused", "suppressed", "error_count")},
        "gate": em.get("gate"), "orders_submitted": em.get("orders_submitted"),
    }


def _why_not_live(d: LiveDaemon) -> str:
    """The reason of the session's last transition out of LIVE, from the orchestrator's session log."""
    lines = []
    for path in sorted((d.log_dir / "live").glob("live_trading_*.log")):
        lines += [line for line in path.read_text(errors="replace").splitlines() if "State transition: LIVE" in line]
    return lines[-1].split("State transition: ", 1)[1] if lines else "?"


def _hops(d: LiveDaemon, seconds: float) -> dict[str, list[float]]:
    """Where the time goes, from what the processes publish anyway (three extra subscribers, so a
    little perturbed): the data router's ``md.BTC-USD`` (its send time and the venue's stamp in the
    quote), the exchange manager's ``orders`` (the NEW report it publishes once the gate passed,
    just before it sends the order to the venue) and the venue's ``orders`` (its report on the
    order it received). A probe order is matched to its quote by its limit price (the probe prices
    at ``round(bid * 0.5, 8)``). Returns the per-order hop latencies in microseconds."""
    subs = {}
    poller = zmq.Poller()
    for name, service, topic in (("md", "data_router", "md.BTC-USD"), ("em", "exchange_manager", proto.topics.ORDERS),
                                 ("venue", "venue_sim", proto.topics.ORDERS)):
        sock = make_socket(d.ctx, zmq.SUB, d.settings.bus)
        sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        d.security.connect(sock, d.endpoints.pub(service), service)
        subs[name] = sock
        poller.register(sock, zmq.POLLIN)
    quotes: dict[float, tuple[int, int]] = {}  # probe price -> (venue stamp, router send)
    em_new: dict[str, tuple[float, int]] = {}  # client order id -> (price, exchange manager send)
    venue_seen: dict[str, int] = {}
    time.sleep(0.3)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            for sock, _ in poller.poll(50):
                name = next(n for n, s in subs.items() if s is sock)
                while sock.poll(0):
                    env = proto.decode(sock.recv_multipart()[1])
                    body = env.body
                    if name == "md" and isinstance(body, proto.Quote):
                        quotes[round(body.bid * 0.5, 8)] = (body.ts_ns, env.ts_ns)
                    elif name == "em" and isinstance(body, proto.OrderUpdate) and body.status is proto.OrderStatus.NEW \
                            and body.limit_price is not None:
                        em_new.setdefault(body.client_order_id, (body.limit_price, env.ts_ns))
                    elif name == "venue" and isinstance(body, proto.OrderUpdate):
                        venue_seen.setdefault(body.client_order_id, env.ts_ns)
    finally:
        for sock in subs.values():
            poller.unregister(sock)
            sock.close(linger=0)
    hops: dict[str, list[float]] = {"venue -> router sent": [], "router sent -> exchange manager sent (engine, gate)": [],
                                    "exchange manager sent -> venue reported": [], TOTAL: []}
    for cid, (price, em_ts) in em_new.items():
        q = quotes.get(price)
        v = venue_seen.get(cid)
        if q is None or v is None:
            continue
        hops["venue -> router sent"].append((q[1] - q[0]) / 1e3)
        hops["router sent -> exchange manager sent (engine, gate)"].append((em_ts - q[1]) / 1e3)
        hops["exchange manager sent -> venue reported"].append((v - em_ts) / 1e3)
        hops[TOTAL].append((v - q[0]) / 1e3)
    return hops


def drift(rate: int = 1_000, seconds: float = 60.0, window_s: float = 5.0, hops_s: float = 10.0,
          out=print) -> dict[str, Any]:
    """One long run at ``rate``: tick-to-order per ``window_s`` as orders pile up (a guard against
    work that grows with history: until 76be723 the venue simulator matched every quote against
    every order it had ever received and the gate scanned the whole book of record per order, and
    this run went from 2.6 ms to 360 ms p50 and DEGRADED within 25 s), with the venue's and the
    exchange manager's CPU, the exchange manager's RSS and the session state; it stops early once
    the session is no longer LIVE. First a window with the hop breakdown (``_hops``)."""
    every_n = max(1, rate // PROBES_PER_S)
    windows = []
    with LiveDaemon(_toml(rate, every_n), prefix="bench-tick-") as d:
        d.wait_state("live", timeout_s=90)
        d.wait_until(lambda: d.request("venue_sim", "latency", timeout_s=10).get("count", 0) > 0, 30,
                     "the first probe order at the venue")
        pids = d.running_pids()
        watched = {"em": pids["exchange_manager"], "venue": pids["venue_sim"]}
        hops = _hops(d, hops_s) if hops_s > 0 else {}
        d.request("venue_sim", "latency", reset=True, timeout_s=10)
        t_start = time.monotonic()
        while time.monotonic() - t_start < seconds - 1e-3:
            ticks0, t0 = cpu_ticks(watched), time.perf_counter()
            time.sleep(window_s)
            lat = d.request("venue_sim", "latency", reset=True, timeout_s=10)
            ticks1, dt = cpu_ticks(watched), time.perf_counter() - t0
            em = d.status("exchange_manager")["stats"]
            state = d.state()
            cpu = {n: 100 * (ticks1[n] - ticks0[n]) / CLK_TCK / dt for n in watched}
            if state != "live":
                state += f" ({_why_not_live(d)})"
            windows.append({"t": time.monotonic() - t_start, **lat, "orders": em["orders_submitted"], "state": state,
                            "em_cpu_pct": cpu["em"], "venue_cpu_pct": cpu["venue"], "em_rss_mb": rss_mb(watched["em"])})
            if not state.startswith("live"):
                break
    if hops:
        out(f"where the time goes at {rate:,} quotes/s ({len(hops[TOTAL])} probe orders over "
            f"{hops_s:g} s; 3 extra subscribers; us):")
        out(table(["hop", "p50", "p99"], [[k, f"{percentile(v, 50):,.0f}", f"{percentile(v, 99):,.0f}"]
                                          for k, v in hops.items()]))
    out(f"tick-to-order at {rate:,} quotes/s as orders pile up ({window_s:g} s windows; nothing on the hot path "
        "may grow with the number of orders seen; the exchange manager keeps the last 10,000 closed ones):")
    out(table(["t (s)", "orders sent so far", "probes", "p50 us", "p99 us", "venue CPU %", "exchange manager CPU %",
               "its VmRSS MB", "session"], [
        [f"{w['t']:.0f}", f"{w['orders']:,}", w.get("count", 0), _fmt(w.get("p50_us")), _fmt(w.get("p99_us")),
         f"{w['venue_cpu_pct']:.0f}", f"{w['em_cpu_pct']:.0f}", f"{w['em_rss_mb']:.1f}", w["state"]] for w in windows]))
    return {"hops": hops, "windows": windows}


def _fmt(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:,.0f}"


def run(rounds: int = 3, seconds: float = 15.0, warmup_s: float = 3.0, rates: tuple[int, ...] = (1_000, 10_000),
        drift_s: float = 120.0, fsync: bool = True, out=print) -> dict:
    out(f"== tick_to_order: venue quote -> data_router -> engine -> exchange_manager -> venue order; "
        f"{PROBES_PER_S} probe orders/s; rates {', '.join(f'{r:,}' for r in rates)} quotes/s; {rounds} round(s) x "
        f"{seconds:g} s (after {warmup_s:g} s warm-up), raw and ours interleaved"
        + (f"; at {rates[0]:,}/s also ours with [exchange_manager] fsync_per_order = true" if fsync else "") + " ==")
    results: dict[int, dict[str, list[dict[str, Any]]]] = {}
    summary = []
    for rate in rates:
        every_n = max(1, rate // PROBES_PER_S)
        variants = ["raw", "ours", "ours-clear"] + (["ours+fsync"] if fsync and rate == rates[0] else [])
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
        for r in range(rounds):
            for variant in variants[r % len(variants):] + variants[:r % len(variants)]:  # rotated each round
                if variant == "raw":
                    m = measure_raw(rate, every_n, seconds, warmup_s)
                else:
                    m = measure_ours(rate, every_n, seconds, warmup_s, EXTRA_TOML[variant])
                runs[variant].append(m)
                extra = ""
                if variant != "raw":
                    lost = sum(x["lost_window"] for x in m["subscriptions"])
                    extra = (f"; state {m['state']}{' (' + m['why'] + ')' if m['why'] else ''}, lost {lost}; venue had {m['orders_before']:,}->"
                             f"{m['orders_submitted']:,} orders, its CPU {m['venue_cpu_first']:.0f}%->{m['venue_cpu_rest']:.0f}%"
                             + (f", RESTARTED {m['restarted']}" if m["restarted"] else ""))
                f = m.get("first", {})
                out(f"  {rate:>6,}/s round {r + 1} {variant:10}: n={m.get('count', 0):5d} "
                    f"({m['orders_per_s']:.0f} orders/s, {m['quotes_per_s']:,.0f} quotes/s)  p50 {_fmt(m.get('p50_us'))} "
                    f"p99 {_fmt(m.get('p99_us'))} p99.9 {_fmt(m.get('p999_us'))} us; first {FIRST_S:g} s: p50 "
                    f"{_fmt(f.get('p50_us'))} p99 {_fmt(f.get('p99_us'))}{extra}")
        results[rate] = runs
        # A round with no probe order at the venue (a session that degraded) has no percentiles.
        med = {v: {k: median([m[k] for m in runs[v] if m.get(k) is not None] or [math.nan])
                   for k in ("p50_us", "p99_us", "p999_us")} for v in runs}
        for v in runs:
            for k in ("p50_us", "p99_us"):
                med[v][f"first_{k}"] = median([m["first"][k] for m in runs[v]
                                               if m.get("first", {}).get(k) is not None] or [math.nan])
        spread = {v: (min([m["p50_us"] for m in runs[v] if m.get("p50_us") is not None] or [math.nan]),
                      max([m["p50_us"] for m in runs[v] if m.get("p50_us") is not None] or [math.nan])) for v in runs}
        out("")
        out(f"at {rate:,} quotes/s (every_n = {every_n}), median over {rounds} round(s):")
        fs = "ours+fsync" in runs
        out(table(["", "raw (floor)", "ours", "ours/raw", "ours - raw"] + (["ours+fsync", "+fsync/raw"] if fs else []), [
            [label, f"{med['raw'][k]:,.0f} us", f"{med['ours'][k]:,.0f} us", f"{ratio(med['ours'][k], med['raw'][k]):.2f}",
             f"{med['ours'][k] - med['raw'][k]:+,.0f} us"]
            + ([f"{med['ours+fsync'][k]:,.0f} us", f"{ratio(med['ours+fsync'][k], med['raw'][k]):.2f}"] if fs else [])
            for label, k in (("p50", "p50_us"), ("p99", "p99_us"), ("p99.9", "p999_us"),
                             (f"p50, first {FIRST_S:g} s", "first_p50_us"), (f"p99, first {FIRST_S:g} s", "first_p99_us"))]))
        out("per-round p50: " + ", ".join(f"{v} {spread[v][0]:,.0f}-{spread[v][1]:,.0f} us" for v in runs))
        # CPU of each process during the (last) measurement of each variant
        last_ours, last_raw = runs["ours"][-1], runs["raw"][-1]
        out("CPU % of one core during the last measurement: ours " + ", ".join(
            f"{n} {v:.0f}" for n, v in sorted(last_ours["cpu_pct"].items())) + f" (sum {sum(last_ours['cpu_pct'].values()):.0f}); raw "
            + ", ".join(f"{n} {v:.0f}" for n, v in last_raw["cpu_pct"].items()) + f" (sum {sum(last_raw['cpu_pct'].values()):.0f})")
        out("loss counters (ours, last round; window = during the measurement):")
        out(table(["service", "subscription", "from", "received", "lost", "received (window)", "lost (window)"], [
            [x["service"], x["subscription"], x["peer"], f"{x['received']:,}", x["lost"], f"{x['received_window']:,}",
             x["lost_window"]] for x in last_ours["subscriptions"]]))
        out(f"engine: {last_ours['engine']}; exchange manager: submitted {last_ours['orders_submitted']}, gate "
            f"{last_ours['gate']}")
        lost_total = sum(x["lost_window"] for v in runs if v != "raw" for m in runs[v] for x in m["subscriptions"])
        if rate == 1_000:
            p50r = ratio(med["ours"]["p50_us"], med["raw"]["p50_us"])
            v50 = "met" if p50r <= P50_RATIO_TARGET else f"MISSED ({p50r:.2f}x)"
            v99 = "met" if med["ours"]["p99_us"] < P99_TARGET_US else \
                f"MISSED by {med['ours']['p99_us'] - P99_TARGET_US:,.0f} us"
            out(f"targets at 1,000/s: p50 <= {P50_RATIO_TARGET}x raw: {v50}; p99 < {P99_TARGET_US:,.0f} us: {v99} "
                f"(first {FIRST_S:g} s only: p50 {ratio(med['ours']['first_p50_us'], med['raw']['first_p50_us']):.2f}x raw, "
                f"p99 {med['ours']['first_p99_us']:,.0f} us)")
        summary.append(
            f"tick-to-order at {rate:,} quotes/s: p50 {med['ours']['p50_us']:,.0f} us vs raw {med['raw']['p50_us']:,.0f} "
            f"({ratio(med['ours']['p50_us'], med['raw']['p50_us']):.2f}x), p99 {med['ours']['p99_us']:,.0f} vs "
            f"{med['raw']['p99_us']:,.0f} us ({ratio(med['ours']['p99_us'], med['raw']['p99_us']):.2f}x), p99.9 "
            f"{med['ours']['p999_us']:,.0f} vs {med['raw']['p999_us']:,.0f} us; first {FIRST_S:g} s: p50 "
            f"{med['ours']['first_p50_us']:,.0f} vs {med['raw']['first_p50_us']:,.0f} us; messages lost in the measurements: {lost_total}"
            + (f" (targets: p50 <= {P50_RATIO_TARGET}x raw, p99 < 1 ms)" if rate == 1_000 else "")
            + (f"; with fsync_per_order p50 {med['ours+fsync']['p50_us']:,.0f} / p99 {med['ours+fsync']['p99_us']:,.0f} us"
               if "ours+fsync" in runs else "")
            + f"; the cost of CURVE (ours / ours-clear): p50 {med['ours']['p50_us']:,.0f} / "
              f"{med['ours-clear']['p50_us']:,.0f} us = {ratio(med['ours']['p50_us'], med['ours-clear']['p50_us']):.2f}x, "
              f"p99 {med['ours']['p99_us']:,.0f} / {med['ours-clear']['p99_us']:,.0f} us = "
              f"{ratio(med['ours']['p99_us'], med['ours-clear']['p99_us']):.2f}x (target p50 < 1.2x)")
        out("")
    extra: dict[str, Any] = {}
    if drift_s > 0:
        extra = drift(rates[0], drift_s, out=out)
        w = extra["windows"]
        summary.append(f"tick-to-order at {rates[0]:,}/s as orders pile up: p50 {_fmt(w[0].get('p50_us'))} us after "
                       f"{w[0]['orders']:,} orders (venue CPU {w[0]['venue_cpu_pct']:.0f} %) -> {_fmt(w[-1].get('p50_us'))} us "
                       f"after {w[-1]['orders']:,} (venue CPU {w[-1]['venue_cpu_pct']:.0f} %, session {w[-1]['state']})")
    return {"results": results, "summary": summary, **extra}


if __name__ == "__main__":
    run()
