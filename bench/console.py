"""The web console (issue 17): how soon an open page shows a state change, what one open page costs,
and whether it slows the trading processes. A real headless browser (Debian's Chromium through
Playwright, launched as ``tests/integration/test_console_browser.py`` does) logs in to the console
of a ``bench._live.LiveDaemon`` through the login form, as ``admin``.

1. **state -> page**: the default demo config with ``auto_open = true``; once LIVE and a page is
   open, cycles of ``failsafe`` (LIVE -> DEGRADED -> FAILSAFE), wait for the sequence to end
   (``status.failsafe_pending`` is None), ``reset`` (-> READY), ``open`` (-> LIVE), all sent by the
   harness's own command client, until the page has recorded >= ``transitions``. The page keeps
   ``window.consoleStateLog``: per ``state`` message, the transition's time on the bus (``ts``, the
   orchestrator's ``time.time_ns()``) and ``Date.now()`` when it arrived (``seen``), one host clock;
   ``seen - ts`` per transition; a gap in the transition numbers is a state the page never heard of.
2. **what one page costs**: tick_to_order's daemon (1,000 quotes/s, the probe at 100 orders/s); over
   the windows of 3 with a page open: the console's CPU (% of one core, ``/proc`` ticks) and RSS,
   and Chromium's CPU (all its processes): on this 2-core machine the browser shares the cores with
   the daemon, where an operator's browser would run on another machine.
3. **tick-to-order with and without a page**: on that daemon, windows of ``window_s`` alternating
   no page / page (ABBA over the rounds: drift cancels out; "no page" = no browser running); per
   window the venue's latency samples are reset, then read (p50/p99 of quote stamp -> order at the
   venue, as ``tick_to_order.measure_ours`` reads them). Medians per condition, ratio page/no page.
"""

from __future__ import annotations

import importlib.util
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

from bench._live import LiveDaemon, cpu_ticks, rss_mb
from bench._stats import median, ratio, table
from bench.daemon_idle import CLK_TCK
from bench.tick_to_order import PROBES_PER_S, _toml
from services.latency import percentile

CHROMIUM = "/usr/bin/chromium"
# As root in a sandbox with no network: no sandbox, no GPU, none of Chromium's own connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]
RATE = 1_000
SETTLE_S = 2.0  # after opening (page loaded, first snapshot drawn) or closing the browser, before a window


class ConsoleDaemon(LiveDaemon):
    """A LiveDaemon and its console's address and first password."""

    def __init__(self, toml: str, prefix: str) -> None:
        super().__init__(toml, prefix)
        self.url = f"http://127.0.0.1:{self.config['console']['port']}"

    def password(self) -> str:
        path = Path(self.state_dir) / "console" / "admin.password"
        self.wait_until(path.exists, 30, "the console's admin.password", interval_s=0.2)
        return path.read_text().strip()


class Browser:
    """At most one Chromium with one page logged in to a daemon's console; opened and closed at will."""

    def __init__(self, pw: Any, d: ConsoleDaemon) -> None:
        self.pw, self.d = pw, d
        self.browser: Any = None
        self.page: Any = None
        self.errors: list[str] = []

    def open(self, state: str = "") -> Any:
        self.browser = self.pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        self.page = self.browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.goto(f"{self.d.url}/login")
        self.page.fill("#user", "admin")
        self.page.fill("#password", self.d.password())
        self.page.click("#login")
        self.page.wait_for_selector(f"#state[data-state{'=' + repr(state) if state else ''}]", timeout=30_000)
        return self.page

    def close(self) -> None:
        if self.browser is not None:
            self.browser.close()
        self.browser = self.page = None


def _chromium_ticks() -> dict[int, int]:
    """CPU ticks of every Chromium process under ours (Playwright's node driver -> chromium -> its
    zygotes, renderers, GPU and utility processes), by pid; one that exits mid-window is lost."""
    parent, comm = {}, {}
    for pid in (int(e) for e in os.listdir("/proc") if e.isdigit()):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm[pid] = stat[stat.index("(") + 1:stat.rindex(")")]
        parent[pid] = int(stat.rsplit(")", 1)[1].split()[1])

    def ours(pid: int) -> bool:
        while pid > 1:
            pid = parent.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    ticks = cpu_ticks({str(p): p for p, name in comm.items() if name == "chromium" and ours(p)})
    return {int(p): t for p, t in ticks.items()}


