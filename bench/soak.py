"""Soak: resident memory of every process of the default daemon over a long run (LONG: 10 min).

The daemon as shipped (synthetic feed, the demo strategies, ``auto_open``: it trades), under a
real supervisord from a temp dir (``bench._live.LiveDaemon`` with only the temp ``[paths]``), for
``minutes`` (10 by default; ``--quick``: 1; ``--minutes M``). Once LIVE, every ``interval_s``
(30 s; 10 s with ``--quick``) it samples ``VmRSS`` of each process (``/proc/<pid>/status``), the
session state, and the exchange manager's order count. Reported per process: first, last and
largest RSS, growth (last - first), the least-squares trend over the second half of the run (after
the warm-up: what "not growing" is judged on, in MB/hour) and, for the exchange manager, the growth
per 1,000 orders it sent; CPU over the whole run, and restarts (a new pid). The venue simulator
and supervisord are shown apart (not part of the daemon).

Target (the issue): every service under 80 MB and not growing (second-half trend under 2 MB/h).
"""

from __future__ import annotations

import time
from typing import Any

from bench._live import LiveDaemon, cpu_ticks, rss_mb
from bench._stats import table
from bench.daemon_idle import CLK_TCK
from deploy.supervisord_conf import PROGRAMS

RSS_TARGET_MB = 80.0
SLOPE_LIMIT_MB_H = 2.0  # second-half trend above this is "growing" (0.33 MB over 10 min; page noise is ~0.1 MB)
MIN_JUDGED_S = 240.0  # a shorter second half (--quick) is not judged


def _slope_mb_per_h(ts: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` over ``ts`` (seconds), in MB per hour."""
    n = len(ts)
    if n < 2:
        return float("nan")
    mt, mv = sum(ts) / n, sum(values) / n
    var = sum((t - mt) ** 2 for t in ts)
    return 3600 * sum((t - mt) * (v - mv) for t, v in zip(ts, values)) / var if var else float("nan")


def run(minutes: float = 10.0, interval_s: float = 30.0, out=print) -> dict:
    out(f"== soak: the default daemon (synthetic feed, demo strategies, trading) for {minutes:g} min; VmRSS "
        f"every {interval_s:g} s ==")
    programs = [p.name for p in PROGRAMS]
    samples: list[dict[str, Any]] = []
    with LiveDaemon("", prefix="bench-soak-") as d:
        d.wait_state("live", timeout_s=90)
        pids = d.running_pids()
        assert d.proc is not None
        pids["supervisord"] = d.proc.pid
        d.program_pids = pids
        ticks0, t0 = cpu_ticks(pids), time.monotonic()
        end = t0 + minutes * 60
        restarts: dict[str, int] = {}
        while True:
            now = time.monotonic()
            current = d.pids()
            current["supervisord"] = d.proc.pid
            for name, pid in current.items():
                if pids.get(name) not in (None, pid):
                    restarts[name] = restarts.get(name, 0) + 1
                    pids[name] = pid
            try:
                state = d.state()
                em = d.status("exchange_manager")["stats"]
                orders = em.get("orders_submitted", 0)
            except Exception as exc:  # noqa: BLE001 - a soak keeps going; the sample says what failed
                state, orders = f"? ({exc})", -1
            sample = {"t": now - t0, "rss": {n: rss_mb(pid) for n, pid in pids.items()}, "state": state,
                      "orders": orders}
            samples.append(sample)
            out(f"  t={sample['t']:6.0f} s  {state:8}  orders {orders:6}  " + "  ".join(
                f"{n} {v:.1f}" for n, v in sample["rss"].items()) + " MB")
            if now >= end - 1e-3:
                break
            time.sleep(max(0.0, min(interval_s, end - time.monotonic())))
        elapsed = time.monotonic() - t0
        ticks1 = cpu_ticks(pids)
    cpu = {n: 100 * (ticks1[n] - ticks0[n]) / CLK_TCK / elapsed for n in pids if n in ticks0}
    names = [*programs, *[n for n in samples[0]["rss"] if n not in programs]]
    half = min(range(len(samples)), key=lambda i: abs(samples[i]["t"] - elapsed / 2))
    late_t = [x["t"] for x in samples[half:]]
    rows, worst, growing = [], ("", 0.0), []
    for n in names:
        series = [x["rss"].get(n, float("nan")) for x in samples]
        first, last, top = series[0], series[-1], max(series)
        slope = _slope_mb_per_h(late_t, series[half:])
        ours = n in programs
        if ours and top > worst[1]:
            worst = (n, top)
        if ours and slope >= SLOPE_LIMIT_MB_H:
            growing.append(f"{n} {slope:+.1f} MB/h")
        rows.append([n if ours else f"({n})", f"{first:.1f}", f"{last:.1f}", f"{top:.1f}", f"{last - first:+.1f}",
                     f"{slope:+.1f}", f"{cpu.get(n, float('nan')):.1f}", restarts.get(n, 0),
                     ("ok" if top < RSS_TARGET_MB else "OVER") if ours else ""])
    out("")
    orders = samples[-1]["orders"] - samples[0]["orders"]
    out(f"{len(samples)} samples over {elapsed / 60:.1f} min; second half = from t={samples[half]['t']:.0f} s; "
        f"states seen: {', '.join(sorted({str(x['state']) for x in samples}))}; orders submitted "
        f"{samples[0]['orders']} -> {samples[-1]['orders']}")
    out(table(["process", "first MB", "last MB", "max MB", "growth MB", "2nd-half trend MB/h", "CPU %", "restarts",
               f"<{RSS_TARGET_MB:g}MB"], rows))
    em = [x["rss"]["exchange_manager"] for x in samples]
    if orders > 0:
        out(f"exchange manager: {1000 * (em[-1] - em[0]) / orders:.2f} MB per 1,000 orders sent over the run "
            f"({em[-1] - em[0]:+.1f} MB for {orders:,} orders); its book keeps every open order and the last 10,000 "
            "closed ones, so this grows until about 10,000 orders (see tick_to_order's drift table for the plateau)")
    verdict = "met" if worst[1] < RSS_TARGET_MB else f"MISSED by {worst[1] - RSS_TARGET_MB:.1f} MB"
    grow = "none growing" if not growing else "GROWING: " + ", ".join(growing)
    if late_t[-1] - late_t[0] < MIN_JUDGED_S:  # a trend over a few samples is page noise x 3600
        grow = f"growth not judged (second half {late_t[-1] - late_t[0]:.0f} s < {MIN_JUDGED_S:g} s)"
    out(f"largest service RSS {worst[0]} {worst[1]:.1f} MB; target < {RSS_TARGET_MB:g} MB: {verdict}; "
        f"second-half trend >= {SLOPE_LIMIT_MB_H:g} MB/h: {grow}")
    summary = [f"soak {elapsed / 60:.1f} min (default daemon, trading): largest RSS {worst[0]} {worst[1]:.1f} MB "
               f"(target < {RSS_TARGET_MB:g} MB); {grow}; restarts: {sum(restarts.values())}"]
    return {"samples": samples, "cpu_pct": cpu, "restarts": restarts, "summary": summary}


if __name__ == "__main__":
    run()
