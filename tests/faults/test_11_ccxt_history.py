"""A session of 20,000 fills through the ccxt adapter (slow): test_9's 50,000-fill case, on
deploy/ccxt-sim.toml (ccxt's Binance class against the simulator's Binance API), at 100 orders a
second: what the exchange manager sustains through ccxt on this 2-core host (each order is several
reports there: the REST answer, the stream's NEW and TRADE, the polls'), so 20,000 fills, not 50,000.

A REST venue has no fill numbers of its own: the adapter numbers the trades it reads, and a mass
status reads open orders, trades and balances (``services/venues/ccxt/execution.py``). Shown: a
reconciliation's time and largest answer at 1,000 and at 20,000 fills are flat (it reads what is
open and the trades since the last seen, never the account's history); after a kill -9 of the
exchange manager in the middle of more orders, the restarted adapter reads trades again only from
where the book was (``fills_resume_ns``), names them from the book (``known_order``) instead of
asking the venue order by order, reconciles, and the book agrees with the venue's balances. The
figures go to ``FIGURES`` and docs/faults.md.

ccxt's rate limiter stays on, at 1 ms per unit of weight (``rate_limit_ms``) instead of Binance's
50 ms: 20,000 orders at Binance's own pace would take 17 minutes.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from bus import CommandTimeout
from deploy.temp_daemon import free_port
from integration.daemon import Daemon, wait_until
from integration.e2e import ask, em_positions, em_stats, ensure_live, wait_routed
from integration.test_ccxt_venue import CREDENTIALS, _venue_positions, ccxt_sim_config

from .harness import FIGURES
from .test_9_reconciliation import FLOOD_CONFIG, SYMBOL, _flood, _kill9_mid_flood, _wait_fills

CONNECTOR = "binance-sim"
RATE = 100.0  # orders a second
TRADES_PAGE = 1000  # the connector's trades_page (Binance's maximum)


def _config() -> dict[str, Any]:
    config = ccxt_sim_config(free_port())
    for section, values in FLOOD_CONFIG.items():
        merged = {**config.get(section, {}), **values}
        if section == "exchange_manager":
            merged["connectors"] = config["exchange_manager"]["connectors"]
        config[section] = merged
    config["venue_sim"]["exchange_api"].update(max_requests_per_s=100_000,
                                               balances={"USD": 10_000_000.0, "BTC": 10.0, "ETH": 100.0, "SOL": 1000.0})
    config["exchange_manager"]["connectors"][0]["rate_limit_ms"] = 1.0
    return config


def _measure(d: Daemon) -> dict[str, Any]:
    """One reconciliation with the ccxt venue asked now; its outcome."""
    runs = ask(d, "exchange_manager", "reconcile")["runs"]

    def done() -> dict[str, Any] | None:
        outcome = ask(d, "exchange_manager", "reconciliation")["outcomes"][CONNECTOR]
        return outcome if outcome["run"] >= runs[CONNECTOR] and outcome["ok"] else None

    return wait_until(done, 30, interval=0.05, ignore=(CommandTimeout,))


def _samples(d: Daemon, n: int = 5) -> dict[str, float]:
    samples = [_measure(d) for _ in range(n)]
    ms = sorted(x["duration_ms"] for x in samples)
    return {"ms_p50": ms[n // 2], "ms_max": ms[-1], "loop_ms": max(x["loop_ms"] for x in samples),
            "bytes": max(x["largest_reply_bytes"] for x in samples), "pages": max(x["fill_pages"] for x in samples)}


def _book(d: Daemon) -> dict[str, float]:
    return {s: round(p["qty"], 9) for s, p in em_positions(d).items() if round(p["qty"], 9)}


@pytest.mark.slow
def test_a_session_of_20000_fills_through_ccxt_then_kill9_of_the_exchange_manager() -> None:
    d = Daemon(config=_config(), environment=CREDENTIALS)
    try:
        d.start()
        _run(d)
    finally:
        d.close()
    assert not d.leftover_processes(), "processes left behind"


def _run(d: Daemon) -> None:
    ensure_live(d, timeout=60)
    wait_routed(d, SYMBOL)
    figures: dict[int, dict[str, float]] = {}
    for target in (1_000, 20_000):
        have = em_stats(d)["fills"]
        t0 = time.monotonic()
        _flood(d, target - have, rate=RATE)
        _wait_fills(d, target, 180)
        figures[target] = {**_samples(d), "rate": (target - have) / (time.monotonic() - t0)}

    back_s, reconciled_s, first = _kill9_mid_flood(d, CONNECTOR, RATE, timeout=60.0)
    ensure_live(d, timeout=60)
    wait_until(lambda: _book(d) == _venue_positions(d), 60, interval=0.5, ignore=(CommandTimeout,),
               message=lambda: f"book {_book(d)} vs venue {_venue_positions(d)}")
    assert em_stats(d)["venue_unknown"] == {"orders": 0, "positions": {}}
    after = _samples(d)

    for n, f in figures.items():
        FIGURES.notes.append(f"ccxt: reconciliation at {n:,} fills: p50 {f['ms_p50']:.1f} ms, max {f['ms_max']:.1f} ms "
                             f"(its own work on the exchange manager's loop: at most {f['loop_ms']:.2f} ms), largest "
                             f"answer {f['bytes']:,.0f} bytes; flood {f['rate']:.0f} fills/s")
    FIGURES.notes.append(f"ccxt: kill -9 of the exchange manager at {em_stats(d)['fills']:,} fills: answering again "
                         f"{back_s:.2f} s after the kill, reconciled {reconciled_s:.2f} s after it; that run "
                         f"{first['ms']:.1f} ms{' (stale)' if first['stale'] else ''}, largest answer {first['bytes']:,} bytes; afterwards p50 "
                         f"{after['ms_p50']:.1f} ms, largest answer {after['bytes']:,.0f} bytes")
    small, large = figures[1_000], figures[20_000]
    assert large["bytes"] <= 2 * small["bytes"] + 1_000, figures
    # the venue's answers are HTTP pages here: at most one page of trades (~290 bytes each), however
    # long the history (a restart reads again from where the book was, not the whole window)
    assert max(large["bytes"], first["bytes"], after["bytes"]) <= TRADES_PAGE * 400, figures
    # flat in time too: what it reads does not grow with the history (a REST round trip is noisy)
    assert large["ms_p50"] <= 2 * small["ms_p50"] + 200, figures