def state_to_page(pw: Any, transitions: int, out: Callable[..., None]) -> dict[str, Any]:
    with ConsoleDaemon("[orchestrator]\nauto_open = true\n", prefix="bench-console-") as d:
        d.wait_state("live", timeout_s=90)
        browser = Browser(pw, d)
        page = browser.open("live")
        cycles = 0
        while page.evaluate("window.consoleStateLog.length") < transitions:
            cycles += 1
            why = f"bench console: cycle {cycles}"
            d.request("orchestrator", "failsafe", reason=why, timeout_s=10)
            d.wait_until(lambda: d.request("orchestrator", "status", timeout_s=5)["failsafe_pending"] is None, 60,
                         "the failsafe sequence to end (failsafe_pending None)", interval_s=0.1)
            d.request("orchestrator", "reset", reason=why, timeout_s=10)
            # open is refused until every process is healthy and reconciled again: ask until it is taken
            d.wait_until(lambda: d.call("orchestrator", "open", reason=why, timeout_s=10).ok, 60, "open accepted",
                         interval_s=0.2)
            d.wait_state("live", timeout_s=30)
            # the page caught up (its state message, or its next snapshot)
            page.wait_for_selector("#state[data-state='live']", timeout=10_000)
        time.sleep(1.0)
        log: list[dict[str, Any]] = page.evaluate("window.consoleStateLog")
        browser.close()
    lat = [(e["seen"] - e["ts"]) * 1e3 for e in log]
    nos = [e["no"] for e in log]
    missed = sorted(set(range(min(nos), max(nos) + 1)) - set(nos)) if nos else []
    by_state = {s: [x for x, e in zip(lat, log) if e["state"] == s] for s in dict.fromkeys(e["state"] for e in log)}
    out(f"1. state change on the bus -> the page got it: {len(log)} transitions in {cycles} cycles "
        f"(LIVE->DEGRADED->FAILSAFE->READY->LIVE), ms:")
    out(table(["state", "n", "p50", "p99", "max"], [
        [s, len(v), f"{percentile(v, 50):.1f}", f"{percentile(v, 99):.1f}", f"{max(v):.1f}"]
        for s, v in [("all", lat), *by_state.items()]]))
    out(f"   recorded {len(log)} of the {4 * cycles} caused; missed (gaps in the transition numbers): "
        f"{missed or 'none'}; page errors: {browser.errors or 'none'}")
    return {"p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "max_ms": max(lat, default=math.nan),
            "n": len(lat), "missed": missed, "log": log}


def _window(d: ConsoleDaemon, console_pid: int, seconds: float, page: bool) -> dict[str, Any]:
    published0 = d.status("venue_sim")["stats"]["quotes_published"]
    d.request("venue_sim", "latency", reset=True, timeout_s=10)
    c0, b0, t0 = cpu_ticks({"console": console_pid}), _chromium_ticks(), time.perf_counter()
    time.sleep(seconds)
    lat = d.request("venue_sim", "latency", timeout_s=10)
    dt = time.perf_counter() - t0
    c1, b1 = cpu_ticks({"console": console_pid}), _chromium_ticks()
    # the rate the venue kept up: on 2 shared cores a busy browser can slow the publisher itself
    quotes_per_s = (d.status("venue_sim")["stats"]["quotes_published"] - published0) / (time.perf_counter() - t0)
    pct = lambda ticks: 100 * ticks / CLK_TCK / dt  # noqa: E731
    return {**lat, "page": page, "console_cpu": pct(c1["console"] - c0["console"]), "console_rss": rss_mb(console_pid),
            "chromium_cpu": pct(sum(t - b0.get(p, 0) for p, t in b1.items())), "quotes_per_s": quotes_per_s,
            "state": d.state()}


