"""``python -m bench regress [--record]``: tick-to-order against the last recorded figure (issue 16).

Measures tick-to-order at 1,000 quotes/s through the whole daemon and through the raw pyzmq chain
(``tick_to_order.measure_ours`` / ``measure_raw``, rounds interleaved) and compares **ours / raw**,
the ratio of the medians of the per-round p50s, with the one recorded in ``bench/baseline.json``. The
ratio, not the figure itself: the machines are shared and noisy, and what slows one chain in a run
slows the other. It fails (exit status 1) when the ratio is more than ``TOLERANCE`` (20 %) over the
recorded one, so a change cannot quietly undo the hot path's work. ``--record`` writes the figure of
this run as the new reference (after a change that is meant to move it, with the commit).
"""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path

from bench._stats import median, ratio
from bench.tick_to_order import PROBES_PER_S, measure_ours, measure_raw

BASELINE = Path(__file__).with_name("baseline.json")
TOLERANCE = 1.20
RATE = 1_000


def _commit() -> str:
    res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=Path(__file__).parent, check=False)
    return res.stdout.strip() or "unknown"


def run(rounds: int = 3, seconds: float = 10.0, warmup_s: float = 3.0, record: bool = False, out=print) -> dict:
    every_n = max(1, RATE // PROBES_PER_S)
    out(f"== regress: tick-to-order at {RATE:,} quotes/s, ours / raw against {BASELINE.name} "
        f"(fails over {TOLERANCE:.2f}x the recorded ratio); {rounds} round(s) x {seconds:g} s ==")
    p50: dict[str, list[float]] = {"raw": [], "ours": []}
    for r in range(rounds):
        for variant in ("raw", "ours") if r % 2 == 0 else ("ours", "raw"):
            m = (measure_raw if variant == "raw" else measure_ours)(RATE, every_n, seconds, warmup_s)
            p50[variant].append(m["p50_us"])
            out(f"  round {r + 1} {variant:4}: p50 {m['p50_us']:,.0f} us, p99 {m['p99_us']:,.0f} us")
    ours, raw = median(p50["ours"]), median(p50["raw"])
    now = {"ratio": round(ratio(ours, raw), 3), "ours_p50_us": round(ours), "raw_p50_us": round(raw),
           "rounds": rounds, "seconds": seconds, "commit": _commit(),
           "measured": datetime.datetime.now().isoformat(timespec="seconds")}
    base = json.loads(BASELINE.read_text()) if BASELINE.exists() else None
    failed = False
    if base is None:
        verdict = f"no recorded figure in {BASELINE} (record one with --record)"
    else:
        limit = base["ratio"] * TOLERANCE
        failed = now["ratio"] > limit
        verdict = (f"{'REGRESSED' if failed else 'ok'}: ours/raw {now['ratio']:.2f}x against {base['ratio']:.2f}x "
                   f"recorded ({base['commit']}, {base['measured']}; limit {limit:.2f}x)")
    out(f"ours p50 {ours:,.0f} us, raw {raw:,.0f} us: {verdict}")
    if record:
        BASELINE.write_text(json.dumps(now, indent=2) + "\n")
        out(f"recorded in {BASELINE}")
    return {"failed": failed, "summary": [f"regress: tick-to-order ours/raw {now['ratio']:.2f}x; {verdict}"]}
