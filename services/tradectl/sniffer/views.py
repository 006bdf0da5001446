"""Human-readable tables for the verbs (rich: colours on a terminal only, plain text otherwise)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.console import Console
from rich.table import Table

_console = Console(highlight=False)


def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _when(ns: int | None) -> str:
    return "-" if not ns else dt.datetime.fromtimestamp(ns / 1e9).isoformat(sep=" ", timespec="milliseconds")


def topics_table(rows: list[dict[str, Any]], window: float) -> None:
    t = Table(title=f"topics seen in {window:g} s")
    for c in ("topic", "publisher", "type", "count", "rate (Hz)"):
        t.add_column(c, justify="right" if c in ("count", "rate (Hz)") else "left")
    for r in rows:
        t.add_row(r["topic"], r["source"], ", ".join(r["types"]), str(r["count"]), f"{r['rate_hz']:.1f}")
    _console.print(t)


def rates_table(rows: list[dict[str, Any]], kind: str) -> None:
    if kind == "hz":
        t = Table(title=f"rates at {dt.datetime.now():%H:%M:%S}")
        for c in ("topic", "publisher", "rate (Hz)", "min (ms)", "mean (ms)", "max (ms)", "std (ms)", "n"):
            t.add_column(c, justify="left" if c in ("topic", "publisher") else "right")
        for r in rows:
            ms = {k: None if r[k] is None else r[k] * 1e3 for k in
                  ("interval_min_s", "interval_mean_s", "interval_max_s", "interval_std_s")}
            t.add_row(r["topic"], r["source"], _f(r["rate_hz"], ".2f"), _f(ms["interval_min_s"], ".3f"),
                      _f(ms["interval_mean_s"], ".3f"), _f(ms["interval_max_s"], ".3f"),
                      _f(ms["interval_std_s"], ".3f"), str(r["count"]))
    else:
        t = Table(title=f"bandwidth at {dt.datetime.now():%H:%M:%S}")
        for c in ("topic", "publisher", "B/s", "min size", "mean size", "max size", "std size", "n"):
            t.add_column(c, justify="left" if c in ("topic", "publisher") else "right")
        for r in rows:
            t.add_row(r["topic"], r["source"], _f(r["bytes_per_s"], ",.0f"), _f(r["size_min"], ".0f"),
                      _f(r["size_mean"], ".1f"), _f(r["size_max"], ".0f"), _f(r["size_std"], ".1f"),
                      str(r["count"]))
    _console.print(t)


def gaps_table(report: dict[str, Any], stale_after: float) -> None:
    t = Table(title=f"publishers at {_when(report['ts_ns'])} (heartbeat stale after {stale_after:g} intervals)")
    for c in ("publisher", "heard", "received", "lost", "gaps", "last gap", "restarts", "heartbeat age", "stale"):
        t.add_column(c)
    for name, p in report["publishers"].items():
        if not p["heard"]:
            t.add_row(name, "[red]no[/]", "-", "-", "-", "-", "-", "-", "-")
            continue
        g = p["last_gap"]
        last = "-" if g is None else f"{g['lost']} on {g['topic']} {g['ago_s']:.1f}s ago"
        hb = p["heartbeat_age_s"]
        hb_text = "-" if hb is None else f"{hb:.2f}s / {p['heartbeat_interval_s']:g}s"
        stale = {True: "[red]STALE[/]", False: "[green]ok[/]", None: "-"}[p["stale"]]
        lost = f"[red]{p['lost']}[/]" if p["lost"] else "0"
        t.add_row(name, "yes", str(p["received"]), lost, str(p["gaps"]), last, str(p["restarts"]), hb_text, stale)
    _console.print(t)
    for e in report["events"]:
        _console.print(f"  gap: {e['source']} {e['topic']}: {e['lost']} lost (seq {e['expected_seq']}.."
                       f"{e['got_seq'] - 1}) at {_when(e['at_ns'])}")


def info_text(s: dict[str, Any], console: Console) -> None:
    console.print(f"[bold]{s['path']}[/]: {s['messages']:,} messages, {s['bytes']:,} bytes in "
                  f"{len(s['parts'])} file(s)")
    console.print(f"  start {_when(s['start_ns'])}  end {_when(s['end_ns'])}  duration {s['duration_s']:.3f} s")
    for p in s["parts"]:
        state = "indexed" if p["indexed"] else "[yellow]not indexed[/]"
        console.print(f"  part {p['part']}: {p['path']} {p['bytes']:,} B, {state}"
                      + (f" - {p['problem']}" if p["problem"] else ""))
    for title, key in (("topic", "per_topic"), ("type", "per_type"), ("source", "sources")):
        t = Table(title=f"messages per {title}")
        t.add_column(title)
        t.add_column("count", justify="right")
        for k, v in s[key].items():
            t.add_row(k, f"{v:,}")
        console.print(t)
    g = s["gaps"]
    console.print(f"gaps in the recording: {g['total']} ({g['lost']} message(s) lost), "
                  f"publisher restarts {g['restarts']}, undecodable {s['undecodable']}")
    for source, events in g["by_source"].items():
        for e in events[:20]:
            console.print(f"  {source} {e['topic']}: {e['lost']} lost at {_when(e['at_ns'])}")