def with_and_without(pw: Any, rounds: int, window_s: float, warmup_s: float, out: Callable[..., None]) -> list[dict]:
    with ConsoleDaemon(_toml(RATE, RATE // PROBES_PER_S), prefix="bench-console-") as d:
        d.wait_state("live", timeout_s=90)
        d.wait_until(lambda: d.request("venue_sim", "latency", timeout_s=10).get("count", 0) > 0, 30,
                     "the first probe order at the venue")
        console_pid = d.wait_until(lambda: d.pids().get("console"), 30, "the console RUNNING", interval_s=0.2)
        time.sleep(warmup_s)
        browser, windows = Browser(pw, d), []
        try:
            for r in range(rounds):
                for page in ((False, True) if r % 2 == 0 else (True, False)):
                    if page and browser.page is None:
                        browser.open()
                    elif not page:
                        browser.close()
                    time.sleep(SETTLE_S)
                    windows.append({"round": r + 1, **_window(d, console_pid, window_s, page)})
        finally:
            browser.close()
    out(f"per window ({window_s:g} s at {RATE:,} quotes/s, {PROBES_PER_S} probe orders/s; us, % of one core):")
    out(table(["round", "page", "quotes/s", "probes", "p50 us", "p99 us", "console CPU %", "console RSS MB",
               "Chromium CPU %", "session"], [[w["round"], "open" if w["page"] else "-", f"{w['quotes_per_s']:,.0f}",
                                               w.get("count", 0), _us(w.get("p50_us")),
                             _us(w.get("p99_us")), f"{w['console_cpu']:.1f}", f"{w['console_rss']:.1f}",
                             f"{w['chromium_cpu']:.1f}", w["state"]] for w in windows]))
    if browser.errors:
        out(f"page errors: {browser.errors}")
    return windows


def _us(v: float | None) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:,.0f}"


def _missing() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (pip install -e '.[test]')"
    return None


def run(transitions: int = 50, rounds: int = 3, window_s: float = 10.0, warmup_s: float = 3.0,
        out: Callable[..., None] = print) -> dict[str, Any]:
    out(f"== console: state change -> page ({transitions} transitions); one page's cost and tick-to-order with "
        f"and without it at {RATE:,} quotes/s ({rounds} round(s) x [no page, page] x {window_s:g} s) ==")
    if (why := _missing()) is not None:
        out(f"console: skipped: {why}")
        return {"summary": [f"console: skipped ({why})"]}
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        first = state_to_page(pw, transitions, out)
        out("")
        windows = with_and_without(pw, rounds, window_s, warmup_s, out)
    cond = {page: [w for w in windows if w["page"] is page] for page in (False, True)}
    med = {page: {k: median([w[k] for w in ws if w.get(k) is not None and not math.isnan(w[k])])
                  for k in ("p50_us", "p99_us", "console_cpu", "chromium_cpu")} for page, ws in cond.items()}
    rss = max(w["console_rss"] for w in cond[True])
    out("")
    out(f"2. one page open at {RATE:,} quotes/s (median over {len(cond[True])} window(s)): console CPU "
        f"{med[True]['console_cpu']:.1f} % of one core, RSS {rss:.1f} MB (max); Chromium, all its processes, "
        f"{med[True]['chromium_cpu']:.1f} %")
    out(f"3. tick-to-order, median over {rounds} window(s) per condition:")
    out(table(["", "no page", "page open", "page/no page"], [
        [label, f"{med[False][k]:,.0f} us", f"{med[True][k]:,.0f} us", f"{ratio(med[True][k], med[False][k]):.2f}"]
        for label, k in (("p50", "p50_us"), ("p99", "p99_us"))]
        + [["console CPU", f"{med[False]['console_cpu']:.1f} %", f"{med[True]['console_cpu']:.1f} %", ""]]))
    summary = [
        f"console: state change -> page p50 {first['p50_ms']:.1f} ms, p99 {first['p99_ms']:.1f} ms "
        f"(max {first['max_ms']:.1f}) over {first['n']} transitions; missed {len(first['missed'])}",
        f"console with one page open at {RATE:,} quotes/s: CPU {med[True]['console_cpu']:.1f} % "
        f"(no page: {med[False]['console_cpu']:.1f} %), RSS {rss:.1f} MB; Chromium {med[True]['chromium_cpu']:.1f} %",
        f"tick-to-order at {RATE:,}/s, page/no page: p50 {med[True]['p50_us']:,.0f} / {med[False]['p50_us']:,.0f} us "
        f"= {ratio(med[True]['p50_us'], med[False]['p50_us']):.2f}x, p99 {med[True]['p99_us']:,.0f} / "
        f"{med[False]['p99_us']:,.0f} us = {ratio(med[True]['p99_us'], med[False]['p99_us']):.2f}x",
    ]
    return {"state_to_page": first, "windows": windows, "summary": summary}


if __name__ == "__main__":
    run()
